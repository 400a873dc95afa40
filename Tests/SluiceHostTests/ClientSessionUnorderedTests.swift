import Foundation
import NIOCore
import NIOEmbedded
import XCTest
@testable import SluiceHost

/// A protocol of the CQL kind on the generic session: replies as they come, every request its own
/// batch, error replies that need to know their request (`replyKey`), an outbound encoder. A line
/// is a request ("R<n>"), "hello" is answered by the source, "bye" ends the connection. The chain
/// is out of service (a quarantined chain answers every batch with its error at once), so no
/// request needs a backend.
private struct LineSource: SourceProtocol {
    struct Settings {}
    static var protocolID: Int32 { Batch.cql }
    static var repliesInOrder: Bool { false }
    static var maxRequestsPerBatch: Int { 1 }
    var inTransaction: Bool { false }
    var sealed = 0

    init(settings: Settings, metrics: SourceMetrics) {}

    mutating func nextRequest(_ buffer: inout ByteBuffer, session: ChainSession?,
                              allocator: ByteBufferAllocator) -> SourceScan {
        guard let end = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else { return .needMore }
        let line = buffer.readString(length: end - buffer.readerIndex)!
        buffer.moveReaderIndex(forwardBy: 1)
        switch line {
        case "hello": return .answer(ByteBuffer(string: "hi"))
        case "bye": return .close(reply: ByteBuffer(string: "ciao"), protocolError: false, logDetail: nil)
        case "": return .nothing
        case _ where line.hasPrefix("X"):
            // A request that grows on the way in ("X<n>": n bytes, as a compressed body would).
            let size = Int(line.dropFirst()) ?? 0
            var grown = ByteBuffer(string: "R0")
            grown.writeRepeatingByte(0, count: max(size - 2, 0))
            return .request(grown, asReceived: false)
        default: return .request(ByteBuffer(string: line), asReceived: false)
        }
    }

    mutating func sealBatch(_ batch: Batch) {
        XCTAssertEqual(batch.count, 1, "every request is its own batch")
        batch.markPlain(expectedReplies: 0)  // not Redis: the session facts skip it
        sealed += 1
    }

    /// Each request's number ("R7" → 7).
    static func replyKeys(of batch: Batch, into keys: inout ReplyKeys) {
        keys.reset(first: batch.withMessageBytes(0) { UInt64(String(decoding: $0.dropFirst(), as: UTF8.self)) ?? 0 })
        for i in 1..<max(batch.count, 1) {
            keys.append(batch.withMessageBytes(i) { UInt64(String(decoding: $0.dropFirst(), as: UTF8.self)) ?? 0 })
        }
    }

    static func errorReplies(_ message: String, count: Int, replyKeys: ReplyKeys, first: Int,
                             allocator: ByteBufferAllocator) -> Batch {
        Batch(kind: Batch.responses, protocolID: Batch.cql,
              messages: (first..<first + count).map { ByteBuffer(string: "E\(replyKeys[$0]):\(message)") })
    }

    static func refusal(_ reason: ClientRefusal, allocator: ByteBufferAllocator) -> ByteBuffer {
        ByteBuffer(string: "refused")
    }

    /// The outbound encoding: each reply framed as "[…]\n".
    mutating func write(_ replies: Batch, to context: ChannelHandlerContext, flush: Bool) {
        for reply in replies.messages {
            context.write(NIOAny(ByteBuffer(string: "[\(String(buffer: reply))]\n")), promise: nil)
        }
        if flush { context.flush() }
    }
}

/// `LineSource` with the frames of one read run as one batch (as `CQLSource` does).
private struct BatchedLineSource: SourceProtocol {
    typealias Settings = LineSource.Settings
    static var protocolID: Int32 { Batch.cql }
    static var repliesInOrder: Bool { false }
    static var maxRequestsPerBatch: Int { 64 }
    var inTransaction: Bool { false }
    private var lines: LineSource
    private(set) var sealed: [Int] = []

    init(settings: Settings, metrics: SourceMetrics) { lines = LineSource(settings: settings, metrics: metrics) }

    mutating func nextRequest(_ buffer: inout ByteBuffer, session: ChainSession?,
                              allocator: ByteBufferAllocator) -> SourceScan {
        lines.nextRequest(&buffer, session: session, allocator: allocator)
    }

    mutating func sealBatch(_ batch: Batch) {
        batch.markPlain(expectedReplies: 0)
        sealed.append(batch.count)
    }

