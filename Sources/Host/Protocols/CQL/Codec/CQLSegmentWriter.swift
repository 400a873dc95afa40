import NIOCore

/// Packs outgoing v5 frames into segments: whole frames share self-contained segments (as many as
/// fit in one payload); a frame larger than a payload gets its own run of segments that are not
/// self-contained.
///
/// Without compression each frame is copied once, straight into the caller's output: the open
/// segment's 6 header bytes are reserved there and filled in (length, CRC24), and its CRC32
/// appended, when it closes (`flush`, or a frame that does not fit). So the same `output` must be
/// passed from the first `append` of a segment to the `flush` that closes it, and nothing may read
/// from it in between. With LZ4 the frames wait in a buffer of the writer's own until the segment
/// is compressed.
public struct CQLSegmentWriter: Sendable {
    public let codec: CQLSegmentCodec
    /// LZ4: whole frames waiting for the next self-contained segment.
    private var pending: ByteBuffer
    /// Uncompressed: the index in the caller's output where the open segment's header begins (its
    /// frames follow the reserved header bytes); nil when no segment is open.
    private var openSegment: Int?

    public init(codec: CQLSegmentCodec, allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        self.codec = codec
        pending = allocator.buffer(capacity: 0)
    }

    /// Adds one whole frame; segments that became full are appended to `output`.
    public mutating func append(frame: ByteBuffer, into output: inout ByteBuffer) {
        guard !codec.compressed else {
            appendCompressed(frame: frame, into: &output)
            return
        }
        let max = CQLSegmentCodec.maxPayloadLength
        let headerBytes = codec.headerLengthWithCRC
        if let start = openSegment {
            if output.writerIndex - start - headerBytes + frame.readableBytes <= max {
                output.writeImmutableBuffer(frame)
                return
            }
            closeSegment(in: &output)
        }
        if frame.readableBytes <= max {
            openSegment = output.writerIndex
            output.writeRepeatingByte(0, count: headerBytes)  // filled in when the segment closes
            output.writeImmutableBuffer(frame)
            return
        }
        encodeParts(of: frame, into: &output)
    }

    /// Writes the frames still pending as one self-contained segment.
    public mutating func flush(into output: inout ByteBuffer) {
        guard !codec.compressed else {
            guard pending.readableBytes > 0 else { return }
            codec.encode(pending, selfContained: true, into: &output)
            pending.clear()
            return
        }
        closeSegment(in: &output)
    }

    /// Fills in the open segment's header and CRC24 and appends its payload's CRC32.
    private mutating func closeSegment(in output: inout ByteBuffer) {
        guard let start = openSegment else { return }
        openSegment = nil
        let headerBytes = codec.headerLengthWithCRC
        let payloadStart = start + headerBytes
        let payloadLength = output.writerIndex - payloadStart
        let header = UInt64(payloadLength) | 1 << 17  // self-contained
        let crc24 = CQLChecksums.crc24(header, byteCount: 3)
        output.setMultipleIntegers(UInt8(truncatingIfNeeded: header), UInt8(truncatingIfNeeded: header >> 8),
                                   UInt8(truncatingIfNeeded: header >> 16), UInt8(truncatingIfNeeded: crc24),
                                   UInt8(truncatingIfNeeded: crc24 >> 8), UInt8(truncatingIfNeeded: crc24 >> 16), at: start)
        let crc32 = output.withUnsafeReadableBytes { bytes in
            CQLChecksums.crc32(UnsafeRawBufferPointer(rebasing: bytes[(payloadStart - output.readerIndex)...]))
        }
        output.writeInteger(crc32, endianness: .little)
    }

    private mutating func appendCompressed(frame: ByteBuffer, into output: inout ByteBuffer) {
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
        encodeParts(of: frame, into: &output)
    }

    /// A frame over a segment's payload: segments that are not self-contained.
    private func encodeParts(of frame: ByteBuffer, into output: inout ByteBuffer) {
        let max = CQLSegmentCodec.maxPayloadLength
        var rest = frame
        while rest.readableBytes > 0 {
            let part = rest.readSlice(length: Swift.min(max, rest.readableBytes))!
            codec.encode(part, selfContained: false, into: &output)
        }
    }
}
