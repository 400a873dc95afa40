import PluginABI

/// Swift wrappers of the ABI 1.3 CQL functions (see "CQL" in sluice_plugin.h): the header,
/// statements, bound values and result rows of CQL messages, the builders, and failing a call with
/// a chosen ERROR code. Views are borrowed from the host, zero-copy: valid until the message is
/// replaced or removed, the batch released, or the hook returns. A failing status is thrown as
/// `SluiceError`; on a host older than 1.3 every function throws instead of calling past the table.

/// The host table's size up to and including the last CQL function.
private let cqlTableSize = MemoryLayout<sluice_host_api>.offset(of: \sluice_host_api.cql_put_query)!
    + MemoryLayout<sluice_host_cql_put_query_fn>.size

@inline(__always)
func requireCQL(_ operation: @autoclosure () -> String) throws {
    if Int(sluiceHost.pointee.struct_size) < cqlTableSize {
        throw SluiceError(status: Int32(SLUICE_ERROR_STATE), operation: operation() + " (the host predates ABI 1.3)")
    }
}

/// The protocols a transform handles (`Transform.protocols`).
public struct Protocols: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let redis = Protocols(rawValue: UInt32(SLUICE_PROTOCOL_REDIS))
    public static let cql = Protocols(rawValue: UInt32(SLUICE_PROTOCOL_CQL))
}

/// The CQL namespace of the SDK.
public enum CQL {
    /// A frame header.
    public struct Header: Equatable, Sendable {
        public let version: Int
        public let flags: UInt8
        public let stream: Int16
        public let opcode: Int32
        public let bodyLength: Int

        public var isQuery: Bool { opcode == SLUICE_CQL_OP_QUERY }
        public var isExecute: Bool { opcode == SLUICE_CQL_OP_EXECUTE }
        public var isBatch: Bool { opcode == SLUICE_CQL_OP_BATCH }
        public var isPrepare: Bool { opcode == SLUICE_CQL_OP_PREPARE }
    }

    /// What a statement is (SLUICE_CQL_STATEMENT_*).
    public enum StatementKind: Int32, Sendable, CaseIterable {
        case other = 0, select, insert, update, delete, batch, use, ddl

        /// The lower-case name used in configs (`select`, `ddl`…).
        public var name: String { "\(self)" }

        public init?(name: String) {
            guard let kind = Self.allCases.first(where: { $0.name == name.lowercased() }) else { return nil }
            self = kind
        }
    }

    /// What a statement is and what it touches; keyspace and table are borrowed views (empty: none).
    public struct Statement {
        public let kind: StatementKind
        public let keyspace: UnsafeRawBufferPointer
        /// SLUICE_CQL_KEYSPACE_FROM_* (0 when there is no keyspace).
        public let keyspaceSource: UInt32
        public let table: UnsafeRawBufferPointer

        public var keyspaceName: String { String(decoding: keyspace, as: UTF8.self) }
        public var tableName: String { String(decoding: table, as: UTF8.self) }
    }

    /// A bound value or a cell.
    public enum Value: Equatable {
        case bytes(UnsafeRawBufferPointer)
        case null
        case unset

        public static func == (lhs: Value, rhs: Value) -> Bool {
            switch (lhs, rhs) {
            case (.bytes(let a), .bytes(let b)): return a.elementsEqual(b)
            case (.null, .null), (.unset, .unset): return true
            default: return false
            }
        }
    }

    /// A bound value with the name and type the host knows (SLUICE_CQL_TYPE_UNKNOWN when not).
    public struct BoundValue {
        public let value: Value
        public let type: Int32
        public let name: UnsafeRawBufferPointer
    }

    /// A column of a RESULT Rows.
    public struct Column {
        public let keyspace: UnsafeRawBufferPointer
        public let table: UnsafeRawBufferPointer
        public let name: UnsafeRawBufferPointer
        public let type: Int32
    }

    /// A cell visited by `Batch.cqlCells(at:)`.
    public struct Cell {
        public let row: Int
        public let column: Int
        public let value: Value
    }

