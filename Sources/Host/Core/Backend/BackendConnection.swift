import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// A connection to one backend, whatever its protocol `P`: connects on first use (TCP, TLS, the
/// protocol's handshake steps, as `BackendConnectionStateMachine` decides), backs the sink off when
/// connects fail, writes requests in order (the original bytes when nothing changed them), gives up
/// a backend that stops replying (`reply_timeout_ms`), and hands every frame read to the protocol's
/// pairing (`P.Pairing`), which matches it with its request or delivers it as unsolicited.
///
/// Either *shared* by the stateless clients of one event loop (`owner == nil`: requests of several
/// clients go out in one write, flushed once per event-loop tick), or *dedicated* to one client
/// (`owner` set: the client's server-side state lives on it, so losing it closes the client).
/// Lives on one event loop only.
final class BackendConnection<P: BackendProtocol> {
    private typealias Lifecycle = BackendConnectionStateMachine<BackendChannel>

    let plan: SinkPlan
    let eventLoop: EventLoop
    let allocator: ByteBufferAllocator
    /// Pairs replies with requests, per the protocol's rules (the requests in flight live there).
    let pairing: P.Pairing
    /// The client a dedicated connection belongs to; nil when shared.
    private weak var owner: ChainSession?
    private let isShared: Bool
    private var flushScheduled = false
    /// Shared connections: the small requests of this event-loop tick, copied back to back so the
    /// tick's flush is one plain write instead of one NIO write (and one iovec) per client batch.
    /// Reused from tick to tick once the socket has taken it.
    private var coalesced: ByteBuffer
    /// Connect, TLS, the handshake (replies checked there, never forwarded), ready, lost, closed.
    private var lifecycle: Lifecycle
    private var waitingForConnection: [Batch] = []
    /// Whether the connection ever carried a request (then losing it loses client state).
    private var everUsed = false
    private var metrics: SinkMetrics
    /// The pending check of the oldest batch's age (shared connections with a reply timeout).
    private var replyTimeoutCheck: Scheduled<Void>?
    /// How many reply-timeout checks ran: the clock of the reply timeout (one tick per check period).
    private var replyChecks = 0
    /// Set while the client of a dedicated connection cannot take more bytes: replies and pushes
    /// wait in the backend's socket (and the backend's output buffer limits apply) instead of in
    /// memory here.
    private var readPaused = false

    /// A connection whose new channels send `handshake` first; dedicated to `owner`, or shared (nil).
    init(plan: SinkPlan, owner: ChainSession?, eventLoop: EventLoop, allocator: ByteBufferAllocator,
         handshake: [BackendHandshakeStep], pairing: P.Pairing) {
        self.plan = plan
        self.owner = owner
        isShared = owner == nil
        self.eventLoop = eventLoop
        self.allocator = allocator
        self.pairing = pairing
        lifecycle = Lifecycle(handshake: handshake, usesTLS: plan.tls != nil, pipelinesHandshake: P.pipelinesHandshake)
        coalesced = allocator.buffer(capacity: isShared ? Self.coalescedCapacity : 0)
        metrics = SinkMetrics.forSink(plan.name)
    }

    /// Sends a request batch; the responses (one per request, in order) go to `receiver`.
    func send(_ batch: Batch, receiver: ResponseReceiver, route: P.Pairing.Route? = nil) {
        let sentAtCheck = plan.replyTimeoutMilliseconds > 0 ? replyChecks : nil
        let action = lifecycle.requestSubmitted(backoff: plan.health.backingOff())
        if isShared, case .write(let link) = action {
            // The usual case: into this turn's write, where the pairing may put the request itself.
            let channel = link.channel
            startCoalescing()
            let (entry, appended) = pairing.entry(for: batch, receiver: receiver, route: route, sentAtCheck: sentAtCheck,
                                                  appendingTo: &coalesced)
            if sentAtCheck != nil { armReplyTimeout() }
            pairing.add(entry)
            if !appended { coalesce(batch, into: channel) }
            scheduleFlush(channel)
            everUsed = true
            pairing.requestsWritten()
            return
        }
        let entry = pairing.entry(for: batch, receiver: receiver, route: route, sentAtCheck: sentAtCheck)
        if case .failBackingOff(let error, let wait) = action {
            let message = unavailable("connect failed: \(error); next attempt in \(wait) ms")
            metrics.failedBatches(1)
            eventLoop.execute { self.pairing.failUnsent(entry, message, completesRoute: true) }
            return
        }
        if plan.replyTimeoutMilliseconds > 0 { armReplyTimeout() }
        switch action {
        case .write(let link):  // a dedicated connection (shared ones wrote above)
            let channel = link.channel
            pairing.add(entry)
            batch.write(to: channel)
            channel.flush()
        case .wait:
            pairing.add(entry)
            waitingForConnection.append(batch)
        case .connect:
            pairing.add(entry)
            waitingForConnection.append(batch)
            connect()
        case .failBackingOff, .failClosed:  // failBackingOff: answered above
            eventLoop.execute { self.pairing.failUnsent(entry, self.unavailable("connection closed"), completesRoute: false) }
            return
        }
        everUsed = true
        if case .write = action { pairing.requestsWritten() }
    }

