import Logging
import NIOCore
import NIOTLS

/// One client connection of a Redis source: splits the byte stream into requests (a batch per
/// read), runs each batch through the source's chain, and writes the responses back in order.
/// What it reads and holds is bounded as `ClientLimits` says: `ClientFlowControl` decides when
/// reading pauses and when queued replies close the client, `RequestBufferBudget` bounds the request
/// bytes of all the source's clients, and `CompletionDeadline` closes a client that does not finish
/// a request (or its TLS handshake) in time.
final class RedisSourceHandler: ChannelInboundHandler, RequestBufferBudget.Waiter {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// The configuration generation this client runs on, its plan and the source's chain in it;
    /// all three change together when the client moves to a newer generation (hot reload).
    private var generation: ConfigGeneration
    private var plan: RuntimePlan
    private var chainIndex: Int
    /// The newest generation as this client's event loop knows it (compared at safe points).
    private let loopGeneration: LoopGeneration
    /// The source's listen address, its name in every generation.
    private let sourceKey: String
    /// A move to a newer generation is scheduled for the next event-loop turn.
    private var moveScheduled = false
    private let maxClients: Int
    private let metrics: SourceMetrics
    /// The source's client authentication (nil: none), and whether this client passed it.
    private let clientAuth: RedisClientAuth?
    private var authenticated: Bool {
        didSet { scanner.unauthenticated = !authenticated }  // Redis's smaller limits until then
    }
    private var scanner: RESPRequestScanner
    private var buffered: ByteBuffer?
    private var slots = CircularBuffer<ResponseSlot>(initialCapacity: 8)
    /// The last slot written, reused for the next batch if nothing references it any more.
    private var spareSlot: ResponseSlot?
    /// The last request batch, emptied, once the chain was done with it: the next one's object.
    private var spareBatch: Batch?
    private var session: ChainSession?
    private var chain: ChainInstance?
    private var context: ChannelHandlerContext?
    /// Set after QUIT or a protocol error: nothing more is read from this client.
    private var closing = false {
        didSet { if closing { flow.stop() } }
    }
    /// Set by a drain: nothing more is read, but requests already read and held back by the
    /// in-flight budget still run (as the budget allows) before the client is closed.
    private var drainingHeld = false
    /// Set by a drain (see `closeIfFinished`).
    private var drained = false
    /// `closeIfFinished` scheduled the close (a second, full close would undo a half-close).
    private var closeScheduled = false
    /// How long a drained client may keep sending after its last reply and the FIN that followed it.
    static let drainLinger: TimeAmount = .seconds(1)
    private let limits: ClientLimits
    private var flow: ClientFlowControl
    /// Whether NIO reads the socket (autoRead), as last set to follow `flow`.
    private var readingEnabled = true
    private let requestBudget: RequestBufferBudget
    /// The bytes of `buffered` counted in `requestBudget`: its partial request (0 while `buffered`
    /// holds requests the in-flight limit held back; its partial tail counts once they ran).
    private var bufferedCounted = 0
    private let usesTLS: Bool
    private var deadline: CompletionDeadline
    private var deadlineCheck: Scheduled<Void>?
    private var clientAddress = "unknown"
    /// True while `process` runs (a plugin answering synchronously must not start a nested one).
    private var processing = false
    /// `buffered` holds complete requests that the in-flight budget held back (not just a partial one).
    private var heldByBudget = false
    private var heldRunScheduled = false
    /// The server started stopping before this connection became active.
    private var drainRequested = false
    /// Between MULTI and EXEC/DISCARD/RESET, as far as the client's commands tell.
    private var inTransaction = false
    private(set) var allocator = ByteBufferAllocator()

