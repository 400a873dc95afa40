/// The flags byte of a CQL frame header.
public struct CQLFrameFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// The body is compressed with the algorithm STARTUP chose (v3/v4 only; v5 compresses segments).
    public static let compression = CQLFrameFlags(rawValue: 0x01)
    /// Request: trace this query. Response: the body starts with a 16-byte tracing session id.
    public static let tracing = CQLFrameFlags(rawValue: 0x02)
    /// The body starts (after the tracing id, warnings) with a [bytes map] custom payload (v4+).
    public static let customPayload = CQLFrameFlags(rawValue: 0x04)
    /// Response: the body starts (after the tracing id) with a [string list] of warnings (v4+).
    public static let warning = CQLFrameFlags(rawValue: 0x08)
    /// The client opted into a beta protocol version.
    public static let useBeta = CQLFrameFlags(rawValue: 0x10)
}
