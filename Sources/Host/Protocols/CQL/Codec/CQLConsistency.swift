/// A [consistency] ([short]) of the protocol.
public struct CQLConsistency: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let any = CQLConsistency(rawValue: 0x0000)
    public static let one = CQLConsistency(rawValue: 0x0001)
    public static let two = CQLConsistency(rawValue: 0x0002)
    public static let three = CQLConsistency(rawValue: 0x0003)
    public static let quorum = CQLConsistency(rawValue: 0x0004)
    public static let all = CQLConsistency(rawValue: 0x0005)
    public static let localQuorum = CQLConsistency(rawValue: 0x0006)
    public static let eachQuorum = CQLConsistency(rawValue: 0x0007)
    public static let serial = CQLConsistency(rawValue: 0x0008)
    public static let localSerial = CQLConsistency(rawValue: 0x0009)
    public static let localOne = CQLConsistency(rawValue: 0x000A)

    private static let names = ["ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM",
                                "SERIAL", "LOCAL_SERIAL", "LOCAL_ONE"]

    /// The level's name, or its number when the spec defines none.
    public var description: String {
        Int(rawValue) < Self.names.count ? Self.names[Int(rawValue)] : "CONSISTENCY(\(rawValue))"
    }
}
