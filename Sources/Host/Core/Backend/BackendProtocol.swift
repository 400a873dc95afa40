import NIOCore

/// What a backend connection (`BackendConnection`) needs to know about the protocol it speaks; the
/// connection itself knows none (connect, TLS, the handshake's order, back-off, reply timeout,
/// coalesced writes). One conforming type per protocol folder: `RedisBackend` in
/// `Protocols/Redis/Backend`. The connection is generic over it and specialised, so nothing on the
/// per-request path goes through a witness table or an existential.
protocol BackendProtocol {
    /// Splits the backend's byte stream into frames (a reply, or an unsolicited frame).
    associatedtype Scanner: BackendFrameScanner
    /// Pairs replies with the requests in flight, per connection: in order (RESP) or by stream id
    /// (CQL); delivers unsolicited frames; follows the connection-state rules.
    associatedtype Pairing: BackendReplyPairing

    /// The handler for a new channel of `connection`: a concrete class per protocol that runs
    /// `BackendReadLoop` (see there why it is not generic).
    static func channelHandler(for connection: BackendConnection<Self>, maxFrameBytes: Int) -> ChannelHandler

    /// The backend's refusal of a handshake step in its own words (nil: the step was accepted).
    static func handshakeRefusal(_ reply: ByteBuffer) -> String?

    /// Whether the handshake's steps are written at once (true by default) or one by one, each
    /// after the backend accepted the one before.
    static var pipelinesHandshake: Bool { get }

    /// What the backend's `reply` to handshake step `step` of `steps` means. By default: refused
    /// when `handshakeRefusal` finds a refusal, else accepted. `channel` is the new channel (a
    /// protocol whose framing changes during the handshake switches it here, before the next
    /// request is written).
    static func handshakeVerdict(_ reply: ByteBuffer, step: Int, of steps: [BackendHandshakeStep],
                                 channel: Channel) -> BackendHandshakeVerdict

    /// The protocol's error reply, `message` for each of `count` requests (a batch whose
    /// handshake step the backend refused, as the backend would have answered them directly).
    static func errorReplies(_ message: String, count: Int, allocator: ByteBufferAllocator) -> Batch
}

extension BackendProtocol {
    static var pipelinesHandshake: Bool { true }

    static func handshakeVerdict(_ reply: ByteBuffer, step: Int, of steps: [BackendHandshakeStep],
                                 channel: Channel) -> BackendHandshakeVerdict {
        handshakeRefusal(reply).map(BackendHandshakeVerdict.refused) ?? .accepted
    }
}

/// What a shared connection tells the client's route when one of its batches completed (Redis
/// keeps a client's batches in order across its connections).
protocol BackendRoute: AnyObject {
    func sharedBatchCompleted()
}

/// One step of splitting a byte stream into frames.
enum BackendFrameScan: Equatable {
    /// A whole frame of `length` bytes starts at the front.
    case complete(length: Int)
    /// The frame at the front is not complete yet.
    case needMore
    /// The bytes at the front are not the protocol (or exceed a limit): the connection is closed.
    case malformed(String)
}

/// A resumable frame scanner: called again with the same bytes plus more after `.needMore`.
protocol BackendFrameScanner {
    init(maxFrameBytes: Int)
    mutating func scanFrame(_ bytes: UnsafeRawBufferPointer) -> BackendFrameScan
}

/// What a reply did to the requests in flight.
enum BackendReplyOutcome: Equatable {
    /// Paired with a request (or delivered as an unsolicited frame, or dropped as unwanted).
    case accepted
    /// It cannot answer the request it would be paired with, or none waits: every later reply on
    /// the connection would go to the wrong request, so the connection is reset.
    case outOfStep(String)
}

extension BackendReplyPairing {
    func failOverdue(sentAtOrBefore cutoff: Int, message: String) -> Int? { nil }

    func entry(for batch: Batch, receiver: ResponseReceiver, route: Route?, sentAtCheck: Int?,
               appendingTo output: inout ByteBuffer) -> (entry: Entry, appended: Bool) {
        (entry(for: batch, receiver: receiver, route: route, sentAtCheck: sentAtCheck), false)
    }

