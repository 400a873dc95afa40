import NIOConcurrencyHelpers
import NIOCore

/// The shared backend connections: one per (event loop, sink), created on first use.
/// Looked up once per client connection and sink, never per request.
final class SharedSinkConnections: @unchecked Sendable {
    private let lock = NIOLock()
    private var connections: [Key: RedisSinkConnection] = [:]

    private struct Key: Hashable {
        let eventLoop: ObjectIdentifier
        let sink: Int
    }

    /// The shared connection to sink `index` for `eventLoop`. Call on that event loop.
    func connection(sink index: Int, plan: SinkPlan, on eventLoop: EventLoop) -> RedisSinkConnection {
        let key = Key(eventLoop: ObjectIdentifier(eventLoop), sink: index)
        return lock.withLock {
            if let existing = connections[key] { return existing }
            let created = RedisSinkConnection(plan: plan, sharedOn: eventLoop)
            connections[key] = created
            return created
        }
    }
}
