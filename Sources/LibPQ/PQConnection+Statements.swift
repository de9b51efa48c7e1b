import CLibPQ
import Dispatch
import Foundation
import Logging
import Synchronization

/// The libpq calls behind each statement, run on the connection's queue: plain and parameterized
/// statements, prepared by name or not, pipelines, and their results and errors.
extension PQConnection {

    private func liveHandle(_ name: String) throws -> OpaquePointer {
        guard let handle, PQstatus(handle) == CONNECTION_OK else {
            throw PQError(code: .connectionLost, message: "the connection is closed", statement: name)
        }
        return handle
    }

    @discardableResult
    func runSimple(_ sql: String, name: String) throws -> PQResult {
        let handle = try liveHandle(name)
        return try consume(PQexec(handle, sql), handle: handle, name: name)
    }

    /// Whether a transaction is open (idle in it, or failed and awaiting its rollback).
    func isInTransaction(_ name: String) throws -> Bool {
        let status = PQtransactionStatus(try liveHandle(name))
        return status == PQTRANS_INTRANS || status == PQTRANS_INERROR
    }

    /// The ``transactionSetup`` statement when the connection is outside a transaction (it must
    /// then precede the statements sent, in the same pipeline), or nil.
    func setupOutsideTransaction(_ name: String) throws -> PQQuery? {
        guard let transactionSetup else { return nil }
        let handle = try liveHandle(name)
        return PQtransactionStatus(handle) == PQTRANS_IDLE ? PQQuery("", transactionSetup) : nil
    }

    func runParams(_ query: PQQuery, _ texts: [String?]) throws -> PQResult {
        if let setup = try setupOutsideTransaction(query.name) {
            // One round trip: the setup and the statement, one implicit transaction.
            let results = try runPipeline([(setup, []), (query, texts)])
            if case .failure(let error) = results[0] { throw error }
            return try results[1].get()
        }
        let handle = try liveHandle(query.name)
        let cStrings: [UnsafeMutablePointer<CChar>?] = texts.map { $0.flatMap { strdup($0) } }
        defer { cStrings.forEach { free($0) } }
        let pointers: [UnsafePointer<CChar>?] = cStrings.map { $0.map { UnsafePointer($0) } }
        let count = Int32(pointers.count)

        // A statement without a name is a one-off: sent with its parameters, not prepared.
        let usePrepared =
            preparedStatements && !query.name.isEmpty
            && (prepared[query.name] == query.sql || prepared[query.name] == nil)
        if usePrepared && prepared[query.name] == nil {
            _ = try consume(PQprepare(handle, query.name, query.sql, count, nil), handle: handle, name: query.name)
            prepared[query.name] = query.sql
        }
        let raw = pointers.withUnsafeBufferPointer { buffer in
            usePrepared
                ? PQexecPrepared(handle, query.name, count, buffer.baseAddress, nil, nil, 0)
                : PQexecParams(handle, query.sql, count, nil, buffer.baseAddress, nil, nil, 0)
        }
        return try consume(raw, handle: handle, name: query.name)
    }

