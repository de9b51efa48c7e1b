import Synchronization

/// The pauses this replica has been asked for (`Retry-After`), kept in memory as well as in the
/// database: the re-check that reads `paused_until` runs before the request, in batches, so a
/// delivery re-checked a moment before the pause was recorded would still send inside it. Each
/// delivery asks here again just before its request; the replica that read the answer knows of
/// the pause at once, before its statement records it for the others.
final class EndpointPauseMemory: Sendable {
    private let pauses = Mutex<[String: ContinuousClock.Instant]>([:])

    /// Records that `key` asked for no request before `until`; a later pause already known is kept.
    func record(_ key: String, until: ContinuousClock.Instant) {
        pauses.withLock { pauses in
            let now = ContinuousClock.now
            pauses = pauses.filter { $0.value > now }
            pauses[key] = max(until, pauses[key] ?? until)
        }
    }

    /// What is left of the endpoint's pause, or nil when it is not paused.
    func remaining(_ key: String) -> Duration? {
        let now = ContinuousClock.now
        guard let until = pauses.withLock({ $0[key] }), until > now else { return nil }
        return until - now
    }
}
