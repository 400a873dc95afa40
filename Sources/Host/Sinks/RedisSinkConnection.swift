import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// A connection to one Redis backend. Requests are written in order (the original bytes when nothing
/// changed them) and replies are matched to them in order. Connects on first use.
///
/// Either *shared* by the stateless clients of one event loop (`owner == nil`: requests of several
/// clients go out in one write, flushed once per event-loop tick), or *dedicated* to one client
/// (`owner` set: keeps SELECT/AUTH/MULTI/blocking/pub-sub state, delivers pushes to that client).
/// Lives on one event loop only.
final class RedisSinkConnection {
    private typealias Lifecycle = BackendConnectionStateMachine<BackendChannel>

    /// A batch written (or waiting to be written) to the backend, and the replies gathered so far.
    private final class Pending {
        /// Nil only while parked for reuse (see `park`).
        private(set) var receiver: ResponseReceiver!
        /// The route to tell when this batch completes (shared connections count in-flight batches).
        var route: SinkRoute?
        private(set) var count: Int
        private(set) var outOfBand: [Bool]?
        var responses: [ByteBuffer] = []
        /// Where this batch's first reply starts in the read buffer `readID`, while all its replies
        /// so far lie back to back there.
        var contiguousStart: Int?
        var readID = -1
        /// The reply-timeout check count when the batch was handed to this connection: its age in
        /// check periods, without reading the clock per batch.
        var sentAtCheck = 0
        /// The requests, kept on a dedicated connection with a reply timeout so that only a batch
        /// that is already late is scanned for a command that may wait as long as it likes (BLPOP…).
        var requests: Batch?
        /// Pushes that arrived between this batch's replies, delivered right after the batch.
        var heldPushes: [ByteBuffer] = []
        /// Whether a reply from the backend (not an out-of-band request's empty stand-in) arrived.
        var hasReplies = false
        /// Dedicated connections: the batch has a command that may wait as long as it likes (BLPOP…),
        /// so pushes are not held back until it completes.
        var mayWaitIndefinitely = false
        /// Dedicated connections: the index of the MONITOR whose `+OK` starts the monitor stream.
        var monitorAt: Int?
        /// The kinds of reply that can answer the first 32 requests, two bits each
        /// (`RedisReplyPlan.expectedReplies`; 0: nothing known; on dedicated connections nothing
        /// inside MULTI or silenced).
        var expectedReplies: UInt64 = 0
        init(receiver: ResponseReceiver, count: Int, outOfBand: [Bool]?) {
            self.receiver = receiver
            self.count = count
            self.outOfBand = outOfBand
            responses.reserveCapacity(count)
        }

        /// Drops what a completed entry references (the client's slot, the replies), so that it can
        /// wait for reuse without keeping them alive.
        func park() {
            receiver = nil
            route = nil
            responses = []
            requests = nil
        }

        /// Makes a completed entry, referenced by nothing else, the entry of a new batch.
        func reuse(receiver: ResponseReceiver, count: Int) {
            self.receiver = receiver
            self.count = count
            route = nil
            responses = []
            responses.reserveCapacity(count)
            contiguousStart = nil
            readID = -1
            sentAtCheck = 0
            requests = nil
            hasReplies = false
            mayWaitIndefinitely = false
            monitorAt = nil
            expectedReplies = 0
        }
    }

