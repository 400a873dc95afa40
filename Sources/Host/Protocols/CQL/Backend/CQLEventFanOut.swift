import NIOCore

/// The EVENT frames of one sink's event connection (per event loop and protocol version), passed
/// to the client routes that REGISTERed for the event's type, and to no one else. Lives on its
/// event loop.
final class CQLEventFanOut {
    private struct Subscriber {
        weak var route: CQLSinkRoute?
        var types: Set<String>
    }

    private var subscribers: [ObjectIdentifier: Subscriber] = [:]

    /// `route` receives events of `types` from now on (added to those it registered before).
    func subscribe(_ route: CQLSinkRoute, types: [String]) {
        subscribers[ObjectIdentifier(route), default: Subscriber(route: route, types: [])].types.formUnion(types)
    }

    func unsubscribe(_ route: CQLSinkRoute) {
        subscribers[ObjectIdentifier(route)] = nil
    }

    var subscriberCount: Int { subscribers.count }

    /// An EVENT frame (stream -1) from the backend.
    func deliver(_ frame: ByteBuffer) {
        guard let type = Self.eventType(frame) else { return }
        for (key, subscriber) in subscribers {
            guard let route = subscriber.route else {
                subscribers[key] = nil
                continue
            }
            if subscriber.types.contains(type) { route.deliverEvent(frame) }
        }
    }

    /// The event type, the [string] that starts an EVENT's message.
    static func eventType(_ frame: ByteBuffer) -> String? {
        guard let message = CQLWireFrame(frame)?.message() else { return nil }
        var reader = CQLBodyReader(message)
        return try? reader.readText()
    }
}
