import NIOCore

/// How one client reaches one Cassandra sink. Its requests share the event loop's connections to
/// the backend: one per protocol version (the client's) and keyspace (the client's `USE`), where
/// Sluice gives every request a stream id of its own (`CQLStreamPairing`). The client's state is
/// kept here, not on a connection:
/// - `USE ks` goes to the connection of keyspace `ks` (opened with `USE ks` in its handshake), and
///   the backend's answer (SET_KEYSPACE, or its error) goes to the client; on success the client's
///   later requests go to that connection. A USE that succeeded through another route of the
///   session (the session's keyspace fact) applies here too.
/// - REGISTER goes to the sink's event connection; its EVENT frames reach this client only for the
///   types it registered (`CQLEventFanOut`), through the session's push callback. The registered
///   types are a session fact: every CQL route of the session follows them (`followEvents`), so a
///   route made after a reload, or a transform's target, delivers the same events.
/// - Prepared statements are the backend's (ids are global there); the connections record them
///   and re-prepare on UNPREPARED (`CQLStreamPairing`, `CQLReprepare`).
final class CQLSinkRoute: BackendRoute {
    private let plan: SinkPlan
    private var sinkIndex: Int
    private unowned let session: ChainSession
    /// The session's facts (the session's own `let`): read per request without going through the
    /// unowned session reference.
    private let facts: SessionFacts
    /// The client's keyspace (its last successful USE).
    private var keyspace: String?
    /// The session's keyspace fact this route last followed: a USE the client sent through another
    /// route (a transform's target, such as redirect's) applies here too, once its reply reached
    /// the client. Compared by identity per request (the fact is replaced, never changed).
    private var followedKeyspace: FactBytes?
    /// The session facts' `cqlRouteRevision` this route last followed (-1: none yet, so the first
    /// request follows whatever the session already knows).
    private var followedRevision = -1
    /// The credentials the client signed in with, passed through (`auth: passthrough`), as the
    /// session's fact this route last followed (a sign-in through any route of the session counts
    /// here too); nil: the sink's own are used.
    private var identity: CQLIdentity?
    /// The connection of the client's version and keyspace, looked up when either changes.
    private var current: CQLSinkConnection? {
        didSet { currentUnretained = current.map { Unmanaged.passUnretained($0) } }
    }
    /// `current`, not retained (kept in step by its `didSet`): read per request without the
    /// retain and release that reading `current` costs. Valid exactly while `current` holds it.
    private var currentUnretained: Unmanaged<CQLSinkConnection>?
    private var currentVersion: CQLVersion?
    private var events: CQLEventFanOut?
    private var closed = false
    /// The last request's batch to the connection, emptied, once nothing held it any more.
    private var spareWire: Batch?

    init(plan: SinkPlan, sinkIndex: Int, session: ChainSession) {
        self.plan = plan
        self.sinkIndex = sinkIndex
        self.session = session
        facts = session.facts
        identity = facts.cql.identity
        followEvents()
    }

    func sharedBatchCompleted() {}

    var hasDedicatedConnection: Bool { false }

    func renumber(_ index: Int) {
        sinkIndex = index
        current = nil
    }

    func close() {
        closed = true
        events?.unsubscribe(self)
        events = nil
        current = nil
    }

    // MARK: requests

    /// Sends each frame of `batch` on its own (the backend answers them in any order). A receiver
    /// that takes the replies one by one (a client's response slot, when no transform of the chain
    /// intervened in the batch; see `ResponseReceiver.replyReceiver`) gets each reply as it comes;
    /// any other one gets the batch's replies joined, in request order, once the last came.
    func send(_ batch: Batch, receiver: ResponseReceiver) {
        if batch.count == 1 {
            send(frame: batch.messages[0], receiver: receiver)
            return
        }
        // A receiver answers for every request of the batch or for none (its first and last tell).
        guard batch.count > 0, let first = receiver.replyReceiver(forRequest: 0),
              receiver.replyReceiver(forRequest: batch.count - 1) != nil else {
            sendEach(batch, receiver: receiver)
            return
        }
        send(frame: batch.messages[0], receiver: first)
        for i in 1..<batch.count {
            guard let next = receiver.replyReceiver(forRequest: i) else { continue }
            send(frame: batch.messages[i], receiver: next)
        }
    }

