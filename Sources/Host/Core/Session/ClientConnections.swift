import NIOConcurrencyHelpers
import NIOCore

/// What the server asks of an open client connection, whatever its protocol (called on the
/// connection's event loop).
protocol ClientConnection: AnyObject {
    /// The server is stopping: read nothing more, answer what is in flight, then close.
    func drain()
    /// A reload switched generations.
    func newGenerationAvailable()
    /// The grace period of the reload to generation `number` ended.
    func graceEnded(for number: Int)
}

/// Every open client connection of a server, so that stopping can drain them: each finishes the
/// requests it has in flight, then closes.
final class ClientConnections: @unchecked Sendable {
    private let lock = NIOLock()
    private var open: [ObjectIdentifier: (Channel, ClientConnection)] = [:]

    /// Registers a new client channel until it closes. Call from its channel initializer.
    func add(_ channel: Channel, _ handler: ClientConnection) {
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
    func forEach(_ body: @escaping (ClientConnection) -> Void) {
        for (channel, handler) in lock.withLock({ Array(open.values) }) {
            channel.eventLoop.execute { body(handler) }
        }
    }

    /// Closes whatever is still open.
    func closeAll() {
        for (channel, _) in lock.withLock({ Array(open.values) }) { channel.close(promise: nil) }
    }
}