    let plan: SinkPlan
    let eventLoop: EventLoop
    let allocator: ByteBufferAllocator
    /// The client a dedicated connection belongs to; nil when shared.
    private weak var owner: ChainSession?
    private let deliversPushes: Bool
    private let isShared: Bool
    private var flushScheduled = false
    /// Shared connections: the small requests of this event-loop tick, copied back to back so the
    /// tick's flush is one plain write instead of one NIO write (and one iovec) per client batch.
    /// Reused from tick to tick once the socket has taken it.
    private var coalesced: ByteBuffer
    /// Connect, TLS, the handshake (AUTH with the sink's credentials, HELLO 3 for a RESP3
    /// connection: replies checked there, never forwarded), ready, lost, closed.
    private var lifecycle: Lifecycle
    private var waitingForConnection: [Batch] = []
    private var pending = CircularBuffer<Pending>(initialCapacity: 4)
    /// Entries completed on a shared connection, reused for the next batches (if nothing
    /// references them any more): a shared connection has many batches in flight at once.
    private var sparePendings: [Pending] = []
    private static let maxSparePendings = 64
    /// RESP2 subscribed mode: pub/sub arrays are unsolicited.
    private var subscribed = false
    /// Dedicated connections: which requests the backend answers in band (CLIENT REPLY, MONITOR),
    /// followed in the order they are sent.
    private var replyMode = RedisReplyMode()
    /// The backend accepted MONITOR: every frame but RESET's reply is the monitor stream, passed to
    /// the client as it comes (the replies to commands sent meanwhile travel in it too).
    private var monitoring = false
    /// The client holds subscriptions on this connection, or monitors (it waits for messages, it is
    /// not idle).
    var isSubscribed: Bool { subscribed || monitoring }
    /// The connection speaks RESP3 (HELLO 3): pub/sub traffic then comes as `>` pushes only, and a
    /// `*` reply is always an ordinary reply, even while subscribed.
    private var resp3 = false
    /// Unsubscribe confirmations still expected for channels named in UNSUBSCRIBE-family requests,
    /// and UNSUBSCRIBEs without channels still waiting for the confirmation that reports 0 left.
    /// Redis sends these even outside subscribed mode, so they are not matched to requests.
    private var namedUnsubscribesPending = 0
    private var unsubscribeAllPending = 0
    /// Whether the connection ever carried a request (then losing it loses client state).
    private var everUsed = false
    private var metrics: SinkMetrics
    /// The pending check of the oldest batch's age (shared connections with a reply timeout).
    private var replyTimeoutCheck: Scheduled<Void>?
    /// How many reply-timeout checks ran: the clock of the reply timeout (one tick per check period).
    private var replyChecks = 0
    /// Set while the client of a dedicated connection cannot take more bytes: replies and pushes
    /// wait in the backend's socket (and Redis's output buffer limits apply) instead of in memory here.
    private var readPaused = false
    /// The read buffer being parsed (replies are slices of it) and a number identifying it.
    private var currentRead: ByteBuffer?
    private var readID = 0

    /// A dedicated connection for one client.
    init(plan: SinkPlan, dedicatedTo owner: ChainSession, deliversPushes: Bool, resp3: Bool) {
        self.plan = plan
        lifecycle = Lifecycle(handshake: Self.handshake(plan, resp3: resp3), usesTLS: plan.tls != nil)
        self.resp3 = resp3
        eventLoop = owner.eventLoop
        allocator = owner.allocator
        self.owner = owner
        self.deliversPushes = deliversPushes
        isShared = false
        coalesced = allocator.buffer(capacity: 0)
        metrics = SinkMetrics.forSink(plan.name)
    }

    /// A connection shared by the stateless clients of one event loop.
    init(plan: SinkPlan, sharedOn eventLoop: EventLoop, resp3: Bool) {
        self.plan = plan
        lifecycle = Lifecycle(handshake: Self.handshake(plan, resp3: resp3), usesTLS: plan.tls != nil)
        self.resp3 = resp3
        self.eventLoop = eventLoop
        allocator = ByteBufferAllocator()
        deliversPushes = false
        isShared = true
        coalesced = allocator.buffer(capacity: Self.coalescedCapacity)
        metrics = SinkMetrics.forSink(plan.name)
    }

    /// AUTH when the sink has credentials, then HELLO 3 for a connection that speaks RESP3.
    /// A refused AUTH is a failed connect; a refused HELLO 3 (NOAUTH: the backend wants a password
    /// and the sink has none) is the backend's answer to the RESP3 client's requests.
    private static func handshake(_ plan: SinkPlan, resp3: Bool) -> [BackendHandshakeStep] {
        var steps: [BackendHandshakeStep] = []
        if let auth = plan.authCommand { steps.append(.init(name: "AUTH", request: auth, refusal: .failsConnect)) }
        if resp3 {
            steps.append(.init(name: "HELLO 3", request: Array("*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n".utf8),
                               refusal: .answersRequests))
        }
        return steps
    }

