import NIOCore

/// Reads the notations of the native protocol (section 3 of the v4/v5 specs) off the front of a
/// body, as zero-copy slices where the value is bytes.
///
/// Every read checks its length against what is left and throws a `.malformed` violation instead
/// of trapping, so a reader can be pointed at anything that came off the network.
public struct CQLBodyReader: Sendable {
    /// What is left to read.
    public private(set) var buffer: ByteBuffer

    public init(_ buffer: ByteBuffer) { self.buffer = buffer }

    public var remaining: Int { buffer.readableBytes }
    public var isAtEnd: Bool { buffer.readableBytes == 0 }

    public mutating func readByte() throws(CQLProtocolViolation) -> UInt8 {
        guard let value = buffer.readInteger(as: UInt8.self) else { throw .truncated("a [byte]") }
        return value
    }

    public mutating func readShort() throws(CQLProtocolViolation) -> UInt16 {
        guard let value = buffer.readInteger(as: UInt16.self) else { throw .truncated("a [short]") }
        return value
    }

    public mutating func readInt() throws(CQLProtocolViolation) -> Int32 {
        guard let value = buffer.readInteger(as: Int32.self) else { throw .truncated("an [int]") }
        return value
    }

    public mutating func readLong() throws(CQLProtocolViolation) -> Int64 {
        guard let value = buffer.readInteger(as: Int64.self) else { throw .truncated("a [long]") }
        return value
    }

    /// `count` raw bytes as a slice.
    public mutating func readSlice(_ count: Int, _ what: String) throws(CQLProtocolViolation) -> ByteBuffer {
        guard count >= 0, let slice = buffer.readSlice(length: count) else { throw .truncated(what) }
        return slice
    }

    /// A [string]: [short] length then UTF-8 bytes, as a slice.
    public mutating func readString() throws(CQLProtocolViolation) -> ByteBuffer {
        try readSlice(Int(try readShort()), "a [string]")
    }

    /// A [string] decoded (invalid UTF-8 is replaced, not refused).
    public mutating func readText() throws(CQLProtocolViolation) -> String {
        String(buffer: try readString())
    }

    /// A [long string]: [int] length then UTF-8 bytes, as a slice.
    public mutating func readLongString() throws(CQLProtocolViolation) -> ByteBuffer {
        let length = try readInt()
        guard length >= 0 else {
            throw CQLProtocolViolation(.malformed, "negative [long string] length \(length)")
        }
        return try readSlice(Int(length), "a [long string]")
    }

    /// [bytes]: [int] length then bytes; nil when the length is negative.
    public mutating func readBytes() throws(CQLProtocolViolation) -> ByteBuffer? {
        let length = try readInt()
        guard length >= 0 else { return nil }
        return try readSlice(Int(length), "[bytes]")
    }

    /// [short bytes]: [short] length then bytes.
    public mutating func readShortBytes() throws(CQLProtocolViolation) -> ByteBuffer {
        try readSlice(Int(try readShort()), "[short bytes]")
    }

    /// A [value]: [int] length then bytes; -1 is null, -2 unset, lower lengths are malformed.
    public mutating func readValue() throws(CQLProtocolViolation) -> CQLValue {
        let length = try readInt()
        switch length {
        case -1: return .null
        case -2: return .unset
        case ..<(-2): throw CQLProtocolViolation(.malformed, "invalid [value] length \(length)")
        default: return .bytes(try readSlice(Int(length), "a [value]"))
        }
    }

    public mutating func readConsistency() throws(CQLProtocolViolation) -> CQLConsistency {
        CQLConsistency(rawValue: try readShort())
    }

    /// A [uuid]: 16 bytes.
    public mutating func readUUID() throws(CQLProtocolViolation) -> ByteBuffer {
        try readSlice(16, "a [uuid]")
    }

    /// A [string list]: [short] n then n [string].
    public mutating func readStringList() throws(CQLProtocolViolation) -> [String] {
        let count = Int(try readShort())
        var list: [String] = []
        list.reserveCapacity(min(count, remaining / 2))
        for _ in 0..<count { list.append(try readText()) }
        return list
    }

    /// A [string map]: [short] n then n pairs of [string] key, [string] value. Later keys win.
    public mutating func readStringMap() throws(CQLProtocolViolation) -> [String: String] {
        let count = Int(try readShort())
        var map: [String: String] = [:]
        for _ in 0..<count {
            let key = try readText()
            map[key] = try readText()
        }
        return map
    }

    /// A [string multimap]: [short] n then n pairs of [string] key, [string list] values.
    public mutating func readStringMultimap() throws(CQLProtocolViolation) -> [String: [String]] {
        let count = Int(try readShort())
        var map: [String: [String]] = [:]
        for _ in 0..<count {
            let key = try readText()
            map[key] = try readStringList()
        }
        return map
    }

    /// A [bytes map]: [short] n then n pairs of [string] key, [bytes] value (nil when null).
    public mutating func readBytesMap() throws(CQLProtocolViolation) -> [String: ByteBuffer?] {
        let count = Int(try readShort())
        var map: [String: ByteBuffer?] = [:]
        for _ in 0..<count {
            let key = try readText()
            map[key] = .some(try readBytes())
        }
        return map
    }

    /// An [inetaddr]: [byte] n (4 or 16) then the address.
    public mutating func readInetAddress() throws(CQLProtocolViolation) -> [UInt8] {
        let count = Int(try readByte())
        guard count == 4 || count == 16 else {
            throw CQLProtocolViolation(.malformed, "invalid [inetaddr] length \(count)")
        }
        return Array(buffer: try readSlice(count, "an [inetaddr]"))
    }

    /// An [inet]: an [inetaddr] then an [int] port.
    public mutating func readInet() throws(CQLProtocolViolation) -> CQLInet {
        let address = try readInetAddress()
        return CQLInet(address: address, port: try readInt())
    }

    /// Skips `count` bytes.
    public mutating func skip(_ count: Int, _ what: String) throws(CQLProtocolViolation) {
        guard count >= 0, count <= buffer.readableBytes else { throw .truncated(what) }
        buffer.moveReaderIndex(forwardBy: count)
    }
}
