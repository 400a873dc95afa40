/// An ordered batch of messages (requests or responses); a thin wrapper over `sluice_batch*`.
/// See the header for lent and owned batches: a batch from `new`, `clone` or a send completion is
/// owned and must be given away (`Call.respond`, `InstanceEnv.send`) or `free()`d.
///
/// Functions that change a batch return the host's status (`SLUICE_OK`, or why not: a bad index, a
/// malformed message, a stale batch); nothing is dropped silently. In a hook, `try status.check()`
/// turns a failure into a thrown `SluiceError`, which fails the call with its message.
public struct Batch {
    public let raw: OpaquePointer

    public init(raw: OpaquePointer) { self.raw = raw }

    public static func newRequests() -> Batch {
        Batch(raw: sluiceHost.pointee.batch_new(Int32(SLUICE_BATCH_REQUESTS), Int32(SLUICE_PROTOCOL_REDIS))!)
    }

    public static func newResponses() -> Batch {
        Batch(raw: sluiceHost.pointee.batch_new(Int32(SLUICE_BATCH_RESPONSES), Int32(SLUICE_PROTOCOL_REDIS))!)
    }

    public var count: Int { sluiceHost.pointee.batch_count(raw) }
    public var isRequests: Bool { sluiceHost.pointee.batch_kind(raw) == SLUICE_BATCH_REQUESTS }

    /// An owned copy; message bytes are shared.
    public func clone() -> Batch { Batch(raw: sluiceHost.pointee.batch_clone(raw)!) }
    public func free() { sluiceHost.pointee.batch_free(raw) }

    /// Copies message `index` of `source` to position `at` (count appends). No byte copy.
    @discardableResult
    public func insert(from source: Batch, index: Int, at position: Int) -> SluiceStatus {
        SluiceStatus(sluiceHost.pointee.batch_insert_from(raw, position, source.raw, index), "batch_insert_from")
    }

    @discardableResult
    public func append(from source: Batch, index: Int) -> SluiceStatus {
        insert(from: source, index: index, at: count)
    }

    @discardableResult
    public func remove(at index: Int) -> SluiceStatus {
        SluiceStatus(sluiceHost.pointee.batch_remove(raw, index), "batch_remove")
    }

    /// Replaces (index < count) or appends (index == count) a message given as complete wire bytes.
    @discardableResult
    public func putBytes(_ bytes: [UInt8], at index: Int) -> SluiceStatus {
        bytes.withUnsafeBufferPointer {
            SluiceStatus(sluiceHost.pointee.batch_put_bytes(raw, index, $0.baseAddress, $0.count), "batch_put_bytes")
        }
    }

    /// The wire bytes of a message (borrowed: valid until it is replaced or the batch released).
    public func bytes(at index: Int) -> UnsafeRawBufferPointer {
        var view = sluice_host_view()
        guard sluiceHost.pointee.batch_message_bytes(raw, index, &view) == SLUICE_OK else {
            return UnsafeRawBufferPointer(start: nil, count: 0)
        }
        return UnsafeRawBufferPointer(start: view.ptr, count: view.len)
    }

    // MARK: Redis requests

    /// Number of arguments of command `index` (name included).
    public func argumentCount(at index: Int) -> Int { sluiceHost.pointee.redis_arg_count(raw, index) }

    /// Fills `views` with zero-copy views of command `index`'s arguments and returns their count.
    /// `views` is reused storage; it grows when a command has more arguments than it holds.
    @discardableResult
    public func arguments(at index: Int, into views: inout ArgumentViews) -> Int {
        var total = 0
        views.storage.withUnsafeMutableBufferPointer { buffer in
            _ = sluiceHost.pointee.redis_args(raw, index, buffer.baseAddress, buffer.count, &total)
        }
        if total > views.storage.count {
            views.storage = Array(repeating: sluice_host_view(), count: total)
            views.storage.withUnsafeMutableBufferPointer { buffer in
                _ = sluiceHost.pointee.redis_args(raw, index, buffer.baseAddress, buffer.count, &total)
            }
        }
        views.count = total
        return total
    }

    /// Builds a command and puts it at `index` (count appends). The arguments are copied once into
    /// one buffer, so any number of them (the host accepts a million) takes constant stack.
    @discardableResult
    public func putCommand(_ arguments: [[UInt8]], at index: Int) -> SluiceStatus {
        var lengths: [Int] = []
        lengths.reserveCapacity(arguments.count)
        var total = 0
        for argument in arguments {
            lengths.append(argument.count)
            total += argument.count
        }
        var joined: [UInt8] = []
        joined.reserveCapacity(total)
        for argument in arguments { joined.append(contentsOf: argument) }
        return joined.withUnsafeBufferPointer { buffer in
            var pointers: [UnsafePointer<UInt8>?] = []
            pointers.reserveCapacity(arguments.count)
            var offset = 0
            for length in lengths {
                pointers.append(buffer.baseAddress.map { $0 + offset })
                offset += length
            }
            return SluiceStatus(sluiceHost.pointee.redis_put_command(raw, index, arguments.count, pointers, lengths),
                                "redis_put_command")
        }
    }

