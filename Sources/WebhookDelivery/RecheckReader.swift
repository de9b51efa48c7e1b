import Foundation
import LibPQ
import Synchronization

/// Reads deliveries' re-check rows (``Recipients/recheck``), many per statement.
///
/// Every attempt re-reads its recipient just before sending. One statement per attempt cost more
/// in PostgreSQL than the rest of the attempt's statements together, so reads are gathered: a
/// delivery that asks while no read is in flight reads at once (an idle worker waits for
/// nothing); those that ask while one is in flight wait for it, and the first of them then reads
/// for all of them. A worker that claims a batch of deliveries thus reads their rows in one or
/// two statements.
final class RecheckReader: Sendable {
    private enum Signal {
        case row(PQRow?)
        /// Read for yourself and everyone waiting.
        case lead
    }

    private struct State {
        var reading = false
        var waiting: [(id: UUID, continuation: CheckedContinuation<Signal, any Error>)] = []
    }

    /// The most rows one statement reads; more wait for the next.
    static let maxBatch = 256

    private let state = Mutex(State())

    /// The row of `delivery`, or nil when it does not exist.
    /// - Parameter overlap: how long retired secrets still sign (`$2` of the statement).
    func row(for delivery: UUID, overlap: Duration, database: PQConnectionPool) async throws -> PQRow? {
        let signal = try await withCheckedThrowingContinuation {
            (continuation: CheckedContinuation<Signal, any Error>) in
            let leads = state.withLock { state -> Bool in
                if state.reading {
                    state.waiting.append((delivery, continuation))
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
            return try await read(leader: delivery, overlap: overlap, database: database)
        }
    }

    /// Reads for `leader` and whoever waits, then hands the next read to the first who came in
    /// meanwhile, or ends reading.
    private func read(leader: UUID, overlap: Duration, database: PQConnectionPool) async throws -> PQRow? {
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
        let rows: [UUID: PQRow]
        do {
            let ids = [leader] + others.map(\.id)
            let result = try await database.query(
                Recipients.recheck, [PQArray(ids), PQInterval(overlap), DeliveryID.since(ids)])
            var byID: [UUID: PQRow] = [:]
            for row in result.rows { byID[try row.decode("delivery_id", as: UUID.self)] = row }
            rows = byID
        } catch {
            for other in others { other.continuation.resume(throwing: error) }
            throw error
        }
        for other in others { other.continuation.resume(returning: .row(rows[other.id])) }
        return rows[leader]
    }
}