    /// Sends a request batch; the responses (one per request, in order) go to `receiver`.
    func send(_ batch: Batch, receiver: ResponseReceiver, route: SinkRoute? = nil) {
        var inBand = RedisReplyPlan.InBand()
        if !isShared {
            inBand = RedisReplyPlan.inBand(batch, mode: &replyMode)
            followProtocol(batch)
        }
        let outOfBand = inBand.outOfBand
        if inBand.subscribes {
            subscribed = true
            for i in 0..<batch.count {
                guard let n = batch.withMessageBytes(i, RedisReplyPlan.unsubscribeConfirmations) else { continue }
                if n > 0 { namedUnsubscribesPending += n } else { unsubscribeAllPending += 1 }
            }
        }
        let entry: Pending
        if outOfBand == nil, var spare = sparePendings.popLast(), isKnownUniquelyReferenced(&spare) {
            spare.reuse(receiver: receiver, count: batch.count)
            entry = spare
        } else {
            entry = Pending(receiver: receiver, count: batch.count, outOfBand: outOfBand)
        }
        entry.route = route
        if isShared {
            entry.expectedReplies = RedisReplyPlan.expectedReplies(batch)
        } else {
            entry.mayWaitIndefinitely = (0..<batch.count).contains {
                batch.withMessageBytes($0, RedisConnectionState.mayWaitIndefinitely)
            }
            entry.monitorAt = inBand.monitorAt
            entry.expectedReplies = inBand.expectedReplies
        }
        let action = lifecycle.requestSubmitted(backoff: plan.health.backingOff())
        if case .failBackingOff(let error, let wait) = action {
            let message = unavailable("connect failed: \(error); next attempt in \(wait) ms")
            metrics.failedBatches(1)
            eventLoop.execute {
                route?.sharedBatchCompleted()
                receiver.receive(.failed(message))
            }
            return
        }
        if plan.replyTimeoutMilliseconds > 0 {
            entry.sentAtCheck = replyChecks
            if !isShared { entry.requests = batch }
            armReplyTimeout()
        }
        switch action {
        case .write(let link):
            let channel = link.channel
            pending.append(entry)
            if isShared {
                coalesce(batch, into: channel)
                scheduleFlush(channel)
            } else {
                batch.write(to: channel)
                channel.flush()
            }
        case .wait:
            pending.append(entry)
            waitingForConnection.append(batch)
        case .connect:
            pending.append(entry)
            waitingForConnection.append(batch)
            connect()
        default:  // .failClosed
            eventLoop.execute { receiver.receive(.failed(self.unavailable("connection closed"))) }
            return
        }
        everUsed = true
        // Out-of-band requests (SUBSCRIBE…) are answered by their confirmations, so their batch
        // completes at once, but only on an established connection: until then it must stay
        // pending, so that a failed connect (or a refused AUTH) answers it with the error.
        if !isShared, case .write = action { completeSilentHead(deferred: true) }
    }

    /// Requests up to this size are copied into `coalesced`; larger ones go out as their own slice
    /// (copying them would cost more than the write it saves).
    static let coalesceLimit = 4096
    static let coalescedCapacity = 16384

    /// Adds a batch's bytes (unchanged) to this tick's write, keeping request order.
    private func coalesce(_ batch: Batch, into channel: Channel) {
        if let whole = batch.contiguous {
            append(whole, channel)
            return
        }
        for i in 0..<batch.count {
            append(batch.messages[i], channel)
        }
    }

    @inline(__always)
    private func append(_ bytes: ByteBuffer, _ channel: Channel) {
        if bytes.readableBytes <= Self.coalesceLimit {
            // Everything before was handed over; by now the socket normally took it, so this
            // reuses the storage (it copies only if the channel still holds unsent bytes).
            if coalesced.readableBytes == 0, coalesced.writerIndex > 0 { coalesced.clear() }
            var bytes = bytes
            coalesced.writeBuffer(&bytes)
            return
        }
        handOverCoalesced(channel)
        channel.write(bytes, promise: nil)
    }

    /// Queues what was coalesced so far on the channel (before a large request, or at the flush).
    private func handOverCoalesced(_ channel: Channel) {
        guard coalesced.readableBytes > 0 else { return }
        channel.write(coalesced, promise: nil)
        // Marked consumed but not cleared yet: clearing now, while the channel still holds the
        // bytes, would allocate new storage. `append` clears it when the next tick starts.
        coalesced.moveReaderIndex(to: coalesced.writerIndex)
    }

    /// Requests not handed to the channel yet belong to batches that are failing with the connection.
    private func dropCoalesced() {
        coalesced.moveReaderIndex(to: coalesced.writerIndex)
    }

