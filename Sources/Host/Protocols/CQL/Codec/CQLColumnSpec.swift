/// One column of RESULT metadata: where it comes from, its name and its type.
public struct CQLColumnSpec: Equatable, Sendable {
    public let keyspace: String
    public let table: String
    public let name: String
    public let type: CQLDataType

    public init(keyspace: String, table: String, name: String, type: CQLDataType) {
        self.keyspace = keyspace
        self.table = table
        self.name = name
        self.type = type
    }

    /// Reads `count` column specs: with the global table spec when `global` is set (read before
    /// them), else each with its own keyspace and table.
    static func readColumns(count: Int, global: Bool, from reader: inout CQLBodyReader) throws(CQLProtocolViolation) -> [CQLColumnSpec] {
        var globalKeyspace = "", globalTable = ""
        if global {
            globalKeyspace = try reader.readText()
            globalTable = try reader.readText()
        }
        var columns: [CQLColumnSpec] = []
        columns.reserveCapacity(min(count, reader.remaining / 4))
        for _ in 0..<count {
            let keyspace = global ? globalKeyspace : try reader.readText()
            let table = global ? globalTable : try reader.readText()
            let name = try reader.readText()
            columns.append(CQLColumnSpec(keyspace: keyspace, table: table, name: name,
                                         type: try CQLDataType.read(from: &reader)))
        }
        return columns
    }
}
