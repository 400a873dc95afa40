import NIOCore
import PluginABI

/// What the cql_* host functions read from one CQL message of a batch: its header, its message, and
/// (made on first use) its statements and rows. Kept by the batch with its message (`Batch.cqlMessage`),
/// so the views plugins get (texts, names, values, cells) stay valid exactly as long as the message.
///
/// Byte views point into the message itself (a slice of the frame, zero-copy) or into storage
/// this object or a `CQLPreparedStatements.Entry` it holds owns (names the classifier lower-cased).
final class CQLParsedMessage {
    /// The message (nil while recycled: it holds no storage of the read then).
    private var message_: ByteBuffer?
    /// The message (empty while recycled).
    var bytes: ByteBuffer { message_ ?? Self.noBytes }
    private(set) var header: CQLFrameHeader?
    /// A QUERY's parts found in place (`CQLQueryLayout`), so that its text, values and keyspace
    /// need no decode; nil for any other message (and for a QUERY whose body does not read).
    private var query: CQLQueryLayout?
    /// False while recycled (`recycle`): the batch's slot then holds this object, emptied, for the
    /// next message to be read into (`load`) instead of allocating a new one.
    private(set) var isLoaded = false
    /// The decoded message once asked for (boxed: a QUERY's accessors never decode it, and an
    /// empty reference costs nothing to keep or to free, where the enum inline did).
    private var decoded: DecodedMessage?
    private var statements = CQLLazySlots<CQLStatementInfo>()
    private var rowsInfo: CQLRowsInfo??

    private static let noBytes = ByteBuffer()

    init(_ bytes: ByteBuffer, isResponse: Bool) {
        load(bytes, isResponse: isResponse)
    }

    /// Reads `bytes` into this object: a new one, or a recycled one (which holds nothing of the
    /// message it had before: `recycle` let go of it all).
    func load(_ bytes: consuming ByteBuffer, isResponse: Bool) {
        assert(!isLoaded, "loaded over a message: recycle first")
        isLoaded = true
        // Nothing read from an earlier message survives (recycle let go of it; this also covers a
        // recycled object asked for its message before being loaded).
        if decoded != nil { decoded = nil }
        if rowsInfo != nil { rowsInfo = nil }
        // The header and a QUERY's layout in one look at the bytes.
        let (header, query) = bytes.withUnsafeReadableBytes { frame -> (CQLFrameHeader?, CQLQueryLayout?) in
            guard let header = Self.header(of: frame, isResponse: isResponse) else { return (nil, nil) }
            guard header.opcodeByte == CQLOpcode.query.rawValue else { return (header, nil) }
            return (header, CQLQueryLayout(frame: frame, version: header.version, flags: header.flags))
        }
        message_ = consume bytes
        self.header = header
        self.query = query
        guard let header else {
            decoded = DecodedMessage.none
            return
        }
        // A QUERY without a layout does not read (the codec checks the same), unless it is compressed.
        if query == nil, header.opcodeByte == CQLOpcode.query.rawValue, !header.flags.contains(.compression) {
            decoded = DecodedMessage.none
        }
    }

    /// The header of `frame` when it is exactly one whole frame that `CQLFrameScanner` accepts in
    /// the direction (versions 3 to 5, a known opcode, a body length that is the rest of the bytes),
    /// else nil: the scanner's checks in one look at the bytes (the scanner itself, without a
    /// negotiated version, reads them field by field).
    static func header(of frame: UnsafeRawBufferPointer, isResponse: Bool) -> CQLFrameHeader? {
        guard frame.count >= CQLFrameHeader.size else { return nil }
        let versionByte = frame[0], opcode = frame[4]
        guard let version = CQLVersion(rawValue: versionByte & 0x7F),
              (versionByte & CQLFrameHeader.responseBit != 0) == isResponse, CQLOpcode(rawValue: opcode) != nil
        else { return nil }
        let length = Int32(bigEndian: frame.loadUnaligned(fromByteOffset: 5, as: Int32.self))
        guard length >= 0, CQLFrameHeader.size + Int(length) == frame.count else { return nil }
        return CQLFrameHeader(version: version, isResponse: isResponse, flags: CQLFrameFlags(rawValue: frame[1]),
                              stream: Int16(bitPattern: UInt16(frame[2]) << 8 | UInt16(frame[3])), opcodeByte: opcode,
                              bodyLength: Int(length))
    }

