import NIOCore

/// An EVENT (sent on stream -1 to connections that REGISTERed): <type [string]> then the event.
public enum CQLEvent: Equatable, Sendable {
    /// NEW_NODE, REMOVED_NODE (MOVED_NODE in older servers) and the node's address.
    case topologyChange(change: String, node: CQLInet)
    /// UP or DOWN and the node's address.
    case statusChange(change: String, node: CQLInet)
    case schemaChange(CQLSchemaChange)

    public init(message: ByteBuffer) throws(CQLProtocolViolation) {
        var reader = CQLBodyReader(message)
        let type = try reader.readText()
        switch type {
        case "TOPOLOGY_CHANGE":
            let change = try reader.readText()
            self = .topologyChange(change: change, node: try reader.readInet())
        case "STATUS_CHANGE":
            let change = try reader.readText()
            self = .statusChange(change: change, node: try reader.readInet())
        case "SCHEMA_CHANGE":
            self = .schemaChange(try CQLSchemaChange(from: &reader))
        default:
            throw CQLProtocolViolation(.malformed, "unknown event type \(type)")
        }
    }

    /// The [string] the event starts with, as REGISTER names it.
    public var type: String {
        switch self {
        case .topologyChange: return "TOPOLOGY_CHANGE"
        case .statusChange: return "STATUS_CHANGE"
        case .schemaChange: return "SCHEMA_CHANGE"
        }
    }
}
