import XCTest
@testable import SluiceHost

/// The `cassandra` source of the config: its keys, defaults, `auth` (users or passthrough) and
/// the file:line:col of every mistake.
final class CQLSourceConfigTests: XCTestCase {
    private func parse(_ sources: String) throws -> SluiceConfig {
        try SluiceConfig.parse("""
            sinks: { primary: { cassandra: { address: 127.0.0.1:9042 } }, rprimary: { redis: { address: 127.0.0.1:6379 } } }
            # a chain must end at a sink of its source's protocol
            chains: { main: [ { sink: primary } ], rmain: [ { sink: rprimary } ] }
            #
            sources:
            \(sources)
            """, file: "/etc/sluice/cql.yaml")
    }

    private func errors(_ sources: String) -> [String] {
        do {
            _ = try parse(sources)
            return []
        } catch let e as ConfigErrors {
            return e.errors.map(\.description)
        } catch {
            return ["\(error)"]
        }
    }

    func testACassandraSourceWithDefaults() throws {
        let config = try parse("""
              - redis: { listen: 127.0.0.1:6400, chain: rmain }
              - cassandra: { listen: 127.0.0.1:9043, chain: main }
            """)
        XCTAssertEqual(config.sources.map(\.kind), [.redis, .cassandra])
        let source = config.sources[1]
        XCTAssertEqual(source.host, "127.0.0.1")
        XCTAssertEqual(source.port, 9043)
        XCTAssertEqual(source.maxFrameBytes, 16 * 1024 * 1024, "Cassandra's native_transport_max_frame_size")
        XCTAssertEqual(source.maxClients, 10_000)
        XCTAssertEqual(source.idleTimeoutMilliseconds, 0)
        XCTAssertTrue(source.auth.isEmpty)
        XCTAssertFalse(source.authPassthrough)
        XCTAssertNil(source.tls)
    }

    func testEveryKeyIsRead() throws {
        let config = try parse("""
              - cassandra:
                  listen: "[::1]:9044"
                  chain: main
                  max_frame_bytes: 1048576
                  max_clients: 7
                  idle_timeout_ms: 5000
                  request_timeout_ms: 900
                  auth:
                    - { username: app, password: pw1 }
                    - { username: ops, password: pw2 }
            """)
        let source = config.sources[0]
        XCTAssertEqual(source.host, "::1")
        XCTAssertEqual(source.maxFrameBytes, 1 << 20)
        XCTAssertEqual(source.maxClients, 7)
        XCTAssertEqual(source.idleTimeoutMilliseconds, 5000)
        XCTAssertEqual(source.limits.requestTimeoutMilliseconds, 900)
        XCTAssertEqual(source.auth.map(\.username), ["app", "ops"])
        XCTAssertEqual(source.auth.map(\.password), ["pw1", "pw2"])
        let passthrough = try parse("  - cassandra: { listen: 127.0.0.1:9043, chain: main, auth: passthrough }")
        XCTAssertTrue(passthrough.sources[0].authPassthrough)
        XCTAssertTrue(passthrough.sources[0].auth.isEmpty)
    }

    func testMistakesAreReportedWhereTheyAre() {
        let found = errors("""
              - cassandra: { listen: 127.0.0.1:9043, chain: nope, max_clients: 0, colour: red }
              - cassandra: { listen: nowhere, chain: main }
              - cassandra: { listen: 127.0.0.1:9045, chain: main, auth: { password: pw } }
              - cassandra: { listen: 127.0.0.1:9046, chain: main, auth: sometimes }
              - { cassandra: { listen: 127.0.0.1:9047, chain: main }, redis: { listen: 127.0.0.1:6400, chain: main } }
              - cassandra: { listen: 127.0.0.1:9048, chain: main, max_frame_bytes: 12 }
            """)
        let expected = [
            "/etc/sluice/cql.yaml:6:71: source.cassandra: unknown key 'colour'",
            "/etc/sluice/cql.yaml:6:49: source.cassandra.chain: unknown chain 'nope'",
            "/etc/sluice/cql.yaml:6:68: source.cassandra.max_clients: expected an integer in 1...1000000",
            "/etc/sluice/cql.yaml:7:26: source.cassandra.listen: expected host:port, found 'nowhere'",
            "/etc/sluice/cql.yaml:8:61: source.cassandra.auth: a username is required",
            "/etc/sluice/cql.yaml:9:61: source.cassandra.auth: expected 'passthrough'",
            "/etc/sluice/cql.yaml:10:5: source: expected 'redis:' or 'cassandra:', not both",
            "/etc/sluice/cql.yaml:11:72: source.cassandra.max_frame_bytes: expected an integer",
        ]
        for text in expected {
            XCTAssertTrue(found.contains { $0.hasPrefix(text) }, "missing: \(text)\nfound:\n\(found.joined(separator: "\n"))")
        }
        XCTAssertEqual(found.count, expected.count, found.joined(separator: "\n"))
    }
}
