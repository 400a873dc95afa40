/// Swift wrappers of the ABI 1.1 reach functions: in-place argument edits, key positions, session
/// properties and partial answers. Each is one host call (no copies of its own); a failing status
/// is thrown as `SluiceError`, never dropped. On a host whose table lacks them (older than 1.1)
/// they throw `SluiceError(status: SLUICE_ERROR_STATE)` instead of calling past the table.

/// The host table's size up to and including the last reach function.
private let reachTableSize = MemoryLayout<sluice_host_api>.offset(of: \sluice_host_api.call_answer)!
    + MemoryLayout<sluice_host_call_answer_fn>.size

/// Throws unless the host's table has the reach functions (ABI 1.1 or later).
@inline(__always)
func requireReach(_ operation: @autoclosure () -> String) throws {
    if Int(sluiceHost.pointee.struct_size) < reachTableSize {
        throw SluiceError(status: Int32(SLUICE_ERROR_STATE), operation: operation() + " (the host predates ABI 1.1)")
    }
}

extension Batch {
    /// Replaces argument `argument` (0 is the command name) of command `index` with `bytes`: one
    /// copy of the command, the other arguments untouched. `bytes` may be a view into this batch
    /// (even into the same command).
    public func setArgument(_ argument: Int, ofCommand index: Int, to bytes: UnsafeRawBufferPointer) throws {
        try requireReach("redis_set_arg")
        try SluiceError.check(sluiceHost.pointee.redis_set_arg(raw, index, argument, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count),
                              "redis_set_arg(\(index), \(argument))")
    }

    public func setArgument(_ argument: Int, ofCommand index: Int, to bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try setArgument(argument, ofCommand: index, to: $0) }
    }

    /// Replaces the bytes `range` of argument `argument` of command `index` with `bytes`
    /// (`0..<0` prefixes, `n..<n` with n the argument's length appends).
    public func spliceArgument(_ argument: Int, ofCommand index: Int, replacing range: Range<Int>,
                               with bytes: UnsafeRawBufferPointer) throws {
        try requireReach("redis_splice_arg")
        try SluiceError.check(sluiceHost.pointee.redis_splice_arg(raw, index, argument, range.lowerBound, range.count,
                                                                  bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count),
                              "redis_splice_arg(\(index), \(argument))")
    }

    public func spliceArgument(_ argument: Int, ofCommand index: Int, replacing range: Range<Int>, with bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try spliceArgument(argument, ofCommand: index, replacing: range, with: $0) }
    }

    /// What the host's command table says about a command's keys.
    public enum KeyLookup {
        /// Known; `positions` holds its keys (possibly none).
        case known
        /// The table does not know the command (newer than the table, or a module's).
        case unknownCommand
        /// The arguments contradict the command's key spec; the server will refuse it.
        case malformed
    }

    /// Fills `positions` (reused storage) with the argument indices of command `index`'s keys.
    public func keyPositions(at index: Int, into positions: inout KeyPositions) throws -> KeyLookup {
        try requireReach("redis_keys")
        var total = 0
        var status = positions.storage.withUnsafeMutableBufferPointer {
            sluiceHost.pointee.redis_keys(raw, index, $0.baseAddress, $0.count, &total)
        }
        if status == SLUICE_OK, total > positions.storage.count {
            positions.storage = Array(repeating: 0, count: total)
            status = positions.storage.withUnsafeMutableBufferPointer {
                sluiceHost.pointee.redis_keys(raw, index, $0.baseAddress, $0.count, &total)
            }
        }
        positions.count = status == SLUICE_OK ? total : 0
        switch status {
        case SLUICE_OK: return .known
        case SLUICE_ERROR_NOT_FOUND: return .unknownCommand
        case SLUICE_ERROR_MALFORMED: return .malformed
        default: throw SluiceError(status: status, operation: "redis_keys(\(index))")
        }
    }
}

/// Reusable storage for `Batch.keyPositions(at:into:)`: the argument indices of a command's keys.
public struct KeyPositions: RandomAccessCollection {
    var storage: [Int]
    public internal(set) var count = 0

    public init(capacity: Int = 8) { storage = Array(repeating: 0, count: capacity) }

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }
    public subscript(i: Int) -> Int { storage[i] }
}

extension Call {
    /// Answers request `index` here with message `replyIndex` of `replies` (a response batch that
    /// stays the caller's); the call still ends in `forward()` or `pass()`, which send only the
    /// other requests, and the host puts this answer in its place (see call_answer).
    public func answer(_ index: Int, with replies: Batch, at replyIndex: Int) throws {
        try requireReach("call_answer")
        try SluiceError.check(sluiceHost.pointee.call_answer(raw, index, replies.raw, replyIndex), "call_answer(\(index))")
    }

    /// Answers request `index` here with the error reply `message` (e.g. "ERR denied").
    public func answer(_ index: Int, error message: String) throws {
        let reply = Batch.newResponses()
        defer { reply.free() }
        let line = message.utf8.map { $0 == 13 || $0 == 10 ? UInt8(ascii: " ") : $0 }
        try SluiceError.check(line.withUnsafeBufferPointer {
            sluiceHost.pointee.redis_put_reply(reply.raw, 0, Int32(SLUICE_REDIS_ERROR), $0.baseAddress, $0.count, 0)
        }, "redis_put_reply")
        try answer(index, with: reply, at: 0)
    }
}

extension InstanceEnv {
    /// An integer session property (SLUICE_PROPERTY_*); nil when it is not set.
    public func integerProperty(_ property: Int32) throws -> Int64? {
        try requireReach("get_property")
        var value: Int64 = 0
        let status = sluiceHost.pointee.get_property(raw, property, nil, &value)
        if status == SLUICE_ERROR_NOT_FOUND { return nil }
        try SluiceError.check(status, "get_property(\(property))")
        return value
    }

    /// A bytes session property (SLUICE_PROPERTY_*), borrowed until the current hook returns; nil
    /// when it is not set.
    public func bytesProperty(_ property: Int32) throws -> UnsafeRawBufferPointer? {
        try requireReach("get_property")
        var view = sluice_host_view()
        let status = sluiceHost.pointee.get_property(raw, property, &view, nil)
        if status == SLUICE_ERROR_NOT_FOUND { return nil }
        try SluiceError.check(status, "get_property(\(property))")
        return UnsafeRawBufferPointer(start: view.ptr, count: view.len)
    }

    /// A bytes session property as a String (copied); nil when it is not set.
    public func stringProperty(_ property: Int32) throws -> String? {
        try bytesProperty(property).map { String(decoding: $0, as: UTF8.self) }
    }

    /// 2 or 3: the RESP version the client speaks.
    public func protocolVersion() throws -> Int { Int(try integerProperty(Int32(SLUICE_PROPERTY_PROTOCOL_VERSION)) ?? 2) }
    /// The selected database.
    public func database() throws -> Int { Int(try integerProperty(Int32(SLUICE_PROPERTY_DATABASE)) ?? 0) }
    /// The user the client authenticated as, if it did.
    public func user() throws -> String? { try stringProperty(Int32(SLUICE_PROPERTY_USER)) }
    /// The client's name (CLIENT SETNAME), if it set one.
    public func clientName() throws -> String? { try stringProperty(Int32(SLUICE_PROPERTY_CLIENT_NAME)) }
    /// The source's name (its listen address as configured).
    public func sourceName() throws -> String? { try stringProperty(Int32(SLUICE_PROPERTY_SOURCE_NAME)) }
}
