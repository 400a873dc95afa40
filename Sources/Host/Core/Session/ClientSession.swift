import Logging
import NIOCore
import NIOTLS

/// One client connection of a source, for any protocol `P`: splits the byte stream into requests
/// with `P` (a batch per read, at most `P.maxRequestsPerBatch` each), runs each batch through the
/// source's chain, and writes the replies back in request order or as they come (`P.repliesInOrder`).
/// What it reads and holds is bounded as `ClientLimits` says: `ClientFlowControl` decides when
/// reading pauses and when queued replies close the client, `RequestBufferBudget` bounds the request
/// bytes of all the source's clients, and `CompletionDeadline` closes a client that does not finish
/// a request (or its TLS handshake) in time. Its lifecycle (active, closing, draining, half-closed…)
/// is `ClientSessionStateMachine`; whether its socket is read and what became of the requests the
/// in-flight limit held back is `ClientReadingStateMachine`; the work it puts off to the next
/// event-loop turn is `NextTurnWork`. Moves to a newer configuration generation wait for a `SafePoint`.
///
/// Each protocol subclasses it with a small concrete `ChannelInboundHandler` (`RedisClientHandler`)
/// whose witnesses call the `final` methods here: NIO calls a handler through its protocol
/// witnesses, and a generic class's witnesses are unspecialised code that would look up `P`'s
/// metadata and witnesses for every request. The subclass is also the slots' `ResponseSlotOwner`.
class ClientSession<P: SourceProtocol>: RequestBufferBudget.Waiter, ClientConnection {
    /// The configuration generation this client runs on, its plan and the source's chain in it;
    /// all three change together when the client moves to a newer generation (hot reload).
    private var generation: ConfigGeneration
    private var plan: RuntimePlan
    private var chainIndex: Int
    /// The newest generation as this client's event loop knows it (compared at safe points).
    private let loopGeneration: LoopGeneration
    /// The source's listen address, its name in every generation.
    private let sourceKey: String
    /// The protocol of the source this client was accepted for: a generation in which the source
    /// at `sourceKey` speaks another one (a reload replaced it) has no place for this client.
    private let sourceKind: SluiceConfig.SourceKind?
    private let maxClients: Int
    private let metrics: SourceMetrics
    private var buffered: ByteBuffer?
    /// Batches in flight, in request order (only with `P.repliesInOrder`).
    private var slots = CircularBuffer<ResponseSlot>(initialCapacity: 8)
    /// Batches in flight when replies are written as they come (`P.repliesInOrder` false).
    private var unorderedInFlight = 0
    /// The last slot written, reused for the next batch if nothing references it any more.
    private var spareSlot: ResponseSlot?
    /// The last request batch, emptied, once the chain was done with it: the next one's object.
    private var spareBatch: Batch?
    private var session: ChainSession?
    private var chain: ChainInstance?
    private var context: ChannelHandlerContext?
    /// The connection's lifecycle.
    private var lifecycle = ClientSessionStateMachine()
    /// How long a drained client may keep sending after its last reply and the FIN that followed it.
    static var drainLinger: TimeAmount { .seconds(1) }
    private let limits: ClientLimits
    private var flow: ClientFlowControl
    /// Whether the socket is read (following `flow`) and what became of the requests held back.
    private var reading = ClientReadingStateMachine()
    /// Work put off to the next event-loop turn (a move, a flush, a run of held-back requests).
    private var nextTurn = NextTurnWork()
    private let requestBudget: RequestBufferBudget
    /// The bytes of `buffered` counted in `requestBudget`: its partial request (0 while `buffered`
    /// holds requests the in-flight limit held back; its partial tail counts once they ran).
    private var bufferedCounted = 0
    private let usesTLS: Bool
    private var deadline: CompletionDeadline
    private var deadlineCheck: Scheduled<Void>?
    private var clientAddress = "unknown"
    /// The slots' owner: this very object, as its concrete subclass (set by `bindSlotOwner`).
    private unowned(unsafe) var slotOwner: ResponseSlotOwner!
    private(set) var allocator = ByteBufferAllocator()
    /// The protocol's state of this connection (scanner, sign-in, transaction, encoding). The last
    /// stored property: the only one whose size depends on `P`, so every other one has a fixed
    /// offset (no lookup in the class metadata).
    private var source: P

