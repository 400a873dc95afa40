import XCTest
@testable import SluiceHost

final class ConfigTests: XCTestCase {
    func errors(_ yaml: String) -> [String] {
        do {
            _ = try SluiceConfig.parse(yaml, file: "/etc/sluice/test.yaml")
            return []
        } catch let e as ConfigErrors {
            return e.errors.map(\.description)
        } catch {
            return ["\(error)"]
        }
    }

    let valid = """
        plugins:
          directory: plugins
          require: [tee]
        sinks:
          primary: { redis: { address: 127.0.0.1:6379 } }
          shadow:
            redis:
              address: "[::1]:6380"
              connect_timeout_ms: 500
        chains:
          main:
            - tee: { target: shadow }
            - sink: primary
        sources:
          - redis: { listen: 127.0.0.1:6400, chain: main }
        """

    func testValidConfigParses() throws {
        let config = try SluiceConfig.parse(valid, file: "/etc/sluice/test.yaml")
        XCTAssertEqual(config.pluginDirectory, "/etc/sluice/plugins")
        XCTAssertEqual(config.requiredPlugins.map(\.name), ["tee"])
        XCTAssertEqual(config.sinks.map(\.name), ["primary", "shadow"])
        XCTAssertEqual(config.sinks[1].host, "::1")
        XCTAssertEqual(config.sinks[1].port, 6380)
        XCTAssertEqual(config.sinks[1].connectTimeoutMilliseconds, 500)
        XCTAssertEqual(config.chains.first?.steps.map(\.name), ["tee", "primary"])
        XCTAssertEqual(config.sources.first?.port, 6400)
        XCTAssertEqual(config.sources.first?.maxClients, 10_000)
        XCTAssertEqual(config.sources.first?.idleTimeoutMilliseconds, 0)
    }

    func testClientLimitsAreReadAndChecked() throws {
        let limited = valid.replacingOccurrences(of: "chain: main }", with: "chain: main, max_clients: 3, idle_timeout_ms: 60000 }")
        let config = try SluiceConfig.parse(limited, file: "/etc/sluice/test.yaml")
        XCTAssertEqual(config.sources.first?.maxClients, 3)
        XCTAssertEqual(config.sources.first?.idleTimeoutMilliseconds, 60_000)
        let e = errors(valid.replacingOccurrences(of: "chain: main }", with: "chain: main, max_clients: 0 }"))
        XCTAssertTrue(e.contains("/etc/sluice/test.yaml:15:64: max_clients: expected an integer in 1...1000000"), "\(e)")
    }

    func testReplyAndRequestByteLimitsAndTheRequestTimeout() throws {
        let defaults = try SluiceConfig.parse(valid, file: "/etc/sluice/test.yaml").sources[0].limits
        XCTAssertEqual(defaults, ClientLimits(replySoftBytes: 1 << 20, replyHardBytes: 64 << 20,
                                              requestBufferBudgetBytes: 1 << 30, requestTimeoutMilliseconds: 30_000))
        let set = valid.replacingOccurrences(of: "chain: main }", with: "chain: main, reply_buffer_soft_bytes: 65536, "
            + "reply_buffer_hard_bytes: 1048576, request_buffer_budget_bytes: 600000000, request_timeout_ms: 0 }")
        XCTAssertEqual(try SluiceConfig.parse(set, file: "/etc/sluice/test.yaml").sources[0].limits,
                       ClientLimits(replySoftBytes: 65536, replyHardBytes: 1 << 20, requestBufferBudgetBytes: 600_000_000,
                                    requestTimeoutMilliseconds: 0))
        let bigFrames = valid.replacingOccurrences(of: "chain: main }", with: "chain: main, max_frame_bytes: 2147483648 }")
        XCTAssertEqual(try SluiceConfig.parse(bigFrames, file: "/etc/sluice/test.yaml").sources[0].limits.requestBufferBudgetBytes,
                       1 << 32, "room for two of the largest requests")
        let inverted = errors(valid.replacingOccurrences(of: "chain: main }", with: "chain: main, reply_buffer_soft_bytes: 1048576, reply_buffer_hard_bytes: 65536 }"))
        XCTAssertTrue(inverted.contains { $0.contains("reply_buffer_hard_bytes (65536) must not be below reply_buffer_soft_bytes (1048576)") }, "\(inverted)")
        let small = errors(valid.replacingOccurrences(of: "chain: main }", with: "chain: main, request_buffer_budget_bytes: 1048576 }"))
        XCTAssertTrue(small.contains { $0.contains("request_buffer_budget_bytes (1048576) must hold at least one request of max_frame_bytes (536870912)") }, "\(small)")
        let negative = errors(valid.replacingOccurrences(of: "chain: main }", with: "chain: main, request_timeout_ms: -1 }"))
        XCTAssertTrue(negative.contains { $0.contains("request_timeout_ms: expected an integer in 0...86400000") }, "\(negative)")
    }

    func testYAMLSyntaxErrorNamesLineAndColumn() {
        let e = errors("sinks:\n  primary: { redis: { address: 1 }\nchains: [")
        XCTAssertEqual(e.count, 1)
        XCTAssertTrue(e[0].hasPrefix("/etc/sluice/test.yaml:"), e[0])
        XCTAssertTrue(e[0].contains("invalid YAML"), e[0])
    }

