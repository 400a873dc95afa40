import XCTest
@testable import SluiceHost

/// What a reload reports as changed, and which sinks keep their backend connections.
final class ConfigDiffTests: XCTestCase {
    func config(sinks: String = "primary: { redis: { address: 127.0.0.1:6379 } }",
                chains: String = "main:\n    - sink: primary",
                sources: String = "- redis: { listen: 127.0.0.1:7000, chain: main }") throws -> SluiceConfig {
        try SluiceConfig.parse("""
            sinks:
              \(sinks)
            chains:
              \(chains)
            sources:
              \(sources)
            """, file: "/etc/sluice/test.yaml")
    }

    func snapshot(_ config: SluiceConfig) -> ConfigSnapshot { ConfigSnapshot(config: config, plugins: []) }

    func testTheSameConfigChangesNothing() throws {
        let diff = ConfigDiff(old: snapshot(try config()), new: snapshot(try config()))
        XCTAssertTrue(diff.isEmpty)
        XCTAssertEqual(diff.summary, "nothing changed")
        XCTAssertEqual(diff.unchangedSinks, ["primary"])
    }

    func testPositionsAndFormattingAreNotChanges() throws {
        let a = try config(chains: "main:\n    - deny: { commands: [keys] }\n    - sink: primary")
        let b = try config(chains: "main:\n\n    - deny:\n        commands:\n          - keys\n    - sink: primary")
        XCTAssertTrue(ConfigDiff(old: snapshot(a), new: snapshot(b)).isEmpty)
    }

    func testAStepAddedOrItsConfigChangedChangesTheChain() throws {
        let plain = try config()
        let deny = try config(chains: "main:\n    - deny: { commands: [keys] }\n    - sink: primary")
        let denyMore = try config(chains: "main:\n    - deny: { commands: [keys, flushall] }\n    - sink: primary")
        XCTAssertEqual(ConfigDiff(old: snapshot(plain), new: snapshot(deny)).chains.changed, ["main"])
        XCTAssertEqual(ConfigDiff(old: snapshot(deny), new: snapshot(denyMore)).summary, "chains changed: main")
        XCTAssertEqual(ConfigDiff(old: snapshot(deny), new: snapshot(plain)).chains.changed, ["main"])
    }

    func testSinksAddedRemovedChanged() throws {
        let one = try config()
        let two = try config(sinks: "primary: { redis: { address: 127.0.0.1:6379 } }\n  other: { redis: { address: 127.0.0.1:6380 } }")
        let moved = try config(sinks: "primary: { redis: { address: 127.0.0.1:6390 } }")
        let timeout = try config(sinks: "primary: { redis: { address: 127.0.0.1:6379, reply_timeout_ms: 5 } }")
        let password = try config(sinks: "primary: { redis: { address: 127.0.0.1:6379, password: s3cr3t-one } }")
        let otherPassword = try config(sinks: "primary: { redis: { address: 127.0.0.1:6379, password: s3cr3t-two } }")
        XCTAssertEqual(ConfigDiff(old: snapshot(one), new: snapshot(two)).sinks, .init(added: ["other"]))
        XCTAssertEqual(ConfigDiff(old: snapshot(two), new: snapshot(one)).sinks, .init(removed: ["other"]))
        XCTAssertEqual(ConfigDiff(old: snapshot(two), new: snapshot(one)).unchangedSinks, ["primary"])
        for changed in [moved, timeout, password] {
            let diff = ConfigDiff(old: snapshot(one), new: snapshot(changed))
            XCTAssertEqual(diff.sinks, .init(changed: ["primary"]))
            XCTAssertTrue(diff.unchangedSinks.isEmpty)
        }
        let rotated = ConfigDiff(old: snapshot(password), new: snapshot(otherPassword))
        XCTAssertEqual(rotated.sinks.changed, ["primary"])
        XCTAssertFalse(rotated.summary.contains("s3cr3t"), "no secret in the summary: \(rotated.summary)")
    }

