import Foundation
import NIOCore
import NIOEmbedded
import XCTest
@testable import SluiceHost

/// A `cassandra` source's client connection (`ClientSession<CQLSource>`) on an `EmbeddedChannel`:
/// the handshake Sluice answers, the framing switch as the client sees it on the wire, refusals and
/// closes, without sockets or a backend (nothing here reaches the chain's sink).
final class CQLClientHandlerTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("cql-client-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private func handler(maxClients: Int = 100, maxFrameBytes: Int = 1 << 20,
                         authentication: CQLClientConnection.Authentication = .none,
                         limits: ClientLimits = ClientLimits()) throws -> CQLClientHandler {
        // The handler takes its settings from its initialiser; the generation only lends it a chain,
        // whose sink no request of these tests reaches (so any sink kind will do).
        let path = directory.appendingPathComponent("sluice.yaml").path
        try """
            sinks:
              primary: { redis: { address: 127.0.0.1:1 } }
            chains:
              main: [ { sink: primary } ]
            sources: [ { redis: { listen: 127.0.0.1:7000, chain: main } } ]
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let generation = ConfigGeneration(number: 1, prepared: try Sluice.prepare(configPath: path, tryBinding: false))
        let key = generation.sourceOrder[0]
        let source = generation.sources[key]!
        return CQLClientHandler(generation: generation, loopGeneration: LoopGeneration(generation), sourceKey: key,
                                chainIndex: source.chainIndex, maxFrameBytes: maxFrameBytes, maxClients: maxClients,
                                authentication: authentication, limits: limits,
                                requestBudget: RequestBufferBudget(limit: 1 << 20), usesTLS: false,
                                metrics: SourceMetrics(listen: "test-\(UUID().uuidString)"))
    }

    private func connected(_ handler: CQLClientHandler) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(handler: handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
        return channel
    }

    /// Everything written to the client so far, joined.
    private func written(_ channel: EmbeddedChannel) throws -> ByteBuffer {
        var all = ByteBuffer()
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) { all.writeBuffer(&buffer) }
        return all
    }

    private func startup(_ version: CQLVersion, compression: String? = nil, stream: Int16 = 1) -> ByteBuffer {
        CQLFrameBuilder.frame(version: version, isResponse: false, stream: stream, opcode: .startup) {
            $0.writeCQLStringMap(compression.map { ["CQL_VERSION": "3.0.0", "COMPRESSION": $0] } ?? ["CQL_VERSION": "3.0.0"])
        }
    }

    private func frames(_ bytes: ByteBuffer) throws -> [CQLFrame] {
        var input = bytes
        let scanner = CQLFrameScanner(direction: .responses, maxFrameBytes: 1 << 20)
        var result: [CQLFrame] = []
        while let frame = try scanner.nextFrame(&input) { result.append(frame) }
        return result
    }

    private func segmented(_ frame: ByteBuffer, lz4: Bool) -> ByteBuffer {
        var writer = CQLSegmentWriter(codec: CQLSegmentCodec(compressed: lz4))
        var out = ByteBuffer()
        writer.append(frame: frame, into: &out)
        writer.flush(into: &out)
        return out
    }

    func testTheHandshakeIsAnsweredAndV5SegmentsFollowReadyOnTheWire() throws {
        let channel = try connected(try handler())
        // The driver's probe: the rejection, then the close.
        var probe = ByteBuffer()
        probe.writeMultipleIntegers(UInt8(0x42), UInt8(0), Int16(0), CQLOpcode.options.rawValue, UInt32(0))
        try channel.writeInbound(probe)
        let rejection = try frames(try written(channel))
        XCTAssertEqual(rejection.first?.header.opcode, .error)
        XCTAssertEqual(rejection.first?.header.version, .v5)
        channel.embeddedEventLoop.run()
        XCTAssertFalse(channel.isActive, "closed after the rejection")

        // The next connection: OPTIONS, STARTUP with LZ4 (READY bare), then OPTIONS in a segment.
        let next = try connected(try handler())
        var input = CQLFrameBuilder.frame(version: .v5, isResponse: false, stream: 0, opcode: .options) { _ in }
        var startupFrame = startup(.v5, compression: "lz4")
        input.writeBuffer(&startupFrame)
        try next.writeInbound(input)
        let answers = try frames(try written(next))
        XCTAssertEqual(answers.map(\.header.opcode), [.supported, .ready])
        try next.writeInbound(segmented(CQLFrameBuilder.frame(version: .v5, isResponse: false, stream: 9, opcode: .options) { _ in }, lz4: true))
        var wire = try written(next)
        var reader = CQLSegmentReader(codec: CQLSegmentCodec(compressed: true),
                                      scanner: CQLFrameScanner(direction: .responses, maxFrameBytes: 1 << 20))
        let supported = try XCTUnwrap(try reader.nextFrame(&wire))
        XCTAssertEqual(supported.header.opcode, .supported)
        XCTAssertEqual(supported.header.stream, 9)
        XCTAssertTrue(next.isActive)
        _ = try? next.finish()
    }

    func testSeveralFramesInOneSegmentAreAllAnswered() throws {
        // Drivers that coalesce requests put several frames in one self-contained segment; the
        // session reads on only while it holds bytes, so none of them may stay inside the source.
        let channel = try connected(try handler())
        try channel.writeInbound(startup(.v5))
        XCTAssertEqual(try frames(try written(channel)).first?.header.opcode, .ready)
        var writer = CQLSegmentWriter(codec: CQLSegmentCodec(compressed: false))
        var segment = ByteBuffer()
        for stream in Int16(5)...7 {
            writer.append(frame: CQLFrameBuilder.frame(version: .v5, isResponse: false, stream: stream, opcode: .options) { _ in },
                          into: &segment)
        }
        writer.flush(into: &segment)
        try channel.writeInbound(segment)
        var wire = try written(channel)
        var reader = CQLSegmentReader(codec: CQLSegmentCodec(compressed: false),
                                      scanner: CQLFrameScanner(direction: .responses, maxFrameBytes: 1 << 20))
        var streams: [Int16] = []
        while let frame = try reader.nextFrame(&wire) { streams.append(frame.header.stream) }
        XCTAssertEqual(streams, [5, 6, 7])
        _ = try? channel.finish()
    }

    func testAViolationAfterTheSwitchIsAnsweredInASegmentAndCloses() throws {
        let channel = try connected(try handler(maxFrameBytes: 4096))
        try channel.writeInbound(startup(.v5))
        XCTAssertEqual(try frames(try written(channel)).first?.header.opcode, .ready)
        var header = ByteBuffer()
        CQLFrameHeader(version: .v5, isResponse: false, stream: 3, opcode: .query, bodyLength: 1 << 20).write(to: &header)
        try channel.writeInbound(segmented(header, lz4: false))
        var wire = try written(channel)
        var reader = CQLSegmentReader(codec: CQLSegmentCodec(compressed: false),
                                      scanner: CQLFrameScanner(direction: .responses, maxFrameBytes: 1 << 20))
        let error = try XCTUnwrap(try reader.nextFrame(&wire))
        XCTAssertEqual(error.header.opcode, .error)
        XCTAssertEqual(error.header.stream, 3)
        try channel.writeInbound(startup(.v5))  // after the error: read and dropped
        XCTAssertEqual(try written(channel).readableBytes, 0)
        channel.embeddedEventLoop.run()
        XCTAssertFalse(channel.isActive)
    }

    func testSluiceSideAuthenticationOnTheWire() throws {
        let auth = CQLClientAuth(users: [.init(name: Array("app".utf8), password: Array("pw".utf8))])
        let channel = try connected(try handler(authentication: .sluice(auth)))
        try channel.writeInbound(startup(.v4, compression: "snappy"))
        XCTAssertEqual(try frames(try written(channel)).first?.header.opcode, .authenticate)
        for (password, opcode) in [("nope", CQLOpcode.error), ("pw", .authSuccess)] {
            let token = CQLFrameBuilder.frame(version: .v4, isResponse: false, stream: 2, opcode: .authResponse) {
                $0.writeCQLBytes(Array("\0app\0\(password)".utf8))
            }
            try channel.writeInbound(CQLFrameBuilder.compressed(token, with: .snappy))
            let reply = try XCTUnwrap(try frames(try written(channel)).first)
            XCTAssertEqual(reply.header.opcode, opcode)
            if opcode == .error {
                // Compressed on the wire, as STARTUP asked.
                XCTAssertTrue(reply.header.flags.contains(.compression))
                guard case .error(let message) = try CQLMessage(frame: reply, compression: .snappy, maxBodyBytes: 1 << 20) else {
                    return XCTFail("not an error")
                }
                XCTAssertEqual(message.code, .badCredentials)
            }
        }
        XCTAssertTrue(channel.isActive)
        _ = try? channel.finish()
    }

    func testAFailedRequestGetsServerErrorOnItsStreamAndVersion() throws {
        for (version, stream) in [(CQLVersion.v4, Int16(-7)), (.v5, 32000)] {
            let request = CQLFrameBuilder.query(version: version, stream: stream, query: "SELECT 1")
            var keys = ReplyKeys()
            CQLSource.replyKeys(of: Batch(kind: Batch.requests, protocolID: Batch.cql, messages: [request]), into: &keys)
            let replies = CQLSource.errorReplies("sluice: backend down", count: 1, replyKeys: keys, first: 0,
                                                 allocator: ByteBufferAllocator())
            XCTAssertEqual(replies.protocolID, Batch.cql)
            let frame = try XCTUnwrap(try frames(replies.messages[0]).first)
            XCTAssertEqual(frame.header.version, version)
            XCTAssertEqual(frame.header.stream, stream)
            guard case .error(let error) = try CQLMessage(frame: frame, compression: nil, maxBodyBytes: 1 << 20) else {
                return XCTFail("not an error")
            }
            XCTAssertEqual(error.code, .serverError)
            XCTAssertEqual(error.message, "sluice: backend down")
        }
    }

    func testAClientPastMaxClientsGetsOverloadedAndIsClosed() throws {
        let channel = try connected(try handler(maxClients: 0))
        let refusal = try XCTUnwrap(try frames(try written(channel)).first)
        guard case .error(let message) = try CQLMessage(frame: refusal, compression: nil, maxBodyBytes: 1 << 20) else {
            return XCTFail("not an error")
        }
        XCTAssertEqual(message.code, .overloaded)
        XCTAssertTrue(message.message.contains("max_clients (0)"), message.message)
        XCTAssertFalse(channel.isActive)
    }

    func testEventsToAClientThatDoesNotReadCloseItAtTheHardLimit() throws {
        // A client registered for events stops reading: its socket no longer takes writes. The
        // events keep coming (the shared event connection cannot stop for it); past
        // reply_buffer_hard_bytes of them the client is closed, as for replies.
        let handler = try handler(limits: ClientLimits(replySoftBytes: 4096, replyHardBytes: 16 << 10))
        let channel = try connected(handler)
        try channel.writeInbound(startup(.v4))
        XCTAssertEqual(try frames(try written(channel)).first?.header.opcode, .ready)
        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
        let event = CQLFrameBuilder.frame(version: .v4, isResponse: true, stream: -1, opcode: .event) {
            $0.writeCQLString("STATUS_CHANGE")
            $0.writeRepeatingByte(0, count: 1000)
        }
        let session = try XCTUnwrap(handler.chainSession)
        for _ in 0..<100 { session.deliverPush(event) }
        channel.embeddedEventLoop.run()
        XCTAssertFalse(channel.isActive, "closed past the hard limit")
        let queued = try written(channel).readableBytes
        XCTAssertLessThanOrEqual(queued, (16 << 10) + event.readableBytes, "no more than the hard limit was queued")
        XCTAssertGreaterThan(queued, 0)
    }
}