    /// Sends one request frame; its reply goes to `receiver`. (`bytes` is consumed: the caller's
    /// copy out of its batch becomes `frame`'s without another retain.)
    private func send(frame bytes: consuming ByteBuffer, receiver: ResponseReceiver) {
        guard let frame = CQLWireFrame(consume bytes) else {
            refuseFrame(stream: 0, receiver: receiver)
            return
        }
        guard !frame.isResponse, let version = frame.version, version >= .v4,
              frame.bodyLength == frame.bytes.readableBytes - CQLFrameHeader.size
        else {
            refuseFrame(stream: frame.stream, receiver: receiver)
            return
        }
        if facts.cql.routeRevision != followedRevision { followFacts() }
        switch CQLOpcode(rawValue: frame.opcodeByte) {
        case .query?:
            if let use = Self.useKeyspace(frame) {
                self.use(use, frame: frame, version: version, receiver: receiver)
                return
            }
        case .prepare?:
            if Self.useStatement(frame) != nil {
                refusePreparedUse(frame, version: version, receiver: receiver)
                return
            }
        case .register?:
            register(frame, version: version, receiver: receiver)
            return
        case .startup?:
            // The source answers the client's STARTUP; one reaching a sink (a transform built it)
            // is answered as the backend's connections already did it.
            answer(receiver, Batch(kind: Batch.responses, protocolID: Batch.cql, messages: [
                CQLFrameBuilder.frame(version: version, isResponse: true, stream: frame.stream, opcode: .ready,
                                      allocator: session.allocator) { _ in }]))
            return
        case .authResponse?:
            signIn(frame, version: version, receiver: receiver)
            return
        default:
            break
        }
        // Drivers must see one node, Sluice: a SELECT on system.peers(_v2) gets no rows. (Two calls
        // rather than one with the receiver chosen: `receiver` is passed on borrowed, not copied.)
        if CQLClusterView.asksForPeers(frame, keyspace: keyspace, registry: plan.cql.preparedStatements) {
            forward(frame.bytes, version: version, receiver: CQLClusterView.emptying(receiver))
        } else {
            forward(frame.bytes, version: version, receiver: receiver)
        }
    }

    /// Answers a request that is not a whole CQL v4/v5 request frame (PROTOCOL_ERROR).
    private func refuseFrame(stream: Int16, receiver: ResponseReceiver) {
        answer(receiver, CQLBackendErrors.frame(stream: stream, version: .v4, code: .protocolError,
                                                message: "sluice: not a whole CQL v4/v5 request frame",
                                                allocator: session.allocator))
    }

    /// Sends a request frame, checked, to the connection of the client's version and keyspace.
    /// Usually no batch is made: the connection has the pairing copy the frame into its write
    /// (`BackendConnection.send(request:)`).
    @inline(__always)
    private func forward(_ bytes: ByteBuffer, version: CQLVersion, receiver: ResponseReceiver) {
        let made: Batch?
        if let current = currentConnection(version: version) {
            // Not retained for the send: this route's `current` holds it (and the event loop's
            // shared connections do), and `current` changes only in this route's own methods, none
            // of which the send reaches (a connection calls receivers and routes in a later turn).
            made = current._withUnsafeGuaranteedRef { $0.send(request: bytes, receiver: receiver) { wireBatch(for: $0) } }
        } else {
            made = lookUpConnection(version: version).send(request: bytes, receiver: receiver) { wireBatch(for: $0) }
        }
        // A batch made for the request: kept for the next once the connection copied the request
        // out (or let go of the batch it held while connecting).
        if var wire = made, isKnownUniquelyReferenced(&wire) {
            wire.clearForReuse()
            spareWire = consume wire
        }
    }

    /// The batch the connection writes for `frame`: the spare one when there is one.
    @inline(__always)
    private func wireBatch(for frame: ByteBuffer) -> Batch {
        guard let spare = spareWire.take() else { return Self.wireBatch(frame) }
        spare.appendReceived(frame)
        return spare
    }

    /// A batch of several frames whose receiver takes them together (a transform intervened in it:
    /// on_responses, call_answer, a send of its own): each goes on its own, the replies are joined.
    private func sendEach(_ batch: Batch, receiver: ResponseReceiver) {
        guard batch.count > 0 else {
            answer(receiver, Batch(kind: Batch.responses, protocolID: Batch.cql))
            return
        }
        let joined = CQLJoinedReplies(count: batch.count, receiver: receiver, allocator: session.allocator)
        for i in 0..<batch.count {
            let frame = CQLWireFrame(batch.messages[i])
            send(frame: batch.messages[i], receiver: joined.part(i, stream: frame?.stream ?? 0, version: frame?.version ?? .v4))
        }
    }