    init(generation: ConfigGeneration, loopGeneration: LoopGeneration, sourceKey: String, chainIndex: Int,
         maxFrameBytes: Int, maxClients: Int, clientAuth: RedisClientAuth? = nil,
         limits: ClientLimits, requestBudget: RequestBufferBudget, usesTLS: Bool, metrics: SourceMetrics) {
        self.generation = generation
        self.plan = generation.plan
        self.chainIndex = chainIndex
        self.loopGeneration = loopGeneration
        self.sourceKey = sourceKey
        self.maxClients = maxClients
        self.metrics = metrics
        self.clientAuth = clientAuth
        self.limits = limits
        self.requestBudget = requestBudget
        self.usesTLS = usesTLS
        flow = ClientFlowControl(limits: limits)
        deadline = CompletionDeadline(timeoutMilliseconds: limits.requestTimeoutMilliseconds)
        authenticated = clientAuth == nil
        scanner = RESPRequestScanner(maxFrameBytes: maxFrameBytes)
        scanner.unauthenticated = clientAuth != nil
    }

    func channelActive(context: ChannelHandlerContext) {
        self.context = context
        allocator = context.channel.allocator
        if drainRequested {
            closing = true
            _ = metrics.connectionOpened()  // balanced by channelInactive
            context.close(promise: nil)
            context.fireChannelActive()
            return
        }
        let address = context.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "unknown"
        clientAddress = address
        if metrics.connectionOpened() > maxClients {
            // Redis's own answer past maxclients, so clients report it the same way. Counted, and
            // logged at debug only: a connection storm must not become a log storm.
            metrics.clientRefused()
            HostLog.sources.debug("refusing client \(address): max_clients (\(maxClients)) reached")
            refuse("ERR max number of clients reached", context: context)
            context.fireChannelActive()
            return
        }
        // A reload switched between accepting and now: start on the newest generation. The one
        // chosen may have ended meanwhile (replaced twice, its configs freed): then on the current.
        let sourceKey = sourceKey
        let preferred = loopGeneration.number > generation.number && loopGeneration.current.sources[sourceKey] != nil
            ? loopGeneration.current : generation
        guard let started = loopGeneration.startSession(preferring: preferred,
                                                        accepts: { $0.sources[sourceKey] != nil }),
              let source = started.sources[sourceKey] else {
            HostLog.sources.info("refusing client \(address): its source \(sourceKey) was removed by a configuration reload")
            refuse("ERR sluice: this listener was removed by a configuration reload", context: context)
            context.fireChannelActive()
            return
        }
        // The session counted on `started` is balanced in channelInactive.
        generation = started
        plan = started.plan
        chainIndex = source.chainIndex
        let session = ChainSession(eventLoop: context.eventLoop, allocator: allocator, plan: plan,
                                   clientAddress: address, mainChain: chainIndex, sourceName: metrics.listen)
        // Strong captures, released by session.close() when the client closes (weak ones would put
        // the handler's reference counting on the slow path for every request).
        session.onPush = { [self] bytes, afterReplies in
            guard let context = self.context else { return }
            // A push that followed replies goes behind the last answered slot still queued (its
            // batch's, when that waits behind an earlier one), never ahead of it; it does not wait
            // for batches still unanswered, which may take as long as they like (BLPOP…).
            if afterReplies, let last = slots.lastIndex(where: { $0.result != nil }) {
                let push = ResponseSlot(owner: self, answer: Batch(kind: Batch.responses, protocolID: Batch.redis,
                                                                   messages: [bytes]), closeAfter: false)
                slots.insert(push, at: slots.index(after: last))
                apply(flow.batchStarted(requests: push.requestCount), context)
                return
            }
            context.writeAndFlush(NIOAny(bytes), promise: nil)
        }
        session.onBackendLost = { [self] reason in
            guard let context = self.context else { return }
            HostLog.sources.info("closing client \(address): \(reason)")
            self.closing = true
            context.close(promise: nil)
        }
        self.session = session
        if usesTLS, deadline.isActive {
            deadline.tlsHandshakeBegan(at: .now())
            armDeadlineCheck(context)
        }
        do {
            chain = try session.chain(chainIndex)
        } catch {
            HostLog.sources.error("client \(address): \(error)")
            refuse("ERR sluice: \(error)", context: context)
        }
        context.fireChannelActive()
    }

    /// The server is stopping: read nothing more, answer what is in flight, then close.
    func drain() {
        guard let context else {
            drainRequested = true  // accepted but not active yet: closed as soon as it is
            return
        }
        guard !closing else { return }
        closing = true
        drained = true
        drainingHeld = heldByBudget
        readingEnabled = false
        context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
        if drainingHeld { runHeld(context) }
        closeIfFinished(context)
    }

