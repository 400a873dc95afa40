import NIOCore

/// What a CQL statement is and what it touches, read from its text without parsing all of it:
/// the kind (from the first keyword), and the keyspace and table it names (`ks.t`, `"Quoted"`, or
/// just `t`, which then lives in the connection's keyspace). Comments (`--`, `//`, `/* */`), string
/// literals and case are handled as CQL handles them: unquoted names are lower-cased, quoted names
/// keep their case with `""` standing for `"`.
public struct CQLStatement: Equatable, Sendable {
    public enum Kind: String, Sendable {
        case select, insert, update, delete, batch, use
        /// CREATE, ALTER, DROP (keyspaces, tables, types, indexes, views, functions, roles…).
        case ddl
        /// Anything else: TRUNCATE, GRANT, REVOKE, LIST, unknown or empty text.
        case other
    }

    public let kind: Kind
    /// The keyspace the statement names explicitly (USE's keyspace; KEYSPACE statements' name).
    public let keyspace: String?
    /// The table (or view, index, type) the statement names.
    public let table: String?

    public init(kind: Kind, keyspace: String? = nil, table: String? = nil) {
        self.kind = kind
        self.keyspace = keyspace
        self.table = table
    }

    /// The keyspace, or `connectionKeyspace` (the connection's USE) when the text names none.
    public func keyspace(orConnection connectionKeyspace: String?) -> String? { keyspace ?? connectionKeyspace }

    /// Classifies a statement's UTF-8 text.
    public static func classify(_ text: ByteBuffer) -> CQLStatement {
        text.withUnsafeReadableBytes { classify(bytes: $0) }
    }

    public static func classify(_ text: String) -> CQLStatement {
        var copy = text
        return copy.withUTF8 { classify(bytes: UnsafeRawBufferPointer($0)) }
    }

    static func classify(bytes: UnsafeRawBufferPointer) -> CQLStatement {
        var lexer = CQLLexer(bytes)
        guard let first = lexer.next(), let keyword = first.keyword else { return CQLStatement(kind: .other) }
        switch keyword {
        case "select":
            guard lexer.skip(toTopLevelKeyword: "from") else { return CQLStatement(kind: .select) }
            return lexer.qualifiedName(kind: .select)
        case "insert":
            guard lexer.expect("into") else { return CQLStatement(kind: .insert) }
            return lexer.qualifiedName(kind: .insert)
        case "update":
            return lexer.qualifiedName(kind: .update)
        case "delete":
            guard lexer.skip(toTopLevelKeyword: "from") else { return CQLStatement(kind: .delete) }
            return lexer.qualifiedName(kind: .delete)
        case "begin", "apply":
            return CQLStatement(kind: .batch)
        case "use":
            guard let name = lexer.next()?.identifier else { return CQLStatement(kind: .use) }
            return CQLStatement(kind: .use, keyspace: name)
        case "truncate":
            lexer.skipOptional("table")
            return lexer.qualifiedName(kind: .other)
        case "create", "alter", "drop":
            return ddl(&lexer)
        default:
            return CQLStatement(kind: .other)
        }
    }

    private static func ddl(_ lexer: inout CQLLexer) -> CQLStatement {
        lexer.skipOptional("or", "replace")
        lexer.skipOptional("custom")
        lexer.skipOptional("materialized")
        guard let object = lexer.next()?.keyword else { return CQLStatement(kind: .ddl) }
        switch object {
        case "keyspace", "schema":
            lexer.skipIfExists()
            return CQLStatement(kind: .ddl, keyspace: lexer.next()?.identifier)
        case "table", "columnfamily", "view", "type":
            lexer.skipIfExists()
            return lexer.qualifiedName(kind: .ddl)
        case "index":
            lexer.skipIfExists()
            // CREATE INDEX [name] ON [ks.]table; DROP INDEX [ks.]name.
            var probe = lexer
            if probe.skip(toTopLevelKeyword: "on") { return probe.qualifiedName(kind: .ddl) }
            let name = lexer.qualifiedName(kind: .ddl)
            return CQLStatement(kind: .ddl, keyspace: name.keyspace)
        case "function", "aggregate":
            lexer.skipIfExists()
            let name = lexer.qualifiedName(kind: .ddl)
            return CQLStatement(kind: .ddl, keyspace: name.keyspace)
        default:
            return CQLStatement(kind: .ddl)
        }
    }
}

