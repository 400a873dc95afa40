import NIOCore

/// The requests of a call that its transform answered itself (`call_answer`), to be put back in
/// their places when the responses of the other requests return.
struct LocalAnswers {
    /// By request index, ascending.
    private var replies: [(index: Int, reply: ByteBuffer)] = []

    var isEmpty: Bool { replies.isEmpty }

    /// Answers request `index` with `reply` (again: replaces the earlier answer).
    mutating func set(_ reply: ByteBuffer, at index: Int) {
        var low = 0, high = replies.count
        while low < high {
            let mid = (low + high) / 2
            if replies[mid].index < index { low = mid + 1 } else { high = mid }
        }
        if low < replies.count, replies[low].index == index {
            replies[low].reply = reply
        } else {
            replies.insert((index, reply), at: low)
        }
    }

    mutating func removeAll() { replies.removeAll() }

    /// The indices of a batch of `count` requests that are not answered here, ascending.
    func unansweredIndices(_ count: Int) -> [Int] {
        var indices: [Int] = []
        indices.reserveCapacity(max(count - replies.count, 0))
        var next = 0
        for i in 0..<count {
            if next < replies.count, replies[next].index == i { next += 1 } else { indices.append(i) }
        }
        return indices
    }

    /// Calls `body` with each answered request's index and reply, ascending.
    func forEach(_ body: (Int, ByteBuffer) -> Void) {
        for (index, reply) in replies { body(index, reply) }
    }

    /// Whether every answered index lies within a batch of `count` requests.
    func fit(_ count: Int) -> Bool { (replies.last?.index ?? -1) < count }

    /// The requests that still go on: `requests` without the answered ones (messages shared).
    func unanswered(_ requests: Batch) -> Batch {
        var rest: [ByteBuffer] = []
        rest.reserveCapacity(requests.count - replies.count)
        var next = 0
        for (i, message) in requests.messages.enumerated() {
            if next < replies.count, replies[next].index == i {
                next += 1
            } else {
                rest.append(message)
            }
        }
        return Batch(kind: requests.kind, protocolID: requests.protocolID, messages: rest)
    }

    /// The responses of all `total` requests: those of the unanswered ones (`outcome`, in order,
    /// or its error for each of them) with the local answers in their places.
    func merged(_ outcome: ChainOutcome, requests: Batch, allocator: ByteBufferAllocator) -> Batch {
        let total = requests.count
        var forwarded: Batch?
        var failure: String?
        switch outcome {
        case .responses(let batch): forwarded = batch
        case .failed(let message): failure = message
        }
        var messages: [ByteBuffer] = []
        messages.reserveCapacity(total)
        var next = 0, p = 0
        for i in 0..<total {
            if next < replies.count, replies[next].index == i {
                messages.append(replies[next].reply)
                next += 1
            } else if let forwarded, p < forwarded.count {
                messages.append(forwarded.messages[p])
                p += 1
            } else {
                // The rest of the chain failed, or answered fewer requests than it was sent.
                messages.append(Batch.errorReply(failure ?? "sluice: missing response", answering: requests, at: i,
                                                 allocator: allocator))
            }
        }
        return Batch(kind: Batch.responses, protocolID: requests.protocolID, messages: messages)
    }
}

/// Receives the responses of a call passed on with local answers (call_pass, or call_forward without
/// an on_responses hook) and hands the merged batch to the call's receiver.
///
/// When that receiver takes the replies one by one (a CQL client's slot, see
/// `ResponseReceiver.replyReceiver(forRequest:)`), nothing is merged: the local answers go to it at
/// once (`deliverLocalAnswers`), and the requests passed on keep the per-request path, each reply to
/// its request's receiver as it comes (`replyReceiver(forRequest:)` maps an index of the batch passed
/// on to the call's), so a transform that answers some frames of a CQL batch itself does not make the
/// others wait for each other.
final class LocalAnswersMerger: ResponseReceiver {
    private let answers: LocalAnswers
    /// The call's requests, all of them (for the error replies in their protocol).
    private let requests: Batch
    private let receiver: ResponseReceiver
    private let allocator: ByteBufferAllocator
    /// With a receiver that takes replies one by one: the call's index of each request passed on
    /// (nil: the responses are merged into one batch).
    private let passedOn: [Int]?

    init(answers: LocalAnswers, requests: Batch, receiver: ResponseReceiver, allocator: ByteBufferAllocator) {
        self.answers = answers
        self.requests = requests
        self.receiver = receiver
        self.allocator = allocator
        passedOn = requests.count > 1 && receiver.replyReceiver(forRequest: 0) != nil
            ? answers.unansweredIndices(requests.count) : nil
    }

    /// With a receiver that takes replies one by one, hands it the local answers, on the next turn of
    /// `eventLoop` (never inside the plugin's hook that passed the call); otherwise they wait to be
    /// merged with the other responses.
    func deliverLocalAnswers(on eventLoop: EventLoop) {
        guard passedOn != nil else { return }
        let answers = answers, receiver = receiver, protocolID = requests.protocolID
        eventLoop.execute {
            answers.forEach { index, reply in
                receiver.replyReceiver(forRequest: index)?.receive(.responses(Batch(
                    kind: Batch.responses, protocolID: protocolID, messages: [reply])))
            }
        }
    }

    func replyReceiver(forRequest index: Int) -> ResponseReceiver? {
        guard let passedOn, index >= 0, index < passedOn.count else { return nil }
        return receiver.replyReceiver(forRequest: passedOn[index])
    }

    func receive(_ outcome: ChainOutcome) {
        guard let passedOn else {
            receiver.receive(.responses(answers.merged(outcome, requests: requests, allocator: allocator)))
            return
        }
        // The requests passed on came back together (a later step wanted them so): each reply still
        // goes to its own request's receiver.
        for (k, index) in passedOn.enumerated() {
            guard let one = receiver.replyReceiver(forRequest: index) else { continue }
            let reply: ByteBuffer
            switch outcome {
            case .responses(let batch) where k < batch.count:
                reply = batch.messages[k]
            case .responses:
                reply = Batch.errorReply("sluice: missing response", answering: requests, at: index, allocator: allocator)
            case .failed(let message):
                reply = Batch.errorReply(message, answering: requests, at: index, allocator: allocator)
            }
            one.receive(.responses(Batch(kind: Batch.responses, protocolID: requests.protocolID, messages: [reply])))
        }
    }
}
