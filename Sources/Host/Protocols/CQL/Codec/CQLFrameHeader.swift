import NIOCore

/// The 9-byte header every CQL frame starts with in protocol v3, v4 and v5:
/// version (high bit: 1 = response), flags, stream [short], opcode, body length [int].
public struct CQLFrameHeader: Equatable, Sendable {
    public static let size = 9
    /// The direction bit of the version byte: set on responses.
    public static let responseBit: UInt8 = 0x80

    public var version: CQLVersion
    public var isResponse: Bool
    public var flags: CQLFrameFlags
    /// The stream id; negative ids are server-initiated (EVENT uses -1).
    public var stream: Int16
    /// The opcode byte as sent (see `opcode`).
    public var opcodeByte: UInt8
    /// The body length in bytes (after the header; compressed length when the body is compressed).
    public var bodyLength: Int

    public init(version: CQLVersion, isResponse: Bool, flags: CQLFrameFlags = [], stream: Int16,
                opcode: CQLOpcode, bodyLength: Int) {
        self.init(version: version, isResponse: isResponse, flags: flags, stream: stream,
                  opcodeByte: opcode.rawValue, bodyLength: bodyLength)
    }

    public init(version: CQLVersion, isResponse: Bool, flags: CQLFrameFlags, stream: Int16,
                opcodeByte: UInt8, bodyLength: Int) {
        self.version = version
        self.isResponse = isResponse
        self.flags = flags
        self.stream = stream
        self.opcodeByte = opcodeByte
        self.bodyLength = bodyLength
    }

    public var opcode: CQLOpcode? { CQLOpcode(rawValue: opcodeByte) }
    /// Header plus body.
    public var frameLength: Int { Self.size + bodyLength }
    public var versionByte: UInt8 { version.rawValue | (isResponse ? Self.responseBit : 0) }

    /// Writes the header at the buffer's writer index.
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeMultipleIntegers(versionByte, flags.rawValue, stream, opcodeByte, UInt32(bodyLength))
    }

    /// Overwrites the body length of a header written at `index` (for builders that write the body
    /// after the header).
    static func patchBodyLength(_ length: Int, in buffer: inout ByteBuffer, headerAt index: Int) {
        buffer.setInteger(UInt32(length), at: index + 5)
    }
}
