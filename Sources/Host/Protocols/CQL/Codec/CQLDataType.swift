import NIOCore

/// A column or value type as the protocol writes it (an [option]: a [short] id and, for custom,
/// collection, UDT and tuple types, what they are made of).
public indirect enum CQLDataType: Equatable, Sendable {
    /// A named field of a user-defined type.
    public struct Field: Equatable, Sendable {
        public let name: String
        public let type: CQLDataType
        public init(name: String, type: CQLDataType) {
            self.name = name
            self.type = type
        }
    }

    /// 0x0000: a Java class name.
    case custom(String)
    /// 0x0001 ascii … 0x0015 duration: a type with no parameters (see the constants below).
    case native(UInt16)
    case list(CQLDataType)
    case map(key: CQLDataType, value: CQLDataType)
    case set(CQLDataType)
    case udt(keyspace: String, name: String, fields: [Field])
    case tuple([CQLDataType])

    public static let ascii = CQLDataType.native(0x0001)
    public static let bigint = CQLDataType.native(0x0002)
    public static let blob = CQLDataType.native(0x0003)
    public static let boolean = CQLDataType.native(0x0004)
    public static let counter = CQLDataType.native(0x0005)
    public static let decimal = CQLDataType.native(0x0006)
    public static let double = CQLDataType.native(0x0007)
    public static let float = CQLDataType.native(0x0008)
    public static let int = CQLDataType.native(0x0009)
    public static let timestamp = CQLDataType.native(0x000B)
    public static let uuid = CQLDataType.native(0x000C)
    /// varchar / text.
    public static let varchar = CQLDataType.native(0x000D)
    public static let varint = CQLDataType.native(0x000E)
    public static let timeuuid = CQLDataType.native(0x000F)
    public static let inet = CQLDataType.native(0x0010)
    public static let date = CQLDataType.native(0x0011)
    public static let time = CQLDataType.native(0x0012)
    public static let smallint = CQLDataType.native(0x0013)
    public static let tinyint = CQLDataType.native(0x0014)
    public static let duration = CQLDataType.native(0x0015)

    /// How deep collections, UDTs and tuples may nest before the input is called malformed (the
    /// reader recurses once per level; Cassandra itself refuses far shallower types).
    public static let maxNesting = 64

    /// Reads an [option].
    public static func read(from reader: inout CQLBodyReader, depth: Int = 0) throws(CQLProtocolViolation) -> CQLDataType {
        guard depth < maxNesting else {
            throw CQLProtocolViolation(.malformed, "type nested deeper than \(maxNesting) levels")
        }
        let id = try reader.readShort()
        switch id {
        case 0x0000: return .custom(try reader.readText())
        case 0x0001...0x0015 where id != 0x000A: return .native(id)
        case 0x0020: return .list(try read(from: &reader, depth: depth + 1))
        case 0x0021:
            let key = try read(from: &reader, depth: depth + 1)
            return .map(key: key, value: try read(from: &reader, depth: depth + 1))
        case 0x0022: return .set(try read(from: &reader, depth: depth + 1))
        case 0x0030:
            let keyspace = try reader.readText()
            let name = try reader.readText()
            let count = Int(try reader.readShort())
            var fields: [Field] = []
            fields.reserveCapacity(min(count, reader.remaining / 4))
            for _ in 0..<count {
                let fieldName = try reader.readText()
                fields.append(Field(name: fieldName, type: try read(from: &reader, depth: depth + 1)))
            }
            return .udt(keyspace: keyspace, name: name, fields: fields)
        case 0x0031:
            let count = Int(try reader.readShort())
            var elements: [CQLDataType] = []
            elements.reserveCapacity(min(count, reader.remaining / 2))
            for _ in 0..<count { elements.append(try read(from: &reader, depth: depth + 1)) }
            return .tuple(elements)
        default:
            throw CQLProtocolViolation(.malformed, "unknown type id 0x\(String(id, radix: 16))")
        }
    }

    /// Writes the [option].
    public func write(to buffer: inout ByteBuffer) {
        switch self {
        case .custom(let className):
            buffer.writeInteger(UInt16(0x0000))
            buffer.writeCQLString(className)
        case .native(let id):
            buffer.writeInteger(id)
        case .list(let element):
            buffer.writeInteger(UInt16(0x0020))
            element.write(to: &buffer)
        case .map(let key, let value):
            buffer.writeInteger(UInt16(0x0021))
            key.write(to: &buffer)
            value.write(to: &buffer)
        case .set(let element):
            buffer.writeInteger(UInt16(0x0022))
            element.write(to: &buffer)
        case .udt(let keyspace, let name, let fields):
            buffer.writeInteger(UInt16(0x0030))
            buffer.writeCQLString(keyspace)
            buffer.writeCQLString(name)
            buffer.writeInteger(UInt16(fields.count))
            for field in fields {
                buffer.writeCQLString(field.name)
                field.type.write(to: &buffer)
            }
        case .tuple(let elements):
            buffer.writeInteger(UInt16(0x0031))
            buffer.writeInteger(UInt16(elements.count))
            for element in elements { element.write(to: &buffer) }
        }
    }
}
