/// The shared backend connections of one configuration generation, for every event loop and sink:
/// one table per protocol (`RedisConnectionTable`, `CQLConnectionTable`), each with its own lock,
/// created on first use. Looked up once per client connection and sink (and a CQL client's USE),
/// never per request. What the tables share is here: a reload handing the connections of the sinks
/// it keeps to the next generation, and closing those no generation uses any more.
final class SharedSinkConnections: Sendable {
    /// The connections to Redis sinks.
    let redis = RedisConnectionTable()
    /// The connections to Cassandra sinks.
    let cql = CQLConnectionTable()

    // MARK: hot reload

    /// Hands the connections of sinks that a reload keeps to the new generation's tables: `sinkIndices`
    /// maps a sink's index here to its index there, `nextSinks` are that generation's sinks
    /// (`CQLConnectionTable.carryOver`).
    func carryOver(to next: SharedSinkConnections, sinkIndices: [Int: Int], nextSinks: [SinkPlan]) {
        redis.carryOver(to: next.redis, sinkIndices: sinkIndices)
        cql.carryOver(to: next.cql, sinkIndices: sinkIndices, nextSinks: nextSinks)
    }

    /// Every connection of the tables, by identity (to tell which ones another generation still uses).
    var identities: Set<ObjectIdentifier> {
        redis.identities.union(cql.identities)
    }

    /// Closes (on their event loops) the connections that no generation in `inUse` holds: a reload's
    /// old generation ended and these were only its own (sinks removed or changed).
    func closeAll(except inUse: Set<ObjectIdentifier>) {
        redis.closeAll(except: inUse)
        cql.closeAll(except: inUse)
    }
}
