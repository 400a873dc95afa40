import NIOCore
import XCTest
@testable import SluiceHost

/// Sluice's codec against bytes it did not make: requests encoded by the DataStax python driver,
/// responses by the Python test backend (Tests/cql/codec_vectors.py emit), and the other way round:
/// frames Sluice builds, read by the driver (codec_vectors.py check).
final class CQLDriverVectorTests: XCTestCase {
    private func text(_ buffer: ByteBuffer?) -> String? { buffer.map { String(buffer: $0) } }
    private func int32(_ value: CQLValue?) -> Int32? { value?.bytes?.getInteger(at: value!.bytes!.readerIndex, as: Int32.self) }

    func testStartupOptionsRegisterAuthResponse() throws {
        let (frame, message) = try readMessage(try CQLDriverVectors.vector("startup_v4"), direction: .requests)
        XCTAssertEqual(frame.header, CQLFrameHeader(version: .v4, isResponse: false, stream: 1, opcode: .startup,
                                                    bodyLength: frame.header.bodyLength))
        guard case .startup(let startup) = message else { return XCTFail("\(message)") }
        XCTAssertEqual(startup.cqlVersion, "3.0.0")
        XCTAssertEqual(try startup.compression(), .lz4)
        XCTAssertEqual(startup.options["DRIVER_NAME"], "x")

        let (options, optionsMessage) = try readMessage(try CQLDriverVectors.vector("options_v5"), direction: .requests)
        XCTAssertEqual(options.header.version, .v5)
        guard case .options = optionsMessage else { return XCTFail("\(optionsMessage)") }

        guard case .register(let register) = try readMessage(try CQLDriverVectors.vector("register_v4"), direction: .requests).1
        else { return XCTFail() }
        XCTAssertEqual(register.eventTypes, ["SCHEMA_CHANGE", "STATUS_CHANGE"])

        guard case .authResponse(let token) = try readMessage(try CQLDriverVectors.vector("auth_response_v4"), direction: .requests).1
        else { return XCTFail() }
        XCTAssertEqual(token.plainCredentials?.user, "cassandra")
        XCTAssertEqual(token.plainCredentials?.password, "secret")
    }

    func testQueryParametersV4AndV5() throws {
        for version in [CQLVersion.v4, .v5] {
            let (frame, message) = try readMessage(try CQLDriverVectors.vector("query_v\(version.rawValue)"), direction: .requests)
            XCTAssertEqual(frame.header.stream, 7)
            XCTAssertEqual(frame.header.version, version)
            guard case .query(let query) = message else { return XCTFail("\(message)") }
            XCTAssertEqual(query.queryText, "SELECT v FROM ks.t WHERE k = ?")
            let p = query.parameters
            XCTAssertEqual(p.consistency, .quorum)
            XCTAssertEqual(p.serialConsistency, .localSerial)
            XCTAssertEqual(p.pageSize, 100)
            XCTAssertEqual(text(p.pagingState), "PS")
            XCTAssertEqual(p.defaultTimestamp, 1_234_567_890_123)
            XCTAssertEqual(p.values.count, 2)
            XCTAssertEqual(int32(p.values.value(at: 0)), 7)
            XCTAssertEqual(p.values.value(at: 1), .null)
            XCTAssertNil(p.values.value(at: 2))
            XCTAssertEqual(p.keyspace, version == .v5 ? "ks" : nil)
            XCTAssertEqual(p.flags.contains(.keyspace), version == .v5)
        }
    }

    func testNamedValuesUnsetAndV5NowInSeconds() throws {
        guard case .query(let named) = try readMessage(try CQLDriverVectors.vector("query_named_v4"), direction: .requests).1
        else { return XCTFail() }
        XCTAssertTrue(named.parameters.values.named)
        XCTAssertEqual(named.parameters.values.map { $0.name.map { String(buffer: $0) } }, ["a", "B b"])
        XCTAssertEqual(int32(named.parameters.values.value(named: "a")), 5)
        XCTAssertEqual(named.parameters.values.value(named: "B b"), .unset)
        XCTAssertNil(named.parameters.values.value(named: "b b"), "names compare exactly")
        XCTAssertEqual(named.parameters.values.value(at: 1), .unset)

        guard case .query(let now) = try readMessage(try CQLDriverVectors.vector("query_now_v5"), direction: .requests).1
        else { return XCTFail() }
        XCTAssertEqual(now.parameters.flags, [.values, .keyspace, .nowInSeconds])
        XCTAssertEqual(now.parameters.values.value(at: 0), .null)
        XCTAssertEqual(now.parameters.keyspace, "ks5")
        XCTAssertEqual(now.parameters.nowInSeconds, 1_700_000_000)
        // Read as v4 the same body says something else: the flags are a [byte] there (here the
        // int's high byte, 0).
        let asV4 = try CQLQueryRequest(message: try readSingleFrame(
            try CQLDriverVectors.vector("query_now_v5"), direction: .requests).body, version: .v4)
        XCTAssertEqual(asV4.parameters.flags, [])
        XCTAssertNil(asV4.parameters.keyspace)
    }