    /// Flushes once per event-loop tick, after every client read of that tick added its requests.
    private func scheduleFlush(_ channel: Channel) {
        guard !flushScheduled else { return }
        flushScheduled = true
        eventLoop.execute {
            self.flushScheduled = false
            self.handOverCoalesced(channel)
            channel.flush()
        }
    }

    /// Closed for good (its client went away); replies still in a read are not wanted.
    var isClosed: Bool {
        if case .closed = lifecycle.state { return true }
        return false
    }

    func close() {
        let action = lifecycle.close()
        replyTimeoutCheck?.cancel()
        replyTimeoutCheck = nil
        dropCoalesced()
        // The state is closed first: closing fires channelInactive at once, and a handshake that
        // looked lost would count as a failed connect and back the whole sink off.
        if case .closeChannel(let link) = action { link.channel.close(promise: nil) }
        failAll("client connection closed")
    }

    // MARK: connection

    private func connect() {
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(.milliseconds(plan.connectTimeoutMilliseconds))
            .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { [unowned self] channel in
                do {
                    if let tls = plan.tls {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverName))
                    }
                    try channel.pipeline.syncOperations.addHandler(RedisSinkHandler(connection: self, maxFrameBytes: plan.maxFrameBytes))
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
        bootstrap.connect(host: plan.host, port: plan.port).whenComplete { [self] result in
            switch result {
            case .success(let channel):
                perform(lifecycle.connectSucceeded(BackendChannel(channel)))
            case .failure(let error):
                perform(lifecycle.connectFailed(ConnectFailureDescription.describe(error)))
            }
        }
    }

    /// Carries out what the lifecycle decided about connecting, the handshake and losing the channel.
    private func perform(_ action: Lifecycle.Action) {
        switch action {
        case .none, .write, .wait, .connect, .failBackingOff, .failClosed:
            break  // answers to a request being sent (see `send`)
        case .closeChannel(let link):
            link.channel.close(promise: nil)
        case .awaitTLS(let link):
            // Nothing is sent before the TLS handshake completed (tlsEstablished); it gets the
            // connect timeout too (a reply timeout of 0 would leave it unbounded). Strong captures,
            // held for the timeout at most: a weak reference would give this object (and the
            // channel) a side table, slowing every retain of it for good.
            let timeout = plan.connectTimeoutMilliseconds
            eventLoop.scheduleTask(in: .milliseconds(timeout)) { [self] in
                perform(lifecycle.tlsTimedOut(link, milliseconds: timeout))
            }
        case .sendHandshake(let link):
            // Requests wait (in waitingForConnection) until the backend accepted every step.
            let steps = lifecycle.handshake
            var bytes = link.channel.allocator.buffer(capacity: steps.reduce(0) { $0 + $1.request.count })
            for step in steps { bytes.writeBytes(step.request) }
            link.channel.writeAndFlush(bytes, promise: nil)
        case .established(let link):
            established(link.channel)
        case .connectFailed(let channel, let reason, let level):
            channel?.channel.close(promise: nil)
            connectFailed(reason, level: level)
        case .answerWithRefusal(let link, let message):
            // Not a broken backend but its answer to a RESP3 client (NOAUTH: a password is required
            // and the sink has none, so clients must authenticate themselves): every waiting request
            // gets that answer, as it would have directly, and the backend is not backed off.
            link.channel.close(promise: nil)
            HostLog.sinks.debug("sink '\(plan.name)' (\(plan.address)): HELLO 3 refused: \(message)")
            abandonConnecting()
            answerAll(withError: message)
        case .lost(let reason):
            let why = reason.map { " (\($0))" } ?? ""
            if !pending.isEmpty || everUsed {
                HostLog.sinks.info("sink '\(plan.name)' (\(plan.address)): backend closed the connection\(why)")
            }
            lost(failure: "backend closed the connection\(why)", clientReason: "backend '\(plan.name)' closed the connection\(why)")
        case .tlsError(let reason, let beforeFirstReply):
            HostLog.sinks.error("sink '\(plan.name)' (\(plan.address)): TLS error: \(reason)")
            if beforeFirstReply {
                // Refused before it ever answered (TLS 1.3 and a missing client certificate, with no
                // AUTH step to notice it in): a failed connect, so the sink is backed off.
                metrics.connectFailed()
                _ = plan.health.connectFailed("TLS handshake failed: \(reason)")
            }
        case .replyTimedOut(let link):
            let kind = isShared ? "shared" : "dedicated"
            HostLog.sinks.warning("sink '\(plan.name)' (\(plan.address)): no reply within \(plan.replyTimeoutMilliseconds) ms; closing the \(kind) connection")
            lost(failure: "no reply within \(plan.replyTimeoutMilliseconds) ms",
                 clientReason: "backend '\(plan.name)' did not reply within \(plan.replyTimeoutMilliseconds) ms")
            link.channel.close(promise: nil)
        case .reset(let link, let what):
            metrics.outOfStep()
            let kind = isShared ? "shared" : "dedicated"
            HostLog.sinks.error("sink '\(plan.name)' (\(plan.address)): \(what): the backend is out of step with the requests; resetting the \(kind) connection and failing the \(pending.count) batch(es) waiting on it")
            lost(failure: "backend reply out of step with the requests (\(what)); connection reset",
                 clientReason: "backend '\(plan.name)' sent a reply out of step with the requests")
            link.channel.close(promise: nil)
        }
    }