    static func replyKeys(of batch: Batch, into keys: inout ReplyKeys) { LineSource.replyKeys(of: batch, into: &keys) }

    static func errorReplies(_ message: String, count: Int, replyKeys: ReplyKeys, first: Int,
                             allocator: ByteBufferAllocator) -> Batch {
        LineSource.errorReplies(message, count: count, replyKeys: replyKeys, first: first, allocator: allocator)
    }

    static func refusal(_ reason: ClientRefusal, allocator: ByteBufferAllocator) -> ByteBuffer {
        LineSource.refusal(reason, allocator: allocator)
    }

    mutating func write(_ replies: Batch, to context: ChannelHandlerContext, flush: Bool) {
        lines.write(replies, to: context, flush: flush)
    }
}

private final class LineHandler<S: SourceProtocol>: ClientSession<S>, ChannelInboundHandler, ResponseSlotOwner {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    /// With `holdReplies`, answered slots are kept here instead of reaching the session (the test
    /// hands them over later, in any order: replies that come back late and out of order).
    var holdReplies = false
    var held: [ResponseSlot] = []

    func channelActive(context: ChannelHandlerContext) { sessionActive(context: context) }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) { sessionRead(context: context, data: unwrapInboundIn(data)) }
    func channelInactive(context: ChannelHandlerContext) { sessionInactive(context: context) }
    func slotCompleted(_ slot: ResponseSlot) {
        if holdReplies { held.append(slot) } else { sessionSlotCompleted(slot) }
    }
    func errorReplies(_ message: String, count: Int, replyKeys: ReplyKeys, first: Int) -> Batch {
        sessionErrorReplies(message, count: count, replyKeys: replyKeys, first: first)
    }
    func slotReplied(_ slot: ResponseSlot, _ replies: Batch) { sessionSlotReplied(slot, replies) }
}

