/// How one client reaches one sink, in the sink's protocol: decided once per batch by one switch
/// (a sink speaks one protocol), never per message, and each case is a concrete class, so the
/// protocol's own route runs specialised code.
enum SinkRoute {
    /// A Redis sink: shared connections while the client is stateless, a dedicated one after.
    case redis(RedisSinkRoute)
    /// A Cassandra sink: shared connections per protocol version and keyspace, stream ids remapped.
    case cql(CQLSinkRoute)

    @inline(__always)
    func send(_ batch: Batch, receiver: ResponseReceiver) {
        switch self {
        case .redis(let route): route.send(batch, receiver: receiver)
        case .cql(let route): route.send(batch, receiver: receiver)
        }
    }

    /// Whether the client holds pub/sub subscriptions through this route (Redis).
    var isSubscribed: Bool {
        if case .redis(let route) = self { return route.isSubscribed }
        return false
    }

    /// Whether the client has a backend connection of its own here (it holds the client's state).
    var hasDedicatedConnection: Bool {
        switch self {
        case .redis(let route): return route.hasDedicatedConnection
        case .cql(let route): return route.hasDedicatedConnection
        }
    }

    /// Hot reload kept this route for an unchanged sink that has index `index` in the new plan.
    func renumber(_ index: Int) {
        switch self {
        case .redis(let route): route.renumber(index)
        case .cql(let route): route.renumber(index)
        }
    }

    /// Pauses or resumes reading replies and pushes on this client's dedicated connection.
    func setReadPaused(_ paused: Bool) {
        if case .redis(let route) = self { route.setReadPaused(paused) }
    }

    func close() {
        switch self {
        case .redis(let route): route.close()
        case .cql(let route): route.close()
        }
    }
}

/// The protocol a sink speaks (`sinks: NAME: { redis: … }` or `{ cassandra: … }`).
enum SinkProtocol: Equatable {
    case redis
    case cql
}
