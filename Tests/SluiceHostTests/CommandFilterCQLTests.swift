import Foundation
import NIOCore
import NIOEmbedded
import PluginABI
import XCTest
@testable import SluiceHost

/// command-filter's deny and count (plain C, Plugins/command-filter) on CQL requests: by statement
/// kind and by a statement's first word, through real chains, over the DataStax driver's frames.
final class CommandFilterCQLTests: XCTestCase {
    /// The plugin built from its source for this test run (the test needs no prebuilt plugin directory).
    static let plugins: Result<PluginLoader.Result, Error> = Result {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-cf-\(getpid())").path
        let make = Process()
        make.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        make.arguments = ["make", "-s", "-C", CQLDriverVectors.repositoryRoot.appendingPathComponent("Plugins/command-filter").path,
                          "OUT=\(out)"]
        try make.run()
        make.waitUntilExit()
        guard make.terminationStatus == 0 else { throw XCTSkip("make command-filter failed") }
        var plugins = PluginLoader.loadDirectory(out)
        // cql-probe (a fixture) answers what passes, so no request reaches a sink here.
        plugins.loaded += PluginLoader.loadDirectory(PluginLoaderTests.fixtures).loaded.filter { $0.name == "cql-probe" }
        return plugins
    }

    private func build(_ chain: String) throws -> RuntimePlan {
        let yaml = """
            sinks:
              s: { redis: { address: 127.0.0.1:1 } }
            sources:
              - redis: { listen: 127.0.0.1:1, chain: r }
            chains:
              r: [ { sink: s } ]
              c: \(chain)
            """
        return try RuntimeBuilder.build(try SluiceConfig.parse(yaml, file: "/etc/sluice/test.yaml"), plugins: try Self.plugins.get()).0
    }

    /// Runs each frame through chain c; the reply of each (nil: the chain failed the request, as a
    /// request that reaches this test's sink, which does not exist, may be).
    private func run(_ plan: RuntimePlan, _ frames: [ByteBuffer]) throws -> [ByteBuffer?] {
        let loop = EmbeddedEventLoop()
        let index = try XCTUnwrap(plan.chainIndex["c"])
        let session = ChainSession(eventLoop: loop, allocator: ByteBufferAllocator(), plan: plan, clientAddress: "127.0.0.1:1",
                                   mainChain: index)
        defer { session.close() }
        let chain = try session.chain(index)
        // One receiver per request: replies answered here come a turn later than the others.
        let receivers = frames.map { _ in HandleTableTests.Collect() }
        for (frame, receiver) in zip(frames, receivers) {
            session.runFromClient(Batch(kind: Batch.requests, protocolID: Batch.cql, messages: [frame]), on: chain, receiver: receiver)
        }
        loop.run()
        return receivers.map { receiver in
            guard receiver.outcomes.count == 1, case .responses(let batch) = receiver.outcomes[0] else { return nil }
            return batch.messages[0]
        }
    }

    private func error(_ result: ByteBuffer?) throws -> CQLErrorMessage? {
        guard let frame = result,
              let header = try CQLFrameScanner(direction: .responses, maxFrameBytes: 1 << 20).scan(frame),
              case .error(let error) = try CQLMessage(frame: CQLFrame(header: header, bytes: frame), compression: nil,
                                                      maxBodyBytes: 1 << 20)
        else { return nil }
        return error
    }

