import NIOCore

/// One whole, uncompressed CQL frame as a `Batch` carries it (the 9-byte header, then the body),
/// read in place: the header fields a sink needs per request (version, stream, opcode) without
/// decoding the body.
struct CQLWireFrame {
    let bytes: ByteBuffer

    /// Nil when `bytes` is shorter than a header.
    @inline(__always)
    init?(_ bytes: ByteBuffer) {
        guard bytes.readableBytes >= CQLFrameHeader.size else { return nil }
        self.bytes = bytes
    }

    // The header is read through plain loads (`init` checked there is one): NIO's getInteger is
    // a call of a few dozen instructions per field, and a sink reads several per request.
    @inline(__always) private func byte(_ offset: Int) -> UInt8 {
        bytes.withUnsafeReadableBytes { $0[offset] }
    }

    /// The version without the direction bit (3, 4, 5…).
    var rawVersion: UInt8 { byte(0) & 0x7F }
    var version: CQLVersion? { CQLVersion(rawValue: rawVersion) }
    var isResponse: Bool { byte(0) & CQLFrameHeader.responseBit != 0 }
    var flags: CQLFrameFlags { CQLFrameFlags(rawValue: byte(1)) }
    var stream: Int16 { bytes.withUnsafeReadableBytes { Int16(bitPattern: UInt16($0[2]) << 8 | UInt16($0[3])) } }
    var opcodeByte: UInt8 { byte(4) }
    var bodyLength: Int { bytes.withUnsafeReadableBytes { Int(Int32(bigEndian: $0.loadUnaligned(fromByteOffset: 5, as: Int32.self))) } }

    /// The body (a slice, no copy).
    var body: ByteBuffer {
        bytes.getSlice(at: bytes.readerIndex + CQLFrameHeader.size, length: bytes.readableBytes - CQLFrameHeader.size)!
    }

    /// The message after the fields the flags put in front of it (tracing id, warnings, custom
    /// payload); nil when those do not parse.
    func message() -> ByteBuffer? {
        let flags = self.flags
        if flags.isDisjoint(with: [.tracing, .warning, .customPayload]) { return body }
        guard let version else { return nil }
        let header = CQLFrameHeader(version: version, isResponse: isResponse, flags: flags, stream: stream,
                                    opcodeByte: opcodeByte, bodyLength: bytes.readableBytes - CQLFrameHeader.size)
        return try? CQLEnvelopeBody(header: header, body: body).message
    }

    /// `body` of the statement text of a QUERY or PREPARE read in place (no slices), when nothing
    /// comes before the message (no tracing id, warnings or custom payload: the usual case); nil
    /// when something does, or the text's length does not fit the frame (the caller then reads
    /// the message as usual).
    @inline(__always)
    func textInPlace<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R? {
        guard flags.isDisjoint(with: [.tracing, .warning, .customPayload]) else { return nil }
        return bytes.withUnsafeReadableBytes { frame -> R? in
            let start = CQLFrameHeader.size + 4
            guard frame.count >= start else { return nil }
            let length = Int(Int32(bigEndian: frame.loadUnaligned(fromByteOffset: CQLFrameHeader.size, as: Int32.self)))
            guard length >= 0, length <= frame.count - start else { return nil }
            return body(UnsafeRawBufferPointer(rebasing: frame[start..<(start + length)]))
        }
    }

    /// The frame with stream id `stream` (a copy of the frame: its bytes are a slice of a read that
    /// other frames share).
    func withStream(_ stream: Int16) -> ByteBuffer {
        var copy = bytes
        copy.setInteger(stream, at: copy.readerIndex + 2)
        return copy
    }

    /// The code of an ERROR frame (nil for another opcode, or a body too short).
    var errorCode: CQLErrorCode? {
        guard opcodeByte == CQLOpcode.error.rawValue, let message = message(),
              let code = message.getInteger(at: message.readerIndex, as: Int32.self) else { return nil }
        return CQLErrorCode(rawValue: code)
    }

    /// The kind of a RESULT frame.
    var resultKind: CQLResultKind? {
        guard opcodeByte == CQLOpcode.result.rawValue, let message = message(),
              let kind = message.getInteger(at: message.readerIndex, as: Int32.self) else { return nil }
        return CQLResultKind(rawValue: kind)
    }
}
