import NIOCore
import NIOEmbedded
import PluginABI
import XCTest
@testable import SluiceHost

/// ABI 1.3 over real CQL frames: the DataStax driver's encodings (Tests/cql/codec_vectors.py) and
/// frames made by the codec's builders, through the host function table as a plugin calls it.
final class CQLTransformABITests: XCTestCase {
    let api = HostAPI.table.pointee
    let allocator = ByteBufferAllocator()

    private func owned(_ kind: Int32, _ frames: [ByteBuffer]) -> OpaquePointer {
        let handle = api.batch_new(kind, Int32(SLUICE_PROTOCOL_CQL))!
        for (i, frame) in frames.enumerated() {
            XCTAssertEqual(frame.withUnsafeReadableBytes { api.batch_put_bytes(handle, i, $0.baseAddress, $0.count) }, SLUICE_OK)
        }
        return handle
    }

    private func string(_ view: sluice_host_view) -> String {
        String(decoding: UnsafeRawBufferPointer(start: view.ptr, count: view.len), as: UTF8.self)
    }

    private func bytes(_ view: sluice_host_view) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: view.ptr, count: view.len))
    }

    private func message(_ frame: ByteBuffer) throws -> CQLMessage {
        let header = try XCTUnwrap(try CQLFrameScanner(direction: .responses, maxFrameBytes: 1 << 20).scan(frame))
        return try CQLMessage(frame: CQLFrame(header: header, bytes: frame), compression: nil, maxBodyBytes: 1 << 20)
    }

    /// An EXECUTE of `id` with positional values (v4).
    private func execute(id: [UInt8], values: [[UInt8]?], stream: Int16 = 21) -> ByteBuffer {
        CQLFrameBuilder.frame(version: .v4, isResponse: false, stream: stream, opcode: .execute) { body in
            body.writeInteger(UInt16(id.count))
            body.writeBytes(id)
            body.writeInteger(CQLConsistency.one.rawValue)
            body.writeInteger(UInt8(0x01))
            body.writeInteger(UInt16(values.count))
            for value in values { body.writeCQLValue(value.map { .bytes(ByteBuffer(bytes: $0)) } ?? .null) }
        }
    }

    // MARK: protocol-correct failures

    func testErrorRepliesAreInTheRequestsProtocolWithEachRequestsStreamAndVersion() throws {
        let requests = Batch(kind: Batch.requests, protocolID: Batch.cql, messages: [
            try CQLDriverVectors.vector("query_v4"), try CQLDriverVectors.vector("query_v5"),
        ])
        let replies = Batch.errors("deny: no", cqlCode: .unauthorized, answering: requests, count: 2, allocator: allocator)
        XCTAssertEqual(replies.protocolID, Batch.cql)
        XCTAssertEqual(replies.kind, Batch.responses)
        for (i, version) in [(0, CQLVersion.v4), (1, .v5)] {
            let header = try XCTUnwrap(try CQLFrameScanner(direction: .responses, maxFrameBytes: 1 << 20).scan(replies.messages[i]))
            XCTAssertEqual(header.stream, 7)
            XCTAssertEqual(header.version, version)
            guard case .error(let error) = try message(replies.messages[i]) else { return XCTFail("not an ERROR") }
            XCTAssertEqual(error.code, .unauthorized)
            XCTAssertEqual(error.message, "deny: no")
        }
        let redis = Batch(kind: Batch.requests, protocolID: Batch.redis, messages: [ByteBuffer(string: "*1\r\n$4\r\nPING\r\n")])
        let redisReplies = Batch.errors("deny: no", answering: redis, count: 1, allocator: allocator)
        XCTAssertEqual(String(buffer: redisReplies.messages[0]), "-ERR deny: no\r\n")
    }

    /// What the test step's on_requests does (a C function pointer captures nothing).
    nonisolated(unsafe) static var failCode: Int32 = -1
    nonisolated(unsafe) static var failStatus: Int32 = 0

    static let failingStep: TransformStep = {
        let step = TransformStep(
            pluginName: "test", transformName: "deny", label: "main[0] deny",
            descriptor: LoadedTransform(
                name: "deny", description: "", protocols: UInt32(SLUICE_PROTOCOL_REDIS | SLUICE_PROTOCOL_CQL),
                configNew: { _, _, _ in SLUICE_OK }, configFree: nil, instanceNew: nil, instanceFree: nil,
                onRequests: { _, call, _ in
                    let api = HostAPI.table.pointee
                    if CQLTransformABITests.failCode < 0 { return api.call_fail(call, "no", 2) }
                    CQLTransformABITests.failStatus = api.call_fail_code(call, CQLTransformABITests.failCode, "no", 2)
                    if CQLTransformABITests.failStatus != SLUICE_OK { return api.call_fail_code(call, SLUICE_CQL_ERROR_OVERLOADED, "busy", 4) }
                    return SLUICE_OK
                },
                onResponses: nil))
        step.hasConfig = true
        return step
    }()

    func testCallFailAnswersACQLBatchWithAnErrorFrameOfTheChosenCode() throws {
        let loop = EmbeddedEventLoop()
        let plan = RuntimePlan(chains: [ChainPlan(name: "main", steps: [.transform(Self.failingStep)])], sinks: [])
        let session = ChainSession(eventLoop: loop, allocator: allocator, plan: plan, clientAddress: "127.0.0.1:1", mainChain: 0)
        defer { session.close() }
        let chain = try session.chain(0)
        let receiver = HandleTableTests.Collect()
        for code in [-1, SLUICE_CQL_ERROR_INVALID, 0x1000 /* UNAVAILABLE has fields: refused */] {
            Self.failCode = code
            let requests = Batch(kind: Batch.requests, protocolID: Batch.cql, messages: [try CQLDriverVectors.vector("query_v5")])
            session.runFromClient(requests, on: chain, receiver: receiver)
        }
        XCTAssertEqual(receiver.outcomes.count, 3)
        XCTAssertEqual(Self.failStatus, SLUICE_ERROR_INVALID_ARGUMENT)
        let expected: [(CQLErrorCode, String)] = [(.serverError, "deny: no"), (.invalid, "deny: no"), (.overloaded, "deny: busy")]
        for (outcome, (code, text)) in zip(receiver.outcomes, expected) {
            guard case .responses(let batch) = outcome else { return XCTFail("failed outcome") }
            XCTAssertEqual(batch.count, 1)
            XCTAssertEqual(CQLRequestIdentity(frame: batch.messages[0]), CQLRequestIdentity(version: .v5, stream: 7))
            guard case .error(let error) = try message(batch.messages[0]) else { return XCTFail("not an ERROR") }
            XCTAssertEqual(error.code, code)
            XCTAssertEqual(error.message, text)
        }
        // The same step on a Redis batch answers -ERR.
        Self.failCode = SLUICE_CQL_ERROR_INVALID
        let redis = Batch(kind: Batch.requests, protocolID: Batch.redis, messages: [ByteBuffer(string: "*1\r\n$4\r\nPING\r\n")])
        chain.run(redis, from: 0, receiver: receiver)
        guard case .responses(let batch)? = receiver.outcomes.last else { return XCTFail("no reply") }
        XCTAssertEqual(String(buffer: batch.messages[0]), "-ERR deny: no\r\n")
    }

    // MARK: validation

    func testBatchPutBytesAcceptsOnlyOneWellFormedUncompressedFrameOfTheBatchsDirection() throws {
        let requests = api.batch_new(Int32(SLUICE_BATCH_REQUESTS), Int32(SLUICE_PROTOCOL_CQL))!
        let responses = api.batch_new(Int32(SLUICE_BATCH_RESPONSES), Int32(SLUICE_PROTOCOL_CQL))!
        let redis = api.batch_new(Int32(SLUICE_BATCH_REQUESTS), Int32(SLUICE_PROTOCOL_REDIS))!
        defer { [requests, responses, redis].forEach { api.batch_free($0) } }
        XCTAssertNil(api.batch_new(Int32(SLUICE_BATCH_REQUESTS), 4))
        func put(_ batch: OpaquePointer, _ bytes: ByteBuffer) -> Int32 {
            bytes.withUnsafeReadableBytes { api.batch_put_bytes(batch, api.batch_count(batch), $0.baseAddress, $0.count) }
        }
        let query = try CQLDriverVectors.vector("query_v4")
        XCTAssertEqual(put(requests, query), SLUICE_OK)
        XCTAssertEqual(put(requests, try CQLDriverVectors.vector("batch_v5")), SLUICE_OK)
        XCTAssertEqual(put(requests, try CQLDriverVectors.vector("query_lz4_v4")), SLUICE_ERROR_MALFORMED, "compressed")
        XCTAssertEqual(put(requests, query.getSlice(at: 0, length: query.readableBytes - 1)!), SLUICE_ERROR_MALFORMED)
        var two = query
        two.writeImmutableBuffer(query)
        XCTAssertEqual(put(requests, two), SLUICE_ERROR_MALFORMED, "two frames")
        XCTAssertEqual(put(requests, try CQLDriverVectors.vector("result_void_v4")), SLUICE_ERROR_MALFORMED, "a response")
        XCTAssertEqual(put(requests, ByteBuffer(string: "*1\r\n$4\r\nPING\r\n")), SLUICE_ERROR_MALFORMED)
        // A frame whose header is fine but whose body does not read (the query's length runs past the end).
        var broken = query
        broken.setInteger(Int32(1_000), at: CQLFrameHeader.size)
        XCTAssertEqual(put(requests, broken), SLUICE_ERROR_MALFORMED)
        XCTAssertEqual(put(responses, try CQLDriverVectors.vector("result_rows_v5")), SLUICE_OK)
        XCTAssertEqual(put(responses, query), SLUICE_ERROR_MALFORMED, "a request")
        XCTAssertEqual(put(redis, query), SLUICE_ERROR_MALFORMED)
        XCTAssertEqual(api.batch_count(requests), 2)
        XCTAssertEqual(api.batch_count(responses), 1)
        // The Redis functions refuse CQL batches.
        XCTAssertEqual(api.redis_arg_count(requests, 0), 0)
        var out = sluice_host_view()
        var count = 0
        XCTAssertEqual(api.redis_args(requests, 0, &out, 1, &count), SLUICE_ERROR_INVALID_ARGUMENT)
        XCTAssertEqual(api.redis_put_reply(responses, 0, SLUICE_REDIS_INTEGER, nil, 0, 1), SLUICE_ERROR_INVALID_ARGUMENT)
        // And the CQL ones Redis batches.
        var header = sluice_cql_header()
        XCTAssertEqual(api.cql_header(redis, 0, &header), SLUICE_ERROR_INVALID_ARGUMENT)
        XCTAssertEqual(api.cql_statement_count(redis, 0), 0)
    }

    // MARK: accessors

    func testHeaderQueryStatementAndPositionalValuesOfADriversQuery() throws {
        let batch = owned(Int32(SLUICE_BATCH_REQUESTS), [try CQLDriverVectors.vector("query_v4")])
        defer { api.batch_free(batch) }
        var header = sluice_cql_header()
        XCTAssertEqual(api.cql_header(batch, 0, &header), SLUICE_OK)
        XCTAssertEqual(header.version, 4)
        XCTAssertEqual(header.stream, 7)
        XCTAssertEqual(header.opcode, SLUICE_CQL_OP_QUERY)
        XCTAssertEqual(api.cql_statement_count(batch, 0), 1)
        var text = sluice_host_view()
        XCTAssertEqual(api.cql_query(batch, 0, 0, &text), SLUICE_OK)
        XCTAssertEqual(string(text), "SELECT v FROM ks.t WHERE k = ?")
        XCTAssertEqual(api.cql_query(batch, 0, 1, &text), SLUICE_ERROR_INVALID_ARGUMENT)
        // Zero-copy: the view points into the message's own bytes.
        var whole = sluice_host_view()
        XCTAssertEqual(api.batch_message_bytes(batch, 0, &whole), SLUICE_OK)
        XCTAssertTrue(text.ptr! >= whole.ptr! && text.ptr! + text.len <= whole.ptr! + whole.len)
        var statement = sluice_cql_statement()
        XCTAssertEqual(api.cql_statement(batch, 0, 0, &statement), SLUICE_OK)
        XCTAssertEqual(statement.kind, SLUICE_CQL_STATEMENT_SELECT)
        XCTAssertEqual(string(statement.keyspace), "ks")
        XCTAssertEqual(statement.keyspace_source, UInt32(SLUICE_CQL_KEYSPACE_FROM_TEXT))
        XCTAssertEqual(string(statement.table), "t")
        XCTAssertEqual(api.cql_value_count(batch, 0, 0), 2)
        var value = sluice_cql_value()
        XCTAssertEqual(api.cql_value(batch, 0, 0, 0, &value), SLUICE_OK)
        XCTAssertEqual(value.state, SLUICE_CQL_VALUE_SET)
        XCTAssertEqual(bytes(value.bytes), [0, 0, 0, 7])
        XCTAssertEqual(value.type, SLUICE_CQL_TYPE_UNKNOWN)
        XCTAssertEqual(api.cql_value(batch, 0, 0, 1, &value), SLUICE_OK)
        XCTAssertEqual(value.state, SLUICE_CQL_VALUE_NULL)
        XCTAssertEqual(api.cql_value(batch, 0, 0, 2, &value), SLUICE_END)
        XCTAssertEqual(api.cql_value_named(batch, 0, 0, "k", 1, &value), SLUICE_ERROR_NOT_FOUND, "positional values have no names")
    }

    func testNamedValuesAndTheV5KeyspaceField() throws {
        let batch = owned(Int32(SLUICE_BATCH_REQUESTS), [try CQLDriverVectors.vector("query_named_v4"),
                                                        try CQLDriverVectors.vector("query_now_v5")])
        defer { api.batch_free(batch) }
        var value = sluice_cql_value()
        XCTAssertEqual(api.cql_value_named(batch, 0, 0, "B b", 3, &value), SLUICE_OK)
        XCTAssertEqual(value.state, SLUICE_CQL_VALUE_UNSET)
        XCTAssertEqual(string(value.name), "B b")
        XCTAssertEqual(api.cql_value_named(batch, 0, 0, "a", 1, &value), SLUICE_OK)
        XCTAssertEqual(bytes(value.bytes), [0, 0, 0, 5])
        XCTAssertEqual(api.cql_value_named(batch, 0, 0, "c", 1, &value), SLUICE_ERROR_NOT_FOUND)
        var statement = sluice_cql_statement()
        XCTAssertEqual(api.cql_statement(batch, 0, 0, &statement), SLUICE_OK)
        XCTAssertEqual(statement.kind, SLUICE_CQL_STATEMENT_UPDATE)
        XCTAssertEqual(statement.keyspace.len, 0, "no keyspace: none named, no session")
        XCTAssertEqual(statement.keyspace_source, 0)
        XCTAssertEqual(api.cql_statement(batch, 1, 0, &statement), SLUICE_OK)
        XCTAssertEqual(statement.kind, SLUICE_CQL_STATEMENT_SELECT)
        XCTAssertEqual(string(statement.keyspace), "ks5")
        XCTAssertEqual(statement.keyspace_source, UInt32(SLUICE_CQL_KEYSPACE_FROM_REQUEST))
        XCTAssertEqual(string(statement.table), "t")
    }

    /// PREPARE through a session: the RESULT Prepared is recorded, and an EXECUTE of that id (from
    /// any client) reads the statement's text, kind, keyspace, and values by position and by name.
    func testExecuteReadsThePreparedStatementTheHostSaw() throws {
        let loop = EmbeddedEventLoop()
        let plan = RuntimePlan(chains: [ChainPlan(name: "main", steps: [])], sinks: [])
        let session = ChainSession(eventLoop: loop, allocator: allocator, plan: plan, clientAddress: "127.0.0.1:1", mainChain: 0)
        defer { session.close() }
        let registry = CQLPreparedStatements()
        let receiver = HandleTableTests.Collect()
        let prepare = Batch(kind: Batch.requests, protocolID: Batch.cql, messages: [try CQLDriverVectors.vector("prepare_v4")])
        let observer = CQLSessionObserver.observing(prepare, facts: session.facts, registry: registry, receiver: receiver)
        XCTAssertFalse(observer === receiver)
        observer.receive(.responses(Batch(kind: Batch.responses, protocolID: Batch.cql,
                                          messages: [try CQLDriverVectors.vector("result_prepared_v4")])))
        XCTAssertEqual(receiver.outcomes.count, 1)
        XCTAssertEqual(registry.count, 1)

        let requests = Batch(kind: Batch.requests, protocolID: Batch.cql,
                             messages: [execute(id: [0xAA, 0xBB], values: [[0, 0, 0, 9], nil]),
                                        execute(id: [0xCC], values: [[1]])])
        let parsed = try XCTUnwrap(requests.cqlMessage(at: 0))
        let info = try XCTUnwrap(parsed.statement(0, registry: registry))
        XCTAssertEqual(info.text.map { String(buffer: $0) }, "INSERT INTO t (k, v) VALUES (?, ?)")
        XCTAssertEqual(info.classification.kind, .insert)
        XCTAssertEqual(info.requestKeyspace.map { String(decoding: UnsafeBufferPointer(start: $0.pointer, count: $0.count), as: UTF8.self) }, "ks",
                       "the prepared metadata's keyspace")
        XCTAssertNil(try XCTUnwrap(requests.cqlMessage(at: 1)).statement(0, registry: registry)?.text,
                     "an id never seen prepared has no text")
        // Through the ABI (the shared registry): record the same statement there.
        CQLPreparedStatements.shared.record(id: ByteBuffer(bytes: [0xAA, 0xBB]), CQLPreparedStatements.Entry(
            text: ByteBuffer(string: "INSERT INTO t (k, v) VALUES (?, ?)"), keyspace: "ks",
            variables: [CQLColumnSpec(keyspace: "ks", table: "t", name: "k", type: .int),
                        CQLColumnSpec(keyspace: "ks", table: "t", name: "v", type: .varchar)]))
        let handle = owned(Int32(SLUICE_BATCH_REQUESTS), [execute(id: [0xAA, 0xBB], values: [[0, 0, 0, 9], nil]),
                                                          execute(id: [0xCC, 0xDD, 0xEE], values: [[1]])])
        defer { api.batch_free(handle) }
        var text = sluice_host_view()
        XCTAssertEqual(api.cql_query(handle, 0, 0, &text), SLUICE_OK)
        XCTAssertEqual(string(text), "INSERT INTO t (k, v) VALUES (?, ?)")
        XCTAssertEqual(api.cql_query(handle, 1, 0, &text), SLUICE_ERROR_NOT_FOUND)
        var statement = sluice_cql_statement()
        XCTAssertEqual(api.cql_statement(handle, 0, 0, &statement), SLUICE_OK)
        XCTAssertEqual(statement.kind, SLUICE_CQL_STATEMENT_INSERT)
        XCTAssertEqual(string(statement.keyspace), "ks")
        XCTAssertEqual(statement.keyspace_source, UInt32(SLUICE_CQL_KEYSPACE_FROM_REQUEST))
        var value = sluice_cql_value()
        XCTAssertEqual(api.cql_value_named(handle, 0, 0, "k", 1, &value), SLUICE_OK)
        XCTAssertEqual(bytes(value.bytes), [0, 0, 0, 9])
        XCTAssertEqual(value.type, SLUICE_CQL_TYPE_INT)
        XCTAssertEqual(api.cql_value(handle, 0, 0, 1, &value), SLUICE_OK)
        XCTAssertEqual(value.state, SLUICE_CQL_VALUE_NULL)
        XCTAssertEqual(string(value.name), "v")
        XCTAssertEqual(value.type, SLUICE_CQL_TYPE_VARCHAR)
    }

    func testBatchChildrenAndTheConnectionsKeyspaceFromUse() throws {
        let loop = EmbeddedEventLoop()
        let plan = RuntimePlan(chains: [ChainPlan(name: "main", steps: [])], sinks: [])
        let session = ChainSession(eventLoop: loop, allocator: allocator, plan: plan, clientAddress: "127.0.0.1:1", mainChain: 0)
        defer { session.close() }
        // USE ks2 answered by RESULT Set_keyspace: the session's keyspace follows.
        let use = Batch(kind: Batch.requests, protocolID: Batch.cql,
                        messages: [CQLFrameBuilder.query(version: .v4, stream: 3, query: "  use \"Ks2\"")])
        let receiver = HandleTableTests.Collect()
        let observer = CQLSessionObserver.observing(use, facts: session.facts, receiver: receiver)
        XCTAssertFalse(observer === receiver)
        let setKeyspace = CQLFrameBuilder.frame(version: .v4, isResponse: true, stream: 3, opcode: .result) {
            $0.writeInteger(CQLResultKind.setKeyspace.rawValue)
            $0.writeCQLString("Ks2")
        }
        observer.receive(.responses(Batch(kind: Batch.responses, protocolID: Batch.cql, messages: [setKeyspace])))
        XCTAssertEqual(session.facts.cql.keyspace.map { String(decoding: UnsafeBufferPointer(start: $0.pointer, count: $0.count), as: UTF8.self) }, "Ks2")
        XCTAssertEqual(session.facts.protocolID, Batch.cql)
        XCTAssertEqual(session.facts.cql.version, 4)
        // A plain SELECT needs no observer.
        let select = Batch(kind: Batch.requests, protocolID: Batch.cql,
                           messages: [CQLFrameBuilder.query(version: .v4, stream: 4, query: "SELECT * FROM t")])
        XCTAssertTrue(CQLSessionObserver.observing(select, facts: session.facts, receiver: receiver) === receiver)

        let batch = owned(Int32(SLUICE_BATCH_REQUESTS), [try CQLDriverVectors.vector("batch_v4"),
                                                        CQLFrameBuilder.query(version: .v4, stream: 4, query: "DELETE FROM t WHERE k = 1")])
        defer { api.batch_free(batch) }
        XCTAssertEqual(api.cql_statement_count(batch, 0), 2)
        var text = sluice_host_view()
        XCTAssertEqual(api.cql_query(batch, 0, 0, &text), SLUICE_OK)
        XCTAssertEqual(string(text), "INSERT INTO ks.t (k) VALUES (?)")
        XCTAssertEqual(api.cql_value_count(batch, 0, 1), 2)
        var value = sluice_cql_value()
        XCTAssertEqual(api.cql_value(batch, 0, 1, 0, &value), SLUICE_OK)
        XCTAssertEqual(string(value.bytes), "x")
        // The session's keyspace applies while one of its hooks runs.
        var statement = sluice_cql_statement()
        session.handles.runningHook(session: .passUnretained(session), step: .passUnretained(Self.failingStep)) {
            XCTAssertEqual(api.cql_statement(batch, 1, 0, &statement), SLUICE_OK)
        }
        XCTAssertEqual(statement.kind, SLUICE_CQL_STATEMENT_DELETE)
        XCTAssertEqual(string(statement.keyspace), "Ks2")
        XCTAssertEqual(statement.keyspace_source, UInt32(SLUICE_CQL_KEYSPACE_FROM_SESSION))
        XCTAssertEqual(string(statement.table), "t")
        // The statement's classification is kept with the message; the session's keyspace is not:
        // a later USE, or a call outside the session's hooks, is seen by the next call.
        session.facts.useKeyspace(Array("later".utf8))
        session.handles.runningHook(session: .passUnretained(session), step: .passUnretained(Self.failingStep)) {
            XCTAssertEqual(api.cql_statement(batch, 1, 0, &statement), SLUICE_OK)
        }
        XCTAssertEqual(string(statement.keyspace), "later")
        XCTAssertEqual(string(statement.table), "t")
        XCTAssertEqual(api.cql_statement(batch, 1, 0, &statement), SLUICE_OK)
        XCTAssertEqual(statement.keyspace.len, 0)
        XCTAssertEqual(statement.keyspace_source, 0)
        XCTAssertEqual(string(statement.table), "t")
    }

    /// cql_statement hands out the names `CQLStatement.classify` reads (its reference): as views of
    /// the text when they read as written, as bytes of their own when lower-casing or unquoting
    /// changes them (upper case, `""`, bytes beyond ASCII), and they stay valid while the message is.
    func testStatementNamesAreTheClassifiersWhetherViewsOfTheTextOrMade() throws {
        let texts = [
            "SELECT k, v FROM bench.kv WHERE k = 'k'", "select * from Ks.T", "SELECT * FROM \"MyKs\".\"My\"\"Table\"",
            "INSERT INTO \"plain\".users (k) VALUES (1)", "UPDATE ÉtÉ.Straße SET v = 1 WHERE k = 2", "USE \"CamelKs\"",
            "DELETE FROM t WHERE k = 1", "TRUNCATE TABLE ks.t", "CREATE KEYSPACE IF NOT EXISTS NewKs WITH x = 1",
            "SELECT * FROM \"unterminated", "-- note\nSELECT * FROM /* x.y */ \"\".t", "GRANT SELECT ON ks.t TO alice",
            "SELECT * FROM \u{212A}s.t", "\u{212A}EYSPACE",
        ]
        let batch = owned(Int32(SLUICE_BATCH_REQUESTS), texts.enumerated().map { i, text in
            CQLFrameBuilder.query(version: .v4, stream: Int16(i), query: text)
        })
        defer { api.batch_free(batch) }
        var statements: [sluice_cql_statement] = []
        for (i, text) in texts.enumerated() {
            var statement = sluice_cql_statement()
            XCTAssertEqual(api.cql_statement(batch, i, 0, &statement), SLUICE_OK, text)
            statements.append(statement)
        }
        // Asked again, each names the same bytes at the same place (parsed once, kept with the message).
        for (i, text) in texts.enumerated() {
            let expected = CQLStatement.classify(text)
            var again = sluice_cql_statement()
            XCTAssertEqual(api.cql_statement(batch, i, 0, &again), SLUICE_OK, text)
            XCTAssertEqual(again.keyspace.ptr, statements[i].keyspace.ptr, text)
            XCTAssertEqual(again.table.ptr, statements[i].table.ptr, text)
            let statement = statements[i]
            XCTAssertEqual(statement.kind, expected.kind.abiValue, text)
            XCTAssertEqual(statement.keyspace_source, expected.keyspace == nil ? 0 : UInt32(SLUICE_CQL_KEYSPACE_FROM_TEXT), text)
            XCTAssertEqual(statement.keyspace_source == 0 ? nil : string(statement.keyspace), expected.keyspace, text)
            XCTAssertEqual(string(statement.table), expected.table ?? "", text)
        }
        // What a view into the text is and what is made: a view points inside the message.
        var text = sluice_host_view()
        XCTAssertEqual(api.cql_query(batch, 0, 0, &text), SLUICE_OK)
        let inText = { (view: sluice_host_view) in view.ptr! >= text.ptr! && view.ptr! + view.len <= text.ptr! + text.len }
        XCTAssertTrue(inText(statements[0].keyspace), "bench: read as written")
        XCTAssertTrue(inText(statements[0].table), "kv: read as written")
        XCTAssertEqual(api.cql_query(batch, 1, 0, &text), SLUICE_OK)
        XCTAssertFalse(inText(statements[1].keyspace), "Ks is lower-cased")
        XCTAssertEqual(string(statements[1].keyspace), "ks")
        XCTAssertEqual(api.cql_query(batch, 2, 0, &text), SLUICE_OK)
        XCTAssertTrue(inText(statements[2].keyspace), "\"MyKs\": quoted, read as written")
        XCTAssertFalse(inText(statements[2].table), "\"My\"\"Table\" is unquoted")
        XCTAssertEqual(string(statements[2].table), "My\"Table")
    }

    /// What the accessors parsed of a message goes with it when other messages are inserted before
    /// it or removed, and is dropped when the message itself is replaced or removed.
    func testParsedMessagesMoveWithTheirMessages() throws {
        let select = { (table: String) in CQLFrameBuilder.query(version: .v4, stream: 1, query: "SELECT * FROM ks.\(table)") }
        let batch = Batch(kind: Batch.requests, protocolID: Batch.cql, messages: [select("a"), select("b")])
        let a = try XCTUnwrap(batch.cqlMessage(at: 0)), b = try XCTUnwrap(batch.cqlMessage(at: 1))
        XCTAssertTrue(batch.cqlMessage(at: 0) === a)
        batch.insert(select("c"), at: 0)  // c a b
        XCTAssertTrue(batch.cqlMessage(at: 1) === a)
        XCTAssertTrue(batch.cqlMessage(at: 2) === b)
        batch.insert(select("d"), at: 2)  // c a d b
        XCTAssertTrue(batch.cqlMessage(at: 3) === b)
        batch.append(select("e"))         // c a d b e
        let e = try XCTUnwrap(batch.cqlMessage(at: 4))
        batch.remove(at: 0)               // a d b e
        XCTAssertTrue(batch.cqlMessage(at: 0) === a)
        XCTAssertTrue(batch.cqlMessage(at: 2) === b)
        XCTAssertTrue(batch.cqlMessage(at: 3) === e)
        batch.put(select("f"), at: 2)     // a d f e
        let f = try XCTUnwrap(batch.cqlMessage(at: 2))
        XCTAssertFalse(f === b)
        XCTAssertEqual(f.statement(0)?.text.map { String(buffer: $0) }, "SELECT * FROM ks.f")
        batch.remove(at: 1)               // a f e
        batch.remove(at: 0)               // f e
        XCTAssertTrue(batch.cqlMessage(at: 0) === f)
        XCTAssertTrue(batch.cqlMessage(at: 1) === e)
        batch.clearForReuse()
        batch.appendReceived(select("g"))
        XCTAssertEqual(batch.cqlMessage(at: 0)?.statement(0)?.text.map { String(buffer: $0) }, "SELECT * FROM ks.g")
    }

    /// A batch emptied for the next read (`clearForReuse`, as the client session does) keeps its
    /// parsed messages and statements for reuse: the next requests in those slots read as their
    /// own, with nothing of the earlier ones (text, kind, names made for them, the v5 keyspace,
    /// named values, statement count), and nothing keeps the earlier read's buffer. Views a plugin
    /// takes stay valid and right while the batch lives, whatever it reads after them.
    func testARecycledSlotShowsOnlyItsOwnRequest() throws {
        let batch = Batch(kind: Batch.requests, protocolID: Batch.cql)
        let handle = HandleTable.current.register(batch, kind: .ownedBatch)
        defer { HandleTable.current.retire(handle) }
        // As a read delivers them: slices of one buffer.
        func read(_ frames: [ByteBuffer]) -> ByteBuffer {
            var buffer = allocator.buffer(capacity: 1024)
            var starts: [Int] = []
            for var frame in frames { starts.append(buffer.writerIndex); buffer.writeBuffer(&frame) }
            for (i, start) in starts.enumerated() {
                let end = i + 1 < starts.count ? starts[i + 1] : buffer.writerIndex
                batch.appendReceived(buffer.getSlice(at: start, length: end - start)!)
            }
            return buffer
        }
        var first: ByteBuffer? = read([try CQLDriverVectors.vector("query_now_v5"),
                                      CQLFrameBuilder.query(version: .v4, stream: 2, query: "select * from Ks.T"),
                                      try CQLDriverVectors.vector("query_named_v4")])
        var statement = sluice_cql_statement(), value = sluice_cql_value(), text = sluice_host_view()
        XCTAssertEqual(api.cql_statement(handle, 0, 0, &statement), SLUICE_OK)
        XCTAssertEqual(string(statement.keyspace), "ks5")
        XCTAssertEqual(api.cql_statement(handle, 1, 0, &statement), SLUICE_OK)
        XCTAssertEqual(string(statement.keyspace), "ks", "made: lower-cased")
        XCTAssertEqual(api.cql_value_named(handle, 2, 0, "a", 1, &value), SLUICE_OK)
        // Weak: a strong reference would (rightly) keep them from being reused.
        weak let parsed = batch.cqlMessage(at: 1)
        weak let info = parsed?.statement(0)
        XCTAssertNotNil(info)

        batch.clearForReuse()
        XCTAssertEqual(parsed?.isLoaded, false, "kept, emptied")
        XCTAssertEqual(info?.isLoaded, false)
        XCTAssertNil(batch.cqlMessage(at: 0), "no message, no parsed form")
        // Nothing holds the first read's storage any more: writing to it does not copy it.
        let before = first!.withUnsafeReadableBytes { $0.baseAddress }
        XCTAssertEqual(first!.withUnsafeMutableReadableBytes { $0.baseAddress }, before, "the read buffer is still referenced")
        first = nil

        _ = read([try CQLDriverVectors.vector("query_v4"),
                  CQLFrameBuilder.query(version: .v4, stream: 3, query: "SELECT * FROM plain_table"),
                  CQLFrameBuilder.query(version: .v4, stream: 4, query: "INSERT INTO t2 (k) VALUES (1)")])
        XCTAssertTrue(batch.cqlMessage(at: 1) === parsed, "the slot's object is reused")
        XCTAssertTrue(parsed?.statement(0) === info, "and its statement's")
        // Message 0: the driver's SELECT ks.t, two positional values; no v5 keyspace any more.
        XCTAssertEqual(api.cql_statement(handle, 0, 0, &statement), SLUICE_OK)
        let keyspace0 = statement.keyspace, table0 = statement.table
        XCTAssertEqual(statement.kind, SLUICE_CQL_STATEMENT_SELECT)
        XCTAssertEqual(string(statement.keyspace), "ks")
        XCTAssertEqual(statement.keyspace_source, UInt32(SLUICE_CQL_KEYSPACE_FROM_TEXT))
        XCTAssertEqual(api.cql_value_count(handle, 0, 0), 2)
        XCTAssertEqual(api.cql_value(handle, 0, 0, 0, &value), SLUICE_OK)
        XCTAssertEqual(bytes(value.bytes), [0, 0, 0, 7])
        XCTAssertEqual(api.cql_query(handle, 0, 0, &text), SLUICE_OK)
        let text0 = text
        // Message 1: names no keyspace (not the earlier made "ks"), table plain_table.
        XCTAssertEqual(api.cql_statement(handle, 1, 0, &statement), SLUICE_OK)
        XCTAssertEqual(statement.kind, SLUICE_CQL_STATEMENT_SELECT)
        XCTAssertEqual(statement.keyspace.len, 0)
        XCTAssertEqual(statement.keyspace_source, 0)
        XCTAssertEqual(string(statement.table), "plain_table")
        XCTAssertEqual(api.cql_value_count(handle, 1, 0), 0)
        // Message 2: no values (not the earlier named ones).
        XCTAssertEqual(api.cql_statement(handle, 2, 0, &statement), SLUICE_OK)
        XCTAssertEqual(statement.kind, SLUICE_CQL_STATEMENT_INSERT)
        XCTAssertEqual(string(statement.table), "t2")
        XCTAssertEqual(api.cql_value_count(handle, 2, 0), 0)
        XCTAssertEqual(api.cql_value(handle, 2, 0, 0, &value), SLUICE_END)
        XCTAssertEqual(api.cql_value_named(handle, 2, 0, "a", 1, &value), SLUICE_ERROR_NOT_FOUND)
        XCTAssertEqual(api.cql_statement_count(handle, 2), 1)
        // A message replaced: the others' views still read right.
        let replacement = CQLFrameBuilder.query(version: .v4, stream: 4, query: "SELECT * FROM other.x")
        XCTAssertEqual(replacement.withUnsafeReadableBytes { api.batch_put_bytes(handle, 2, $0.baseAddress, $0.count) }, SLUICE_OK)
        XCTAssertEqual(api.cql_statement(handle, 2, 0, &statement), SLUICE_OK)
        XCTAssertEqual(string(statement.keyspace), "other")
        XCTAssertEqual(string(keyspace0), "ks")
        XCTAssertEqual(string(table0), "t")
        XCTAssertEqual(string(text0), "SELECT v FROM ks.t WHERE k = ?")

        // Emptied again and filled with fewer messages, a BATCH where a QUERY's statement was: the
        // BATCH's children read as its own (the recycled statement is not reused for them), and
        // the slots past the messages answer nothing.
        batch.clearForReuse()
        _ = read([CQLFrameBuilder.query(version: .v4, stream: 5, query: "DROP TABLE ks.gone"),
                  try CQLDriverVectors.vector("batch_v4")])
        XCTAssertEqual(batch.count, 2)
        XCTAssertEqual(api.cql_statement(handle, 0, 0, &statement), SLUICE_OK)
        XCTAssertEqual(statement.kind, SLUICE_CQL_STATEMENT_DDL)
        XCTAssertEqual(api.cql_statement_count(handle, 1), 2)
        XCTAssertEqual(api.cql_statement(handle, 1, 0, &statement), SLUICE_OK)
        XCTAssertEqual(statement.kind, SLUICE_CQL_STATEMENT_INSERT)
        XCTAssertEqual(api.cql_query(handle, 1, 1, &text), SLUICE_ERROR_NOT_FOUND, "a prepared child never seen prepared")
        XCTAssertEqual(api.cql_value_count(handle, 1, 2), 0)
        XCTAssertEqual(api.cql_statement(handle, 2, 0, &statement), SLUICE_ERROR_INVALID_ARGUMENT)
        XCTAssertEqual(api.cql_statement_count(handle, 2), 0)
    }

    /// The parsed form reads a message's header in one look; it must accept exactly the frames the
    /// frame scanner accepts (no negotiated version, v3 to v5, any length) as one whole frame, with
    /// the same header, for well-formed frames and for every kind of broken header.
    func testTheParsedHeaderIsTheScannersOnEveryFrame() throws {
        let frames = [try CQLDriverVectors.vector("query_v4"), try CQLDriverVectors.vector("query_now_v5"),
                      try CQLDriverVectors.vector("prepare_v4"), try CQLDriverVectors.vector("result_rows_v4"),
                      try CQLDriverVectors.vector("result_void_v4"),
                      CQLFrameBuilder.query(version: .v3, stream: -2, query: "SELECT 1")]
        var checked = 0
        for frame in frames {
            let original = Array(frame.readableBytesView)
            var variants = [original, Array(original.dropLast()), original + [0], Array(original.prefix(8))]
            for position in 0..<CQLFrameHeader.size {
                for value: UInt8 in [0x00, 0x01, 0x02, 0x03, 0x05, 0x06, 0x7F, 0x80, 0x83, 0x84, 0x85, 0xFF,
                                     original[position] &+ 1, original[position] &- 1] {
                    var variant = original
                    variant[position] = value
                    variants.append(variant)
                }
            }
            for bytes in variants {
                for isResponse in [false, true] {
                    let buffer = ByteBuffer(bytes: bytes)
                    let scanner = CQLFrameScanner(direction: isResponse ? .responses : .requests, maxFrameBytes: Int.max,
                                                  supportedVersions: [.v3, .v4, .v5])
                    let expected = (try? scanner.scan(buffer)).flatMap { $0?.frameLength == bytes.count ? $0 : nil }
                    let read = buffer.withUnsafeReadableBytes { CQLParsedMessage.header(of: $0, isResponse: isResponse) }
                    XCTAssertEqual(read, expected, "\(bytes.prefix(9)) as \(isResponse ? "response" : "request")")
                    if expected != nil { checked += 1 }
                }
            }
        }
        XCTAssertGreaterThan(checked, 20, "well-formed variants were among them")
    }

    /// A recycled parsed message asked for its decoded message before the slot's next frame is read
    /// into it (nothing does this today) answers nil then, and the frame's own message once loaded.
    func testARecycledMessageDecodesTheFrameLoadedIntoIt() throws {
        let batch = Batch(kind: Batch.requests, protocolID: Batch.cql,
                          messages: [CQLFrameBuilder.query(version: .v4, stream: 1, query: "SELECT * FROM ks.t")])
        weak let parsed = batch.cqlMessage(at: 0)
        XCTAssertNotNil(parsed?.statement(0))
        batch.clearForReuse()
        XCTAssertEqual(parsed?.isLoaded, false)
        XCTAssertNil(parsed?.message, "recycled: no message")
        batch.appendReceived(try CQLDriverVectors.vector("prepare_v4"))
        XCTAssertTrue(batch.cqlMessage(at: 0) === parsed)
        guard case .prepare(let prepare)? = batch.cqlMessage(at: 0)?.message else {
            return XCTFail("the PREPARE loaded into the recycled object does not decode")
        }
        XCTAssertEqual(String(buffer: prepare.query), "INSERT INTO t (k, v) VALUES (?, ?)")
    }

    /// The same for responses: a recycled slot's RESULT Rows are not the next message's.
    func testARecycledResponseSlotHasNoEarlierRows() throws {
        let batch = Batch(kind: Batch.responses, protocolID: Batch.cql,
                          messages: [try CQLDriverVectors.vector("result_rows_v4")])
        let handle = HandleTable.current.register(batch, kind: .ownedBatch)
        defer { HandleTable.current.retire(handle) }
        var rows: Int64 = 0, columns: Int32 = 0
        XCTAssertEqual(api.cql_result_rows(handle, 0, &rows, &columns), SLUICE_OK)
        XCTAssertGreaterThan(columns, 0)
        weak let parsed = batch.cqlMessage(at: 0)
        batch.clearForReuse()
        batch.appendReceived(try CQLDriverVectors.vector("result_void_v4"))
        XCTAssertNotNil(parsed)
        XCTAssertTrue(batch.cqlMessage(at: 0) === parsed)
        XCTAssertEqual(api.cql_result_rows(handle, 0, &rows, &columns), SLUICE_ERROR_NOT_FOUND)
        var cursor = sluice_cql_cursor()
        XCTAssertEqual(api.cql_rows_init(handle, 0, &cursor), SLUICE_ERROR_NOT_FOUND)
    }

    // MARK: rows

    func testRowsCursorColumnsAndCellReplacement() throws {
        let batch = owned(Int32(SLUICE_BATCH_RESPONSES), [try CQLDriverVectors.vector("result_rows_v4"),
                                                         try CQLDriverVectors.vector("result_void_v4")])
        defer { api.batch_free(batch) }
        var rows: Int64 = 0
        var columns: Int32 = 0
        XCTAssertEqual(api.cql_result_rows(batch, 0, &rows, &columns), SLUICE_OK)
        XCTAssertEqual(rows, 2)
        XCTAssertEqual(columns, 3)
        XCTAssertEqual(api.cql_result_rows(batch, 1, &rows, &columns), SLUICE_ERROR_NOT_FOUND)
        var column = sluice_cql_column()
        XCTAssertEqual(api.cql_result_column(batch, 0, 1, &column), SLUICE_OK)
        XCTAssertEqual([string(column.keyspace), string(column.table), string(column.name)], ["ks", "t", "v"])
        XCTAssertEqual(column.type, SLUICE_CQL_TYPE_VARCHAR)
        XCTAssertEqual(api.cql_result_column(batch, 0, 2, &column), SLUICE_OK)
        XCTAssertEqual(column.type, SLUICE_CQL_TYPE_MAP)
        XCTAssertEqual(api.cql_result_column(batch, 0, 3, &column), SLUICE_ERROR_INVALID_ARGUMENT)

        var cursor = sluice_cql_cursor()
        var cell = sluice_cql_cell()
        var seen: [(Int64, Int32, Int32, [UInt8])] = []
        XCTAssertEqual(api.cql_rows_init(batch, 0, &cursor), SLUICE_OK)
        while api.cql_rows_next(&cursor, &cell) == SLUICE_OK { seen.append((cell.row, cell.column, cell.state, bytes(cell.bytes))) }
        XCTAssertEqual(seen.count, 6)
        XCTAssertEqual(seen[0].3, [0, 0, 0, 1])
        XCTAssertEqual(seen[1].3, Array("a".utf8))
        XCTAssertEqual(seen[4].2, SLUICE_CQL_VALUE_NULL)
        XCTAssertEqual(seen[4].0, 1)
        XCTAssertEqual(seen[4].1, 1)
        XCTAssertEqual(api.cql_rows_next(&cursor, &cell), SLUICE_END)

        // Replace row 0's v with "redacted" and row 1's v (null) with "z": the driver reads the result.
        let replacement = Array("redacted".utf8)
        var input = sluice_cql_input_value(state: SLUICE_CQL_VALUE_SET, reserved: 0, bytes: nil, len: replacement.count)
        replacement.withUnsafeBufferPointer { input.bytes = $0.baseAddress; XCTAssertEqual(api.cql_set_cell(batch, 0, 0, 1, &input), SLUICE_OK) }
        XCTAssertEqual(api.cql_rows_next(&cursor, &cell), SLUICE_ERROR_STATE, "the batch changed")
        let z: [UInt8] = [UInt8(ascii: "z")]
        z.withUnsafeBufferPointer {
            var value = sluice_cql_input_value(state: SLUICE_CQL_VALUE_SET, reserved: 0, bytes: $0.baseAddress, len: 1)
            XCTAssertEqual(api.cql_set_cell(batch, 0, 1, 1, &value), SLUICE_OK)
        }
        var null = sluice_cql_input_value(state: SLUICE_CQL_VALUE_NULL, reserved: 0, bytes: nil, len: 0)
        XCTAssertEqual(api.cql_set_cell(batch, 0, 2, 0, &null), SLUICE_ERROR_INVALID_ARGUMENT, "no row 2")
        XCTAssertEqual(api.cql_set_cell(batch, 1, 0, 0, &null), SLUICE_ERROR_NOT_FOUND, "not rows")
        var whole = sluice_host_view()
        XCTAssertEqual(api.batch_message_bytes(batch, 0, &whole), SLUICE_OK)
        guard case .result(.rows(let edited)) = try message(ByteBuffer(bytes: bytes(whole))) else { return XCTFail("not rows") }
        var reader = edited.makeCursor()
        var cells: [ByteBuffer?] = []
        while reader.nextRow() { while let cell = reader.nextCell() { cells.append(cell) } }
        XCTAssertEqual(cells.map { $0.map { Array($0.readableBytesView) } },
                       [[0, 0, 0, 1], Array("redacted".utf8), seen[2].3, [0, 0, 0, 2], [UInt8(ascii: "z")], nil])
        XCTAssertEqual(edited.metadata.pagingState.map { String(buffer: $0) }, "next", "the rest of the frame is kept")

        // The driver reads an edited frame (one it can decode whole: int and text columns).
        let simple = CQLFrameBuilder.resultRows(version: .v5, stream: 9, keyspace: "ks", table: "t",
                                                columns: [("k", .int), ("v", .varchar)],
                                                rows: [[ByteBuffer(bytes: [0, 0, 0, 1]), ByteBuffer(string: "secret")]])
        let other = owned(Int32(SLUICE_BATCH_RESPONSES), [simple])
        defer { api.batch_free(other) }
        replacement.withUnsafeBufferPointer { input.bytes = $0.baseAddress; XCTAssertEqual(api.cql_set_cell(other, 0, 0, 1, &input), SLUICE_OK) }
        XCTAssertEqual(api.batch_message_bytes(other, 0, &whole), SLUICE_OK)
        let decoded = try CQLDriverVectors.check(["rows": ("response", ByteBuffer(bytes: bytes(whole)))])
        let rowsSeen = try XCTUnwrap((decoded["rows"] as? [String: Any])?["rows"] as? [[Any]], "\(decoded)")
        XCTAssertEqual(rowsSeen.map { "\($0[0]) \($0[1])" }, ["1 redacted"])
    }

    /// A cursor is the plugin's memory: one never initialised or overwritten (each word in turn,
    /// with values that index before the batch, overflow an offset or a column number) gets
    /// SLUICE_ERROR_STATE and the host keeps running. Before, a negative message index and a cell
    /// number past Int32 trapped the host.
    func testGarbageCursorsGetStateErrorsNotACrash() throws {
        let batch = owned(Int32(SLUICE_BATCH_RESPONSES), [try CQLDriverVectors.vector("result_rows_v4"),
                                                         try CQLDriverVectors.vector("result_void_v4")])
        defer { api.batch_free(batch) }
        var cell = sluice_cql_cell()
        var zeroed = sluice_cql_cursor()
        XCTAssertEqual(api.cql_rows_next(&zeroed, &cell), SLUICE_ERROR_STATE, "never initialised")

        var valid = sluice_cql_cursor()
        XCTAssertEqual(api.cql_rows_init(batch, 0, &valid), SLUICE_OK)
        let garbage: [UInt64] = [UInt64.max, UInt64(Int64.max), UInt64(bitPattern: Int64.min), 1 << 40, 1 << 32,
                                 UInt64(Int32.max) + 1, 3, 2, 1, 0x4141_4141_4141_4141]
        var refused = 0
        for word in 0..<8 {
            for value in garbage {
                var cursor = valid
                let original = withUnsafeBytes(of: &cursor.opaque) { $0.load(fromByteOffset: word * 8, as: UInt64.self) }
                if original == value { continue }
                withUnsafeMutableBytes(of: &cursor.opaque) { $0.storeBytes(of: value, toByteOffset: word * 8, as: UInt64.self) }
                // Walk it to the end as a plugin would: every step is a cell of the real message or an error.
                var steps = 0
                var status = api.cql_rows_next(&cursor, &cell)
                while status == SLUICE_OK, steps < 10 {
                    XCTAssert((0..<2).contains(cell.row) && (0..<3).contains(cell.column), "word \(word) = \(value)")
                    steps += 1
                    status = api.cql_rows_next(&cursor, &cell)
                }
                if word == 7 {
                    XCTAssertEqual(steps, 6, "the reserved word is not read")
                } else if word == 4, value <= 6 {
                    // A cell number within the message's is not an error (the offset still is the
                    // first cell's): the cells read are real cells, then the end.
                    XCTAssertEqual(status, SLUICE_END, "word \(word) = \(value)")
                } else {
                    XCTAssertEqual(status, SLUICE_ERROR_STATE, "word \(word) = \(value)")
                    refused += 1
                }
            }
        }
        XCTAssertGreaterThan(refused, 50)
        // A cursor walked to its end with its cell number pushed past Int32 and its counts to match.
        var cursor = valid
        cursor.opaque.4 = 1 << 40
        cursor.opaque.5 = UInt64.max
        cursor.opaque.6 = 1 << 41
        XCTAssertEqual(api.cql_rows_next(&cursor, &cell), SLUICE_ERROR_STATE)
        // The valid cursor still walks the six cells.
        var steps = 0
        while api.cql_rows_next(&valid, &cell) == SLUICE_OK { steps += 1 }
        XCTAssertEqual(steps, 6)
    }

    // MARK: builders

    func testBuildersMakeFramesTheDriverReads() throws {
        let responses = api.batch_new(Int32(SLUICE_BATCH_RESPONSES), Int32(SLUICE_PROTOCOL_CQL))!
        let requests = api.batch_new(Int32(SLUICE_BATCH_REQUESTS), Int32(SLUICE_PROTOCOL_CQL))!
        defer { api.batch_free(responses); api.batch_free(requests) }
        XCTAssertEqual(api.cql_put_error(responses, 0, 5, 33, SLUICE_CQL_ERROR_UNAUTHORIZED, "denied", 6), SLUICE_OK)
        XCTAssertEqual(api.cql_put_error(responses, 1, 5, 33, 0x1000, "x", 1), SLUICE_ERROR_INVALID_ARGUMENT, "UNAVAILABLE has fields")
        XCTAssertEqual(api.cql_put_error(responses, 1, 2, 33, SLUICE_CQL_ERROR_INVALID, "x", 1), SLUICE_ERROR_INVALID_ARGUMENT, "v2")
        XCTAssertEqual(api.cql_put_result_void(responses, 1, 4, 34), SLUICE_OK)
        let names = ["k", "v"].map { Array($0.utf8) }
        let one: [UInt8] = [0, 0, 0, 1], text = Array("hello".utf8)
        try names[0].withUnsafeBufferPointer { k in try names[1].withUnsafeBufferPointer { v in
            try one.withUnsafeBufferPointer { o in try text.withUnsafeBufferPointer { t in
                let columns = [sluice_cql_column_def(name: k.baseAddress, name_len: 1, type: SLUICE_CQL_TYPE_INT, reserved: 0),
                               sluice_cql_column_def(name: v.baseAddress, name_len: 1, type: SLUICE_CQL_TYPE_VARCHAR, reserved: 0)]
                let cells = [sluice_cql_input_value(state: SLUICE_CQL_VALUE_SET, reserved: 0, bytes: o.baseAddress, len: 4),
                             sluice_cql_input_value(state: SLUICE_CQL_VALUE_SET, reserved: 0, bytes: t.baseAddress, len: 5),
                             sluice_cql_input_value(state: SLUICE_CQL_VALUE_SET, reserved: 0, bytes: o.baseAddress, len: 4),
                             sluice_cql_input_value(state: SLUICE_CQL_VALUE_NULL, reserved: 0, bytes: nil, len: 0)]
                XCTAssertEqual(api.cql_put_result_rows(responses, 2, 4, 35, "ks", 2, "t", 1, columns, 2, cells, 2), SLUICE_OK)
                var bad = columns
                bad[1].type = SLUICE_CQL_TYPE_MAP
                XCTAssertEqual(api.cql_put_result_rows(responses, 3, 4, 35, "ks", 2, "t", 1, bad, 2, cells, 2),
                               SLUICE_ERROR_INVALID_ARGUMENT, "a type with parameters")
                XCTAssertEqual(api.cql_put_query(requests, 0, 4, 1, "SELECT * FROM ks.t WHERE k = ?", 30, 0x0004, cells, 1), SLUICE_OK)
            } }
        } }
        XCTAssertEqual(api.cql_put_query(responses, 3, 4, 1, "SELECT 1", 8, 1, nil, 0), SLUICE_ERROR_INVALID_ARGUMENT, "a response batch")
        XCTAssertEqual(api.batch_count(responses), 3)
        var items: [String: (kind: String, bytes: ByteBuffer)] = [:]
        for i in 0..<3 {
            var view = sluice_host_view()
            XCTAssertEqual(api.batch_message_bytes(responses, i, &view), SLUICE_OK)
            items["r\(i)"] = ("response", ByteBuffer(bytes: bytes(view)))
        }
        var view = sluice_host_view()
        XCTAssertEqual(api.batch_message_bytes(requests, 0, &view), SLUICE_OK)
        items["q"] = ("query", ByteBuffer(bytes: bytes(view)))
        let decoded = try CQLDriverVectors.check(items)
        XCTAssertTrue("\(decoded["r0"]!)".contains("denied"), "\(decoded["r0"]!)")
        XCTAssertTrue("\(decoded["r2"]!)".contains("hello"), "\(decoded["r2"]!)")
        XCTAssertTrue("\(decoded["q"]!)".contains("SELECT * FROM ks.t WHERE k = ?"), "\(decoded["q"]!)")
        // And the accessors read what the builders made.
        var statement = sluice_cql_statement()
        XCTAssertEqual(api.cql_statement(requests, 0, 0, &statement), SLUICE_OK)
        XCTAssertEqual(string(statement.table), "t")
        var header = sluice_cql_header()
        XCTAssertEqual(api.cql_header(responses, 0, &header), SLUICE_OK)
        XCTAssertEqual([Int(header.version), Int(header.stream), Int(header.opcode)], [5, 33, Int(SLUICE_CQL_OP_ERROR)])
    }
}

