import NIOCore
import PluginABI

/// The host functions ABI 1.3 adds for CQL batches: a failure with a chosen ERROR code, the header,
/// statements (text, kind, keyspace, table) and bound values of requests, a cursor over the cells
/// of RESULT Rows and cell replacement, and builders for ERROR, RESULT Void, RESULT Rows and QUERY.
///
/// Every view points into the message (zero-copy) or into storage the message's parsed form owns
/// (`CQLParsedMessage`, kept by the batch with the message), so it lives as long as the message.
extension HostAPI {
    /// The ERROR codes a plugin may answer with: those whose body ends after the message.
    static let pluginErrorCodes: Set<Int32> = [
        CQLErrorCode.serverError, .protocolError, .badCredentials, .overloaded, .isBootstrapping, .truncateError,
        .syntaxError, .unauthorized, .invalid, .configError,
    ].reduce(into: []) { $0.insert($1.rawValue) }

    static func view(_ buffer: ByteBuffer) -> sluice_host_view {
        buffer.withUnsafeReadableBytes {
            sluice_host_view(ptr: $0.baseAddress?.assumingMemoryBound(to: UInt8.self), len: $0.count)
        }
    }

    static func view(_ bytes: FactBytes?) -> sluice_host_view {
        guard let bytes else { return sluice_host_view(ptr: nil, len: 0) }
        return sluice_host_view(ptr: bytes.pointer, len: bytes.count)
    }

    /// A plugin's bytes as text (for the builders, which write [string]s).
    static func text(_ pointer: UnsafeRawPointer?, _ length: Int) -> String? {
        guard length >= 0, pointer != nil || length == 0 else { return nil }
        return String(decoding: bytes(pointer, length), as: UTF8.self)
    }

    /// A plugin's input value; nil when it is not one (`allowUnset`: bound values of a request).
    static func value(_ input: sluice_cql_input_value, allowUnset: Bool) -> CQLValue? {
        switch input.state {
        case SLUICE_CQL_VALUE_SET:
            guard input.len >= 0, input.bytes != nil || input.len == 0, input.len <= Int(Int32.max) else { return nil }
            return .bytes(ByteBuffer(bytes: bytes(input.bytes, input.len)))
        case SLUICE_CQL_VALUE_NULL: return .null
        case SLUICE_CQL_VALUE_UNSET: return allowUnset ? .unset : nil
        default: return nil
        }
    }

    static func fill(_ out: UnsafeMutablePointer<sluice_cql_value>, _ value: CQLValue, type: Int32, name: sluice_host_view) {
        switch value {
        case .bytes(let bytes): out.pointee = sluice_cql_value(state: SLUICE_CQL_VALUE_SET, type: type, bytes: view(bytes), name: name)
        case .null: out.pointee = sluice_cql_value(state: SLUICE_CQL_VALUE_NULL, type: type, bytes: sluice_host_view(), name: name)
        case .unset: out.pointee = sluice_cql_value(state: SLUICE_CQL_VALUE_UNSET, type: type, bytes: sluice_host_view(), name: name)
        }
    }

    /// `body` with statement `statement` of CQL request `index`, or the status for a bad argument.
    @inline(__always)
    static func withStatement(_ batch: OpaquePointer?, _ index: Int, _ statement: Int, _ function: StaticString,
                              _ body: (CQLStatementInfo) -> Int32) -> Int32 {
        guard let batch else { return SLUICE_ERROR_INVALID_ARGUMENT }
        // Nothing retained: the bodies only read the statement (no plugin code runs, no handle ends).
        return Batch.with(batch, function, otherwise: SLUICE_ERROR_STATE) { b in
            guard b.kind == Batch.requests else { return SLUICE_ERROR_INVALID_ARGUMENT }
            return b.withCQLMessage(at: index, otherwise: SLUICE_ERROR_INVALID_ARGUMENT) { parsed in
                parsed.withStatement(statement, otherwise: SLUICE_ERROR_INVALID_ARGUMENT, body)
            }
        }
    }

    /// `body` with the RESULT Rows of CQL response `index`.
    @inline(__always)
    static func withRows(_ batch: OpaquePointer?, _ index: Int, _ function: StaticString,
                         _ body: (Batch, CQLParsedMessage, CQLRowsInfo) -> Int32) -> Int32 {
        guard let batch else { return SLUICE_ERROR_INVALID_ARGUMENT }
        guard let b = Batch.from(batch, function) else { return SLUICE_ERROR_STATE }
        guard b.kind == Batch.responses, let parsed = b.cqlMessage(at: index) else { return SLUICE_ERROR_INVALID_ARGUMENT }
        guard let rows = parsed.rows else { return SLUICE_ERROR_NOT_FOUND }
        return body(b, parsed, rows)
    }