    /// An ERROR code a transform may answer with.
    public struct ErrorCode: RawRepresentable, Equatable, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let serverError = ErrorCode(rawValue: SLUICE_CQL_ERROR_SERVER_ERROR)
        public static let protocolError = ErrorCode(rawValue: SLUICE_CQL_ERROR_PROTOCOL_ERROR)
        public static let badCredentials = ErrorCode(rawValue: SLUICE_CQL_ERROR_BAD_CREDENTIALS)
        public static let overloaded = ErrorCode(rawValue: SLUICE_CQL_ERROR_OVERLOADED)
        public static let isBootstrapping = ErrorCode(rawValue: SLUICE_CQL_ERROR_IS_BOOTSTRAPPING)
        public static let truncateError = ErrorCode(rawValue: SLUICE_CQL_ERROR_TRUNCATE_ERROR)
        public static let syntaxError = ErrorCode(rawValue: SLUICE_CQL_ERROR_SYNTAX_ERROR)
        public static let unauthorized = ErrorCode(rawValue: SLUICE_CQL_ERROR_UNAUTHORIZED)
        public static let invalid = ErrorCode(rawValue: SLUICE_CQL_ERROR_INVALID)
        public static let configError = ErrorCode(rawValue: SLUICE_CQL_ERROR_CONFIG_ERROR)

        /// By the spec's name (`UNAUTHORIZED`, `invalid`…), for configs.
        public init?(name: String) {
            let all: [String: ErrorCode] = [
                "server_error": .serverError, "protocol_error": .protocolError, "bad_credentials": .badCredentials,
                "overloaded": .overloaded, "is_bootstrapping": .isBootstrapping, "truncate_error": .truncateError,
                "syntax_error": .syntaxError, "unauthorized": .unauthorized, "invalid": .invalid,
                "config_error": .configError,
            ]
            guard let code = all[name.lowercased()] else { return nil }
            self = code
        }
    }
}

private func view(_ v: sluice_host_view) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: v.ptr, count: v.len) }

private func value(state: Int32, bytes: sluice_host_view) -> CQL.Value {
    switch state {
    case SLUICE_CQL_VALUE_NULL: return .null
    case SLUICE_CQL_VALUE_UNSET: return .unset
    default: return .bytes(view(bytes))
    }
}

extension Batch {
    public static func newRequests(protocol: Protocols) -> Batch {
        Batch(raw: sluiceHost.pointee.batch_new(Int32(SLUICE_BATCH_REQUESTS), Int32(`protocol`.rawValue))!)
    }

    public static func newResponses(protocol: Protocols) -> Batch {
        Batch(raw: sluiceHost.pointee.batch_new(Int32(SLUICE_BATCH_RESPONSES), Int32(`protocol`.rawValue))!)
    }

    /// The batch's protocol (`.redis` or `.cql`).
    public var protocols: Protocols { Protocols(rawValue: UInt32(bitPattern: sluiceHost.pointee.batch_protocol(raw))) }
    public var isCQL: Bool { sluiceHost.pointee.batch_protocol(raw) == SLUICE_PROTOCOL_CQL }

    /// The header of CQL message `index`.
    public func cqlHeader(at index: Int) throws -> CQL.Header {
        try requireCQL("cql_header")
        var h = sluice_cql_header()
        try SluiceError.check(sluiceHost.pointee.cql_header(raw, index, &h), "cql_header(\(index))")
        return CQL.Header(version: Int(h.version), flags: h.flags, stream: h.stream, opcode: h.opcode,
                          bodyLength: Int(h.body_length))
    }

    /// How many statements request `index` holds (QUERY/PREPARE/EXECUTE 1, BATCH its children, else 0).
    public func cqlStatementCount(at index: Int) -> Int {
        guard (try? requireCQL("cql_statement_count")) != nil else { return 0 }
        return sluiceHost.pointee.cql_statement_count(raw, index)
    }

