import NIOCore

/// What Sluice answers a client that opens with a protocol version it does not speak.
///
/// Drivers probe downwards: the DataStax python driver opens with DSE v66 (0x42), then v65, then
/// v5, then v4; others open with v5 or v6. Each expects a PROTOCOL_ERROR whose message contains
/// "unsupported protocol version" (the python driver matches that text, case-sensitively, before it
/// downgrades), sent on the stream it used and in a frame it can parse. So the reply is written in
/// the highest version Sluice speaks when the client's version is higher, and in the client's own
/// version when it is lower (a v1/v2 header has an 8-byte layout and a one-byte stream).
public enum CQLVersionNegotiation {
    /// The violation for a client that opened with `rawVersion`.
    public static func unsupported(_ rawVersion: UInt8, supported: [CQLVersion], stream: Int16) -> CQLProtocolViolation {
        let list = supported.sorted().map(\.listing).joined(separator: ", ")
        return CQLProtocolViolation(
            .unsupportedVersion(rawVersion),
            "Invalid or unsupported protocol version (\(rawVersion)); supported versions are (\(list))",
            stream: stream)
    }

    /// The version byte (without the direction bit) to answer a client that opened with `rawVersion`.
    public static func replyVersion(to rawVersion: UInt8, supported: [CQLVersion]) -> UInt8 {
        guard let highest = supported.max(), let lowest = supported.min() else { return rawVersion }
        if rawVersion > highest.rawValue { return highest.rawValue }
        if rawVersion < lowest.rawValue { return max(rawVersion, 1) }
        return rawVersion
    }

    /// The ERROR frame (PROTOCOL_ERROR) for a client that opened with `rawVersion` on `stream`.
    public static func rejection(of rawVersion: UInt8, supported: [CQLVersion], stream: Int16,
                                 allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        let violation = unsupported(rawVersion, supported: supported, stream: stream)
        let version = replyVersion(to: rawVersion, supported: supported)
        var body = allocator.buffer(capacity: violation.message.utf8.count + 8)
        body.writeInteger(CQLErrorCode.protocolError.rawValue)
        body.writeCQLString(violation.message)
        var frame = allocator.buffer(capacity: body.readableBytes + 9)
        if version >= 3 {
            frame.writeMultipleIntegers(version | CQLFrameHeader.responseBit, UInt8(0), stream,
                                        CQLOpcode.error.rawValue, UInt32(body.readableBytes))
        } else {
            frame.writeMultipleIntegers(version | CQLFrameHeader.responseBit, UInt8(0), Int8(truncatingIfNeeded: stream),
                                        CQLOpcode.error.rawValue, UInt32(body.readableBytes))
        }
        frame.writeBuffer(&body)
        return frame
    }
}