extension CQLTransformABITests {
    func testUseIsRecognisedByItsFirstWord() {
        for (text, expected) in [("USE ks", true), ("  use\n\"Ks\"", true), ("use", true), ("-- c\nUSE ks", true),
                                 ("/* x */ use ks", true), ("user_table", false), ("SELECT 1", false), ("us", false),
                                 ("useful", false), ("", false)] {
            let bytes = Array(text.utf8)
            XCTAssertEqual(bytes.withUnsafeBytes { CQLSessionObserver.startsWithUse($0) }, expected, text)
        }
    }
}

// MARK: answers stamped with their request's stream and version

extension CQLTransformABITests {
    /// How the answering step answers: 0 call_respond, 1 call_answer each request then call_pass.
    nonisolated(unsafe) static var answerMode = 0

    /// Answers request 0 with raw bytes of a v4 RESULT Void on stream 99 (the request is on 21) and
    /// request 1 with a v5 RESULT Void on its own stream (the request is v4).
    static let answeringStep: TransformStep = {
        let step = TransformStep(
            pluginName: "test", transformName: "answer", label: "main[0] answer",
            descriptor: LoadedTransform(
                name: "answer", description: "", protocols: UInt32(SLUICE_PROTOCOL_CQL),
                configNew: { _, _, _ in SLUICE_OK }, configFree: nil, instanceNew: nil, instanceFree: nil,
                onRequests: { _, call, _ in
                    let api = HostAPI.table.pointee
                    let replies = api.batch_new(Int32(SLUICE_BATCH_RESPONSES), Int32(SLUICE_PROTOCOL_CQL))!
                    let wrongStream = CQLFrameBuilder.frame(version: .v4, isResponse: true, stream: 99, opcode: .result) {
                        $0.writeInteger(Int32(1))  // Void
                    }
                    _ = wrongStream.withUnsafeReadableBytes { api.batch_put_bytes(replies, 0, $0.baseAddress, $0.count) }
                    _ = api.cql_put_result_void(replies, 1, 5, 22)
                    if CQLTransformABITests.answerMode == 0 { return api.call_respond(call, replies) }
                    _ = api.call_answer(call, 0, replies, 0)
                    _ = api.call_answer(call, 1, replies, 1)
                    api.batch_free(replies)
                    return api.call_pass(call)
                },
                onResponses: nil))
        step.hasConfig = true
        return step
    }()