    init(generation: ConfigGeneration, loopGeneration: LoopGeneration, sourceKey: String, chainIndex: Int,
         settings: P.Settings, maxClients: Int, limits: ClientLimits, requestBudget: RequestBufferBudget,
         usesTLS: Bool, metrics: SourceMetrics) {
        self.generation = generation
        self.plan = generation.plan
        self.chainIndex = chainIndex
        self.loopGeneration = loopGeneration
        self.sourceKey = sourceKey
        sourceKind = generation.sources[sourceKey]?.kind
        self.maxClients = maxClients
        self.metrics = metrics
        self.limits = limits
        self.requestBudget = requestBudget
        self.usesTLS = usesTLS
        flow = ClientFlowControl(limits: limits)
        deadline = CompletionDeadline(timeoutMilliseconds: limits.requestTimeoutMilliseconds)
        source = P(settings: settings, metrics: metrics)
    }

    /// The concrete subclass names itself the owner of the slots (call once, from its init).
    final func bindSlotOwner(_ owner: ResponseSlotOwner) {
        slotOwner = owner
    }

    /// Carries out a lifecycle action; leaving `active` stops the flow control for good.
    private final func perform(_ action: ClientSessionStateMachine.Action, _ context: ChannelHandlerContext) {
        if !lifecycle.isActive { flow.stop() }
        switch action {
        case .none:
            return
        case .closeNow:
            context.close(promise: nil)
        case .closeNextTurn:
            context.eventLoop.execute { context.close(promise: nil) }
        case .stopReading:
            reading.stopReading()
            context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
        case .halfCloseNextTurn:
            // A drained client may have sent more than was read before the drain: closing with those
            // bytes unread would send a reset, which can destroy replies still on their way to it. So
            // the replies are followed by a FIN, whatever else arrives is read and dropped, and the
            // connection closes when the client closes its side (or after `drainLinger`).
            let linger = Self.drainLinger
            context.eventLoop.execute {
                let halfClosed = context.eventLoop.makePromise(of: Void.self)
                halfClosed.futureResult.whenFailure { _ in context.close(promise: nil) }
                context.close(mode: .output, promise: halfClosed)
                context.channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
                context.read()
                context.eventLoop.scheduleTask(in: linger) { context.close(promise: nil) }
            }
        }
    }

    // MARK: channel events (called by the concrete handler's witnesses)

