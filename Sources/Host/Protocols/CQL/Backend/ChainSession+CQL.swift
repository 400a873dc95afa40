/// A CQL client's session across its routes: the events it registered for reach it through every
/// CQL route of the session, once each.
extension ChainSession {
    /// The client's registered CQL event types grew (`SessionFacts.cql.events`): every CQL route of
    /// the session follows them.
    func followCQLEvents() {
        for case .cql(let route)? in sinks { route.followEvents() }
    }

    /// Of the session's CQL routes to the backend at `address` that receive its events of `type`,
    /// the one that passes them to the client: the main chain's sink's route when it is one of
    /// them, else the first by sink index. Two sinks naming one backend each have an event
    /// connection there, and the backend sends every event on both; the client must get it once.
    func cqlEventRoute(to address: String, type: String) -> CQLSinkRoute? {
        if let mainSink, case .cql(let route)? = sinks[mainSink], route.backendAddress == address,
           route.receivesEvents(of: type) {
            return route
        }
        for case .cql(let route)? in sinks where route.backendAddress == address && route.receivesEvents(of: type) {
            return route
        }
        return nil
    }

    /// After a move (hot reload): a client waiting for CQL events may send nothing more, so the route
    /// to the main chain's sink that delivers them is made now (it follows the session's
    /// registration, `SessionFacts.cql.events`), not at its next request.
    func makeCQLEventRouteAfterMove() {
        if facts.cql.events != nil, let index = mainSink, plan.sinks[index].protocolKind == .cql {
            _ = sink(index)
        }
    }
}