final class ClientSessionUnorderedTests: XCTestCase {
    var directory: URL!
    private var holding: LineHandler<LineSource>?

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("client-unordered-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    /// A connected channel; its handler is `holding`.
    private func connected(limits: ClientLimits = ClientLimits()) throws -> EmbeddedChannel {
        let (channel, handler) = try connected(LineSource.self, limits: limits)
        holding = handler
        return channel
    }

    /// A connected channel whose client speaks `S`, and its handler.
    private func connected<S: SourceProtocol>(_: S.Type, limits: ClientLimits = ClientLimits()) throws
        -> (EmbeddedChannel, LineHandler<S>) where S.Settings == LineSource.Settings {
        let path = directory.appendingPathComponent("sluice.yaml").path
        try """
            sinks:
              primary: { redis: { address: 127.0.0.1:1 } }
            chains:
              main: [ { sink: primary } ]
            sources: [ { redis: { listen: 127.0.0.1:7000, chain: main } } ]
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let prepared = try Sluice.prepare(configPath: path, tryBinding: false, quarantined: ["main": "down"])
        let generation = ConfigGeneration(number: 1, prepared: prepared)
        let key = generation.sourceOrder[0]
        let handler = LineHandler<S>(generation: generation, loopGeneration: LoopGeneration(generation), sourceKey: key,
                                  chainIndex: generation.sources[key]!.chainIndex, settings: .init(), maxClients: 10,
                                  limits: limits, requestBudget: RequestBufferBudget(limit: 1 << 20),
                                  usesTLS: false, metrics: SourceMetrics(listen: "test-\(UUID().uuidString)"))
        handler.bindSlotOwner(handler)
        let channel = EmbeddedChannel(handler: handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
        return (channel, handler)
    }

    private func written(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }

    func testEachRequestIsItsOwnBatchAndItsErrorReplyKnowsItsRequest() throws {
        let channel = try connected()
        try channel.writeInbound(ByteBuffer(string: "R1\nR2\nhello\n\nR3\nR4"))
        XCTAssertEqual(try written(channel), "[E1:down]\n[E2:down]\n[hi]\n[E3:down]\n")
        try channel.writeInbound(ByteBuffer(string: "\n"))  // the rest of R4
        XCTAssertEqual(try written(channel), "[E4:down]\n")
        XCTAssertTrue(channel.isActive)
        try channel.writeInbound(ByteBuffer(string: "bye\nR5\n"))
        XCTAssertEqual(try written(channel), "[ciao]\n", "nothing after the closing request runs")
        channel.embeddedEventLoop.run()
        XCTAssertFalse(channel.isActive)
    }

    func testTheRequestsOfOneReadRunAsOneBatchAndEachFailsWithItsOwnErrorReply() throws {
        let (channel, handler) = try connected(BatchedLineSource.self)
        try channel.writeInbound(ByteBuffer(string: "R1\nR2\nR3\nhello\nR4\nR5"))
        // R1–R3 one batch, answered here "hello" ends it; R4 runs alone once the read ends (R5 is partial).
        XCTAssertEqual(try written(channel), "[E1:down]\n[E2:down]\n[E3:down]\n[hi]\n[E4:down]\n")
        try channel.writeInbound(ByteBuffer(string: "\nR6\n"))
        XCTAssertEqual(try written(channel), "[E5:down]\n[E6:down]\n")
        XCTAssertEqual(handler.sourceState.sealed, [3, 1, 2])
        XCTAssertTrue(channel.isActive)
        _ = try? channel.finish()
    }

    func testRepliesGoAsTheyComeAndOneFlushCoversThoseOfATurn() throws {
        let channel = try connected()
        let handler = holding!
        handler.holdReplies = true
        try channel.writeInbound(ByteBuffer(string: "R1\nR2\nR3\n"))
        XCTAssertEqual(handler.held.count, 3)
        XCTAssertEqual(try written(channel), "", "nothing answered yet")
        // R3 and R2 come back first: written in that order, flushed at the end of the turn.
        handler.sessionSlotCompleted(handler.held[2])
        handler.sessionSlotCompleted(handler.held[1])
        XCTAssertEqual(try written(channel), "", "R1 still in flight: the flush waits for the end of the turn")
        channel.embeddedEventLoop.run()
        XCTAssertEqual(try written(channel), "[E3:down]\n[E2:down]\n")
        // The last one in flight is flushed at once.
        handler.sessionSlotCompleted(handler.held[0])
        XCTAssertEqual(try written(channel), "[E1:down]\n")
        handler.holdReplies = false
        try channel.writeInbound(ByteBuffer(string: "bye\n"))
        XCTAssertEqual(try written(channel), "[ciao]\n")
        channel.embeddedEventLoop.run()
        XCTAssertFalse(channel.isActive)
    }

    func testAReplyThatEndsTheConnectionIsFlushedBeforeTheClose() throws {
        // Two requests in flight: the closing request's reply is written unflushed (others may come
        // back in the same turn), and the close is queued behind that flush.
        let channel = try connected()
        let handler = holding!
        handler.holdReplies = true
        try channel.writeInbound(ByteBuffer(string: "R1\nR2\nbye\n"))
        XCTAssertEqual(handler.held.count, 2)
        XCTAssertEqual(try written(channel), "", "flushed at the end of the turn")
        XCTAssertTrue(channel.isActive)
        channel.embeddedEventLoop.run()
        XCTAssertEqual(try written(channel), "[ciao]\n", "the flush ran before the close")
        XCTAssertFalse(channel.isActive)
        for slot in handler.held { handler.sessionSlotCompleted(slot) }  // too late: nothing more is written
        XCTAssertEqual(try written(channel), "")
    }

    func testRequestsThatGrewOnTheWayInStopTheReadingAtTheRequestWindow() throws {
        // 64 requests of 1 MiB each as they run (a small LZ4 body decompresses to a large frame),
        // replies held back: the client is read only until its requests in flight fill its request
        // window (a sixteenth of the request-buffer budget: 2 MiB of 32 MiB), not all 64 of them.
        let limits = ClientLimits(requestBufferBudgetBytes: 32 << 20)
        XCTAssertEqual(limits.requestWindowBytes, 2 << 20)
        let channel = try connected(limits: limits)
        let handler = holding!
        // One small reply first: the in-flight request limit grows to its maximum (4096).
        try channel.writeInbound(ByteBuffer(string: "R1\n"))
        XCTAssertEqual(try written(channel), "[E1:down]\n")
        handler.holdReplies = true
        var input = ByteBuffer()
        for _ in 0..<64 { input.writeString("X\(1 << 20)\n") }
        try channel.writeInbound(input)
        XCTAssertEqual(handler.held.count, 2, "reading stops once 2 MiB of requests are in flight")
        // Replies free the window: the requests read but held back run, again two at a time.
        let first = handler.held
        handler.held.removeAll()
        for slot in first { handler.sessionSlotCompleted(slot) }
        channel.embeddedEventLoop.run()
        XCTAssertEqual(handler.held.count, 2)
        XCTAssertEqual(try written(channel), "[E0:down]\n[E0:down]\n")
        XCTAssertTrue(channel.isActive)
        _ = try? channel.finish()
    }
}