    /// Sends a request of one message, with no batch in the usual case: on a shared connection
    /// whose channel is ready, the pairing appends it to this turn's write itself
    /// (`entry(forRequest:)`). Otherwise (a dedicated connection, one not ready, a request the
    /// pairing does not take so) `makeBatch(request)` goes as `send(_:receiver:route:)` sends it,
    /// and is returned (the caller may reuse it once nothing else holds it); nil: no batch was made.
    @discardableResult
    func send(request: ByteBuffer, receiver: ResponseReceiver, batch makeBatch: (ByteBuffer) -> Batch) -> Batch? {
        if isShared, lifecycle.isReady {
            let sentAtCheck = plan.replyTimeoutMilliseconds > 0 ? replyChecks : nil
            startCoalescing()
            if let entry = pairing.entry(forRequest: request, receiver: receiver, sentAtCheck: sentAtCheck,
                                         appendingTo: &coalesced) {
                if sentAtCheck != nil { armReplyTimeout() }
                pairing.add(entry)
                // The channel is looked at only for the turn's first request (its flush).
                if !flushScheduled, let link = lifecycle.readyLink { scheduleFlush(link.channel) }
                everUsed = true
                pairing.requestsWritten()
                return nil
            }
        }
        let batch = makeBatch(request)
        send(batch, receiver: receiver)
        return batch
    }

    // MARK: coalesced writes

