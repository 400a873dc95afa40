import NIOCore

/// The <query_parameters> of QUERY and EXECUTE:
/// <consistency><flags>[<n><value_1>…<value_n>][<page_size>][<paging_state>][<serial_consistency>]
/// [<timestamp>][<keyspace> (v5)][<now_in_seconds> (v5)]. The flags are a [byte] up to v4, an [int]
/// in v5. Values are a lazy view (`CQLBoundValues`); the paging state is a slice.
public struct CQLQueryParameters: Sendable {
    public let consistency: CQLConsistency
    public let flags: CQLQueryFlags
    public let values: CQLBoundValues
    public let pageSize: Int32?
    public let pagingState: ByteBuffer?
    public let serialConsistency: CQLConsistency?
    public let defaultTimestamp: Int64?
    /// v5: the keyspace the statement runs in, instead of the connection's.
    public let keyspace: String?
    /// v5: the time the statement should consider as now.
    public let nowInSeconds: Int32?

    public init(from reader: inout CQLBodyReader, version: CQLVersion) throws(CQLProtocolViolation) {
        consistency = try reader.readConsistency()
        flags = try CQLQueryFlags.read(from: &reader, version: version)
        if flags.contains(.values) {
            let count = Int(try reader.readShort())
            values = try CQLBoundValues.read(count: count, named: flags.contains(.namesForValues), from: &reader)
        } else {
            values = .none
        }
        pageSize = flags.contains(.pageSize) ? try reader.readInt() : nil
        pagingState = flags.contains(.pagingState) ? try reader.readBytes() : nil
        serialConsistency = flags.contains(.serialConsistency) ? try reader.readConsistency() : nil
        defaultTimestamp = flags.contains(.defaultTimestamp) ? try reader.readLong() : nil
        keyspace = version.hasV5Messages && flags.contains(.keyspace) ? try reader.readText() : nil
        nowInSeconds = version.hasV5Messages && flags.contains(.nowInSeconds) ? try reader.readInt() : nil
    }
}