    /// The text of a statement; nil for a prepared id the host has not seen prepared.
    public func cqlQuery(at index: Int, statement: Int = 0) throws -> UnsafeRawBufferPointer? {
        try requireCQL("cql_query")
        var out = sluice_host_view()
        let status = sluiceHost.pointee.cql_query(raw, index, statement, &out)
        if status == SLUICE_ERROR_NOT_FOUND { return nil }
        try SluiceError.check(status, "cql_query(\(index), \(statement))")
        return view(out)
    }

    /// The kind, keyspace and table of a statement; nil for a prepared id the host has not seen prepared.
    public func cqlStatement(at index: Int, statement: Int = 0) throws -> CQL.Statement? {
        try requireCQL("cql_statement")
        var out = sluice_cql_statement()
        let status = sluiceHost.pointee.cql_statement(raw, index, statement, &out)
        if status == SLUICE_ERROR_NOT_FOUND { return nil }
        try SluiceError.check(status, "cql_statement(\(index), \(statement))")
        return CQL.Statement(kind: CQL.StatementKind(rawValue: out.kind) ?? .other, keyspace: view(out.keyspace),
                             keyspaceSource: out.keyspace_source, table: view(out.table))
    }

    public func cqlValueCount(at index: Int, statement: Int = 0) -> Int {
        guard (try? requireCQL("cql_value_count")) != nil else { return 0 }
        return sluiceHost.pointee.cql_value_count(raw, index, statement)
    }

    /// Bound value `position` of a statement; nil past the last.
    public func cqlValue(at index: Int, statement: Int = 0, position: Int) throws -> CQL.BoundValue? {
        try requireCQL("cql_value")
        var out = sluice_cql_value()
        let status = sluiceHost.pointee.cql_value(raw, index, statement, position, &out)
        if status == SLUICE_END { return nil }
        try SluiceError.check(status, "cql_value(\(index), \(statement), \(position))")
        return CQL.BoundValue(value: value(state: out.state, bytes: out.bytes), type: out.type, name: view(out.name))
    }

    /// The bound value named `name`; nil when no value has that name (or the names are unknown).
    public func cqlValue(at index: Int, statement: Int = 0, named name: String) throws -> CQL.BoundValue? {
        try requireCQL("cql_value_named")
        var out = sluice_cql_value()
        var text = name
        let status = text.withUTF8 { utf8 in
            utf8.withMemoryRebound(to: CChar.self) {
                sluiceHost.pointee.cql_value_named(raw, index, statement, $0.baseAddress, $0.count, &out)
            }
        }
        if status == SLUICE_ERROR_NOT_FOUND { return nil }
        try SluiceError.check(status, "cql_value_named(\(index), \(statement), \(name))")
        return CQL.BoundValue(value: value(state: out.state, bytes: out.bytes), type: out.type, name: view(out.name))
    }

    /// The shape of RESULT Rows response `index`; nil when it is not a RESULT Rows.
    public func cqlResultRows(at index: Int) throws -> (rows: Int, columns: Int)? {
        try requireCQL("cql_result_rows")
        var rows: Int64 = 0
        var columns: Int32 = 0
        let status = sluiceHost.pointee.cql_result_rows(raw, index, &rows, &columns)
        if status == SLUICE_ERROR_NOT_FOUND { return nil }
        try SluiceError.check(status, "cql_result_rows(\(index))")
        return (Int(rows), Int(columns))
    }

    /// Column `column` of RESULT Rows response `index`; nil when the response carries no metadata.
    public func cqlColumn(at index: Int, column: Int) throws -> CQL.Column? {
        try requireCQL("cql_result_column")
        var out = sluice_cql_column()
        let status = sluiceHost.pointee.cql_result_column(raw, index, Int32(clamping: column), &out)
        if status == SLUICE_ERROR_NOT_FOUND { return nil }
        try SluiceError.check(status, "cql_result_column(\(index), \(column))")
        return CQL.Column(keyspace: view(out.keyspace), table: view(out.table), name: view(out.name), type: out.type)
    }

    /// The cells of RESULT Rows response `index`, row by row.
    public func cqlCells(at index: Int) throws -> CQLCells {
        try requireCQL("cql_rows_init")
        var cells = CQLCells()
        try SluiceError.check(sluiceHost.pointee.cql_rows_init(raw, index, &cells.cursor), "cql_rows_init(\(index))")
        return cells
    }

