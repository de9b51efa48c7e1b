/// The console's one way to write HTML (and the SVG inside it): text and attribute values are
/// always escaped; tag and attribute names, and the little markup written as-is, can only be
/// string literals (`StaticString`), so nothing read from the database or a request can become
/// markup.
struct HTML {
    private(set) var output = ""

    init() {}

    /// `&`, `<`, `>`, `"` and `'` as entities: safe in text and in quoted attribute values.
    static func escape(_ text: String) -> String {
        var escaped = ""
        escaped.reserveCapacity(text.utf8.count)
        for character in text.unicodeScalars {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&#39;"
            case "\0": escaped += "\u{FFFD}"
            default: escaped.unicodeScalars.append(character)
            }
        }
        return escaped
    }

    /// Markup written as-is: a literal only.
    mutating func raw(_ markup: StaticString) {
        output += markup.description
    }

    /// Text, escaped.
    mutating func text(_ text: String) {
        output += Self.escape(text)
    }

    typealias Attributes = KeyValuePairs<StaticString, String?>

    private mutating func open(_ tag: StaticString, _ attributes: Attributes) {
        output += "<\(tag)"
        for (name, value) in attributes {
            guard let value else { continue }
            output += " \(name)=\"\(Self.escape(value))\""
        }
        output += ">"
    }

    /// `<tag attributes>` with what `body` writes, then `</tag>`. A nil attribute is left out.
    mutating func element(_ tag: StaticString, _ attributes: Attributes = [:], _ body: (inout HTML) -> Void) {
        open(tag, attributes)
        body(&self)
        output += "</\(tag)>"
    }

    /// `<tag attributes>text</tag>`, the text escaped.
    mutating func element(_ tag: StaticString, _ attributes: Attributes = [:], text: String) {
        open(tag, attributes)
        self.text(text)
        output += "</\(tag)>"
    }

    /// An element without content or end tag (`input`, `meta`, `link`, `br`), or an empty SVG
    /// element written `<tag ... />`.
    mutating func void(_ tag: StaticString, _ attributes: Attributes = [:], selfClosing: Bool = false) {
        open(tag, attributes)
        if selfClosing { output.insert("/", at: output.index(before: output.endIndex)) }
    }
}
