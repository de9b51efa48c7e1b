import NIOCore
import NIOPosix
@testable import TestSupport
import Testing
@testable import WebhookDelivery

/// The deadline that bounds each HTTP exchange, without HTTP: exchanges that end on their own,
/// fail on their own, hang, or are cancelled by their caller.
@Suite("Exchange deadlines", .timeLimit(.minutes(2)))
struct ExchangeDeadlinesTests {
    struct Refused: Error, Equatable { let index: Int }

    enum Plan {
        case answers(yields: Int)
        case fails(yields: Int)
        case hangs(timeout: Duration)
    }

    @Test("each exchange ends with its own value or error, or after its deadline with Exceeded; none is left watched")
    func seededExchanges() async throws {
        let seed = UInt64.random(in: 1...UInt64.max)
        var random = SeededGenerator(seed: seed)
        let deadlines = ExchangeDeadlines(loop: MultiThreadedEventLoopGroup.singleton.next())
        for round in 0..<10 {
            let plans: [Plan] = (0..<200).map { _ in
                switch Int.random(in: 0..<3, using: &random) {
                case 0: .answers(yields: Int.random(in: 0...20, using: &random))
                case 1: .fails(yields: Int.random(in: 0...20, using: &random))
                default: .hangs(timeout: .milliseconds(Int.random(in: 0...120, using: &random)))
                }
            }
            let failures = await withTaskGroup(of: String?.self) { group in
                for (index, plan) in plans.enumerated() {
                    group.addTask { await Self.check(plan, index: index, deadlines: deadlines) }
                }
                var failures: [String] = []
                for await failure in group { if let failure { failures.append(failure) } }
                return failures
            }
            #expect(failures.isEmpty, "seed \(seed), round \(round): \(failures.prefix(5))")
            #expect(deadlines.watching == 0, "seed \(seed), round \(round)")
            if !failures.isEmpty { return }
        }
        // With nothing left to watch the sweep stops rescheduling itself.
        while deadlines.sweeping { try await Task.sleep(for: .milliseconds(10)) }
        #expect(deadlines.watching == 0)
    }

    /// Runs one planned exchange; a description of what went wrong, or nil.
    static func check(_ plan: Plan, index: Int, deadlines: ExchangeDeadlines) async -> String? {
        let clock = ContinuousClock()
        let started = clock.now
        switch plan {
        case .answers(let yields):
            do {
                let value = try await deadlines.run(within: .seconds(60)) {
                    for _ in 0..<yields { await Task.yield() }
                    return index
                }
                return value == index ? nil : "\(index) answered \(value)"
            } catch {
                return "\(index) should have answered, threw \(error)"
            }
        case .fails(let yields):
            do {
                _ = try await deadlines.run(within: .seconds(60)) { () async throws -> Int in
                    for _ in 0..<yields { await Task.yield() }
                    throw Refused(index: index)
                }
                return "\(index) should have failed"
            } catch let refused as Refused {
                return refused.index == index ? nil : "\(index) failed as \(refused.index)"
            } catch {
                return "\(index) should have failed with its own error, threw \(error)"
            }
        case .hangs(let timeout):
            do {
                _ = try await deadlines.run(within: timeout) { () async throws -> Int in
                    try await Task.sleep(for: .seconds(3600))
                    return index
                }
                return "\(index) should have been cut off"
            } catch is ExchangeDeadlines.Exceeded {
                let elapsed = clock.now - started
                return elapsed >= timeout ? nil : "\(index) cut off after \(elapsed), before its \(timeout)"
            } catch {
                return "\(index) should have been cut off, threw \(error)"
            }
        }
    }

    @Test("an exchange its caller cancels ends with the caller's cancellation, not a timeout")
    func callerCancels() async throws {
        let deadlines = ExchangeDeadlines(loop: MultiThreadedEventLoopGroup.singleton.next())
        let started = AsyncStream<Void>.makeStream()
        let call = Task {
            try await deadlines.run(within: .seconds(3600)) { () async throws -> Int in
                started.continuation.yield()
                try await Task.sleep(for: .seconds(3600))
                return 1
            }
        }
        var iterator = started.stream.makeAsyncIterator()
        await iterator.next()
        call.cancel()
        await #expect(throws: CancellationError.self) { try await call.value }
        #expect(deadlines.watching == 0)
    }

    @Test("an exchange that ends as its deadline passes keeps its value")
    func valueWins() async throws {
        let deadlines = ExchangeDeadlines(loop: MultiThreadedEventLoopGroup.singleton.next())
        // The exchange ignores cancellation and answers once the deadline has cut it off.
        let value = try await deadlines.run(within: .milliseconds(1)) { () async throws -> Int in
            while deadlines.cutOff == 0 { await Task.yield() }
            #expect(Task.isCancelled)
            return 7
        }
        #expect(value == 7)
        #expect(deadlines.cutOff == 1)
        #expect(deadlines.watching == 0)
    }
}
