import Foundation
import LibPQ
import Synchronization

/// Reads that jobs running at once make one by one, gathered into one statement.
///
/// A job that asks while no read is in flight reads at once (an idle worker waits for nothing);
/// those that ask while one is in flight wait for it, and the first of them then reads for all
/// of them. A worker that claims a batch of jobs thus reads their rows in one or two statements.
/// Every delivery attempt re-reads its recipient this way (``Recipients/recheck``), and every
/// fan-out its account and recipients (``IntegrationConnectedHandler/accounts``): one statement
/// per job cost more in PostgreSQL than the rest of the job's statements together.
final class GatheredReads<Key: Hashable & Sendable>: Sendable {
    /// Reads the rows of `keys` in one statement; a key without a row is left out.
    typealias Read = @Sendable ([Key]) async throws -> [Key: PQRow]

    private enum Signal {
        case row(PQRow?)
        /// Read for yourself and everyone waiting.
        case lead
    }

    private struct State {
        var reading = false
        var waiting: [(key: Key, continuation: CheckedContinuation<Signal, any Error>)] = []
    }

    /// The most rows one statement reads; more wait for the next.
    static var maxBatch: Int { 256 }

    private let state = Mutex(State())

    init() {}

    /// The row of `key`, or nil when it has none. `read` is used if this call leads a read: the
    /// calls gathered must read alike (the same statement on the same database).
    func row(for key: Key, read: Read) async throws -> PQRow? {
        let signal = try await withCheckedThrowingContinuation {
            (continuation: CheckedContinuation<Signal, any Error>) in
            let leads = state.withLock { state -> Bool in
                if state.reading {
                    state.waiting.append((key, continuation))
                    return false
                }
                state.reading = true
                return true
            }
            if leads { continuation.resume(returning: .lead) }
        }
        switch signal {
        case .row(let row):
            return row
        case .lead:
            return try await self.read(leader: key, with: read)
        }
    }

    /// Reads for `leader` and whoever waits, then hands the next read to the first who came in
    /// meanwhile, or ends reading.
    private func read(leader: Key, with read: Read) async throws -> PQRow? {
        let others = state.withLock { state in
            let taken = Array(state.waiting.prefix(Self.maxBatch - 1))
            state.waiting.removeFirst(taken.count)
            return taken
        }
        defer {
            let next = state.withLock { state in
                if state.waiting.isEmpty {
                    state.reading = false
                    return nil as CheckedContinuation<Signal, any Error>?
                }
                return state.waiting.removeFirst().continuation
            }
            next?.resume(returning: .lead)
        }
        let rows: [Key: PQRow]
        do {
            rows = try await read([leader] + others.map(\.key))
        } catch {
            for other in others { other.continuation.resume(throwing: error) }
            throw error
        }
        for other in others { other.continuation.resume(returning: .row(rows[other.key])) }
        return rows[leader]
    }
}
