import Foundation
import NIOCore
import NIOPosix
import XCTest
@testable import SluiceHost

/// Hostile or careless config files (issue 14, items 12–14): limits enforced while parsing,
/// duplicate keys, listen addresses that cannot work.
final class ConfigRobustnessTests: XCTestCase {
    let file = "/etc/sluice/test.yaml"

    func errors(_ yaml: String) -> [String] {
        do {
            _ = try SluiceConfig.parse(yaml, file: file)
            return []
        } catch let e as ConfigErrors {
            return e.errors.map(\.description)
        } catch {
            return ["\(error)"]
        }
    }

    func config(_ yaml: String) throws -> SluiceConfig {
        try SluiceConfig.parse(yaml, file: file)
    }

    // MARK: item 12, limits while parsing

    /// 100,000 levels that are never closed: a parser that reads the whole document first reports
    /// the syntax error at the end (after 40 s); one that counts levels as it reads stops at 65.
    func testNestingIsRefusedWhileReadingNotAfter() {
        let deep = "x: " + String(repeating: "[", count: 100_000) + "\n"
        let e = errors(deep)
        XCTAssertEqual(e, ["\(file):1:67: invalid YAML: nested deeper than 64 levels"])
    }

    func testDeepBlockNestingIsRefusedToo() {
        var yaml = ""
        for level in 0..<70 { yaml += String(repeating: " ", count: level) + "k\(level):\n" }
        let e = errors(yaml)
        XCTAssertEqual(e.count, 1, "\(e)")
        XCTAssertTrue(e.first?.contains("nested deeper than 64 levels") ?? false, "\(e)")
    }

    func testNestingUpToTheLimitIsAccepted() throws {
        // 63 sequences inside the root map: 64 levels.
        let yaml = "x: " + String(repeating: "[", count: 62) + "1" + String(repeating: "]", count: 62) + "\n"
        XCTAssertNoThrow(try YAMLParser.parse(yaml))
        let tooDeep = "x: " + String(repeating: "[", count: 63) + "1" + String(repeating: "]", count: 63) + "\n"
        XCTAssertThrowsError(try YAMLParser.parse(tooDeep))
    }

    func testTooManyNodesAreRefusedWhileReading() {
        // 100,001 items, then a syntax error the parser must never reach.
        let yaml = "x: [" + String(repeating: "1, ", count: 100_001) + "\n  ]: ]: bad"
        let e = errors(yaml)
        XCTAssertEqual(e.count, 1, "\(e)")
        XCTAssertTrue(e.first?.contains("more than 100000 nodes") ?? false, "\(e)")
    }

    func testAnAliasToADeepNodeCountsItsDepth() {
        let nested = String(repeating: "[", count: 40) + "1" + String(repeating: "]", count: 40)
        let yaml = "a: &deep \(nested)\nb: " + String(repeating: "[", count: 30) + "*deep" + String(repeating: "]", count: 30) + "\n"
        let e = errors(yaml)
        XCTAssertTrue(e.first?.contains("nested deeper than 64 levels") ?? false, "\(e)")
    }

    func testAliasesStillResolve() throws {
        let tree = try YAMLParser.parse("base: &b { address: 127.0.0.1:1 }\ncopy: *b\n")
        XCTAssertEqual(tree["copy"]?["address"]?.scalar, "127.0.0.1:1")
        XCTAssertThrowsError(try YAMLParser.parse("a: *nowhere\n"))
    }

