import NIOCore

/// Redis refuses `HELLO 3` from a connection that is not authenticated yet ("HELLO must be called
/// with the client already authenticated"). A RESP3 client authenticates on its own connection in
/// Redis's order (signed in first, by default as the password-less `default` user, then HELLO 3,
/// then perhaps AUTH after a `CONFIG SET requirepass`). Its dedicated connection, opened later, must
/// not send HELLO 3 first when the backend may by now require a password: when the first request it
/// carries is an AUTH, the connection opens without HELLO 3 and the route sends HELLO 3 right after
/// that AUTH instead (its reply discarded), as Redis itself needs it.
enum HelloAfterAuth {
    /// Whether the first request of `batch` is an AUTH.
    static func opensWithAuth(_ batch: Batch) -> Bool {
        batch.count > 0 && batch.withMessageBytes(0) { RESPCommandReader.commandIs($0, "auth") }
    }

    /// Whether the first request of `batch` is a HELLO naming a protocol version (`HELLO 3 AUTH
    /// user pass`, `HELLO 2`…): it chooses the connection's protocol itself, and authenticates first
    /// when it carries AUTH, so the connection must not send a HELLO 3 of its own before it.
    static func opensWithProtocolChoice(_ batch: Batch) -> Bool {
        batch.count > 0 && batch.withMessageBytes(0) { bytes in
            RESPCommandReader.commandIs(bytes, "hello") && RESPCommandReader.argumentCount(bytes) >= 2
        }
    }

    /// Whether any request of `batch` is a HELLO (the client then chooses its protocol itself).
    static func hasHello(_ batch: Batch) -> Bool {
        (0..<batch.count).contains { i in batch.withMessageBytes(i) { RESPCommandReader.commandIs($0, "hello") } }
    }

    /// `batch` cut after its first request (an AUTH): that request, and the rest (nil if none).
    static func splitAfterFirst(_ batch: Batch) -> (first: Batch, rest: Batch?) {
        let first = Batch(kind: batch.kind, protocolID: batch.protocolID, messages: [batch.messages[0]])
        guard batch.count > 1 else { return (first, nil) }
        return (first, Batch(kind: batch.kind, protocolID: batch.protocolID, messages: Array(batch.messages[1...])))
    }

    /// `HELLO 3` as a request batch.
    static func helloBatch() -> Batch {
        var bytes = ByteBufferAllocator().buffer(capacity: 24)
        bytes.writeStaticString("*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")
        return Batch(kind: Batch.requests, protocolID: Batch.redis, messages: [bytes])
    }
}

/// Takes the reply to a HELLO 3 sent after a client's AUTH: the switch is done once Redis accepted
/// it (after a refused AUTH it is refused too, and is tried again after the client's next AUTH).
final class HelloAfterAuthOutcome: ResponseReceiver {
    private let accepted: () -> Void

    init(accepted: @escaping () -> Void) {
        self.accepted = accepted
    }

    func receive(_ outcome: ChainOutcome) {
        guard case .responses(let batch) = outcome, batch.count == 1,
              batch.withMessageBytes(0, { $0.first != UInt8(ascii: "-") })
        else { return }
        accepted()
    }
}
