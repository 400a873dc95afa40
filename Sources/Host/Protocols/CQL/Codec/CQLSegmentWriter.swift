import NIOCore

/// Packs outgoing v5 frames into segments: whole frames share self-contained segments (as many as
/// fit in one payload); a frame larger than a payload gets its own run of segments that are not
/// self-contained.
public struct CQLSegmentWriter: Sendable {
    public let codec: CQLSegmentCodec
    /// Whole frames waiting for the next self-contained segment.
    private var pending: ByteBuffer

    public init(codec: CQLSegmentCodec, allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        self.codec = codec
        pending = allocator.buffer(capacity: 0)
    }

    /// Adds one whole frame; segments that became full are appended to `output`.
    public mutating func append(frame: ByteBuffer, into output: inout ByteBuffer) {
        let max = CQLSegmentCodec.maxPayloadLength
        if pending.readableBytes + frame.readableBytes <= max {
            pending.writeImmutableBuffer(frame)
            return
        }
        flush(into: &output)
        if frame.readableBytes <= max {
            pending.writeImmutableBuffer(frame)
            return
        }
        var rest = frame
        while rest.readableBytes > 0 {
            let part = rest.readSlice(length: Swift.min(max, rest.readableBytes))!
            codec.encode(part, selfContained: false, into: &output)
        }
    }

    /// Writes the frames still pending as one self-contained segment.
    public mutating func flush(into output: inout ByteBuffer) {
        guard pending.readableBytes > 0 else { return }
        codec.encode(pending, selfContained: true, into: &output)
        pending.clear()
    }
}
