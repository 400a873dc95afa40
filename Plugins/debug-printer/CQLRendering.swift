import SluiceSDK

/// How debug-printer shows CQL messages: the opcode, version and stream, then for requests the
/// statements (text, truncated) and how many values they bind — never the values, which may be
/// credentials or personal data — and for responses the ERROR code and message or the RESULT's
/// kind and shape. AUTH_RESPONSE tokens are never shown.
enum CQLRendering {
    static let opcodeNames: [Int32: String] = [
        0x00: "ERROR", 0x01: "STARTUP", 0x02: "READY", 0x03: "AUTHENTICATE", 0x05: "OPTIONS", 0x06: "SUPPORTED",
        0x07: "QUERY", 0x08: "RESULT", 0x09: "PREPARE", 0x0A: "EXECUTE", 0x0B: "REGISTER", 0x0C: "EVENT",
        0x0D: "BATCH", 0x0E: "AUTH_CHALLENGE", 0x0F: "AUTH_RESPONSE", 0x10: "AUTH_SUCCESS",
    ]

    static func head(_ header: CQL.Header) -> String {
        "\(opcodeNames[header.opcode] ?? "opcode \(header.opcode)") v\(header.version) stream \(header.stream)"
    }

    static func request(_ requests: Batch, _ index: Int, limit: Int) -> String {
        guard let header = try? requests.cqlHeader(at: index) else { return "(unreadable CQL frame)" }
        var out = head(header)
        let statements = requests.cqlStatementCount(at: index)
        var budget = limit
        for s in 0..<statements where budget > 0 {
            let text = (try? requests.cqlQuery(at: index, statement: s)).flatMap { $0 }
            let shown = text.map { printable($0, limit: budget) } ?? "(prepared statement Sluice has not seen)"
            budget -= text?.count ?? 0
            let values = requests.cqlValueCount(at: index, statement: s)
            out += (s == 0 ? ": " : "; ") + shown + (values > 0 ? " [\(values) values]" : "")
        }
        if statements > 1 { out += " (batch of \(statements))" }
        return out
    }

    static func response(_ responses: Batch, _ index: Int, limit: Int) -> String {
        guard let header = try? responses.cqlHeader(at: index) else { return "(unreadable CQL frame)" }
        var out = head(header)
        if header.opcode == SLUICE_CQL_OP_RESULT, let shape = try? responses.cqlResultRows(at: index) {
            var names: [String] = []
            for c in 0..<min(shape.columns, 16) {
                if let column = try? responses.cqlColumn(at: index, column: c) { names.append(String(decoding: column.name, as: UTF8.self)) }
            }
            out += ": Rows \(shape.rows) x \(shape.columns)" + (names.isEmpty ? "" : " (\(names.joined(separator: ", ")))")
        } else if header.opcode == SLUICE_CQL_OP_ERROR {
            // An ERROR body starts with the code [int] and the message [string].
            let bytes = responses.bytes(at: index)
            if bytes.count >= 15 {
                let code = bytes[9...12].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                let length = Int(bytes[13]) << 8 | Int(bytes[14])
                let message = UnsafeRawBufferPointer(rebasing: bytes[15..<min(15 + length, bytes.count)])
                out += ": 0x\(String(code, radix: 16)) \(printable(message, limit: limit))"
            }
        }
        return out
    }
}
