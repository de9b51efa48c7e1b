import LibPQ

/// Every statement of the queue for one schema, built once per ``JobQueueSchema``. The text names
/// the schema, and so does the name a statement is prepared under (`<schema>.claimJobs`): two
/// queues sharing a connection never run each other's prepared statements. The worker's
/// statements (claims, leases, outcomes) are the sections of `sql/job_queue/statements/*.sql`,
/// compiled in by the EmbedSQL plugin; the operations' are written beside the code that runs them.
final class QueueStatements: Sendable {
    let claimJobs: PQQuery
    let extendLeases: PQQuery
    let leasesLost: PQQuery
    let reapExpiredLeases: PQQuery
    let repairConcurrencyKeys: PQQuery
    let completeJobs: PQQuery
    let cancelJobs: PQQuery
    let retryJobs: PQQuery
    let releaseJobs: PQQuery
    let snoozeJobs: PQQuery
    let deadLetterJobs: PQQuery
    let listDeadLetters: PQQuery
    let showDeadLetter: PQQuery
    let deadLetterAttempts: PQQuery
    let requeueDeadLetter: PQQuery
    let countRequeueable: PQQuery
    let requeueBatch: PQQuery
    let purgeDeadLetters: PQQuery
    let listDeadLettersByReason: PQQuery
    let requeueableDeadLetterIDs: PQQuery
    let purgeMatchingDeadLetters: PQQuery
    let deadLetterReasons: PQQuery
    let pauseKind: PQQuery
    let resumeKind: PQQuery
    let statsPaused: PQQuery
    let statsDepth: PQQuery
    let statsWaiting: PQQuery
    let statsReplicas: PQQuery
    let statsThroughput: PQQuery
    let statsDead: PQQuery
    let statsMinutes: PQQuery
    let pruneJobAttempts: PQQuery
    let enqueueJob: PQQuery
    let enqueueJobCopies: PQQuery
    let readTraceContexts: PQQuery
    let enqueueJobs: PQQuery
    let enqueueJobRows: PQQuery
    let enqueueFreshJobRows: PQQuery
    let jobTraceContext: PQQuery
    let jobIsQueued: PQQuery
    let jobIsQueuedByKey: PQQuery
    let queuedUniqueKeys: PQQuery
    let cancelWaitingJobs: PQQuery
    let requeueableDeadLettersByPayload: PQQuery
    let setConcurrencyKeyLimit: PQQuery
    let listConcurrencyKeyLimits: PQQuery
    let setConcurrencyKeyOrdered: PQQuery
    let concurrencyKeyIsOrdered: PQQuery

    init(schema: String) {
        claimJobs = Self.embedded("claimJobs", EmbeddedSQL.claimJobs, schema)
        extendLeases = Self.embedded("extendLeases", EmbeddedSQL.extendLeases, schema)
        leasesLost = Self.embedded("leasesLost", EmbeddedSQL.leasesLost, schema)
        reapExpiredLeases = Self.embedded("reapExpiredLeases", EmbeddedSQL.reapExpiredLeases, schema)
        repairConcurrencyKeys = Self.embedded("repairConcurrencyKeys", EmbeddedSQL.repairConcurrencyKeys, schema)
        completeJobs = Self.embedded("completeJobs", EmbeddedSQL.completeJobs, schema)
        cancelJobs = Self.embedded("cancelJobs", EmbeddedSQL.cancelJobs, schema)
        retryJobs = Self.embedded("retryJobs", EmbeddedSQL.retryJobs, schema)
        releaseJobs = Self.embedded("releaseJobs", EmbeddedSQL.releaseJobs, schema)
        snoozeJobs = Self.embedded("snoozeJobs", EmbeddedSQL.snoozeJobs, schema)
        deadLetterJobs = Self.embedded("deadLetterJobs", EmbeddedSQL.deadLetterJobs, schema)
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
        enqueueJobs = JobEnqueuer.insertMany(schema)
        enqueueJobRows = JobEnqueuer.insertMany(schema, returning: false)
        enqueueFreshJobRows = JobEnqueuer.insertFresh(schema)
        jobTraceContext = QueuedJobs.traceContext(schema)
        jobIsQueued = QueuedJobs.isQueued(schema)
        jobIsQueuedByKey = QueuedJobs.isQueuedByKey(schema)
        queuedUniqueKeys = QueuedJobs.queuedUniqueKeys(schema)
        cancelWaitingJobs = QueuedJobs.cancelWaiting(schema)
        requeueableDeadLettersByPayload = DeadLetters.requeueableByPayload(schema)
        setConcurrencyKeyLimit = ConcurrencyKeyLimits.set(schema)
        listConcurrencyKeyLimits = ConcurrencyKeyLimits.list(schema)
        setConcurrencyKeyOrdered = ConcurrencyKeyLimits.setOrdered(schema)
        concurrencyKeyIsOrdered = ConcurrencyKeyLimits.isOrdered(schema)
    }

    /// A statement of `sql/job_queue/statements/` for `schema`, prepared as `<schema>.<name>`.
    private static func embedded(_ name: String, _ template: String, _ schema: String) -> PQQuery {
        PQQuery("\(schema).\(name)", template.replacingOccurrences(of: "{{schema}}", with: schema))
    }
}