    /// Replaces cell (row, column) of RESULT Rows response `index` (`.unset` is refused).
    public func setCQLCell(at index: Int, row: Int, column: Int, to newValue: CQL.Value) throws {
        try requireCQL("cql_set_cell")
        try withInputValue(newValue) { input in
            var input = input
            try SluiceError.check(sluiceHost.pointee.cql_set_cell(raw, index, Int64(row), Int32(clamping: column), &input),
                                  "cql_set_cell(\(index), \(row), \(column))")
        }
    }

    public func setCQLCell(at index: Int, row: Int, column: Int, to bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try setCQLCell(at: index, row: row, column: column, to: .bytes($0)) }
    }

    // MARK: builders

    /// An ERROR response at `index`, answering a request of `version` on `stream`.
    public func putCQLError(_ code: CQL.ErrorCode, _ message: String, version: Int, stream: Int16, at index: Int) throws {
        try requireCQL("cql_put_error")
        var text = message
        try text.withUTF8 { utf8 in
            try utf8.withMemoryRebound(to: CChar.self) {
                try SluiceError.check(sluiceHost.pointee.cql_put_error(raw, index, Int32(version), stream, code.rawValue,
                                                                       $0.baseAddress, $0.count), "cql_put_error")
            }
        }
    }

    /// An ERROR response at `index` answering request `requestIndex` of `requests` (its version and stream).
    public func putCQLError(_ code: CQL.ErrorCode, _ message: String, answering requests: Batch, _ requestIndex: Int,
                            at index: Int) throws {
        let header = try requests.cqlHeader(at: requestIndex)
        try putCQLError(code, message, version: header.version, stream: header.stream, at: index)
    }

    /// A RESULT Void response at `index` answering request `requestIndex` of `requests`.
    public func putCQLResultVoid(answering requests: Batch, _ requestIndex: Int, at index: Int) throws {
        try requireCQL("cql_put_result_void")
        let header = try requests.cqlHeader(at: requestIndex)
        try SluiceError.check(sluiceHost.pointee.cql_put_result_void(raw, index, Int32(header.version), header.stream),
                              "cql_put_result_void")
    }

    /// A RESULT Rows response at `index` answering request `requestIndex` of `requests`: columns of
    /// native types (SLUICE_CQL_TYPE_ASCII … _DURATION) and rows of cells (nil: null).
    public func putCQLResultRows(answering requests: Batch, _ requestIndex: Int, at index: Int, keyspace: String,
                                 table: String, columns: [(name: String, type: Int32)], rows: [[[UInt8]?]]) throws {
        try requireCQL("cql_put_result_rows")
        let header = try requests.cqlHeader(at: requestIndex)
        // Keep every buffer alive for the call: names and cells are copied into arrays first.
        let names = columns.map { Array($0.name.utf8) }
        let cells = rows.flatMap { $0 }
        var storage = names + cells.map { $0 ?? [] } + [Array(keyspace.utf8), Array(table.utf8)]
        let status: Int32 = storage.withUnsafeMutableBufferPointer { all in
            var pointers: [UnsafePointer<UInt8>?] = []
            for i in all.indices { pointers.append(all[i].withUnsafeBufferPointer { $0.baseAddress }) }
            // The arrays are not mutated while the pointers are used.
            var definitions: [sluice_cql_column_def] = []
            for (i, column) in columns.enumerated() {
                definitions.append(sluice_cql_column_def(name: pointers[i], name_len: names[i].count, type: column.type, reserved: 0))
            }
            var inputs: [sluice_cql_input_value] = []
            for (i, cell) in cells.enumerated() {
                inputs.append(sluice_cql_input_value(state: cell == nil ? SLUICE_CQL_VALUE_NULL : SLUICE_CQL_VALUE_SET, reserved: 0,
                                                     bytes: pointers[names.count + i], len: cell?.count ?? 0))
            }
            let ks = all[all.count - 2], tb = all[all.count - 1]
            return sluiceHost.pointee.cql_put_result_rows(
                raw, index, Int32(header.version), header.stream,
                UnsafeRawPointer(pointers[all.count - 2])?.assumingMemoryBound(to: CChar.self), ks.count,
                UnsafeRawPointer(pointers[all.count - 1])?.assumingMemoryBound(to: CChar.self), tb.count,
                definitions, definitions.count, inputs, rows.count)
        }
        try SluiceError.check(status, "cql_put_result_rows")
    }

    /// A QUERY request at `index` (protocol `version`), with positional values (nil: null).
    public func putCQLQuery(_ text: String, consistency: UInt16 = 0x0001, values: [[UInt8]?] = [], version: Int,
                            stream: Int16 = 0, at index: Int) throws {
        try requireCQL("cql_put_query")
        var storage = values.map { $0 ?? [] } + [Array(text.utf8)]
        let status: Int32 = storage.withUnsafeMutableBufferPointer { all in
            var pointers: [UnsafePointer<UInt8>?] = []
            for i in all.indices { pointers.append(all[i].withUnsafeBufferPointer { $0.baseAddress }) }
            var inputs: [sluice_cql_input_value] = []
            for (i, value) in values.enumerated() {
                inputs.append(sluice_cql_input_value(state: value == nil ? SLUICE_CQL_VALUE_NULL : SLUICE_CQL_VALUE_SET, reserved: 0,
                                                     bytes: pointers[i], len: value?.count ?? 0))
            }
            let query = all[all.count - 1]
            return sluiceHost.pointee.cql_put_query(raw, index, Int32(version), stream,
                                                    UnsafeRawPointer(pointers[all.count - 1])?.assumingMemoryBound(to: CChar.self),
                                                    query.count, consistency, inputs, inputs.count)
        }
        try SluiceError.check(status, "cql_put_query")
    }
}