    /// `build` puts a new message at `index` of a CQL batch of `kind`; checks what all builders check.
    @inline(__always)
    static func put(_ batch: OpaquePointer?, _ index: Int, kind: Int32, version rawVersion: Int32, _ function: StaticString,
                    _ build: (CQLVersion) -> ByteBuffer?) -> Int32 {
        guard let batch else { return SLUICE_ERROR_INVALID_ARGUMENT }
        guard let b = Batch.from(batch, function) else { return SLUICE_ERROR_STATE }
        guard b.protocolID == Batch.cql, b.kind == kind, index >= 0, index <= b.count,
              rawVersion >= 3, rawVersion <= 5, let version = CQLVersion(rawValue: UInt8(rawVersion)),
              let message = build(version)
        else { return SLUICE_ERROR_INVALID_ARGUMENT }
        b.put(message, at: index)
        return SLUICE_OK
    }

    /// batch_put_bytes into a CQL batch: `raw`, copied, when it is one whole frame of a request
    /// (or, `isResponse`, a response) the accessors can read; nil when it is not.
    static func cqlMessage(_ raw: UnsafeRawBufferPointer, isResponse: Bool) -> ByteBuffer? {
        let message = ByteBuffer(bytes: raw)
        return CQLParsedMessage.isValid(message, isResponse: isResponse) ? message : nil
    }