    func runPipeline(
        _ statements: [(PQQuery, [String?])]
    ) throws -> [Result<PQResult, PQError>] {
        let handle = try liveHandle("pipeline")
        guard PQenterPipelineMode(handle) == 1 else {
            throw PQError(code: .client, message: Self.errorMessage(handle), statement: "pipeline")
        }
        defer { PQexitPipelineMode(handle) }

        enum Pending {
            case prepare(name: String, sql: String)
            case statement(Int)
        }
        var pending: [Pending] = []
        var preparing: [String: String] = [:]
        func lost(_ name: String) -> PQError {
            PQError(
                code: PQstatus(handle) == CONNECTION_OK ? .client : .connectionLost, message: Self.errorMessage(handle),
                statement: name)
        }
        for (index, (query, texts)) in statements.enumerated() {
            let cStrings: [UnsafeMutablePointer<CChar>?] = texts.map { $0.flatMap { strdup($0) } }
            defer { cStrings.forEach { free($0) } }
            let pointers: [UnsafePointer<CChar>?] = cStrings.map { $0.map { UnsafePointer($0) } }
            let count = Int32(pointers.count)
            let known = prepared[query.name] ?? preparing[query.name]
            let usePrepared = preparedStatements && !query.name.isEmpty && (known == nil || known == query.sql)
            if usePrepared && known == nil {
                guard PQsendPrepare(handle, query.name, query.sql, count, nil) == 1 else { throw lost(query.name) }
                preparing[query.name] = query.sql
                pending.append(.prepare(name: query.name, sql: query.sql))
            }
            let sent = pointers.withUnsafeBufferPointer { buffer in
                usePrepared
                    ? PQsendQueryPrepared(handle, query.name, count, buffer.baseAddress, nil, nil, 0)
                    : PQsendQueryParams(handle, query.sql, count, nil, buffer.baseAddress, nil, nil, 0)
            }
            guard sent == 1 else { throw lost(query.name) }
            pending.append(.statement(index))
        }
        guard PQpipelineSync(handle) == 1 else { throw lost("pipeline") }

        let skipped = PQError(code: .client, message: "not run: an earlier statement in the pipeline failed")
        var results = [Result<PQResult, PQError>](repeating: .failure(skipped), count: statements.count)
        for item in pending {
            let name: String
            switch item {
            case .prepare(let prepareName, _): name = prepareName
            case .statement(let index): name = statements[index].0.name
            }
            var outcome: Result<PQResult, PQError> = .failure(skipped)
            while let raw = PQgetResult(handle) {
                switch PQresultStatus(raw) {
                case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
                    outcome = .success(Self.copy(raw, name: name))
                case PGRES_PIPELINE_ABORTED:
                    outcome = .failure(skipped)
                default:
                    outcome = .failure(Self.error(from: raw, handle: handle, name: name))
                }
                PQclear(raw)
            }
            if PQstatus(handle) != CONNECTION_OK { throw lost(name) }
            switch item {
            case .prepare(let prepareName, let sql):
                if case .success = outcome { prepared[prepareName] = sql }
            case .statement(let index):
                results[index] = outcome
            }
        }
        // The sync point, then nothing.
        while let raw = PQgetResult(handle) { PQclear(raw) }
        if PQstatus(handle) != CONNECTION_OK { throw lost("pipeline") }
        return results
    }

    private func consume(_ raw: OpaquePointer?, handle: OpaquePointer, name: String) throws -> PQResult {
        guard let raw else {
            let lost = PQstatus(handle) != CONNECTION_OK
            throw PQError(
                code: lost ? .connectionLost : .client, message: Self.errorMessage(handle), statement: name)
        }
        defer { PQclear(raw) }
        switch PQresultStatus(raw) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            return Self.copy(raw, name: name)
        default:
            throw Self.error(from: raw, handle: handle, name: name)
        }
    }

    static func error(from raw: OpaquePointer, handle: OpaquePointer, name: String) -> PQError {
        func field(_ code: UInt8) -> String? {
            PQresultErrorField(raw, Int32(code)).map { String(cString: $0) }
        }
        let sqlState = field(UInt8(ascii: "C"))
        // DETAIL is left out on purpose: "Failing row contains (...)" and "Key (...)=(...)" carry
        // row values, which may be payloads or secrets, into logs and last_error columns.
        let primary = field(UInt8(ascii: "M"))
        let lost = PQstatus(handle) != CONNECTION_OK
        let message =
            primary
            ?? String(cString: PQresultErrorMessage(raw)).trimmingCharacters(in: .whitespacesAndNewlines)
        return PQError(
            code: sqlState == nil && lost ? .connectionLost : .server,
            message: message.isEmpty ? errorMessage(handle) : message,
            sqlState: sqlState, hint: field(UInt8(ascii: "H")),
            statement: name)
    }

    private static func copy(_ raw: OpaquePointer, name: String) -> PQResult {
        let rowCount = Int(PQntuples(raw))
        let columnCount = Int(PQnfields(raw))
        let columns = (0..<columnCount).map { String(cString: PQfname(raw, Int32($0))) }
        var values: [[String?]] = []
        values.reserveCapacity(rowCount)
        for row in 0..<rowCount {
            var rowValues: [String?] = []
            rowValues.reserveCapacity(columnCount)
            for column in 0..<columnCount {
                if PQgetisnull(raw, Int32(row), Int32(column)) == 1 {
                    rowValues.append(nil)
                } else {
                    rowValues.append(String(cString: PQgetvalue(raw, Int32(row), Int32(column))))
                }
            }
            values.append(rowValues)
        }
        let affected = PQcmdTuples(raw).map { Int(String(cString: $0)) ?? 0 } ?? 0
        return PQResult(columns: columns, values: values, affectedRows: affected, statement: name)
    }
}
