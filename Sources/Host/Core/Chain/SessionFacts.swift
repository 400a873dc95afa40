import NIOCore

/// What a plugin can learn about its client's session through `get_property`: the protocol version,
/// the user, the database, the client name, the keyspace, the source and the client's address.
///
/// The facts of each protocol are its own (`RedisSessionFacts` in `redis`, `CQLSessionFacts` in
/// `cql`), changed by the mutators its folder adds to this class as its requests' replies come back
/// through the chain (`RedisSessionObserver`, `CQLSessionObserver`); the source's own client
/// authentication reports its sign-ins here (`user`). Lives on the client's event loop only.
final class SessionFacts {
    private let eventLoop: EventLoop
    /// The user the client authenticated as; nil before it did and after RESET.
    private(set) var user: FactBytes?
    /// The source's listen address as configured ("host:port").
    let sourceName: FactBytes
    /// SLUICE_PROTOCOL_REDIS until the first CQL request (`noteCQL`, which sets it).
    var protocolID = Batch.redis
    /// Redis: the RESP version, the database and the client name (set by `apply(_:)`,
    /// Protocols/Redis/PluginAccess/RedisSessionFacts.swift).
    var redis = RedisSessionFacts()
    /// CQL: the protocol version, the keyspace, the credentials passed through and the registered
    /// events (set by the mutators of Protocols/CQL/PluginAccess/CQLSessionFacts.swift).
    var cql = CQLSessionFacts()
    /// Replaced values, kept until the event loop's next turn: a plugin may hold a view of one until
    /// its hook returns, and a reply delivered inside that hook (call_respond) may replace it.
    private var retired: [FactBytes] = []

    init(eventLoop: EventLoop, sourceName: String) {
        self.eventLoop = eventLoop
        self.sourceName = FactBytes(Array(sourceName.utf8))
    }

    /// The source's client authentication signed the client in as `user`.
    func signedIn(as user: [UInt8]) {
        replace(&self.user, with: user)
    }

    /// The client signed out (a Redis RESET).
    func signedOut() {
        replace(&user, with: nil)
    }

    /// Sets a fact's bytes, keeping the replaced ones until the event loop's next turn (`retired`).
    func replace(_ slot: inout FactBytes?, with bytes: [UInt8]?) {
        if let old = slot {
            if retired.isEmpty { eventLoop.execute { self.retired.removeAll() } }
            retired.append(old)
        }
        slot = bytes.map(FactBytes.init)
    }
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
