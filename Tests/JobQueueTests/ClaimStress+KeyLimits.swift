import Foundation
@testable import JobQueue
import LibPQ
@testable import TestSupport
import Testing

/// Single keys' own limits in the keyed-claim search: the driver's move that changes one, and
/// the limits the checks hold each key to.
extension ClaimStress {
    /// Gives a key a limit of its own (1 to 3) or takes it away, committed at once.
    func changeKeyLimit() async throws {
        let kind = pick(Self.kinds)
        let key = pick(Self.keys)
        let value: Int? = chance(30) ? nil : Int.random(in: 1...3, using: &random)
        // Logged before it commits: a claim under way now may read either value, and its window
        // (closed when the driver reads its outcome, after this) spans both.
        keyLimitEpoch += 1
        keyLimitLog.append((keyLimitEpoch, "\(kind)/\(key)", value))
        note("driver: key \(kind)/\(key) limit \(value.map(String.init) ?? "none")")
        try await control.query(
            PQQuery("setKeyLimit", "SELECT \(schema).set_concurrency_key_limit($1, $2, $3::int)"), [kind, key, value])
    }

    /// Starts a claim's window at the current key-limit epoch; returns its serial. A claim run to
    /// its end at once (on the control connection) passes `closed`.
    func openClaimWindow(closed: Bool = false) -> Int {
        nextClaim += 1
        claimWindows[nextClaim] = (keyLimitEpoch, closed ? keyLimitEpoch : nil)
        claimStarts[nextClaim] = totals.steps
        return nextClaim
    }

    func closeClaimWindow(_ serial: Int) {
        claimWindows[serial]?.end = keyLimitEpoch
    }

    /// The key's own limit after the changes up to `epoch` (nil: none, its kind's applies).
    func keyLimit(_ key: String, at epoch: Int) -> Int? {
        keyLimitLog.last { $0.key == key && $0.epoch <= epoch }?.value
    }

    /// The limit `kind`/`key` has now.
    func currentLimit(kind: String, key: String) -> Int {
        let limit = keyLimit("\(kind)/\(key)", at: keyLimitEpoch) ?? limits[kind, default: Int.max]
        return orderedKeys.contains("\(kind)/\(key)") ? min(limit, 1) : limit
    }

    /// The largest limit that the claim named `worker` (`w<session>#<serial>/a=2,b=1`) could have
    /// read for `kind`/`key`: the key's own limits while its statement ran, or the kind's limit
    /// it ran under when the key had none.
    func bound(kind: String, key: String, claimedBy worker: String) -> Int {
        let bound = unorderedBound(kind: kind, key: key, claimedBy: worker)
        return orderedKeys.contains("\(kind)/\(key)") ? min(bound, 1) : bound
    }

    private func unorderedBound(kind: String, key: String, claimedBy worker: String) -> Int {
        let kindLimit = Self.limit(of: kind, claimedBy: worker)
        guard let serialText = worker.split(separator: "/").first?.split(separator: "#").last,
            let serial = Int(serialText), let window = claimWindows[serial]
        else { return kindLimit }
        let name = "\(kind)/\(key)"
        let end = window.end ?? keyLimitEpoch
        let values =
            [keyLimit(name, at: window.start)]
            + keyLimitLog.filter { $0.key == name && $0.epoch > window.start && $0.epoch <= end }.map(\.value)
        return values.map { $0 ?? kindLimit }.max() ?? kindLimit
    }
}
