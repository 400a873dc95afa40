import NIOCore
import PluginABI

/// An ordered batch of messages of one protocol: requests from one client read, or their responses.
///
/// Every message is a complete wire-format value held as a `ByteBuffer` slice. Messages decoded from
/// the network share the storage of the read they came from; `contiguous` then covers all of them, so
/// an untouched batch is written out with a single write of the original bytes. Any change drops
/// `contiguous` and the writer falls back to writing the messages one by one.
///
/// Plugins see a batch as the opaque `sluice_batch*`, a `HandleTable` handle: a lent handle (the host
/// keeps ownership; retired when the call completes) or an owned one (retired when the plugin frees
/// the batch or gives it away).
final class Batch {
    /// SLUICE_BATCH_REQUESTS or SLUICE_BATCH_RESPONSES.
    let kind: Int32
    /// SLUICE_PROTOCOL_REDIS or SLUICE_PROTOCOL_CQL.
    let protocolID: Int32
    private(set) var messages: [ByteBuffer]
    /// All messages back to back, exactly as received; nil once the batch changed.
    private(set) var contiguous: ByteBuffer?
    /// Bumped on every change, so cursors can tell that their view went stale.
    private(set) var generation: UInt64 = 0
    /// Set by the source that read the requests when every one of them is a plain command
    /// (`RedisCommandClass`): the host's per-request checks then skip the batch. Dropped by any change.
    private(set) var plainRequests = false
    /// With `plainRequests`: the reply kinds the first 32 requests expect (`RedisReplyPlan.expectedReplies`).
    private(set) var plainExpectedReplies: UInt64 = 0
    /// CQL batches: what the cql_* accessors read from each message, one slot per message, made on
    /// first use (empty until then, and always for Redis). A slot goes with its message: replacing or
    /// removing the message drops it (and with it the views plugins were given into it).
    /// `clearForReuse` keeps the objects, emptied, for the next read's messages (`CQLLazySlots.recycleAll`).
    /// Read only by the accessors of Protocols/CQL/PluginAccess/Batch+CQL.swift (internal rather than
    /// private for them: an extension cannot add storage, so the slots are stored here).
    var cqlParsed = CQLLazySlots<CQLParsedMessage>()

    static let requests = Int32(SLUICE_BATCH_REQUESTS)
    static let responses = Int32(SLUICE_BATCH_RESPONSES)
    static let redis = Int32(SLUICE_PROTOCOL_REDIS)
    static let cql = Int32(SLUICE_PROTOCOL_CQL)

    init(kind: Int32, protocolID: Int32, messages: [ByteBuffer] = [], contiguous: ByteBuffer? = nil) {
        self.kind = kind
        self.protocolID = protocolID
        self.messages = messages
        self.contiguous = contiguous
    }

    var count: Int { messages.count }

    /// Empties a request batch that nothing references any more, keeping its storage for the next
    /// read's requests (and letting go of the read buffer its messages pointed into).
    func clearForReuse() {
        // One message (every CQL batch): removeLast is a few instructions, removeAll a generic
        // replaceSubrange of a couple of hundred.
        if messages.count == 1 { messages.removeLast() } else { messages.removeAll(keepingCapacity: true) }
        contiguous = nil
        plainRequests = false
        cqlParsed.recycleAll { $0.recycle() }
        generation &+= 1
    }

    /// Appends a message as received while the batch is being built (not a change to it).
    func appendReceived(_ message: ByteBuffer) {
        messages.append(message)
    }

    /// Marks a request batch, once built, as all plain commands expecting `expectedReplies`.
    func markPlain(expectedReplies: UInt64) {
        plainRequests = true
        plainExpectedReplies = expectedReplies
    }

    /// Sets the bytes covering every message, as received, once the batch is built.
    func setReceivedBytes(_ bytes: ByteBuffer?) {
        contiguous = bytes
    }

    func copy() -> Batch {
        let copy = Batch(kind: kind, protocolID: protocolID, messages: messages, contiguous: contiguous)
        if plainRequests { copy.markPlain(expectedReplies: plainExpectedReplies) }
        return copy
    }

    /// Replaces (index < count) or appends (index == count) a message.
    func put(_ message: ByteBuffer, at index: Int) {
        if index == messages.count {
            messages.append(message)  // its slot past the others is empty
        } else {
            messages[index] = message
            cqlParsed[index] = nil
        }
        changed()
    }

    func insert(_ message: ByteBuffer, at index: Int) {
        messages.insert(message, at: index)
        cqlParsed.insertEmpty(at: index)
        changed()
    }

    func remove(at index: Int) {
        messages.remove(at: index)
        cqlParsed.remove(at: index)
        changed()
    }

    func append(_ message: ByteBuffer) {
        messages.append(message)  // its slot past the others is empty
        changed()
    }

    private func changed() {
        contiguous = nil
        plainRequests = false
        generation &+= 1
    }

    /// Runs body with the bytes of message index (no copy).
    @inline(__always)
    func withMessageBytes<R>(_ index: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try messages[index].withUnsafeReadableBytes(body)
    }

    /// Writes the batch to a channel, as few writes as possible; with `flush`, flushes after it
    /// (in the same pipeline pass as the last write when there is one).
    func write(to context: ChannelHandlerContext, flush: Bool = false) {
        if let contiguous, contiguous.readableBytes > 0 {
            if flush {
                context.writeAndFlush(NIOAny(contiguous), promise: nil)
            } else {
                context.write(NIOAny(contiguous), promise: nil)
            }
            return
        }
        var last: ByteBuffer?
        if contiguous == nil {
            for message in messages where message.readableBytes > 0 {
                if let previous = last { context.write(NIOAny(previous), promise: nil) }
                last = message
            }
        }
        switch (last, flush) {
        case (let last?, true): context.writeAndFlush(NIOAny(last), promise: nil)
        case (let last?, false): context.write(NIOAny(last), promise: nil)
        case (nil, true): context.flush()
        case (nil, false): break
        }
    }

    func write(to channel: Channel) {
        if let contiguous {
            if contiguous.readableBytes > 0 { channel.write(contiguous, promise: nil) }
            return
        }
        for message in messages where message.readableBytes > 0 {
            channel.write(message, promise: nil)
        }
    }

    /// The error replies for `count` requests of `requests`, in their protocol: Redis `-ERR <text>`
    /// (`redisErrors`), CQL an ERROR frame with `cqlCode` and `text` for each request (`cqlErrors`).
    static func errors(_ text: String, cqlCode: CQLErrorCode = .serverError, answering requests: Batch, count: Int,
                       allocator: ByteBufferAllocator) -> Batch {
        guard requests.protocolID == cql else { return redisErrors("ERR \(text)", count: count, allocator: allocator) }
        return cqlErrors(text, code: cqlCode, answering: requests, count: count, allocator: allocator)
    }

    /// The error reply to request `index` of `requests` (see `errors(_:cqlCode:answering:count:allocator:)`).
    static func errorReply(_ text: String, cqlCode: CQLErrorCode = .serverError, answering requests: Batch, at index: Int,
                           allocator: ByteBufferAllocator) -> ByteBuffer {
        guard requests.protocolID == cql else { return redisErrorReply("ERR \(text)", allocator: allocator) }
        return cqlErrorReply(text, code: cqlCode, answering: requests, at: index, allocator: allocator)
    }
}