    func testPrepareExecuteBatchV4AndV5() throws {
        for version in [CQLVersion.v4, .v5] {
            let n = version.rawValue
            guard case .prepare(let prepare) = try readMessage(try CQLDriverVectors.vector("prepare_v\(n)"), direction: .requests).1
            else { return XCTFail() }
            XCTAssertEqual(prepare.queryText, "INSERT INTO t (k, v) VALUES (?, ?)")
            XCTAssertEqual(prepare.keyspace, version == .v5 ? "ks" : nil)

            guard case .execute(let execute) = try readMessage(try CQLDriverVectors.vector("execute_v\(n)"), direction: .requests).1
            else { return XCTFail() }
            XCTAssertEqual(Array(buffer: execute.id), [1, 2] + Array("ID".utf8))
            XCTAssertEqual(text(execute.resultMetadataID), version == .v5 ? "RM" : nil)
            XCTAssertEqual(execute.parameters.consistency, .one)
            XCTAssertEqual(execute.parameters.pageSize, 50)
            XCTAssertEqual(execute.parameters.flags, [.values, .pageSize], "this driver never sets Skip_metadata")
            XCTAssertEqual(execute.parameters.values.map { $0.value }, [.bytes(ByteBuffer(string: "v1")), .null])

            guard case .batch(let batch) = try readMessage(try CQLDriverVectors.vector("batch_v\(n)"), direction: .requests).1
            else { return XCTFail() }
            XCTAssertEqual(batch.type, .logged)
            XCTAssertEqual(batch.childCount, 2)
            let children = batch.children
            XCTAssertEqual(children.count, 2)
            XCTAssertEqual(children[0].queryText, "INSERT INTO ks.t (k) VALUES (?)")
            XCTAssertEqual(int32(children[0].values.value(at: 0)), 1)
            guard case .prepared(let id) = children[1].statement else { return XCTFail() }
            XCTAssertEqual(String(buffer: id), "PID")
            XCTAssertEqual(children[1].values.map { $0.value }, [.bytes(ByteBuffer(string: "x")), .null])
            XCTAssertEqual(batch.consistency, .one)
            XCTAssertEqual(batch.serialConsistency, .serial)
            XCTAssertEqual(batch.defaultTimestamp, 42)
            XCTAssertEqual(batch.keyspace, version == .v5 ? "ks" : nil)
        }
    }

    func testCompressedAndFlaggedRequests() throws {
        let plain = try readMessage(try CQLDriverVectors.vector("query_plain_v4"), direction: .requests)
        guard case .query(let expected) = plain.1 else { return XCTFail() }
        for (name, compression) in [("query_lz4_v4", CQLCompression.lz4), ("query_snappy_v4", .snappy)] {
            let (frame, message) = try readMessage(try CQLDriverVectors.vector(name), direction: .requests, compression: compression)
            XCTAssertTrue(frame.header.flags.contains(.compression), name)
            guard case .query(let query) = message else { return XCTFail(name) }
            XCTAssertEqual(query.queryText, expected.queryText, name)
            // The driver's own compressed body decompresses to the uncompressed frame's body.
            XCTAssertEqual(try frame.decompressedBody(compression, maxBytes: 1 << 20), plain.0.body, name)
        }
        let (frame, message) = try readMessage(try CQLDriverVectors.vector("query_payload_v4"), direction: .requests)
        XCTAssertEqual(frame.header.flags, [.tracing, .customPayload])
        let envelope = try frame.envelope(body: frame.body)
        XCTAssertNil(envelope.tracingID, "a request's tracing flag adds no bytes")
        XCTAssertEqual(envelope.customPayload?["k"].flatMap { $0 }.map { String(buffer: $0) }, "val")
        guard case .query(let query) = message else { return XCTFail() }
        XCTAssertEqual(query.queryText, "SELECT 1")
    }