    static func addCQL(to api: inout sluice_host_api) {
        api.call_fail_code = { call, code, message, length in
            guard let call, HostAPI.pluginErrorCodes.contains(code) else { return SLUICE_ERROR_INVALID_ARGUMENT }
            guard let resolved = Call.from(call, "call_fail_code") else { return SLUICE_ERROR_STATE }
            let text = message.map { String(decoding: HostAPI.bytes($0, length), as: UTF8.self) } ?? "failed"
            return resolved.fail(text, cqlCode: CQLErrorCode(rawValue: code))
        }
        api.cql_header = { batch, index, out in
            guard let batch, let out else { return SLUICE_ERROR_INVALID_ARGUMENT }
            return Batch.with(batch, "cql_header", otherwise: SLUICE_ERROR_STATE) { b in
                guard b.protocolID == Batch.cql, index >= 0, index < b.count,
                      let (version, flags, stream, opcode, length) = b.messages[index].getMultipleIntegers(
                          at: b.messages[index].readerIndex, as: (UInt8, UInt8, Int16, UInt8, UInt32).self)
                else { return SLUICE_ERROR_INVALID_ARGUMENT }
                out.pointee = sluice_cql_header(version: version & 0x7F, flags: flags, stream: stream,
                                                opcode: Int32(opcode), body_length: length, reserved: 0)
                return SLUICE_OK
            }
        }
        api.cql_statement_count = { batch, index in
            Batch.with(batch, "cql_statement_count", otherwise: 0) { b in
                guard b.kind == Batch.requests else { return 0 }
                return b.withCQLMessage(at: index, otherwise: 0) { $0.statementCount }
            }
        }
        api.cql_query = { batch, index, statement, out in
            guard let out else { return SLUICE_ERROR_INVALID_ARGUMENT }
            return HostAPI.withStatement(batch, index, statement, "cql_query") { info in
                guard let text = info.text else { return SLUICE_ERROR_NOT_FOUND }
                out.pointee = HostAPI.view(text)
                return SLUICE_OK
            }
        }
        api.cql_statement = { batch, index, statement, out in
            guard let out else { return SLUICE_ERROR_INVALID_ARGUMENT }
            return HostAPI.withStatement(batch, index, statement, "cql_statement") { info in
                guard info.text != nil else { return SLUICE_ERROR_NOT_FOUND }
                let classified = info.classification
                var keyspace = sluice_host_view(ptr: nil, len: 0)
                var source: UInt32 = 0
                if let named = classified.keyspace {
                    (keyspace, source) = (named, UInt32(SLUICE_CQL_KEYSPACE_FROM_TEXT))
                } else if let requested = info.requestKeyspace {
                    (keyspace, source) = (HostAPI.view(requested), UInt32(SLUICE_CQL_KEYSPACE_FROM_REQUEST))
                } else if let session = HandleTable.current.activeSession?.facts.cql.keyspace {
                    (keyspace, source) = (HostAPI.view(session), UInt32(SLUICE_CQL_KEYSPACE_FROM_SESSION))
                }
                out.pointee = sluice_cql_statement(kind: classified.kind.abiValue, keyspace_source: source, keyspace: keyspace,
                                                   table: classified.table ?? sluice_host_view(ptr: nil, len: 0))
                return SLUICE_OK
            }
        }
        api.cql_value_count = { batch, index, statement in
            Batch.with(batch, "cql_value_count", otherwise: 0) { b in
                guard b.kind == Batch.requests else { return 0 }
                return b.withCQLMessage(at: index, otherwise: 0) { $0.withStatement(statement, otherwise: 0) { $0.valueCount } }
            }
        }
        api.cql_value = { batch, index, statement, position, out in
            guard let out else { return SLUICE_ERROR_INVALID_ARGUMENT }
            return HostAPI.withStatement(batch, index, statement, "cql_value") { info in
                let values = info.boundValues
                guard position >= 0, position < values.count else { return SLUICE_END }
                HostAPI.fillBound(out, info, position)
                return SLUICE_OK
            }
        }
        api.cql_value_named = { batch, index, statement, name, length, out in
            guard let out, name != nil || length == 0, length >= 0 else { return SLUICE_ERROR_INVALID_ARGUMENT }
            return HostAPI.withStatement(batch, index, statement, "cql_value_named") { info in
                let wanted = HostAPI.bytes(name, length)
                let values = info.boundValues
                var position: Int?
                if info.values.named {
                    position = values.firstIndex { $0.name?.readableBytesView.elementsEqual(wanted) ?? false }
                } else if let prepared = info.prepared {
                    position = prepared.position(of: wanted)
                }
                guard let position, position < values.count else { return SLUICE_ERROR_NOT_FOUND }
                HostAPI.fillBound(out, info, position)
                return SLUICE_OK
            }
        }
        api.cql_result_rows = { batch, index, outRows, outColumns in
            HostAPI.withRows(batch, index, "cql_result_rows") { _, _, rows in
                outRows?.pointee = Int64(rows.rowCount)
                outColumns?.pointee = Int32(rows.columnCount)
                return SLUICE_OK
            }
        }
        api.cql_result_column = { batch, index, column, out in
            guard let out else { return SLUICE_ERROR_INVALID_ARGUMENT }
            return HostAPI.withRows(batch, index, "cql_result_column") { _, _, rows in
                guard column >= 0, Int(column) < rows.columnCount else { return SLUICE_ERROR_INVALID_ARGUMENT }
                guard let columns = rows.columns else { return SLUICE_ERROR_NOT_FOUND }
                let spec = columns[Int(column)]
                out.pointee = sluice_cql_column(keyspace: HostAPI.view(spec.keyspace), table: HostAPI.view(spec.table),
                                                name: HostAPI.view(spec.name), type: spec.type, reserved: 0)
                return SLUICE_OK
            }
        }
        api.cql_rows_init = { batch, index, cursor in
            guard let cursor else { return SLUICE_ERROR_INVALID_ARGUMENT }
            return HostAPI.withRows(batch, index, "cql_rows_init") { b, _, rows in
                CQLCellCursor(batch: UInt(bitPattern: batch), generation: b.generation, index: index,
                              offset: rows.contentOffset, cell: 0, cells: rows.rowCount * rows.columnCount,
                              columns: rows.columnCount).store(in: cursor)
                return SLUICE_OK
            }
        }
        api.cql_rows_next = { cursor, out in
            guard let cursor, let out else { return SLUICE_ERROR_INVALID_ARGUMENT }
            var state = CQLCellCursor(cursor)
            // The cursor is the plugin's memory: every field is checked against the message it names
            // before use (a cursor never initialised, or overwritten, gets SLUICE_ERROR_STATE).
            guard let b = Batch.from(OpaquePointer(bitPattern: state.batch), "cql_rows_next") else { return SLUICE_ERROR_STATE }
            guard b.generation == state.generation, b.protocolID == Batch.cql, b.kind == Batch.responses,
                  state.index >= 0, state.index < b.count, let parsed = b.cqlMessage(at: state.index),
                  let rows = parsed.rows, state.isValid(for: rows)
            else { return SLUICE_ERROR_STATE }
            guard state.cell < state.cells else { return SLUICE_END }
            let message = parsed.bytes
            // offset is within the cells (checked above), so these sums cannot overflow.
            let contentEnd = rows.contentOffset + rows.contentLength
            guard contentEnd - state.offset >= 4,
                  let length = message.getInteger(at: message.readerIndex + state.offset, as: Int32.self)
            else { return SLUICE_ERROR_STATE }
            let row = state.cell / max(state.columns, 1), column = state.cell % max(state.columns, 1)
            if length < 0 {
                out.pointee = sluice_cql_cell(row: Int64(row), column: Int32(truncatingIfNeeded: column),
                                              state: SLUICE_CQL_VALUE_NULL, bytes: sluice_host_view())
                state.offset += 4
            } else {
                guard Int(length) <= contentEnd - state.offset - 4,
                      let cell = message.getSlice(at: message.readerIndex + state.offset + 4, length: Int(length))
                else { return SLUICE_ERROR_STATE }
                out.pointee = sluice_cql_cell(row: Int64(row), column: Int32(truncatingIfNeeded: column),
                                              state: SLUICE_CQL_VALUE_SET, bytes: HostAPI.view(cell))
                state.offset += 4 + Int(length)
            }
            state.cell += 1
            state.store(in: cursor)
            return SLUICE_OK
        }
        api.cql_set_cell = { batch, index, row, column, value in
            guard let value, let replacement = HostAPI.value(value.pointee, allowUnset: false) else {
                return SLUICE_ERROR_INVALID_ARGUMENT
            }
            return HostAPI.withRows(batch, index, "cql_set_cell") { b, parsed, rows in
                let message = parsed.bytes
                guard let range = rows.cellRange(row: Int(clamping: row), column: Int(column), in: message) else {
                    return SLUICE_ERROR_INVALID_ARGUMENT
                }
                var edited = HostAPI.allocator.buffer(capacity: message.readableBytes + (replacement.bytes?.readableBytes ?? 0))
                edited.writeImmutableBuffer(message.getSlice(at: message.readerIndex, length: range.offset)!)
                edited.writeCQLValue(replacement)
                let after = range.offset + range.length
                edited.writeImmutableBuffer(message.getSlice(at: message.readerIndex + after,
                                                             length: message.readableBytes - after)!)
                CQLFrameHeader.patchBodyLength(edited.readableBytes - CQLFrameHeader.size, in: &edited,
                                               headerAt: edited.readerIndex)
                b.put(edited, at: index)
                return SLUICE_OK
            }
        }
        api.cql_put_error = { batch, index, version, stream, code, message, length in
            HostAPI.put(batch, index, kind: Batch.responses, version: version, "cql_put_error") { version in
                guard HostAPI.pluginErrorCodes.contains(code), length <= Int(UInt16.max),
                      let text = HostAPI.text(message, length)
                else { return nil }
                return CQLFrameBuilder.error(version: version, stream: stream, code: CQLErrorCode(rawValue: code),
                                             message: text, allocator: HostAPI.allocator)
            }
        }
        api.cql_put_result_void = { batch, index, version, stream in
            HostAPI.put(batch, index, kind: Batch.responses, version: version, "cql_put_result_void") { version in
                CQLFrameBuilder.resultVoid(version: version, stream: stream, allocator: HostAPI.allocator)
            }
        }
        api.cql_put_result_rows = { batch, index, version, stream, keyspace, keyspaceLength, table, tableLength,
                                    columns, columnCount, cells, rowCount in
            HostAPI.put(batch, index, kind: Batch.responses, version: version, "cql_put_result_rows") { version in
                guard let keyspace = HostAPI.text(keyspace, keyspaceLength), let table = HostAPI.text(table, tableLength),
                      keyspaceLength <= Int(UInt16.max), tableLength <= Int(UInt16.max),
                      columnCount > 0, columnCount <= Int(Int32.max), let columns, rowCount >= 0,
                      rowCount <= Int(Int32.max), cells != nil || rowCount == 0
                else { return nil }
                var definitions: [(name: String, type: CQLDataType)] = []
                for i in 0..<columnCount {
                    let column = columns[i]
                    guard let name = HostAPI.text(column.name, column.name_len), column.name_len <= Int(UInt16.max),
                          (1...0x15).contains(column.type), column.type != 0x000A
                    else { return nil }
                    definitions.append((name, .native(UInt16(column.type))))
                }
                let (cellCount, overflow) = rowCount.multipliedReportingOverflow(by: columnCount)
                guard !overflow else { return nil }
                var rows: [[ByteBuffer?]] = []
                rows.reserveCapacity(rowCount)
                for r in 0..<rowCount {
                    var row: [ByteBuffer?] = []
                    row.reserveCapacity(columnCount)
                    for c in 0..<columnCount {
                        guard r * columnCount + c < cellCount,
                              let cell = HostAPI.value(cells![r * columnCount + c], allowUnset: false)
                        else { return nil }
                        row.append(cell.bytes)
                    }
                    rows.append(row)
                }
                return CQLFrameBuilder.resultRows(version: version, stream: stream, keyspace: keyspace, table: table,
                                                  columns: definitions, rows: rows, allocator: HostAPI.allocator)
            }
        }
        api.cql_put_query = { batch, index, version, stream, text, length, consistency, values, valueCount in
            HostAPI.put(batch, index, kind: Batch.requests, version: version, "cql_put_query") { version in
                guard let query = HostAPI.text(text, length), length <= Int(Int32.max),
                      valueCount <= Int(UInt16.max), values != nil || valueCount == 0
                else { return nil }
                var bound: [CQLValue] = []
                for i in 0..<valueCount {
                    guard let value = HostAPI.value(values![i], allowUnset: version >= .v4) else { return nil }
                    bound.append(value)
                }
                return CQLFrameBuilder.query(version: version, stream: stream, query: query,
                                             consistency: CQLConsistency(rawValue: consistency), values: bound,
                                             allocator: HostAPI.allocator)
            }
        }
    }

