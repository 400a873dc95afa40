/// How frames travel on one CQL connection, which changes once, when the server answers STARTUP.
///
/// Until then every frame is bare and uncompressed, whatever the version (STARTUP, OPTIONS,
/// SUPPORTED, and the answer itself). A READY or AUTHENTICATE answer switches both directions, from
/// the next frame on, to what STARTUP negotiated: on v3/v4 bare frames whose bodies are compressed
/// when their flag says so; on v5 segments, LZ4-compressed when STARTUP chose lz4. An ERROR answer
/// leaves the framing as it was (the client may try again). This is what the DataStax python driver
/// does (it enables compression and checksumming on READY and on AUTHENTICATE).
public enum CQLFraming: Equatable, Sendable {
    /// Before the server answered STARTUP.
    case handshake
    /// v3/v4 after the answer: bodies compressed with this algorithm when flagged (nil: none).
    case frames(compression: CQLCompression?)
    /// v5 after the answer: segments, LZ4-compressed or not.
    case segments(lz4: Bool)

    /// The framing after the server answered STARTUP with `answer`, for a connection of `version`
    /// whose STARTUP asked for `compression` (already checked to be available in that version).
    public func afterStartupAnswer(_ answer: CQLOpcode, version: CQLVersion, compression: CQLCompression?) -> CQLFraming {
        guard self == .handshake, answer == .ready || answer == .authenticate else { return self }
        return version.usesSegments ? .segments(lz4: compression == .lz4) : .frames(compression: compression)
    }

    /// The segment codec to use, when frames travel in segments.
    public var segmentCodec: CQLSegmentCodec? {
        if case .segments(let lz4) = self { return CQLSegmentCodec(compressed: lz4) }
        return nil
    }

    /// The compression of v3/v4 frame bodies (nil during the handshake and on v5).
    public var bodyCompression: CQLCompression? {
        if case .frames(let compression) = self { return compression }
        return nil
    }
}
