/// Walks a reply's wire bytes (RESP2 or RESP3) without decoding it, so parts of it can be copied
/// as they are: EXEC's array, whose elements protect must not re-encode (a RESP2 null array and a
/// null bulk string look alike once decoded).
enum RawReply {
    struct Malformed: Error, CustomStringConvertible {
        var description: String { "the reply is not well-formed RESP" }
    }

    /// The index of the first CR of the line starting at `start`.
    static func lineEnd(_ b: UnsafeRawBufferPointer, _ start: Int) throws -> Int {
        var i = start
        while i + 1 < b.count {
            if b[i] == 13 && b[i + 1] == 10 { return i }
            i += 1
        }
        throw Malformed()
    }

    /// The signed decimal number on the line starting at `start` + 1 (after the type byte).
    static func number(_ b: UnsafeRawBufferPointer, _ start: Int) throws -> (value: Int, next: Int) {
        let end = try lineEnd(b, start)
        var i = start + 1
        var negative = false
        if i < end, b[i] == UInt8(ascii: "-") { negative = true; i += 1 }
        var value = 0
        guard i < end else { throw Malformed() }
        while i < end {
            let d = Int(b[i]) - 48
            guard d >= 0, d <= 9, value < Int.max / 16 else { throw Malformed() }
            value = value * 10 + d
            i += 1
        }
        return (negative ? -value : value, end + 2)
    }

    /// The index just after the value that starts at `start`.
    static func skip(_ b: UnsafeRawBufferPointer, _ start: Int) throws -> Int {
        guard start < b.count else { throw Malformed() }
        switch b[start] {
        case UInt8(ascii: "$"), UInt8(ascii: "!"), UInt8(ascii: "="):
            let (length, next) = try number(b, start)
            if length < 0 { return next }
            guard next + length + 2 <= b.count else { throw Malformed() }
            return next + length + 2
        case UInt8(ascii: "*"), UInt8(ascii: "~"), UInt8(ascii: ">"), UInt8(ascii: "%"), UInt8(ascii: "|"):
            let (count, next) = try number(b, start)
            if count < 0 { return next }
            let pairs = b[start] == UInt8(ascii: "%") || b[start] == UInt8(ascii: "|")
            var i = next
            for _ in 0..<(pairs ? 2 * count : count) { i = try skip(b, i) }
            // An attribute annotates the value that follows it.
            return b[start] == UInt8(ascii: "|") ? try skip(b, i) : i
        default:
            return try lineEnd(b, start) + 2
        }
    }
}
