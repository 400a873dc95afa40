import NIOCore

/// A [value]: the bytes of a bound value or a cell (a zero-copy slice), null (length -1) or, in
/// requests of v4 and later, unset (length -2).
public enum CQLValue: Equatable, Sendable {
    case bytes(ByteBuffer)
    case null
    case unset

    /// The bytes, or nil for null and unset.
    public var bytes: ByteBuffer? {
        if case .bytes(let value) = self { return value }
        return nil
    }
}

/// An [inet]: an address of 4 or 16 bytes and a port.
public struct CQLInet: Equatable, Sendable, CustomStringConvertible {
    /// 4 bytes (IPv4) or 16 (IPv6).
    public let address: [UInt8]
    public let port: Int32

    public init(address: [UInt8], port: Int32) {
        self.address = address
        self.port = port
    }

    public var description: String {
        if address.count == 4 { return address.map(String.init).joined(separator: ".") + ":\(port)" }
        var groups: [String] = []
        for i in stride(from: 0, to: address.count, by: 2) {
            groups.append(String(UInt16(address[i]) << 8 | UInt16(address[i + 1]), radix: 16))
        }
        return "[" + groups.joined(separator: ":") + "]:\(port)"
    }
}