    /// Lets go of the message and of everything read from it (the batch was emptied for its next
    /// use), keeping this object and its statements' for the next message of the same slot. Every
    /// view handed out of it ends here, as the header says (the batch ended).
    func recycle() {
        // Each reference only when set: storing nil over nil still calls the runtime.
        message_ = nil
        header = nil
        query = nil
        isLoaded = false
        if decoded != nil { decoded = nil }
        if rowsInfo != nil { rowsInfo = nil }
        statements.recycleAll { $0.recycle() }
    }

    /// The message, decoded on first use (a QUERY's accessors never need it); nil when the frame
    /// does not read (a batch holds only frames that read, unless a source handed over one it did
    /// not check).
    var message: CQLMessage? {
        if let decoded { return decoded.message }
        var made: CQLMessage?
        if let header, let bytes = message_ {
            made = try? CQLMessage(frame: CQLFrame(header: header, bytes: bytes), compression: nil, maxBodyBytes: Int.max)
        }
        decoded = made.map(DecodedMessage.init) ?? DecodedMessage.none
        return made
    }

    /// A decoded message (`none`, shared: the frame does not read).
    private final class DecodedMessage {
        static let none = DecodedMessage(nil)
        let message: CQLMessage?
        init(_ message: CQLMessage?) { self.message = message }
    }

    /// Whether `bytes` is exactly one well-formed, uncompressed frame of the direction, with an
    /// opcode of that direction and a message that reads: what a batch accepts from a plugin.
    static func isValid(_ bytes: ByteBuffer, isResponse: Bool) -> Bool {
        let parsed = CQLParsedMessage(bytes, isResponse: isResponse)
        guard let header = parsed.header, parsed.message != nil, !header.flags.contains(.compression),
              let opcode = header.opcode, opcode.isRequest != isResponse
        else { return false }
        return true
    }

    // MARK: statements

    /// How many statements a request holds (QUERY, PREPARE, EXECUTE: 1; BATCH: its children).
    var statementCount: Int {
        if query != nil { return 1 }
        switch message {
        case .query?, .prepare?, .execute?: return 1
        case .batch(let batch)?: return batch.childCount
        default: return 0
        }
    }

    /// `body` with statement `index` (read on first use), not retained for it: `body` must not
    /// change the batch; `otherwise` when there is no such statement.
    @inline(__always)
    func withStatement<R>(_ index: Int, otherwise: R, _ body: (CQLStatementInfo) -> R) -> R {
        if index >= 0, let known = statements.unretained(index) {
            if known._withUnsafeGuaranteedRef({ $0.isLoaded }) { return known._withUnsafeGuaranteedRef(body) }
            // A recycled statement of a QUERY is filled in place (the slot keeps it). Any other
            // message's replaces it in the slot: that path (below) holds its own reference.
            if query != nil, index < statementCount {
                return known._withUnsafeGuaranteedRef { info in
                    guard let made = read(index, into: info, registry: nil) else { return otherwise }
                    return body(made)
                }
            }
        }
        guard let made = statement(index) else { return otherwise }
        return body(made)
    }

    /// Statement `index`, read on first use.
    /// `registry`: where EXECUTE ids are looked up (nil: `CQLPreparedStatements.shared`, fetched
    /// only for an EXECUTE or BATCH, not per QUERY).
    func statement(_ index: Int, registry: CQLPreparedStatements? = nil) -> CQLStatementInfo? {
        guard index >= 0, index < statementCount else { return nil }
        let known = statements[index]
        if let known, known.isLoaded { return known }
        return read(index, into: known, registry: registry)
    }

