import NIOCore

/// The <metadata> of a RESULT Rows (and the result metadata of a Prepared result):
/// <flags [int]><columns_count [int]>[<paging_state [bytes]>][<new_metadata_id [short bytes]> (v5)]
/// [<global_table_spec>?<col_spec_1>…<col_spec_n>] (no column specs when No_metadata is set).
public struct CQLRowsMetadata: Sendable {
    public struct Flags: OptionSet, Hashable, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let globalTableSpec = Flags(rawValue: 0x0001)
        public static let hasMorePages = Flags(rawValue: 0x0002)
        public static let noMetadata = Flags(rawValue: 0x0004)
        /// v5: a new result metadata id follows.
        public static let metadataChanged = Flags(rawValue: 0x0008)
    }

    public let flags: Flags
    public let columnCount: Int
    /// Where the next page starts, when there is one (a slice).
    public let pagingState: ByteBuffer?
    /// v5: the id of the metadata, sent when it changed since the client's EXECUTE.
    public let newMetadataID: ByteBuffer?
    /// The columns, or nil when the server left them out (No_metadata).
    public let columns: [CQLColumnSpec]?

    public init(from reader: inout CQLBodyReader, version: CQLVersion) throws(CQLProtocolViolation) {
        flags = Flags(rawValue: try reader.readInt())
        let count = try reader.readInt()
        guard count >= 0 else { throw CQLProtocolViolation(.malformed, "negative column count \(count)") }
        columnCount = Int(count)
        pagingState = flags.contains(.hasMorePages) ? try reader.readBytes() : nil
        newMetadataID = version.hasV5Messages && flags.contains(.metadataChanged) ? try reader.readShortBytes() : nil
        columns = flags.contains(.noMetadata) ? nil
            : try CQLColumnSpec.readColumns(count: columnCount, global: flags.contains(.globalTableSpec), from: &reader)
    }
}

/// A RESULT Rows: its metadata and a cursor over the cells.
public struct CQLRows: Sendable {
    public let metadata: CQLRowsMetadata
    public let rowCount: Int
    /// The rows' bytes: rowCount × columnCount [bytes] cells (checked when read).
    public let content: ByteBuffer

    public init(from reader: inout CQLBodyReader, version: CQLVersion) throws(CQLProtocolViolation) {
        metadata = try CQLRowsMetadata(from: &reader, version: version)
        let count = try reader.readInt()
        guard count >= 0 else { throw CQLProtocolViolation(.malformed, "negative row count \(count)") }
        rowCount = Int(count)
        // Rows without columns carry no bytes, so nothing bounds their count: a cursor would step
        // through up to 2^31-1 empty rows. A server never sends rows without columns.
        guard metadata.columnCount > 0 || rowCount == 0 else {
            throw CQLProtocolViolation(.malformed, "\(rowCount) rows of 0 columns")
        }
        let start = reader.buffer
        let (cells, overflow) = rowCount.multipliedReportingOverflow(by: metadata.columnCount)
        guard !overflow, cells <= reader.remaining / 4 else { throw .truncated("\(rowCount) rows") }
        for _ in 0..<cells { _ = try reader.readBytes() }
        content = start.getSlice(at: start.readerIndex, length: start.readableBytes - reader.remaining)!
    }

    /// A cursor over the cells, row by row.
    public func makeCursor() -> CQLRowCursor {
        CQLRowCursor(content: content, rowCount: rowCount, columnCount: metadata.columnCount)
    }
}

/// Walks the cells of a RESULT Rows without copying them: `nextRow()` then `nextCell()` once per
/// column. Each cell is a slice of the frame, or nil for null.
public struct CQLRowCursor: Sendable {
    private var reader: CQLBodyReader
    public let rowCount: Int
    public let columnCount: Int
    /// The row being read (0-based); -1 before the first `nextRow()`.
    public private(set) var row = -1
    /// The column the next `nextCell()` returns.
    public private(set) var column = 0

    init(content: ByteBuffer, rowCount: Int, columnCount: Int) {
        reader = CQLBodyReader(content)
        self.rowCount = rowCount
        self.columnCount = columnCount
    }

    /// Moves to the next row (skipping cells of the current one not read yet); false at the end.
    public mutating func nextRow() -> Bool {
        if row >= 0 { while column < columnCount { _ = nextCell() } }
        guard row + 1 < rowCount else { row = rowCount; return false }
        row += 1
        column = 0
        return true
    }

    /// The next cell of the current row: `.some(nil)` for null, nil past the last column.
    public mutating func nextCell() -> ByteBuffer?? {
        guard row >= 0, row < rowCount, column < columnCount else { return nil }
        column += 1
        // The content was checked when the rows were read.
        guard let cell = try? reader.readBytes() else { return .some(nil) }
        return .some(cell)
    }
}
