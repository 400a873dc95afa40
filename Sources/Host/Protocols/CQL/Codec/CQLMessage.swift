import NIOCore

/// Any message, read from a frame's body (after `CQLEnvelopeBody` took the flag-driven fields off
/// its front). Reading one checks every length in it; the byte-level fields stay slices of the frame.
public enum CQLMessage: Sendable {
    case startup(CQLStartup)
    case options
    case ready
    case authenticate(CQLAuthenticate)
    case authResponse(CQLAuthToken)
    case authChallenge(CQLAuthToken)
    case authSuccess(CQLAuthToken)
    case supported(CQLSupported)
    case query(CQLQueryRequest)
    case prepare(CQLPrepareRequest)
    case execute(CQLExecuteRequest)
    case batch(CQLBatchRequest)
    case register(CQLRegisterRequest)
    case result(CQLResult)
    case event(CQLEvent)
    case error(CQLErrorMessage)

    /// Reads the message of `opcode` (of `version`) from `message`.
    public init(opcode: CQLOpcode, version: CQLVersion, message: ByteBuffer) throws(CQLProtocolViolation) {
        switch opcode {
        case .startup: self = .startup(try CQLStartup(message: message))
        case .options: self = .options
        case .ready: self = .ready
        case .authenticate: self = .authenticate(try CQLAuthenticate(message: message))
        case .authResponse: self = .authResponse(try CQLAuthToken(message: message))
        case .authChallenge: self = .authChallenge(try CQLAuthToken(message: message))
        case .authSuccess: self = .authSuccess(try CQLAuthToken(message: message))
        case .supported: self = .supported(try CQLSupported(message: message))
        case .query: self = .query(try CQLQueryRequest(message: message, version: version))
        case .prepare: self = .prepare(try CQLPrepareRequest(message: message, version: version))
        case .execute: self = .execute(try CQLExecuteRequest(message: message, version: version))
        case .batch: self = .batch(try CQLBatchRequest(message: message, version: version))
        case .register: self = .register(try CQLRegisterRequest(message: message))
        case .result: self = .result(try CQLResult(message: message, version: version))
        case .event: self = .event(try CQLEvent(message: message))
        case .error: self = .error(try CQLErrorMessage(message: message, version: version))
        }
    }

    /// Reads the message of a whole frame: decompresses the body (v3/v4) with `compression`, takes
    /// the tracing id / warnings / custom payload off it, and reads the rest.
    public init(frame: CQLFrame, compression: CQLCompression?, maxBodyBytes: Int) throws(CQLProtocolViolation) {
        let body = try frame.decompressedBody(compression, maxBytes: maxBodyBytes)
        let envelope = try frame.envelope(body: body)
        guard let opcode = frame.header.opcode else {
            throw CQLProtocolViolation(.malformed, "unknown opcode", stream: frame.header.stream)
        }
        do {
            self = try CQLMessage(opcode: opcode, version: frame.header.version, message: envelope.message)
        } catch {
            throw error.on(stream: frame.header.stream)
        }
    }
}
