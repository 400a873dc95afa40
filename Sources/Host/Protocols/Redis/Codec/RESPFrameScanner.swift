/// Finds where one RESP2/RESP3 value ends in a byte stream, without building it.
///
/// The scanner is resumable: when the bytes end in the middle of a value it remembers how far it got
/// (the offset of the first incomplete element and the element counts still owed by the enclosing
/// aggregates), so a value of many megabytes or of a million elements arriving over many reads is
/// scanned once in total, not once per read.
///
/// Nesting has no limit of its own: the scanner keeps one count per open aggregate in an array
/// (no recursion), and every level takes at least four bytes of the frame, so `maxFrameBytes`
/// bounds it. Redis sends thousands of levels (a Lua script returning a table that contains
/// itself is answered with `*1` nested down to Lua's stack limit, about 8,000).
struct RESPFrameScanner {
    enum Outcome: Equatable {
        /// A whole value occupies the first `length` bytes.
        case complete(length: Int)
        /// More bytes are needed; call again with the same prefix plus the new bytes.
        case needMore
        /// The bytes are not RESP; the message is suitable for a `-ERR Protocol error: …` reply.
        case malformed(String)
    }

    /// Largest value (in bytes) accepted; larger ones are malformed.
    let maxFrameBytes: Int

    private var offset = 0
    /// Elements still owed by each open aggregate, outermost first.
    private var owed: [Int] = []

    init(maxFrameBytes: Int) {
        self.maxFrameBytes = maxFrameBytes
        owed.reserveCapacity(8)
    }

    /// Forgets a partially scanned value (after a complete one, or to start over).
    mutating func reset() {
        offset = 0
        owed.removeAll(keepingCapacity: true)
    }

    /// Scans `bytes`, which must start at the first byte of the value being scanned.
    mutating func scan(_ bytes: UnsafeRawBufferPointer) -> Outcome {
        let count = bytes.count
        while true {
            if offset > maxFrameBytes {
                return .malformed("value larger than \(maxFrameBytes) bytes")
            }
            guard offset < count else { return .needMore }
            guard let lineEnd = RESPLine.findCRLF(bytes, from: offset + 1) else {
                if count - offset > 65_536 { return .malformed("header line too long") }
                return .needMore
            }
            guard lineEnd >= 0 else { return .malformed("CR not followed by LF") }
            let type = bytes[offset]
            switch type {
            case UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: ":"), UInt8(ascii: "_"),
                 UInt8(ascii: ","), UInt8(ascii: "#"), UInt8(ascii: "("):
                offset = lineEnd + 2
                if let done = finishValue() { return done }
            case UInt8(ascii: "$"), UInt8(ascii: "!"), UInt8(ascii: "="):
                guard let length = RESPLine.parseInteger(bytes, from: offset + 1, to: lineEnd) else {
                    return .malformed("invalid bulk length")
                }
                if length < 0 {
                    guard length == -1 else { return .malformed("invalid bulk length") }
                    offset = lineEnd + 2
                } else {
                    guard length <= maxFrameBytes else {
                        return .malformed("bulk length \(length) exceeds limit \(maxFrameBytes)")
                    }
                    let end = lineEnd + 2 + length + 2
                    guard end <= count else { return .needMore }
                    guard bytes[end - 2] == 13, bytes[end - 1] == 10 else {
                        return .malformed("bulk string not terminated by CRLF")
                    }
                    offset = end
                }
                if let done = finishValue() { return done }
            case UInt8(ascii: "*"), UInt8(ascii: "%"), UInt8(ascii: "~"), UInt8(ascii: ">"),
                 UInt8(ascii: "|"):
                guard let n = RESPLine.parseInteger(bytes, from: offset + 1, to: lineEnd),
                      n >= -1, n <= 1 << 32
                else { return .malformed("invalid multibulk length") }
                offset = lineEnd + 2
                let pairs = type == UInt8(ascii: "%") || type == UInt8(ascii: "|")
                let elements = pairs ? n * 2 : n
                if type == UInt8(ascii: "|") {
                    // An attribute annotates the value after it and does not occupy a slot itself.
                    if owed.isEmpty { owed.append(2) } else { owed[owed.count - 1] += 1 }
                }
                if elements <= 0 {
                    if let done = finishValue() { return done }
                } else {
                    owed.append(elements)
                }
            default:
                return .malformed("unexpected byte '\(RESPLine.printable(type))' where a value starts")
            }
        }
    }

    /// Records that a value ended at `offset`; returns the outcome when the whole frame ended.
    private mutating func finishValue() -> Outcome? {
        while let last = owed.last {
            if last > 1 {
                owed[owed.count - 1] = last - 1
                return nil
            }
            owed.removeLast()
        }
        let length = offset
        reset()
        return .complete(length: length)
    }
}

/// Small helpers for RESP's CRLF-terminated header lines.
enum RESPLine {
    /// Index of the CR of the first CRLF at or after `from`; nil when the bytes end first;
    /// -1 when a CR is followed by something other than LF.
    @inline(__always)
    static func findCRLF(_ bytes: UnsafeRawBufferPointer, from: Int) -> Int? {
        var i = from
        let end = bytes.count - 1
        while i < end {
            if bytes[i] == 13 {
                return bytes[i + 1] == 10 ? i : -1
            }
            i += 1
        }
        return nil
    }

    /// Parses a decimal integer (optional '-') in bytes[from..<to]; nil if not a number.
    /// At most 18 digits, so the value and sums of a few of them never overflow: no length in a
    /// frame this host accepts comes anywhere near 10^18.
    @inline(__always)
    static func parseInteger(_ bytes: UnsafeRawBufferPointer, from: Int, to: Int) -> Int? {
        guard from < to, to - from <= 18 else { return nil }
        var i = from
        var negative = false
        if bytes[i] == UInt8(ascii: "-") {
            negative = true
            i += 1
            guard i < to else { return nil }
        }
        var value = 0
        while i < to {
            let d = Int(bytes[i]) &- 48
            guard d >= 0, d <= 9 else { return nil }
            value = value &* 10 &+ d
            i += 1
        }
        return negative ? -value : value
    }

    /// True if bytes[from..<to] is an integer as redis-server writes and accepts it in a request
    /// header: no leading zeros, no "-0" (Redis's string2ll refuses "*01" and "$-0"; forwarding what
    /// it refuses would let it close a connection other clients share).
    @inline(__always)
    static func isCanonicalInteger(_ bytes: UnsafeRawBufferPointer, from: Int, to: Int) -> Bool {
        var i = from
        if i < to, bytes[i] == UInt8(ascii: "-") { i += 1 }
        guard i < to else { return false }
        if bytes[i] == UInt8(ascii: "0") { return i + 1 == to && i == from }
        return true
    }

    static func printable(_ byte: UInt8) -> String {
        (32..<127).contains(byte) ? String(UnicodeScalar(byte)) : "\\x" + String(byte, radix: 16)
    }
}
