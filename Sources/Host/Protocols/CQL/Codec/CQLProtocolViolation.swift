/// Input that does not follow the CQL native protocol: a bad header, an unsupported version, a frame
/// over the size limit, a CRC mismatch, a body that ends early or says nonsense.
///
/// The peer gets an ERROR frame with `code` (PROTOCOL_ERROR unless said otherwise) and `message`,
/// on `stream` when the header got far enough to name one, and the connection is closed
/// (`CQLFrameBuilder.error(for:…)`).
public struct CQLProtocolViolation: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Kind: Equatable, Sendable {
        /// The version byte names a version this side does not speak (the raw version, without the
        /// direction bit); drivers downgrade on the reply (`CQLVersionNegotiation`).
        case unsupportedVersion(UInt8)
        /// A frame whose version differs from the one the connection negotiated.
        case versionChanged
        /// A request with the response bit set, or a response without it.
        case wrongDirection
        /// A frame or segment larger than the limit.
        case oversize
        /// A segment's header CRC24 or payload CRC32 is wrong.
        case checksum
        /// A compressed body or segment that does not decompress within its limit.
        case compression
        /// Anything else: a field out of range, a body shorter than its fields.
        case malformed
    }

    public let kind: Kind
    public let message: String
    /// The stream the offending frame named, when the header was read that far.
    public let stream: Int16?

    public init(_ kind: Kind, _ message: String, stream: Int16? = nil) {
        self.kind = kind
        self.message = message
        self.stream = stream
    }

    /// The same violation, attributed to `stream`.
    public func on(stream: Int16) -> CQLProtocolViolation {
        CQLProtocolViolation(kind, message, stream: stream)
    }

    public var description: String { message }

    static func truncated(_ what: String) -> CQLProtocolViolation {
        CQLProtocolViolation(.malformed, "truncated message: not enough bytes for \(what)")
    }
}
