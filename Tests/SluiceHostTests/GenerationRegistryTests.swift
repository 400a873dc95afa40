import Foundation
import NIOCore
import NIOPosix
import XCTest
@testable import SluiceHost

/// The life of configuration generations: current, each loop's view, and the end of a replaced one
/// (its configs freed only after its last session left).
final class GenerationRegistryTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("generations-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func generation(_ number: Int, sinks: String = "primary: { redis: { address: 127.0.0.1:6379 } }") throws -> ConfigGeneration {
        let path = directory.appendingPathComponent("g\(number).yaml").path
        try """
            sinks:
              \(sinks)
            chains:
              main: [ { sink: primary } ]
            sources: [ { redis: { listen: 127.0.0.1:7000, chain: main } } ]
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return ConfigGeneration(number: number, prepared: try Sluice.prepare(configPath: path, tryBinding: false))
    }

    func testAReplacedGenerationEndsWithItsLastSessionAndOnlyThen() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { try? group.syncShutdownGracefully() }
        let first = try generation(1)
        let registry = GenerationRegistry(first: first, group: group)
        let freed = LockedValue<[Int]>([])
        registry.onFreed = { g in freed.value.append(g.number) }

        first.sessionStarted()
        first.sessionStarted()
        let second = try generation(2)
        registry.install(second)
        XCTAssertTrue(registry.current === second)
        for loop in group.makeIterator() {
            let view = registry.loopGeneration(for: loop)
            XCTAssertEqual(try loop.submit { view.number }.wait(), 2)
        }
        first.sessionEnded()
        registry.controlQueue.sync {}
        XCTAssertEqual(freed.value, [], "one session still runs on generation 1")
        first.sessionEnded()
        registry.controlQueue.sync {}
        XCTAssertEqual(freed.value, [1])

        // The current generation is not freed by its sessions ending: only once replaced.
        second.sessionStarted()
        second.sessionEnded()
        registry.controlQueue.sync {}
        XCTAssertEqual(freed.value, [1])
        registry.freeAll()
        XCTAssertEqual(freed.value, [1, 2])
        registry.freeAll()
        XCTAssertEqual(freed.value, [1, 2], "each generation's configs are freed once")
    }

    /// A reload is reported only after every loop knows the new generation: a request read on a
    /// loop that was busy during the switch runs on the new chain (CI once saw the old chain's
    /// reply to the first request sent after "reloaded").
    func testInstallReturnsOnlyWhenEveryLoopKnowsTheNewGeneration() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let registry = GenerationRegistry(first: try generation(1), group: group)
        let loop = group.next()
        let view = registry.loopGeneration(for: loop)
        let busy = DispatchSemaphore(value: 0)
        let started = DispatchSemaphore(value: 0)
        loop.execute { started.signal(); busy.wait() }
        started.wait()
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(200)) { busy.signal() }
        registry.install(try generation(2))
        // Before the fix install returned while the loop was still busy, its view at 1 (and the
        // read below was race-free because the loop was blocked); now the loop's task ran first.
        XCTAssertEqual(view.number, 2)
    }

    func testAGenerationWithoutSessionsEndsWhenReplaced() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let registry = GenerationRegistry(first: try generation(1), group: group)
        let freed = LockedValue<[Int]>([])
        registry.onFreed = { g in freed.value.append(g.number) }
        registry.install(try generation(2))
        registry.install(try generation(3))
        registry.controlQueue.sync {}
        XCTAssertEqual(freed.value, [1, 2])
    }

    /// Two reloads before a loop ran its task for the first: its view still names generation 2,
    /// which ended (retired with no session) and was freed. A client starting or moving there
    /// must land on the current generation, never on the freed one.
    func testASessionNeverStartsOnAGenerationFreedBeforeItsLoopLearntOfTheNext() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let loop = group.next()
        let registry = GenerationRegistry(first: try generation(1), group: group)
        let freed = LockedValue<[Int]>([])
        registry.onFreed = { g in freed.value.append(g.number) }
        let view = registry.loopGeneration(for: loop)
        let second = try generation(2)
        let third = try generation(3)
        registry.install(second)
        XCTAssertEqual(try loop.submit { view.number }.wait(), 2)

        // The loop is busy (a client's read) while reload 3 installs: its advance task waits.
        let installed = DispatchSemaphore(value: 0)
        let read = loop.submit { () -> (Int, Int?) in
            installed.wait()
            return (view.number, view.startSession(preferring: view.current)?.number)
        }
        registry.install(third, patience: .milliseconds(50))  // gives up waiting for the busy loop
        registry.controlQueue.sync {}
        XCTAssertEqual(freed.value, [1, 2], "generation 2 ended unused when 3 replaced it")
        installed.signal()
        let (seen, started) = try read.wait()
        XCTAssertEqual(seen, 2, "the loop had not learnt of generation 3 yet")
        XCTAssertEqual(started, 3, "a session on the freed generation 2 would run on freed configs")
        XCTAssertEqual(second.sessionCount, 0)
        XCTAssertEqual(third.sessionCount, 1)
        XCTAssertFalse(second.sessionStarted(), "an ended generation takes no session")
        XCTAssertEqual(second.sessionCount, 0)
    }

    /// The second line of defence: a step whose config was freed never reaches instance_new.
    func testNoInstanceIsMadeForAFreedConfig() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let instances = LiveInstances()
        var called = false
        let creation = instances.create(on: group.next(), hasConfig: { false }) {
            called = true
            return (0, nil)
        }
        guard case .configFreed = creation else { return XCTFail("made or refused: \(creation)") }
        XCTAssertFalse(called, "instance_new ran with a freed config")
        XCTAssertEqual(instances.count, 0)
    }

    /// A reload queued behind the stop (a POST /reload racing SIGTERM) is refused instead of
    /// changing the listeners stop is closing, on event loops being shut down.
    func testAReloadAfterTheServerStoppedIsRefused() throws {
        let path = directory.appendingPathComponent("serving.yaml").path
        try """
            sinks:
              primary: { redis: { address: 127.0.0.1:6379 } }
            chains:
              main: [ { sink: primary } ]
            sources: [ { redis: { listen: 127.0.0.1:0, chain: main } } ]
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let server = try Sluice.start(try Sluice.prepare(configPath: path), threads: 1)
        let reloader = Reloader(server: server, configPath: path)
        XCTAssertTrue(reloader.reload().switched)
        server.stop(drainTimeout: .milliseconds(0))
        let outcome = reloader.reload()
        server.releaseConfigs()
        XCTAssertFalse(outcome.switched, outcome.description)
        XCTAssertTrue(outcome.detail.contains("stopping"), outcome.detail)
        XCTAssertEqual(outcome.generation, 2)
    }

    func testUnchangedSinksKeepTheirPlaceByName() throws {
        let old = try generation(1, sinks: "primary: { redis: { address: 127.0.0.1:6379 } }\n  other: { redis: { address: 127.0.0.1:6380 } }")
        let new = try generation(2, sinks: "fresh: { redis: { address: 127.0.0.1:6390 } }\n  other: { redis: { address: 127.0.0.1:6380 } }\n  primary: { redis: { address: 127.0.0.1:6379, reply_timeout_ms: 5 } }")
        // other: 1 -> 1 (unchanged); primary changed (a new reply timeout): not kept.
        XCTAssertEqual(old.sinkIndices(to: new), [1: 1])
        XCTAssertEqual(old.sinkIndices(to: old), [0: 0, 1: 1])
    }
}

/// A value behind a lock, for callbacks from other threads.
final class LockedValue<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value {
        get { lock.lock(); defer { lock.unlock() }; return stored }
        set { lock.lock(); defer { lock.unlock() }; stored = newValue }
    }
}