    /// The TLS handshake of a new channel completed.
    func tlsEstablished(_ channel: Channel) {
        perform(lifecycle.tlsCompleted(BackendChannel(channel)))
    }

    /// An error on a channel (from NIO or TLS): a TLS handshake that fails is a failed connect, with
    /// TLS's reason (an unknown CA, a name mismatch…) rather than just a closed connection.
    func channelError(_ error: Error, on channel: Channel) {
        guard let reason = TLSErrors.reason(of: error) else {
            HostLog.sinks.debug("sink '\(plan.name)' (\(plan.address)): \(error)")
            return
        }
        perform(lifecycle.tlsError(BackendChannel(channel), reason: reason))
    }

    /// Whether replies read from `channel` are this connection's: a channel given up (reply
    /// timeout, a TLS error) can still deliver data while TLS closes it, and those bytes must not
    /// be matched to the requests of the channel that replaced it.
    func isCurrent(_ channel: Channel) -> Bool {
        lifecycle.isCurrent(BackendChannel(channel))
    }

    /// The connection is ready for requests: the ones that waited for it go out first.
    private func established(_ channel: Channel) {
        plan.health.connected()
        if readPaused { channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in } }
        for batch in waitingForConnection { batch.write(to: channel) }
        waitingForConnection.removeAll()
        channel.flush()
        if !isShared { completeSilentHead(deferred: true) }
    }

    /// Connecting failed (TCP, TLS, or the backend refused the credentials): the backend is backed
    /// off, and the waiting batches fail with the reason.
    private func connectFailed(_ reason: String, level: Logger.Level) {
        metrics.connectFailed()
        let backoff = plan.health.connectFailed(reason)
        HostLog.sinks.log(level: level, "sink '\(plan.name)' (\(plan.address)): connect failed: \(reason); next attempt in \(backoff) ms at the earliest")
        abandonConnecting()
        failAll("connect failed: \(reason)")
    }

    /// From a connect that did not succeed: what waited for it is not sent, and the connection
    /// holds no state (the pending batches are answered by the caller).
    private func abandonConnecting() {
        waitingForConnection.removeAll()
        everUsed = false
        forgetPubSubState()
    }

    /// A connection that never got established holds no subscriptions, whatever was sent for it.
    private func forgetPubSubState() {
        subscribed = false
        namedUnsubscribesPending = 0
        unsubscribeAllPending = 0
        monitoring = false
        replyMode = RedisReplyMode()
    }

    /// The backend's reply to the current handshake step of a new channel: accepted unless it is
    /// an error reply, whose text (the backend's own words: WRONGPASS…, or no password configured
    /// there; they never echo it) is the refusal.
    private func handshakeReplied(_ reply: ByteBuffer) {
        var refusal: String?
        if reply.readableBytes > 0, reply.getInteger(at: reply.readerIndex, as: UInt8.self) == UInt8(ascii: "-") {
            refusal = String(decoding: reply.readableBytesView.dropFirst().prefix { $0 != 13 && $0 != 10 }, as: UTF8.self)
        }
        perform(lifecycle.handshakeReplied(refusal: refusal))
    }

    /// Stops or resumes reading from the backend (a dedicated connection whose client is not
    /// reading its replies).
    func setReadPaused(_ paused: Bool) {
        guard paused != readPaused else { return }
        readPaused = paused
        guard let channel = lifecycle.readyLink?.channel else { return }
        channel.setOption(ChannelOptions.autoRead, value: !paused).whenFailure { _ in }
        if !paused { channel.read() }
    }

    // MARK: reply timeout

    /// The check runs every quarter of the timeout (at least every 10 ms) while batches are in flight.
    private var replyCheckPeriodMilliseconds: Int64 { max(plan.replyTimeoutMilliseconds / 4, 10) }

    private func armReplyTimeout() {
        guard replyTimeoutCheck == nil else { return }
        // A strong capture (close() cancels the check): a weak one would give this connection a
        // side table, putting every retain and release of it on the runtime's slow path.
        replyTimeoutCheck = eventLoop.scheduleTask(in: .milliseconds(replyCheckPeriodMilliseconds)) { [self] in
            checkReplyTimeout()
        }
    }

    /// The oldest batch has waited longer than the reply timeout: the backend is stuck (or the
    /// connection half-open). Every client on a shared connection would wait with it, so the
    /// connection is closed, its batches fail, and the next request reconnects. A dedicated
    /// connection is exempt while it may legitimately wait (blocking command, subscribed); when it
    /// times out, the client's server-side state is gone with it, so the client is closed too.
    ///
    /// Ages are counted in check periods: a batch handed over after check k is at least
    /// (n - k - 1) periods old at check n, so it times out between the limit and one period later.
    private func checkReplyTimeout() {
        replyTimeoutCheck = nil
        replyChecks &+= 1
        let periods = max(plan.replyTimeoutMilliseconds / replyCheckPeriodMilliseconds, 1)
        guard let head = pending.first else { return }
        let overdue = Int64(replyChecks &- head.sentAtCheck) > periods
        switch lifecycle.state {
        case .securing, .handshaking:
            guard overdue else {
                armReplyTimeout()
                return
            }
        case .ready:
            guard overdue, !subscribed, !mayWait(head) else {
                armReplyTimeout()
                return
            }
        case .idle, .connecting, .closed:
            return
        }
        perform(lifecycle.replyOverdue(timeoutMilliseconds: plan.replyTimeoutMilliseconds))
    }

    private func mayWait(_ entry: Pending) -> Bool {
        guard let requests = entry.requests else { return false }
        return (0..<requests.count).contains { requests.withMessageBytes($0, RedisConnectionState.mayWaitIndefinitely) }
    }

    /// Called by the handler when the backend connection went away.
    func connectionClosed(_ channel: Channel) {
        // A channel this connection already gave up (reply timeout) may close after a new one is up:
        // the lifecycle ignores it.
        perform(lifecycle.channelClosed(BackendChannel(channel)))
    }

    /// The backend connection is gone (closed by the backend, or given up): back to idle with no
    /// pub/sub state, waiting batches fail, and the client of a dedicated connection that carried
    /// requests is closed too — its server-side state went with the connection — after its error
    /// replies (failAll delivers them in a later turn).
    private func lost(failure: String, clientReason: String) {
        dropCoalesced()
        forgetPubSubState()
        let hadState = everUsed
        everUsed = false
        failAll(failure)
        if hadState, !isShared {
            eventLoop.execute { [weak owner] in owner?.backendLost(clientReason) }
        }
    }

    private func unavailable(_ reason: String) -> String {
        "sluice: backend '\(plan.name)' (\(plan.address)) unavailable: \(reason)"
    }

    private func failAll(_ reason: String) {
        guard !pending.isEmpty else { return }
        metrics.failedBatches(pending.count)
        let message = unavailable(reason)
        settleAll { _ in .failed(message) }
    }

    /// Answers every pending batch with the same error reply for each request (the backend's).
    private func answerAll(withError message: String) {
        settleAll { [allocator] entry in .responses(Batch.errors(message, count: entry.count, allocator: allocator)) }
    }

    /// Takes every pending batch off the connection and, in a later turn, gives each its outcome.
    private func settleAll(_ outcome: @escaping (Pending) -> ChainOutcome) {
        guard !pending.isEmpty else { return }
        let settled = pending
        pending.removeAll()
        eventLoop.execute {
            for entry in settled {
                entry.route?.sharedBatchCompleted()
                entry.receiver.receive(outcome(entry))
            }
        }
    }

    // MARK: replies

    /// Starts parsing replies out of `buffer` (the handler's accumulated read).
    func beginRead(_ buffer: ByteBuffer) {
        currentRead = buffer
        readID &+= 1
    }

    func endRead() {
        currentRead = nil
    }

    /// Handles one complete reply that starts at reader index `start` of the current read buffer.
    /// Returns false when the connection was reset (a reply out of step): the rest of the read is
    /// not to be parsed.
    @discardableResult
    func handleReply(_ frame: ByteBuffer, start: Int) -> Bool {
        if case .handshake = lifecycle.frameArrived() {
            handshakeReplied(frame)
            return true
        }
        // A shared connection carries no pub/sub and no RESET (they need a connection of their own):
        // only a RESP3 push can arrive unasked, and its first byte tells.
        // (Read once on shared connections: the type check below needs it too.)
        let sharedFirst = isShared ? frame.getInteger(at: frame.readerIndex, as: UInt8.self) : nil
        if isShared ? sharedFirst == UInt8(ascii: ">") : isUnsolicited(frame) {
            // Its bytes lie between the replies around it: they are no longer one slice.
            pending.first?.contiguousStart = nil
            guard deliversPushes else { return true }
            if let head = pending.first, head.hasReplies, head.outOfBand == nil, !head.mayWaitIndefinitely {
                // Mid-batch: the replies before it reach the client only with their whole batch, so
                // the push waits for that batch instead of overtaking them (a client-side cache
                // would otherwise apply an invalidation before the stale value it invalidates).
                // Before the batch's first reply it goes at once, and so do pushes among the replies
                // of a batch with pub/sub requests: their confirmations stand in for replies there.
                head.heldPushes.append(frame)
            } else {
                owner?.deliverPush(frame)
            }
            return true
        }
        guard let head = pending.first else {
            outOfStep("a reply arrived with no request waiting for one")
            return false
        }
        let index = head.responses.count
        if head.expectedReplies != 0, index < 32 {
            let expected = (head.expectedReplies >> UInt64(2 * index)) & 3
            if expected != RedisReplyPlan.anyReply,
               let first = sharedFirst ?? frame.getInteger(at: frame.readerIndex, as: UInt8.self),
               !RedisReplyPlan.canAnswer(expected, first: first) {
                let kind = expected == RedisReplyPlan.bulkReply ? "a bulk string" : "an integer"
                outOfStep("a reply starting with '\(RESPLine.printable(first))' arrived for a request answered with \(kind)")
                return false
            }
        }
        if head.responses.isEmpty {
            head.contiguousStart = start
            head.readID = readID
        } else if head.readID != readID {
            head.contiguousStart = nil
        }
        head.responses.append(frame)
        head.hasReplies = true
        if let monitorAt = head.monitorAt, monitorAt == index,
           frame.getInteger(at: frame.readerIndex, as: UInt8.self) == UInt8(ascii: "+") {
            monitoring = true
        }
        // Fills the out-of-band slots (SUBSCRIBE…) that follow this reply; that may complete and
        // remove `head` itself, which must then not be completed a second time. (Only dedicated
        // connections carry out-of-band requests.)
        if !isShared {
            completeSilentHead()
            guard pending.first === head else { return true }
        }
        if head.responses.count == head.count {
            pending.removeFirst()
            head.route?.sharedBatchCompleted()
            var contiguous: ByteBuffer?
            if head.outOfBand == nil, let s = head.contiguousStart, head.readID == readID {
                contiguous = currentRead?.getSlice(at: s, length: start + frame.readableBytes - s)
            }
            head.receiver.receive(.responses(Batch(kind: Batch.responses, protocolID: Batch.redis,
                                                   messages: head.responses, contiguous: contiguous)))
            if !isShared {
                deliverHeldPushes(of: head)
                completeSilentHead()
            } else {
                if sparePendings.count < Self.maxSparePendings {
                    head.park()
                    sparePendings.append(head)
                }
            }
        }
        return true
    }

    /// Fills in empty responses for out-of-band requests at the head, completing batches they finish.
    /// Inside `send` the completion is deferred (a receiver is never called from inside send); while
    /// replies are being read it is immediate, so a batch's replies reach the client before a push
    /// that the backend sent after them (a SUBSCRIBE confirmation after a GET's reply).
    private func completeSilentHead(deferred: Bool = false) {
        while let head = pending.first, let flags = head.outOfBand {
            while head.responses.count < head.count, flags[head.responses.count] {
                head.responses.append(allocator.buffer(capacity: 0))
            }
            guard head.responses.count == head.count else { return }
            pending.removeFirst()
            let batch = Batch(kind: Batch.responses, protocolID: Batch.redis, messages: head.responses)
            if deferred {
                eventLoop.execute {
                    head.receiver.receive(.responses(batch))
                    self.deliverHeldPushes(of: head)
                }
            } else {
                head.receiver.receive(.responses(batch))
                deliverHeldPushes(of: head)
            }
        }
    }

    private func deliverHeldPushes(of entry: Pending) {
        guard !entry.heldPushes.isEmpty else { return }
        let pushes = entry.heldPushes
        entry.heldPushes = []
        for push in pushes { owner?.deliverPush(push, afterReplies: true) }
    }

    /// HELLO 3 / HELLO 2 / RESET switch the protocol of a dedicated connection.
    private func followProtocol(_ batch: Batch) {
        for i in 0..<batch.count {
            batch.withMessageBytes(i) { bytes in
                guard let name = RedisConnectionState.commandName(bytes) else { return }
                if RedisReplyPlan.equalsIgnoringCase(name, "reset") {
                    resp3 = false
                } else if RedisReplyPlan.equalsIgnoringCase(name, "hello") {
                    RESPCommandReader.forEachArgument(bytes) { index, start, length in
                        guard index == 1 else { return true }  // the protocol version follows the name
                        if length == 1, bytes[start] == UInt8(ascii: "3") { resp3 = true }
                        if length == 1, bytes[start] == UInt8(ascii: "2") { resp3 = false }
                        return false
                    }
                }
            }
        }
    }

    private func isUnsolicited(_ frame: ByteBuffer) -> Bool {
        frame.withUnsafeReadableBytes { bytes in
            guard let first = bytes.first else { return false }
            let expectingConfirmations = namedUnsubscribesPending > 0 || unsubscribeAllPending > 0
            if first == UInt8(ascii: ">") {
                if expectingConfirmations { noteConfirmation(bytes) }
                return true
            }
            let isReset = first == UInt8(ascii: "+") && bytes.count == 8
                && RedisReplyPlan.equalsIgnoringCase(UnsafeRawBufferPointer(rebasing: bytes[1..<6]), "reset")
            if monitoring, !isReset { return true }
            if isReset {
                // RESET ended MONITOR and subscribed mode (and whatever confirmations were still due).
                monitoring = false
                subscribed = false
                namedUnsubscribesPending = 0
                unsubscribeAllPending = 0
                return false
            }
            guard subscribed || expectingConfirmations, !resp3, first == UInt8(ascii: "*") else { return false }
            return noteConfirmation(bytes)
        }
    }

    /// Whether `bytes` is a pub/sub reply; an unsubscribe confirmation settles one expected
    /// confirmation and tells whether subscribed mode goes on.
    @discardableResult
    private func noteConfirmation(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var remaining: Int?
        let isPubSub = RedisReplyPlan.isPubSubReply(bytes, remainingSubscriptions: &remaining)
        if let remaining {
            if namedUnsubscribesPending > 0 {
                namedUnsubscribesPending -= 1
            } else if remaining == 0, unsubscribeAllPending > 0 {
                unsubscribeAllPending -= 1
            }
            subscribed = remaining > 0
        }
        return isPubSub
    }

    /// The backend sent a reply that cannot answer the request waiting for it (or none waits): it
    /// is out of step with the requests (a bug, a hostile server, bytes lost or added), and every
    /// later reply on the connection would go to the wrong request, on a shared connection to
    /// another client. The connection is reset instead: what was waiting on it fails with the
    /// reason, and the next request opens a new one (a dedicated connection's client is closed, its
    /// server-side state being gone).
    private func outOfStep(_ what: String) {
        perform(lifecycle.outOfStep(what))
    }

    func protocolError(_ message: String) {
        HostLog.sinks.error("sink '\(plan.name)' (\(plan.address)): malformed reply: \(message); closing")
        perform(lifecycle.malformedReply(message))
    }
}