    func testResultsFromTheTestBackend() throws {
        for version in [CQLVersion.v4, .v5] {
            let n = version.rawValue
            guard case .result(.void) = try readMessage(try CQLDriverVectors.vector("result_void_v\(n)"), direction: .responses).1
            else { return XCTFail() }

            guard case .result(.rows(let rows)) = try readMessage(try CQLDriverVectors.vector("result_rows_v\(n)"), direction: .responses).1
            else { return XCTFail() }
            XCTAssertEqual(rows.metadata.flags, [.globalTableSpec, .hasMorePages])
            XCTAssertEqual(text(rows.metadata.pagingState), "next")
            XCTAssertEqual(rows.metadata.columns?.map(\.name), ["k", "v", "m"])
            XCTAssertEqual(rows.metadata.columns?.map(\.table), ["t", "t", "t"])
            XCTAssertEqual(rows.metadata.columns?.map(\.type), [.int, .varchar, .map(key: .varchar, value: .list(.int))])
            XCTAssertEqual(rows.rowCount, 2)
            var cursor = rows.makeCursor()
            XCTAssertTrue(cursor.nextRow())
            XCTAssertEqual(cursor.nextCell()??.getInteger(at: 0, as: Int32.self), 1)
            XCTAssertEqual(cursor.nextCell()??.readableBytesView.elementsEqual("a".utf8), true)
            let third = cursor.nextCell()
            XCTAssertNotNil(third ?? nil, "the map cell is not null")
            XCTAssertTrue(cursor.nextCell() == nil, "past the last column")
            XCTAssertTrue(cursor.nextRow())
            XCTAssertEqual(cursor.nextCell()??.getInteger(at: 0, as: Int32.self), 2)
            XCTAssertTrue(cursor.nextRow() == false, "the second row's unread cells are skipped")

            guard case .result(.prepared(let prepared)) = try readMessage(
                try CQLDriverVectors.vector("result_prepared_v\(n)"), direction: .responses).1 else { return XCTFail() }
            XCTAssertEqual(Array(buffer: prepared.id), [0xAA, 0xBB])
            XCTAssertEqual(prepared.resultMetadataID.map { Array(buffer: $0) }, version == .v5 ? [0x11, 0x22] : nil)
            XCTAssertEqual(prepared.metadata.partitionKeyIndexes, [0])
            XCTAssertEqual(prepared.metadata.columns.map(\.name), ["k", "v"])
            XCTAssertEqual(prepared.resultMetadata.columns?.map(\.name), ["k", "v", "m"])
        }
        // No_metadata (the client asked to skip it): the column count stays, the specs are absent,
        // the cells are still walked by that count. v5 Metadata_changed brings the new id and the specs back.
        guard case .result(.rows(let bare)) = try readMessage(
            try CQLDriverVectors.vector("result_rows_no_metadata_v4"), direction: .responses).1 else { return XCTFail() }
        XCTAssertEqual(bare.metadata.flags, [.hasMorePages, .noMetadata])
        XCTAssertNil(bare.metadata.columns)
        XCTAssertEqual(bare.metadata.columnCount, 3)
        var bareCursor = bare.makeCursor()
        var cells = 0
        while bareCursor.nextRow() { while bareCursor.nextCell() != nil { cells += 1 } }
        XCTAssertEqual(cells, 6)
        guard case .result(.rows(let changed)) = try readMessage(
            try CQLDriverVectors.vector("result_rows_changed_v5"), direction: .responses).1 else { return XCTFail() }
        XCTAssertEqual(changed.metadata.flags, [.globalTableSpec, .hasMorePages, .metadataChanged])
        XCTAssertEqual(changed.metadata.newMetadataID.map { Array(buffer: $0) }, [0x0A, 0x0B])
        XCTAssertEqual(changed.metadata.columns?.count, 3)
        XCTAssertEqual(text(changed.metadata.pagingState), "next")

        guard case .result(.setKeyspace("ks")) = try readMessage(try CQLDriverVectors.vector("result_set_keyspace_v4"), direction: .responses).1
        else { return XCTFail() }
        guard case .result(.schemaChange(let change)) = try readMessage(
            try CQLDriverVectors.vector("result_schema_change_v4"), direction: .responses).1 else { return XCTFail() }
        XCTAssertEqual(change, CQLSchemaChange(changeType: "CREATED", target: "TABLE", keyspace: "ks", name: "t"))
    }

