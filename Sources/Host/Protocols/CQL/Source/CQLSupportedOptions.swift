import NIOCore

/// What Sluice answers OPTIONS with (SUPPORTED): the protocol versions it speaks, the CQL version
/// drivers should ask for, and the compressions STARTUP may choose on a connection of that version.
///
/// Drivers take the first CQL_VERSION offered when they are not told one (the DataStax python
/// driver does), and choose a compression from the ones offered that they have (LZ4 first). v5
/// compresses segments with LZ4 only, so a v5 connection is offered LZ4 alone.
enum CQLSupportedOptions {
    /// The CQL language version of Cassandra 5.0 (the first to speak v5 as a stable version); the
    /// backend behind Sluice is asked for whatever its own SUPPORTED says (the sink's handshake).
    static let cqlVersion = "3.4.7"

    /// The options a connection of `version` is offered; `supported`: the versions listed, those
    /// Sluice speaks that the sink's backend speaks too when that is known (`CQLClientConnection`).
    static func options(for version: CQLVersion, supported: [CQLVersion]) -> [String: [String]] {
        [
            "CQL_VERSION": [cqlVersion],
            "COMPRESSION": CQLCompression.allCases.filter { $0.isAvailable(in: version) }.map(\.rawValue),
            "PROTOCOL_VERSIONS": supported.sorted().map(\.listing),
        ]
    }

    /// The SUPPORTED frame answering an OPTIONS on `stream`.
    static func frame(version: CQLVersion, stream: Int16, supported: [CQLVersion],
                      allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        CQLFrameBuilder.frame(version: version, isResponse: true, stream: stream, opcode: .supported,
                              allocator: allocator, capacity: 128) { body in
            body.writeCQLStringMultimap(options(for: version, supported: supported))
        }
    }
}
