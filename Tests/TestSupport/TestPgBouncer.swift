import Foundation
import JobQueue
import LibPQ

/// A PgBouncer in transaction pooling mode in front of the test PostgreSQL (`DATABASE_URL`),
/// started by `scripts/pgbouncer` on first use and stopped when the test process exits. Every
/// database of the server is reachable through it by name.
enum TestPgBouncer {
    static let directory = TestDatabase.repoRoot + "/.pg/pgbouncer-\(getpid())"

    /// The pooler's URL (database `postgres`), or why it could not be started.
    static let started: Result<String, TestFailure> = {
        do {
            let url = try checkedOutput(
                TestDatabase.repoRoot + "/scripts/pgbouncer", ["start", directory, TestDatabase.serverURL]
            ).trimmingCharacters(in: .whitespacesAndNewlines)
            atexit {
                _ = try? ChildProcess.start(
                    TestDatabase.repoRoot + "/scripts/pgbouncer", ["destroy", TestPgBouncer.directory]
                ).waitBlocking()
            }
            return .success(url)
        } catch {
            // A failure of the tests that need it, not a crash of the test process (which would
            // leave every other test's workers and databases behind).
            return .failure(
                TestFailure(
                    message: "could not start PgBouncer (NEED_PGBOUNCER=1 scripts/ensure-deps installs it): \(error)"))
        }
    }()

    /// Throws why PgBouncer could not be started; the tests that use it call this first.
    static func require() throws { _ = try started.get() }

    /// The pooler's URL (database `postgres`); after ``require()``.
    static var serverURL: String { (try? started.get()) ?? "postgresql://pgbouncer-did-not-start.invalid/postgres" }

    /// `database` reached through the pooler.
    static func conninfo(_ database: TestDatabase) -> String {
        TestDatabase.withDatabase(serverURL, database.name)
    }
}

extension JobWorkerConfiguration {
    /// As a deployment behind PgBouncer (transaction pooling, before 1.21) is configured: the
    /// statements through the pooler, unnamed; LISTEN directly to PostgreSQL.
    mutating func throughPgBouncer(_ database: TestDatabase) {
        conninfo = TestPgBouncer.conninfo(database)
        listenConninfo = database.conninfo
        preparedStatements = false
    }
}
