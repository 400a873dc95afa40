import Foundation
import NIOCore
import NIOEmbedded
import XCTest
@testable import SluiceHost

/// A Redis client connection's handler (`ClientSession<RedisSource>`) on an `EmbeddedChannel`:
/// what the session answers itself and how it ends, without sockets or a backend (every request
/// here is answered by the source, so none reaches the chain's sink).
final class ClientSessionTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("client-session-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private func handler(maxClients: Int = 100, auth: RedisClientAuth? = nil,
                         quarantined: [String: String] = [:]) throws -> RedisClientHandler {
        let path = directory.appendingPathComponent("sluice.yaml").path
        try """
            sinks:
              primary: { redis: { address: 127.0.0.1:1 } }
            chains:
              main: [ { sink: primary } ]
            sources: [ { redis: { listen: 127.0.0.1:7000, chain: main } } ]
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let generation = ConfigGeneration(number: 1, prepared: try Sluice.prepare(configPath: path, tryBinding: false,
                                                                                  quarantined: quarantined))
        let key = generation.sourceOrder[0]
        let source = generation.sources[key]!
        return RedisClientHandler(generation: generation, loopGeneration: LoopGeneration(generation), sourceKey: key,
                                  chainIndex: source.chainIndex, maxFrameBytes: 1 << 20, maxClients: maxClients,
                                  clientAuth: auth, limits: ClientLimits(), requestBudget: RequestBufferBudget(limit: 1 << 20),
                                  usesTLS: false, metrics: SourceMetrics(listen: "test-\(UUID().uuidString)"))
    }

    private func connected(_ handler: RedisClientHandler) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(handler: handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
        return channel
    }

    private func send(_ text: String, _ channel: EmbeddedChannel) throws {
        try channel.writeInbound(ByteBuffer(string: text))
    }

    /// Everything written to the client so far, as text.
    private func written(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }

    func testQuitIsAnsweredInOrderAndClosesTheConnectionWithoutRunningWhatFollows() throws {
        let auth = RedisClientAuth(users: [.init(name: Array("default".utf8), password: Array("pw".utf8))])
        let channel = try connected(try handler(auth: auth))
        // Before signing in, GET is answered here (never reaching the sink); QUIT ends the read.
        try send("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nQUIT\r\n*1\r\n$4\r\nPING\r\n", channel)
        XCTAssertEqual(try written(channel), RedisClientAuth.noAuth + "+OK\r\n")
        channel.embeddedEventLoop.run()
        XCTAssertFalse(channel.isActive, "closed after QUIT's reply")
    }

    func testClientAuthIsAnsweredByTheSessionInOrder() throws {
        let auth = RedisClientAuth(users: [.init(name: Array("default".utf8), password: Array("pw".utf8))])
        let channel = try connected(try handler(auth: auth))
        try send("*2\r\n$4\r\nAUTH\r\n$5\r\nwrong\r\n*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n", channel)
        XCTAssertEqual(try written(channel), RedisClientAuth.wrongPass + "+OK\r\n")
        XCTAssertTrue(channel.isActive)
        _ = try? channel.finish()
    }

    func testMalformedInputGetsRedisProtocolErrorAndACloseEvenWhileMoreArrives() throws {
        let channel = try connected(try handler())
        try send("*1\r\n$x\r\n", channel)
        XCTAssertEqual(try written(channel), "-ERR Protocol error: invalid bulk length\r\n")
        try send("*1\r\n$4\r\nPING\r\n", channel)  // after the error: read and dropped
        XCTAssertEqual(try written(channel), "")
        channel.embeddedEventLoop.run()
        XCTAssertFalse(channel.isActive)
    }

    func testAClientPastMaxClientsGetsRedisRefusalAndIsClosed() throws {
        let channel = try connected(try handler(maxClients: 0))
        XCTAssertEqual(try written(channel), "-ERR max number of clients reached\r\n")
        XCTAssertFalse(channel.isActive)
    }

    func testADrainedIdleClientIsClosedAndReadsNothingMore() throws {
        let handler = try handler()
        let channel = try connected(handler)
        handler.drain()
        try send("*1\r\n$4\r\nPING\r\n", channel)  // arrives after the drain: never run
        XCTAssertEqual(try written(channel), "")
        channel.embeddedEventLoop.run()  // the half-close (EmbeddedChannel then closes fully)
        XCTAssertFalse(channel.isActive)
    }

    func testRequestsHeldBackWhileTheChainAnswersAtOnceRunOnTheNextTurn() throws {
        // A chain out of service answers every batch at once, inside the run that started it. The
        // first 16 requests (the limit before any reply) run and the rest are held back; their
        // replies resume reading inside that run, which must not nest another: the held requests
        // run on the next event-loop turn (no reply is still to come that would run them).
        let channel = try connected(try handler(quarantined: ["main": "down"]))
        let limit = ClientFlowControl.initialRequestLimit
        try send(String(repeating: "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", count: 40), channel)
        XCTAssertEqual(try written(channel).components(separatedBy: "-ERR").count - 1, limit)
        channel.embeddedEventLoop.run()
        XCTAssertEqual(try written(channel).components(separatedBy: "-ERR").count - 1, 40 - limit)
        XCTAssertTrue(channel.isActive)
        _ = try? channel.finish()
    }

    func testADrainBeforeActivationClosesTheConnectionWhenItBecomesActive() throws {
        let handler = try handler()
        handler.drain()
        let channel = try connected(handler)
        XCTAssertEqual(try written(channel), "")
        XCTAssertFalse(channel.isActive)
    }
}