    func testConfigFileSizeIsBounded() throws {
        let path = NSTemporaryDirectory() + "sluice-big-\(getpid()).yaml"
        defer { unlink(path) }
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(repeating: UInt8(ascii: "#"), count: SluiceConfig.maxFileBytes + 1)))
        XCTAssertThrowsError(try SluiceConfig.load(path: path)) { error in
            XCTAssertTrue("\(error)".contains("more than the \(SluiceConfig.maxFileBytes)"), "\(error)")
        }
    }

    // MARK: item 13, duplicate keys

    func testDuplicateKeysAreErrorsWithBothPositions() {
        let yaml = """
            sinks:
              primary: { redis: { address: 127.0.0.1:6379, address: 127.0.0.1:6380 } }
            chains:
              main:
                - sink: primary
            sources:
              - redis: { listen: 127.0.0.1:6400, chain: main }
            sources: []
            """
        XCTAssertEqual(errors(yaml), [
            "\(file):2:48: duplicate key 'address' in this map (first at \(file):2:23)",
            "\(file):8:1: duplicate key 'sources' in this map (first at \(file):6:1)",
        ])
    }

    func testDuplicateKeysInsideATransformsConfigAreErrors() {
        let yaml = """
            chains:
              main:
                - tee:
                    target: a
                    target: b
            """
        XCTAssertEqual(errors(yaml), ["\(file):5:9: duplicate key 'target' in this map (first at \(file):4:9)"])
    }

    // MARK: item 14, listen addresses

    let twoListeners = """
        sinks:
          primary: { redis: { address: 127.0.0.1:1 } }
        chains:
          main: [ { sink: primary } ]
        sources:
          - redis: { listen: LISTEN_A, chain: main }
          - redis: { listen: LISTEN_B, chain: main }
        observability:
          metrics: METRICS
        """

    func listenProblems(_ a: String, _ b: String, metrics: String, tryBinding: Bool = false) throws -> [String] {
        let text = twoListeners.replacingOccurrences(of: "LISTEN_A", with: a).replacingOccurrences(of: "LISTEN_B", with: b)
            .replacingOccurrences(of: "METRICS", with: metrics)
        return ListenCheck.problems(of: try config(text), tryBinding: tryBinding).map(\.description)
    }

    func testTwoSourcesOnOnePortAreRefused() throws {
        let e = try listenProblems("127.0.0.1:7001", "127.0.0.1:7001", metrics: "127.0.0.1:7002")
        XCTAssertEqual(e, ["\(file):7:22: source.redis.listen: cannot listen on 127.0.0.1:7001: port 7001 is already taken by source.redis.listen 127.0.0.1:7001 (line 6:22)"])
        let wildcard = try listenProblems("0.0.0.0:7001", "127.0.0.1:7001", metrics: "127.0.0.1:7002")
        XCTAssertEqual(wildcard.count, 1, "\(wildcard)")
        XCTAssertTrue(try listenProblems("127.0.0.1:7001", "127.0.0.2:7001", metrics: "127.0.0.1:7002").isEmpty)
    }

    func testMetricsOnASourcePortIsRefused() throws {
        let e = try listenProblems("127.0.0.1:7001", "127.0.0.1:7003", metrics: "127.0.0.1:7003")
        XCTAssertEqual(e, ["\(file):9:12: observability.metrics: cannot listen on 127.0.0.1:7003: port 7003 is already taken by source.redis.listen 127.0.0.1:7003 (line 7:22)"])
    }

    func testAnInvalidListenAddressIsRefused() throws {
        let e = try listenProblems("256.1.1.1:7001", "no-such-host.invalid:7003", metrics: "127.0.0.1:7004")
        XCTAssertEqual(e.count, 2, "\(e)")
        XCTAssertTrue(e[0].hasPrefix("\(file):6:22: source.redis.listen: cannot listen on 256.1.1.1:7001: '256.1.1.1' is neither an IP address nor a host name"), e[0])
        XCTAssertTrue(e[1].hasPrefix("\(file):7:22: source.redis.listen: cannot listen on no-such-host.invalid:7003"), e[1])
    }

    func testAPortInUseIsFoundByBinding() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let holder = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        defer { try? holder.close().wait() }
        let port = holder.localAddress!.port!
        let e = try listenProblems("127.0.0.1:0", "127.0.0.1:\(port)", metrics: "127.0.0.1:0", tryBinding: true)
        XCTAssertEqual(e, ["\(file):7:22: source.redis.listen: cannot listen on 127.0.0.1:\(port): the address is already in use (another process listens there)"])
        XCTAssertTrue(try listenProblems("127.0.0.1:0", "127.0.0.1:\(port)", metrics: "127.0.0.1:0", tryBinding: false).isEmpty)
    }

    /// `run` could not listen after the check passed (a port taken in between): the error names
    /// the address and its line, found by checking again, or lists every address if that finds nothing.
    func testAListenFailureAtStartNamesTheAddressAndLine() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let holder = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        let port = holder.localAddress!.port!
        let text = twoListeners.replacingOccurrences(of: "LISTEN_A", with: "127.0.0.1:0")
            .replacingOccurrences(of: "LISTEN_B", with: "127.0.0.1:\(port)").replacingOccurrences(of: "METRICS", with: "127.0.0.1:0")
        let parsed = try config(text)
        let bindError = IOError(errnoCode: EADDRINUSE, reason: "bind(descriptor:ptr:bytes:)")
        XCTAssertEqual("\(ListenFailure.explaining(bindError, config: parsed))",
                       "\(file):7:22: source.redis.listen: cannot listen on 127.0.0.1:\(port): the address is already in use (another process listens there)")
        try holder.close().wait()
        let unexplained = "\(ListenFailure.explaining(bindError, config: parsed))"
        XCTAssertTrue(unexplained.hasPrefix("cannot listen on one of 127.0.0.1:0 (\(file):6:22), 127.0.0.1:\(port) (\(file):7:22), 127.0.0.1:0 (\(file):9:12): "), unexplained)
    }

    func testAnAddressOfAnotherMachineIsRefused() throws {
        let e = try listenProblems("192.0.2.1:7001", "127.0.0.1:0", metrics: "127.0.0.1:0", tryBinding: true)
        XCTAssertEqual(e, ["\(file):6:22: source.redis.listen: cannot listen on 192.0.2.1:7001: that address is not one of this machine's"])
    }
}