    // MARK: Redis responses

    /// Puts an error reply ("ERR …") at `index` (count appends).
    @discardableResult
    public func putError(_ message: String, at index: Int) -> SluiceStatus {
        putReply(Int32(SLUICE_REDIS_ERROR), message, at: index)
    }

    @discardableResult
    public func putSimpleString(_ text: String, at index: Int) -> SluiceStatus {
        putReply(Int32(SLUICE_REDIS_SIMPLE_STRING), text, at: index)
    }

    @discardableResult
    public func putBulk(_ bytes: [UInt8], at index: Int) -> SluiceStatus {
        bytes.withUnsafeBufferPointer {
            SluiceStatus(sluiceHost.pointee.redis_put_reply(raw, index, Int32(SLUICE_REDIS_BULK_STRING), $0.baseAddress, $0.count, 0),
                         "redis_put_reply")
        }
    }

    @discardableResult
    public func putInteger(_ value: Int64, at index: Int) -> SluiceStatus {
        SluiceStatus(sluiceHost.pointee.redis_put_reply(raw, index, Int32(SLUICE_REDIS_INTEGER), nil, 0, value), "redis_put_reply")
    }

    /// A null reply, encoded for the client's protocol (`_` for RESP3, `$-1` for RESP2).
    @discardableResult
    public func putNull(at index: Int) -> SluiceStatus {
        SluiceStatus(sluiceHost.pointee.redis_put_reply(raw, index, Int32(SLUICE_REDIS_NULL), nil, 0, 0), "redis_put_reply")
    }

    /// Simple strings and errors are one line: CR and LF bytes become spaces (byte by byte: Swift
    /// sees "\r\n" as one Character, which a Character-level replace would miss).
    private func putReply(_ type: Int32, _ text: String, at index: Int) -> SluiceStatus {
        let line = text.utf8.map { $0 == 13 || $0 == 10 ? UInt8(ascii: " ") : $0 }
        return line.withUnsafeBufferPointer {
            SluiceStatus(sluiceHost.pointee.redis_put_reply(raw, index, type, $0.baseAddress, $0.count, 0), "redis_put_reply")
        }
    }

    /// A pre-order walk over the values of response `index`.
    public func values(at index: Int) -> ReplyValues {
        var values = ReplyValues()
        _ = sluiceHost.pointee.redis_cursor_init(raw, index, &values.cursor)
        return values
    }
}

/// Reusable storage for `Batch.arguments(at:into:)`.
public struct ArgumentViews {
    var storage: [sluice_host_view]
    public internal(set) var count = 0

    public init(capacity: Int = 16) {
        storage = Array(repeating: sluice_host_view(), count: capacity)
    }

    /// Argument i (0 is the command name), borrowed from the batch.
    public subscript(i: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: storage[i].ptr, count: storage[i].len)
    }

}

/// Iterates a reply's values in pre-order (see `sluice_redis_value`).
public struct ReplyValues: IteratorProtocol, Sequence {
    var cursor = sluice_redis_cursor()

    public mutating func next() -> sluice_redis_value? {
        var value = sluice_redis_value()
        return sluiceHost.pointee.redis_cursor_next(&cursor, &value) == SLUICE_OK ? value : nil
    }
}

extension UnsafeRawBufferPointer {
    /// These bytes as a String with ASCII letters lowercased (a command name to look up in a set of
    /// lowercase names). Allocates: for the hot path compare with `equalsIgnoringCase` instead.
    public var asciiLowercased: String {
        String(decoding: lazy.map { $0 &- 65 < 26 ? $0 | 0x20 : $0 }, as: UTF8.self)
    }

    /// True if these bytes equal `lowercase` ignoring ASCII case (for command names).
    public func equalsIgnoringCase(_ lowercase: StaticString) -> Bool {
        guard count == lowercase.utf8CodeUnitCount else { return false }
        let expected = UnsafeRawBufferPointer(start: lowercase.utf8Start, count: count)
        for i in 0..<count {
            var b = self[i]
            if b >= 65 && b <= 90 { b += 32 }
            if b != expected[i] { return false }
        }
        return true
    }
}
