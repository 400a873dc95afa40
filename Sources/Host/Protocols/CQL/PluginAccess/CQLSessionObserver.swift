import NIOCore

/// Follows what a CQL client's requests change once their results come back through the chain:
/// the connection's keyspace (a RESULT Set_keyspace, the answer to USE) and the statements it
/// prepared (a RESULT Prepared for a PREPARE, recorded in `CQLPreparedStatements`), so plugins can
/// read the keyspace a statement runs in and an EXECUTE's text and bound values by name.
///
/// A batch with neither a USE nor a PREPARE among its requests is run without an observer.
final class CQLSessionObserver: ResponseReceiver {
    private let facts: SessionFacts
    private let registry: CQLPreparedStatements
    /// The PREPAREs of the batch by request index: their text and v5 keyspace.
    private let prepares: [(index: Int, text: ByteBuffer, keyspace: String?)]
    private let receiver: ResponseReceiver

    private init(facts: SessionFacts, registry: CQLPreparedStatements,
                 prepares: [(index: Int, text: ByteBuffer, keyspace: String?)], receiver: ResponseReceiver) {
        self.facts = facts
        self.registry = registry
        self.prepares = prepares
        self.receiver = receiver
    }

    /// The receiver to run `batch` with: `receiver` itself when nothing in the batch can change the
    /// session, else an observer in front of it.
    static func observing(_ batch: Batch, facts: SessionFacts, registry: CQLPreparedStatements = .shared,
                          receiver: ResponseReceiver) -> ResponseReceiver {
        if let first = batch.messages.first, let versionByte = first.getInteger(at: first.readerIndex, as: UInt8.self) {
            let version = versionByte & 0x7F
            if facts.cql.version != Int(version) || facts.protocolID != Batch.cql { facts.noteCQL(version: version) }
        }
        var prepares: [(index: Int, text: ByteBuffer, keyspace: String?)] = []
        var uses = false
        for i in 0..<batch.count {
            let frame = batch.messages[i]
            guard let opcode = frame.getInteger(at: frame.readerIndex + 4, as: UInt8.self) else { continue }
            switch opcode {
            case CQLOpcode.prepare.rawValue:
                if case .prepare(let prepare)? = batch.cqlMessage(at: i)?.message {
                    prepares.append((i, prepare.query, prepare.keyspace))
                }
            case CQLOpcode.query.rawValue:
                if !uses, Self.isUse(frame, batch: batch, index: i) { uses = true }
            default:
                break
            }
        }
        guard uses || !prepares.isEmpty else { return receiver }
        return CQLSessionObserver(facts: facts, registry: registry, prepares: prepares, receiver: receiver)
    }

    /// Whether QUERY `index` is a USE statement (its first word, without reading the whole message
    /// when the frame has no custom payload in front of the query).
    private static func isUse(_ frame: ByteBuffer, batch: Batch, index: Int) -> Bool {
        // The flags, the text's length and its first bytes in one look in place (no slice, no
        // separate reads: this runs for every QUERY).
        let inPlace = frame.withUnsafeReadableBytes { bytes -> Bool? in
            let start = CQLFrameHeader.size + 4
            guard bytes.count >= start, bytes[1] & CQLFrameFlags.customPayload.rawValue == 0 else { return nil }
            let length = Int(Int32(bigEndian: bytes.loadUnaligned(fromByteOffset: CQLFrameHeader.size, as: Int32.self)))
            guard length >= 0 else { return nil }
            return startsWithUse(UnsafeRawBufferPointer(rebasing: bytes[start..<start + min(length, bytes.count - start)]))
        }
        if let inPlace { return inPlace }
        guard case .query(let query)? = batch.cqlMessage(at: index)?.message else { return false }
        return CQLStatement.classify(query.query).kind == .use
    }

    /// Whether statement text starts with the word USE: a look at its first bytes (no allocation:
    /// this runs for every QUERY), the lexer only when a comment comes first.
    static func startsWithUse(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x09 || bytes[i] == 0x0A || bytes[i] == 0x0D { i += 1 }
        guard i < bytes.count else { return false }
        if bytes[i] == UInt8(ascii: "-") || bytes[i] == UInt8(ascii: "/") {
            var lexer = CQLLexer(bytes)
            guard let first = lexer.next() else { return false }
            return lexer.isKeyword(first, "use")
        }
        guard i + 3 <= bytes.count, bytes[i] | 0x20 == UInt8(ascii: "u"), bytes[i + 1] | 0x20 == UInt8(ascii: "s"),
              bytes[i + 2] | 0x20 == UInt8(ascii: "e")
        else { return false }
        guard i + 3 < bytes.count else { return true }
        let next = bytes[i + 3]
        let isWordByte = (next >= 0x30 && next <= 0x39) || (next | 0x20 >= 0x61 && next | 0x20 <= 0x7A) || next == 0x5F || next >= 0x80
        return !isWordByte
    }

    func receive(_ outcome: ChainOutcome) {
        if case .responses(let batch) = outcome { observe(batch, firstRequest: 0) }
        receiver.receive(outcome)
    }

    /// When the receiver behind takes the batch's replies one by one, so does the observer: each
    /// reply is looked at on its way to it (a batch with a USE or PREPARE only; see `observing`).
    func replyReceiver(forRequest index: Int) -> ResponseReceiver? {
        guard let inner = receiver.replyReceiver(forRequest: index) else { return nil }
        return OneReply(observer: self, index: index, receiver: inner)
    }

    /// Follows the results among `batch`'s replies, the reply of request `firstRequest` first.
    private func observe(_ batch: Batch, firstRequest: Int) {
        for j in 0..<batch.count {
            let i = firstRequest + j
            let frame = batch.messages[j]
            guard frame.getInteger(at: frame.readerIndex + 4, as: UInt8.self) == CQLOpcode.result.rawValue,
                  case .result(let result)? = CQLParsedMessage(frame, isResponse: true).message
            else { continue }
            switch result {
            case .setKeyspace(let name):
                facts.useKeyspace(Array(name.utf8))
            case .prepared(let prepared):
                guard let request = prepares.first(where: { $0.index == i }) else { continue }
                let keyspace = prepared.metadata.columns.first?.keyspace
                    ?? prepared.resultMetadata.columns?.first?.keyspace
                    ?? request.keyspace
                    ?? facts.cql.keyspace.map { String(decoding: UnsafeBufferPointer(start: $0.pointer, count: $0.count), as: UTF8.self) }
                // Copied: the registry outlives the client's read buffer the text is a slice of.
                registry.record(id: prepared.id, .init(text: ByteBuffer(bytes: request.text.readableBytesView), keyspace: keyspace,
                                                       variables: prepared.metadata.columns))
            default:
                break
            }
        }
    }

    /// The observer in front of one request's receiver.
    private final class OneReply: ResponseReceiver {
        private let observer: CQLSessionObserver
        private let index: Int
        private let receiver: ResponseReceiver

        init(observer: CQLSessionObserver, index: Int, receiver: ResponseReceiver) {
            self.observer = observer
            self.index = index
            self.receiver = receiver
        }

        func receive(_ outcome: ChainOutcome) {
            if case .responses(let batch) = outcome { observer.observe(batch, firstRequest: index) }
            receiver.receive(outcome)
        }
    }
}