    /// Reads statement `index` (< `statementCount`) into `spare`, the slot's recycled object, when
    /// there is one (the QUERY path; the others make a new one), else into a new one kept in the slot.
    private func read(_ index: Int, into spare: CQLStatementInfo?, registry: CQLPreparedStatements?) -> CQLStatementInfo? {
        if let query {
            return statement(of: query, into: spare, at: index)
        }
        let made: CQLStatementInfo
        switch message {
        case .query(let query)?:
            made = CQLStatementInfo(text: query.query, values: query.parameters.values,
                                    requestKeyspace: query.parameters.keyspace, prepared: nil)
        case .prepare(let prepare)?:
            made = CQLStatementInfo(text: prepare.query, values: .none, requestKeyspace: prepare.keyspace, prepared: nil)
        case .execute(let execute)?:
            let entry = (registry ?? .shared).entry(id: execute.id)
            made = CQLStatementInfo(text: entry?.text, values: execute.parameters.values,
                                    requestKeyspace: execute.parameters.keyspace, prepared: entry)
        case .batch(let batch)?:
            let children = batch.children
            guard index < children.count else { return nil }
            switch children[index].statement {
            case .query(let text):
                made = CQLStatementInfo(text: text, values: children[index].values, requestKeyspace: batch.keyspace,
                                        prepared: nil)
            case .prepared(let id):
                let entry = (registry ?? .shared).entry(id: id)
                made = CQLStatementInfo(text: entry?.text, values: children[index].values,
                                        requestKeyspace: batch.keyspace, prepared: entry)
            }
        default:
            return nil
        }
        statements[index] = made
        return made
    }

    /// The statement of a QUERY read in place (slices of the frame, no decode), into `spare` (a
    /// recycled statement of slot `index`) when there is one.
    private func statement(of query: CQLQueryLayout, into spare: CQLStatementInfo?, at index: Int) -> CQLStatementInfo {
        // message_ is set: a QUERY layout was read from it.
        let start = message_.unsafelyUnwrapped.readerIndex
        let text = message_.unsafelyUnwrapped.getSlice(at: start + query.text.lowerBound, length: query.text.count)!
        let valueBytes = query.valueCount == 0 ? nil
            : message_.unsafelyUnwrapped.getSlice(at: start + query.values.lowerBound, length: query.values.count)!
        let keyspace = query.keyspace.map { range in
            message_.unsafelyUnwrapped.withUnsafeReadableBytes {
                String(decoding: UnsafeRawBufferPointer(rebasing: $0[range]), as: UTF8.self)
            }
        }
        if let spare {
            spare.load(text: text, valueCount: query.valueCount, named: query.named, valueBytes: valueBytes,
                       requestKeyspace: keyspace, prepared: nil)
            return spare
        }
        let made = CQLStatementInfo()
        made.load(text: text, valueCount: query.valueCount, named: query.named, valueBytes: valueBytes,
                  requestKeyspace: keyspace, prepared: nil)
        statements[index] = made
        return made
    }

    // MARK: rows

    /// The RESULT Rows of a response, or nil for any other message.
    var rows: CQLRowsInfo? {
        if let known = rowsInfo { return known }
        var made: CQLRowsInfo?
        if case .result(.rows(let rows))? = message {
            made = CQLRowsInfo(rows: rows, in: bytes)
        }
        rowsInfo = .some(made)
        return made
    }
}

/// One statement of a request: its text (nil for a prepared id the host never saw prepared), its
/// bound values, and what it touches (classified on first use).
///
/// Recycled with its message (`recycle`, then `load`): everything read from one statement is let
/// go of before the object holds the next one.
final class CQLStatementInfo {
    private(set) var text: ByteBuffer?
    /// The bound values, kept as their parts (a struct copy of `CQLBoundValues` costs a generic
    /// value-witness call each time); `values` puts them together.
    private(set) var valueCount = 0
    private(set) var valuesNamed = false
    /// The values' bytes; nil when there are none.
    private var valueBytes: ByteBuffer?
    /// The keyspace the request itself names (v5 keyspace field, or the prepared statement's).
    private(set) var requestKeyspace: FactBytes?
    private(set) var prepared: CQLPreparedStatements.Entry?
    /// False while recycled (see `CQLParsedMessage.recycle`).
    private(set) var isLoaded = false
    /// The classification once made, as plain views (into the text, or into the names made for it).
    private var classified: CQLStatementClassification?
    /// The thread's cache's classification when it has names the classifier had to lower-case or
    /// unquote, kept for the views pointing at them (the cache may let go of them sooner). A
    /// prepared statement's made names are held by its entry (`prepared`).
    private var classifiedText: CQLClassifiedText?
    /// Each value's offset in `values.bytes` and length (-1 null, -2 unset), and its name's when named.
    private var valueIndex: [(name: ByteBuffer?, value: CQLValue)]?

