import NIOCore

/// The fields a frame's flags put in front of the message proper, and the message after them.
///
/// Responses: a 16-byte tracing id when `.tracing` is set, then a [string list] of warnings when
/// `.warning` is set, then a [bytes map] custom payload when `.customPayload` is set. Requests carry
/// only the custom payload (a request's tracing flag asks for tracing and adds no bytes).
public struct CQLEnvelopeBody: Sendable {
    /// The tracing session id of a traced response.
    public let tracingID: ByteBuffer?
    public let warnings: [String]?
    public let customPayload: [String: ByteBuffer?]?
    /// The message body after those fields (a slice, no copy).
    public let message: ByteBuffer

    /// `body` is the frame's body, already decompressed.
    public init(header: CQLFrameHeader, body: ByteBuffer) throws(CQLProtocolViolation) {
        var reader = CQLBodyReader(body)
        tracingID = header.isResponse && header.flags.contains(.tracing) ? try reader.readUUID() : nil
        warnings = header.isResponse && header.flags.contains(.warning) ? try reader.readStringList() : nil
        customPayload = header.flags.contains(.customPayload) ? try reader.readBytesMap() : nil
        message = reader.buffer
    }
}
