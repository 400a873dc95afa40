import PluginABI
import SluiceSDK
import XCTest
@testable import SluiceHost

/// SluiceSDK's batch helpers against the real host function table (no event loop needed: batches
/// made with batch_new belong to the calling thread).
final class SDKBatchTests: XCTestCase {
    override func setUp() {
        sluiceHost = HostAPI.table
    }

    /// An MSET of 100,000 pairs: putCommand used to recurse once per argument and overflow the stack.
    func testPutCommandTakesAnyNumberOfArguments() {
        let batch = SluiceSDK.Batch.newRequests()
        defer { batch.free() }
        var arguments: [[UInt8]] = [Array("MSET".utf8)]
        for i in 0..<100_000 {
            arguments.append(Array("key:\(i)".utf8))
            arguments.append(Array("value:\(i)".utf8))
        }
        XCTAssertEqual(batch.putCommand(arguments, at: 0), SluiceStatus(SLUICE_OK, ""))
        XCTAssertEqual(batch.argumentCount(at: 0), arguments.count)
        var views = ArgumentViews()
        batch.arguments(at: 0, into: &views)
        XCTAssertEqual(Array(views[0]), Array("MSET".utf8))
        XCTAssertEqual(Array(views[arguments.count - 1]), Array("value:99999".utf8))
        XCTAssertEqual(Array(views[1]), Array("key:0".utf8))
    }

    func testPutCommandWithEmptyArguments() {
        let batch = SluiceSDK.Batch.newRequests()
        defer { batch.free() }
        XCTAssertTrue(batch.putCommand([Array("PING".utf8), []], at: 0).isOK)
        XCTAssertEqual(Array(batch.bytes(at: 0)), Array("*2\r\n$4\r\nPING\r\n$0\r\n\r\n".utf8))
        XCTAssertEqual(batch.putCommand([], at: 0).code, SLUICE_ERROR_INVALID_ARGUMENT)
    }

    /// Failures come back as statuses (and `check()` throws them), never silently dropped.
    func testHelpersReturnTheHostsStatus() throws {
        let responses = SluiceSDK.Batch.newResponses()
        XCTAssertTrue(responses.putError("ERR no", at: 0).isOK)
        XCTAssertEqual(responses.putInteger(1, at: 5).code, SLUICE_ERROR_INVALID_ARGUMENT)  // past the end
        XCTAssertThrowsError(try responses.putInteger(1, at: 5).check()) { error in
            XCTAssertEqual((error as? SluiceError)?.status, SLUICE_ERROR_INVALID_ARGUMENT)
        }
        XCTAssertEqual(responses.remove(at: 3).code, SLUICE_ERROR_INVALID_ARGUMENT)
        responses.free()
        // The batch is gone: its handle is stale, and every use of it says so.
        XCTAssertEqual(responses.putNull(at: 0).code, SLUICE_ERROR_STATE)
        XCTAssertEqual(responses.count, 0)
        responses.free()  // a second free is refused, not a double release
    }
}

/// SluiceSDK's CQL wrappers against the real host function table, over the DataStax driver's frames.
final class SDKCQLTests: XCTestCase {
    override func setUp() {
        sluiceHost = HostAPI.table
    }

    func testStatementsValuesAndBuildersThroughTheSDK() throws {
        let requests = SluiceSDK.Batch.newRequests(protocol: .cql)
        let responses = SluiceSDK.Batch.newResponses(protocol: .cql)
        defer { requests.free(); responses.free() }
        XCTAssertTrue(requests.isCQL)
        XCTAssertEqual(requests.protocols, .cql)
        for name in ["query_v5", "batch_v4"] {
            let frame = try CQLDriverVectors.vector(name)
            XCTAssertTrue(requests.putBytes(Array(frame.readableBytesView), at: requests.count).isOK)
        }
        XCTAssertEqual(requests.putBytes(Array("*1\r\n$4\r\nPING\r\n".utf8), at: 2).code, SLUICE_ERROR_MALFORMED)
        let header = try requests.cqlHeader(at: 0)
        XCTAssertEqual([header.version, Int(header.stream)], [5, 7])
        XCTAssertTrue(header.isQuery)
        let statement = try XCTUnwrap(try requests.cqlStatement(at: 0))
        XCTAssertEqual(statement.kind, .select)
        XCTAssertEqual([statement.keyspaceName, statement.tableName], ["ks", "t"])
        XCTAssertEqual(String(decoding: try XCTUnwrap(try requests.cqlQuery(at: 0)), as: UTF8.self), "SELECT v FROM ks.t WHERE k = ?")
        XCTAssertEqual(try requests.cqlValue(at: 0, position: 1)?.value, .null)
        XCTAssertNil(try requests.cqlValue(at: 0, position: 2))
        XCTAssertEqual(requests.cqlStatementCount(at: 1), 2)
        XCTAssertEqual(try requests.cqlStatement(at: 1, statement: 0)?.kind, .insert)
        XCTAssertNil(try requests.cqlQuery(at: 1, statement: 1), "a prepared child the host never saw prepared")
        XCTAssertEqual(CQL.StatementKind(name: "DDL"), .ddl)
        XCTAssertEqual(CQL.ErrorCode(name: "Unauthorized"), .unauthorized)

        try responses.putCQLError(.unauthorized, "no", answering: requests, 0, at: 0)
        try responses.putCQLResultVoid(answering: requests, 1, at: 1)
        try responses.putCQLResultRows(answering: requests, 0, at: 2, keyspace: "ks", table: "t",
                                       columns: [("k", SLUICE_CQL_TYPE_INT), ("v", SLUICE_CQL_TYPE_VARCHAR)],
                                       rows: [[[0, 0, 0, 1], Array("a".utf8)], [[0, 0, 0, 2], nil]])
        XCTAssertEqual(try responses.cqlHeader(at: 0).stream, 7)
        XCTAssertEqual(try responses.cqlHeader(at: 1).stream, 10)
        XCTAssertNil(try responses.cqlResultRows(at: 1))
        XCTAssertEqual(try responses.cqlResultRows(at: 2)?.rows, 2)
        XCTAssertEqual(String(decoding: try XCTUnwrap(try responses.cqlColumn(at: 2, column: 1)).name, as: UTF8.self), "v")
        let cells = Array(try responses.cqlCells(at: 2))
        XCTAssertEqual(cells.count, 4)
        XCTAssertEqual(cells[3].value, .null)
        try responses.setCQLCell(at: 2, row: 1, column: 1, to: Array("b".utf8))
        guard case .bytes(let replaced) = try responses.cqlCells(at: 2).map(\.value)[3] else { return XCTFail("still null") }
        XCTAssertEqual(Array(replaced), Array("b".utf8))
        XCTAssertThrowsError(try responses.putCQLError(.unauthorized, "no", answering: requests, 5, at: 3))
        try requests.putCQLQuery("SELECT * FROM ks.t", values: [[0, 0, 0, 1]], version: 4, at: 2)
        XCTAssertEqual(requests.cqlValueCount(at: 2), 1)
    }
}
