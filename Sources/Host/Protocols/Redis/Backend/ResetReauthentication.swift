import NIOCore

/// RESET signs a connection out of a Redis server that requires a password, so on a sink with
/// credentials a client's RESET would leave its dedicated connection answering `-NOAUTH` to
/// everything after it (the client never had the backend's password to send). The route therefore
/// sends the sink's own AUTH right after every RESET, its reply discarded: a batch holding a RESET is
/// cut after it, and the parts' responses are joined again in order for the client.
enum ResetReauthentication {
    /// The batch's parts, each ending with a RESET except perhaps the last (`endsWithReset`); nil if
    /// it holds none.
    static func split(_ batch: Batch) -> [(part: Batch, endsWithReset: Bool)]? {
        var parts: [(part: Batch, endsWithReset: Bool)] = []
        var start = 0
        for i in 0..<batch.count where batch.withMessageBytes(i, { RESPCommandReader.commandIs($0, "reset") }) {
            parts.append((Batch(kind: batch.kind, protocolID: batch.protocolID, messages: Array(batch.messages[start...i])), true))
            start = i + 1
        }
        guard !parts.isEmpty else { return nil }
        if start < batch.count {
            parts.append((Batch(kind: batch.kind, protocolID: batch.protocolID, messages: Array(batch.messages[start...])), false))
        }
        return parts
    }

    /// The sink's AUTH as a request batch.
    static func authBatch(_ command: [UInt8]) -> Batch {
        var bytes = ByteBufferAllocator().buffer(capacity: command.count)
        bytes.writeBytes(command)
        return Batch(kind: Batch.requests, protocolID: Batch.redis, messages: [bytes])
    }
}

/// Joins the responses of a batch's parts, sent one after the other, into one batch for `receiver`.
/// A failed part fails the whole batch (once).
final class JoinedResponses {
    private let receiver: ResponseReceiver
    private var parts: [Batch?]
    private var failed = false

    init(parts: Int, receiver: ResponseReceiver) {
        self.receiver = receiver
        self.parts = Array(repeating: nil, count: parts)
    }

    /// The receiver of part `index`.
    func part(_ index: Int) -> ResponseReceiver { Part(joined: self, index: index) }

    fileprivate func received(_ outcome: ChainOutcome, part index: Int) {
        guard !failed else { return }
        switch outcome {
        case .failed(let message):
            failed = true
            receiver.receive(.failed(message))
        case .responses(let batch):
            parts[index] = batch
            guard parts.allSatisfy({ $0 != nil }) else { return }
            let messages = parts.flatMap { $0!.messages }
            receiver.receive(.responses(Batch(kind: Batch.responses, protocolID: Batch.redis, messages: messages)))
        }
    }

    private final class Part: ResponseReceiver {
        let joined: JoinedResponses
        let index: Int
        init(joined: JoinedResponses, index: Int) {
            self.joined = joined
            self.index = index
        }
        func receive(_ outcome: ChainOutcome) { joined.received(outcome, part: index) }
    }
}
