import NIOCore

/// BATCH: <type [byte]><n [short]><query_1>…<query_n><consistency><flags>[<serial_consistency>]
/// [<timestamp>][<keyspace> (v5)][<now_in_seconds> (v5)]. Each child is <kind [byte]> then either a
/// [long string] query (kind 0) or a [short bytes] prepared id (kind 1), then <n [short]> values.
/// Flags are a [byte] up to v4 and an [int] in v5. The children are a lazy view over the frame.
public struct CQLBatchRequest: Sendable {
    public enum BatchType: UInt8, Sendable {
        case logged = 0
        case unlogged = 1
        case counter = 2
    }

    /// One statement of the batch.
    public struct Child: Sendable {
        public enum Statement: Sendable {
            /// Query text (a slice).
            case query(ByteBuffer)
            /// A prepared statement id.
            case prepared(id: ByteBuffer)
        }

        public let statement: Statement
        public let values: CQLBoundValues

        /// The query text, when the child is not a prepared statement.
        public var queryText: String? {
            if case .query(let text) = statement { return String(buffer: text) }
            return nil
        }
    }

    public let type: BatchType
    public let childCount: Int
    /// The bytes of the children (walked and checked once when read).
    public let childBytes: ByteBuffer
    public let consistency: CQLConsistency
    public let flags: CQLQueryFlags
    public let serialConsistency: CQLConsistency?
    public let defaultTimestamp: Int64?
    public let keyspace: String?
    public let nowInSeconds: Int32?

    public init(message: ByteBuffer, version: CQLVersion) throws(CQLProtocolViolation) {
        var reader = CQLBodyReader(message)
        let rawType = try reader.readByte()
        guard let type = BatchType(rawValue: rawType) else {
            throw CQLProtocolViolation(.malformed, "unknown BATCH type \(rawType)")
        }
        self.type = type
        childCount = Int(try reader.readShort())
        // The names flag comes after the children: find it by walking them without names (what
        // drivers send), and walk them again with names only if the flag says so.
        let start = reader.buffer
        var probe = reader
        try Self.skipChildren(childCount, named: false, reader: &probe)
        var flagsReader = probe
        _ = try flagsReader.readConsistency()
        let named = try CQLQueryFlags.read(from: &flagsReader, version: version).contains(.namesForValues)
        if named {
            probe = reader
            try Self.skipChildren(childCount, named: true, reader: &probe)
        }
        childBytes = start.getSlice(at: start.readerIndex, length: start.readableBytes - probe.remaining)!
        self.named = named
        reader = probe
        consistency = try reader.readConsistency()
        flags = try CQLQueryFlags.read(from: &reader, version: version)
        serialConsistency = flags.contains(.serialConsistency) ? try reader.readConsistency() : nil
        defaultTimestamp = flags.contains(.defaultTimestamp) ? try reader.readLong() : nil
        keyspace = version.hasV5Messages && flags.contains(.keyspace) ? try reader.readText() : nil
        nowInSeconds = version.hasV5Messages && flags.contains(.nowInSeconds) ? try reader.readInt() : nil
    }

    private let named: Bool

    private static func skipChildren(_ count: Int, named: Bool, reader: inout CQLBodyReader) throws(CQLProtocolViolation) {
        for _ in 0..<count { _ = try readChild(&reader, named: named) }
    }

    private static func readChild(_ reader: inout CQLBodyReader, named: Bool) throws(CQLProtocolViolation) -> Child {
        let kind = try reader.readByte()
        let statement: Child.Statement
        switch kind {
        case 0: statement = .query(try reader.readLongString())
        case 1: statement = .prepared(id: try reader.readShortBytes())
        default: throw CQLProtocolViolation(.malformed, "invalid BATCH child kind \(kind)")
        }
        let count = Int(try reader.readShort())
        return Child(statement: statement, values: try CQLBoundValues.read(count: count, named: named, from: &reader))
    }

    /// The children in order (read from `childBytes`, which was checked when the batch was read).
    public var children: [Child] {
        var reader = CQLBodyReader(childBytes)
        var list: [Child] = []
        list.reserveCapacity(childCount)
        for _ in 0..<childCount {
            guard let child = try? Self.readChild(&reader, named: named) else { break }
            list.append(child)
        }
        return list
    }
}
