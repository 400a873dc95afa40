/// The [int] code that starts an ERROR body (protocol v4/v5 section 9).
public struct CQLErrorCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    public static let serverError = CQLErrorCode(rawValue: 0x0000)
    public static let protocolError = CQLErrorCode(rawValue: 0x000A)
    public static let badCredentials = CQLErrorCode(rawValue: 0x0100)
    public static let unavailable = CQLErrorCode(rawValue: 0x1000)
    public static let overloaded = CQLErrorCode(rawValue: 0x1001)
    public static let isBootstrapping = CQLErrorCode(rawValue: 0x1002)
    public static let truncateError = CQLErrorCode(rawValue: 0x1003)
    public static let writeTimeout = CQLErrorCode(rawValue: 0x1100)
    public static let readTimeout = CQLErrorCode(rawValue: 0x1200)
    public static let readFailure = CQLErrorCode(rawValue: 0x1300)
    public static let functionFailure = CQLErrorCode(rawValue: 0x1400)
    public static let writeFailure = CQLErrorCode(rawValue: 0x1500)
    /// v5.
    public static let cdcWriteFailure = CQLErrorCode(rawValue: 0x1600)
    /// v5.
    public static let casWriteUnknown = CQLErrorCode(rawValue: 0x1700)
    public static let syntaxError = CQLErrorCode(rawValue: 0x2000)
    public static let unauthorized = CQLErrorCode(rawValue: 0x2100)
    public static let invalid = CQLErrorCode(rawValue: 0x2200)
    public static let configError = CQLErrorCode(rawValue: 0x2300)
    public static let alreadyExists = CQLErrorCode(rawValue: 0x2400)
    public static let unprepared = CQLErrorCode(rawValue: 0x2500)

    private static let names: [Int32: String] = [
        0x0000: "SERVER_ERROR", 0x000A: "PROTOCOL_ERROR", 0x0100: "BAD_CREDENTIALS", 0x1000: "UNAVAILABLE",
        0x1001: "OVERLOADED", 0x1002: "IS_BOOTSTRAPPING", 0x1003: "TRUNCATE_ERROR", 0x1100: "WRITE_TIMEOUT",
        0x1200: "READ_TIMEOUT", 0x1300: "READ_FAILURE", 0x1400: "FUNCTION_FAILURE", 0x1500: "WRITE_FAILURE",
        0x1600: "CDC_WRITE_FAILURE", 0x1700: "CAS_WRITE_UNKNOWN", 0x2000: "SYNTAX_ERROR",
        0x2100: "UNAUTHORIZED", 0x2200: "INVALID", 0x2300: "CONFIG_ERROR", 0x2400: "ALREADY_EXISTS",
        0x2500: "UNPREPARED",
    ]

    /// The spec's name (`PROTOCOL_ERROR`), or the code in hex when it is not one the spec defines.
    public var name: String? { Self.names[rawValue] }
    public var description: String {
        name ?? "0x" + String(UInt32(bitPattern: rawValue), radix: 16)
    }
}
