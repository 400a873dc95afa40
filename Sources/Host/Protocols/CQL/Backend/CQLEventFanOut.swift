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
    /// The types REGISTERed on the event connection since it last (re)connected, by a client or by
    /// the sink itself (or on their way there): a route that follows its session's registration
    /// (`follow`) sends a REGISTER only for the types missing here.
    private var typesOnBackend: Set<String> = []

    /// `route` receives events of `types` from now on (added to those it registered before).
    func subscribe(_ route: CQLSinkRoute, types: [String]) {
        subscribers[ObjectIdentifier(route), default: Subscriber(route: route, types: [])].types.formUnion(types)
    }

    /// A client's own REGISTER of `types` is on its way to the backend on the event connection.
    func registering(_ types: [String]) {
        typesOnBackend.formUnion(types)
    }

    /// `route` follows its session's registration (`SessionFacts.cql.events`): it receives events of
    /// `types` from now on, and the types no one registered on `connection` yet are registered by
    /// the sink itself (its READY goes to no client; a failure is tried again as after a lost
    /// event connection).
    func follow(_ route: CQLSinkRoute, types: Set<String>, on connection: CQLSinkConnection, version: CQLVersion) {
        subscribers[ObjectIdentifier(route), default: Subscriber(route: route, types: [])].types.formUnion(types)
        let missing = types.subtracting(typesOnBackend)
        guard !missing.isEmpty else { return }
        typesOnBackend.formUnion(missing)
        sendRegister(missing.sorted(), on: connection, version: version)
    }

    /// The event connection was lost: nothing is registered on the backend any more; the types the
    /// clients want are registered again (`reregister`).
    func connectionLost(_ connection: CQLSinkConnection, version: CQLVersion) {
        typesOnBackend.removeAll()
        reregister(on: connection, version: version)
    }

    func unsubscribe(_ route: CQLSinkRoute) {
        subscribers[ObjectIdentifier(route)] = nil
    }

    var subscriberCount: Int { subscribers.count }

    /// Whether `route` receives the events of `type` from here.
    func delivers(_ type: String, to route: CQLSinkRoute) -> Bool {
        subscribers[ObjectIdentifier(route)]?.types.contains(type) ?? false
    }

    /// The event types some client registered for.
    var registeredTypes: Set<String> {
        subscribers.values.reduce(into: Set<String>()) { if $1.route != nil { $0.formUnion($1.types) } }
    }

    /// How long after losing its event connection the sink registers again (while clients are
    /// registered; a backend still down makes it wait for the sink's back-off, and try again).
    static let reregisterDelay = TimeAmount.milliseconds(500)
    private var reregisterScheduled = false

    /// The event connection was lost: its registrations went with it on the backend, while the
    /// clients still count on their events. Unless no client is registered any more, a REGISTER of
    /// every type they want is sent again on `connection` (which reconnects for it).
    func reregister(on connection: CQLSinkConnection, version: CQLVersion) {
        guard !reregisterScheduled, !registeredTypes.isEmpty else { return }
        reregisterScheduled = true
        connection.eventLoop.scheduleTask(in: Self.reregisterDelay) { [weak self, weak connection] in
            guard let self, let connection else { return }
            reregisterScheduled = false
            let types = registeredTypes.sorted()
            guard !types.isEmpty else { return }
            typesOnBackend.formUnion(types)
            sendRegister(types, on: connection, version: version)
        }
    }

    /// A REGISTER the sink sends itself; its reply goes to no client.
    private func sendRegister(_ types: [String], on connection: CQLSinkConnection, version: CQLVersion) {
        let register = CQLFrameBuilder.frame(version: version, isResponse: false, stream: 0, opcode: .register,
                                             allocator: connection.allocator) { $0.writeCQLStringList(types) }
        connection.send(CQLSinkRoute.wireBatch(register),
                        receiver: Reregistered(fanOut: self, connection: connection, version: version))
    }

    /// The reply to a REGISTER the sink sent itself: READY, or (the backend still down) another try.
    private final class Reregistered: ResponseReceiver {
        weak var fanOut: CQLEventFanOut?
        weak var connection: CQLSinkConnection?
        let version: CQLVersion

        init(fanOut: CQLEventFanOut, connection: CQLSinkConnection, version: CQLVersion) {
            self.fanOut = fanOut
            self.connection = connection
            self.version = version
        }

        func receive(_ outcome: ChainOutcome) {
            if case .responses(let batch) = outcome, batch.count == 1,
               CQLWireFrame(batch.messages[0])?.opcodeByte == CQLOpcode.ready.rawValue { return }
            guard let fanOut, let connection else { return }
            fanOut.connectionLost(connection, version: version)
        }
    }

    /// An EVENT frame (stream -1) from the backend.
    func deliver(_ frame: ByteBuffer) {
        guard let type = Self.eventType(frame) else { return }
        for (key, subscriber) in subscribers {
            guard let route = subscriber.route else {
                subscribers[key] = nil
                continue
            }
            if subscriber.types.contains(type) { route.deliverEvent(frame, type: type) }
        }
    }

    /// The event type, the [string] that starts an EVENT's message.
    static func eventType(_ frame: ByteBuffer) -> String? {
        guard let message = CQLWireFrame(frame)?.message() else { return nil }
        var reader = CQLBodyReader(message)
        return try? reader.readText()
    }
}
