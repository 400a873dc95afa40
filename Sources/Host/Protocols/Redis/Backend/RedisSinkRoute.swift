import NIOCore

/// How one client reaches one sink: through its event loop's shared connection while it only sends
/// self-contained commands, and through a connection of its own from the first command that needs
/// connection state (see `RedisConnectionState`).
///
/// The shared connection is the one speaking the client's protocol: a RESP3 client (a lone
/// `HELLO 3`, as redis-py 8, Lettuce and node-redis send first) shares the event loop's RESP3
/// connection instead of needing one of its own. `HELLO 3` or `HELLO 2` at the start of a batch moves
/// the client between the two; anywhere else in a batch it moves the client to a dedicated connection.
///
/// Switches keep order: a batch for another connection than the one this client has batches in
/// flight on waits until those have been answered.
///
/// When the session has more than one sink, the client's connection settings (HELLO, SELECT, AUTH)
/// follow it to every sink: a route whose backend has not seen the latest settings moves to a
/// dedicated connection and replays them before the next batch (see `ClientStateLog`). A missed
/// protocol switch alone only changes which shared connection the route uses.
final class RedisSinkRoute: BackendRoute {
    private let plan: SinkPlan
    private var sinkIndex: Int
    private unowned let session: ChainSession
    /// The session's log (nil with a single sink), read once instead of through `session` per batch.
    private let stateLog: ClientStateLog?
    private let deliversPushes: Bool
    /// The client's protocol as this route follows it (RESP3 after a HELLO 3).
    private var resp3 = false
    private var sharedRESP2: RedisSinkConnection?
    private var sharedRESP3: RedisSinkConnection?
    private var dedicated: RedisSinkConnection?
    /// Batches in flight on a shared connection, and that connection.
    private var inFlightOnShared = 0
    /// Unowned: the shared connections live as long as the process (and `sharedRESP2`/`3` hold
    /// them); a strong reference would cost a retain and release per batch.
    private unowned(unsafe) var inFlightConnection: RedisSinkConnection?
    /// Batches waiting for a switch; a nil connection stands for the dedicated one.
    private var waiting: [(Batch, ResponseReceiver, RedisSinkConnection?)] = []
    /// The newest entry of the session's `ClientStateLog` this route's backend has seen.
    private var stateSequence = 0
    /// The dedicated connection of this RESP3 client was opened by an AUTH, without HELLO 3, and
    /// still owes the switch: HELLO 3 follows the client's next leading AUTH (see `HelloAfterAuth`).
    private var helloOwed = false

    init(plan: SinkPlan, sinkIndex: Int, session: ChainSession, deliversPushes: Bool) {
        self.plan = plan
        self.sinkIndex = sinkIndex
        self.session = session
        stateLog = session.stateLog
        self.deliversPushes = deliversPushes
    }

    func send(_ batch: Batch, receiver: ResponseReceiver) {
        var replay: Batch?
        if let log = stateLog {
            // Entries from this batch's own requests (logged by another route that got a copy of
            // it first, as tee's target does) are not missed: the batch carries them.
            if stateSequence < log.lastSequence {
                if dedicated == nil, let missed = log.missed(after: stateSequence, sending: batch), missed.onlyProtocol {
                    resp3 = missed.resp3
                } else {
                    replay = log.replay(after: stateSequence, sending: batch)
                }
            }
            log.record(batch)
            stateSequence = log.lastSequence
        }
        let needs = needs(batch)
        if dedicated == nil, replay != nil || needs.dedicated {
            // With sink credentials the connection is signed in before its HELLO 3 anyway. A leading
            // HELLO with a version (perhaps with AUTH) sets the protocol itself.
            let opening = replay ?? batch
            helloOwed = resp3 && plan.redis.authCommand == nil && HelloAfterAuth.opensWithAuth(opening)
            let ownHello = resp3 && !helloOwed && !HelloAfterAuth.opensWithProtocolChoice(opening)
            dedicated = RedisSinkConnection(plan: plan, dedicatedTo: session, deliversPushes: deliversPushes,
                                            resp3: ownHello)
        }
        guard dedicated != nil else {
            var receiver = receiver
            if let switchTo = needs.leadingProtocolSwitch {
                receiver = ProtocolSwitchOutcome(route: self, previous: resp3, receiver: receiver)
                resp3 = switchTo
            }
            dispatch(batch, receiver, to: shared())
            return
        }
        if let replay { dispatchOwingHello(replay, DiscardedReplies.shared) }
        dispatchOwingHello(batch, receiver)
    }

    /// Sends a batch on the dedicated connection; while it owes the client's HELLO 3, that goes
    /// right after the batch's leading AUTH.
    private func dispatchOwingHello(_ batch: Batch, _ receiver: ResponseReceiver) {
        guard helloOwed else {
            dispatchToDedicated(batch, receiver)
            return
        }
        if HelloAfterAuth.hasHello(batch) { helloOwed = false }  // the client switches itself
        guard helloOwed, HelloAfterAuth.opensWithAuth(batch) else {
            dispatchToDedicated(batch, receiver)
            return
        }
        let (auth, rest) = HelloAfterAuth.splitAfterFirst(batch)
        let joined = JoinedResponses(parts: rest == nil ? 1 : 2, receiver: receiver)
        dispatchToDedicated(auth, joined.part(0))
        dispatchToDedicated(HelloAfterAuth.helloBatch(), HelloAfterAuthOutcome { [weak self] in self?.helloOwed = false })
        if let rest { dispatchToDedicated(rest, joined.part(1)) }
    }

