/// Turns an inline command line (`SET "a key" value`) into its arguments, with the quoting rules of
/// redis-server's own parser: double quotes with backslash escapes (\n \r \t \b \a \\ \" \xHH),
/// single quotes with \' only, and a closing quote that must be followed by a space or the end.
enum RESPInlineCommand {
    enum ParseError: Error, Equatable {
        case unbalancedQuotes
    }

    static func arguments(of line: UnsafeRawBufferPointer) throws -> [[UInt8]] {
        var args: [[UInt8]] = []
        var i = 0
        let n = line.count
        func isSpace(_ b: UInt8) -> Bool { b == 32 || b == 9 || b == 10 || b == 13 || b == 11 || b == 12 }
        while true {
            while i < n, isSpace(line[i]) { i += 1 }
            if i >= n { return args }
            var current: [UInt8] = []
            var inDouble = false
            var inSingle = false
            var done = false
            while !done {
                if inDouble {
                    guard i < n else { throw ParseError.unbalancedQuotes }
                    let c = line[i]
                    if c == UInt8(ascii: "\\"), i + 3 < n, line[i + 1] == UInt8(ascii: "x"),
                       let hi = hexValue(line[i + 2]), let lo = hexValue(line[i + 3]) {
                        current.append(hi << 4 | lo)
                        i += 3
                    } else if c == UInt8(ascii: "\\"), i + 1 < n {
                        i += 1
                        switch line[i] {
                        case UInt8(ascii: "n"): current.append(10)
                        case UInt8(ascii: "r"): current.append(13)
                        case UInt8(ascii: "t"): current.append(9)
                        case UInt8(ascii: "b"): current.append(8)
                        case UInt8(ascii: "a"): current.append(7)
                        default: current.append(line[i])
                        }
                    } else if c == UInt8(ascii: "\"") {
                        if i + 1 < n, !isSpace(line[i + 1]) { throw ParseError.unbalancedQuotes }
                        done = true
                    } else {
                        current.append(c)
                    }
                } else if inSingle {
                    guard i < n else { throw ParseError.unbalancedQuotes }
                    let c = line[i]
                    if c == UInt8(ascii: "\\"), i + 1 < n, line[i + 1] == UInt8(ascii: "'") {
                        i += 1
                        current.append(UInt8(ascii: "'"))
                    } else if c == UInt8(ascii: "'") {
                        if i + 1 < n, !isSpace(line[i + 1]) { throw ParseError.unbalancedQuotes }
                        done = true
                    } else {
                        current.append(c)
                    }
                } else {
                    if i >= n { break }
                    let c = line[i]
                    if isSpace(c) {
                        done = true
                    } else if c == UInt8(ascii: "\"") {
                        inDouble = true
                    } else if c == UInt8(ascii: "'") {
                        inSingle = true
                    } else {
                        current.append(c)
                    }
                }
                if i < n { i += 1 }
            }
            args.append(current)
        }
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - 48
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - 87
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - 55
        default: return nil
        }
    }
}
