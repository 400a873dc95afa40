import NIOCore

/// How one client reaches one sink: through its event loop's shared connection while it only sends
/// self-contained commands, and through a connection of its own from the first command that needs
/// connection state (see `RedisConnectionState`).
///
/// The switch keeps order: requests that need the dedicated connection wait until every batch this
/// client still has in flight on the shared connection has been answered.
final class SinkRoute {
    private let plan: SinkPlan
    private unowned let session: ChainSession
    private let shared: RedisSinkConnection
    private let deliversPushes: Bool
    private var dedicated: RedisSinkConnection?
    private var inFlightOnShared = 0
    private var waiting: [(Batch, ResponseReceiver)] = []

    init(plan: SinkPlan, session: ChainSession, shared: RedisSinkConnection, deliversPushes: Bool) {
        self.plan = plan
        self.session = session
        self.shared = shared
        self.deliversPushes = deliversPushes
    }

    func send(_ batch: Batch, receiver: ResponseReceiver) {
        if dedicated == nil, needsDedicated(batch) {
            dedicated = RedisSinkConnection(plan: plan, dedicatedTo: session, deliversPushes: deliversPushes)
        }
        guard let dedicated else {
            inFlightOnShared += 1
            shared.send(batch, receiver: receiver, route: self)
            return
        }
        if inFlightOnShared > 0 || !waiting.isEmpty {
            waiting.append((batch, receiver))
        } else {
            dedicated.send(batch, receiver: receiver)
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
