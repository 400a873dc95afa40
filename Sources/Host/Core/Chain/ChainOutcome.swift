/// What comes back up a chain for one batch of requests.
enum ChainOutcome {
    /// One response per request, in order.
    case responses(Batch)
    /// The whole batch failed (dead backend, unknown target…); the message explains why.
    case failed(String)
}

/// Anything waiting for the responses of a batch: a client connection's response slot, a transform's
/// call that forwarded the batch, or a plugin's `send` completion.
///
/// Every receiver is answered once, with the whole batch (`receive`). A receiver that can also take
/// the replies of its requests one by one, as each comes back (a CQL client's response slot, whose
/// streams are independent, and the wrappers that stand in front of one), says so through
/// `replyReceiver(forRequest:)`: a sink that sends the requests separately then answers each
/// request's receiver as its reply arrives instead of joining them (`CQLSinkRoute`).
protocol ResponseReceiver: AnyObject {
    func receive(_ outcome: ChainOutcome)

    /// The receiver of request `index`'s reply alone (it gets `.responses` with that one reply, or
    /// `.failed`), or nil: this receiver takes the batch's responses together only. Asked by a sink
    /// for every request of a batch before it sends any, so a receiver answers for all indices of
    /// the batch or for none. Default: nil.
    func replyReceiver(forRequest index: Int) -> ResponseReceiver?
}

extension ResponseReceiver {
    @inline(__always)
    func replyReceiver(forRequest index: Int) -> ResponseReceiver? { nil }
}
