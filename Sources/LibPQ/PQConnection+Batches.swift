extension PQConnection {
    /// Runs a `DELETE ... LIMIT`-style statement again and again, each run its own transaction,
    /// until it deletes nothing, so that no delete holds its locks for long.
    ///
    /// - Parameters:
    ///   - query: the statement; its last parameter is the batch size.
    ///   - bindings: the parameters before the batch size.
    ///   - progress: called after each batch that deleted rows, with the total so far.
    /// - Returns: the rows deleted in all.
    public func deleteInBatches(
        _ query: PQQuery, _ bindings: [any PQEncodable], batchSize: Int,
        progress: (Int) -> Void = { _ in }
    ) async throws -> Int {
        var total = 0
        while true {
            let deleted = try await self.query(query, bindings + [batchSize]).affectedRows
            total += deleted
            if deleted == 0 { return total }
            progress(total)
        }
    }
}
