import NIOCore

/// A RESULT Prepared: <id [short bytes]>, in v5 <result_metadata_id [short bytes]>, then the bound
/// variables' <metadata> and the <result_metadata> of the rows the statement returns.
public struct CQLPreparedResult: Sendable {
    /// <flags [int]><columns_count [int]><pk_count [int]> (v4+) <pk_index [short]>… then the column
    /// specs (global table spec when flag 0x01).
    public struct Metadata: Sendable {
        public let flags: Int32
        public let partitionKeyIndexes: [UInt16]
        public let columns: [CQLColumnSpec]

        init(from reader: inout CQLBodyReader, version: CQLVersion) throws(CQLProtocolViolation) {
            flags = try reader.readInt()
            let count = try reader.readInt()
            guard count >= 0 else { throw CQLProtocolViolation(.malformed, "negative column count \(count)") }
            var indexes: [UInt16] = []
            if version.hasPartitionKeyIndexes {
                let pkCount = try reader.readInt()
                guard pkCount >= 0, Int(pkCount) <= reader.remaining / 2 else {
                    throw CQLProtocolViolation(.malformed, "invalid partition key count \(pkCount)")
                }
                for _ in 0..<Int(pkCount) { indexes.append(try reader.readShort()) }
            }
            partitionKeyIndexes = indexes
            columns = try CQLColumnSpec.readColumns(count: Int(count), global: flags & 0x0001 != 0, from: &reader)
        }
    }

    public let id: ByteBuffer
    /// v5.
    public let resultMetadataID: ByteBuffer?
    /// The bound variables.
    public let metadata: Metadata
    /// The columns of the rows the statement returns.
    public let resultMetadata: CQLRowsMetadata

    public init(from reader: inout CQLBodyReader, version: CQLVersion) throws(CQLProtocolViolation) {
        id = try reader.readShortBytes()
        resultMetadataID = version.hasV5Messages ? try reader.readShortBytes() : nil
        metadata = try Metadata(from: &reader, version: version)
        resultMetadata = try CQLRowsMetadata(from: &reader, version: version)
    }
}
