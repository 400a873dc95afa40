import NIOConcurrencyHelpers
import NIOCore

/// The shared connections to Cassandra sinks (a part of `SharedSinkConnections`): one per event
/// loop, sink, protocol version, keyspace and credentials, created on first use, and one event
/// connection per protocol version (REGISTER, EVENT).
/// Looked up once per client connection and sink (and a CQL client's USE), never per request.
final class CQLConnectionTable: @unchecked Sendable {
    private let lock = NIOLock()

    /// A Cassandra sink's connection: its clients' protocol version and keyspace; `events`: the
    /// connection that carries REGISTER and EVENT.
    private struct Key: Hashable {
        let eventLoop: ObjectIdentifier
        let sink: Int
        let version: CQLVersion
        let keyspace: String?
        let events: Bool
        /// Passed-through credentials (`CQLIdentity`); nil: the sink's own.
        let identity: CQLIdentity?
        /// 0: the key's connection; 1 ..< `connectionsPerKey`: one opened because those before
        /// it had every stream id in flight.
        var lane = 0

        func renumbered(_ index: Int) -> Key {
            Key(eventLoop: eventLoop, sink: index, version: version, keyspace: keyspace, events: events, identity: identity,
                lane: lane)
        }

        func inLane(_ lane: Int) -> Key {
            Key(eventLoop: eventLoop, sink: sink, version: version, keyspace: keyspace, events: events, identity: identity,
                lane: lane)
        }
    }

    /// How many connections one key (event loop, sink, version, keyspace, credentials) may have:
    /// a connection carries 32768 requests at once (its stream ids), and when every one is in flight
    /// the next request goes on another connection of the key, up to this many; past that it gets
    /// OVERLOADED.
    static let connectionsPerKey = 4

    /// How long an extra connection of a key (one opened because those before it had every stream
    /// id in flight) may go without a request before it is closed: a burst's connections do not
    /// stay open for good once the load fell. The key's first connection is never closed for being
    /// idle, nor one with a request in flight (or an id the reply timeout keeps reserved).
    static let extraConnectionIdleTime = TimeAmount.seconds(60)
    /// How often the extra connections of an event loop are checked (while it has any): one idle at
    /// `idleChecksBeforeClose` checks in a row (nothing in flight at each, and no request given
    /// to it between them) is closed, so between `extraConnectionIdleTime` and that plus one
    /// period after its last request ended.
    static let idleCheckPeriod = TimeAmount.seconds(20)
    static var idleChecksBeforeClose: Int {
        Int(extraConnectionIdleTime.nanoseconds / idleCheckPeriod.nanoseconds) + 1
    }

    /// A Cassandra connection of the table, and for an extra one (lane 1 or more) whether it is idle.
    private struct Entry {
        let connection: CQLSinkConnection
        let loop: EventLoop
        /// A request was given to it since the last idle check.
        var picked = false
        /// The idle checks in a row that found it idle.
        var idleChecks = 0
    }

    private var connections: [Key: Entry] = [:]
    /// The event loops whose extra connections are being checked for idleness.
    private var checkingIdle: Set<ObjectIdentifier> = []
    /// The EVENT fan-out of each event connection (same key).
    private var events: [Key: CQLEventFanOut] = [:]

    /// The shared connection to Cassandra sink `index` for `eventLoop`, of `version`, whose
    /// handshake USEs `keyspace`: the first of the key's that has a stream id free, opening another
    /// (up to `connectionsPerKey`) when all have every id in flight. Call on that event loop.
    func connection(sink index: Int, plan: SinkPlan, on eventLoop: EventLoop, version: CQLVersion,
                    keyspace: String?, identity: CQLIdentity? = nil) -> CQLSinkConnection {
        connectionForRequest(sink: index, plan: plan, on: eventLoop, version: version, keyspace: keyspace,
                             identity: identity).connection
    }

    /// `connection`, and whether it is an extra connection of its key (the first had every
    /// stream id in flight): a route does not keep one of those for its next requests, which look
    /// again, so they go back to the first connection once it has ids free and the extra one can
    /// close when idle (`extraConnectionIdleTime`). Call on that event loop.
    func connectionForRequest(sink index: Int, plan: SinkPlan, on eventLoop: EventLoop, version: CQLVersion,
                              keyspace: String?, identity: CQLIdentity? = nil) -> (connection: CQLSinkConnection, extra: Bool) {
        let key = Key(eventLoop: ObjectIdentifier(eventLoop), sink: index, version: version, keyspace: keyspace,
                      events: false, identity: identity)
        let first = connection(key, plan: plan, on: eventLoop)
        guard !first.pairing.hasFreeStreamID else { return (first, false) }
        for lane in 1..<Self.connectionsPerKey {
            let other = connection(key.inLane(lane), plan: plan, on: eventLoop)
            if other.pairing.hasFreeStreamID {
                lock.withLock { connections[key.inLane(lane)]?.picked = true }
                return (other, true)
            }
        }
        return (first, false)  // every one is full: the request gets OVERLOADED
    }

