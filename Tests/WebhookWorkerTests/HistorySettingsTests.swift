import JobQueue
import Testing

@testable import webhook_worker

/// `run`'s settings of the partitioned history: their defaults are the library's, a partition
/// spans at most 31 days (what the upkeep's function accepts), and `off` keeps the history.
@Suite("History settings")
struct HistorySettingsTests {
    @Test("defaults, off, and a partition too long refused naming the setting")
    func historySettings() throws {
        let defaults = try RunCommand.parse([]).settings(environment: [:])
        #expect(defaults.queue.history == HistoryUpkeepConfiguration())
        #expect(defaults.queue.history?.retention == .seconds(30 * 86_400))
        let set = try RunCommand.parse(["--history-partition", "6h"]).settings(environment: [
            "WEBHOOK_HISTORY_RETENTION": "off"
        ])
        #expect(set.queue.history?.partitionLength == .seconds(6 * 3_600))
        #expect(set.queue.history?.ahead == .seconds(3 * 86_400))
        #expect(set.queue.history?.retention == nil)
        do {
            _ = try RunCommand.parse(["--history-partition", "32d"]).settings(environment: [:])
            Issue.record("a 32-day partition was accepted")
        } catch let error as SettingError {
            #expect(error.description.contains("--history-partition (WEBHOOK_HISTORY_PARTITION)"), "\(error)")
        }
    }
}
