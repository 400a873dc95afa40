import NIOCore

/// The CQL ERROR frames a sink answers a request with when the backend did not: on the client's
/// stream, in the client's version, one frame per request (a CQL client pairs replies by stream,
/// so a failure that is not a frame on its stream would leave the request waiting forever).
enum CQLBackendErrors {
    /// The code for a failure the connection reported (`BackendConnection`'s messages): a backend
    /// that cannot be reached (connect failed, backing off) is OVERLOADED, so a driver tries
    /// another host; anything else (closed, no reply in time, out of step) is SERVER_ERROR.
    /// The backend refusing the sink's own credentials is BAD_CREDENTIALS (`sinkCredentialsRefused`).
    static func code(forFailure message: String) -> CQLErrorCode {
        message.contains("connect failed") ? .overloaded : .serverError
    }

    static func reply(to entry: CQLStreamPairing.Pending, failure message: String,
                      allocator: ByteBufferAllocator) -> Batch {
        if let refusal = sinkCredentialsRefused(message) {
            return reply(to: entry, code: .badCredentials, message: refusal, allocator: allocator)
        }
        return reply(to: entry, code: code(forFailure: message), message: message, allocator: allocator)
    }

    /// When `message` (`"sluice: backend 'NAME' (ADDRESS) unavailable: connect failed: STEP refused
    /// (REFUSAL)"`, perhaps followed by `"; next attempt in N ms"` while the sink backs off) says the
    /// backend refused the credentials configured for the sink (`CQLBackend.sinkCredentialsRefused`),
    /// the client's message: `"sluice: sink 'NAME' (ADDRESS): REFUSAL"`. Nil for any other failure.
    ///
    /// Why BAD_CREDENTIALS and not OVERLOADED: it is a configuration error no retry can mend, and
    /// drivers retry OVERLOADED and SERVER_ERROR on the next host (the DataStax python driver's
    /// default retry policy does) while they raise BAD_CREDENTIALS (AuthenticationException) to the
    /// application at once. The client's own sign-in (to Sluice) is not what failed; the message
    /// says whose credentials were refused.
    static func sinkCredentialsRefused(_ message: String) -> String? {
        guard let marker = message.range(of: CQLBackend.sinkCredentialsRefused),
              let backend = message.range(of: "sluice: backend "), let unavailable = message.range(of: " unavailable: "),
              backend.upperBound <= unavailable.lowerBound else { return nil }
        let sink = message[backend.upperBound..<unavailable.lowerBound]
        var end = message.range(of: "; next attempt in ", options: .backwards)?.lowerBound ?? message.endIndex
        if end > marker.upperBound, message[message.index(before: end)] == ")" { end = message.index(before: end) }
        return "sluice: sink \(sink): \(message[marker.lowerBound..<end])"
    }

    static func reply(to entry: CQLStreamPairing.Pending, code: CQLErrorCode, message: String,
                      allocator: ByteBufferAllocator) -> Batch {
        frame(stream: entry.clientStream, version: entry.version, code: code, message: message, allocator: allocator)
    }

    static func frame(stream: Int16, version: CQLVersion, code: CQLErrorCode, message: String,
                      allocator: ByteBufferAllocator) -> Batch {
        let error = CQLFrameBuilder.error(version: version, stream: stream, code: code, message: message,
                                          allocator: allocator)
        return Batch(kind: Batch.responses, protocolID: Batch.cql, messages: [error])
    }

    /// `outcome` (the connection's, for every batch it settles at once) as the reply to `entry`: a
    /// failure becomes an ERROR frame; an answer built without the client's stream (a refused
    /// handshake step's error, see `CQLBackend.errorReplies`) gets it.
    static func reply(to entry: CQLStreamPairing.Pending, outcome: ChainOutcome, allocator: ByteBufferAllocator) -> Batch {
        switch outcome {
        case .failed(let message):
            return reply(to: entry, failure: message, allocator: allocator)
        case .responses(let batch):
            guard batch.count > 0, let frame = CQLWireFrame(batch.messages[0]), let message = frame.message(),
                  let code = message.getInteger(at: message.readerIndex, as: Int32.self),
                  frame.opcodeByte == CQLOpcode.error.rawValue
            else {
                return reply(to: entry, code: .serverError, message: "sluice: the backend refused the connection", allocator: allocator)
            }
            var reader = CQLBodyReader(message)
            _ = try? reader.readInt()
            let text = (try? reader.readText()) ?? ""
            return reply(to: entry, code: CQLErrorCode(rawValue: code), message: text, allocator: allocator)
        }
    }
}
