/// Requests or responses (`SLUICE_BATCH_*`).
public enum BatchKind: Int32 {
    case requests = 0
    case responses = 1
}

/// An ordered batch of messages (requests or responses) of one protocol: a zero-cost wrapper over
/// `sluice_batch*`. Messages are addressed by index `0..<count`.
///
/// OWNERSHIP (see the header): the batches given to `onRequests`/`onResponses` are LENT — read and
/// modify them in place until the call completes, never free them or give them away. A batch from
/// `Batch.new`, `clone()` or a send completion is OWNED: give it away (`Call.respond(_:)`,
/// `InstanceEnv.send`) or `free()` it. `Batch` is a plain value holding the pointer; it does not
/// track ownership for you.
///
/// Views (`UnsafeRawBufferPointer`) returned by accessors point into the host's memory: valid until
/// that message is replaced or removed or the batch is released. THREAD: the instance's.
public struct Batch: Equatable {
    /// The host's `sluice_batch*`.
    public let raw: OpaquePointer

    @inlinable
    public init(raw: OpaquePointer) { self.raw = raw }

    // MARK: Making and releasing

    /// A new, empty, owned batch. Throws only if the host refuses the kind or protocol.
    @inlinable
    public static func new(_ kind: BatchKind, protocol protocolID: Int32 = SLUICE_PROTOCOL_REDIS) throws -> Batch {
        guard let raw = Host.api.pointee.batch_new(kind.rawValue, protocolID) else {
            throw SluiceError(status: SLUICE_ERROR_INVALID_ARGUMENT, operation: "batch_new")
        }
        return Batch(raw: raw)
    }

    /// A new, empty, owned Redis request batch.
    @inlinable
    public static func newRequests() throws -> Batch { try new(.requests) }

    /// A new, empty, owned Redis response batch.
    @inlinable
    public static func newResponses() throws -> Batch { try new(.responses) }

    /// An owned copy (message bytes are shared, not copied: O(count)).
    @inlinable
    public func clone() throws -> Batch {
        guard let copy = Host.api.pointee.batch_clone(raw) else {
            throw SluiceError(status: SLUICE_ERROR_INVALID_ARGUMENT, operation: "batch_clone")
        }
        return Batch(raw: copy)
    }

    /// Releases an owned batch (a lent batch is ignored by the host, and logged).
    @inlinable
    public func free() { Host.api.pointee.batch_free(raw) }

    // MARK: Any message

    /// Number of messages.
    @inlinable
    public var count: Int { Host.api.pointee.batch_count(raw) }

    /// True when the batch holds no message.
    @inlinable
    public var isEmpty: Bool { count == 0 }

    /// Requests or responses.
    @inlinable
    public var kind: BatchKind { BatchKind(rawValue: Host.api.pointee.batch_kind(raw)) ?? .requests }

    /// `SLUICE_PROTOCOL_REDIS` (or, from ABI 1.1, `SLUICE_PROTOCOL_CQL`).
    @inlinable
    public var protocolID: Int32 { Host.api.pointee.batch_protocol(raw) }

    /// Copies message `sourceIndex` of `source` to position `index` of this batch (`count` appends).
    /// Bytes are shared, not copied. Both batches must have the same kind and protocol.
    @inlinable
    public func insert(from source: Batch, at sourceIndex: Int, to index: Int) throws {
        try check(Host.api.pointee.batch_insert_from(raw, index, source.raw, sourceIndex), "batch_insert_from")
    }

    /// Appends message `sourceIndex` of `source` (bytes shared).
    @inlinable
    public func append(from source: Batch, at sourceIndex: Int) throws {
        try insert(from: source, at: sourceIndex, to: count)
    }

    /// Removes message `index`.
    @inlinable
    public func remove(at index: Int) throws {
        try check(Host.api.pointee.batch_remove(raw, index), "batch_remove")
    }