/// The tokens of CQL text the classifier needs: names (unquoted lower-cased, quoted as written),
/// punctuation, and everything else skipped (literals, numbers, comments).
struct CQLLexer {
    enum Token: Equatable {
        case word(String)
        case quoted(String)
        case symbol(UInt8)
        case literal

        /// An unquoted word, lower-cased: what keywords are.
        var keyword: String? {
            if case .word(let word) = self { return word }
            return nil
        }

        var identifier: String? {
            switch self {
            case .word(let word), .quoted(let word): return word
            default: return nil
            }
        }
    }

    private let bytes: UnsafeRawBufferPointer
    private var position = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    private func byte(_ offset: Int = 0) -> UInt8? {
        position + offset < bytes.count ? bytes[position + offset] : nil
    }

    private mutating func skipSpaceAndComments() {
        while let c = byte() {
            if c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D {
                position += 1
            } else if (c == UInt8(ascii: "-") && byte(1) == UInt8(ascii: "-")) || (c == UInt8(ascii: "/") && byte(1) == UInt8(ascii: "/")) {
                while let d = byte(), d != 0x0A { position += 1 }
            } else if c == UInt8(ascii: "/") && byte(1) == UInt8(ascii: "*") {
                position += 2
                while byte() != nil, !(byte() == UInt8(ascii: "*") && byte(1) == UInt8(ascii: "/")) { position += 1 }
                position = min(position + 2, bytes.count)
            } else {
                return
            }
        }
    }

    private static func isWordByte(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == UInt8(ascii: "_") || c >= 0x80
    }

    mutating func next() -> Token? {
        skipSpaceAndComments()
        guard let c = byte() else { return nil }
        if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
            position += 1
            var text: [UInt8] = []
            while let d = byte() {
                position += 1
                if d == c {
                    if byte() == c { text.append(c); position += 1; continue }
                    break
                }
                text.append(d)
            }
            return c == UInt8(ascii: "'") ? .literal : .quoted(String(decoding: text, as: UTF8.self))
        }
        if c == UInt8(ascii: "$"), byte(1) == UInt8(ascii: "$") {
            position += 2
            while byte() != nil, !(byte() == UInt8(ascii: "$") && byte(1) == UInt8(ascii: "$")) { position += 1 }
            position = min(position + 2, bytes.count)
            return .literal
        }
        if Self.isWordByte(c) {
            let start = position
            while let d = byte(), Self.isWordByte(d) { position += 1 }
            let word = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
            return .word(word.lowercased())
        }
        position += 1
        return .symbol(c)
    }

    /// Consumes `word` if it is next; false (consuming nothing) otherwise.
    mutating func expect(_ word: String) -> Bool {
        var probe = self
        guard probe.next()?.keyword == word else { return false }
        self = probe
        return true
    }

    /// Consumes the words if they all come next, in order.
    mutating func skipOptional(_ words: String...) {
        var probe = self
        for word in words where probe.next()?.keyword != word { return }
        self = probe
    }

    mutating func skipIfExists() {
        skipOptional("if", "not", "exists")
        skipOptional("if", "exists")
    }

    /// Moves past the next `word` outside parentheses; false when the text ends first.
    mutating func skip(toTopLevelKeyword word: String) -> Bool {
        var depth = 0
        while let token = next() {
            switch token {
            case .symbol(UInt8(ascii: "(")): depth += 1
            case .symbol(UInt8(ascii: ")")): depth = max(0, depth - 1)
            case .word(word) where depth == 0: return true
            default: break
            }
        }
        return false
    }

    /// Reads `name` or `keyspace.name`.
    mutating func qualifiedName(kind: CQLStatement.Kind) -> CQLStatement {
        guard let first = next()?.identifier else { return CQLStatement(kind: kind) }
        var probe = self
        if probe.next() == .symbol(UInt8(ascii: ".")), let second = probe.next()?.identifier {
            self = probe
            return CQLStatement(kind: kind, keyspace: first, table: second)
        }
        return CQLStatement(kind: kind, table: first)
    }
}
