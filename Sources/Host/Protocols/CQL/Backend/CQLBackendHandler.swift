import NIOCore

/// The channel handler of a CQL backend connection: frames out of the byte stream into the
/// connection (`BackendReadLoop`), and the framing of both directions, which is bare frames until
/// a v5 connection's STARTUP is answered and v5 segments from then on (`switchToSegments`, called
/// by `CQLBackend.handshakeVerdict` before the next request is written; nothing arrives from the
/// backend between its answer and that request).
///
/// In segments, the payloads (zero-copy slices) go to the read loop as a byte stream, where frames
/// split across segments join up as frames split across reads do. Outgoing bytes are gathered
/// until the flush (they always end on a frame boundary there) and packed into self-contained
/// segments of whole frames, a frame over a segment's payload into segments that are not.
final class CQLBackendHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum Framing {
        case frames
        case segments(CQLSegmentCodec)
    }

    private var loop: BackendReadLoop<CQLBackend>
    private var framing = Framing.frames
    /// Segments: the bytes of an incomplete segment.
    private var partialSegment: ByteBuffer?
    /// Segments: frames written since the last flush.
    private var outgoing: ByteBuffer?
    /// Segments: what the last flush wrote, marked consumed; its storage is reused by the next
    /// flush once the socket has taken it (normally by then), instead of a new one per flush.
    private var segments = ByteBuffer()
    private var challenges = 0

    init(connection: CQLSinkConnection, maxFrameBytes: Int) {
        loop = BackendReadLoop(connection: connection, maxFrameBytes: maxFrameBytes)
    }

    /// The connection whose channel this handles.
    var connection: CQLSinkConnection { loop.connection }

    /// From the next byte on, both directions travel in (uncompressed) v5 segments.
    func switchToSegments() {
        framing = .segments(CQLSegmentCodec(compressed: false))
    }

    /// Counts a SASL challenge of the handshake; returns how many came.
    func countChallenge() -> Int {
        challenges += 1
        return challenges
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        guard case .segments(let codec) = framing else {
            loop.channelRead(bytes, on: context.channel)
            return
        }
        var input = ByteBuffer.joining(&partialSegment, bytes)
        do {
            while let segment = try codec.decode(&input) {
                loop.channelRead(segment.payload, on: context.channel)
                if loop.connection.isClosed { return }
            }
        } catch {
            partialSegment = nil
            loop.connection.protocolError(error.message)
            return
        }
        if input.readableBytes > 0 { partialSegment = input }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .segments = framing else {
            context.write(data, promise: promise)
            return
        }
        var bytes = unwrapOutboundIn(data)
        if outgoing == nil {
            outgoing = bytes
        } else {
            outgoing!.writeBuffer(&bytes)
        }
        promise?.succeed(())
    }

    func flush(context: ChannelHandlerContext) {
        guard case .segments(let codec) = framing, var pending = outgoing else {
            context.flush()
            return
        }
        outgoing = nil
        let capacity = pending.readableBytes + pending.readableBytes / 4096 * 10 + 16
        if segments.capacity == 0 || segments.capacity > Self.keptCapacity {
            segments = context.channel.allocator.buffer(capacity: max(capacity, 4096))
        } else {
            segments.clear()  // new storage only when the channel still holds the last flush's
            segments.reserveCapacity(capacity)
        }
        Self.pack(&pending, codec: codec, into: &segments)
        if pending.readableBytes > 0 { outgoing = pending }  // cannot happen: flushes end on frame boundaries
        context.writeAndFlush(wrapOutboundOut(segments), promise: nil)
        segments.moveReaderIndex(to: segments.writerIndex)
    }

    /// The largest segment storage kept from one flush to the next.
    static var keptCapacity: Int { 65536 }

    /// Packs the whole frames at the front of `frames` into segments appended to `output`, leaving
    /// an incomplete last frame in `frames`.
    static func pack(_ frames: inout ByteBuffer, codec: CQLSegmentCodec, into output: inout ByteBuffer) {
        let limit = CQLSegmentCodec.maxPayloadLength
        while frames.readableBytes >= CQLFrameHeader.size {
            var run = 0
            while let length = frameLength(frames, at: frames.readerIndex + run), run + length <= limit,
                  run + length <= frames.readableBytes {
                run += length
            }
            if run > 0 {
                codec.encode(frames.readSlice(length: run)!, selfContained: true, into: &output)
                continue
            }
            guard let length = frameLength(frames, at: frames.readerIndex), length <= frames.readableBytes else { return }
            var large = frames.readSlice(length: length)!
            while large.readableBytes > 0 {
                codec.encode(large.readSlice(length: min(limit, large.readableBytes))!, selfContained: false, into: &output)
            }
        }
    }

    private static func frameLength(_ buffer: ByteBuffer, at index: Int) -> Int? {
        guard index + CQLFrameHeader.size <= buffer.writerIndex,
              let body = buffer.getInteger(at: index + 5, as: Int32.self), body >= 0 else { return nil }
        return CQLFrameHeader.size + Int(body)
    }

    func channelInactive(context: ChannelHandlerContext) {
        loop.channelInactive(context.channel)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        loop.userInboundEventTriggered(event, on: context.channel)
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        loop.errorCaught(error, on: context.channel)
        context.close(promise: nil)
    }
}