    func testErrorsOfEveryCodeWithTheirFields() throws {
        for version in [CQLVersion.v4, .v5] {
            func error(_ name: String) throws -> CQLErrorMessage {
                let (frame, message) = try readMessage(try CQLDriverVectors.vector("error_\(name)_v\(version.rawValue)"), direction: .responses)
                XCTAssertEqual(frame.header.opcode, .error)
                guard case .error(let error) = message else { throw CQLProtocolViolation(.malformed, "not an error") }
                XCTAssertEqual(error.message, "\(name) message")
                return error
            }
            XCTAssertEqual(try error("unavailable").details, .unavailable(consistency: .quorum, required: 3, alive: 1))
            XCTAssertEqual(try error("write_timeout").details,
                           .writeTimeout(consistency: .quorum, received: 1, blockFor: 2, writeType: "CAS",
                                         contentions: version == .v5 ? 3 : nil))
            XCTAssertEqual(try error("read_timeout").details, .readTimeout(consistency: .one, received: 0, blockFor: 1, dataPresent: true))
            let failures: CQLErrorMessage.Failures = version == .v5 ? .reasons([.init(node: [127, 0, 0, 2], code: 5)]) : .count(1)
            XCTAssertEqual(try error("read_failure").details,
                           .readFailure(consistency: .one, received: 1, blockFor: 2, failures: failures, dataPresent: false))
            let writeFailures: CQLErrorMessage.Failures = version == .v5 ? .reasons([.init(node: [127, 0, 0, 3], code: 1)]) : .count(1)
            XCTAssertEqual(try error("write_failure").details,
                           .writeFailure(consistency: .one, received: 0, blockFor: 1, failures: writeFailures, writeType: "BATCH"))
            XCTAssertEqual(try error("function_failure").details, .functionFailure(keyspace: "ks", function: "f", argumentTypes: ["int", "text"]))
            XCTAssertEqual(try error("already_exists").details, .alreadyExists(keyspace: "ks", table: "t"))
            XCTAssertEqual(try error("unprepared").details, .unprepared(id: ByteBuffer(bytes: [0xDE, 0xAD])))
            XCTAssertEqual(try error("cas_write_unknown").details, .casWriteUnknown(consistency: .serial, received: 1, blockFor: 2))
            let syntax = try error("syntax")
            XCTAssertEqual(syntax.code, .syntaxError)
            XCTAssertEqual(syntax.details, CQLErrorMessage.Details.none)
        }
    }

    func testEventsAuthSupportedAndFlaggedResponses() throws {
        let (eventFrame, event) = try readMessage(try CQLDriverVectors.vector("event_schema_v4"), direction: .responses)
        XCTAssertEqual(eventFrame.header.stream, -1)
        guard case .event(.schemaChange(let change)) = event else { return XCTFail() }
        XCTAssertEqual(change, CQLSchemaChange(changeType: "DROPPED", target: "KEYSPACE", keyspace: "ks"))
        guard case .event(.topologyChange("NEW_NODE", let node)) = try readMessage(
            try CQLDriverVectors.vector("event_topology_v4"), direction: .responses).1 else { return XCTFail() }
        XCTAssertEqual(node.description, "127.0.0.2:9042")
        guard case .event(.statusChange("DOWN", let v6)) = try readMessage(
            try CQLDriverVectors.vector("event_status_v5"), direction: .responses).1 else { return XCTFail() }
        XCTAssertEqual(v6, CQLInet(address: Array(repeating: 0, count: 15) + [1], port: 9043))
        guard case .authenticate(let authenticate) = try readMessage(try CQLDriverVectors.vector("authenticate_v4"), direction: .responses).1
        else { return XCTFail() }
        XCTAssertEqual(authenticate.authenticator, "org.apache.cassandra.auth.PasswordAuthenticator")
        guard case .authChallenge(let challenge) = try readMessage(try CQLDriverVectors.vector("auth_challenge_v4"), direction: .responses).1
        else { return XCTFail() }
        XCTAssertEqual(text(challenge.token), "challenge")
        guard case .authSuccess(let success) = try readMessage(try CQLDriverVectors.vector("auth_success_v4"), direction: .responses).1
        else { return XCTFail() }
        XCTAssertNil(success.token)
        guard case .supported(let supported) = try readMessage(try CQLDriverVectors.vector("supported_v4"), direction: .responses).1
        else { return XCTFail() }
        XCTAssertEqual(supported.options["COMPRESSION"], ["lz4", "snappy"])
        guard case .ready = try readMessage(try CQLDriverVectors.vector("ready_v4"), direction: .responses).1 else { return XCTFail() }

        let traced = try readSingleFrame(try CQLDriverVectors.vector("traced_warning_v4"), direction: .responses)
        let envelope = try traced.envelope(body: traced.body)
        XCTAssertEqual(envelope.tracingID.map { Array(buffer: $0) }, Array(0..<16))
        XCTAssertEqual(envelope.warnings, ["w1", "w2"])
        guard case .void = try CQLResult(message: envelope.message, version: .v4) else { return XCTFail() }
    }

