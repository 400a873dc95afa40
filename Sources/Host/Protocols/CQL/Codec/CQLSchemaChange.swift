/// A schema change, as RESULT Schema_change and EVENT SCHEMA_CHANGE carry it:
/// <change_type [string]><target [string]><options>, where the options are the keyspace (KEYSPACE),
/// keyspace and name (TABLE, TYPE), or keyspace, name and argument types (FUNCTION, AGGREGATE).
public struct CQLSchemaChange: Equatable, Sendable {
    /// CREATED, UPDATED or DROPPED.
    public let changeType: String
    /// KEYSPACE, TABLE, TYPE, FUNCTION or AGGREGATE.
    public let target: String
    public let keyspace: String
    /// The table, type, function or aggregate; nil for a keyspace.
    public let name: String?
    /// The argument types of a function or aggregate.
    public let argumentTypes: [String]?

    public init(changeType: String, target: String, keyspace: String, name: String? = nil, argumentTypes: [String]? = nil) {
        self.changeType = changeType
        self.target = target
        self.keyspace = keyspace
        self.name = name
        self.argumentTypes = argumentTypes
    }

    init(from reader: inout CQLBodyReader) throws(CQLProtocolViolation) {
        changeType = try reader.readText()
        target = try reader.readText()
        keyspace = try reader.readText()
        switch target {
        case "KEYSPACE":
            name = nil
            argumentTypes = nil
        case "TABLE", "TYPE":
            name = try reader.readText()
            argumentTypes = nil
        case "FUNCTION", "AGGREGATE":
            name = try reader.readText()
            argumentTypes = try reader.readStringList()
        default:
            throw CQLProtocolViolation(.malformed, "unknown schema change target \(target)")
        }
    }
}
