import NIOCore
import NIOEmbedded
import PluginABI
import XCTest
@testable import SluiceHost

/// A plain-C transform (Tests/fixtures/plugins/cql-probe.c) using the ABI 1.3 CQL functions through
/// real chains, and the start-up rule that a chain holds only transforms handling its protocols.
final class CQLPluginTests: XCTestCase {
    static let plugins = PluginLoader.loadDirectory(PluginLoaderTests.fixtures)

    private func build(_ yaml: String) throws -> RuntimePlan {
        let config = try SluiceConfig.parse(yaml, file: "/etc/sluice/test.yaml")
        return try RuntimeBuilder.build(config, plugins: Self.plugins).0
    }

    private func errors(_ yaml: String) -> [String] {
        do {
            _ = try build(yaml)
            return []
        } catch let error as ConfigErrors {
            return error.errors.map(\.description)
        } catch {
            return ["\(error)"]
        }
    }

    private static let head = """
        sinks:
          s: { redis: { address: 127.0.0.1:1 } }
        sources:
          - redis: { listen: 127.0.0.1:1, chain: r }
        chains:
          r: [ { sink: s } ]

        """

    /// Runs `frames` (one batch each) through chain `name` of `plan`; the replies.
    private func run(_ plan: RuntimePlan, chain name: String, _ frames: [ByteBuffer]) throws -> [ByteBuffer] {
        let loop = EmbeddedEventLoop()
        let index = try XCTUnwrap(plan.chainIndex[name])
        let session = ChainSession(eventLoop: loop, allocator: ByteBufferAllocator(), plan: plan,
                                   clientAddress: "127.0.0.1:1", mainChain: index)
        defer { session.close() }
        let chain = try session.chain(index)
        let receiver = HandleTableTests.Collect()
        for frame in frames {
            session.runFromClient(Batch(kind: Batch.requests, protocolID: Batch.cql, messages: [frame]), on: chain,
                                  receiver: receiver)
        }
        loop.run()
        return try receiver.outcomes.map { outcome in
            guard case .responses(let batch) = outcome else { throw XCTSkip("failed outcome: \(outcome)") }
            XCTAssertEqual(batch.count, 1)
            return batch.messages[0]
        }
    }

    private func message(_ frame: ByteBuffer) throws -> CQLMessage {
        let header = try XCTUnwrap(try CQLFrameScanner(direction: .responses, maxFrameBytes: 1 << 20).scan(frame))
        return try CQLMessage(frame: CQLFrame(header: header, bytes: frame), compression: nil, maxBodyBytes: 1 << 20)
    }

    /// The one row of a describe answer, by column name (nil: null).
    private func described(_ frame: ByteBuffer) throws -> [String: [UInt8]?] {
        guard case .result(.rows(let rows)) = try message(frame) else { throw XCTSkip("not rows") }
        let names = try XCTUnwrap(rows.metadata.columns).map(\.name)
        var cursor = rows.makeCursor()
        var row: [String: [UInt8]?] = [:]
        XCTAssertTrue(cursor.nextRow())
        for name in names { row.updateValue(cursor.nextCell()!.map { Array($0.readableBytesView) }, forKey: name) }
        return row
    }

    private func text(_ bytes: [UInt8]??) -> String? { (bytes ?? nil).map { String(decoding: $0, as: UTF8.self) } }

    func testACTransformReadsStatementsAndValuesAndBuildsRows() throws {
        let plan = try build(Self.head + """
              c: [ { cql-probe: { describe: true } }, { sink: s } ]
            """)
        let replies = try run(plan, chain: "c", [try CQLDriverVectors.vector("query_v4"), try CQLDriverVectors.vector("batch_v5"),
                                                 try CQLDriverVectors.vector("query_named_v4")])
        XCTAssertEqual(replies.map { CQLRequestIdentity(frame: $0) },
                       [CQLRequestIdentity(version: .v4, stream: 7), CQLRequestIdentity(version: .v5, stream: 10),
                        CQLRequestIdentity(version: .v4, stream: 17)])
        let query = try described(replies[0])
        XCTAssertEqual(text(query["opcode"]), "7")
        XCTAssertEqual(text(query["kind"]), "select")
        XCTAssertEqual(text(query["keyspace"]), "ks")
        XCTAssertEqual(text(query["source"]), "\(SLUICE_CQL_KEYSPACE_FROM_TEXT)")
        XCTAssertEqual(text(query["table"]), "t")
        XCTAssertEqual(text(query["query"]), "SELECT v FROM ks.t WHERE k = ?")
        XCTAssertEqual(text(query["values"]), "2")
        XCTAssertEqual(query["first"], .some([0, 0, 0, 7]))
        XCTAssertEqual(query["named_k"], .some(nil), "a null cell: positional values have no names")
        let batch = try described(replies[1])
        XCTAssertEqual(text(batch["opcode"]), "13")
        XCTAssertEqual(text(batch["statements"]), "2")
        XCTAssertEqual(text(batch["kind"]), "insert")
        let named = try described(replies[2])
        XCTAssertEqual(text(named["kind"]), "update")
        XCTAssertEqual(named["first"], .some([0, 0, 0, 5]))
    }