    func testACQLAnswerGoesOutOnItsRequestsStreamAndAnotherVersionIsRefused() throws {
        let loop = EmbeddedEventLoop()
        let plan = RuntimePlan(chains: [ChainPlan(name: "main", steps: [.transform(Self.answeringStep)])], sinks: [])
        let session = ChainSession(eventLoop: loop, allocator: allocator, plan: plan, clientAddress: "127.0.0.1:1", mainChain: 0)
        defer { session.close() }
        let chain = try session.chain(0)
        for mode in [0, 1] {
            Self.answerMode = mode
            let receiver = HandleTableTests.Collect()
            let requests = Batch(kind: Batch.requests, protocolID: Batch.cql, messages: [Int16(21), 22].map { stream in
                CQLFrameBuilder.frame(version: .v4, isResponse: false, stream: stream, opcode: .query) { body in
                    body.writeCQLLongString("SELECT 1")
                    body.writeInteger(CQLConsistency.one.rawValue)
                    body.writeInteger(UInt8(0))
                }
            })
            chain.run(requests, from: 0, receiver: receiver)
            loop.run()
            guard case .responses(let batch)? = receiver.outcomes.first else { return XCTFail("mode \(mode): no reply") }
            XCTAssertEqual(batch.count, 2, "mode \(mode)")
            // Request 0: the plugin's frame, with the request's stream.
            XCTAssertEqual(CQLRequestIdentity(frame: batch.messages[0]), CQLRequestIdentity(version: .v4, stream: 21), "mode \(mode)")
            XCTAssertEqual(batch.messages[0].getInteger(at: batch.messages[0].readerIndex, as: UInt8.self), 0x84, "mode \(mode)")
            guard case .result(_) = try message(batch.messages[0]) else { return XCTFail("mode \(mode): not the RESULT") }
            // Request 1: a v5 frame for a v4 request is refused with an ERROR in v4 on its stream.
            XCTAssertEqual(CQLRequestIdentity(frame: batch.messages[1]), CQLRequestIdentity(version: .v4, stream: 22), "mode \(mode)")
            guard case .error(let error) = try message(batch.messages[1]) else { return XCTFail("mode \(mode): not an ERROR") }
            XCTAssertEqual(error.code, .serverError)
            XCTAssertEqual(error.message, "sluice: transform main[0] answer answered a v4 request with a v5 frame")
        }
    }
}