    // MARK: closing idle extra connections

    /// Checks the extra connections on `loop` once (`idleCheckPeriod`) and closes those idle at
    /// `idleChecksBeforeClose` checks in a row. Returns whether extra connections remain on
    /// `loop` (else the checks stop until another opens). Call on that event loop.
    @discardableResult
    func checkIdleConnections(on loop: EventLoop) -> Bool {
        let id = ObjectIdentifier(loop)
        let (closing, remaining) = lock.withLock { () -> ([CQLSinkConnection], Bool) in
            var closing: [CQLSinkConnection] = []
            var remaining = false
            for (key, entry) in connections where key.eventLoop == id && key.lane > 0 {
                var entry = entry
                let pairing = entry.connection.pairing
                let idle = !entry.picked && pairing.count == 0 && pairing.overdue == 0
                entry.idleChecks = idle ? entry.idleChecks + 1 : 0
                entry.picked = false
                if entry.idleChecks >= Self.idleChecksBeforeClose || entry.connection.isClosed {
                    connections[key] = nil
                    closing.append(entry.connection)
                } else {
                    connections[key] = entry
                    remaining = true
                }
            }
            if !remaining { checkingIdle.remove(id) }
            return (closing, remaining)
        }
        for connection in closing where !connection.isClosed {
            HostLog.sinks.info("sink '\(connection.plan.name)' (\(connection.plan.address)): closing an extra connection, idle for \(Self.extraConnectionIdleTime.nanoseconds / 1_000_000_000) s")
            connection.close()
        }
        return remaining
    }

    /// Starts checking the extra connections on `loop` for idleness, unless that runs already.
    private func checkIdleConnectionsPeriodically(on loop: EventLoop) {
        guard lock.withLock({ checkingIdle.insert(ObjectIdentifier(loop)).inserted }) else { return }
        loop.scheduleRepeatedTask(initialDelay: Self.idleCheckPeriod, delay: Self.idleCheckPeriod) { [weak self] task in
            guard let self, checkIdleConnections(on: loop) else {
                task.cancel()
                return
            }
        }
    }

    /// The event connection to Cassandra sink `index` for `eventLoop` and `version`, and where its
    /// EVENT frames go. Call on that event loop.
    func eventConnection(sink index: Int, plan: SinkPlan, on eventLoop: EventLoop, version: CQLVersion,
                         identity: CQLIdentity? = nil) -> (CQLSinkConnection, CQLEventFanOut) {
        let key = Key(eventLoop: ObjectIdentifier(eventLoop), sink: index, version: version, keyspace: nil, events: true,
                      identity: identity)
        let connection = self.connection(key, plan: plan, on: eventLoop)
        let fanOut = lock.withLock { () -> CQLEventFanOut in
            if let existing = events[key] { return existing }
            let created = CQLEventFanOut()
            events[key] = created
            return created
        }
        connection.pairing.events = { [weak fanOut] frame in fanOut?.deliver(frame) }
        connection.pairing.lost = { [weak fanOut, unowned connection] in fanOut?.connectionLost(connection, version: version) }
        return (connection, fanOut)
    }

    /// Forgets and closes `connection` when nothing is in flight on it: its handshake was refused
    /// as an answer to the client (a USE of a keyspace that does not exist, a client's own
    /// credentials refused), so keeping it would only let clients grow the table without end.
    /// Call on its event loop.
    func discard(_ connection: CQLSinkConnection) {
        guard connection.pairing.count == 0 else { return }
        let removed = lock.withLock { () -> Bool in
            guard let key = connections.first(where: { $0.value.connection === connection })?.key else { return false }
            connections[key] = nil
            return true
        }
        if removed { connection.close() }
    }

    /// Forgets `connection` and closes it (in the next turn, after the reply being read was
    /// delivered): a request switched it to another keyspace, so it is no longer the connection
    /// of its key. Clients' routes that used it look their connection up again once it is closed;
    /// requests still in flight on it fail. Call on its event loop.
    func retire(_ connection: CQLSinkConnection) {
        lock.withLock {
            guard let key = connections.first(where: { $0.value.connection === connection })?.key else { return }
            connections[key] = nil
        }
        HostLog.sinks.warning("sink '\(connection.plan.name)' (\(connection.plan.address)): a request switched a shared connection to another keyspace (a prepared USE); closing it")
        connection.eventLoop.execute { connection.close() }
    }