    /// The complete wire bytes of message `index` (a RESP value for Redis); empty for an index out of
    /// range, and for a Redis response delivered out of band (SUBSCRIBE family).
    @inlinable
    public func messageBytes(at index: Int) -> UnsafeRawBufferPointer {
        var view = sluice_host_view()
        guard Host.api.pointee.batch_message_bytes(raw, index, &view) == SLUICE_OK else {
            return UnsafeRawBufferPointer(start: nil, count: 0)
        }
        return UnsafeRawBufferPointer(start: view.ptr, count: view.len)
    }

    /// Replaces (`index < count`) or appends (`index == count`) a message given as complete wire
    /// bytes; the host validates them (`SLUICE_ERROR_MALFORMED`) and copies them.
    @inlinable
    public func putBytes(_ bytes: UnsafeRawBufferPointer, at index: Int) throws {
        try check(Host.api.pointee.batch_put_bytes(raw, index, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self),
                                                   bytes.count), "batch_put_bytes")
    }

    // MARK: Redis requests

    /// Number of arguments of command `index`, the name included (0 for a non-command).
    @inlinable
    public func argumentCount(at index: Int) -> Int { Host.api.pointee.redis_arg_count(raw, index) }

    /// Fills `views` with zero-copy views of every argument of command `index` (argument 0 is the
    /// name) and returns their number (0 for a non-command). `views` is reusable storage: keep one per
    /// instance and it stops allocating once it has grown to the widest command seen.
    @inlinable
    @discardableResult
    public func arguments(at index: Int, into views: ArgumentViews) -> Int {
        var total = 0
        guard Host.api.pointee.redis_args(raw, index, views.base, views.capacity, &total) == SLUICE_OK else {
            views.filled = 0
            return 0
        }
        if total > views.capacity {
            views.reserve(total)
            _ = Host.api.pointee.redis_args(raw, index, views.base, views.capacity, &total)
        }
        views.filled = total
        return total
    }

    /// The name (argument 0) of command `index`, as sent (any case); empty for a non-command.
    @inlinable
    public func commandName(at index: Int) -> UnsafeRawBufferPointer {
        var view = sluice_host_view()
        var total = 0
        guard Host.api.pointee.redis_args(raw, index, &view, 1, &total) == SLUICE_OK, total > 0 else {
            return UnsafeRawBufferPointer(start: nil, count: 0)
        }
        return UnsafeRawBufferPointer(start: view.ptr, count: view.len)
    }

    /// True if command `index` is `lowercaseName`, ignoring case: `requests.isCommand(at: i, "get")`.
    @inlinable
    public func isCommand(at index: Int, _ lowercaseName: StaticString) -> Bool {
        commandName(at: index).equalsIgnoringASCIICase(lowercaseName)
    }

    /// Builds a command from binary-safe arguments (the name first) and puts it at `index`
    /// (`count` appends). The bytes are copied.
    public func putCommand(_ arguments: [UnsafeRawBufferPointer], at index: Int) throws {
        let pointers = arguments.map { $0.baseAddress?.assumingMemoryBound(to: UInt8.self) }
        let lengths = arguments.map(\.count)
        let status = pointers.withUnsafeBufferPointer { argv in
            lengths.withUnsafeBufferPointer { argl in
                Host.api.pointee.redis_put_command(raw, index, arguments.count, argv.baseAddress, argl.baseAddress)
            }
        }
        try check(status, "redis_put_command")
    }

    /// Builds a command from strings (the name first), e.g. `["SET", key, value]`.
    public func putCommand(_ arguments: [String], at index: Int) throws {
        let storage = arguments.map { Array($0.utf8) }
        try withRawBuffers(storage) { try putCommand($0, at: index) }
    }

    // MARK: Redis responses

    /// Puts a simple reply at `index` (`count` appends): `.simpleString` and `.error` (no CR/LF;
    /// an error is the whole message, e.g. "ERR denied"), `.bulkString`, `.integer` (uses `integer`),
    /// `.null`. For arrays and RESP3 types use `putBytes` with the encoded value.
    @inlinable
    public func putReply(_ type: RedisType, _ bytes: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
                         integer: Int64 = 0, at index: Int) throws {
        try check(Host.api.pointee.redis_put_reply(raw, index, type.rawValue,
                                                   bytes.baseAddress?.assumingMemoryBound(to: UInt8.self),
                                                   bytes.count, integer), "redis_put_reply")
    }

    /// Puts an error reply at `index`; `message` is the whole text ("ERR something"). CR and LF are
    /// replaced by spaces.
    public func putError(_ message: String, at index: Int) throws {
        try putLine(.error, message, at: index)
    }

    /// Puts a simple string reply (`+OK`) at `index`. CR and LF are replaced by spaces.
    public func putSimpleString(_ text: String, at index: Int) throws {
        try putLine(.simpleString, text, at: index)
    }

    /// Puts a bulk string reply at `index`.
    @inlinable
    public func putBulk(_ bytes: UnsafeRawBufferPointer, at index: Int) throws {
        try putReply(.bulkString, bytes, at: index)
    }

    /// Puts an integer reply at `index`.
    @inlinable
    public func putInteger(_ value: Int64, at index: Int) throws {
        try putReply(.integer, integer: value, at: index)
    }

    /// Puts a null reply at `index`.
    @inlinable
    public func putNull(at index: Int) throws {
        try putReply(.null, at: index)
    }

    private func putLine(_ type: RedisType, _ text: String, at index: Int) throws {
        var bytes = Array(text.utf8)
        for i in bytes.indices where bytes[i] == 13 || bytes[i] == 10 { bytes[i] = 32 }
        try bytes.withUnsafeBytes { try putReply(type, $0, at: index) }
    }

    /// A pre-order walk over the values of response `index` (see `RedisValue`).
    @inlinable
    public func reply(at index: Int) -> ReplyCursor {
        var cursor = ReplyCursor()
        cursor.valid = Host.api.pointee.redis_cursor_init(raw, index, &cursor.state) == SLUICE_OK
        return cursor
    }
}

