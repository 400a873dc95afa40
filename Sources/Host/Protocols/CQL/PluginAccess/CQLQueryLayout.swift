/// Where the parts of an uncompressed QUERY request frame are, found by walking its bytes once
/// without decoding them: what the cql_* accessors need of a QUERY (its text, its bound values,
/// its v5 keyspace) without `CQLMessage`'s full decode (slices, the parameters struct, enum copies),
/// which costs several times more and is done per proxied request on a chain whose transforms ask
/// for statements.
///
/// The walk checks exactly what `CQLMessage(frame:compression:maxBodyBytes:)` checks of a QUERY
/// (every length fits in the body, no [value] length below -2, no negative [long string]), so a
/// frame has a layout if and only if the codec reads it (CQLQueryLayoutTests compare the two).
/// Offsets are from the frame's first byte.
struct CQLQueryLayout: Equatable {
    /// The statement text's bytes.
    var text: Range<Int>
    /// The bound values' bytes (each a [value], after a [string] name when `named`).
    var values: Range<Int>
    var valueCount: Int
    var named: Bool
    /// v5: the keyspace field's bytes (its UTF-8 text), nil when the flags name none.
    var keyspace: Range<Int>?

    /// Reads `frame` (one whole frame: header and body) as a QUERY of `version` with header flags
    /// `flags`; nil when the body does not read (or is compressed: only the codec decompresses).
    init?(frame: UnsafeRawBufferPointer, version: CQLVersion, flags: CQLFrameFlags) {
        guard !flags.contains(.compression) else { return nil }
        var reader = Reader(bytes: frame, position: CQLFrameHeader.size)
        guard reader.position <= frame.count else { return nil }
        if flags.contains(.customPayload) {
            // [bytes map]: n, then n × ([string] key, [bytes] value; a negative length is null).
            guard let n = reader.short() else { return nil }
            for _ in 0..<n {
                guard let key = reader.short(), reader.skip(Int(key)), let length = reader.int() else { return nil }
                if length > 0, !reader.skip(Int(length)) { return nil }
            }
        }
        guard let textLength = reader.int(), textLength >= 0 else { return nil }
        let textStart = reader.position
        guard reader.skip(Int(textLength)) else { return nil }
        text = textStart..<reader.position
        // <consistency><flags>
        guard reader.skip(2) else { return nil }
        let queryFlags: UInt32
        if version.usesIntQueryFlags {
            guard let raw = reader.int() else { return nil }
            queryFlags = UInt32(bitPattern: raw)
        } else {
            guard let raw = reader.byte() else { return nil }
            queryFlags = UInt32(raw)
        }
        let parameters = CQLQueryFlags(rawValue: queryFlags)
        // As the codec: without values there are no names either.
        named = parameters.contains(.values) && parameters.contains(.namesForValues)
        let valuesStart: Int
        if parameters.contains(.values) {
            guard let count = reader.short() else { return nil }
            valueCount = Int(count)
            valuesStart = reader.position
            for _ in 0..<count {
                if named {
                    guard let name = reader.short(), reader.skip(Int(name)) else { return nil }
                }
                guard let length = reader.int(), length >= -2 else { return nil }
                if length > 0, !reader.skip(Int(length)) { return nil }
            }
        } else {
            valueCount = 0
            valuesStart = reader.position
        }
        values = valuesStart..<reader.position
        if parameters.contains(.pageSize), !reader.skip(4) { return nil }
        if parameters.contains(.pagingState) {
            guard let length = reader.int() else { return nil }
            if length > 0, !reader.skip(Int(length)) { return nil }
        }
        if parameters.contains(.serialConsistency), !reader.skip(2) { return nil }
        if parameters.contains(.defaultTimestamp), !reader.skip(8) { return nil }
        keyspace = nil
        if version.hasV5Messages {
            if parameters.contains(.keyspace) {
                guard let length = reader.short() else { return nil }
                let start = reader.position
                guard reader.skip(Int(length)) else { return nil }
                keyspace = start..<reader.position
            }
            if parameters.contains(.nowInSeconds), !reader.skip(4) { return nil }
        }
    }

    /// Big-endian reads that fail (nil, false) rather than run past the end.
    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var position: Int

        mutating func skip(_ count: Int) -> Bool {
            guard count >= 0, count <= bytes.count - position else { return false }
            position += count
            return true
        }

        mutating func byte() -> UInt8? {
            guard bytes.count - position >= 1 else { return nil }
            defer { position += 1 }
            return bytes[position]
        }

        mutating func short() -> UInt16? {
            guard bytes.count - position >= 2 else { return nil }
            defer { position += 2 }
            return UInt16(bytes[position]) << 8 | UInt16(bytes[position + 1])
        }

        mutating func int() -> Int32? {
            guard bytes.count - position >= 4 else { return nil }
            defer { position += 4 }
            return Int32(bitPattern: UInt32(bytes[position]) << 24 | UInt32(bytes[position + 1]) << 16
                | UInt32(bytes[position + 2]) << 8 | UInt32(bytes[position + 3]))
        }
    }
}