    /// How many Cassandra connections the table holds (for tests).
    var connectionCount: Int { lock.withLock { connections.count } }

    private func connection(_ key: Key, plan: SinkPlan, on eventLoop: EventLoop) -> CQLSinkConnection {
        let (connection, created) = lock.withLock { () -> (CQLSinkConnection, Bool) in
            if let existing = connections[key] { return (existing.connection, false) }
            let created = CQLSinkConnection(plan: plan, sharedOn: eventLoop, version: key.version, keyspace: key.keyspace,
                                            identity: key.identity?.credentials)
            connections[key] = Entry(connection: created, loop: eventLoop)
            return (created, true)
        }
        if created {
            installHooks(on: connection, key: key, plan: plan, loop: eventLoop)
            if key.lane > 0 { checkIdleConnectionsPeriodically(on: eventLoop) }
        }
        return connection
    }

    /// What a CQL connection does that reaches back into the table holding it: re-prepare (on the
    /// connection of the statement's keyspace, recorded in the sink's registry) and retiring it
    /// when a request switched its keyspace. Set when it is created, and again when a reload
    /// carries it over to the next generation's table (`plan`: that generation's sink). The table
    /// is held weakly: a generation that ended must not be reached, nor trap when it is gone.
    /// Call on the connection's event loop.
    private func installHooks(on connection: CQLSinkConnection, key: Key, plan: SinkPlan, loop: EventLoop) {
        connection.pairing.registry = plan.cql.preparedStatements
        connection.pairing.keyspaceSwitched = { [weak self, unowned connection] in self?.retire(connection) }
        CQLReprepare.install(on: connection, version: key.version, registry: plan.cql.preparedStatements) { [weak self] keyspace in
            self?.connection(sink: key.sink, plan: plan, on: loop, version: key.version, keyspace: keyspace,
                             identity: key.identity)
        }
    }

    // MARK: hot reload

    /// Hands the connections of sinks that a reload keeps to the new generation's table: `sinkIndices`
    /// maps a sink's index here to its index there, `nextSinks` are that generation's sinks. Connections
    /// carried over re-prepare through the new table and the new sink's registry, which learns the
    /// statements recorded here.
    func carryOver(to next: CQLConnectionTable, sinkIndices: [Int: Int], nextSinks: [SinkPlan]) {
        let kept = lock.withLock {
            connections.compactMap { key, entry -> (Key, CQLSinkConnection, EventLoop, CQLEventFanOut?)? in
                guard let index = sinkIndices[key.sink] else { return nil }
                return (key.renumbered(index), entry.connection, entry.loop, events[key])
            }
        }
        next.lock.withLock {
            for (key, connection, loop, events) in kept where next.connections[key] == nil {
                next.connections[key] = Entry(connection: connection, loop: loop)
                if let events { next.events[key] = events }
            }
        }
        for (key, _, loop, _) in kept where key.lane > 0 { next.checkIdleConnectionsPeriodically(on: loop) }
        var absorbed = Set<ObjectIdentifier>()
        for (key, connection, loop, _) in kept where nextSinks.indices.contains(key.sink) {
            let plan = nextSinks[key.sink]
            if absorbed.insert(ObjectIdentifier(plan.cql.preparedStatements)).inserted {
                plan.cql.preparedStatements.absorb(connection.plan.cql.preparedStatements)
            }
            loop.execute { next.installHooks(on: connection, key: key, plan: plan, loop: loop) }
        }
    }

    /// Every connection of the table, by identity (to tell which ones another table still uses).
    var identities: Set<ObjectIdentifier> {
        lock.withLock { Set(connections.values.map { ObjectIdentifier($0.connection) }) }
    }

    /// Closes (on their event loops) the connections that no table in `inUse` holds: a reload's old
    /// generation ended and these were only its own (sinks removed or changed).
    func closeAll(except inUse: Set<ObjectIdentifier>) {
        let closing = lock.withLock { () -> [(CQLSinkConnection, EventLoop)] in
            let list = connections.values.filter { !inUse.contains(ObjectIdentifier($0.connection)) }
            connections.removeAll()
            events.removeAll()
            return list.map { ($0.connection, $0.loop) }
        }
        for (connection, loop) in closing { loop.execute { connection.close() } }
    }
}