    /// Requests up to this size are copied into `coalesced`; larger ones go out as their own slice
    /// (copying them would cost more than the write it saves).
    static var coalesceLimit: Int { 4096 }
    static var coalescedCapacity: Int { 16384 }

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
            startCoalescing()
            var bytes = bytes
            coalesced.writeBuffer(&bytes)
            return
        }
        handOverCoalesced(channel)
        channel.write(bytes, promise: nil)
    }

    /// Makes `coalesced` ready for more requests: when everything before was handed over (by now
    /// the socket normally took it), its storage is reused (it copies only if the channel still
    /// holds unsent bytes).
    @inline(__always)
    private func startCoalescing() {
        if coalesced.readableBytes == 0, coalesced.writerIndex > 0 { coalesced.clear() }
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

    /// Whether the last handshake was refused by a step whose refusal answers the requests (and
    /// nothing connected since): a USE of a keyspace that does not exist, a client's own
    /// credentials refused. Not after a lost channel, a failed connect or a reply timeout.
    var handshakeRefused: Bool { lifecycle.state == .refused }

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
                    try channel.pipeline.syncOperations.addHandler(
                        P.channelHandler(for: self, maxFrameBytes: plan.maxFrameBytes))
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
        case .none:
            break
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
        case .sendHandshake(let link) where !lifecycle.pipelinesHandshake:
            link.channel.writeAndFlush(link.channel.allocator.buffer(bytes: lifecycle.handshake[0].request), promise: nil)
        case .sendHandshakeRequest(let link, let request):
            link.channel.writeAndFlush(link.channel.allocator.buffer(bytes: request), promise: nil)
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
            // Not a broken backend but its answer to the client's requests (Redis: NOAUTH to a
            // RESP3 client's HELLO 3, a password is required and the sink has none, so clients must
            // authenticate themselves): every waiting request gets that answer, as it would have
            // directly, and the backend is not backed off.
            link.channel.close(promise: nil)
            HostLog.sinks.debug("sink '\(plan.name)' (\(plan.address)): handshake refused: \(message)")
            abandonConnecting()
            pairing.settleAll(on: eventLoop) { [allocator] count in
                .responses(P.errorReplies(message, count: count, allocator: allocator))
            }
        case .lost(let reason):
            let why = reason.map { " (\($0))" } ?? ""
            if pairing.count > 0 || everUsed {
                HostLog.sinks.info("sink '\(plan.name)' (\(plan.address)): backend closed the connection\(why)")
            }
            lost(failure: "backend closed the connection\(why)", clientReason: "backend '\(plan.name)' closed the connection\(why)")
        case .tlsError(let reason, let beforeFirstReply):
            HostLog.sinks.error("sink '\(plan.name)' (\(plan.address)): TLS error: \(reason)")
            if beforeFirstReply {
                // Refused before it ever answered (TLS 1.3 and a missing client certificate, with no
                // handshake step to notice it in): a failed connect, so the sink is backed off.
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
            // A reply out of step with the requests (a bug, a hostile server, bytes lost or added):
            // every later reply on the connection would go to the wrong request, on a shared
            // connection to another client. What was waiting fails with the reason, and the next
            // request opens a new connection.
            metrics.outOfStep()
            let kind = isShared ? "shared" : "dedicated"
            HostLog.sinks.error("sink '\(plan.name)' (\(plan.address)): \(what): the backend is out of step with the requests; resetting the \(kind) connection and failing the \(pairing.count) batch(es) waiting on it")
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
        pairing.requestsWritten()
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
        pairing.connectionLost()
    }

    /// The backend's reply to the current handshake step of a new channel.
    private func handshakeReplied(_ reply: ByteBuffer, step: Int) {
        guard let channel = lifecycle.readyOrHandshakingLink?.channel else { return }
        perform(lifecycle.handshakeReplied(P.handshakeVerdict(reply, step: step, of: lifecycle.handshake, channel: channel)))
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
    /// connection is closed, its batches fail, and the next request reconnects. A batch that may
    /// legitimately wait (a blocking command, a subscribed connection: the pairing knows) is
    /// exempt; when a dedicated connection times out, the client's server-side state is gone with
    /// it, so the client is closed too.
    ///
    /// Ages are counted in check periods: a batch handed over after check k is at least
    /// (n - k - 1) periods old at check n, so it times out between the limit and one period later.
    private func checkReplyTimeout() {
        replyTimeoutCheck = nil
        replyChecks &+= 1
        let periods = max(plan.replyTimeoutMilliseconds / replyCheckPeriodMilliseconds, 1)
        guard let sentAtCheck = pairing.oldestSentAtCheck else { return }
        let overdue = Int64(replyChecks &- sentAtCheck) > periods
        switch lifecycle.state {
        case .securing, .handshaking:
            guard overdue else {
                armReplyTimeout()
                return
            }
        case .ready:
            guard overdue, !pairing.oldestMayWaitIndefinitely() else {
                armReplyTimeout()
                return
            }
            // A protocol whose replies pair by stream id fails the late requests alone.
            if let failed = pairing.failOverdue(
                sentAtOrBefore: replyChecks &- Int(periods) &- 1,
                message: "sluice: backend '\(plan.name)' (\(plan.address)): no reply to this request within \(plan.replyTimeoutMilliseconds) ms") {
                metrics.failedBatches(failed)
                HostLog.sinks.warning("sink '\(plan.name)' (\(plan.address)): \(failed) request(s) got no reply within \(plan.replyTimeoutMilliseconds) ms; failed alone, the connection keeps serving the others")
                if pairing.oldestSentAtCheck != nil { armReplyTimeout() }
                return
            }
        case .idle, .refused, .connecting, .closed:
            return
        }
        perform(lifecycle.replyOverdue(timeoutMilliseconds: plan.replyTimeoutMilliseconds))
    }

    /// Called by the handler when the backend connection went away.
    func connectionClosed(_ channel: Channel) {
        // A channel this connection already gave up (reply timeout) may close after a new one is up:
        // the lifecycle ignores it.
        perform(lifecycle.channelClosed(BackendChannel(channel)))
    }

    /// The backend connection is gone (closed by the backend, or given up): back to idle with no
    /// server-side state, waiting batches fail, and the client of a dedicated connection that
    /// carried requests is closed too — its server-side state went with the connection — after its
    /// error replies (failAll delivers them in a later turn).
    private func lost(failure: String, clientReason: String) {
        dropCoalesced()
        pairing.connectionLost()
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
        guard pairing.count > 0 else { return }
        metrics.failedBatches(pairing.count)
        let message = unavailable(reason)
        pairing.settleAll(on: eventLoop) { _ in .failed(message) }
    }

    // MARK: replies

    /// Starts parsing replies out of `buffer` (the handler's accumulated read).
    @inline(__always)
    func beginRead(_ buffer: ByteBuffer) {
        pairing.beginRead(buffer)
    }

    @inline(__always)
    func endRead() {
        pairing.endRead()
    }

    /// Handles one complete frame that starts at reader index `start` of the current read buffer.
    /// Returns false when the connection was reset (a reply out of step): the rest of the read is
    /// not to be parsed.
    @discardableResult
    func handleReply(_ frame: ByteBuffer, start: Int) -> Bool {
        if case .handshake(let step) = lifecycle.frameArrived() {
            handshakeReplied(frame, step: step)
            return true
        }
        switch pairing.frameArrived(frame, start: start) {
        case .accepted:
            return true
        case .outOfStep(let what):
            perform(lifecycle.outOfStep(what))
            return false
        }
    }

    func protocolError(_ message: String) {
        HostLog.sinks.error("sink '\(plan.name)' (\(plan.address)): malformed reply: \(message); closing")
        perform(lifecycle.malformedReply(message))
    }
}