    /// Answers a client that cannot be served with one error reply and closes it.
    private func refuse(_ message: String, context: ChannelHandlerContext) {
        closing = true
        context.writeAndFlush(NIOAny(RESPEncoding.error(message, allocator: allocator)), promise: nil)
        context.close(promise: nil)
    }

    /// With `idle_timeout_ms`: the client sent nothing for that long. Like Redis's `timeout`, a
    /// client waiting for replies (a blocking command) or holding subscriptions is not idle.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls {
            deadline.tlsHandshakeCompleted()
            context.fireUserInboundEventTriggered(event)
            return
        }
        guard let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        guard !closing, slots.isEmpty, !(session?.hasSubscriptions ?? false) else { return }
        HostLog.sources.info("closing idle client \(context.remoteAddress.map { "\($0)" } ?? "unknown")")
        closing = true
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        metrics.connectionClosed()
        closing = true
        slots.removeAll()
        spareSlot = nil  // it references this handler
        flow.reset()
        deadlineCheck?.cancel()
        deadlineCheck = nil
        buffered = nil
        if bufferedCounted > 0 { requestBudget.remove(self) }
        bufferedCounted = 0
        if let session {
            session.close()  // instance_free for every plugin instance
            generation.sessionEnded()
        }
        session = nil
        chain = nil
        self.context = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing, chain != nil else { return }
        if loopGeneration.number > generation.number { moveToNewestGeneration() }
        var buffer = ByteBuffer.joining(&buffered, unwrapInboundIn(data))
        process(&buffer, context)
    }

    /// Runs the complete requests at the front of `buffer` as one batch and keeps the rest in
    /// `buffered`: a partial request, or whatever exceeds the client's budget of requests in flight
    /// (run once replies have been written, see `apply`).
    private func process(_ buffer: inout ByteBuffer, _ context: ChannelHandlerContext) {
        guard let chain else { return }
        processing = true
        defer { processing = false }
        heldByBudget = false
        var building: Batch?  // the requests scanned so far
        var buildingPlain = true  // every request of `building` is a plain command (RedisCommandClass)
        var buildingReplies: UInt64 = 0  // and the reply kinds they expect
        var contiguousStart = buffer.readerIndex
        var contiguous = true
        var closeReply: (String, Bool)?  // (RESP reply, is an error)
        var completedAny = false  // a request ended in this read (so a partial one after it began here)
        /// Runs what was scanned so far as one batch (before a request answered here).
        func runScanned() {
            let (plain, replies) = (buildingPlain, buildingReplies)
            (buildingPlain, buildingReplies) = (true, 0)
            guard var batch = building.take(), batch.count > 0 else { return }
            if plain { batch.markPlain(expectedReplies: replies) }
            if contiguous {
                // All frames lie back to back from where they started: one slice covers them.
                let total = batch.messages.reduce(0) { $0 + $1.readableBytes }
                batch.setReceivedBytes(buffer.getSlice(at: contiguousStart, length: total))
            }
            let count = batch.count
            metrics.requests(count)
            let slot = newSlot(requestCount: count)
            slots.append(slot)
            apply(flow.batchStarted(requests: count), context)
            chain.session.runFromClient(batch, on: chain, receiver: slot)
            // Most chains are done with the batch once run returns (the sink copied its bytes):
            // then the next read's requests go into it.
            if isKnownUniquelyReferenced(&batch) {
                batch.clearForReuse()
                spareBatch = consume batch
            }
        }
        /// With client auth: the request to take instead of `frame` (a HELLO without its AUTH
        /// option), or nil when it was answered here (AUTH, or anything before signing in). A RESET
        /// signs the client out, taking effect from the next request.
        @inline(never)
        func screened(_ frame: ByteBuffer, _ clientAuth: RedisClientAuth) -> ByteBuffer? {
            switch frame.withUnsafeReadableBytes({
                clientAuth.screen($0, authenticated: authenticated, inTransaction: inTransaction, allocator: allocator)
            }) {
            case .forward:
                return frame
            case .forwardSigningOut:
                authenticated = false  // screens the requests after this RESET, not the RESET itself
                return frame
            case .forwardRewritten(let hello):
                contiguous = false
                authenticated = true
                if let user = frame.withUnsafeReadableBytes({ SessionFacts.userName(signingIn: $0) }) {
                    session?.facts.signedIn(as: user)
                }
                return hello
            case .answer(let reply, let signedIn, let failedPassword):
                if failedPassword { metrics.authFailed() }
                runScanned()
                answer(text: reply, closeAfter: false)
                if let signedIn { authenticated = signedIn }
                if signedIn == true, let user = frame.withUnsafeReadableBytes({ SessionFacts.userName(signingIn: $0) }) {
                    session?.facts.signedIn(as: user)
                }
                contiguousStart = buffer.readerIndex
                contiguous = true
                return nil
            }
        }
        /// Takes a complete request: forwarded with the batch, or answered here in its place.
        /// Returns false for QUIT, which ends the scan.
        func take(_ received: ByteBuffer) -> Bool {
            var frame = received
            if let clientAuth {
                guard let accepted = screened(received, clientAuth) else { return true }
                frame = accepted
            }
            // The command is classified once here; a plain one needs none of the checks.
            let plainReply = frame.withUnsafeReadableBytes { RedisCommandClass.plainReply($0) }
            let verdict = plainReply != nil
                ? .forward : frame.withUnsafeReadableBytes { RedisLocalAnswers.verdict($0, inTransaction: &inTransaction) }
            switch verdict {
            case .forward:
                if building == nil {
                    building = spareBatch.take() ?? Batch(kind: Batch.requests, protocolID: Batch.redis)
                }
                if let plainReply {
                    let index = building!.count
                    if index < 32 { buildingReplies |= plainReply << UInt64(2 * index) }
                } else {
                    buildingPlain = false
                }
                building!.appendReceived(frame)
                if building!.count == ClientFlowControl.maxRequestsPerBatch {
                    // A batch is written only once all its replies are in: smaller batches let the
                    // reply limits see (and stop) a deep pipeline of large replies early.
                    runScanned()
                    contiguousStart = buffer.readerIndex
                    contiguous = true
                }
            case .quit:
                closeReply = ("+OK\r\n", false)
                return false
            case .refuse(let message):
                runScanned()
                answer(RESPEncoding.error(message, allocator: allocator), closeAfter: false)
                contiguousStart = buffer.readerIndex
                contiguous = true
            }
            return true
        }
        scanning: while buffer.readableBytes > 0 {
            if !flow.hasRoom(forMore: building?.count ?? 0) {
                heldByBudget = true
                break scanning
            }
            let outcome = buffer.withUnsafeReadableBytes { scanner.scan($0) }
            switch outcome {
            case .multibulk(let length):
                completedAny = true
                guard take(buffer.readSlice(length: length)!) else { break scanning }
            case .empty(let length):
                completedAny = true
                buffer.moveReaderIndex(forwardBy: length)
                contiguous = false  // "*0\r\n" or "*-1\r\n" asks for nothing; Redis ignores it too
            case .inline(let lineLength, let length):
                completedAny = true
                let line = buffer.getSlice(at: buffer.readerIndex, length: lineLength)!
                buffer.moveReaderIndex(forwardBy: length)
                contiguous = false
                do {
                    let args = try line.withUnsafeReadableBytes { try RESPInlineCommand.arguments(of: $0) }
                    if args.isEmpty { continue }
                    guard take(RESPEncoding.command(args, allocator: allocator)) else { break scanning }
                } catch {
                    closeReply = ("-ERR Protocol error: unbalanced quotes in request\r\n", true)
                    break scanning
                }
            case .needMore:
                break scanning
            case .malformed(let message):
                closeReply = ("-ERR Protocol error: \(message)\r\n", true)
                if let detail = scanner.detail {  // a limit of Sluice's, not a Redis rule: worth a line
                    HostLog.sources.info("closing client \(context.remoteAddress.map { "\($0)" } ?? "unknown"): \(detail) (answered 'Protocol error: \(message)')")
                }
                break scanning
            }
        }
        if closeReply == nil, buffer.readableBytes > 0 { buffered = buffer }

        runScanned()
        if let (reply, isError) = closeReply {
            closing = true
            drainingHeld = false
            if isError { metrics.protocolError() }
            answer(text: reply, closeAfter: true)
        }
        if self.context != nil { accountBuffered(context, completedAny: completedAny) }
        // Plugins may have answered everything already: then nothing paused reading, and nothing
        // else would run what the budget held back.
        if heldByBudget, flow.isReading, !closing { scheduleHeld(context) }
    }

    /// After a read: counts the change of the client's partial-request bytes in the source's budget
    /// (pausing the client if the budget is spent, and resuming it when it no longer waits), and
    /// starts or ends the clock of an incomplete request. Costs nothing for a read that left nothing
    /// buffered, as before it; a read that completed requests and ended inside another reads the
    /// clock once. Requests held back by the in-flight limit count nothing: the client is paused for
    /// them already and runs them when it has room again, whatever the budget says.
    private func accountBuffered(_ context: ChannelHandlerContext, completedAny: Bool) {
        let now = heldByBudget ? 0 : buffered?.readableBytes ?? 0
        if now != bufferedCounted {
            bufferedCounted = now
            let waits = requestBudget.setBuffered(now, for: self, on: context.eventLoop)
            if waits, !flow.waitsForRequestBudget { metrics.pausedForRequestBudget() }
            apply(flow.requestBudget(spent: waits), context)
        }
        if now > 0, !closing {
            if deadline.requestIncomplete(begunInThisRead: completedAny, now: { .now() }) { armDeadlineCheck(context) }
        } else {
            deadline.requestsComplete()
        }
    }

    /// The source's request-buffer budget has room again (called on this client's event loop).
    func requestBudgetFreed() {
        guard let context else { return }
        apply(flow.requestBudget(spent: false), context)
    }

    /// Checks the completion deadline when it falls due (one timer per client at most, armed when
    /// something began that must complete, and not cancelled when it completes: it then finds
    /// nothing pending, or a later deadline to wait for).
    private func armDeadlineCheck(_ context: ChannelHandlerContext) {
        guard deadlineCheck == nil, case .checkAgain(let due) = deadline.check(at: .now()) else { return }
        // A strong capture, released when the check runs or the client closes (cancelled then).
        deadlineCheck = context.eventLoop.scheduleTask(deadline: due) { [self] in
            deadlineCheck = nil
            guard !closing, self.context != nil else { return }
            switch deadline.check(at: .now()) {
            case .nothingPending:
                break
            case .checkAgain:
                armDeadlineCheck(context)
            case .expired(let what):
                HostLog.sources.info("closing client \(clientAddress): \(what) not complete within \(limits.requestTimeoutMilliseconds) ms (request_timeout_ms)")
                metrics.closedForDeadline(tlsHandshake: what == "TLS handshake")
                closing = true
                context.close(promise: nil)
            }
        }
    }

    private func newSlot(requestCount: Int) -> ResponseSlot {
        if var spare = spareSlot.take(), isKnownUniquelyReferenced(&spare) {
            spare.reuse(requestCount: requestCount)
            return spare
        }
        return ResponseSlot(owner: self, requestCount: requestCount)
    }

    /// Takes the next place in the response order with a reply given here.
    private func answer(_ reply: ByteBuffer, closeAfter: Bool) {
        let answered = ResponseSlot(owner: self, answer: Batch(kind: Batch.responses, protocolID: Batch.redis,
                                                               messages: [reply]), closeAfter: closeAfter)
        slots.append(answered)
        if let context { apply(flow.batchStarted(requests: answered.requestCount), context) }
        slotCompleted()
    }

    /// Takes the next place in the response order with a reply given as RESP text.
    private func answer(text reply: String, closeAfter: Bool) {
        var bytes = allocator.buffer(capacity: reply.utf8.count)
        bytes.writeString(reply)
        answer(bytes, closeAfter: closeAfter)
    }

    /// Runs the requests the budget held back, once the budget allows (never nested in `process`).
    private func runHeld(_ context: ChannelHandlerContext) {
        guard heldByBudget, !closing || drainingHeld, flow.hasRoom(forMore: 0) else { return }
        guard !processing else {
            scheduleHeld(context)
            return
        }
        guard var held = buffered else { return }
        buffered = nil
        process(&held, context)
        if drainingHeld { closeIfFinished(context) }  // plugins may have answered it all at once
    }

    private func scheduleHeld(_ context: ChannelHandlerContext) {
        guard !heldRunScheduled else { return }
        heldRunScheduled = true
        context.eventLoop.execute { [self] in
            heldRunScheduled = false
            runHeld(context)
        }
    }

    /// Carries out what `flow` decided: reads from the client only while it has room for more
    /// requests in flight, its socket takes our writes (the soft limit of queued replies) and the
    /// request-buffer budget allows, so a client that pipelines without reading its replies stops
    /// being read instead of growing our memory. Stale advice (`flow` changed since) is ignored.
    private func apply(_ action: ClientFlowControl.Action, _ context: ChannelHandlerContext) {
        switch action {
        case .none:
            return
        case .pause:
            guard readingEnabled, !flow.isReading else { return }
            readingEnabled = false
            context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
        case .resume:
            guard !readingEnabled, flow.isReading else { return }
            readingEnabled = true
            context.channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
            // Requests already read but held back by the in-flight limit run first (the socket may
            // have nothing more to say); that run pauses reading again if they fill the limit.
            if heldByBudget {
                runHeld(context)
                if !readingEnabled { return }
            }
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        session?.setBackendReadingPaused(!writable)
        apply(flow.writabilityChanged(writable), context)
        context.fireChannelWritabilityChanged()
    }

    /// Writes every answered slot at the head of the queue, in order.
    func slotCompleted() {
        guard let context, !closeScheduled else { return }
        var closeNow = false
        var action = ClientFlowControl.Action.none
        while let head = slots.first, let result = head.result {
            slots.removeFirst()
            let step = flow.batchWritten(requests: head.requestCount, replyBytes: Self.byteCount(result))
            if step != .none { action = step }
            if flow.exceedsHardLimit {
                closeForUnreadReplies(context)
                return
            }
            closeNow = head.closeAfter
            // The last slot written now flushes them all, in the pass of its own write.
            let last = closeNow || slots.first?.result == nil
            result.write(to: context, flush: last)
            head.reuse(requestCount: 0)  // holds nothing of its reply while it waits for reuse
            spareSlot = head
            if last { break }
        }
        if closeNow {
            // Never inside the completion that got us here: closing frees the client's plugin
            // instances, and a plugin may still be running the hook that answered this slot.
            context.eventLoop.execute { context.close(promise: nil) }
            return
        }
        if drainingHeld, heldByBudget {
            runHeld(context)  // a draining client's requests read before the drain still run
        }
        if closeIfFinished(context) { return }
        apply(action, context)
        if slots.isEmpty, loopGeneration.number > generation.number { scheduleMove(context) }
    }

    // MARK: hot reload

    /// Where this client stands for a move to a newer generation whose unchanged sinks are `kept`.
    private func safePoint(keeping kept: [Int: Int]?) -> SafePoint {
        SafePoint(requestsInFlight: slots.count, requestsHeldBack: heldByBudget, inTransaction: inTransaction,
                  subscribed: session?.hasSubscriptions ?? false,
                  pluginWorkPending: processing || (session?.hasPendingPluginWork ?? false),
                  backendStateOnChangedSink: kept.map { session?.holdsBackendState(outside: $0) ?? false } ?? false,
                  closing: closing)
    }

    /// Moves the client to the newest generation on the next turn (never inside the completion
    /// that answered its last request: moving frees plugin instances that may be on the stack).
    private func scheduleMove(_ context: ChannelHandlerContext) {
        guard !moveScheduled else { return }
        moveScheduled = true
        context.eventLoop.execute { [self] in
            moveScheduled = false
            moveToNewestGeneration()
        }
    }

    /// A reload switched generations (called on this client's event loop).
    func newGenerationAvailable() {
        moveToNewestGeneration()
    }

    /// The grace period of the reload to generation `number` ended: a client still on an older one
    /// moves now if it can, else it is drained (answered, then closed) as on shutdown.
    func graceEnded(for number: Int) {
        guard context != nil, !closing, generation.number < number else { return }
        moveToNewestGeneration()
        guard generation.number < number else { return }
        let kept = loopGeneration.current.sources[sourceKey] == nil ? nil : generation.sinkIndices(to: loopGeneration.current)
        HostLog.sources.info("closing client \(clientAddress): still on configuration generation \(generation.number) at the end of the reload grace period (\(safePoint(keeping: kept).obstacle ?? "its source was removed"))")
        drain()
    }

    /// At a safe point (see `SafePoint`), moves the client's session to the newest generation its
    /// source is in: the plugin instances of the old chain are freed (instance_free), those of the
    /// new one made; backend connections to unchanged sinks, and the client's session facts, stay.
    private func moveToNewestGeneration() {
        guard context != nil, let session, loopGeneration.number > generation.number,
              loopGeneration.current.sources[sourceKey] != nil, safePoint(keeping: nil).allowsMove else { return }
        let previous = generation
        let sourceKey = sourceKey
        // The loop's newest may have ended already (a second reload freed it before this loop ran
        // its task): then the registry's current one. Either way the client's backend state must
        // survive the move.
        guard let target = loopGeneration.startSession(preferring: loopGeneration.current, accepts: { candidate in
            candidate.sources[sourceKey] != nil && !session.holdsBackendState(outside: previous.sinkIndices(to: candidate))
        }), let source = target.sources[sourceKey] else { return }
        let kept = previous.sinkIndices(to: target)
        generation = target
        plan = target.plan
        chainIndex = source.chainIndex
        do {
            chain = try session.move(to: target.plan, mainChain: source.chainIndex, sinkIndices: kept)
        } catch {
            chain = nil
            HostLog.sources.error("client \(clientAddress): \(error)")
            if let context { refuse("ERR sluice: \(error)", context: context) }
        }
        previous.sessionEnded()  // after its instances were freed: its configs may go now
    }

    /// The bytes of a batch of replies (one read of the count when they lie back to back).
    private static func byteCount(_ batch: Batch) -> Int {
        if let whole = batch.contiguous { return whole.readableBytes }
        var total = 0
        for message in batch.messages { total += message.readableBytes }
        return total
    }

    /// The client let more than `reply_buffer_hard_bytes` of replies pile up since its socket stopped
    /// taking them: closed (as Redis's client-output-buffer-limit does), its queued replies dropped.
    private func closeForUnreadReplies(_ context: ChannelHandlerContext) {
        HostLog.sources.info("closing client \(clientAddress): more than \(limits.replyHardBytes) bytes of replies queued while it does not read them (reply_buffer_hard_bytes)")
        metrics.closedForReplyBuffer()
        closing = true
        closeScheduled = true
        // Never inside the completion that got us here (see slotCompleted).
        context.eventLoop.execute { context.close(promise: nil) }
    }

    /// Closes a closing client once everything it sent before is answered (and, when draining, once
    /// the requests the budget held back ran too). Never inside `process` or the completion that
    /// called this: closing frees the client's plugin instances, which may still be on the stack.
    @discardableResult
    private func closeIfFinished(_ context: ChannelHandlerContext) -> Bool {
        guard closing, !closeScheduled, slots.isEmpty, !processing, !(drainingHeld && heldByBudget) else {
            return closeScheduled
        }
        closeScheduled = true
        guard drained else {
            context.eventLoop.execute { context.close(promise: nil) }
            return true
        }
        // A drained client may have sent more than was read before the drain: closing with those
        // bytes unread would send a reset, which can destroy replies still on their way to it. So
        // the replies are followed by a FIN, whatever else arrives is read and dropped, and the
        // connection closes when the client closes its side (or after `drainLinger`).
        context.eventLoop.execute {
            let halfClosed = context.eventLoop.makePromise(of: Void.self)
            halfClosed.futureResult.whenFailure { _ in context.close(promise: nil) }
            context.close(mode: .output, promise: halfClosed)
            context.channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
            context.read()
            context.eventLoop.scheduleTask(in: Self.drainLinger) { context.close(promise: nil) }
        }
        return true
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        HostLog.sources.debug("client connection error: \(error)")
        context.close(promise: nil)
    }

}
