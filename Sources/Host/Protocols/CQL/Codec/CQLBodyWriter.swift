import NIOCore

/// Writes the notations of the native protocol (the counterpart of `CQLBodyReader`).
extension ByteBuffer {
    /// A [string] (at most 65,535 bytes of UTF-8; longer text is cut at that length).
    @discardableResult
    public mutating func writeCQLString(_ text: String) -> Int {
        let utf8 = text.utf8
        let count = min(utf8.count, Int(UInt16.max))
        var written = writeInteger(UInt16(count))
        written += writeBytes(utf8.prefix(count))
        return written
    }

    /// A [string] whose bytes are `text`'s readable bytes.
    @discardableResult
    public mutating func writeCQLString(bytes text: ByteBuffer) -> Int {
        var slice = text
        if slice.readableBytes > Int(UInt16.max) { slice = slice.getSlice(at: slice.readerIndex, length: Int(UInt16.max))! }
        return writeInteger(UInt16(slice.readableBytes)) + writeImmutableBuffer(slice)
    }

    /// A [long string].
    @discardableResult
    public mutating func writeCQLLongString(_ text: String) -> Int {
        let utf8 = text.utf8
        return writeInteger(Int32(utf8.count)) + writeBytes(utf8)
    }

    /// [bytes]; nil is written as length -1.
    @discardableResult
    public mutating func writeCQLBytes(_ bytes: ByteBuffer?) -> Int {
        guard let bytes else { return writeInteger(Int32(-1)) }
        return writeInteger(Int32(bytes.readableBytes)) + writeImmutableBuffer(bytes)
    }

    /// [bytes] from an array.
    @discardableResult
    public mutating func writeCQLBytes(_ bytes: [UInt8]) -> Int {
        writeInteger(Int32(bytes.count)) + writeBytes(bytes)
    }

    /// [short bytes].
    @discardableResult
    public mutating func writeCQLShortBytes(_ bytes: ByteBuffer) -> Int {
        writeInteger(UInt16(bytes.readableBytes)) + writeImmutableBuffer(bytes)
    }

    /// A [value]: bytes, null (-1) or unset (-2).
    @discardableResult
    public mutating func writeCQLValue(_ value: CQLValue) -> Int {
        switch value {
        case .bytes(let bytes): return writeCQLBytes(bytes)
        case .null: return writeInteger(Int32(-1))
        case .unset: return writeInteger(Int32(-2))
        }
    }

    /// A [string list].
    @discardableResult
    public mutating func writeCQLStringList(_ list: [String]) -> Int {
        var written = writeInteger(UInt16(list.count))
        for item in list { written += writeCQLString(item) }
        return written
    }

    /// A [string map], keys in sorted order (so the bytes do not depend on hashing).
    @discardableResult
    public mutating func writeCQLStringMap(_ map: [String: String]) -> Int {
        var written = writeInteger(UInt16(map.count))
        for key in map.keys.sorted() {
            written += writeCQLString(key)
            written += writeCQLString(map[key]!)
        }
        return written
    }

    /// A [string multimap], keys in sorted order.
    @discardableResult
    public mutating func writeCQLStringMultimap(_ map: [String: [String]]) -> Int {
        var written = writeInteger(UInt16(map.count))
        for key in map.keys.sorted() {
            written += writeCQLString(key)
            written += writeCQLStringList(map[key]!)
        }
        return written
    }

    /// An [inet].
    @discardableResult
    public mutating func writeCQLInet(_ inet: CQLInet) -> Int {
        writeInteger(UInt8(inet.address.count)) + writeBytes(inet.address) + writeInteger(inet.port)
    }
}