    /// Frames Sluice builds, read by the driver (responses) and the test backend (QUERY).
    func testSluiceFramesReadByTheDriver() throws {
        let rows = CQLFrameBuilder.resultRows(
            version: .v4, stream: 21, keyspace: "ks", table: "t", columns: [("k", .int), ("v", .varchar)],
            rows: [[ByteBuffer(bytes: [0, 0, 0, 5]), ByteBuffer(string: "five")], [ByteBuffer(bytes: [0, 0, 0, 6]), nil]])
        let items: [String: (kind: String, bytes: ByteBuffer)] = [
            "error": ("response", CQLFrameBuilder.error(version: .v5, stream: 20, code: .invalid, message: "no such table")),
            "void": ("response", CQLFrameBuilder.resultVoid(version: .v4, stream: 22)),
            "rows": ("response", rows),
            "rows_lz4": ("response", CQLFrameBuilder.compressed(rows, with: .lz4)),
            "query": ("query", CQLFrameBuilder.query(version: .v4, stream: 23, query: "SELECT * FROM ks.t WHERE k = ?",
                                                     consistency: .localQuorum, values: [.bytes(ByteBuffer(bytes: [0, 0, 0, 9])), .null],
                                                     pageSize: 500)),
            "query_v5": ("query", CQLFrameBuilder.query(version: .v5, stream: 24, query: "SELECT 1", keyspace: "other")),
            "downgrade": ("response", CQLVersionNegotiation.rejection(of: 0x42, supported: [.v4, .v5], stream: 0)),
        ]
        let seen = try CQLDriverVectors.check(items)
        func field(_ name: String, _ key: String) -> Any? { (seen[name] as? [String: Any])?[key] }
        XCTAssertEqual(field("error", "type") as? String, "InvalidRequestException")
        XCTAssertEqual(field("error", "message") as? String, "no such table")
        XCTAssertEqual(field("error", "stream") as? Int, 20)
        XCTAssertEqual(field("error", "version") as? Int, 0x85)
        XCTAssertEqual(field("void", "kind") as? Int, 1)
        XCTAssertEqual(field("rows", "columns") as? [String], ["k", "v"])
        XCTAssertEqual(field("rows", "types") as? [String], ["int", "varchar"])
        XCTAssertEqual((field("rows", "rows") as? [[Any]])?.count, 2)
        XCTAssertEqual((field("rows", "rows") as? [[Any]])?[0][0] as? Int, 5)
        XCTAssertEqual((field("rows", "rows") as? [[Any]])?[0][1] as? String, "five")
        XCTAssertTrue((field("rows", "rows") as? [[Any]])?[1][1] is NSNull)
        XCTAssertEqual(field("rows_lz4", "columns") as? [String], ["k", "v"], "\(seen["rows_lz4"] ?? "")")
        XCTAssertEqual(field("query", "query") as? String, "SELECT * FROM ks.t WHERE k = ?")
        XCTAssertEqual(field("query", "consistency") as? Int, 6)
        XCTAssertEqual(field("query", "page_size") as? Int, 500)
        XCTAssertEqual((field("query", "values") as? [Any])?.map { $0 as? String }, ["00000009", nil])
        XCTAssertEqual(field("query", "left") as? Int, 0)
        XCTAssertEqual(field("query_v5", "keyspace") as? String, "other")
        XCTAssertEqual(field("query_v5", "left") as? Int, 0)
        // What the driver downgrades on: a ProtocolException whose message says "unsupported protocol version".
        XCTAssertEqual(field("downgrade", "type") as? String, "ProtocolException")
        XCTAssertEqual(field("downgrade", "version") as? Int, 0x85)
        XCTAssertTrue((field("downgrade", "message") as? String)?.contains("unsupported protocol version") ?? false,
                      "\(seen["downgrade"] ?? "")")
    }
}