    /// Fills a bound value: with the prepared metadata's name and type for a prepared statement,
    /// the sent name for named values.
    static func fillBound(_ out: UnsafeMutablePointer<sluice_cql_value>, _ info: CQLStatementInfo, _ position: Int) {
        let (name, value) = info.boundValues[position]
        var type = Int32(SLUICE_CQL_TYPE_UNKNOWN)
        var nameView = name.map(HostAPI.view) ?? sluice_host_view()
        if let prepared = info.prepared, position < prepared.variables.count {
            type = prepared.variables[position].type.optionID
            if name == nil { nameView = HostAPI.view(prepared.variables[position].name) }
        }
        fill(out, value, type: type, name: nameView)
    }
}

extension CQLStatement.Kind {
    /// SLUICE_CQL_STATEMENT_*.
    var abiValue: Int32 {
        switch self {
        case .other: return SLUICE_CQL_STATEMENT_OTHER
        case .select: return SLUICE_CQL_STATEMENT_SELECT
        case .insert: return SLUICE_CQL_STATEMENT_INSERT
        case .update: return SLUICE_CQL_STATEMENT_UPDATE
        case .delete: return SLUICE_CQL_STATEMENT_DELETE
        case .batch: return SLUICE_CQL_STATEMENT_BATCH
        case .use: return SLUICE_CQL_STATEMENT_USE
        case .ddl: return SLUICE_CQL_STATEMENT_DDL
        }
    }
}