    /// The batch a connection writes for `frame` (the pairing rewrites it in place to the new
    /// header and the body: room for both is made here, so that costs no second allocation).
    @inline(__always)
    static func wireBatch(_ frame: ByteBuffer) -> Batch {
        var messages: [ByteBuffer] = []
        messages.reserveCapacity(2)
        messages.append(frame)
        return Batch(kind: Batch.requests, protocolID: Batch.cql, messages: messages)
    }

    private func answer(_ receiver: ResponseReceiver, _ batch: Batch) {
        session.eventLoop.execute { receiver.receive(.responses(batch)) }
    }

    /// The shared connection for the client's version and keyspace, `current`, not retained;
    /// nil when it must be looked up again (`lookUpConnection`): the one last used was closed
    /// (another client's refused USE discarded it, or it was retired) or has every stream id in
    /// flight (the lookup then finds or opens another of the key's). An extra connection of the
    /// key is not kept: the next request looks again, so requests go back to the key's first
    /// connection once it has ids free, and the extra one closes when idle.
    @inline(__always)
    private func currentConnection(version: CQLVersion) -> Unmanaged<CQLSinkConnection>? {
        guard let current = currentUnretained, currentVersion == version else { return nil }
        return current._withUnsafeGuaranteedRef { !$0.isClosed && $0.pairing.hasFreeStreamID } ? current : nil
    }

    private func lookUpConnection(version: CQLVersion) -> CQLSinkConnection {
        let (found, extra) = session.plan.sharedConnections.cql.connectionForRequest(
            sink: sinkIndex, plan: plan, on: session.eventLoop, version: version, keyspace: keyspace, identity: identity)
        current = extra ? nil : found
        currentVersion = version
        return found
    }

    private func connection(version: CQLVersion, keyspace: String?) -> CQLSinkConnection {
        session.plan.sharedConnections.cql.connection(sink: sinkIndex, plan: plan, on: session.eventLoop,
                                                   version: version, keyspace: keyspace, identity: identity)
    }

    // MARK: USE

    /// The keyspace of a QUERY that is a `USE` statement (nil for any other QUERY).
    static func useKeyspace(_ frame: CQLWireFrame) -> String? {
        useStatement(frame)?.keyspace
    }

    /// The statement of a QUERY or PREPARE (both start with the text) when it is a `USE` (nil
    /// otherwise). Only texts that can start with USE (after spaces or a comment) are classified.
    static func useStatement(_ frame: CQLWireFrame) -> CQLStatement? {
        // Only texts that can start with USE are classified (read in place when nothing comes before
        // the message, the usual case).
        if frame.textInPlace(mayStartWithUse) == false { return nil }
        guard let message = frame.message(), let length = message.getInteger(at: message.readerIndex, as: Int32.self),
              length > 0, Int(length) <= message.readableBytes - 4,
              message.withUnsafeReadableBytes({ mayStartWithUse(UnsafeRawBufferPointer(rebasing: $0[4..<(4 + Int(length))])) })
        else { return nil }
        let text = message.getSlice(at: message.readerIndex + 4, length: Int(length))!
        let statement = CQLStatement.classify(text)
        return statement.kind == .use ? statement : nil
    }

    /// Whether statement text can start with USE: its first byte that is not a space is U, or a
    /// comment begins there.
    static func mayStartWithUse(_ text: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        while i < text.count, text[i] == 32 || text[i] == 9 || text[i] == 10 || text[i] == 13 { i += 1 }
        guard i < text.count else { return false }
        let first = text[i]
        return first | 0x20 == UInt8(ascii: "u") || first == UInt8(ascii: "/") || first == UInt8(ascii: "-")
    }

    /// A PREPARE of a USE statement is refused: executed, it would switch the keyspace of a backend
    /// connection other clients share (Sluice follows a client's keyspace by its QUERY USE only).
    private func refusePreparedUse(_ frame: CQLWireFrame, version: CQLVersion, receiver: ResponseReceiver) {
        answer(receiver, CQLBackendErrors.frame(stream: frame.stream, version: version, code: .invalid,
                                                message: Self.preparedUseRefusal, allocator: session.allocator))
    }

