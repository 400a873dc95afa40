import NIOConcurrencyHelpers
import NIOCore

/// The shared connections to Redis sinks (a part of `SharedSinkConnections`): one per event loop,
/// sink and protocol, created on first use. RESP3 clients (HELLO 3, as redis-py 8, Lettuce and
/// node-redis send on connect) share the RESP3 connection; the others the RESP2 one.
/// Looked up once per client connection and sink, never per request.
final class RedisConnectionTable: @unchecked Sendable {
    private let lock = NIOLock()
    private var connections: [Key: RedisSinkConnection] = [:]
    /// The event loop of each connection (a connection is closed on its own loop).
    private var loops: [Key: EventLoop] = [:]

    private struct Key: Hashable {
        let eventLoop: ObjectIdentifier
        let sink: Int
        let resp3: Bool
    }

    /// The shared connection to sink `index` for `eventLoop` that speaks RESP3 (`resp3`) or RESP2.
    /// Call on that event loop.
    func connection(sink index: Int, plan: SinkPlan, on eventLoop: EventLoop, resp3: Bool) -> RedisSinkConnection {
        let key = Key(eventLoop: ObjectIdentifier(eventLoop), sink: index, resp3: resp3)
        return lock.withLock {
            if let existing = connections[key] { return existing }
            let created = RedisSinkConnection(plan: plan, sharedOn: eventLoop, resp3: resp3)
            connections[key] = created
            loops[key] = eventLoop
            return created
        }
    }

    // MARK: hot reload

    /// Hands the connections of sinks that a reload keeps to the new generation's table: `sinkIndices`
    /// maps a sink's index here to its index there.
    func carryOver(to next: RedisConnectionTable, sinkIndices: [Int: Int]) {
        let kept = lock.withLock {
            connections.compactMap { key, connection -> (Key, RedisSinkConnection, EventLoop)? in
                guard let index = sinkIndices[key.sink], let loop = loops[key] else { return nil }
                return (Key(eventLoop: key.eventLoop, sink: index, resp3: key.resp3), connection, loop)
            }
        }
        next.lock.withLock {
            for (key, connection, loop) in kept where next.connections[key] == nil {
                next.connections[key] = connection
                next.loops[key] = loop
            }
        }
    }

    /// Every connection of the table, by identity (to tell which ones another table still uses).
    var identities: Set<ObjectIdentifier> {
        lock.withLock { Set(connections.values.map(ObjectIdentifier.init)) }
    }

    /// Closes (on their event loops) the connections that no table in `inUse` holds: a reload's old
    /// generation ended and these were only its own (sinks removed or changed).
    func closeAll(except inUse: Set<ObjectIdentifier>) {
        let closing = lock.withLock { () -> [(RedisSinkConnection, EventLoop)] in
            let list = connections.compactMap { key, connection in
                inUse.contains(ObjectIdentifier(connection)) ? nil : loops[key].map { (connection, $0) }
            }
            connections.removeAll()
            loops.removeAll()
            return list
        }
        for (connection, loop) in closing { loop.execute { connection.close() } }
    }
}
