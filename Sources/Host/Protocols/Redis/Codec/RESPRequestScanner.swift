/// Finds where one client request ends: a RESP array of bulk strings (`*N\r\n$len\r\n…`) or an
/// inline command (a line of space-separated words, as typed in telnet).
///
/// Like `RESPFrameScanner` it is resumable, so a request carrying a value of many megabytes is scanned
/// once however many reads it arrives in.
struct RESPRequestScanner {
    enum Outcome: Equatable {
        /// A multibulk request occupies the first `length` bytes.
        case multibulk(length: Int)
        /// A multibulk header asking for nothing (`*0`, `*-1`): redis-server skips it without a reply,
        /// so the proxy must not forward it (it would wait for a reply that never comes).
        case empty(length: Int)
        /// An inline request: the line is bytes[0..<lineLength], the request with its line ending
        /// occupies `length` bytes.
        case inline(lineLength: Int, length: Int)
        case needMore
        /// Not a request redis-server would accept: the text is redis-server's own wording for the
        /// same input (clients match on it), for a `-ERR Protocol error: …` reply; Sluice's own
        /// reason, where it differs, is in `detail`.
        case malformed(String)
    }

    let maxFrameBytes: Int
    /// Redis's own limit for inline requests.
    static let maxInlineBytes = 64 * 1024
    static let maxArguments = 1024 * 1024
    /// Redis's limits for a client that has not authenticated yet (a source with `auth`): at most
    /// 10 arguments of at most 16 KiB each, so a stranger cannot make Sluice buffer a large request.
    var unauthenticated = false
    static let unauthenticatedMaxArguments = 10
    static let unauthenticatedMaxBulkLength = 16384

    private var offset = 0
    private var argumentsLeft = -1
    /// After `.malformed`: why Sluice refused the request when that is more than Redis's wording
    /// says (a limit of this proxy's configuration), for the log; nil otherwise.
    private(set) var detail: String?

    init(maxFrameBytes: Int) {
        self.maxFrameBytes = maxFrameBytes
    }

    mutating func reset() {
        offset = 0
        argumentsLeft = -1
    }

    mutating func scan(_ bytes: UnsafeRawBufferPointer) -> Outcome {
        detail = nil
        let count = bytes.count
        guard count > 0 else { return .needMore }
        if argumentsLeft < 0 {
            guard bytes[0] == UInt8(ascii: "*") else { return scanInline(bytes) }
            guard let lineEnd = RESPLine.findCRLF(bytes, from: 1) else {
                return count > Self.maxInlineBytes ? .malformed("too big mbulk count string") : .needMore
            }
            guard lineEnd > 0, let n = RESPLine.parseInteger(bytes, from: 1, to: lineEnd),
                  RESPLine.isCanonicalInteger(bytes, from: 1, to: lineEnd)
            else { return .malformed("invalid multibulk length") }
            guard n <= Self.maxArguments else {
                detail = "more than \(Self.maxArguments) arguments"
                return .malformed("invalid multibulk length")
            }
            if n <= 0 { return .empty(length: lineEnd + 2) }
            if unauthenticated, n > Self.unauthenticatedMaxArguments { return .malformed("unauthenticated multibulk length") }
            offset = lineEnd + 2
            argumentsLeft = n
        }
        while argumentsLeft > 0 {
            guard offset < count else { return .needMore }
            guard bytes[offset] == UInt8(ascii: "$") else {
                return .malformed("expected '$', got '\(RESPLine.printable(bytes[offset]))'")
            }
            // The length line, in one pass: canonical decimal digits (no sign, no leading zero, at
            // most 18 of them), then CRLF.
            var i = offset + 1
            var length = 0
            while i < count, bytes[i] != 13 {
                let digit = bytes[i] &- UInt8(ascii: "0")
                guard digit < 10, i - offset <= 18, !(i == offset + 2 && length == 0) else {
                    return .malformed("invalid bulk length")
                }
                length = length * 10 + Int(digit)
                i += 1
            }
            guard i + 1 < count else {
                return count - offset > Self.maxInlineBytes ? .malformed("too big bulk count string") : .needMore
            }
            guard i > offset + 1, bytes[i + 1] == 10 else { return .malformed("invalid bulk length") }
            let lineEnd = i
            if unauthenticated, length > Self.unauthenticatedMaxBulkLength { return .malformed("unauthenticated bulk length") }
            let end = lineEnd + 2 + length + 2
            guard end <= maxFrameBytes else {
                // Redis refuses a bulk longer than its proto-max-bulk-len (512 MiB, the default
                // limit here too) with these words; the configured limit goes to the log.
                detail = "request larger than max_frame_bytes (\(maxFrameBytes))"
                return .malformed("invalid bulk length")
            }
            guard end <= count else { return .needMore }
            // Like redis-server, the two bytes after a bulk are skipped, not checked: it reads
            // "$3\r\nabcXY" as "abc", and so does the backend these bytes go to unchanged.
            offset = end
            argumentsLeft -= 1
        }
        let length = offset
        reset()
        return .multibulk(length: length)
    }

    private func scanInline(_ bytes: UnsafeRawBufferPointer) -> Outcome {
        var i = 0
        let limit = min(bytes.count, Self.maxInlineBytes)
        while i < limit {
            if bytes[i] == 10 {
                let lineLength = i > 0 && bytes[i - 1] == 13 ? i - 1 : i
                return .inline(lineLength: lineLength, length: i + 1)
            }
            i += 1
        }
        return bytes.count >= Self.maxInlineBytes ? .malformed("too big inline request") : .needMore
    }
}