/// The state a `sluice_cql_cursor` holds (its eight words): the batch handle and generation it was
/// made for, the message, where the next cell starts, and how many cells there are.
struct CQLCellCursor {
    var batch: UInt
    var generation: UInt64
    var index: Int
    var offset: Int
    var cell: Int
    var cells: Int
    var columns: Int

    init(batch: UInt, generation: UInt64, index: Int, offset: Int, cell: Int, cells: Int, columns: Int) {
        (self.batch, self.generation, self.index, self.offset) = (batch, generation, index, offset)
        (self.cell, self.cells, self.columns) = (cell, cells, columns)
    }

    init(_ cursor: UnsafeMutablePointer<sluice_cql_cursor>) {
        let words = cursor.pointee.opaque
        self.init(batch: UInt(words.0), generation: words.1, index: Int(truncatingIfNeeded: words.2),
                  offset: Int(truncatingIfNeeded: words.3), cell: Int(truncatingIfNeeded: words.4),
                  cells: Int(truncatingIfNeeded: words.5), columns: Int(truncatingIfNeeded: words.6))
    }

    /// Whether the fields agree with the RESULT Rows they walk (the plugin may have overwritten them):
    /// the cell count and columns are the message's, the cell is within them, and the offset is
    /// within the cells' bytes. Overflow-safe for any values.
    func isValid(for rows: CQLRowsInfo) -> Bool {
        let (cellCount, overflow) = rows.rowCount.multipliedReportingOverflow(by: rows.columnCount)
        return !overflow && cells == cellCount && columns == rows.columnCount && cell >= 0 && cell <= cells
            && offset >= rows.contentOffset && offset - rows.contentOffset <= rows.contentLength
    }

    func store(in cursor: UnsafeMutablePointer<sluice_cql_cursor>) {
        cursor.pointee.opaque = (UInt64(batch), generation, UInt64(truncatingIfNeeded: index),
                                 UInt64(truncatingIfNeeded: offset), UInt64(truncatingIfNeeded: cell),
                                 UInt64(truncatingIfNeeded: cells), UInt64(truncatingIfNeeded: columns), 0)
    }
}