    init(text: ByteBuffer?, values: CQLBoundValues, requestKeyspace: String?, prepared: CQLPreparedStatements.Entry?) {
        load(text: text, valueCount: values.count, named: values.named, valueBytes: values.count == 0 ? nil : values.bytes,
             requestKeyspace: requestKeyspace, prepared: prepared)
    }

    /// An empty one, for `load`.
    init() {}

    /// Holds the statement given (a new object, or a recycled one, which holds nothing).
    func load(text: consuming ByteBuffer?, valueCount: Int, named: Bool, valueBytes: consuming ByteBuffer?,
              requestKeyspace: String?, prepared: CQLPreparedStatements.Entry?) {
        assert(!isLoaded, "loaded over a statement: recycle first")
        self.text = text
        self.valueCount = valueCount
        valuesNamed = named
        if let valueBytes { self.valueBytes = valueBytes }
        if let prepared { self.prepared = prepared }
        if let requestKeyspace {
            self.requestKeyspace = FactBytes(Array(requestKeyspace.utf8))
        } else if let keyspace = prepared?.keyspace {
            self.requestKeyspace = keyspace
        }
        isLoaded = true
    }

    /// Lets go of the statement and of all that was read from it (its classification, the names
    /// made for it, its value index): the next `load` starts from nothing, as a new object would.
    func recycle() {
        // Each reference only when set: storing nil over nil still calls the runtime.
        text = nil
        if valueBytes != nil { valueBytes = nil }
        valueCount = 0
        valuesNamed = false
        if requestKeyspace != nil { requestKeyspace = nil }
        if prepared != nil { prepared = nil }
        classified = nil
        if classifiedText != nil { classifiedText = nil }
        if valueIndex != nil { valueIndex = nil }
        isLoaded = false
    }

    /// The bound values (slices of the message).
    var values: CQLBoundValues {
        CQLBoundValues(count: valueCount, named: valuesNamed, bytes: valueBytes ?? CQLBoundValues.none.bytes)
    }

    /// The kind, and the keyspace and table the text names (nil when it names none), as
    /// `CQLStatement.classify` reads them; made on first use. The text is lexed at most once per
    /// distinct text and thread: a prepared statement's entry keeps its classification, and any
    /// other text is looked up in the thread's `CQLStatementShapeCache`.
    var classification: CQLStatementClassification {
        if let classified { return classified }
        let made: CQLStatementClassification
        if let text {
            made = text.withUnsafeReadableBytes { bytes in
                if let prepared {
                    assert(prepared.text.readableBytesView.elementsEqual(bytes), "a prepared statement's text is its entry's")
                    return prepared.classified.classification(in: bytes)
                }
                return CQLStatementShapeCache.withClassifiedOnThisThread(bytes) { known in
                    if known.pointee.hasMadeNames { classifiedText = known.pointee }
                    return known.pointee.classification(in: bytes)
                }
            }
        } else {
            made = CQLStatementClassification(kind: .other, keyspace: nil, table: nil)
        }
        classified = made
        return made
    }

    /// The bound values in order (slices of the message).
    var boundValues: [(name: ByteBuffer?, value: CQLValue)] {
        if let valueIndex { return valueIndex }
        let made = values.map { ($0.name, $0.value) }
        valueIndex = made
        return made
    }
}