    func testACTransformFailsWithItsChosenCodeAndRedactsCells() throws {
        let plan = try build(Self.head + """
              deny: [ { cql-probe: { deny: select, code: 0x2100 } }, { sink: s } ]
              redact: [ { cql-probe: { redact: query } }, { cql-probe: { describe: true } }, { sink: s } ]
            """)
        let denied = try run(plan, chain: "deny", [try CQLDriverVectors.vector("query_v5")])
        guard case .error(let error) = try message(denied[0]) else { return XCTFail("not an ERROR") }
        XCTAssertEqual(error.code, .unauthorized)
        XCTAssertEqual(error.message, "cql-probe: select statements are denied")
        XCTAssertEqual(CQLRequestIdentity(frame: denied[0]), CQLRequestIdentity(version: .v5, stream: 7))
        let redacted = try described(try run(plan, chain: "redact", [try CQLDriverVectors.vector("query_v4")])[0])
        XCTAssertEqual(text(redacted["query"]), "***")
        XCTAssertEqual(text(redacted["kind"]), "select", "the other cells are kept")
    }

    func testAChainHoldsOnlyTransformsThatHandleTheProtocolsReachingIt() throws {
        // A Redis source's chain with a CQL-only transform, at step 1.
        let direct = errors("""
            sinks:
              s: { redis: { address: 127.0.0.1:1 } }
            sources:
              - redis: { listen: 127.0.0.1:1, chain: r }
            chains:
              r: [ { answers-null: {} }, { cql-probe: {} }, { sink: s } ]
            """)
        XCTAssertEqual(direct.count, 1, "\(direct)")
        XCTAssertTrue(direct.first?.contains("test.yaml:6:32:") ?? false, "\(direct)")
        XCTAssertTrue(direct.first?.contains("chain 'r' step 1: transform 'cql-probe' does not handle Redis (it handles: cql)") ?? false, "\(direct)")
        // A chain no source runs is not checked.
        XCTAssertEqual(errors(Self.head + "  c: [ { cql-probe: {} }, { sink: s } ]\n"), [])
    }

    /// Reached through a send: the rule follows the protocols of the sending chain.
    func testProtocolsReachChainsThroughSends() throws {
        let config = try SluiceConfig.parse(Self.head + "  c: [ { cql-probe: {} }, { sink: s } ]\n  d: [ { sink: s } ]\n",
                                            file: "/etc/sluice/test.yaml")
        let node = config.chains.first { $0.name == "c" }!.steps[0].node
        let step = ProtocolCheck.Step(chain: "c", position: 0, name: "cql-probe", node: node, protocols: UInt32(SLUICE_PROTOCOL_CQL))
        let redis = UInt32(SLUICE_PROTOCOL_REDIS), cql = UInt32(SLUICE_PROTOCOL_CQL)
        let refusals = ProtocolCheck.refusalsThroughSends(sourceProtocols: ["r": redis, "q": cql], sendsTo: ["r": ["d"], "d": ["c"], "q": ["c"]],
                                                          steps: ["c": [step]])
        XCTAssertEqual(refusals.map(\.message),
                       ["chain 'c' step 0: transform 'cql-probe' does not handle Redis (it receives sends from chain 'd') (it handles: cql)"])
        XCTAssertTrue(ProtocolCheck.refusalsThroughSends(sourceProtocols: ["q": cql], sendsTo: ["q": ["c"]], steps: ["c": [step]]).isEmpty)
    }
}