    final func sessionActive(context: ChannelHandlerContext) {
        self.context = context
        allocator = context.channel.allocator
        if lifecycle.activate() == .closeNow {  // the server began stopping before this
            _ = metrics.connectionOpened()  // balanced by channelInactive
            perform(.closeNow, context)
            context.fireChannelActive()
            return
        }
        let address = context.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "unknown"
        clientAddress = address
        if metrics.connectionOpened() > maxClients {
            // The protocol's own answer past max_clients (Redis's words), so clients report it the
            // same way. Counted, and logged at debug only: a connection storm must not become a log storm.
            metrics.clientRefused()
            HostLog.sources.debug("refusing client \(address): max_clients (\(maxClients)) reached")
            refuse(.maxClients(maxClients), context: context)
            context.fireChannelActive()
            return
        }
        // A reload switched between accepting and now: start on the newest generation. The one
        // chosen may have ended meanwhile (replaced twice, its configs freed): then on the current.
        let sourceKey = sourceKey
        let preferred = loopGeneration.number > generation.number && hasSource(loopGeneration.current)
            ? loopGeneration.current : generation
        guard let started = loopGeneration.startSession(preferring: preferred,
                                                        accepts: { [self] in hasSource($0) }),
              let source = started.sources[sourceKey] else {
            HostLog.sources.info("refusing client \(address): its source \(sourceKey) was removed by a configuration reload")
            refuse(.sourceRemoved, context: context)
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
                let push = ResponseSlot(owner: slotOwner, answer: Batch(kind: Batch.responses, protocolID: P.protocolID,
                                                                        messages: [bytes]), closeAfter: false)
                slots.insert(push, at: slots.index(after: last))
                apply(flow.batchStarted(requests: push.requestCount), context)
                return
            }
            writePush(bytes, context)
        }
        session.onBackendLost = { [self] reason in
            guard let context = self.context else { return }
            HostLog.sources.info("closing client \(address): \(reason)")
            perform(lifecycle.abort(), context)
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
            refuse(.chainUnavailable("\(error)"), context: context)
        }
        context.fireChannelActive()
    }

    /// The server is stopping: read nothing more, answer what is in flight, then close.
    final func drain() {
        let action = lifecycle.drain(heldBack: reading.holdsRequests)
        guard let context, action != .none else { return }  // not active yet: closed as soon as it is
        perform(action, context)
        if lifecycle.runsHeldRequests { runHeld(context) }
        closeIfFinished(context)
    }

    /// Answers a client that cannot be served with one error reply and closes it.
    private final func refuse(_ reason: ClientRefusal, context: ChannelHandlerContext) {
        let action = lifecycle.refuse()
        source.writeFrame(P.refusal(reason, allocator: allocator), to: context)
        perform(action, context)
    }

    /// With `idle_timeout_ms`: the client sent nothing for that long. Like Redis's `timeout`, a
    /// client waiting for replies (a blocking command) or holding subscriptions is not idle.
    final func sessionUserEvent(context: ChannelHandlerContext, event: Any) {
        if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls {
            deadline.tlsHandshakeCompleted()
            context.fireUserInboundEventTriggered(event)
            return
        }
        guard let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        guard lifecycle.isActive, batchesInFlight == 0, !(session?.hasSubscriptions ?? false) else { return }
        HostLog.sources.info("closing idle client \(context.remoteAddress.map { "\($0)" } ?? "unknown")")
        perform(lifecycle.abort(), context)
    }

    final func sessionInactive(context: ChannelHandlerContext) {
        metrics.connectionClosed()
        lifecycle.channelInactive()
        reading.channelInactive()
        slots.removeAll()
        unorderedInFlight = 0
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

    @inline(__always)
    final func sessionRead(context: ChannelHandlerContext, data: ByteBuffer) {
        guard lifecycle.isActive, chain != nil else { return }
        if loopGeneration.number > generation.number { moveToNewestGeneration() }
        var buffer = ByteBuffer.joining(&buffered, data)
        process(&buffer, context)
    }

    final func sessionError(context: ChannelHandlerContext, error: Error) {
        HostLog.sources.debug("client connection error: \(error)")
        context.close(promise: nil)
    }

    /// The client's chain session (nil before it started and once it closed); tests deliver
    /// pushes through it.
    final var chainSession: ChainSession? { session }

    /// The protocol's state of this connection, as a copy (tests read what it saw).
    final var sourceState: P { source }

    /// Batches read and not written yet.
    private final var batchesInFlight: Int { P.repliesInOrder ? slots.count : unorderedInFlight }

    // MARK: reading requests

    /// Runs the complete requests at the front of `buffer` as batches and keeps the rest in
    /// `buffered`: a partial request, or whatever exceeds the client's budget of requests in flight
    /// (run once replies have been written, see `apply`).
    private final func process(_ buffer: inout ByteBuffer, _ context: ChannelHandlerContext) {
        guard let chain else { return }
        reading.processBegan()
        var building: Batch?  // the requests scanned so far
        var contiguousStart = buffer.readerIndex
        var contiguous = true
        var closeReply: (ByteBuffer, Bool)?  // (reply, is a protocol error)
        var completedAny = false  // a request ended in this read (so a partial one after it began here)
        /// Runs what was scanned so far as one batch (before a request answered here).
        func runScanned() {
            guard var batch = building.take(), batch.count > 0 else { return }
            source.sealBatch(batch)
            let total = batch.messages.reduce(0) { $0 + $1.readableBytes }
            if contiguous {
                // All frames lie back to back from where they started: one slice covers them.
                batch.setReceivedBytes(buffer.getSlice(at: contiguousStart, length: total))
            }
            let count = batch.count
            metrics.requests(count)
            let slot = newSlot(requestCount: count, requestBytes: total)
            P.replyKeys(of: batch, into: &slot.replyKeys)
            // Replies as they come: each request's reply may go on its own (a sink that sends them
            // separately answers each as it arrives; see `ResponseReceiver.replyReceiver`).
            if !P.repliesInOrder, count > 1 { slot.takeRepliesOneByOne() }
            if P.repliesInOrder { slots.append(slot) } else { unorderedInFlight += 1 }
            apply(flow.batchStarted(requests: count, requestBytes: total), context)
            chain.session.runFromClient(batch, on: chain, receiver: slot)
            // Most chains are done with the batch once run returns (the sink copied its bytes):
            // then the next read's requests go into it.
            if isKnownUniquelyReferenced(&batch) {
                batch.clearForReuse()
                spareBatch = consume batch
            }
        }
        scanning: while buffer.readableBytes > 0 {
            if !flow.hasRoom(forMore: building?.count ?? 0) {
                reading.inFlightLimitReached()
                break scanning
            }
            switch source.nextRequest(&buffer, session: session, allocator: allocator) {
            case .request(let frame, let asReceived):
                completedAny = true
                if !asReceived { contiguous = false }
                if building == nil {
                    building = spareBatch.take() ?? Batch(kind: Batch.requests, protocolID: P.protocolID)
                }
                building!.appendReceived(frame)
                if building!.count == P.maxRequestsPerBatch {
                    // RESP: a batch is written only once all its replies are in: smaller batches let
                    // the reply limits see (and stop) a deep pipeline of large replies early.
                    runScanned()
                    contiguousStart = buffer.readerIndex
                    contiguous = true
                }
            case .nothing:
                completedAny = true
                contiguous = false
            case .answer(let reply):
                completedAny = true
                runScanned()
                answer(reply, closeAfter: false)
                source.answerPlaced(session: session)
                contiguousStart = buffer.readerIndex
                contiguous = true
            case .close(let reply, let protocolError, let logDetail):
                completedAny = true
                closeReply = (reply, protocolError)
                if let logDetail {  // a limit of Sluice's, not a protocol rule: worth a line
                    HostLog.sources.info("closing client \(context.remoteAddress.map { "\($0)" } ?? "unknown"): \(logDetail)")
                }
                break scanning
            case .needMore:
                break scanning
            }
        }
        if closeReply == nil, buffer.readableBytes > 0 { buffered = buffer }

        runScanned()
        if let (reply, isError) = closeReply {
            lifecycle.closeAfterReply()
            flow.stop()
            if isError { metrics.protocolError() }
            answer(reply, closeAfter: true)
        }
        if self.context != nil { accountBuffered(context, completedAny: completedAny) }
        // Plugins may have answered everything already: then nothing paused reading, and nothing
        // else would run what the budget held back.
        if reading.processEnded(mayRunHeld: flow.isReading && lifecycle.isActive) == .runNextTurn {
            scheduleHeld(context)
        }
    }

    /// After a read: counts the change of the client's partial-request bytes in the source's budget
    /// (pausing the client if the budget is spent, and resuming it when it no longer waits), and
    /// starts or ends the clock of an incomplete request. Costs nothing for a read that left nothing
    /// buffered, as before it; a read that completed requests and ended inside another reads the
    /// clock once. Requests held back by the in-flight limit count nothing: the client is paused for
    /// them already and runs them when it has room again, whatever the budget says.
    private final func accountBuffered(_ context: ChannelHandlerContext, completedAny: Bool) {
        let now = reading.holdsRequests ? 0 : buffered?.readableBytes ?? 0
        if now != bufferedCounted {
            bufferedCounted = now
            let waits = requestBudget.setBuffered(now, for: self, on: context.eventLoop)
            if waits, !flow.waitsForRequestBudget { metrics.pausedForRequestBudget() }
            apply(flow.requestBudget(spent: waits), context)
        }
        if now > 0, lifecycle.isActive {
            if deadline.requestIncomplete(begunInThisRead: completedAny, now: { .now() }) { armDeadlineCheck(context) }
        } else {
            deadline.requestsComplete()
        }
    }

    /// The source's request-buffer budget has room again (called on this client's event loop).
    final func requestBudgetFreed() {
        guard let context else { return }
        apply(flow.requestBudget(spent: false), context)
    }

    /// Checks the completion deadline when it falls due (one timer per client at most, armed when
    /// something began that must complete, and not cancelled when it completes: it then finds
    /// nothing pending, or a later deadline to wait for).
    private final func armDeadlineCheck(_ context: ChannelHandlerContext) {
        guard deadlineCheck == nil, case .checkAgain(let due) = deadline.check(at: .now()) else { return }
        // A strong capture, released when the check runs or the client closes (cancelled then).
        deadlineCheck = context.eventLoop.scheduleTask(deadline: due) { [self] in
            deadlineCheck = nil
            guard lifecycle.isActive, self.context != nil else { return }
            switch deadline.check(at: .now()) {
            case .nothingPending:
                break
            case .checkAgain:
                armDeadlineCheck(context)
            case .expired(let what):
                HostLog.sources.info("closing client \(clientAddress): \(what) not complete within \(limits.requestTimeoutMilliseconds) ms (request_timeout_ms)")
                metrics.closedForDeadline(tlsHandshake: what == "TLS handshake")
                perform(lifecycle.abort(), context)
            }
        }
    }

    private final func newSlot(requestCount: Int, requestBytes: Int) -> ResponseSlot {
        if var spare = spareSlot.take(), isKnownUniquelyReferenced(&spare) {
            spare.reuse(requestCount: requestCount, requestBytes: requestBytes)
            return spare
        }
        return ResponseSlot(owner: slotOwner, requestCount: requestCount, requestBytes: requestBytes)
    }

    /// Takes the next place in the response order with a reply given here.
    private final func answer(_ reply: ByteBuffer, closeAfter: Bool) {
        let answered = ResponseSlot(owner: slotOwner, answer: Batch(kind: Batch.responses, protocolID: P.protocolID,
                                                                    messages: [reply]), closeAfter: closeAfter)
        if P.repliesInOrder { slots.append(answered) } else { unorderedInFlight += 1 }
        if let context { apply(flow.batchStarted(requests: answered.requestCount), context) }
        sessionSlotCompleted(answered)
    }

    /// Runs the requests the budget held back, once the budget allows (never nested in `process`).
    private final func runHeld(_ context: ChannelHandlerContext) {
        switch reading.heldRunRequested(allowed: lifecycle.runsHeldRequests && flow.hasRoom(forMore: 0)) {
        case .none:
            return
        case .runNextTurn:
            scheduleHeld(context)
        case .runNow:
            guard var held = buffered else { return }
            buffered = nil
            process(&held, context)
            if !lifecycle.isActive { closeIfFinished(context) }  // plugins may have answered it all at once
        }
    }

    private final func scheduleHeld(_ context: ChannelHandlerContext) {
        guard nextTurn.request(.heldRun) else { return }
        context.eventLoop.execute { [self] in
            nextTurn.taskRuns(.heldRun)
            runHeld(context)
        }
    }

    /// Carries out what `flow` decided: reads from the client only while it has room for more
    /// requests in flight, its socket takes our writes (the soft limit of queued replies) and the
    /// request-buffer budget allows, so a client that pipelines without reading its replies stops
    /// being read instead of growing our memory. Stale advice (`flow` changed since) is ignored.
    private final func apply(_ action: ClientFlowControl.Action, _ context: ChannelHandlerContext) {
        if action == .none { return }
        switch reading.flowAdvised(action, flowReads: flow.isReading) {
        case .none:
            return
        case .pause:
            context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
        case .resume(let runHeldFirst):
            context.channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
            // Requests already read but held back by the in-flight limit run first (the socket may
            // have nothing more to say); that run pauses reading again if they fill the limit.
            if runHeldFirst {
                runHeld(context)
                if !reading.socketIsReading { return }
            }
            context.read()
        }
    }

    final func sessionWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        session?.setBackendReadingPaused(!writable)
        apply(flow.writabilityChanged(writable), context)
        context.fireChannelWritabilityChanged()
    }

    // MARK: writing replies

    /// `slot` was answered: writes every answered slot at the head of the queue, in order (or, when
    /// replies go as they come, `slot` itself).
    @inline(__always)
    final func sessionSlotCompleted(_ slot: ResponseSlot) {
        if P.repliesInOrder {
            writeAnsweredHead()
        } else {
            writeAnswered(slot)
        }
    }

    /// The protocol's error replies for requests `first..<first+count` of a failed batch.
    final func sessionErrorReplies(_ message: String, count: Int, replyKeys: ReplyKeys, first: Int) -> Batch {
        P.errorReplies(message, count: count, replyKeys: replyKeys, first: first, allocator: allocator)
    }

    /// One reply of a slot whose replies go one by one came (`ResponseSlot.repliesOneByOne`):
    /// written at once (flushed now when nothing else is in flight, else at the end of the turn,
    /// as `writeAnswered` does); the slot is done with its last reply. Its request counts out of
    /// the in-flight limit now, its batch (and the request bytes) once the last reply came.
    final func sessionSlotReplied(_ slot: ResponseSlot, _ replies: Batch) {
        guard let context, lifecycle.writesReplies else { return }
        let finished = slot.unansweredRequests == 0
        var action = flow.requestAnswered(replyBytes: replyByteCount(replies))
        if finished {
            unorderedInFlight -= 1
            let step = flow.batchWritten(requests: 0, requestBytes: slot.requestBytes, replyBytes: 0)
            if step != .none { action = step }
        }
        guard writeUnordered(replies, context) else { return }
        guard finished else {
            apply(action, context)
            return
        }
        slot.reuse(requestCount: 0)
        spareSlot = slot
        afterWriting(closeNow: false, action, context)
    }

    private final func writeAnsweredHead() {
        guard let context, lifecycle.writesReplies else { return }
        var closeNow = false
        var action = ClientFlowControl.Action.none
        while let head = slots.first, let result = head.result {
            slots.removeFirst()
            let step = flow.batchWritten(requests: head.requestCount, requestBytes: head.requestBytes,
                                          replyBytes: replyByteCount(result))
            if step != .none { action = step }
            if flow.exceedsHardLimit {
                closeForUnreadReplies(context)
                return
            }
            closeNow = head.closeAfter
            // The last slot written now flushes them all, in the pass of its own write.
            let last = closeNow || slots.first?.result == nil
            source.write(result, to: context, flush: last)
            head.reuse(requestCount: 0)  // holds nothing of its reply while it waits for reuse
            spareSlot = head
            if last { break }
        }
        afterWriting(closeNow: closeNow, action, context)
    }

    private final func writeAnswered(_ slot: ResponseSlot) {
        guard let context, lifecycle.writesReplies, let result = slot.result else { return }
        unorderedInFlight -= 1
        let action = flow.batchWritten(requests: slot.requestCount, requestBytes: slot.requestBytes,
                                        replyBytes: replyByteCount(result))
        guard writeUnordered(result, context) else { return }
        let closeNow = slot.closeAfter
        slot.reuse(requestCount: 0)
        spareSlot = slot
        afterWriting(closeNow: closeNow, action, context)
    }

    /// Writes replies of an unordered client (CQL) once they are counted out of the flow control:
    /// with nothing else in flight they are flushed now; otherwise once, at the end of this
    /// event-loop turn, for all the replies that come back in it (one write instead of one each).
    /// False, with nothing written, when the replies the client has not read exceed the hard limit:
    /// the client is being closed.
    @inline(__always)
    private final func writeUnordered(_ replies: Batch, _ context: ChannelHandlerContext) -> Bool {
        if flow.exceedsHardLimit {
            closeForUnreadReplies(context)
            return false
        }
        let flushNow = unorderedInFlight == 0
        source.write(replies, to: context, flush: flushNow)
        if !flushNow { scheduleFlush(context) }
        return true
    }

    private final func scheduleFlush(_ context: ChannelHandlerContext) {
        guard nextTurn.request(.flush) else { return }
        // Runs before a close scheduled after it (tasks run in order).
        context.eventLoop.execute { [self] in
            nextTurn.taskRuns(.flush)
            if let context = self.context { source.flush(to: context) }
        }
    }

    private final func afterWriting(closeNow: Bool, _ action: ClientFlowControl.Action, _ context: ChannelHandlerContext) {
        if closeNow {
            // Never inside the completion that got us here: closing frees the client's plugin
            // instances, and a plugin may still be running the hook that answered this slot.
            perform(lifecycle.closeAfterWrite(), context)
            return
        }
        if reading.holdsRequests, !lifecycle.isActive, lifecycle.runsHeldRequests {
            runHeld(context)  // a draining client's requests read before the drain still run
        }
        if closeIfFinished(context) { return }
        apply(action, context)
        if batchesInFlight == 0, loopGeneration.number > generation.number { scheduleMove(context) }
    }

    /// Writes a push that answers no request (a CQL EVENT, a Redis pub/sub message) at once. It
    /// counts like a reply: while the client's socket does not take our writes its bytes add up
    /// towards `reply_buffer_hard_bytes`, and past that the client is closed. (A CQL client that
    /// registered for events and stopped reading would otherwise queue them without limit: they
    /// come from a connection other clients share, which cannot stop reading for one of them.)
    private final func writePush(_ push: ByteBuffer, _ context: ChannelHandlerContext) {
        guard lifecycle.writesReplies else { return }
        flow.pushWritten(bytes: push.readableBytes)
        if flow.exceedsHardLimit {
            closeForUnreadReplies(context)
            return
        }
        source.writeFrame(push, to: context)
    }

    /// The client let more than `reply_buffer_hard_bytes` of replies pile up since its socket stopped
    /// taking them: closed (as Redis's client-output-buffer-limit does), its queued replies dropped.
    private final func closeForUnreadReplies(_ context: ChannelHandlerContext) {
        HostLog.sources.info("closing client \(clientAddress): more than \(limits.replyHardBytes) bytes of replies queued while it does not read them (reply_buffer_hard_bytes)")
        metrics.closedForReplyBuffer()
        // Never inside the completion that got us here (see afterWriting).
        perform(lifecycle.closeAfterWrite(), context)
    }

    /// Closes a closing or draining client once everything it sent before is answered (and, when
    /// draining, once the requests the budget held back ran too). Never inside `process` or the
    /// completion that called this: closing frees the client's plugin instances, which may still be
    /// on the stack. Returns whether a close is scheduled.
    @discardableResult
    private final func closeIfFinished(_ context: ChannelHandlerContext) -> Bool {
        if lifecycle.closeIsScheduled { return true }
        guard !lifecycle.isActive, batchesInFlight == 0, !reading.isProcessing else { return false }
        let action = lifecycle.everythingAnswered(heldBack: reading.holdsRequests)
        perform(action, context)
        return lifecycle.closeIsScheduled
    }

    // MARK: hot reload

    /// Where this client stands for a move to a newer generation whose unchanged sinks are `kept`.
    private final func safePoint(keeping kept: [Int: Int]?) -> SafePoint {
        SafePoint(requestsInFlight: batchesInFlight, requestsHeldBack: reading.holdsRequests, inTransaction: source.inTransaction,
                  subscribed: session?.hasSubscriptions ?? false,
                  pluginWorkPending: reading.isProcessing || (session?.hasPendingPluginWork ?? false),
                  backendStateOnChangedSink: kept.map { session?.holdsBackendState(outside: $0) ?? false } ?? false,
                  closing: !lifecycle.isActive)
    }

    /// Moves the client to the newest generation on the next turn (never inside the completion
    /// that answered its last request: moving frees plugin instances that may be on the stack).
    private final func scheduleMove(_ context: ChannelHandlerContext) {
        guard nextTurn.request(.move) else { return }
        context.eventLoop.execute { [self] in
            nextTurn.taskRuns(.move)
            moveToNewestGeneration()
        }
    }

    /// Whether `candidate` has this client's source: at its listen address, in its protocol.
    private final func hasSource(_ candidate: ConfigGeneration) -> Bool {
        candidate.sources[sourceKey].map { $0.kind == sourceKind } ?? false
    }

    /// A reload switched generations (called on this client's event loop).
    final func newGenerationAvailable() {
        moveToNewestGeneration()
    }

    /// The grace period of the reload to generation `number` ended: a client still on an older one
    /// moves now if it can, else it is drained (answered, then closed) as on shutdown.
    final func graceEnded(for number: Int) {
        guard context != nil, lifecycle.isActive, generation.number < number else { return }
        moveToNewestGeneration()
        guard generation.number < number else { return }
        let kept = !hasSource(loopGeneration.current) ? nil : generation.sinkIndices(to: loopGeneration.current)
        HostLog.sources.info("closing client \(clientAddress): still on configuration generation \(generation.number) at the end of the reload grace period (\(safePoint(keeping: kept).obstacle ?? "its source was removed"))")
        drain()
    }

    /// At a safe point (see `SafePoint`), moves the client's session to the newest generation its
    /// source is in: the plugin instances of the old chain are freed (instance_free), those of the
    /// new one made; backend connections to unchanged sinks, and the client's session facts, stay.
    private final func moveToNewestGeneration() {
        guard context != nil, let session, loopGeneration.number > generation.number,
              hasSource(loopGeneration.current), safePoint(keeping: nil).allowsMove else { return }
        let previous = generation
        let sourceKey = sourceKey
        // The loop's newest may have ended already (a second reload freed it before this loop ran
        // its task): then the registry's current one. Either way the client's backend state must
        // survive the move.
        guard let target = loopGeneration.startSession(preferring: loopGeneration.current, accepts: { candidate in
            hasSource(candidate) && !session.holdsBackendState(outside: previous.sinkIndices(to: candidate))
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
            if let context { refuse(.chainUnavailable("\(error)"), context: context) }
        }
        previous.sessionEnded()  // after its instances were freed: its configs may go now
    }
}

/// The bytes of a batch of replies (one read of the count when they lie back to back). A free
/// function: a static method of the generic session would need its class metadata.
@inline(__always)
private func replyByteCount(_ batch: Batch) -> Int {
    if let whole = batch.contiguous { return whole.readableBytes }
    var total = 0
    for message in batch.messages { total += message.readableBytes }
    return total
}
