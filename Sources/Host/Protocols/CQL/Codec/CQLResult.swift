import NIOCore

/// The [int] kind that starts a RESULT body.
public enum CQLResultKind: Int32, Sendable {
    case void = 0x0001
    case rows = 0x0002
    case setKeyspace = 0x0003
    case prepared = 0x0004
    case schemaChange = 0x0005
}

/// A RESULT message.
public enum CQLResult: Sendable {
    case void
    case rows(CQLRows)
    /// The keyspace a USE switched to.
    case setKeyspace(String)
    case prepared(CQLPreparedResult)
    case schemaChange(CQLSchemaChange)

    public init(message: ByteBuffer, version: CQLVersion) throws(CQLProtocolViolation) {
        var reader = CQLBodyReader(message)
        let rawKind = try reader.readInt()
        guard let kind = CQLResultKind(rawValue: rawKind) else {
            throw CQLProtocolViolation(.malformed, "unknown RESULT kind \(rawKind)")
        }
        switch kind {
        case .void: self = .void
        case .rows: self = .rows(try CQLRows(from: &reader, version: version))
        case .setKeyspace: self = .setKeyspace(try reader.readText())
        case .prepared: self = .prepared(try CQLPreparedResult(from: &reader, version: version))
        case .schemaChange: self = .schemaChange(try CQLSchemaChange(from: &reader))
        }
    }

    public var kind: CQLResultKind {
        switch self {
        case .void: return .void
        case .rows: return .rows
        case .setKeyspace: return .setKeyspace
        case .prepared: return .prepared
        case .schemaChange: return .schemaChange
        }
    }
}
