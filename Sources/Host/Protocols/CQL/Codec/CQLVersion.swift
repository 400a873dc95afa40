/// A native protocol version whose frames Sluice's codec reads and writes.
///
/// v3 and v4 frames stand alone on the connection. v5 frames (the spec calls them envelopes) have the
/// same 9-byte header but, once the STARTUP exchange is answered, travel inside segments
/// (`CQLSegment`) and are never compressed themselves; v5 also widens the QUERY/BATCH flags from a
/// byte to an int and adds keyspace / now_in_seconds / result metadata ids.
public enum CQLVersion: UInt8, Comparable, CaseIterable, Sendable {
    case v3 = 3
    case v4 = 4
    case v5 = 5

    public static func < (lhs: CQLVersion, rhs: CQLVersion) -> Bool { lhs.rawValue < rhs.rawValue }

    /// QUERY, EXECUTE and BATCH flags are an [int] from v5 on, a [byte] before.
    public var usesIntQueryFlags: Bool { self >= .v5 }
    /// Frames travel in CRC-checked segments after STARTUP/READY (or AUTHENTICATE), from v5 on.
    public var usesSegments: Bool { self >= .v5 }
    /// PREPARE has flags (and an optional keyspace); EXECUTE and Prepared results carry a result
    /// metadata id; ERROR Read/Write failure carry a reason map: from v5 on.
    public var hasV5Messages: Bool { self >= .v5 }
    /// Prepared metadata lists the partition key indexes from v4 on.
    public var hasPartitionKeyIndexes: Bool { self >= .v4 }

    /// How the protocol writes the version in a "supported versions" list: `4/v4`.
    public var listing: String { "\(rawValue)/v\(rawValue)" }
}
