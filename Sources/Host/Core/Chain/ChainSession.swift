import NIOCore

/// Everything one client connection needs to run chains: its chain instances (created when first
/// used), its own connections to each sink (so SELECT, AUTH, MULTI, blocking commands and pub/sub
/// state stay per client), and a way to push unsolicited messages to the client.
/// Lives on the connection's event loop only.
final class ChainSession {
    let eventLoop: EventLoop
    let allocator: ByteBufferAllocator
    /// The configuration generation's plan; replaced only by `move` (hot reload).
    private(set) var plan: RuntimePlan
    /// The handles of this thread that plugins get for calls, batches, timers and sends (taken on
    /// first use, which is on the connection's event loop).
    lazy var handles = HandleTable.current
    /// "ip:port" of the client, NUL-terminated, for `client_address`.
    let clientAddress: UnsafeMutableBufferPointer<UInt8>
    /// The client's session as plugins read it (`get_property`).
    let facts: SessionFacts
    /// The sink the client's main chain ends at (nil when it ends at no sink): the one whose
    /// unsolicited messages (pub/sub, RESP3 pushes, CQL events) go to the client, and whose
    /// backend decides the CQL versions the client may open with.
    private(set) var mainSink: Int?
    private var chains: [ChainInstance?]
    /// The routes to the sinks, by sink index, made on first use (read by each protocol's
    /// extension, e.g. ChainSession+CQL's event routes).
    private(set) var sinks: [SinkRoute?]
    private var closed = false
    /// The client's connection settings, replayed to each sink it reaches; nil with a single sink.
    let stateLog: ClientStateLog?
    /// Called with unsolicited bytes from a pushing sink, and whether they followed replies the
    /// backend sent before them (then they must not reach the client ahead of those).
    var onPush: ((ByteBuffer, Bool) -> Void)?
    /// Called when a pushing sink lost an established connection: the client's server-side state is
    /// gone, so the client connection must be closed too.
    var onBackendLost: ((String) -> Void)?

    init(eventLoop: EventLoop, allocator: ByteBufferAllocator, plan: RuntimePlan, clientAddress: String,
         mainChain: Int, sourceName: String = "") {
        self.eventLoop = eventLoop
        self.allocator = allocator
        self.plan = plan
        let utf8 = Array(clientAddress.utf8) + [0]
        self.clientAddress = .allocate(capacity: utf8.count)
        _ = self.clientAddress.initialize(from: utf8)
        facts = SessionFacts(eventLoop: eventLoop, sourceName: sourceName)
        chains = Array(repeating: nil, count: plan.chains.count)
        sinks = Array(repeating: nil, count: plan.sinks.count)
        stateLog = plan.sinks.count > 1 ? ClientStateLog() : nil
        mainSink = Self.mainSink(of: plan, mainChain: mainChain)
    }

    private static func mainSink(of plan: RuntimePlan, mainChain: Int) -> Int? {
        if case .sink(let s)? = plan.chains[mainChain].steps.last { return s }
        return nil
    }

    deinit {
        clientAddress.deallocate()
    }

    /// The chain instance for chain index, creating its plugin instances on first use.
    func chain(_ index: Int) throws -> ChainInstance {
        if let existing = chains[index] { return existing }
        let created = try ChainInstance(session: self, plan: plan.chains[index])
        chains[index] = created
        return created
    }

    /// This client's route to sink index (shared connection first, dedicated once stateful).
    func sink(_ index: Int) -> SinkRoute {
        if let existing = sinks[index] { return existing }
        let sinkPlan = plan.sinks[index]
        let route: SinkRoute
        switch sinkPlan.protocolKind {
        case .redis:
            route = .redis(RedisSinkRoute(plan: sinkPlan, sinkIndex: index, session: self,
                                          deliversPushes: index == mainSink))
        case .cql:
            route = .cql(CQLSinkRoute(plan: sinkPlan, sinkIndex: index, session: self))
        }
        sinks[index] = route
        return route
    }

