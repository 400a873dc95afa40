import NIOCore

/// Turns the bytes of a v5 connection (after STARTUP) back into frames: decodes segments, takes the
/// frames out of self-contained ones (zero-copy slices of the payload) and reassembles a frame cut
/// across segments that are not self-contained. Every frame passes `scanner`'s checks (version,
/// direction, size), so a frame announced over the limit is refused at its first segment.
///
/// States: between frames (`ready` empty, no `partial`); inside a self-contained payload (`ready`
/// holds the frames still to hand out); inside a large frame (`partial` holds its first parts).
public struct CQLSegmentReader: Sendable {
    public let codec: CQLSegmentCodec
    public var scanner: CQLFrameScanner
    private var ready = ByteBuffer()
    private var partial: ByteBuffer?

    public init(codec: CQLSegmentCodec, scanner: CQLFrameScanner) {
        self.codec = codec
        self.scanner = scanner
    }

    /// Neither frames of a self-contained segment nor parts of a split frame are waiting here.
    public var isBetweenFrames: Bool { ready.readableBytes == 0 && partial == nil }

    /// The frames of the last self-contained segment not handed out yet (whole frames, unchecked),
    /// taken out of the reader: for a caller that keeps undelivered bytes in its own buffer.
    public mutating func takeUndelivered() -> ByteBuffer {
        defer { ready = ByteBuffer() }
        return ready
    }

    /// The next whole frame, taking segments off the front of `input` as needed; nil when `input`
    /// holds no further whole segment (keep the rest and call again with more bytes).
    public mutating func nextFrame(_ input: inout ByteBuffer) throws(CQLProtocolViolation) -> CQLFrame? {
        while true {
            if ready.readableBytes > 0 {
                guard let frame = try scanner.nextFrame(&ready) else {
                    throw CQLProtocolViolation(.malformed, "a self-contained segment ends inside a frame")
                }
                return frame
            }
            guard let segment = try codec.decode(&input) else { return nil }
            if segment.isSelfContained {
                guard partial == nil else {
                    throw CQLProtocolViolation(.malformed, "a self-contained segment arrived inside a frame split across segments")
                }
                guard segment.payload.readableBytes > 0 else {
                    throw CQLProtocolViolation(.malformed, "an empty self-contained segment")
                }
                ready = segment.payload
                continue
            }
            // Move the partial frame out of `partial` while appending to it, so its storage is not
            // shared, and so not copied, on every segment.
            var assembling = partial ?? ByteBufferAllocator().buffer(capacity: segment.payload.readableBytes * 2)
            partial = nil
            var payload = segment.payload
            assembling.writeBuffer(&payload)
            guard let header = try scanner.scan(assembling) else {
                if assembling.readableBytes > scanner.maxFrameBytes {
                    throw CQLProtocolViolation(.oversize, "frame exceeds the \(scanner.maxFrameBytes)-byte limit")
                }
                // Once the header is in (and `scan` found its length within the limit), reserve the
                // whole frame so a frame of many segments is not regrown segment after segment.
                if assembling.readableBytes >= CQLFrameHeader.size,
                   let length = assembling.getInteger(at: assembling.readerIndex + 5, as: Int32.self), length > 0 {
                    assembling.reserveCapacity(minimumWritableBytes: CQLFrameHeader.size + Int(length) - assembling.readableBytes)
                }
                partial = assembling
                continue
            }
            guard assembling.readableBytes == header.frameLength else {
                throw CQLProtocolViolation(.malformed, "segments of a split frame carry bytes past its end",
                                           stream: header.stream)
            }
            return try scanner.nextFrame(&assembling)
        }
    }
}
