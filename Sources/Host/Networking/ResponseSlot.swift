import NIOCore

/// The place in a client connection's response order that one batch of requests occupies.
/// Responses are written strictly in request order: a slot waits until every slot before it is
/// written, however its own responses came back.
final class ResponseSlot: ResponseReceiver {
    /// Strong (a weak reference would move every retain of the handler to the slow side-table
    /// path): the handler drops its slots when the client closes, and a slot answered later finds
    /// the handler closed.
    private let owner: RedisSourceHandler
    private(set) var result: Batch?
    /// Close the client connection once this slot is written (QUIT, protocol error).
    private(set) var closeAfter: Bool
    private(set) var requestCount: Int

    init(owner: RedisSourceHandler, requestCount: Int, closeAfter: Bool = false) {
        self.owner = owner
        self.requestCount = requestCount
        self.closeAfter = closeAfter
    }

    /// A slot already answered (QUIT's +OK, a protocol error).
    init(owner: RedisSourceHandler, answer: Batch, closeAfter: Bool) {
        self.owner = owner
        result = answer
        requestCount = answer.count
        self.closeAfter = closeAfter
    }

    /// Makes a written slot, referenced by nothing else, the slot of a new batch (one allocation
    /// less per batch).
    func reuse(requestCount: Int) {
        result = nil
        closeAfter = false
        self.requestCount = requestCount
    }

    func receive(_ outcome: ChainOutcome) {
        guard result == nil else { return }
        switch outcome {
        case .responses(let batch):
            result = batch
        case .failed(let message):
            result = Batch.errors("ERR \(message)", count: requestCount, allocator: owner.allocator)
        }
        owner.slotCompleted()
    }
}
