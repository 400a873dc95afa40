/// Passes a batch's responses on after applying the session changes whose replies succeeded
/// (`RedisSessionChange`, `SessionFacts.redis`).
final class RedisSessionObserver: ResponseReceiver {
    private let facts: SessionFacts
    private let changes: [(index: Int, change: RedisSessionChange)]
    private let receiver: ResponseReceiver

    init(facts: SessionFacts, changes: [(index: Int, change: RedisSessionChange)], receiver: ResponseReceiver) {
        self.facts = facts
        self.changes = changes
        self.receiver = receiver
    }

    /// The receiver to run `batch` with: `receiver` itself when no request of the batch is a
    /// session command (HELLO, SELECT, AUTH, CLIENT SETNAME, RESET), else an observer in front of it.
    static func observing(_ batch: Batch, facts: SessionFacts, receiver: ResponseReceiver) -> ResponseReceiver {
        guard let changes = RedisSessionChange.changes(in: batch) else { return receiver }
        return RedisSessionObserver(facts: facts, changes: changes, receiver: receiver)
    }

    func receive(_ outcome: ChainOutcome) {
        if case .responses(let batch) = outcome {
            for (index, change) in changes where index < batch.count
                && batch.withMessageBytes(index, { RedisSessionChange.succeeded(change, reply: $0) }) {
                facts.apply(change)
            }
        }
        receiver.receive(outcome)
    }
}