    static let preparedUseRefusal = "sluice: USE cannot be prepared through this proxy (its connections to the backend are shared); send USE as a plain query"

    /// Sends the client's USE on the connection of that keyspace (whose handshake USEs it): the
    /// client gets the backend's SET_KEYSPACE or its error, and on success its later requests go there.
    private func use(_ keyspace: String, frame: CQLWireFrame, version: CQLVersion, receiver: ResponseReceiver) {
        let target = connection(version: version, keyspace: keyspace)
        target.send(Self.wireBatch(frame.bytes), receiver: CQLUseOutcome(route: self, keyspace: keyspace, version: version,
                                                                        connection: target, receiver: receiver))
    }

    /// Follows the session's keyspace and credentials once either changed (`cqlRouteRevision`).
    private func followFacts() {
        followedRevision = facts.cql.routeRevision
        if let fact = facts.cql.keyspace, fact !== followedKeyspace { followKeyspace(fact) }
        if facts.cql.identity != identity { followIdentity() }
    }

    /// The client's USE succeeded (through this route or another): its requests here go to that keyspace.
    private func followKeyspace(_ fact: FactBytes) {
        followedKeyspace = fact
        let name = String(decoding: UnsafeBufferPointer(start: fact.pointer, count: fact.count), as: UTF8.self)
        guard name != keyspace else { return }
        keyspace = name
        current = nil
    }

    /// A USE got an ERROR on `connection`. Only when the connection's own handshake was
    /// refused (no such keyspace, the client's credentials refused) does it serve no one and is
    /// discarded; any other error (the backend went away, a reply timeout, a back-off) leaves the
    /// shared connection to the clients that use it, and it reconnects on their next request.
    fileprivate func refused(on connection: CQLSinkConnection) {
        guard connection.handshakeRefused else { return }
        if current === connection { current = nil }
        session.plan.sharedConnections.cql.discard(connection)
    }

    fileprivate func used(_ keyspace: String, version: CQLVersion, connection: CQLSinkConnection) {
        guard !closed else { return }
        self.keyspace = keyspace
        current = nil  // the next request finds the key's connection (not an extra one the USE went on)
        currentVersion = version
    }

    // MARK: pass-through authentication

    /// The client's AUTH_RESPONSE (its source passes authentication through): the backend is
    /// asked with the client's credentials, on a connection of its own opened with them for this
    /// sign-in only (an OPTIONS request there makes it connect and sign in; closed once answered),
    /// so every sign-in is a SASL exchange with the backend. Accepted: the client gets AUTH_SUCCESS and from then on
    /// its requests go on connections signed in with its credentials; refused: it gets the backend's
    /// error (BAD_CREDENTIALS…), and the sink is not backed off.
    private func signIn(_ frame: CQLWireFrame, version: CQLVersion, receiver: ResponseReceiver) {
        guard let message = frame.message(), let token = try? CQLAuthToken(message: message), let bytes = token.token,
              let identity = CQLIdentity(token: Array(buffer: bytes)) else {
            answer(receiver, CQLBackendErrors.frame(stream: frame.stream, version: version, code: .badCredentials,
                                                    message: "Authentication failed: expected a SASL PLAIN token",
                                                    allocator: session.allocator))
            return
        }
        // A connection of its own, closed once answered: the backend checks the credentials with a
        // SASL exchange of their own even when a connection signed in with them is open (a password
        // changed since must not work).
        let target = CQLSinkConnection(plan: plan, sharedOn: session.eventLoop, version: version, keyspace: nil,
                                       identity: identity.credentials)
        let options = CQLFrameBuilder.frame(version: version, isResponse: false, stream: frame.stream, opcode: .options,
                                            allocator: session.allocator) { _ in }
        target.send(Self.wireBatch(options), receiver: CQLSignInOutcome(route: self, identity: identity, version: version,
                                                                        stream: frame.stream, connection: target,
                                                                        receiver: receiver))
    }

    /// The backend accepted the client's credentials: the session signs in to every sink with them,
    /// and its user (SLUICE_PROPERTY_USER) is theirs, as after a sign-in Sluice checked.
    fileprivate func signedIn(_ identity: CQLIdentity) {
        guard !closed else { return }
        session.facts.signedInToBackend(identity)
        session.facts.signedIn(as: Array((identity.credentials.username ?? "").utf8))
        followIdentity()
    }

