import NIOCore

/// Who a response slot reports to: the client connection (`ClientSession`'s concrete handler class
/// for one protocol, so the call lands in code specialised for it).
protocol ResponseSlotOwner: AnyObject {
    /// `slot` was answered (write it, and whatever it unblocks, if the order allows).
    func slotCompleted(_ slot: ResponseSlot)
    /// One reply of a slot whose replies go one by one (`ResponseSlot.repliesOneByOne`) arrived:
    /// write it now. `replies` holds that one reply; `slot.unansweredRequests` is 0 when it was the last.
    func slotReplied(_ slot: ResponseSlot, _ replies: Batch)
    /// The protocol's error replies for requests `first..<first+count` of a slot whose batch (or
    /// those requests) failed; `replyKeys` tells the protocol what it needs of each request.
    func errorReplies(_ message: String, count: Int, replyKeys: ReplyKeys, first: Int) -> Batch
}

/// What the protocol's error replies need to know of each request of a batch
/// (`SourceProtocol.replyKeys`; CQL: the version and stream of each frame; Redis: nothing). Kept in
/// the slot and reused with it: a batch of one request stores no array.
struct ReplyKeys {
    private(set) var first: UInt64 = 0
    /// The keys of requests 1… (empty when the protocol needs only one, or the batch has one request).
    private var rest: [UInt64] = []

    init(first: UInt64 = 0) {
        self.first = first
    }

    /// Request `index`'s key (the last one known for an index beyond them).
    subscript(index: Int) -> UInt64 {
        index == 0 || rest.isEmpty ? first : rest[min(index, rest.count) - 1]
    }

    /// Starts over with `first` as request 0's key.
    mutating func reset(first: UInt64) {
        self.first = first
        if !rest.isEmpty { rest.removeAll(keepingCapacity: true) }
    }

    /// The key of the next request (1, 2…).
    mutating func append(_ key: UInt64) {
        rest.append(key)
    }
}

/// The place in a client connection's response order that one batch of requests occupies. With
/// replies in order (RESP) a slot waits until every slot before it is written, however its own
/// responses came back; otherwise (CQL) it is written as soon as it is answered.
///
/// A slot of several requests whose replies need not wait for each other (`repliesOneByOne`: CQL,
/// where each request is a stream of its own) also takes them one by one: `replyReceiver(forRequest:)`
/// hands a sink one receiver per request, each reply is written as it comes (`slotReplied`), and the
/// slot is done when the last one came. Whole-batch outcomes (a transform answered or failed the
/// batch, or its replies were joined) are written whole, as for any slot.
final class ResponseSlot: ResponseReceiver {
    /// Strong (a weak reference would move every retain of the handler to the slow side-table
    /// path): the handler drops its slots when the client closes, and a slot answered later finds
    /// the handler closed.
    private let owner: ResponseSlotOwner
    private(set) var result: Batch?
    /// Close the client connection once this slot is written (QUIT, protocol error).
    private(set) var closeAfter: Bool
    private(set) var requestCount: Int
    /// The bytes of its requests as they ran (`ClientFlowControl.requestBytesInFlight`).
    private(set) var requestBytes: Int
    /// What the protocol's error replies need to know of the requests (`SourceProtocol.replyKeys`).
    var replyKeys: ReplyKeys
    /// Whether its replies may be taken and written one by one (see the type's comment).
    private(set) var repliesOneByOne = false
    /// With `repliesOneByOne`: the requests whose reply has not come yet.
    private(set) var unansweredRequests = 0
    /// With `repliesOneByOne`: which requests' replies came (reused with the slot).
    private var answered: [Bool] = []
    /// The per-request receivers handed out (reused with the slot: no allocation per request).
    private var requestReceivers: [RequestReply] = []

    init(owner: ResponseSlotOwner, requestCount: Int, requestBytes: Int = 0, replyKey: UInt64 = 0,
         closeAfter: Bool = false) {
        self.owner = owner
        self.requestCount = requestCount
        self.requestBytes = requestBytes
        replyKeys = ReplyKeys(first: replyKey)
        self.closeAfter = closeAfter
    }

    /// A slot already answered (QUIT's +OK, a protocol error).
    init(owner: ResponseSlotOwner, answer: Batch, closeAfter: Bool) {
        self.owner = owner
        result = answer
        requestCount = answer.count
        requestBytes = 0
        replyKeys = ReplyKeys()
        self.closeAfter = closeAfter
    }

    /// Makes a written slot, referenced by nothing else, the slot of a new batch (one allocation
    /// less per batch).
    func reuse(requestCount: Int, requestBytes: Int = 0, replyKey: UInt64 = 0) {
        result = nil
        closeAfter = false
        self.requestCount = requestCount
        self.requestBytes = requestBytes
        replyKeys.reset(first: replyKey)
        repliesOneByOne = false
    }

    /// Lets the slot's replies be taken one by one (call before its batch runs; a batch of more
    /// than one request).
    func takeRepliesOneByOne() {
        repliesOneByOne = true
        unansweredRequests = requestCount
        if answered.count < requestCount { answered.append(contentsOf: repeatElement(false, count: requestCount - answered.count)) }
        for i in 0..<requestCount { answered[i] = false }
    }

    func replyReceiver(forRequest index: Int) -> ResponseReceiver? {
        guard repliesOneByOne, index >= 0, index < requestCount else { return nil }
        while requestReceivers.count <= index { requestReceivers.append(RequestReply(index: requestReceivers.count)) }
        let receiver = requestReceivers[index]
        receiver.slot = self  // until its reply came (a cycle only while the request is in flight)
        return receiver
    }

    func receive(_ outcome: ChainOutcome) {
        guard result == nil else { return }
        if repliesOneByOne {
            guard unansweredRequests > 0 else { return }
            if unansweredRequests < requestCount {
                // Some replies went out already: the rest go one by one too.
                for i in 0..<requestCount where !answered[i] {
                    switch outcome {
                    case .responses(let batch) where i < batch.count:
                        replied(i, .responses(Batch(kind: Batch.responses, protocolID: batch.protocolID,
                                                    messages: [batch.messages[i]])))
                    case .responses:
                        replied(i, .failed("sluice: missing response"))
                    case .failed:
                        replied(i, outcome)
                    }
                }
                return
            }
            unansweredRequests = 0
            // Receivers handed out and never used let go of the slot (it is answered as a whole).
            for receiver in requestReceivers where receiver.slot != nil { receiver.slot = nil }
        }
        switch outcome {
        case .responses(let batch):
            result = batch
        case .failed(let message):
            result = owner.errorReplies(message, count: requestCount, replyKeys: replyKeys, first: 0)
        }
        owner.slotCompleted(self)
    }

    /// Request `index`'s reply came (once; a second is ignored).
    fileprivate func replied(_ index: Int, _ outcome: ChainOutcome) {
        guard repliesOneByOne, index < requestCount, !answered[index] else { return }
        answered[index] = true
        unansweredRequests -= 1
        switch outcome {
        case .responses(let batch):
            owner.slotReplied(self, batch)
        case .failed(let message):
            owner.slotReplied(self, owner.errorReplies(message, count: 1, replyKeys: replyKeys, first: index))
        }
    }

    /// The receiver of one request's reply.
    private final class RequestReply: ResponseReceiver {
        let index: Int
        /// The slot, while the request is in flight.
        var slot: ResponseSlot?

        init(index: Int) {
            self.index = index
        }

        func receive(_ outcome: ChainOutcome) {
            guard let slot = slot.take() else { return }
            slot.replied(index, outcome)
        }
    }
}
