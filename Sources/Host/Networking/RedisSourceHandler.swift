import Logging
import NIOCore

/// One client connection of a Redis source: splits the byte stream into requests (a batch per
/// read), runs each batch through the source's chain, and writes the responses back in order.
final class RedisSourceHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let plan: RuntimePlan
    private let chainIndex: Int
    private let maxClients: Int
    private let metrics: SourceMetrics
    /// The source's client authentication (nil: none), and whether this client passed it.
    private let clientAuth: RedisClientAuth?
    private var authenticated: Bool
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
    private var closing = false
    /// Set by a drain: nothing more is read, but requests already read and held back by the
    /// in-flight budget still run (as the budget allows) before the client is closed.
    private var drainingHeld = false
    /// Set by a drain (see `closeIfFinished`).
    private var drained = false
    /// `closeIfFinished` scheduled the close (a second, full close would undo a half-close).
    private var closeScheduled = false
    /// How long a drained client may keep sending after its last reply and the FIN that followed it.
    static let drainLinger: TimeAmount = .seconds(1)
    private var readPaused = false
    /// True while `process` runs (a plugin answering synchronously must not start a nested one).
    private var processing = false
    /// `buffered` holds complete requests that the in-flight budget held back (not just a partial one).
    private var heldByBudget = false
    private var heldRunScheduled = false
    /// The server started stopping before this connection became active.
    private var drainRequested = false
    /// Between MULTI and EXEC/DISCARD/RESET, as far as the client's commands tell.
    private var inTransaction = false
    /// The channel's writability as last reported (channelWritabilityChanged), so the per-read
    /// check needs no atomic load through the channel.
    private var writable = true
    private(set) var allocator = ByteBufferAllocator()

    /// Stop reading from a client that has this many batches, or this many requests, in flight (it
    /// resumes at half of both). The request limit bounds what a client that pipelines without
    /// reading can make Sluice hold: replies to at most this many requests.
    static let maxBatchesInFlight = 256
    static let maxRequestsInFlight = 4096
    /// Requests of the slots not written yet.
    private var requestsInFlight = 0

    init(plan: RuntimePlan, chainIndex: Int, maxFrameBytes: Int, maxClients: Int, clientAuth: RedisClientAuth? = nil,
         metrics: SourceMetrics) {
        self.plan = plan
        self.chainIndex = chainIndex
        self.maxClients = maxClients
        self.metrics = metrics
        self.clientAuth = clientAuth
        authenticated = clientAuth == nil
        scanner = RESPRequestScanner(maxFrameBytes: maxFrameBytes)
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
        if metrics.connectionOpened() > maxClients {
            // Redis's own answer past maxclients, so clients report it the same way. Counted, and
            // logged at debug only: a connection storm must not become a log storm.
            metrics.clientRefused()
            HostLog.sources.debug("refusing client \(address): max_clients (\(maxClients)) reached")
            refuse("ERR max number of clients reached", context: context)
            context.fireChannelActive()
            return
        }
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
                requestsInFlight += push.requestCount
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
        readPaused = true
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
        requestsInFlight = 0
        session?.close()
        session = nil
        chain = nil
        self.context = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing, chain != nil else { return }
        var buffer = ByteBuffer.joining(&buffered, unwrapInboundIn(data))
        process(&buffer, context)
    }

    /// Runs the complete requests at the front of `buffer` as one batch and keeps the rest in
    /// `buffered`: a partial request, or whatever exceeds the client's budget of requests in flight
    /// (run by `updateReading` once replies have been written).
    private func process(_ buffer: inout ByteBuffer, _ context: ChannelHandlerContext) {
        guard let chain else { return }
        processing = true
        defer { processing = false }
        heldByBudget = false
        var building: Batch?  // the requests scanned so far
        var contiguousStart = buffer.readerIndex
        var contiguous = true
        var closeReply: (String, Bool)?  // (RESP reply, is an error)
        /// Runs what was scanned so far as one batch (before a request answered here).
        func runScanned() {
            guard var batch = building.take(), batch.count > 0 else { return }
            if contiguous {
                // All frames lie back to back from where they started: one slice covers them.
                let total = batch.messages.reduce(0) { $0 + $1.readableBytes }
                batch.setReceivedBytes(buffer.getSlice(at: contiguousStart, length: total))
            }
            let count = batch.count
            metrics.requests(count)
            let slot = newSlot(requestCount: count)
            slots.append(slot)
            requestsInFlight += count
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
            switch frame.withUnsafeReadableBytes({ RedisLocalAnswers.verdict($0, inTransaction: &inTransaction) }) {
            case .forward:
                if building == nil {
                    building = spareBatch.take() ?? Batch(kind: Batch.requests, protocolID: Batch.redis)
                }
                building!.appendReceived(frame)
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
            if requestsInFlight + (building?.count ?? 0) >= Self.maxRequestsInFlight {
                heldByBudget = true
                break scanning
            }
            let outcome = buffer.withUnsafeReadableBytes { scanner.scan($0) }
            switch outcome {
            case .multibulk(let length):
                guard take(buffer.readSlice(length: length)!) else { break scanning }
            case .empty(let length):
                buffer.moveReaderIndex(forwardBy: length)
                contiguous = false  // "*0\r\n" or "*-1\r\n" asks for nothing; Redis ignores it too
            case .inline(let lineLength, let length):
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
        updateReading(context)
        // Plugins may have answered everything already: then nothing paused reading, and nothing
        // else would run what the budget held back.
        if heldByBudget, !readPaused, !closing { scheduleHeld(context) }
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
        requestsInFlight += answered.requestCount
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
        guard heldByBudget, !closing || drainingHeld, requestsInFlight < Self.maxRequestsInFlight else { return }
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

    /// Reads from the client only while it has fewer than `maxBatchesInFlight` batches unanswered
    /// and its socket takes our writes (NIO's write-buffer water marks): a client that pipelines
    /// without reading its replies stops being read instead of growing our memory.
    private func updateReading(_ context: ChannelHandlerContext) {
        if !readPaused, slots.count >= Self.maxBatchesInFlight || requestsInFlight >= Self.maxRequestsInFlight || !writable {
            readPaused = true
            context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
        } else if readPaused, !closing, slots.count <= Self.maxBatchesInFlight / 2,
                  requestsInFlight <= Self.maxRequestsInFlight / 2, writable {
            readPaused = false
            context.channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
            // Requests already read but held back by the budget run first (the socket may have
            // nothing more to say); that run pauses reading again if they fill the budget.
            if heldByBudget {
                runHeld(context)
                if readPaused { return }
            }
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        writable = context.channel.isWritable
        session?.setBackendReadingPaused(!writable)
        updateReading(context)
        context.fireChannelWritabilityChanged()
    }

    /// Writes every answered slot at the head of the queue, in order.
    func slotCompleted() {
        guard let context else { return }
        var closeNow = false
        while let head = slots.first, let result = head.result {
            slots.removeFirst()
            requestsInFlight -= head.requestCount
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
        updateReading(context)
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
