import NIOCore

/// One whole CQL frame as it arrived: its header and a zero-copy view of its bytes.
///
/// `bytes` is the frame exactly as received (header and body), ready to be forwarded untouched;
/// `body` is a slice of it (still compressed when `header.flags` says so: see `decompressedBody`).
public struct CQLFrame: Sendable {
    public let header: CQLFrameHeader
    /// The whole frame, header included.
    public let bytes: ByteBuffer

    public init(header: CQLFrameHeader, bytes: ByteBuffer) {
        self.header = header
        self.bytes = bytes
    }

    /// The body as sent (a slice of `bytes`, no copy).
    public var body: ByteBuffer {
        // The scanner hands out frames whose bytes are exactly header + body; anything else reads as empty.
        bytes.getSlice(at: bytes.readerIndex + CQLFrameHeader.size, length: header.bodyLength) ?? ByteBuffer()
    }

    /// The body with v3/v4 compression undone (`compression` is what STARTUP negotiated), at most
    /// `maxBytes` once decompressed. Uncompressed bodies are returned as they are (no copy).
    public func decompressedBody(_ compression: CQLCompression?, maxBytes: Int,
                                 allocator: ByteBufferAllocator = ByteBufferAllocator())
        throws(CQLProtocolViolation) -> ByteBuffer
    {
        guard header.flags.contains(.compression) else { return body }
        guard let compression else {
            throw CQLProtocolViolation(.compression, "compressed frame but no compression was negotiated",
                                       stream: header.stream)
        }
        do {
            return try compression.decompressBody(body, maxBytes: maxBytes, allocator: allocator)
        } catch {
            throw error.on(stream: header.stream)
        }
    }

    /// The body's leading fields (tracing id, warnings, custom payload) and the message after them.
    /// `body` must be the decompressed body.
    public func envelope(body: ByteBuffer) throws(CQLProtocolViolation) -> CQLEnvelopeBody {
        do {
            return try CQLEnvelopeBody(header: header, body: body)
        } catch {
            throw error.on(stream: header.stream)
        }
    }
}
