import NIOCore

/// The flags of QUERY and EXECUTE parameters and of BATCH: a [byte] up to v4, an [int] from v5.
public struct CQLQueryFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Bound values follow (QUERY/EXECUTE).
    public static let values = CQLQueryFlags(rawValue: 0x01)
    /// The client does not want result metadata in Rows (QUERY/EXECUTE).
    public static let skipMetadata = CQLQueryFlags(rawValue: 0x02)
    /// A result page size [int] follows (QUERY/EXECUTE).
    public static let pageSize = CQLQueryFlags(rawValue: 0x04)
    /// A paging state [bytes] follows (QUERY/EXECUTE).
    public static let pagingState = CQLQueryFlags(rawValue: 0x08)
    /// A serial consistency follows.
    public static let serialConsistency = CQLQueryFlags(rawValue: 0x10)
    /// A default timestamp [long] follows.
    public static let defaultTimestamp = CQLQueryFlags(rawValue: 0x20)
    /// Each bound value is preceded by its name.
    public static let namesForValues = CQLQueryFlags(rawValue: 0x40)
    /// v5: a keyspace [string] follows.
    public static let keyspace = CQLQueryFlags(rawValue: 0x80)
    /// v5: a now_in_seconds [int] follows.
    public static let nowInSeconds = CQLQueryFlags(rawValue: 0x100)

    /// Reads the flags as `version` writes them.
    public static func read(from reader: inout CQLBodyReader, version: CQLVersion) throws(CQLProtocolViolation) -> CQLQueryFlags {
        version.usesIntQueryFlags ? CQLQueryFlags(rawValue: UInt32(bitPattern: try reader.readInt()))
            : CQLQueryFlags(rawValue: UInt32(try reader.readByte()))
    }

    public func write(to buffer: inout ByteBuffer, version: CQLVersion) {
        if version.usesIntQueryFlags {
            buffer.writeInteger(rawValue)
        } else {
            buffer.writeInteger(UInt8(truncatingIfNeeded: rawValue))
        }
    }
}
