#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Helpers for the borrowed byte views the host hands out (arguments, message bytes, reply values):
// compare and look them up without building a String or an Array per request.

extension UnsafeRawBufferPointer {
    /// True if these bytes equal `lowercase` ignoring ASCII case, e.g. `name.equalsIgnoringASCIICase("get")`.
    /// `lowercase` must be written in lower case. Allocates nothing.
    @inlinable
    public func equalsIgnoringASCIICase(_ lowercase: StaticString) -> Bool {
        guard count == lowercase.utf8CodeUnitCount else { return false }
        let expected = lowercase.utf8Start
        for i in 0..<count {
            var b = self[i]
            if b &- 65 < 26 { b |= 0x20 }
            if b != expected[i] { return false }
        }
        return true
    }

    /// Byte-wise equality with another view (memcmp).
    @inlinable
    public func bytesEqual(_ other: UnsafeRawBufferPointer) -> Bool {
        guard count == other.count else { return false }
        guard count > 0, let a = baseAddress, let b = other.baseAddress else { return true }
        return memcmp(a, b, count) == 0
    }
}

/// A command name folded to lower case and packed into three words: a `Hashable` key for tables of
/// commands (`[CommandName: Spec]`) that can be looked up with the borrowed name of a request without
/// allocating. Names longer than `CommandName.maxLength` bytes have no `CommandName`.
public struct CommandName: Hashable, CustomStringConvertible {
    /// The longest name that can be packed.
    public static let maxLength = 24

    @usableFromInline var w0: UInt64 = 0
    @usableFromInline var w1: UInt64 = 0
    @usableFromInline var w2: UInt64 = 0
    /// Length in bytes.
    public let length: Int

    /// Packs `bytes` folded to lower case; nil if empty or longer than `maxLength`.
    @inlinable
    public init?(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0, bytes.count <= CommandName.maxLength else { return nil }
        length = bytes.count
        for i in 0..<bytes.count {
            var b = bytes[i]
            if b &- 65 < 26 { b |= 0x20 }
            let shifted = UInt64(b) << UInt64((i & 7) * 8)
            switch i >> 3 {
            case 0: w0 |= shifted
            case 1: w1 |= shifted
            default: w2 |= shifted
            }
        }
    }

    /// Packs a name written in code (any case); nil if empty or longer than `maxLength`.
    public init?(_ name: String) {
        var text = name
        guard let packed = text.withUTF8({ CommandName(UnsafeRawBufferPointer($0)) }) else { return nil }
        self = packed
    }

    /// The lower-case name.
    public var description: String {
        var bytes: [UInt8] = []
        for i in 0..<length {
            let word = i < 8 ? w0 : i < 16 ? w1 : w2
            bytes.append(UInt8(truncatingIfNeeded: word >> UInt64((i & 7) * 8)))
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Renders bytes for a log line: printable ASCII is kept, `\` `\n` `\r` `\t` are escaped, every other
/// byte becomes `\xHH`; at most `limit` input bytes are shown, then `...(N bytes)` gives the full size.
public func printable(_ bytes: UnsafeRawBufferPointer, limit: Int) -> String {
    var out: [UInt8] = []
    out.reserveCapacity(Swift.min(bytes.count, limit) + 16)
    appendPrintable(bytes, to: &out, limit: limit)
    return String(decoding: out, as: UTF8.self)
}

/// `printable(_:limit:)` appending to a byte buffer (to build one log line from many pieces).
/// Returns the number of input bytes shown.
@discardableResult
public func appendPrintable(_ bytes: UnsafeRawBufferPointer, to out: inout [UInt8], limit: Int) -> Int {
    let hex: StaticString = "0123456789abcdef"
    let shown = Swift.min(bytes.count, Swift.max(limit, 0))
    for i in 0..<shown {
        let b = bytes[i]
        switch b {
        case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "\\"))
        case UInt8(ascii: "\n"): out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "n"))
        case UInt8(ascii: "\r"): out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "r"))
        case UInt8(ascii: "\t"): out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "t"))
        case 0x20..<0x7F: out.append(b)
        default:
            out.append(UInt8(ascii: "\\"))
            out.append(UInt8(ascii: "x"))
            out.append(hex.utf8Start[Int(b >> 4)])
            out.append(hex.utf8Start[Int(b & 15)])
        }
    }
    if shown < bytes.count {
        out.append(contentsOf: "...(\(bytes.count) bytes)".utf8)
    }
    return shown
}