    /// Runs a batch the client sent through its chain; the session facts follow the replies of the
    /// requests in it that change them (each protocol's observer: CQL's USE and PREPARE, Redis's
    /// HELLO, SELECT, AUTH, CLIENT SETNAME and RESET).
    func runFromClient(_ batch: Batch, on chain: ChainInstance, receiver: ResponseReceiver) {
        if batch.protocolID == Batch.cql {
            // CQL: the facts follow the USEs and PREPAREs whose results reach the client.
            chain.run(batch, from: 0, receiver: CQLSessionObserver.observing(batch, facts: facts, receiver: receiver))
            return
        }
        chain.run(batch, from: 0, receiver: RedisSessionObserver.observing(batch, facts: facts, receiver: receiver))
    }

    /// Whether the client switched to RESP3 (a HELLO 3 that succeeded), for replies plugins build.
    var clientSpeaksRESP3: Bool { facts.redis.protocolVersion == 3 }

    /// Runs `body` (`hook` of `step`'s plugin) with this session and step as the thread's active
    /// ones (two stores and two restores; no reference counting), and the step and hook recorded
    /// for the crash handler (one thread-local store and restore).
    @inline(__always)
    func runningHook<R>(_ step: TransformStep, _ hook: PluginHook, _ body: () -> R) -> R {
        handles.runningHook(session: .passUnretained(self), step: .passUnretained(step)) {
            recordingCrashStep(step.crashLabels, hook, body)
        }
    }

    /// Runs a batch through a named target (a chain from its start, or a sink directly).
    func send(_ batch: Batch, to target: TargetRef, receiver: ResponseReceiver) {
        guard !closed else {
            receiver.receive(.failed("sluice: client connection closed"))
            return
        }
        switch target.kind {
        case .sink(let index):
            sink(index).send(batch, receiver: receiver)
        case .chain(let index):
            do {
                try chain(index).run(batch, from: 0, receiver: receiver)
            } catch {
                receiver.receive(.failed("sluice: \(error)"))
            }
        }
    }

    /// The client cannot take more bytes (or can again): its dedicated backend connections stop (or
    /// resume) reading, so a flood of pub/sub messages waits at the backend instead of in memory.
    func setBackendReadingPaused(_ paused: Bool) {
        for route in sinks { route?.setReadPaused(paused) }
    }

    /// Whether the client holds pub/sub subscriptions on any sink.
    var hasSubscriptions: Bool { sinks.contains { $0?.isSubscribed ?? false } }

    func deliverPush(_ bytes: ByteBuffer, afterReplies: Bool = false) {
        onPush?(bytes, afterReplies)
    }

    func backendLost(_ reason: String) {
        onBackendLost?(reason)
    }

    /// Whether a plugin of this session still has work of its own going: a call it holds, or a
    /// send it made and that is not complete (then the session is not at a safe point to move).
    var hasPendingPluginWork: Bool { chains.contains { $0?.hasPendingWork ?? false } }

    /// Whether a sink this session holds a backend connection of its own to (the client's database,
    /// user, name…) is missing from `kept` (old sink index to new): the sinks a reload keeps.
    func holdsBackendState(outside kept: [Int: Int]) -> Bool {
        sinks.indices.contains { sinks[$0]?.hasDedicatedConnection == true && kept[$0] == nil }
    }

    /// Hot reload: moves the session to a newer generation's plan at a safe point. Its plugin
    /// instances are freed (instance_free) and those of `mainChain` of the new plan made; routes to
    /// the sinks in `sinkIndices` (old index to new, the sinks that did not change) are kept with
    /// their backend connections (and the client's state on them), the others closed. The session
    /// facts (database, protocol, user) stay.
    func move(to next: RuntimePlan, mainChain: Int, sinkIndices: [Int: Int]) throws -> ChainInstance {
        for chain in chains { chain?.close() }
        var kept = [SinkRoute?](repeating: nil, count: next.sinks.count)
        for (index, route) in sinks.enumerated() {
            guard let route else { continue }
            if let newIndex = sinkIndices[index] {
                route.renumber(newIndex)
                kept[newIndex] = route
            } else {
                route.close()
            }
        }
        sinks = kept
        plan = next
        chains = Array(repeating: nil, count: next.chains.count)
        mainSink = Self.mainSink(of: next, mainChain: mainChain)
        makeCQLEventRouteAfterMove()
        return try chain(mainChain)
    }

    /// Closes backend connections first (pending batches fail and drain back through the plugins),
    /// then frees the plugin instances.
    func close() {
        guard !closed else { return }
        closed = true
        for sink in sinks { sink?.close() }
        for chain in chains { chain?.close() }
        onPush = nil
        onBackendLost = nil
    }
}