    func testUnknownKeyIsReportedAtItsPosition() {
        let e = errors(valid.replacingOccurrences(of: "connect_timeout_ms: 500", with: "conect_timeout_ms: 500"))
        XCTAssertEqual(e, ["/etc/sluice/test.yaml:9:7: sink 'shadow'.redis: unknown key 'conect_timeout_ms' (expected one of: address, connect_timeout_ms, reply_timeout_ms, max_reply_bytes, username, password, password_env, tls)"])
    }

    func testBadAddressAndUnknownReferences() {
        let e = errors("""
            sinks:
              primary: { redis: { address: localhost } }
            chains:
              main:
                - sink: nowhere
            sources:
              - redis: { listen: 127.0.0.1:6400, chain: other }
            """)
        XCTAssertTrue(e.contains("/etc/sluice/test.yaml:2:32: sink 'primary'.redis.address: expected host:port, found 'localhost'"), "\(e)")
        XCTAssertTrue(e.contains { $0.hasPrefix("/etc/sluice/test.yaml:5:13: chain 'main': unknown sink 'nowhere'") }, "\(e)")
        XCTAssertTrue(e.contains { $0.hasPrefix("/etc/sluice/test.yaml:7:45: source.redis.chain: unknown chain 'other'") }, "\(e)")
    }

    func testChainMustEndWithSinkAndNamesMustBeUnique() {
        let e = errors("""
            sinks:
              main: { redis: { address: 127.0.0.1:1 } }
            chains:
              main:
                - tee: {}
            sources:
              - redis: { listen: 127.0.0.1:6400, chain: main }
            """)
        XCTAssertTrue(e.contains { $0.contains("4:3: chain 'main': a sink or chain of that name already exists") }, "\(e)")
    }

    func testMissingSinkStepIsReported() {
        let e = errors("""
            sinks:
              s: { redis: { address: 127.0.0.1:1 } }
            chains:
              main:
                - tee: {}
            sources:
              - redis: { listen: 127.0.0.1:6400, chain: main }
            """)
        XCTAssertEqual(e, ["/etc/sluice/test.yaml:5:7: chain 'main': the last step must be '- sink: NAME'"])
    }

    func testCycleDetection() {
        XCTAssertEqual(RuntimeBuilder.findCycle(from: "a", edges: ["a": ["b"], "b": ["a"]]), ["a", "b", "a"])
        XCTAssertNil(RuntimeBuilder.findCycle(from: "a", edges: ["a": ["b"], "b": ["c"]]))
    }

    func testDuplicateSinkIsAnErrorWithBothPositions() {
        let yaml = """
            sinks:
              primary: { redis: { address: 127.0.0.1:6379 } }
              primary: { redis: { address: 127.0.0.1:6380 } }
            chains:
              main: [ { sink: primary } ]
            sources:
              - redis: { listen: 127.0.0.1:6400, chain: main }
            """
        XCTAssertEqual(errors(yaml), ["/etc/sluice/test.yaml:3:3: duplicate key 'primary' in this map (first at /etc/sluice/test.yaml:2:3)"])
    }

    func testAliasBombsAndSelfReferencesAreRefusedNotExpanded() {
        var bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        for i in 1..<9 { bomb += "a\(i): &a\(i) [*a\(i - 1), *a\(i - 1), *a\(i - 1), *a\(i - 1), *a\(i - 1), *a\(i - 1), *a\(i - 1), *a\(i - 1), *a\(i - 1), *a\(i - 1)]\n" }
        let bombErrors = errors(bomb)
        XCTAssertEqual(bombErrors.count, 1)
        XCTAssertTrue(bombErrors.first?.contains("more than 100000 nodes (aliases counted as the nodes they stand for)") ?? false, "\(bombErrors)")
        let loop = errors("sinks: &s { primary: *s }\n")
        XCTAssertEqual(loop.count, 1)
        XCTAssertEqual(loop, ["/etc/sluice/test.yaml:1:22: invalid YAML: alias '*s' refers to a node that contains it"])
    }

    /// Without token_env the admin endpoint must listen on a loopback IP literal: a host name (even
    /// localhost, whose address /etc/hosts decides) or a name that merely starts with "127." is refused.
    func testAdminWithoutTokenNeedsALoopbackIPLiteral() throws {
        for host in ["127.0.0.1", "127.8.9.10", "[::1]", "[0:0:0:0:0:0:0:1]"] {
            let config = try SluiceConfig.parse(valid + "\nadmin: { listen: \"\(host):9180\" }\n", file: "/etc/sluice/test.yaml")
            XCTAssertNotNil(config.admin, host)
        }
        XCTAssertEqual(try SluiceConfig.parse(valid + "\nadmin: { listen: 9180 }\n", file: "/etc/sluice/test.yaml").admin?.host, "127.0.0.1")
        for host in ["127.attacker.example", "localhost", "127.0.0.1.nip.io", "0.0.0.0", "10.0.0.1", "[::]", "[::2]", "[::ffff:127.0.0.1]", "128.0.0.1"] {
            let e = errors(valid + "\nadmin: { listen: \"\(host):9180\" }\n")
            XCTAssertEqual(e.count, 1, "\(host): \(e)")
            XCTAssertTrue(e.first?.hasPrefix("/etc/sluice/test.yaml:16:18: admin.listen: ") == true, "\(host): \(e)")
            XCTAssertTrue(e.first?.contains("is not a loopback IP address") == true, "\(host): \(e)")
        }
    }
}
