import NIOCore

/// What a plugin can learn about its client's session through `get_property`: the protocol version,
/// the user, the database, the client name, the source and the client's address.
///
/// The Redis facts follow the replies the client received: a HELLO, SELECT, AUTH, CLIENT SETNAME
/// or RESET counts once its success reply came back through the chain (`SessionFactsObserver`),
/// and the source's own client authentication reports its sign-ins here. Lives on the client's
/// event loop only.
final class SessionFacts {
    private let eventLoop: EventLoop
    /// 2 or 3 (RESP2 until a HELLO 3 succeeds).
    private(set) var protocolVersion = 2
    private(set) var database = 0
    /// The user the client authenticated as; nil before it did and after RESET.
    private(set) var user: FactBytes?
    /// CLIENT SETNAME / HELLO SETNAME; nil when none.
    private(set) var clientName: FactBytes?
    /// The source's listen address as configured ("host:port").
    let sourceName: FactBytes
    /// SLUICE_PROTOCOL_REDIS until the first CQL request (`noteCQL`).
    private(set) var protocolID = Batch.redis
    /// CQL: the native protocol version of the client's frames (0 before the first).
    private(set) var cqlVersion = 0
    /// CQL: the connection's keyspace, from the last USE that succeeded; nil before.
    private(set) var keyspace: FactBytes?
    /// CQL with the source's `auth: passthrough`: the credentials the backend accepted from the
    /// client; every cassandra route of the session signs in with them rather than with its sink's
    /// (a transform's target, a route made after a reload). nil before. A secret: never given to
    /// plugins, never logged.
    private(set) var cqlIdentity: CQLIdentity?
    /// CQL: changes each time `keyspace` or `cqlIdentity` changes, so that a route can tell per
    /// request, by comparing one integer, whether it still follows both (`CQLSinkRoute`).
    private(set) var cqlRouteRevision = 0
    /// CQL: the event types the client REGISTERed for (every REGISTER the backend answered with
    /// READY adds its types) and the version of the frames it gets them in; nil before. Every
    /// cassandra route of the session follows it (`CQLSinkRoute.followEvents`): a route made after
    /// a reload, or a transform's target, delivers the same events as the route the REGISTER took.
    private(set) var cqlEvents: CQLEventRegistration?
    /// Replaced values, kept until the event loop's next turn: a plugin may hold a view of one until
    /// its hook returns, and a reply delivered inside that hook (call_respond) may replace it.
    private var retired: [FactBytes] = []

    init(eventLoop: EventLoop, sourceName: String) {
        self.eventLoop = eventLoop
        self.sourceName = FactBytes(Array(sourceName.utf8))
    }

    /// A change a request makes to the session once its reply says it succeeded.
    enum Change: Equatable {
        case hello(version: Int?, user: [UInt8]?, name: [UInt8]?)
        case select(Int)
        case auth(user: [UInt8])
        case setName([UInt8])
        case reset
    }

    /// The client speaks CQL, in frames of `version`.
    func noteCQL(version: UInt8) {
        protocolID = Batch.cql
        cqlVersion = Int(version)
    }

    /// A RESULT Set_keyspace reached the client: its connection now uses `name`.
    func useKeyspace(_ name: [UInt8]) {
        replace(&keyspace, with: name)
        cqlRouteRevision &+= 1
    }

    /// The backend accepted the client's own credentials (passed through).
    func signedInToBackend(_ identity: CQLIdentity) {
        cqlIdentity = identity
        cqlRouteRevision &+= 1
    }

    /// The backend answered a REGISTER of `types` with READY. Returns whether that added a type.
    func registeredCQLEvents(_ types: [String], version: CQLVersion) -> Bool {
        var registration = cqlEvents ?? CQLEventRegistration(types: [], version: version)
        let before = registration.types.count
        registration.types.formUnion(types)
        guard registration.types.count > before else { return false }
        cqlEvents = registration
        return true
    }

    /// The source's client authentication signed the client in as `user`.
    func signedIn(as user: [UInt8]) {
        replace(&self.user, with: user)
    }

    func apply(_ change: Change) {
        switch change {
        case .hello(let version, let user, let name):
            if let version { protocolVersion = version }
            if let user { replace(&self.user, with: user) }
            if let name { replace(&clientName, with: name.isEmpty ? nil : name) }
        case .select(let index):
            database = index
        case .auth(let user):
            replace(&self.user, with: user)
        case .setName(let name):
            replace(&clientName, with: name.isEmpty ? nil : name)
        case .reset:
            protocolVersion = 2
            database = 0
            replace(&user, with: nil)
            replace(&clientName, with: nil)
        }
    }

    private func replace(_ slot: inout FactBytes?, with bytes: [UInt8]?) {
        if let old = slot {
            if retired.isEmpty { eventLoop.execute { self.retired.removeAll() } }
            retired.append(old)
        }
        slot = bytes.map(FactBytes.init)
    }

