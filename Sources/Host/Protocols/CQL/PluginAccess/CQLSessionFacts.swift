/// What a CQL client's session has told the host (`SessionFacts.cql`): the protocol version, the
/// keyspace, the credentials passed through and the registered events. Set only through the
/// `SessionFacts` mutators below (`CQLSessionObserver`, `CQLSinkRoute`), on the client's event loop.
struct CQLSessionFacts {
    /// The native protocol version of the client's frames (0 before the first).
    fileprivate(set) var version = 0
    /// The connection's keyspace, from the last USE that succeeded; nil before.
    fileprivate(set) var keyspace: FactBytes?
    /// With the source's `auth: passthrough`: the credentials the backend accepted from the
    /// client; every cassandra route of the session signs in with them rather than with its sink's
    /// (a transform's target, a route made after a reload). nil before. A secret: never given to
    /// plugins, never logged.
    fileprivate(set) var identity: CQLIdentity?
    /// Changes each time `keyspace` or `identity` changes, so that a route can tell per
    /// request, by comparing one integer, whether it still follows both (`CQLSinkRoute`).
    fileprivate(set) var routeRevision = 0
    /// The event types the client REGISTERed for (every REGISTER the backend answered with
    /// READY adds its types) and the version of the frames it gets them in; nil before. Every
    /// cassandra route of the session follows it (`CQLSinkRoute.followEvents`): a route made after
    /// a reload, or a transform's target, delivers the same events as the route the REGISTER took.
    fileprivate(set) var events: CQLEventRegistration?
}

/// The CQL event types a client registered for, and its protocol version (`CQLSessionFacts.events`).
struct CQLEventRegistration: Equatable {
    var types: Set<String>
    let version: CQLVersion
}

extension SessionFacts {
    /// The client speaks CQL, in frames of `version`.
    func noteCQL(version: UInt8) {
        protocolID = Batch.cql
        cql.version = Int(version)
    }

    /// A RESULT Set_keyspace reached the client: its connection now uses `name`.
    func useKeyspace(_ name: [UInt8]) {
        replace(&cql.keyspace, with: name)
        cql.routeRevision &+= 1
    }

    /// The backend accepted the client's own credentials (passed through).
    func signedInToBackend(_ identity: CQLIdentity) {
        cql.identity = identity
        cql.routeRevision &+= 1
    }

    /// The backend answered a REGISTER of `types` with READY. Returns whether that added a type.
    func registeredCQLEvents(_ types: [String], version: CQLVersion) -> Bool {
        var registration = cql.events ?? CQLEventRegistration(types: [], version: version)
        let before = registration.types.count
        registration.types.formUnion(types)
        guard registration.types.count > before else { return false }
        cql.events = registration
        return true
    }
}