    /// Sends a batch on the dedicated connection; with sink credentials, the sink's AUTH follows
    /// every RESET in it (see `ResetReauthentication`).
    private func dispatchToDedicated(_ batch: Batch, _ receiver: ResponseReceiver) {
        guard let auth = plan.redis.authCommand, let parts = ResetReauthentication.split(batch) else {
            dispatch(batch, receiver, to: nil)
            return
        }
        let joined = JoinedResponses(parts: parts.count, receiver: receiver)
        for (i, (part, endsWithReset)) in parts.enumerated() {
            dispatch(part, joined.part(i), to: nil)
            if endsWithReset { dispatch(ResetReauthentication.authBatch(auth), DiscardedReplies.shared, to: nil) }
        }
    }

    /// The event loop's shared connection in the client's protocol.
    private func shared() -> RedisSinkConnection {
        if let existing = resp3 ? sharedRESP3 : sharedRESP2 { return existing }
        let connection = session.plan.sharedConnections.redis.connection(sink: sinkIndex, plan: plan, on: session.eventLoop,
                                                                         resp3: resp3)
        if resp3 { sharedRESP3 = connection } else { sharedRESP2 = connection }
        return connection
    }

    private func dispatch(_ batch: Batch, _ receiver: ResponseReceiver, to connection: RedisSinkConnection?) {
        if waiting.isEmpty, canSend(to: connection) {
            sendNow(batch, receiver, to: connection)
        } else {
            waiting.append((batch, receiver, connection))
        }
    }

    /// Nothing is in flight on another shared connection than `connection` (nil: the dedicated one).
    private func canSend(to connection: RedisSinkConnection?) -> Bool {
        inFlightOnShared == 0 || (connection != nil && connection === inFlightConnection)
    }

    private func sendNow(_ batch: Batch, _ receiver: ResponseReceiver, to connection: RedisSinkConnection?) {
        guard let connection else {
            dedicated?.send(batch, receiver: receiver)
            return
        }
        inFlightOnShared += 1
        inFlightConnection = connection
        connection.send(batch, receiver: receiver, route: self)
    }

    /// Called by a shared connection when one of this client's batches was answered (or failed).
    func sharedBatchCompleted() {
        inFlightOnShared -= 1
        if inFlightOnShared == 0 { inFlightConnection = nil }
        while let (batch, receiver, connection) = waiting.first, canSend(to: connection) {
            waiting.removeFirst()
            sendNow(batch, receiver, to: connection)
        }
    }

    /// The backend refused a client's lone HELLO (NOAUTH, or no HELLO at all): as in Redis, the
    /// client keeps the protocol it had, and so does the route.
    fileprivate func protocolSwitchRefused(previous: Bool) {
        resp3 = previous
    }

    var isSubscribed: Bool { dedicated?.isSubscribed ?? false }

    /// Whether the client has a backend connection of its own here (it holds the client's state).
    var hasDedicatedConnection: Bool { dedicated != nil }

    /// Hot reload kept this route for an unchanged sink that has index `index` in the new plan.
    func renumber(_ index: Int) {
        sinkIndex = index
    }

    /// Pauses or resumes reading replies and pushes on this client's dedicated connection.
    func setReadPaused(_ paused: Bool) {
        dedicated?.setReadPaused(paused)
    }

    func close() {
        dedicated?.close()
        let queued = waiting
        waiting.removeAll()
        for (_, receiver, _) in queued { receiver.receive(.failed("sluice: client connection closed")) }
    }

    /// Whether the batch needs the dedicated connection, and the protocol a lone HELLO 2 or 3 at its
    /// start switches the client to (the rest of the batch is then answered in that protocol).
    private func needs(_ batch: Batch) -> (dedicated: Bool, leadingProtocolSwitch: Bool?) {
        if batch.plainRequests { return (false, nil) }
        var leading: Bool?
        for i in 0..<batch.count where batch.withMessageBytes(i, RedisConnectionState.needsDedicatedConnection) {
            // HELLO is among the commands that need one, so only those are checked for a lone switch.
            if i == 0, let version = batch.withMessageBytes(0, RedisConnectionState.protocolSwitch) {
                leading = version == 3
                continue
            }
            return (true, nil)
        }
        return (false, leading)
    }
}

/// Passes on the responses of a batch that starts with a lone HELLO, telling the route when the
/// backend refused it.
private final class ProtocolSwitchOutcome: ResponseReceiver {
    private let route: RedisSinkRoute
    private let previous: Bool
    private let receiver: ResponseReceiver

    init(route: RedisSinkRoute, previous: Bool, receiver: ResponseReceiver) {
        self.route = route
        self.previous = previous
        self.receiver = receiver
    }

    func receive(_ outcome: ChainOutcome) {
        switch outcome {
        case .responses(let batch):
            if batch.count > 0, batch.withMessageBytes(0, { $0.first == UInt8(ascii: "-") }) {
                route.protocolSwitchRefused(previous: previous)
            }
        case .failed:
            route.protocolSwitchRefused(previous: previous)
        }
        receiver.receive(outcome)
    }
}