/// Calls `body` with raw views of every array (kept alive for the call).
func withRawBuffers<R>(_ arrays: [[UInt8]], _ body: ([UnsafeRawBufferPointer]) throws -> R) rethrows -> R {
    var views: [UnsafeRawBufferPointer] = []
    views.reserveCapacity(arrays.count)
    func step(_ i: Int) throws -> R {
        if i == arrays.count { return try body(views) }
        return try arrays[i].withUnsafeBytes { bytes in
            views.append(bytes)
            return try step(i + 1)
        }
    }
    return try step(0)
}

// MARK: - Arguments

/// Reusable storage for the zero-copy argument views of one command (`Batch.arguments(at:into:)`).
/// Keep one per instance: it grows to the widest command seen and then never allocates again.
/// Views stay valid as long as the message they were read from (see `Batch`).
public final class ArgumentViews: RandomAccessCollection {
    @usableFromInline var base: UnsafeMutablePointer<sluice_host_view>
    @usableFromInline var capacity: Int
    @usableFromInline var filled: Int = 0

    /// Number of arguments of the last command read (the name included).
    @inlinable
    public var count: Int { filled }

    public init(capacity: Int = 16) {
        self.capacity = Swift.max(capacity, 1)
        base = .allocate(capacity: self.capacity)
        base.initialize(repeating: sluice_host_view(), count: self.capacity)
    }

    deinit { base.deallocate() }

    @usableFromInline
    func reserve(_ wanted: Int) {
        guard wanted > capacity else { return }
        var newCapacity = capacity
        while newCapacity < wanted { newCapacity *= 2 }
        base.deallocate()
        base = .allocate(capacity: newCapacity)
        base.initialize(repeating: sluice_host_view(), count: newCapacity)
        capacity = newCapacity
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }

