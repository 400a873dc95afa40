/// The operation of a CQL frame (the header's fifth byte), protocol v3 to v5.
///
/// Frames keep the raw byte (`CQLFrameHeader.opcodeByte`) so an opcode this enum does not know is
/// still carried and reported, not lost.
public enum CQLOpcode: UInt8, CaseIterable, Sendable {
    case error = 0x00
    case startup = 0x01
    case ready = 0x02
    case authenticate = 0x03
    case options = 0x05
    case supported = 0x06
    case query = 0x07
    case result = 0x08
    case prepare = 0x09
    case execute = 0x0A
    case register = 0x0B
    case event = 0x0C
    case batch = 0x0D
    case authChallenge = 0x0E
    case authResponse = 0x0F
    case authSuccess = 0x10

    /// True for the opcodes a client sends; false for the ones a server sends.
    public var isRequest: Bool {
        switch self {
        case .startup, .options, .query, .prepare, .execute, .register, .batch, .authResponse: return true
        case .error, .ready, .authenticate, .supported, .result, .event, .authChallenge, .authSuccess: return false
        }
    }

    /// The name the protocol specification gives the opcode (`QUERY`, `AUTH_RESPONSE`, …).
    public var name: String {
        switch self {
        case .error: return "ERROR"
        case .startup: return "STARTUP"
        case .ready: return "READY"
        case .authenticate: return "AUTHENTICATE"
        case .options: return "OPTIONS"
        case .supported: return "SUPPORTED"
        case .query: return "QUERY"
        case .result: return "RESULT"
        case .prepare: return "PREPARE"
        case .execute: return "EXECUTE"
        case .register: return "REGISTER"
        case .event: return "EVENT"
        case .batch: return "BATCH"
        case .authChallenge: return "AUTH_CHALLENGE"
        case .authResponse: return "AUTH_RESPONSE"
        case .authSuccess: return "AUTH_SUCCESS"
        }
    }
}
