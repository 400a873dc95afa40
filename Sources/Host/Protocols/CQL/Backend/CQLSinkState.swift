/// What of a sink only Cassandra uses (`SinkPlan.cql`). The objects are shared by every event loop
/// and every copy of the plan (a copy of this value shares them too); only `credentials` is a value.
struct CQLSinkState {
    /// The connect failures of the sink's v5 connections, kept apart from `SinkPlan.health`: a
    /// backend that refuses a v5 STARTUP (it speaks v4 only, and the version probe had not told
    /// yet, or the clients' main sink is another) backs off only the v5 connections, never those
    /// of the v4 clients.
    let v5Health = SinkHealth()
    /// The user name and password of SASL PLAIN (PasswordAuthenticator) sent on every connection
    /// that the backend asks to authenticate (nil: none). Holds the secret: never log it.
    var credentials: SluiceConfig.Credentials? = nil
    /// Prepared statements seen through this sink (for re-preparing), shared by every event loop.
    let preparedStatements = CQLPreparedRegistry()
    /// Whether the backend speaks protocol v5 (probed per generation; see
    /// `CQLBackendVersionKnowledge`), which decides the versions clients may open with.
    let versions = CQLBackendVersions()
}

extension SinkPlan {
    /// This sink as a CQL connection of `version` uses it: with `cql.v5Health` as its health for
    /// the version the backend may refuse (`CQLBackendVersions.probed`).
    func forCQLConnection(of version: CQLVersion) -> SinkPlan {
        guard version == cql.versions.probed else { return self }
        var plan = self
        plan.health = cql.v5Health
        return plan
    }
}
