import NIOCore

/// STARTUP: a [string map] of options; CQL_VERSION is required, COMPRESSION optional.
public struct CQLStartup: Sendable {
    public let options: [String: String]

    public init(message: ByteBuffer) throws(CQLProtocolViolation) {
        var reader = CQLBodyReader(message)
        options = try reader.readStringMap()
    }

    public var cqlVersion: String? { options["CQL_VERSION"] }
    /// The COMPRESSION option as given (nil when absent).
    public var compressionName: String? { options["COMPRESSION"] }
    /// The compression asked for: nil when none; throws for a name Sluice does not know.
    public func compression() throws(CQLProtocolViolation) -> CQLCompression? {
        guard let name = compressionName else { return nil }
        guard let compression = CQLCompression(startupName: name) else {
            throw CQLProtocolViolation(.malformed, "Unknown compression algorithm: \(name)")
        }
        return compression
    }
}

/// QUERY: <query [long string]><query_parameters>.
public struct CQLQueryRequest: Sendable {
    /// The statement text (a slice of the frame).
    public let query: ByteBuffer
    public let parameters: CQLQueryParameters

    public init(message: ByteBuffer, version: CQLVersion) throws(CQLProtocolViolation) {
        var reader = CQLBodyReader(message)
        query = try reader.readLongString()
        parameters = try CQLQueryParameters(from: &reader, version: version)
    }

    public var queryText: String { String(buffer: query) }
}

/// PREPARE: <query [long string]>, then in v5 <flags [int]>[<keyspace [string]>] (flag 0x01).
public struct CQLPrepareRequest: Sendable {
    public let query: ByteBuffer
    /// v5 flags (0 before v5).
    public let flags: UInt32
    public let keyspace: String?

    public init(message: ByteBuffer, version: CQLVersion) throws(CQLProtocolViolation) {
        var reader = CQLBodyReader(message)
        query = try reader.readLongString()
        if version.hasV5Messages {
            flags = UInt32(bitPattern: try reader.readInt())
            keyspace = flags & 0x01 != 0 ? try reader.readText() : nil
        } else {
            flags = 0
            keyspace = nil
        }
    }

    public var queryText: String { String(buffer: query) }
}

/// EXECUTE: <id [short bytes]>, in v5 <result_metadata_id [short bytes]>, then <query_parameters>.
public struct CQLExecuteRequest: Sendable {
    public let id: ByteBuffer
    /// v5: the id of the result metadata the client has for this statement.
    public let resultMetadataID: ByteBuffer?
    public let parameters: CQLQueryParameters

    public init(message: ByteBuffer, version: CQLVersion) throws(CQLProtocolViolation) {
        var reader = CQLBodyReader(message)
        id = try reader.readShortBytes()
        resultMetadataID = version.hasV5Messages ? try reader.readShortBytes() : nil
        parameters = try CQLQueryParameters(from: &reader, version: version)
    }
}

/// REGISTER: a [string list] of event types (TOPOLOGY_CHANGE, STATUS_CHANGE, SCHEMA_CHANGE).
public struct CQLRegisterRequest: Sendable {
    public let eventTypes: [String]

    public init(message: ByteBuffer) throws(CQLProtocolViolation) {
        var reader = CQLBodyReader(message)
        eventTypes = try reader.readStringList()
    }
}
