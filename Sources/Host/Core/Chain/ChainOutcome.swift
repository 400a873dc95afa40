/// What comes back up a chain for one batch of requests.
enum ChainOutcome {
    /// One response per request, in order.
    case responses(Batch)
    /// The whole batch failed (dead backend, unknown target…); the message explains why.
    case failed(String)
}

/// Anything waiting for the responses of a batch: a client connection's response slot, a transform's
/// call that forwarded the batch, or a plugin's `send` completion.
protocol ResponseReceiver: AnyObject {
    func receive(_ outcome: ChainOutcome)
}
