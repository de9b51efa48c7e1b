/// This build's version: `webhook-worker --version`, the `effective settings` log line and the
/// `webhook_worker_build_info` metric. Raised with each release, together with its notes.
enum BuildInfo {
    static let version = "0.3.0"
}
