import NIOCore

/// How one client reaches one sink: through its event loop's shared connection while it only sends
/// self-contained commands, and through a connection of its own from the first command that needs
/// connection state (see `RedisConnectionState`).
///
/// The switch keeps order: requests that need the dedicated connection wait until every batch this
/// client still has in flight on the shared connection has been answered.
///
/// When the session has more than one sink, the client's connection settings (HELLO, SELECT, AUTH)
/// follow it to every sink: a route whose backend has not seen the latest settings moves to a
/// dedicated connection and replays them before the next batch (see `ClientStateLog`).
final class SinkRoute {
    private let plan: SinkPlan
    private unowned let session: ChainSession
    private let shared: RedisSinkConnection
    private let deliversPushes: Bool
    private var dedicated: RedisSinkConnection?
    private var inFlightOnShared = 0
    private var waiting: [(Batch, ResponseReceiver)] = []
    /// The newest entry of the session's `ClientStateLog` this route's backend has seen.
    private var stateSequence = 0

    init(plan: SinkPlan, session: ChainSession, shared: RedisSinkConnection, deliversPushes: Bool) {
        self.plan = plan
        self.session = session
        self.shared = shared
        self.deliversPushes = deliversPushes
    }

    func send(_ batch: Batch, receiver: ResponseReceiver) {
        var replay: Batch?
        if let log = session.stateLog {
            replay = log.replay(after: stateSequence)
            log.record(batch)
            stateSequence = log.lastSequence
        }
        if dedicated == nil, replay != nil || needsDedicated(batch) {
            dedicated = RedisSinkConnection(plan: plan, dedicatedTo: session, deliversPushes: deliversPushes)
        }
        guard dedicated != nil else {
            inFlightOnShared += 1
            shared.send(batch, receiver: receiver, route: self)
            return
        }
        if let replay { sendDedicated(replay, receiver: DiscardedReplies.shared) }
        sendDedicated(batch, receiver: receiver)
    }

    private func sendDedicated(_ batch: Batch, receiver: ResponseReceiver) {
        if inFlightOnShared > 0 || !waiting.isEmpty {
            waiting.append((batch, receiver))
        } else {
            dedicated?.send(batch, receiver: receiver)
        }
    }

    /// Called by the shared connection when one of this client's batches was answered (or failed).
    func sharedBatchCompleted() {
        inFlightOnShared -= 1
        guard inFlightOnShared == 0, let dedicated, !waiting.isEmpty else { return }
        let queued = waiting
        waiting.removeAll()
        for (batch, receiver) in queued { dedicated.send(batch, receiver: receiver) }
    }

    var isSubscribed: Bool { dedicated?.isSubscribed ?? false }

    /// Pauses or resumes reading replies and pushes on this client's dedicated connection.
    func setReadPaused(_ paused: Bool) {
        dedicated?.setReadPaused(paused)
    }

    func close() {
        dedicated?.close()
        let queued = waiting
        waiting.removeAll()
        for (_, receiver) in queued { receiver.receive(.failed("sluice: client connection closed")) }
    }

    private func needsDedicated(_ batch: Batch) -> Bool {
        for i in 0..<batch.count where batch.withMessageBytes(i, RedisConnectionState.needsDedicatedConnection) {
            return true
        }
        return false
    }
}
