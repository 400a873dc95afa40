import NIOCore

/// The CQL ERROR frames a sink answers a request with when the backend did not: on the client's
/// stream, in the client's version, one frame per request (a CQL client pairs replies by stream,
/// so a failure that is not a frame on its stream would leave the request waiting forever).
enum CQLBackendErrors {
    /// The code for a failure the connection reported (`BackendConnection`'s messages): a backend
    /// that cannot be reached (connect failed, backing off) is OVERLOADED, so a driver tries
    /// another host; anything else (closed, no reply in time, out of step) is SERVER_ERROR.
    static func code(forFailure message: String) -> CQLErrorCode {
        message.contains("connect failed") ? .overloaded : .serverError
    }

    static func reply(to entry: CQLStreamPairing.Pending, failure message: String,
                      allocator: ByteBufferAllocator) -> Batch {
        reply(to: entry, code: code(forFailure: message), message: message, allocator: allocator)
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
