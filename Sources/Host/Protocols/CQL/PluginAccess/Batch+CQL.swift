/// The parsed CQL messages the cql_* accessors read, one slot per message of the batch
/// (`Batch.cqlParsed`, stored in Core's `Batch` because an extension cannot add storage).
extension Batch {
    /// What the cql_* accessors read from CQL message `index` (parsed on first use, then kept with
    /// the message); nil for a Redis batch or a bad index.
    func cqlMessage(at index: Int) -> CQLParsedMessage? {
        guard protocolID == Batch.cql, index >= 0, index < messages.count else { return nil }
        if let parsed = cqlParsed[index] {
            // A recycled object (clearForReuse) reads the slot's message now. Slots at or past
            // `count` hold only recycled ones (every path that removes messages removes or empties theirs).
            if !parsed.isLoaded { parsed.load(messages[index], isResponse: kind == Batch.responses) }
            return parsed
        }
        let parsed = CQLParsedMessage(messages[index], isResponse: kind == Batch.responses)
        cqlParsed[index] = parsed
        return parsed
    }

    /// `body` with what the cql_* accessors read from CQL message `index` (as `cqlMessage(at:)`),
    /// not retained for it: `body` must not change the batch (the accessors only read).
    /// `otherwise` for a Redis batch or a bad index.
    @inline(__always)
    func withCQLMessage<R>(at index: Int, otherwise: R, _ body: (CQLParsedMessage) -> R) -> R {
        guard protocolID == Batch.cql, index >= 0, index < messages.count else { return otherwise }
        if let known = cqlParsed.unretained(index) {
            return known._withUnsafeGuaranteedRef { parsed in
                if !parsed.isLoaded { parsed.load(messages[index], isResponse: kind == Batch.responses) }
                return body(parsed)
            }
        }
        let parsed = CQLParsedMessage(messages[index], isResponse: kind == Batch.responses)
        cqlParsed[index] = parsed
        return body(parsed)
    }
}
