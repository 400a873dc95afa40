/// Splits a CQL backend's byte stream (bare frames, or the payloads of v5 segments) into frames:
/// the 9-byte header gives the length. A request frame, a version other than v3 to v5, an unknown
/// opcode, a negative length or a frame over the limit is not a backend's reply: the connection is
/// closed (`malformed`) and its requests fail.
struct CQLBackendScanner: BackendFrameScanner {
    let maxFrameBytes: Int

    init(maxFrameBytes: Int) {
        self.maxFrameBytes = maxFrameBytes
    }

    @inline(__always)
    mutating func scanFrame(_ bytes: UnsafeRawBufferPointer) -> BackendFrameScan {
        guard bytes.count >= CQLFrameHeader.size else { return .needMore }
        let versionByte = bytes[0]
        guard versionByte & CQLFrameHeader.responseBit != 0 else {
            return .malformed("a request frame (first byte 0x\(String(versionByte, radix: 16))) where a response was expected")
        }
        guard (3...5).contains(versionByte & 0x7F) else {
            return .malformed("unsupported protocol version \(versionByte & 0x7F) in a response")
        }
        guard CQLOpcode(rawValue: bytes[4]) != nil else {
            return .malformed("unknown opcode 0x\(String(bytes[4], radix: 16))")
        }
        let length = Int32(bitPattern: UInt32(bytes[5]) << 24 | UInt32(bytes[6]) << 16 | UInt32(bytes[7]) << 8 | UInt32(bytes[8]))
        guard length >= 0 else { return .malformed("negative body length \(length)") }
        let total = CQLFrameHeader.size + Int(length)
        guard total <= maxFrameBytes else {
            return .malformed("a frame of \(total) bytes exceeds the \(maxFrameBytes)-byte limit")
        }
        return bytes.count >= total ? .complete(length: total) : .needMore
    }
}
