import NIOConcurrencyHelpers
import NIOCore

/// The shared backend connections: one per (event loop, sink, protocol), created on first use.
/// RESP3 clients (HELLO 3, as redis-py 8, Lettuce and node-redis send on connect) share the RESP3
/// connection; the others the RESP2 one.
/// Looked up once per client connection and sink, never per request.
final class SharedSinkConnections: @unchecked Sendable {
    private let lock = NIOLock()
    private var connections: [Key: RedisSinkConnection] = [:]

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
            return created
        }
    }
}
