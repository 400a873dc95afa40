/// Reads RESP values one header at a time from bytes already validated by `RESPFrameScanner`.
enum RESPValueReader {
    struct Header {
        /// SLUICE_REDIS_* value type.
        var type: Int32
        var integer: Int64 = 0
        /// Elements (arrays, sets, pushes) or pairs (maps, attributes).
        var count: Int64 = 0
        /// Payload range for string-like types.
        var payloadStart = 0
        var payloadLength = 0
        /// Offset just past this header (and past the payload for non-aggregates).
        var next: Int
    }

    // Mirrors the SLUICE_REDIS_* constants of sluice_plugin.h.
    static let simpleString: Int32 = 1, error: Int32 = 2, integer: Int32 = 3, bulkString: Int32 = 4,
        array: Int32 = 5, null: Int32 = 6, boolean: Int32 = 7, double: Int32 = 8, bigNumber: Int32 = 9,
        blobError: Int32 = 10, verbatim: Int32 = 11, map: Int32 = 12, set: Int32 = 13,
        attribute: Int32 = 14, push: Int32 = 15

    /// The value header at `offset`, or nil if the bytes there are not a valid header.
    static func header(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> Header? {
        guard offset < bytes.count,
              let lineEnd = RESPLine.findCRLF(bytes, from: offset + 1), lineEnd >= 0
        else { return nil }
        let next = lineEnd + 2
        let lineStart = offset + 1
        func lineValue(_ type: Int32) -> Header {
            Header(type: type, payloadStart: lineStart, payloadLength: lineEnd - lineStart, next: next)
        }
        switch bytes[offset] {
        case UInt8(ascii: "+"): return lineValue(simpleString)
        case UInt8(ascii: "-"): return lineValue(error)
        case UInt8(ascii: ","): return lineValue(double)
        case UInt8(ascii: "("): return lineValue(bigNumber)
        case UInt8(ascii: "_"): return Header(type: null, next: next)
        case UInt8(ascii: ":"):
            guard let v = RESPLine.parseInteger(bytes, from: lineStart, to: lineEnd) else { return nil }
            return Header(type: integer, integer: Int64(v), next: next)
        case UInt8(ascii: "#"):
            let t = lineEnd > lineStart && bytes[lineStart] == UInt8(ascii: "t")
            return Header(type: boolean, integer: t ? 1 : 0, next: next)
        case UInt8(ascii: "$"), UInt8(ascii: "!"), UInt8(ascii: "="):
            guard let length = RESPLine.parseInteger(bytes, from: lineStart, to: lineEnd) else { return nil }
            if length < 0 { return Header(type: null, next: next) }
            let type: Int32 = bytes[offset] == UInt8(ascii: "$") ? bulkString
                : bytes[offset] == UInt8(ascii: "!") ? blobError : verbatim
            guard next + length + 2 <= bytes.count else { return nil }
            return Header(type: type, payloadStart: next, payloadLength: length, next: next + length + 2)
        case UInt8(ascii: "*"), UInt8(ascii: "%"), UInt8(ascii: "~"), UInt8(ascii: ">"), UInt8(ascii: "|"):
            guard let n = RESPLine.parseInteger(bytes, from: lineStart, to: lineEnd) else { return nil }
            if n < 0 { return Header(type: null, next: next) }
            let type: Int32
            switch bytes[offset] {
            case UInt8(ascii: "*"): type = array
            case UInt8(ascii: "%"): type = map
            case UInt8(ascii: "~"): type = set
            case UInt8(ascii: ">"): type = push
            default: type = attribute
            }
            return Header(type: type, count: Int64(n), next: next)
        default:
            return nil
        }
    }
}

/// Zero-copy access to the arguments of a multibulk command.
enum RESPCommandReader {
    /// Number of arguments (the command name included), or 0 if bytes are not a multibulk command.
    static func argumentCount(_ bytes: UnsafeRawBufferPointer) -> Int {
        guard bytes.count > 3, bytes[0] == UInt8(ascii: "*"),
              let lineEnd = RESPLine.findCRLF(bytes, from: 1), lineEnd > 0,
              let n = RESPLine.parseInteger(bytes, from: 1, to: lineEnd)
        else { return 0 }
        return max(n, 0)
    }

    /// Calls `body(index, start, length)` for each argument until it returns false.
    @inline(__always)
    /// Returns the number of arguments the header declares (0 if bytes are not a multibulk command).
    @discardableResult
    static func forEachArgument(_ bytes: UnsafeRawBufferPointer, _ body: (Int, Int, Int) -> Bool) -> Int {
        guard bytes.count > 3, bytes[0] == UInt8(ascii: "*"),
              let lineEnd = RESPLine.findCRLF(bytes, from: 1), lineEnd > 0,
              let n = RESPLine.parseInteger(bytes, from: 1, to: lineEnd)
        else { return 0 }
        var offset = lineEnd + 2
        var index = 0
        while index < n {
            guard let end = RESPLine.findCRLF(bytes, from: offset + 1), end > 0,
                  let length = RESPLine.parseInteger(bytes, from: offset + 1, to: end)
            else { return max(n, 0) }
            let start = end + 2
            if !body(index, start, length) { return max(n, 0) }
            offset = start + length + 2
            index += 1
        }
        return max(n, 0)
    }

    /// True if argument 0 equals `name` ignoring ASCII case (name must be lowercase).
    @inline(__always)
    static func commandIs(_ bytes: UnsafeRawBufferPointer, _ name: StaticString) -> Bool {
        var result = false
        forEachArgument(bytes) { _, start, length in
            result = RedisReplyPlan.equalsIgnoringCase(UnsafeRawBufferPointer(rebasing: bytes[start..<start + length]), name)
            return false
        }
        return result
    }
}
