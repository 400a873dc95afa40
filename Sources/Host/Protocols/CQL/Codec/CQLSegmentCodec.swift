import NIOCore

/// One v5 segment: the unit that carries frames on a v5 connection once STARTUP is answered.
///
/// Uncompressed: a 3-byte little-endian header (17-bit payload length, then the self-contained bit)
/// and its CRC24 (3 bytes), the payload, the payload's CRC32 (4 bytes, little-endian). With LZ4: a
/// 5-byte header (17-bit compressed length, 17-bit uncompressed length, the self-contained bit) and
/// its CRC24, then the compressed payload and its CRC32; an uncompressed length of 0 means the
/// payload is stored as it is. A payload is at most 128 KiB - 1 bytes (uncompressed).
public struct CQLSegment: Sendable {
    /// True when the payload holds one or more whole frames; false when it is one part of a frame
    /// too large for a segment.
    public let isSelfContained: Bool
    /// The payload, decompressed (a slice of the input when it was not compressed).
    public let payload: ByteBuffer
}

/// Encodes and decodes single segments, with or without LZ4 (what STARTUP negotiated).
public struct CQLSegmentCodec: Sendable {
    public static let maxPayloadLength = 128 * 1024 - 1
    private static let lengthMask: UInt64 = 0x1_FFFF

    /// LZ4-compressed segments (STARTUP COMPRESSION=lz4 on a v5 connection).
    public let compressed: Bool

    public init(compressed: Bool) { self.compressed = compressed }

    /// Header bytes before the CRC24: 5 with LZ4, 3 without.
    public var headerLength: Int { compressed ? 5 : 3 }
    /// Header and its CRC24.
    public var headerLengthWithCRC: Int { headerLength + 3 }

    /// What the header of a segment says (see `peekHeader`).
    public struct Header: Sendable {
        /// Header, CRC24, payload and CRC32: the segment's bytes on the wire.
        public let totalLength: Int
        /// The payload's length as sent (compressed or not).
        public let payloadLength: Int
        /// With LZ4, the payload's length once decompressed; 0 when it is stored as it is.
        public let uncompressedLength: Int
        public let isSelfContained: Bool
        /// The payload's length once decompressed, whichever way it was sent.
        public var frameBytes: Int { uncompressedLength > 0 ? uncompressedLength : payloadLength }
    }

    /// The header of the segment at `offset` bytes into `buffer`'s readable bytes, checked (CRC24)
    /// and not taken; nil when its header bytes are not all there yet.
    public func peekHeader(_ buffer: ByteBuffer, offset: Int = 0) throws(CQLProtocolViolation) -> Header? {
        let start = buffer.readerIndex + offset
        guard buffer.readableBytes - offset >= headerLengthWithCRC else { return nil }
        var header: UInt64 = 0
        for i in 0..<headerLength {
            header |= UInt64(buffer.getInteger(at: start + i, as: UInt8.self)!) << (8 * i)
        }
        var sent: UInt32 = 0
        for i in 0..<3 {
            sent |= UInt32(buffer.getInteger(at: start + headerLength + i, as: UInt8.self)!) << (8 * i)
        }
        let computed = CQLChecksums.crc24(header, byteCount: headerLength)
        guard sent == computed else {
            throw CQLProtocolViolation(
                .checksum, "segment header CRC24 mismatch (received \(String(sent, radix: 16)), computed \(String(computed, radix: 16)))")
        }
        let payloadLength = Int(header & Self.lengthMask)
        return Header(totalLength: headerLengthWithCRC + payloadLength + 4, payloadLength: payloadLength,
                      uncompressedLength: compressed ? Int((header >> 17) & Self.lengthMask) : 0,
                      isSelfContained: (header >> (compressed ? 34 : 17)) & 1 == 1)
    }

    /// Takes one whole segment off the front of `buffer`, or returns nil (leaving `buffer` as it was)
    /// when its bytes are not all there yet. A CRC mismatch or a payload that does not decompress
    /// throws.
    public func decode(_ buffer: inout ByteBuffer) throws(CQLProtocolViolation) -> CQLSegment? {
        let start = buffer.readerIndex
        guard let header = try peekHeader(buffer) else { return nil }
        let payloadLength = header.payloadLength
        let uncompressedLength = header.uncompressedLength
        let isSelfContained = header.isSelfContained
        let total = header.totalLength
        guard buffer.readableBytes >= total else { return nil }
        let payload = buffer.getSlice(at: start + headerLengthWithCRC, length: payloadLength)!
        let sentCRC = buffer.getInteger(at: start + headerLengthWithCRC + payloadLength, endianness: .little, as: UInt32.self)!
        let payloadCRC = payload.withUnsafeReadableBytes { CQLChecksums.crc32($0) }
        guard sentCRC == payloadCRC else {
            throw CQLProtocolViolation(.checksum, "segment payload CRC32 mismatch")
        }
        buffer.moveReaderIndex(forwardBy: total)
        guard uncompressedLength > 0 else { return CQLSegment(isSelfContained: isSelfContained, payload: payload) }
        var output = ByteBufferAllocator().buffer(capacity: uncompressedLength)
        try CQLLZ4.decompressBlock(payload, uncompressedLength: uncompressedLength, into: &output)
        return CQLSegment(isSelfContained: isSelfContained, payload: output)
    }

    /// Appends one segment carrying `payload` (at most `maxPayloadLength` bytes) to `output`. With
    /// LZ4 the payload is compressed, and stored as it is when compressing does not make it smaller.
    public func encode(_ payload: ByteBuffer, selfContained: Bool, into output: inout ByteBuffer) {
        precondition(payload.readableBytes <= Self.maxPayloadLength, "segment payload over 128 KiB - 1")
        var body = payload
        var uncompressedLength = 0
        if compressed, payload.readableBytes > 0 {
            var packed = ByteBufferAllocator().buffer(capacity: payload.readableBytes)
            CQLLZ4.compressBlock(payload, into: &packed)
            if packed.readableBytes < payload.readableBytes {
                body = packed
                uncompressedLength = payload.readableBytes
            }
        }
        var header = UInt64(body.readableBytes)
        var flagShift: UInt64 = 17
        if compressed {
            header |= UInt64(uncompressedLength) << 17
            flagShift += 17
        }
        if selfContained { header |= 1 << flagShift }
        for i in 0..<headerLength { output.writeInteger(UInt8(truncatingIfNeeded: header >> (8 * i))) }
        let crc24 = CQLChecksums.crc24(header, byteCount: headerLength)
        for i in 0..<3 { output.writeInteger(UInt8(truncatingIfNeeded: crc24 >> (8 * i))) }
        let crc32 = body.withUnsafeReadableBytes { CQLChecksums.crc32($0) }
        output.writeImmutableBuffer(body)
        output.writeInteger(crc32, endianness: .little)
    }
}