    /// The session signed in with other credentials (through this route or another): its
    /// connections here are those opened with them.
    private func followIdentity() {
        identity = session.facts.cql.identity
        current = nil
        if let events {
            events.unsubscribe(self)
            self.events = nil
        }
        followEvents()  // on the event connection of the new credentials
    }

    // MARK: REGISTER / EVENT

    /// The client's REGISTER goes to the sink's event connection for its version (the backend's
    /// READY answers it); from then on the events of those types reach this client.
    private func register(_ frame: CQLWireFrame, version: CQLVersion, receiver: ResponseReceiver) {
        guard let message = frame.message(), let request = try? CQLRegisterRequest(message: message) else {
            answer(receiver, CQLBackendErrors.frame(stream: frame.stream, version: version, code: .protocolError,
                                                    message: "sluice: malformed REGISTER", allocator: session.allocator))
            return
        }
        let (connection, fanOut) = session.plan.sharedConnections.cql.eventConnection(
            sink: sinkIndex, plan: plan, on: session.eventLoop, version: version, identity: identity)
        if let events, events !== fanOut { events.unsubscribe(self) }
        fanOut.subscribe(self, types: request.eventTypes)
        fanOut.registering(request.eventTypes)
        events = fanOut
        connection.send(Self.wireBatch(frame.bytes),
                        receiver: CQLRegisterOutcome(route: self, types: request.eventTypes, version: version, receiver: receiver))
    }

    /// The backend answered the client's REGISTER with READY: the types become the session's fact,
    /// which every CQL route of the session follows.
    fileprivate func registered(_ types: [String], version: CQLVersion) {
        guard !closed, session.facts.registeredCQLEvents(types, version: version) else { return }
        session.followCQLEvents()
    }

    /// Receives the events the session registered for (`SessionFacts.cql.events`) from this sink's
    /// event connection of the session's version and credentials, registering the types no client
    /// registered there yet. Called when the route is made, when the fact grows, and when the
    /// session signs in with other credentials.
    func followEvents() {
        guard !closed, let registration = session.facts.cql.events, !registration.types.isEmpty else { return }
        let (connection, fanOut) = session.plan.sharedConnections.cql.eventConnection(
            sink: sinkIndex, plan: plan, on: session.eventLoop, version: registration.version, identity: identity)
        if let events, events !== fanOut { events.unsubscribe(self) }
        fanOut.follow(self, types: registration.types, on: connection, version: registration.version)
        events = fanOut
    }

    /// An EVENT of a type this client registered for (stream -1, the client's version). When
    /// another route of the session reaches the same backend (two sinks naming one address: a tee's
    /// or redirect's target), the backend sends each event on both event connections: only one of
    /// the routes passes it on (`ChainSession.cqlEventRoute`), so the client gets it once.
    func deliverEvent(_ frame: ByteBuffer, type: String) {
        guard !closed, session.cqlEventRoute(to: plan.address, type: type) === self else { return }
        session.deliverPush(frame)
    }

    /// The backend this route reaches ("host:port", as its sink names it).
    var backendAddress: String { plan.address }

    /// Whether this route receives the backend's events of `type` (it follows the session's registration).
    func receivesEvents(of type: String) -> Bool {
        guard !closed, let events else { return false }
        return events.delivers(type, to: self)
    }
}

/// Passes on the reply to a client's USE, and moves the client to that keyspace when it succeeded.
private final class CQLUseOutcome: ResponseReceiver {
    private let route: CQLSinkRoute
    private let keyspace: String
    private let version: CQLVersion
    private let connection: CQLSinkConnection
    private let receiver: ResponseReceiver

    init(route: CQLSinkRoute, keyspace: String, version: CQLVersion, connection: CQLSinkConnection,
         receiver: ResponseReceiver) {
        self.route = route
        self.keyspace = keyspace
        self.version = version
        self.connection = connection
        self.receiver = receiver
    }

    func receive(_ outcome: ChainOutcome) {
        if case .responses(let batch) = outcome, batch.count == 1, let reply = CQLWireFrame(batch.messages[0]) {
            if reply.resultKind == .setKeyspace {
                route.used(keyspace, version: version, connection: connection)
            } else if reply.opcodeByte == CQLOpcode.error.rawValue {
                route.refused(on: connection)
            }
        }
        receiver.receive(outcome)
    }
}

