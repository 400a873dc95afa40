import NIOCore

/// Who a response slot reports to: the client connection (`ClientSession`'s concrete handler class
/// for one protocol, so the call lands in code specialised for it).
protocol ResponseSlotOwner: AnyObject {
    /// `slot` was answered (write it, and whatever it unblocks, if the order allows).
    func slotCompleted(_ slot: ResponseSlot)
    /// The protocol's error replies for a slot whose batch failed as a whole.
    func errorReplies(_ message: String, count: Int, replyKey: UInt64) -> Batch
}

/// The place in a client connection's response order that one batch of requests occupies. With
/// replies in order (RESP) a slot waits until every slot before it is written, however its own
/// responses came back; otherwise (CQL) it is written as soon as it is answered.
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
    /// What the protocol's error replies need to know of the requests (`SourceProtocol.replyKey`).
    private(set) var replyKey: UInt64

    init(owner: ResponseSlotOwner, requestCount: Int, requestBytes: Int = 0, replyKey: UInt64 = 0,
         closeAfter: Bool = false) {
        self.owner = owner
        self.requestCount = requestCount
        self.requestBytes = requestBytes
        self.replyKey = replyKey
        self.closeAfter = closeAfter
    }

    /// A slot already answered (QUIT's +OK, a protocol error).
    init(owner: ResponseSlotOwner, answer: Batch, closeAfter: Bool) {
        self.owner = owner
        result = answer
        requestCount = answer.count
        requestBytes = 0
        replyKey = 0
        self.closeAfter = closeAfter
    }

    /// Makes a written slot, referenced by nothing else, the slot of a new batch (one allocation
    /// less per batch).
    func reuse(requestCount: Int, requestBytes: Int = 0, replyKey: UInt64 = 0) {
        result = nil
        closeAfter = false
        self.requestCount = requestCount
        self.requestBytes = requestBytes
        self.replyKey = replyKey
    }

    func receive(_ outcome: ChainOutcome) {
        guard result == nil else { return }
        switch outcome {
        case .responses(let batch):
            result = batch
        case .failed(let message):
            result = owner.errorReplies(message, count: requestCount, replyKey: replyKey)
        }
        owner.slotCompleted(self)
    }
}
