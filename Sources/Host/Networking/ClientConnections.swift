import NIOConcurrencyHelpers
import NIOCore

/// Every open client connection of a server, so that stopping can drain them: each finishes the
/// requests it has in flight, then closes.
final class ClientConnections: @unchecked Sendable {
    private let lock = NIOLock()
    private var open: [ObjectIdentifier: (Channel, RedisSourceHandler)] = [:]

    /// Registers a new client channel until it closes. Call from its channel initializer.
    func add(_ channel: Channel, _ handler: RedisSourceHandler) {
        let key = ObjectIdentifier(channel)
        lock.withLock { open[key] = (channel, handler) }
        channel.closeFuture.whenComplete { [weak self] _ in
            self?.lock.withLock { _ = self?.open.removeValue(forKey: key) }
        }
    }

    var count: Int { lock.withLock { open.count } }

    /// Asks every client to stop reading and close once its in-flight requests are answered.
    func drainAll() {
        for (channel, handler) in lock.withLock({ Array(open.values) }) {
            channel.eventLoop.execute { handler.drain() }
        }
    }

    /// Runs `body` for every open client, on the client's event loop.
    func forEach(_ body: @escaping (RedisSourceHandler) -> Void) {
        for (channel, handler) in lock.withLock({ Array(open.values) }) {
            channel.eventLoop.execute { body(handler) }
        }
    }

    /// Closes whatever is still open.
    func closeAll() {
        for (channel, _) in lock.withLock({ Array(open.values) }) { channel.close(promise: nil) }
    }
}
