import NIOCore

/// What a CQL connection does with an UNPREPARED error (the backend forgot a statement: it
/// restarted, or evicted it): prepares the text Sluice recorded for the id again, then sends the
/// client's request once more; the client sees only the retried request's reply. When the id was
/// never seen, or the PREPARE fails, the client gets the UNPREPARED error or the PREPARE's error.
enum CQLReprepare {
    /// Makes `connection` re-prepare with the sink's registry. `connectionFor(keyspace)`: a v4
    /// connection that USEs the keyspace the statement was prepared in (v5 names it in PREPARE);
    /// nil when the connections' table is gone (its generation ended).
    static func install(on connection: CQLSinkConnection, version: CQLVersion, registry: CQLPreparedRegistry,
                        connectionFor: @escaping (String?) -> CQLSinkConnection?) {
        connection.pairing.unprepared = { [unowned connection] entry, id in
            guard let statement = registry.statement(id: id) else { return false }
            let connection = connection  // held until the re-prepare is sent
            connection.eventLoop.execute {
                guard let target = version.hasV5Messages ? connection : connectionFor(statement.keyspace) else {
                    entry.receiver.receive(.responses(CQLBackendErrors.reply(
                        to: entry, code: .serverError, message: "sluice: the statement could not be prepared again (the sink was reloaded); prepare it again",
                        allocator: connection.allocator)))
                    return
                }
                let prepare = CQLFrameBuilder.frame(version: version, isResponse: false, stream: entry.clientStream,
                                                    opcode: .prepare, allocator: connection.allocator) { body in
                    body.writeCQLLongString(statement.query)
                    if version.hasV5Messages {
                        body.writeInteger(Int32(statement.keyspace == nil ? 0 : 1))
                        if let keyspace = statement.keyspace { body.writeCQLString(keyspace) }
                    }
                }
                target.send(CQLSinkRoute.wireBatch(prepare), receiver: Retry(entry: entry, connection: connection))
            }
            return true
        }
    }

    /// Once the statement is prepared again, sends the client's request again (marked as a retry:
    /// a second UNPREPARED goes to the client).
    private final class Retry: ResponseReceiver {
        let entry: CQLStreamPairing.Pending
        let connection: CQLSinkConnection

        init(entry: CQLStreamPairing.Pending, connection: CQLSinkConnection) {
            self.entry = entry
            self.connection = connection
        }

        func receive(_ outcome: ChainOutcome) {
            guard case .responses(let batch) = outcome, batch.count == 1,
                  CQLWireFrame(batch.messages[0])?.resultKind == .prepared else {
                entry.receiver.receive(outcome)
                return
            }
            connection.pairing.markNextAsRetry()
            connection.send(CQLSinkRoute.wireBatch(entry.request), receiver: entry.receiver)
        }
    }
}
