/// Pieces of text that break naive code: separators, quotes, escapes, invisible and combining
/// characters, right-to-left marks, emoji, JSON-looking text, control characters. The fuzz tests
/// join random runs of them.
enum AwkwardText {
    static let pieces = [
        "", "a", "Z", "0", "integration", "integrations", "Integration", ",", " ", "\t", "\n", "\r\n", "\"", "\\", "'",
        "é", "e\u{0301}", "日本", "😀", "👩‍👩‍👧", "\u{200B}", "\u{FEFF}", "\u{202E}", "\u{2028}", "%", "%00",
        "{", "}", "[", "]",
        ":", "null", "true", "-1", "1e309", "\u{7F}", "\u{1}", "\u{1B}[31m", "<script>", "../", "=", "&", "?", "#", "@",
    ]
}
