import NIOCore

/// Finds whole CQL frames (v3/v4/v5 headers) in a byte stream and checks their headers.
///
/// The header carries the body length, so a frame split at any byte costs one 9-byte look per read
/// until it is whole, however large it is; the scanner keeps no state beyond what the connection
/// negotiated. Every check that fails names the stream when the header got that far, so the caller
/// can answer with an ERROR frame on it (`CQLFrameBuilder.error(for:…)`) and close.
public struct CQLFrameScanner: Sendable {
    public enum Direction: Sendable {
        /// Client to server: the direction bit must be clear.
        case requests
        /// Server to client: the direction bit must be set.
        case responses
    }

    public let direction: Direction
    /// Largest frame (header and body) accepted.
    public let maxFrameBytes: Int
    /// The versions accepted before one is negotiated.
    public let supportedVersions: [CQLVersion]
    /// The connection's version once the first frame fixed it (one of `supportedVersions`: a
    /// frame of it is not checked against them again); frames of another version are refused.
    public var negotiatedVersion: CQLVersion?

    public init(direction: Direction, maxFrameBytes: Int, supportedVersions: [CQLVersion] = [.v4, .v5],
                negotiatedVersion: CQLVersion? = nil) {
        self.direction = direction
        self.maxFrameBytes = maxFrameBytes
        self.supportedVersions = supportedVersions
        self.negotiatedVersion = negotiatedVersion
    }

    /// The header of the frame at the front of `buffer`'s readable bytes when the whole frame is
    /// there, nil when more bytes are needed. Reads nothing.
    public func scan(_ buffer: ByteBuffer) throws(CQLProtocolViolation) -> CQLFrameHeader? {
        let start = buffer.readerIndex
        let available = buffer.readableBytes
        if let negotiatedVersion, available >= CQLFrameHeader.size {
            // The usual case once the version is settled: the whole header in one look in place.
            let (versionByte, flags, stream, opcode, length) = buffer.withUnsafeReadableBytes { bytes in
                (bytes[0], bytes[1], Int16(bitPattern: UInt16(bytes[2]) << 8 | UInt16(bytes[3])), bytes[4],
                 Int32(bigEndian: bytes.loadUnaligned(fromByteOffset: 5, as: Int32.self)))
            }
            if versionByte & 0x7F == negotiatedVersion.rawValue {
                return try header(version: negotiatedVersion, versionByte: versionByte, flags: flags, stream: stream,
                                  opcode: opcode, length: length, available: available)
            }
        }
        guard available >= 1, let versionByte = buffer.getInteger(at: start, as: UInt8.self) else { return nil }
        let rawVersion = versionByte & 0x7F
        let version = CQLVersion(rawValue: rawVersion)
        if version == nil || !supportedVersions.contains(version!) {
            // v1/v2 headers have a one-byte stream at offset 2; v3+ a [short].
            if rawVersion < 3 {
                guard available >= 3, let stream = buffer.getInteger(at: start + 2, as: Int8.self) else { return nil }
                throw CQLVersionNegotiation.unsupported(rawVersion, supported: supportedVersions, stream: Int16(stream))
            }
            guard available >= 4, let stream = buffer.getInteger(at: start + 2, as: Int16.self) else { return nil }
            throw CQLVersionNegotiation.unsupported(rawVersion, supported: supportedVersions, stream: stream)
        }
        guard available >= CQLFrameHeader.size,
              let (_, flags, stream, opcode, length) = buffer.getMultipleIntegers(
                  at: start, as: (UInt8, UInt8, Int16, UInt8, Int32).self)
        else { return nil }
        return try header(version: version!, versionByte: versionByte, flags: flags, stream: stream, opcode: opcode,
                          length: length, available: available)
    }

    /// The checks of a header whose version is one Sluice speaks; nil while the body is incomplete.
    @inline(__always)
    private func header(version: CQLVersion, versionByte: UInt8, flags: UInt8, stream: Int16, opcode: UInt8, length: Int32,
                        available: Int) throws(CQLProtocolViolation) -> CQLFrameHeader? {
        let rawVersion = version.rawValue
        let isResponse = versionByte & CQLFrameHeader.responseBit != 0
        if isResponse != (direction == .responses) {
            throw CQLProtocolViolation(
                .wrongDirection, direction == .requests ? "a response frame where a request was expected"
                    : "a request frame where a response was expected", stream: stream)
        }
        if let negotiatedVersion, negotiatedVersion != version {
            throw CQLProtocolViolation(
                .versionChanged, "Invalid message version. Got v\(rawVersion) but previous messages on this "
                    + "connection had version v\(negotiatedVersion.rawValue)", stream: stream)
        }
        guard CQLOpcode(rawValue: opcode) != nil else {
            throw CQLProtocolViolation(.malformed, "unknown opcode 0x\(String(opcode, radix: 16))", stream: stream)
        }
        guard length >= 0 else {
            throw CQLProtocolViolation(.malformed, "negative frame body length \(length)", stream: stream)
        }
        let frameLength = CQLFrameHeader.size + Int(length)
        guard frameLength <= maxFrameBytes else {
            throw CQLProtocolViolation(
                .oversize, "frame of \(frameLength) bytes exceeds the \(maxFrameBytes)-byte limit", stream: stream)
        }
        guard available >= frameLength else { return nil }
        return CQLFrameHeader(version: version, isResponse: isResponse, flags: CQLFrameFlags(rawValue: flags),
                              stream: stream, opcodeByte: opcode, bodyLength: Int(length))
    }

    /// Takes the next whole frame off the front of `buffer` (a zero-copy slice), or nil when more bytes
    /// are needed (then `buffer` is unchanged).
    public func nextFrame(_ buffer: inout ByteBuffer) throws(CQLProtocolViolation) -> CQLFrame? {
        guard let header = try scan(buffer) else { return nil }
        return CQLFrame(header: header, bytes: buffer.readSlice(length: header.frameLength)!)
    }
}
