import LibPQ

/// Every statement of the queue for one schema, built once per ``JobQueueSchema``. The text names
/// the schema, and so does the name a statement is prepared under (`<schema>.claimJobs`): two
/// queues sharing a connection never run each other's prepared statements. The texts are written
/// beside the code that runs them.
final class QueueStatements: Sendable {
    let claimJobs: PostgresQuery
    let extendLeases: PostgresQuery
    let leasesLost: PostgresQuery
    let reapExpiredLeases: PostgresQuery
    let repairConcurrencyKeys: PostgresQuery
    let completeJobs: PostgresQuery
    let cancelJobs: PostgresQuery
    let retryJobs: PostgresQuery
    let releaseJobs: PostgresQuery
    let snoozeJobs: PostgresQuery
    let deadLetterJobs: PostgresQuery
    let listDeadLetters: PostgresQuery
    let showDeadLetter: PostgresQuery
    let deadLetterAttempts: PostgresQuery
    let requeueDeadLetter: PostgresQuery
    let countRequeueable: PostgresQuery
    let requeueBatch: PostgresQuery
    let purgeDeadLetters: PostgresQuery
    let listDeadLettersByReason: PostgresQuery
    let requeueableDeadLetterIDs: PostgresQuery
    let purgeMatchingDeadLetters: PostgresQuery
    let deadLetterReasons: PostgresQuery
    let pauseKind: PostgresQuery
    let resumeKind: PostgresQuery
    let statsPaused: PostgresQuery
    let statsDepth: PostgresQuery
    let statsWaiting: PostgresQuery
    let statsReplicas: PostgresQuery
    let statsThroughput: PostgresQuery
    let statsDead: PostgresQuery
    let statsMinutes: PostgresQuery
    let pruneJobAttempts: PostgresQuery
    let enqueueJob: PostgresQuery
    let enqueueJobCopies: PostgresQuery
    let readTraceContexts: PostgresQuery

    init(schema: String) {
        claimJobs = JobStore.claim(schema)
        extendLeases = JobStore.extendLeases(schema)
        leasesLost = JobStore.leasesLost(schema)
        reapExpiredLeases = JobStore.reap(schema)
        repairConcurrencyKeys = JobStore.repairKeys(schema)
        completeJobs = JobStore.complete(schema)
        cancelJobs = JobStore.cancel(schema)
        retryJobs = JobStore.retry(schema)
        releaseJobs = JobStore.release(schema)
        snoozeJobs = JobStore.snooze(schema)
        deadLetterJobs = JobStore.deadLetter(schema)
        listDeadLetters = DeadLetters.list(schema)
        showDeadLetter = DeadLetters.get(schema)
        deadLetterAttempts = DeadLetters.attempts(schema)
        requeueDeadLetter = DeadLetters.requeue(schema)
        countRequeueable = DeadLetters.countRequeueable(schema)
        requeueBatch = DeadLetters.requeueBatch(schema)
        purgeDeadLetters = DeadLetters.purge(schema)
        listDeadLettersByReason = DeadLetters.listByReason(schema)
        requeueableDeadLetterIDs = DeadLetters.requeueableIDs(schema)
        purgeMatchingDeadLetters = DeadLetters.purgeMatching(schema)
        deadLetterReasons = DeadLetters.reasons(schema)
        pauseKind = PausedKinds.pause(schema)
        resumeKind = PausedKinds.resume(schema)
        statsPaused = PausedKinds.list(schema)
        statsDepth = QueueStatistics.depthQuery(schema)
        statsWaiting = QueueStatistics.waitingQuery(schema)
        statsReplicas = QueueStatistics.replicasQuery(schema)
        statsThroughput = QueueStatistics.throughputQuery(schema)
        statsDead = QueueStatistics.deadQuery(schema)
        statsMinutes = QueueStatistics.minutesQuery(schema)
        pruneJobAttempts = JobAttemptHistory.prune(schema)
        enqueueJob = JobEnqueuer.insert(schema, returning: true)
        enqueueJobCopies = JobEnqueuer.insert(schema, returning: false)
        readTraceContexts = JobTracing.readTraceContexts(schema)
    }
}