/// A statement's classification as cql_statement hands it out: plain values, so that reading it
/// again (every transform that asks) copies no references.
struct CQLStatementClassification {
    let kind: CQLStatement.Kind
    /// The keyspace the text names, nil when it names none.
    let keyspace: sluice_host_view?
    let table: sluice_host_view?
}

/// A keyspace or table name a statement names, as plugins get it: a view of the statement's text
/// when the name reads as written (most do: unquoted lower-case, or quoted without `""`), else
/// bytes of its own (lower-cased or unquoted). Kept as a range relative to the text, so that one
/// value serves every text with the same bytes (`CQLStatementShapeCache`, a prepared entry); the
/// view is made against the text at hand. Either view lives as long as the `CQLStatementInfo`
/// holding the text and `made` (its text is a slice of the message, whose storage never moves).
struct CQLNameBytes {
    /// The name's bytes in the text, without quotes.
    let range: Range<Int>
    /// The name lower-cased or unquoted; nil when the text's bytes at `range` are the name.
    let made: FactBytes?

    init(range: Range<Int>, made: FactBytes?) {
        self.range = range
        self.made = made
    }

    /// `name` of the statement text `text`.
    init(_ name: CQLStatementShape.Name, in text: UnsafeRawBufferPointer) {
        range = name.range
        made = name.isVerbatim(in: text) ? nil : FactBytes(Array(name.string(in: text).utf8))
    }

    /// The name as a view: of `made`, or of `text` (a text with the bytes this was made from).
    func view(in text: UnsafeRawBufferPointer) -> sluice_host_view {
        if let made { return sluice_host_view(ptr: made.pointer, len: made.count) }
        return sluice_host_view(ptr: text.baseAddress.map { ($0 + range.lowerBound).assumingMemoryBound(to: UInt8.self) },
                                len: range.count)
    }
}

/// A RESULT Rows as plugins read it: the column specs (as views) and where the cells start in the
/// message, for cursors and cell replacement.
final class CQLRowsInfo {
    struct Column {
        let keyspace: FactBytes
        let table: FactBytes
        let name: FactBytes
        let type: Int32
    }

    let rowCount: Int
    let columnCount: Int
    /// nil when the response carries no metadata (No_metadata).
    let columns: [Column]?
    /// Offset of the first cell from the message's first byte.
    let contentOffset: Int
    /// Length of the cells' bytes.
    let contentLength: Int

    init(rows: CQLRows, in message: ByteBuffer) {
        rowCount = rows.rowCount
        columnCount = rows.metadata.columnCount
        columns = rows.metadata.columns?.map {
            Column(keyspace: FactBytes(Array($0.keyspace.utf8)), table: FactBytes(Array($0.table.utf8)),
                   name: FactBytes(Array($0.name.utf8)), type: $0.type.optionID)
        }
        // The cells are a slice of the message (same storage): their distance is the offset.
        let start = message.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        let cells = rows.content.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        contentOffset = rows.content.readableBytes == 0 ? message.readableBytes : Int(cells &- start)
        contentLength = rows.content.readableBytes
    }

    /// The range of cell (row, column) in the message: its [bytes] length field's offset and the
    /// cell's whole length (4 + its bytes, 4 for null).
    func cellRange(row: Int, column: Int, in message: ByteBuffer) -> (offset: Int, length: Int)? {
        guard row >= 0, row < rowCount, column >= 0, column < columnCount else { return nil }
        var offset = contentOffset
        let target = row * columnCount + column
        for i in 0...target {
            guard let length = message.getInteger(at: message.readerIndex + offset, as: Int32.self) else { return nil }
            let whole = 4 + max(0, Int(length))
            if i == target { return (offset, whole) }
            offset += whole
        }
        return nil
    }
}

extension CQLDataType {
    /// The [option] id (collections, UDTs and tuples: their outer id).
    var optionID: Int32 {
        switch self {
        case .custom: return 0x0000
        case .native(let id): return Int32(id)
        case .list: return 0x0020
        case .map: return 0x0021
        case .set: return 0x0022
        case .udt: return 0x0030
        case .tuple: return 0x0031
        }
    }
}