    func testASourceWhoseProtocolChangesIsRemovedAndAdded() throws {
        // Same listen address, redis then cassandra: the redis clients cannot go on under the
        // cassandra source, so it is one source removed and another added, not a change; the
        // listener stays bound (neither opened again nor closed).
        func parse(_ source: String) throws -> SluiceConfig {
            try SluiceConfig.parse("""
                sinks:
                  primary: { redis: { address: 127.0.0.1:6379 } }
                  cass: { cassandra: { address: 127.0.0.1:9042 } }
                chains:
                  main: [ { sink: primary } ]
                  cql: [ { sink: cass } ]
                sources:
                  - \(source)
                  - redis: { listen: 127.0.0.1:7001, chain: main }
                """, file: "/etc/sluice/test.yaml")
        }
        let redis = try parse("redis: { listen: 127.0.0.1:7000, chain: main }")
        let cassandra = try parse("cassandra: { listen: 127.0.0.1:7000, chain: cql }")
        let diff = ConfigDiff(old: snapshot(redis), new: snapshot(cassandra))
        XCTAssertEqual(diff.sources.removed, ["127.0.0.1:7000"])
        XCTAssertEqual(diff.sources.added, ["127.0.0.1:7000"])
        XCTAssertEqual(diff.sources.changed, [])
        XCTAssertEqual(diff.sourcesReplaced, ["127.0.0.1:7000"])
        XCTAssertEqual(diff.listenersToOpen, [])
        XCTAssertEqual(diff.listenersToClose, [])
        XCTAssertEqual(ConfigDiff(old: snapshot(cassandra), new: snapshot(redis)).sources.removed, ["127.0.0.1:7000"])
        // Another setting of a source of the same protocol is a change, as before.
        let otherChain = try parse("cassandra: { listen: 127.0.0.1:7000, chain: cql, max_clients: 5 }")
        let same = ConfigDiff(old: snapshot(cassandra), new: snapshot(otherChain))
        XCTAssertEqual(same.sources.changed, ["127.0.0.1:7000"])
        XCTAssertEqual(same.sourcesReplaced, [])
    }

    func testSourcesAreNamedByListenAddress() throws {
        let one = try config()
        let two = try config(sources: "- redis: { listen: 127.0.0.1:7000, chain: main }\n  - redis: { listen: '[::1]:7001', chain: main }")
        let limited = try config(sources: "- redis: { listen: 127.0.0.1:7000, chain: main, max_clients: 5 }")
        XCTAssertEqual(ConfigDiff(old: snapshot(one), new: snapshot(two)).summary, "sources added: [::1]:7001")
        XCTAssertEqual(ConfigDiff(old: snapshot(two), new: snapshot(one)).sources.removed, ["[::1]:7001"])
        XCTAssertEqual(ConfigDiff(old: snapshot(one), new: snapshot(limited)).sources.changed, ["127.0.0.1:7000"])
    }

    func testPluginsByNameVersionAndContents() {
        let old = ConfigSnapshot(plugins: ["tee": "1.0 aaaa-libtee.so", "deny": "1.0 bbbb-libdeny.so"])
        let new = ConfigSnapshot(plugins: ["tee": "1.0 cccc-libtee.so", "redirect": "1.0 dddd-libredirect.so"])
        let diff = ConfigDiff(old: old, new: new)
        XCTAssertEqual(diff.plugins, .init(added: ["redirect"], removed: ["deny"], changed: ["tee"]))
        XCTAssertEqual(diff.summary, "plugins added: redirect; plugins removed: deny; plugins changed: tee")
    }

    func testReloadGraceIsReadAndChecked() throws {
        let text = """
            sinks: { primary: { redis: { address: 127.0.0.1:6379 } } }
            chains: { main: [ { sink: primary } ] }
            sources: [ { redis: { listen: 127.0.0.1:7000, chain: main } } ]
            """
        XCTAssertEqual(try SluiceConfig.parse(text, file: "t.yaml").reloadGraceMilliseconds, 30_000)
        XCTAssertEqual(try SluiceConfig.parse(text + "\nreload: { grace_ms: 250 }", file: "t.yaml").reloadGraceMilliseconds, 250)
        XCTAssertThrowsError(try SluiceConfig.parse(text + "\nreload: { grace_ms: -1 }", file: "t.yaml")) { error in
            XCTAssertTrue("\(error)".contains("t.yaml:4:21: reload.grace_ms: expected an integer"), "\(error)")
        }
        XCTAssertThrowsError(try SluiceConfig.parse(text + "\nreload: { grace: 1 }", file: "t.yaml")) { error in
            XCTAssertTrue("\(error)".contains("reload: unknown key 'grace'"), "\(error)")
        }
    }
}