private func withInputValue<R>(_ value: CQL.Value, _ body: (sluice_cql_input_value) throws -> R) rethrows -> R {
    switch value {
    case .bytes(let bytes):
        return try body(sluice_cql_input_value(state: SLUICE_CQL_VALUE_SET, reserved: 0,
                                               bytes: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), len: bytes.count))
    case .null: return try body(sluice_cql_input_value(state: SLUICE_CQL_VALUE_NULL, reserved: 0, bytes: nil, len: 0))
    case .unset: return try body(sluice_cql_input_value(state: SLUICE_CQL_VALUE_UNSET, reserved: 0, bytes: nil, len: 0))
    }
}

/// The cells of a RESULT Rows, row by row (`Batch.cqlCells(at:)`). Stops at the end, or when the
/// batch changed under it (collect cell changes, then make them).
public struct CQLCells: IteratorProtocol, Sequence {
    var cursor = sluice_cql_cursor()

    public mutating func next() -> CQL.Cell? {
        var cell = sluice_cql_cell()
        guard sluiceHost.pointee.cql_rows_next(&cursor, &cell) == SLUICE_OK else { return nil }
        return CQL.Cell(row: Int(cell.row), column: Int(cell.column), value: value(state: cell.state, bytes: cell.bytes))
    }
}

extension Call {
    /// Answers every request with an error: on a CQL batch an ERROR frame with `code`, on Redis `-ERR`.
    @discardableResult
    public func fail(_ message: String, cqlCode code: CQL.ErrorCode) -> SluiceStatus {
        guard (try? requireCQL("call_fail_code")) != nil else { return fail(message) }
        var text = message
        return completing("call_fail_code") {
            text.withUTF8 { utf8 in
                utf8.withMemoryRebound(to: CChar.self) {
                    sluiceHost.pointee.call_fail_code(raw, code.rawValue, $0.baseAddress, $0.count)
                }
            }
        }
    }
}

extension InstanceEnv {
    /// CQL: the connection's keyspace (its last USE that succeeded); nil before.
    public func keyspace() throws -> String? { try stringProperty(Int32(SLUICE_PROPERTY_KEYSPACE)) }
}