    /// Argument `i` (0 is the command name), borrowed from the batch.
    @inlinable
    public subscript(i: Int) -> UnsafeRawBufferPointer {
        precondition(i >= 0 && i < count, "argument index out of range")
        let view = base[i]
        return UnsafeRawBufferPointer(start: view.ptr, count: view.len)
    }

    /// The command name (argument 0), or an empty view when there is none.
    @inlinable
    public var name: UnsafeRawBufferPointer {
        count > 0 ? self[0] : UnsafeRawBufferPointer(start: nil, count: 0)
    }
}

// MARK: - Replies

/// RESP2/RESP3 value types (`SLUICE_REDIS_*`).
public enum RedisType: Int32 {
    case simpleString = 1, error, integer, bulkString, array, null, boolean, double, bigNumber,
         blobError, verbatim, map, set, attribute, push

    /// True for the aggregate types, whose `count` elements (pairs for map and attribute) follow.
    public var isAggregate: Bool {
        switch self {
        case .array, .map, .set, .attribute, .push: return true
        default: return false
        }
    }

    /// The RESP type byte ('+', '-', ':', '$', '*', '_', '#', ',', '(', '!', '=', '%', '~', '|', '>').
    public var marker: Character {
        switch self {
        case .simpleString: return "+"
        case .error: return "-"
        case .integer: return ":"
        case .bulkString: return "$"
        case .array: return "*"
        case .null: return "_"
        case .boolean: return "#"
        case .double: return ","
        case .bigNumber: return "("
        case .blobError: return "!"
        case .verbatim: return "="
        case .map: return "%"
        case .set: return "~"
        case .attribute: return "|"
        case .push: return ">"
        }
    }
}

/// One value visited by a `ReplyCursor`.
public struct RedisValue {
    /// The raw value filled by the host.
    public let raw: sluice_redis_value

    @inlinable
    public init(raw: sluice_redis_value) { self.raw = raw }

    /// Its type (nil for a type this SDK does not know, from a newer host).
    @inlinable
    public var type: RedisType? { RedisType(rawValue: raw.type) }
    /// `.integer` and `.boolean` (0 or 1).
    @inlinable
    public var integer: Int64 { raw.integer }
    /// Aggregates: number of elements (pairs for map and attribute).
    @inlinable
    public var count: Int { Int(raw.count) }
    /// String-like types: the bytes (borrowed, valid as the message). Empty otherwise.
    @inlinable
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: raw.bytes.ptr, count: raw.bytes.len) }
    /// Number of values that directly follow this one as its elements (2 × count for map/attribute).
    @inlinable
    public var childCount: Int {
        switch raw.type {
        case SLUICE_REDIS_MAP, SLUICE_REDIS_ATTRIBUTE: return Int(raw.count) * 2
        case SLUICE_REDIS_ARRAY, SLUICE_REDIS_SET, SLUICE_REDIS_PUSH: return Int(raw.count)
        default: return 0
        }
    }
}

/// A pre-order walk over one response's values (an aggregate before its elements; an attribute
/// before the value it annotates). No allocation: the host keeps its state in the cursor's 64 bytes.
/// Iterate with `for value in responses.reply(at: i) { … }` or call `next()`.
public struct ReplyCursor: IteratorProtocol, Sequence {
    @usableFromInline var state = sluice_redis_cursor()
    @usableFromInline var valid = false
    /// The status of the last step: `SLUICE_OK`, `SLUICE_END`, or an error (e.g. the message changed
    /// since the cursor started: `SLUICE_ERROR_STATE`).
    public private(set) var lastStatus: Int32 = SLUICE_OK

    @inlinable
    init() {}

    /// The next value, or nil at the end (or on error: see `lastStatus`).
    public mutating func next() -> RedisValue? {
        guard valid else {
            lastStatus = SLUICE_ERROR_INVALID_ARGUMENT
            return nil
        }
        var value = sluice_redis_value()
        lastStatus = Host.api.pointee.redis_cursor_next(&state, &value)
        return lastStatus == SLUICE_OK ? RedisValue(raw: value) : nil
    }
}
