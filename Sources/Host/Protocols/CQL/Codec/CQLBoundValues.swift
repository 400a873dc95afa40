import NIOCore

/// The bound values of a QUERY, EXECUTE or BATCH child: a lazy, zero-copy view of the values region.
///
/// The region was walked once when the message was read (so its end, and that every length fits,
/// is known); iterating reads names and values straight from the frame's bytes, without copying.
public struct CQLBoundValues: Sequence, Sendable {
    public struct Element: Sendable {
        /// The value's name when the message named its values (a [string] slice), else nil.
        public let name: ByteBuffer?
        public let value: CQLValue
    }

    public let count: Int
    public let named: Bool
    /// The bytes of the values, each a [value], preceded by a [string] name when `named`.
    public let bytes: ByteBuffer

    public static let none = CQLBoundValues(count: 0, named: false, bytes: ByteBuffer())

    init(count: Int, named: Bool, bytes: ByteBuffer) {
        self.count = count
        self.named = named
        self.bytes = bytes
    }

    /// Reads `count` values (named or not) off `reader`, checking each.
    static func read(count: Int, named: Bool, from reader: inout CQLBodyReader) throws(CQLProtocolViolation) -> CQLBoundValues {
        let before = reader.buffer
        for _ in 0..<count {
            if named { _ = try reader.readString() }
            _ = try reader.readValue()
        }
        let length = before.readableBytes - reader.remaining
        return CQLBoundValues(count: count, named: named, bytes: before.getSlice(at: before.readerIndex, length: length)!)
    }

    public struct Iterator: IteratorProtocol {
        var reader: CQLBodyReader
        var left: Int
        let named: Bool

        public mutating func next() -> Element? {
            guard left > 0 else { return nil }
            left -= 1
            // The region was checked when it was read: these reads cannot fail.
            let name = named ? try? reader.readString() : nil
            guard let value = try? reader.readValue() else { return nil }
            return Element(name: name, value: value)
        }
    }

    public func makeIterator() -> Iterator {
        Iterator(reader: CQLBodyReader(bytes), left: count, named: named)
    }

    /// The value at `position` (0-based), or nil.
    public func value(at position: Int) -> CQLValue? {
        guard position >= 0, position < count else { return nil }
        var index = 0
        for element in self {
            if index == position { return element.value }
            index += 1
        }
        return nil
    }

    /// The value named `name` (compared byte for byte) when the values are named, or nil.
    public func value(named name: String) -> CQLValue? {
        guard named else { return nil }
        for element in self where element.name.map({ String(buffer: $0) == name }) ?? false {
            return element.value
        }
        return nil
    }
}