    func testDenyByStatementKindAndByFirstWordAnswersTheChosenCode() throws {
        let plan = try build("[ { deny: { statements: [select, ddl], commands: [truncate], code: invalid } }, { cql-probe: { describe: true } }, { sink: s } ]")
        let frames = [
            try CQLDriverVectors.vector("query_v4"),                                            // SELECT: denied
            try CQLDriverVectors.vector("prepare_v5"),                                          // INSERT: passes
            CQLFrameBuilder.query(version: .v5, stream: 40, query: "/* x */ TRUNCATE ks.t"),    // denied by word
            CQLFrameBuilder.query(version: .v4, stream: 41, query: "create TABLE t (k int primary key)"),  // ddl
            try CQLDriverVectors.vector("batch_v4"),   // INSERT + a prepared id the host never saw: UNPREPARED
        ]
        let results = try run(plan, frames)
        XCTAssertEqual(results.count, 5)
        let denied = try error(results[0])
        XCTAssertEqual(denied?.code, .invalid)
        XCTAssertEqual(denied?.message, "command-filter: select statements are denied by this proxy")
        XCTAssertEqual(CQLRequestIdentity(frame: try XCTUnwrap(results[0])), CQLRequestIdentity(version: .v4, stream: 7))
        XCTAssertEqual(try error(results[2])?.message, "command-filter: 'truncate' is denied by this proxy")
        XCTAssertEqual(CQLRequestIdentity(frame: try XCTUnwrap(results[2])), CQLRequestIdentity(version: .v5, stream: 40))
        XCTAssertEqual(try error(results[3])?.code, .invalid)
        // The PREPARE went on (cql-probe answers it with rows).
        XCTAssertNil(try error(results[1]), "request 1 was denied")
        XCTAssertEqual(CQLRequestIdentity(frame: try XCTUnwrap(results[1])).stream, 8)
        // The BATCH's prepared child cannot be read (never seen prepared): UNPREPARED with its id, read
        // from the frame, so the driver prepares it again through Sluice.
        let unprepared = try XCTUnwrap(try error(results[4]))
        XCTAssertEqual(unprepared.code, .unprepared)
        guard case .unprepared(let id) = unprepared.details else { return XCTFail("\(unprepared)") }
        XCTAssertEqual(String(buffer: id), "PID")
        XCTAssertEqual(CQLRequestIdentity(frame: try XCTUnwrap(results[4])), CQLRequestIdentity(version: .v4, stream: 10))
    }

    /// deny reads a statement's text for its first word only when the word may be listed: a kind the
    /// host classified fixes the first word (SELECT: select, BATCH: begin or apply, DDL: create,
    /// alter or drop), while an OTHER statement may start with any word, a listed one included.
    func testDenyByFirstWordReadsTheTextWhenTheKindLetsTheWordBeListed() throws {
        let plan = try build("[ { deny: { commands: [select, drop, begin, grant] } }, { cql-probe: { describe: true } }, { sink: s } ]")
        let queries = [
            ("SeLeCt k FROM ks.t", true),                              // SELECT, listed
            ("/* c */ drop TABLE ks.t", true),                          // DDL by drop, listed
            ("CREATE TABLE ks.t (k int PRIMARY KEY)", false),           // DDL by create: not listed
            ("BEGIN BATCH INSERT INTO t (k) VALUES (1); APPLY BATCH", true),  // BATCH by begin
            ("INSERT INTO ks.t (k) VALUES (1)", false),
            ("GRANT SELECT ON ks.t TO alice", true),                    // OTHER, listed
            ("SELECT\u{E9} * FROM t", true),  // OTHER to the host (one word), "select" to first_word
            ("TRUNCATE ks.t", false),
        ]
        let results = try run(plan, queries.enumerated().map { i, query in
            CQLFrameBuilder.query(version: .v4, stream: Int16(50 + i), query: query.0)
        })
        for (result, query) in zip(results, queries) {
            XCTAssertEqual(try error(result)?.code == .unauthorized, query.1, query.0)
        }
    }

    /// count passes every request on, whatever it counts (its metric is checked end to end).
    func testCountPassesEveryRequestOn() throws {
        let plan = try build("[ { count: { statements: [insert], commands: [select] } }, { deny: { statements: [select, insert, update] } }, { cql-probe: { describe: true } }, { sink: s } ]")
        let results = try run(plan, [try CQLDriverVectors.vector("query_v4"), try CQLDriverVectors.vector("prepare_v4"),
                                     try CQLDriverVectors.vector("batch_v5"), try CQLDriverVectors.vector("query_named_v4")])
        // (the BATCH holds a prepared id the host never saw: deny answers it UNPREPARED)
        XCTAssertEqual(try results.map { try error($0)?.code }, [.unauthorized, .unauthorized, .unprepared, .unauthorized])
        XCTAssertThrowsError(try build("[ { count: { statements: [] } }, { sink: s } ]"))
    }

    func testDenyConfigMistakesAreReported() {
        XCTAssertThrowsError(try build("[ { deny: { statements: [selcet] } }, { sink: s } ]")) { error in
            XCTAssertTrue("\(error)".contains("statements: each item must be one of"), "\(error)")
        }
        XCTAssertThrowsError(try build("[ { deny: { statements: [select], code: nope } }, { sink: s } ]")) { error in
            XCTAssertTrue("\(error)".contains("code: expected a CQL error code"), "\(error)")
        }
    }
}