    /// The changes the requests of `batch` make if they succeed, by request index; nil when none of
    /// them is a session command (almost every batch: one look at each command name).
    static func changes(in batch: Batch) -> [(index: Int, change: Change)]? {
        if batch.plainRequests { return nil }
        var found: [(index: Int, change: Change)]?
        for i in 0..<batch.count {
            guard let change = batch.withMessageBytes(i, change(of:)) else { continue }
            if found == nil { found = [] }
            found!.append((i, change))
        }
        return found
    }

    /// The change request `bytes` makes if it succeeds, or nil.
    static func change(of bytes: UnsafeRawBufferPointer) -> Change? {
        guard let name = RedisConnectionState.commandName(bytes), name.count >= 4, name.count <= 6 else { return nil }
        switch name[0] | 0x20 {
        case UInt8(ascii: "h"), UInt8(ascii: "s"), UInt8(ascii: "a"), UInt8(ascii: "c"), UInt8(ascii: "r"): break
        default: return nil
        }
        let named = { (word: StaticString) in RedisReplyPlan.equalsIgnoringCase(name, word) }
        guard named("hello") || named("select") || named("auth") || named("client") || named("reset") else { return nil }
        var args: [UnsafeRawBufferPointer] = []
        RESPCommandReader.forEachArgument(bytes) { _, start, length in
            args.append(UnsafeRawBufferPointer(rebasing: bytes[start..<start + length]))
            return args.count < 8  // HELLO ver AUTH u p SETNAME n: no session command needs more
        }
        switch args.count {
        case _ where named("reset"): return .reset
        case 2 where named("select"): return number(args[1]).map { .select($0) }
        case 2 where named("auth"): return .auth(user: Array("default".utf8))
        case 3 where named("auth"): return .auth(user: Array(args[1]))
        case 3 where named("client"):
            return RedisReplyPlan.equalsIgnoringCase(args[1], "setname") ? .setName(Array(args[2])) : nil
        case 1... where named("hello"):
            var version: Int?, user: [UInt8]?, clientName: [UInt8]?
            var i = 1
            if args.count > 1, let v = number(args[1]) {
                version = v
                i = 2
            }
            while i < args.count {
                if RedisReplyPlan.equalsIgnoringCase(args[i], "auth"), i + 2 < args.count {
                    user = Array(args[i + 1])
                    i += 3
                } else if RedisReplyPlan.equalsIgnoringCase(args[i], "setname"), i + 1 < args.count {
                    clientName = Array(args[i + 1])
                    i += 2
                } else {
                    return nil  // an option Redis refuses: no change
                }
            }
            return .hello(version: version, user: user, name: clientName)
        default:
            return nil
        }
    }

    /// The user an AUTH or HELLO … AUTH request signs in as ("default" for AUTH with a password
    /// only), or nil for any other request.
    static func userName(signingIn bytes: UnsafeRawBufferPointer) -> [UInt8]? {
        switch change(of: bytes) {
        case .auth(let user)?: return user
        case .hello(_, let user?, _)?: return user
        default: return nil
        }
    }

    /// Whether `reply` says the request that makes `change` succeeded (not an error, not +QUEUED).
    static func succeeded(_ change: Change, reply: UnsafeRawBufferPointer) -> Bool {
        guard let first = reply.first else { return false }
        switch change {
        case .hello: return first == UInt8(ascii: "%") || first == UInt8(ascii: "*")
        case .reset: return reply.starts(with: "+RESET\r\n".utf8)
        case .select, .auth, .setName: return reply.starts(with: "+OK\r\n".utf8)
        }
    }

    private static func number(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard !bytes.isEmpty, bytes.count <= 9, bytes.allSatisfy({ $0 &- 48 < 10 }) else { return nil }
        return bytes.reduce(0) { $0 * 10 + Int($1 - 48) }
    }
}

/// The CQL event types a client registered for, and its protocol version (`SessionFacts.cqlEvents`).
struct CQLEventRegistration: Equatable {
    var types: Set<String>
    let version: CQLVersion
}

/// A fact's bytes, NUL-terminated, at a fixed address for as long as the object lives.
final class FactBytes {
    let storage: UnsafeMutableBufferPointer<UInt8>

    init(_ bytes: [UInt8]) {
        storage = .allocate(capacity: bytes.count + 1)
        _ = storage.initialize(from: bytes + [0])
    }

    deinit { storage.deallocate() }

    /// The bytes without the NUL.
    var count: Int { storage.count - 1 }
    var pointer: UnsafePointer<UInt8> { UnsafePointer(storage.baseAddress!) }
}

/// Passes a batch's responses on after applying the session changes whose replies succeeded.
final class SessionFactsObserver: ResponseReceiver {
    private let facts: SessionFacts
    private let changes: [(index: Int, change: SessionFacts.Change)]
    private let receiver: ResponseReceiver

    init(facts: SessionFacts, changes: [(index: Int, change: SessionFacts.Change)], receiver: ResponseReceiver) {
        self.facts = facts
        self.changes = changes
        self.receiver = receiver
    }

    func receive(_ outcome: ChainOutcome) {
        if case .responses(let batch) = outcome {
            for (index, change) in changes where index < batch.count
                && batch.withMessageBytes(index, { SessionFacts.succeeded(change, reply: $0) }) {
                facts.apply(change)
            }
        }
        receiver.receive(outcome)
    }
}