/// ERROR frames with each code's fields, built by Sluice: read back by Sluice's reader (every code,
/// v4 and v5) and by the driver (its decoded `info`).
final class CQLErrorBuilderTests: XCTestCase {
    private let cases: [(CQLErrorCode, CQLErrorMessage.Details)] = [
        (.unavailable, .unavailable(consistency: .quorum, required: 3, alive: 1)),
        (.writeTimeout, .writeTimeout(consistency: .one, received: 0, blockFor: 1, writeType: "CAS", contentions: 2)),
        (.readTimeout, .readTimeout(consistency: .localQuorum, received: 1, blockFor: 2, dataPresent: true)),
        (.readFailure, .readFailure(consistency: .one, received: 0, blockFor: 1,
                                    failures: .reasons([.init(node: [10, 0, 0, 7], code: 3)]), dataPresent: false)),
        (.writeFailure, .writeFailure(consistency: .all, received: 2, blockFor: 3,
                                      failures: .reasons([.init(node: [127, 0, 0, 1], code: 1)]), writeType: "BATCH_LOG")),
        (.casWriteUnknown, .casWriteUnknown(consistency: .serial, received: 1, blockFor: 2)),
        (.functionFailure, .functionFailure(keyspace: "ks", function: "f", argumentTypes: ["int"])),
        (.alreadyExists, .alreadyExists(keyspace: "ks", table: "t")),
        (.unprepared, .unprepared(id: ByteBuffer(bytes: [0xCA, 0xFE]))),
        (.overloaded, .none),
    ]

    func testRoundTripThroughSluicesReader() throws {
        for version in [CQLVersion.v4, .v5] {
            for (code, details) in cases {
                let frame = CQLFrameBuilder.error(version: version, stream: 4, code: code, message: "m", details: details)
                guard case .error(let error) = try readMessage(frame, direction: .responses).1 else { return XCTFail() }
                XCTAssertEqual(error.code, code)
                var expected = details
                // Before v5 reasons travel as a count, and CAS contentions not at all.
                if version == .v4 {
                    switch details {
                    case .readFailure(let c, let r, let b, let f, let d): expected = .readFailure(consistency: c, received: r, blockFor: b, failures: .count(Int32(f.count)), dataPresent: d)
                    case .writeFailure(let c, let r, let b, let f, let w): expected = .writeFailure(consistency: c, received: r, blockFor: b, failures: .count(Int32(f.count)), writeType: w)
                    case .writeTimeout(let c, let r, let b, let w, _): expected = .writeTimeout(consistency: c, received: r, blockFor: b, writeType: w, contentions: nil)
                    default: break
                    }
                }
                XCTAssertEqual(error.details, expected, "\(code) v\(version.rawValue)")
            }
        }
    }

    func testTheDriverReadsTheFields() throws {
        let seen = try CQLDriverVectors.check([
            "unavailable": ("response", CQLFrameBuilder.error(version: .v4, stream: 1, code: .unavailable, message: "u",
                                                              details: .unavailable(consistency: .quorum, required: 3, alive: 1))),
            "read_failure": ("response", CQLFrameBuilder.error(version: .v5, stream: 2, code: .readFailure, message: "r", details: .readFailure(
                consistency: .one, received: 0, blockFor: 1, failures: .reasons([.init(node: [10, 0, 0, 7], code: 3)]), dataPresent: true))),
            "unprepared": ("response", CQLFrameBuilder.error(version: .v5, stream: 3, code: .unprepared, message: "p",
                                                             details: .unprepared(id: ByteBuffer(bytes: [0xCA, 0xFE])))),
        ])
        let unavailable = try XCTUnwrap((seen["unavailable"] as? [String: Any])?["info"] as? [String: Any], "\(seen)")
        XCTAssertEqual(unavailable["consistency"] as? Int, 4)
        XCTAssertEqual(unavailable["required_replicas"] as? Int, 3)
        XCTAssertEqual(unavailable["alive_replicas"] as? Int, 1)
        let failure = try XCTUnwrap((seen["read_failure"] as? [String: Any])?["info"] as? [String: Any], "\(seen)")
        XCTAssertEqual(failure["failures"] as? Int, 1)
        XCTAssertEqual(failure["error_code_map"] as? [String: Int], ["10.0.0.7": 3])
        XCTAssertEqual(failure["data_retrieved"] as? Bool, true)
        XCTAssertEqual((seen["unprepared"] as? [String: Any])?["info"] as? String, "cafe", "\(seen)")
    }
}