/// Passes on the reply to a client's REGISTER; READY makes its types the session's fact.
private final class CQLRegisterOutcome: ResponseReceiver {
    private let route: CQLSinkRoute
    private let types: [String]
    private let version: CQLVersion
    private let receiver: ResponseReceiver

    init(route: CQLSinkRoute, types: [String], version: CQLVersion, receiver: ResponseReceiver) {
        self.route = route
        self.types = types
        self.version = version
        self.receiver = receiver
    }

    func receive(_ outcome: ChainOutcome) {
        if case .responses(let batch) = outcome, batch.count == 1,
           CQLWireFrame(batch.messages[0])?.opcodeByte == CQLOpcode.ready.rawValue {
            route.registered(types, version: version)
        }
        receiver.receive(outcome)
    }
}

/// Answers a passed-through AUTH_RESPONSE: AUTH_SUCCESS once the backend served a request on a
/// connection signed in with the client's credentials, or the backend's refusal.
private final class CQLSignInOutcome: ResponseReceiver {
    private let route: CQLSinkRoute
    private let identity: CQLIdentity
    private let version: CQLVersion
    private let stream: Int16
    private let connection: CQLSinkConnection
    private let receiver: ResponseReceiver

    init(route: CQLSinkRoute, identity: CQLIdentity, version: CQLVersion, stream: Int16, connection: CQLSinkConnection,
         receiver: ResponseReceiver) {
        self.route = route
        self.connection = connection
        self.identity = identity
        self.version = version
        self.stream = stream
        self.receiver = receiver
    }

    func receive(_ outcome: ChainOutcome) {
        let connection = connection
        connection.eventLoop.execute { connection.close() }  // it only checked the credentials
        guard case .responses(let batch) = outcome, batch.count == 1,
              CQLWireFrame(batch.messages[0])?.opcodeByte == CQLOpcode.supported.rawValue else {
            receiver.receive(outcome)
            return
        }
        route.signedIn(identity)
        let success = CQLFrameBuilder.frame(version: version, isResponse: true, stream: stream, opcode: .authSuccess) {
            $0.writeCQLBytes(nil)
        }
        receiver.receive(.responses(Batch(kind: Batch.responses, protocolID: Batch.cql, messages: [success])))
    }
}

/// Joins the replies of frames sent one by one into one response batch, in the order of the requests.
final class CQLJoinedReplies {
    private let receiver: ResponseReceiver
    private let allocator: ByteBufferAllocator
    private var replies: [ByteBuffer?]
    private var missing: Int

    init(count: Int, receiver: ResponseReceiver, allocator: ByteBufferAllocator) {
        self.receiver = receiver
        self.allocator = allocator
        replies = Array(repeating: nil, count: count)
        missing = count
    }

    /// The receiver of request `index`'s reply; `stream` and `version`: the request's, for the
    /// ERROR frame that stands in for a reply that holds no frame.
    func part(_ index: Int, stream: Int16, version: CQLVersion) -> ResponseReceiver {
        Part(joined: self, index: index, stream: stream, version: version)
    }

    fileprivate func received(_ outcome: ChainOutcome, part: Part) {
        guard missing > 0 else { return }
        switch outcome {
        case .failed(let message):
            missing = 0
            receiver.receive(.failed(message))
        case .responses(let batch):
            let index = part.index
            replies[index] = batch.messages.first ?? CQLFrameBuilder.error(
                version: part.version, stream: part.stream, code: .serverError,
                message: "sluice: no reply frame for this request", allocator: allocator)
            missing -= 1
            if missing == 0 {
                receiver.receive(.responses(Batch(kind: Batch.responses, protocolID: Batch.cql, messages: replies.map { $0! })))
            }
        }
    }

    fileprivate final class Part: ResponseReceiver {
        let joined: CQLJoinedReplies
        let index: Int
        let stream: Int16
        let version: CQLVersion
        init(joined: CQLJoinedReplies, index: Int, stream: Int16, version: CQLVersion) {
            self.joined = joined
            self.index = index
            self.stream = stream
            self.version = version
        }
        func receive(_ outcome: ChainOutcome) { joined.received(outcome, part: self) }
    }
}
