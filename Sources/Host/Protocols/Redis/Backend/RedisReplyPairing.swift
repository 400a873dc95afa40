import NIOCore

/// The requests in flight on one Redis backend connection, paired with replies strictly in order
/// (the head of the queue takes the next reply), and the connection-state rules that decide which
/// frames are replies: RESP3 `>` pushes, RESP2 pub/sub arrays while subscribed, unsubscribe
/// confirmations, the MONITOR stream, requests silenced by CLIENT REPLY and the SUBSCRIBE family
/// answered out of band. A reply whose kind cannot answer its request (or with no request waiting)
/// is reported out of step. Lives on the connection's event loop.
///
/// *Shared* connections carry stateless requests only (no pub/sub, no RESET, no CLIENT REPLY): the
/// only unsolicited frame there is a RESP3 push, told by its first byte. *Dedicated* connections
/// deliver pushes to their client (`owner`).
final class RedisReplyPairing: BackendReplyPairing {
    /// A batch written (or waiting to be written) to the backend, and the replies gathered so far.
    final class Pending {
        /// Nil only while parked for reuse (see `park`).
        private(set) var receiver: ResponseReceiver!
        /// The route to tell when this batch completes (shared connections count in-flight batches).
        var route: RedisSinkRoute?
        private(set) var count: Int
        private(set) var outOfBand: [Bool]?
        var responses: [ByteBuffer] = []
        /// Where this batch's first reply starts in the read buffer `readID`, while all its replies
        /// so far lie back to back there.
        var contiguousStart: Int?
        var readID = -1
        /// The reply-timeout check count when the batch was handed to the connection: its age in
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
        /// Dedicated connections: the requests of this batch that switch the connection's protocol
        /// (HELLO 2 or 3, RESET), by index, and to RESP3 or not. A switch takes effect when its
        /// request's reply arrives (or its silent stand-in is filled in), not when it is sent: the
        /// backend writes what comes before that reply in the protocol before it. (A HELLO inside
        /// MULTI switches at EXEC; followed at its `+QUEUED`, only other `+QUEUED` come between.)
        var protocolSwitches: [(index: Int, resp3: Bool)]?
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
            protocolSwitches = nil
        }
    }

    private let isShared: Bool
    private let eventLoop: EventLoop
    private let allocator: ByteBufferAllocator
    /// The client a dedicated connection belongs to; nil when shared.
    private weak var owner: ChainSession?
    private let deliversPushes: Bool
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
    /// The backend speaks RESP3 (HELLO 3) in what it sends now: pub/sub traffic then comes as `>`
    /// pushes only, and a `*` reply is always an ordinary reply, even while subscribed. Follows the
    /// replies, not the requests: a HELLO 3 sent while replies or confirmations written in RESP2 are
    /// still on their way (an UNSUBSCRIBE's `*3` confirmation) switches only once it is answered.
    private var resp3: Bool
    /// Unsubscribe confirmations still expected for channels named in UNSUBSCRIBE-family requests,
    /// and UNSUBSCRIBEs without channels still waiting for the confirmation that reports 0 left.
    /// Redis sends these even outside subscribed mode, so they are not matched to requests.
    private var namedUnsubscribesPending = 0
    private var unsubscribeAllPending = 0
    /// The read buffer being parsed (replies are slices of it) and a number identifying it.
    private var currentRead: ByteBuffer?
    private var readID = 0

    /// The pairing of a dedicated connection (`owner` set) or a shared one.
    init(owner: ChainSession?, deliversPushes: Bool, resp3: Bool, eventLoop: EventLoop, allocator: ByteBufferAllocator) {
        self.owner = owner
        isShared = owner == nil
        self.deliversPushes = deliversPushes
        self.resp3 = resp3
        self.eventLoop = eventLoop
        self.allocator = allocator
    }

    /// The client holds subscriptions on this connection, or monitors (it waits for messages, it is
    /// not idle).
    var isSubscribed: Bool { subscribed || monitoring }

    var count: Int { pending.count }

    // MARK: requests

    @inline(__always)
    func entry(for batch: Batch, receiver: ResponseReceiver, route: RedisSinkRoute?, sentAtCheck: Int?) -> Pending {
        var inBand = RedisReplyPlan.InBand()
        if !isShared {
            inBand = RedisReplyPlan.inBand(batch, mode: &replyMode)
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
            entry.protocolSwitches = Self.protocolSwitches(batch)
        }
        if let sentAtCheck {
            entry.sentAtCheck = sentAtCheck
            if !isShared { entry.requests = batch }
        }
        return entry
    }

    func failUnsent(_ entry: Pending, _ message: String, completesRoute: Bool) {
        if completesRoute { entry.route?.sharedBatchCompleted() }
        entry.receiver.receive(.failed(message))
    }

    @inline(__always)
    func add(_ entry: Pending) {
        pending.append(entry)
    }

    /// Out-of-band requests (SUBSCRIBE…) are answered by their confirmations, so their batch
    /// completes at once, but only on an established connection: until then it must stay pending,
    /// so that a failed connect (or a refused AUTH) answers it with the error.
    @inline(__always)
    func requestsWritten() {
        if !isShared { completeSilentHead(deferred: true) }
    }

    var oldestSentAtCheck: Int? { pending.first?.sentAtCheck }

    func oldestMayWaitIndefinitely() -> Bool {
        if subscribed { return true }
        guard let requests = pending.first?.requests else { return false }
        return (0..<requests.count).contains { requests.withMessageBytes($0, RedisConnectionState.mayWaitIndefinitely) }
    }

    func settleAll(on eventLoop: EventLoop, _ outcome: @escaping (Int) -> ChainOutcome) {
        guard !pending.isEmpty else { return }
        let settled = pending
        pending.removeAll()
        eventLoop.execute {
            for entry in settled {
                entry.route?.sharedBatchCompleted()
                entry.receiver.receive(outcome(entry.count))
            }
        }
    }

    /// No subscriptions, no MONITOR, every request answered: a new channel's state, whatever was
    /// sent on the one before.
    func connectionLost() {
        subscribed = false
        namedUnsubscribesPending = 0
        unsubscribeAllPending = 0
        monitoring = false
        replyMode = RedisReplyMode()
    }

    // MARK: replies

    func beginRead(_ buffer: ByteBuffer) {
        currentRead = buffer
        readID &+= 1
    }

    func endRead() {
        currentRead = nil
    }

    func frameArrived(_ frame: ByteBuffer, start: Int) -> BackendReplyOutcome {
        // A shared connection carries no pub/sub and no RESET (they need a connection of their own):
        // only a RESP3 push can arrive unasked, and its first byte tells.
        // (Read once on shared connections: the type check below needs it too.)
        let sharedFirst = isShared ? frame.getInteger(at: frame.readerIndex, as: UInt8.self) : nil
        if isShared ? sharedFirst == UInt8(ascii: ">") : isUnsolicited(frame) {
            // Its bytes lie between the replies around it: they are no longer one slice.
            pending.first?.contiguousStart = nil
            guard deliversPushes else { return .accepted }
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
            return .accepted
        }
        guard let head = pending.first else {
            return .outOfStep("a reply arrived with no request waiting for one")
        }
        let index = head.responses.count
        if head.expectedReplies != 0, index < 32 {
            let expected = (head.expectedReplies >> UInt64(2 * index)) & 3
            if expected != RedisReplyPlan.anyReply,
               let first = sharedFirst ?? frame.getInteger(at: frame.readerIndex, as: UInt8.self),
               !RedisReplyPlan.canAnswer(expected, first: first) {
                let kind = expected == RedisReplyPlan.bulkReply ? "a bulk string" : "an integer"
                return .outOfStep("a reply starting with '\(RESPLine.printable(first))' arrived for a request answered with \(kind)")
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
        if head.protocolSwitches != nil { followProtocol(head, at: index, reply: frame) }
        if let monitorAt = head.monitorAt, monitorAt == index,
           frame.getInteger(at: frame.readerIndex, as: UInt8.self) == UInt8(ascii: "+") {
            monitoring = true
        }
        // Fills the out-of-band slots (SUBSCRIBE…) that follow this reply; that may complete and
        // remove `head` itself, which must then not be completed a second time. (Only dedicated
        // connections carry out-of-band requests.)
        if !isShared {
            completeSilentHead()
            guard pending.first === head else { return .accepted }
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
        return .accepted
    }

    /// Fills in empty responses for out-of-band requests at the head, completing batches they finish.
    /// Deferred when requests were just written (a receiver is never called from inside send);
    /// while replies are being read it is immediate, so a batch's replies reach the client before
    /// a push that the backend sent after them (a SUBSCRIBE confirmation after a GET's reply).
    private func completeSilentHead(deferred: Bool = false) {
        while let head = pending.first, let flags = head.outOfBand {
            while head.responses.count < head.count, flags[head.responses.count] {
                if head.protocolSwitches != nil { followProtocol(head, at: head.responses.count, reply: nil) }
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

    /// The requests of `batch` that switch the protocol of a dedicated connection: HELLO 3 and
    /// HELLO 2 (with or without options), RESET (back to RESP2); nil if there are none.
    private static func protocolSwitches(_ batch: Batch) -> [(index: Int, resp3: Bool)]? {
        if batch.plainRequests { return nil }  // no HELLO or RESET among them
        var switches: [(index: Int, resp3: Bool)]?
        for i in 0..<batch.count {
            let to: Bool? = batch.withMessageBytes(i) { bytes in
                guard let name = RedisConnectionState.commandName(bytes) else { return nil }
                if RedisReplyPlan.equalsIgnoringCase(name, "reset") { return false }
                guard RedisReplyPlan.equalsIgnoringCase(name, "hello") else { return nil }
                var version: Bool?
                RESPCommandReader.forEachArgument(bytes) { index, start, length in
                    guard index == 1 else { return true }  // the protocol version follows the name
                    if length == 1, bytes[start] == UInt8(ascii: "3") { version = true }
                    if length == 1, bytes[start] == UInt8(ascii: "2") { version = false }
                    return false
                }
                return version
            }
            if let to { switches = (switches ?? []) + [(i, to)] }
        }
        return switches
    }

    /// Request `index` of `entry` was just answered by `reply` (nil: a silent request, filled in
    /// without one): if it switches the protocol, the backend speaks the new one from here on,
    /// unless it refused the switch (a HELLO answered with an error leaves the protocol as it was).
    private func followProtocol(_ entry: Pending, at index: Int, reply: ByteBuffer?) {
        guard let switches = entry.protocolSwitches, let found = switches.first(where: { $0.index == index }) else { return }
        if let reply, let first = reply.getInteger(at: reply.readerIndex, as: UInt8.self),
           first == UInt8(ascii: "-") || first == UInt8(ascii: "!") {
            return
        }
        resp3 = found.resp3
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
}