    func entry(forRequest request: ByteBuffer, receiver: ResponseReceiver, sentAtCheck: Int?,
               appendingTo output: inout ByteBuffer) -> Entry? {
        nil
    }
}

/// The requests in flight on one backend connection and how replies find them: the protocol's
/// pending-request store. In order for RESP (a queue; the head takes the next reply); by stream id
/// for CQL (a table). Lives on the connection's event loop.
protocol BackendReplyPairing: AnyObject {
    /// A request batch's place among the requests in flight.
    associatedtype Entry
    /// The client route a shared connection reports completed batches to.
    associatedtype Route: BackendRoute

    /// Batches in flight (written, or waiting for the connection).
    var count: Int { get }

    /// The entry of `batch`, about to be sent (not in flight yet). The pairing follows the
    /// connection-state rules of its requests here. `sentAtCheck`: the reply-timeout clock when a
    /// timeout applies (nil: none).
    func entry(for batch: Batch, receiver: ResponseReceiver, route: Route?, sentAtCheck: Int?) -> Entry

    /// As `entry(for:)`, for a shared connection about to add `batch` to its write of this
    /// event-loop turn: a pairing that rewrites requests may append their bytes as they go on the
    /// wire to `output` itself (one copy, the batch left as it is) and return `appended: true`;
    /// false: the connection writes the batch. Defaults to `entry(for:)` and false.
    func entry(for batch: Batch, receiver: ResponseReceiver, route: Route?, sentAtCheck: Int?,
               appendingTo output: inout ByteBuffer) -> (entry: Entry, appended: Bool)

    /// As `entry(for:appendingTo:)` for one request with no batch around it
    /// (`BackendConnection.send(request:)`): the entry, the request appended to `output`; or nil,
    /// with nothing changed, when the pairing does not take the request so (the connection then
    /// makes its batch). Defaults to nil.
    func entry(forRequest request: ByteBuffer, receiver: ResponseReceiver, sentAtCheck: Int?,
               appendingTo output: inout ByteBuffer) -> Entry?

    /// `entry` is never sent (the sink is backing off, or the connection is closed): its requests
    /// fail with `message`; `completesRoute`: its route is told the batch completed. Called in a
    /// later turn than `entry(for:)`.
    func failUnsent(_ entry: Entry, _ message: String, completesRoute: Bool)

    /// `entry`'s requests are in flight (written, or waiting for the connection to be established).
    func add(_ entry: Entry)

    /// The requests just added were written to an established channel, or the connection was
    /// established with requests waiting. Receivers are not called from inside this (a later turn).
    func requestsWritten()

    /// The reply-timeout clock of the oldest batch in flight (nil: none in flight).
    var oldestSentAtCheck: Int? { get }

    /// Whether the oldest batch may legitimately wait for its replies as long as it likes (a
    /// blocking command, a subscribed connection): the reply timeout does not apply to it.
    func oldestMayWaitIndefinitely() -> Bool

    /// The reply timeout found batches sent at or before check `cutoff` unanswered. A pairing that
    /// can fail them alone (CQL: replies pair by stream id, so the others are not delayed) answers
    /// each with `message` in a later turn, keeps the connection, and returns how many it failed;
    /// nil (the default; RESP, whose later replies queue behind the late one) closes the connection
    /// and fails everything on it.
    func failOverdue(sentAtOrBefore cutoff: Int, message: String) -> Int?

    /// A read of the backend begins (frames are slices of `buffer`) or ends.
    func beginRead(_ buffer: ByteBuffer)
    func endRead()

    /// A frame (reply or unsolicited) that starts at reader index `start` of the current read.
    func frameArrived(_ frame: ByteBuffer, start: Int) -> BackendReplyOutcome

    /// Takes every batch in flight off the connection and, in a later turn of `eventLoop`, gives each
    /// its outcome (`outcome` gets the batch's request count).
    func settleAll(on eventLoop: EventLoop, _ outcome: @escaping (Int) -> ChainOutcome)

    /// The channel is gone (or never got established): state it held on the server is gone too.
    func connectionLost()
}
