import XCTest
@testable import SluiceHost

/// `sinks: NAME: { cassandra: {...} }` as `sluice check` reads it, and the rule that a chain ends
/// at sinks of its source's protocol.
final class CassandraSinkConfigTests: XCTestCase {
    private func errors(_ yaml: String) -> [String] {
        do {
            _ = try SluiceConfig.parse(yaml, file: "/etc/sluice/test.yaml")
            return []
        } catch let e as ConfigErrors {
            return e.errors.map(\.description)
        } catch {
            return ["\(error)"]
        }
    }

    func testCassandraSinkIsRead() throws {
        setenv("SLUICE_TEST_CASS_PW", "from-env", 1)
        let config = try SluiceConfig.parse("""
            sinks:
              r: { redis: { address: 127.0.0.1:6379 } }
              cass:
                cassandra:
                  address: 127.0.0.1:19042
                  connect_timeout_ms: 700
                  reply_timeout_ms: 9000
                  username: app
                  password_env: SLUICE_TEST_CASS_PW
            chains:
              main: [ { sink: r } ]
            sources:
              - redis: { listen: 127.0.0.1:6400, chain: main }
            """, file: "/etc/sluice/test.yaml")
        let sink = try XCTUnwrap(config.sinks.first { $0.name == "cass" })
        XCTAssertEqual(sink.kind, .cassandra)
        XCTAssertEqual(sink.port, 19042)
        XCTAssertEqual(sink.connectTimeoutMilliseconds, 700)
        XCTAssertEqual(sink.replyTimeoutMilliseconds, 9000)
        XCTAssertEqual(sink.credentials?.username, "app")
        XCTAssertEqual(sink.credentials?.password, "from-env")
        XCTAssertEqual(config.sinks.first { $0.name == "r" }?.kind, .redis)
    }

    func testSinkNumbersOutOfRangeNameTheirSink() {
        let found = errors("""
            sinks:
              cass: { cassandra: { address: 127.0.0.1:1, connect_timeout_ms: 0, max_frame_bytes: 10 } }
              r: { redis: { address: 127.0.0.1:2, reply_timeout_ms: -1 } }
            chains:
              main: [ { sink: r } ]
            sources:
              - redis: { listen: 127.0.0.1:6400, chain: main }
            """)
        XCTAssertTrue(found.contains { $0.hasPrefix("/etc/sluice/test.yaml:2:") && $0.contains("sink 'cass'.cassandra.connect_timeout_ms") },
                      "\(found)")
        XCTAssertTrue(found.contains { $0.hasPrefix("/etc/sluice/test.yaml:2:") && $0.contains("sink 'cass'.cassandra.max_frame_bytes") },
                      "\(found)")
        XCTAssertTrue(found.contains { $0.hasPrefix("/etc/sluice/test.yaml:3:") && $0.contains("sink 'r'.redis.reply_timeout_ms") },
                      "\(found)")
    }

    func testCassandraSinkErrorsHavePositions() {
        let found = errors("""
            sinks:
              cass: { cassandra: { address: nowhere, colour: blue } }
              both: { cassandra: { address: 127.0.0.1:1 }, redis: { address: 127.0.0.1:2 } }
              pw: { cassandra: { address: 127.0.0.1:1, username: u } }
            chains:
              main: [ { sink: cass } ]
            sources:
              - redis: { listen: 127.0.0.1:6400, chain: main }
            """)
        XCTAssertTrue(found.contains { $0.hasPrefix("/etc/sluice/test.yaml:2:") && $0.contains("colour") }, "\(found)")
        XCTAssertTrue(found.contains { $0.hasPrefix("/etc/sluice/test.yaml:3:") && $0.contains("not both") }, "\(found)")
        XCTAssertTrue(found.contains { $0.hasPrefix("/etc/sluice/test.yaml:4:") && $0.contains("password") }, "\(found)")
    }

    /// A Redis source's chain that ends at a Cassandra sink is refused at the sink step.
    func testRedisSourceCannotReachACassandraSink() {
        let found = errors("""
            sinks:
              cass: { cassandra: { address: 127.0.0.1:19042 } }
            chains:
              main:
                - sink: cass
            sources:
              - redis: { listen: 127.0.0.1:6400, chain: main }
            """)
        XCTAssertEqual(found.count, 1, "\(found)")
        XCTAssertTrue(found.first?.hasPrefix("/etc/sluice/test.yaml:5:") == true, "\(found)")
        XCTAssertTrue(found.first?.contains("step 1: sink 'cass' is a cassandra sink") == true, "\(found)")
    }

    /// A Cassandra source's chain that ends at a Redis sink is refused at the sink step; one that
    /// ends at a Cassandra sink is accepted.
    func testCassandraSourceNeedsACassandraSink() {
        let found = errors("""
            sinks:
              r: { redis: { address: 127.0.0.1:6379 } }
              cass: { cassandra: { address: 127.0.0.1:19042 } }
            chains:
              wrong:
                - sink: r
              right:
                - sink: cass
            sources:
              - cassandra: { listen: 127.0.0.1:9043, chain: wrong }
              - cassandra: { listen: 127.0.0.1:9044, chain: right }
            """)
        XCTAssertEqual(found.count, 1, "\(found)")
        XCTAssertTrue(found.first?.hasPrefix("/etc/sluice/test.yaml:6:") == true, "\(found)")
        XCTAssertTrue(found.first?.contains("sink 'r' is a redis sink, but the chain serves a cassandra source") == true, "\(found)")
    }
}
