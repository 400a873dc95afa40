import NIOCore

/// The compression a connection's STARTUP chose (its `COMPRESSION` option).
///
/// v3/v4 compress each frame body (the frame's `.compression` flag says which ones are): LZ4 bodies
/// are the uncompressed length as a big-endian [int] then one raw LZ4 block; Snappy bodies are one
/// raw Snappy block. v5 compresses whole segments with LZ4 only (`CQLSegmentCodec`).
public enum CQLCompression: String, CaseIterable, Sendable {
    case lz4
    case snappy

    /// The algorithm a STARTUP `COMPRESSION` value names (case-insensitive), or nil.
    public init?(startupName: String) {
        self.init(rawValue: startupName.lowercased())
    }

    /// Whether `version` can use this compression (v5 has no Snappy).
    public func isAvailable(in version: CQLVersion) -> Bool {
        self == .lz4 || !version.usesSegments
    }

    /// A v3/v4 frame body compressed as this algorithm frames it.
    public func compressBody(_ body: ByteBuffer, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var output = allocator.buffer(capacity: body.readableBytes / 2 + 16)
        switch self {
        case .lz4:
            output.writeInteger(Int32(body.readableBytes))
            CQLLZ4.compressBlock(body, into: &output)
        case .snappy:
            CQLSnappy.compress(body, into: &output)
        }
        return output
    }

    /// A v3/v4 frame body decompressed; more than `maxBytes` of output, or corrupt input, throws.
    public func decompressBody(_ body: ByteBuffer, maxBytes: Int,
                               allocator: ByteBufferAllocator = ByteBufferAllocator()) throws(CQLProtocolViolation) -> ByteBuffer {
        switch self {
        case .lz4:
            var input = body
            guard let length = input.readInteger(as: Int32.self) else {
                throw CQLProtocolViolation(.compression, "LZ4 body shorter than its length prefix")
            }
            guard length >= 0 else {
                throw CQLProtocolViolation(.compression, "LZ4: negative uncompressed length \(length)")
            }
            guard Int(length) <= maxBytes else {
                throw CQLProtocolViolation(
                    .oversize, "LZ4: body decompresses to \(length) bytes, over the \(maxBytes)-byte limit")
            }
            var output = allocator.buffer(capacity: Int(length))
            try CQLLZ4.decompressBlock(input, uncompressedLength: Int(length), into: &output)
            return output
        case .snappy:
            var output = allocator.buffer(capacity: 0)
            try CQLSnappy.decompress(body, maxBytes: maxBytes, into: &output)
            return output
        }
    }
}
