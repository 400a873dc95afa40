import NIOCore

/// What a client connection (`ClientSession`) needs to know about the wire protocol its client
/// speaks; the session itself knows none (reply order, the in-flight budget and read pausing, the
/// request-buffer budget, the completion deadline, idle close, `max_clients`, drain and half-close,
/// moves to a newer configuration generation). One conforming type per protocol folder:
/// `RedisSource` in `Protocols/Redis/Source`, `CQLSource` in `Protocols/CQL/Source`.
///
/// A value of the conforming type is the protocol's state of ONE client connection (its scanner,
/// whether the client signed in, whether it is inside a transaction, the negotiated compression…),
/// made when the connection is accepted and touched only on its event loop. The session is generic
/// over it and specialised (`ClientSession<RedisSource>` is subclassed by a concrete handler class),
/// so nothing on the per-request path goes through a witness table or an existential.
///
/// How the session drives it, per read:
/// 1. `nextRequest` is called with the bytes not yet consumed (a partial request kept from earlier
///    reads joined in front) until it answers `.needMore` or `.close`, or the in-flight budget is
///    spent (then the rest waits in the session's buffer and is scanned again later).
/// 2. `.request`s are collected into one request `Batch` of `protocolID`, at most
///    `maxRequestsPerBatch` requests; `.answer` and `.close` first run the batch collected so far,
///    then take the next place in the reply order with the given reply.
/// 3. Before a batch runs, `sealBatch` lets the protocol note what it learnt about its requests
///    (Redis: that they are plain commands and which reply kind each expects).
/// 4. Replies are written with `write` in request order (`repliesInOrder`, RESP) or as soon as they
///    are back (CQL: streams are independent; a batch of several frames has its replies taken one
///    by one, see `ResponseSlot`, unless a transform of the chain needs them together).
///
/// A protocol also brings its channel handler: a `final class` subclassing `ClientSession<Itself>`,
/// conforming to `ChannelInboundHandler` and `ResponseSlotOwner`, whose methods call the session's
/// `session…` methods (see `RedisClientHandler`, about 50 lines); `SluiceServer` adds it to each
/// accepted channel of a source of that protocol.
protocol SourceProtocol {
    /// What every connection of one source shares (limits, the client authentication).
    associatedtype Settings

    /// The protocol state of a new client connection of a source with `settings`.
    init(settings: Settings, metrics: SourceMetrics)

    /// The `protocolID` of the batches this source makes (`Batch.redis`, `Batch.cql`).
    static var protocolID: Int32 { get }

    /// True: replies are written in request order (a batch waits for every earlier one). False: each
    /// batch's replies are written as soon as they are back.
    static var repliesInOrder: Bool { get }

    /// The most requests one batch holds (RESP: 64, so the reply limits see a deep pipeline early;
    /// CQL: 64 as well, the frames of one read run through the chain together and their replies
    /// still go back one by one).
    static var maxRequestsPerBatch: Int { get }

    /// Reads the next request off the front of `buffer` (moving its reader index past what it
    /// consumed; on `.needMore` it consumes nothing). Called again with the same bytes plus more after
    /// `.needMore`, so a scanner may keep where it stopped. `session`: the client's chain session
    /// (session facts a local answer changes, e.g. the user an AUTH signed in as).
    mutating func nextRequest(_ buffer: inout ByteBuffer, session: ChainSession?,
                              allocator: ByteBufferAllocator) -> SourceScan

    /// A batch of the requests returned since the last seal is about to run (not called for an
    /// empty batch).
    mutating func sealBatch(_ batch: Batch)

    /// The `.answer` just returned took its place in the reply order, after the requests before it
    /// ran: apply the state change it makes (Redis: the client signed in), so that those requests
    /// did not see it.
    mutating func answerPlaced(session: ChainSession?)

    /// Connection state the core must respect: between the start and the end of a transaction
    /// (Redis MULTI … EXEC) the connection does not move to a newer configuration generation.
    var inTransaction: Bool { get }

    /// What the error replies of a failed batch need to know about its requests (CQL: the stream
    /// id and version of each frame; Redis: nothing, `keys.reset(first: 0)`). Taken when the batch
    /// starts; `keys` is the slot's, reused from batch to batch.
    static func replyKeys(of batch: Batch, into keys: inout ReplyKeys)

    /// The protocol's error reply for each of requests `first..<first+count` of a batch that failed
    /// (as a whole: dead backend, a transform's `call_fail`…; or one request of a batch whose
    /// replies go one by one): `message` explains why. Redis: `-ERR message`.
    static func errorReplies(_ message: String, count: Int, replyKeys: ReplyKeys, first: Int,
                             allocator: ByteBufferAllocator) -> Batch

    /// The one reply for a client that is refused before any request of it ran, then closed.
    static func refusal(_ reason: ClientRefusal, allocator: ByteBufferAllocator) -> ByteBuffer

    /// Writes a batch of replies to the client (the protocol's outbound encoding: CQL compresses and
    /// segments here). Default: the bytes as they are.
    mutating func write(_ replies: Batch, to context: ChannelHandlerContext, flush: Bool)

    /// Writes one frame that answers no request of the order (an unsolicited push or event, a
    /// refusal) and flushes. Default: the bytes as they are.
    mutating func writeFrame(_ frame: ByteBuffer, to context: ChannelHandlerContext)

    /// Flushes the replies written with `flush: false` (once per event-loop turn when replies go as
    /// they come): a source that gathers them writes what it gathered first. Default: a flush.
    mutating func flush(to context: ChannelHandlerContext)
}

extension SourceProtocol {
    @inline(__always)
    mutating func answerPlaced(session: ChainSession?) {}

    @inline(__always)
    mutating func write(_ replies: Batch, to context: ChannelHandlerContext, flush: Bool) {
        replies.write(to: context, flush: flush)
    }

    @inline(__always)
    mutating func writeFrame(_ frame: ByteBuffer, to context: ChannelHandlerContext) {
        context.writeAndFlush(NIOAny(frame), promise: nil)
    }

    @inline(__always)
    mutating func flush(to context: ChannelHandlerContext) {
        context.flush()
    }
}

/// One step of reading requests out of a client's byte stream (`SourceProtocol.nextRequest`).
enum SourceScan {
    /// A request to run. `asReceived`: it is the slice of the read just consumed, byte for byte
    /// (false when rebuilt: a Redis inline command turned into RESP, a HELLO without its AUTH), so
    /// the batch may still be written as one slice of the read.
    case request(ByteBuffer, asReceived: Bool)
    /// Bytes consumed that ask for nothing (RESP `*0\r\n`, an empty inline line).
    case nothing
    /// A request answered by the source itself, in its place in the reply order (a local answer, a
    /// refusal of a command that cannot pass a proxy, an AUTH checked here).
    case answer(ByteBuffer)
    /// The connection ends after `reply`: QUIT's `+OK`, or (`protocolError`) malformed input's error
    /// reply. `logDetail`: why, when a limit of Sluice's own refused the input (logged).
    case close(reply: ByteBuffer, protocolError: Bool, logDetail: String?)
    /// The request at the front is not complete yet.
    case needMore
}

/// Why a client is refused before any of its requests ran (the protocol words the reply).
enum ClientRefusal: Equatable {
    /// The source has `max_clients` connections already.
    case maxClients(Int)
    /// A configuration reload removed the source between accepting the client and now.
    case sourceRemoved
    /// The client's chain could not be set up (a plugin's instance_new failed…).
    case chainUnavailable(String)
}
