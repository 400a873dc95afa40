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
        let shape = CQLStatementShape(bytes)
        return CQLStatement(kind: shape.kind, keyspace: shape.keyspace?.string(in: bytes),
                            table: shape.table?.string(in: bytes))
    }
}

/// A statement classified without making a single `String`: the kind, and where the keyspace and
/// table names are in the text (`CQLStatement.classify` turns them into strings; the plugin
/// accessors hand them out as views into the text when no lower-casing or unquoting changes them).
/// Per request on every CQL chain whose transforms ask for statements, so it reads bytes only.
struct CQLStatementShape {
    /// A name as the text writes it.
    struct Name: Equatable {
        /// The name's bytes in the text, without the quotes.
        let range: Range<Int>
        let quoted: Bool

        /// The name as CQL reads it: unquoted lower-cased, quoted with `""` standing for `"`.
        func string(in text: UnsafeRawBufferPointer) -> String {
            let bytes = UnsafeRawBufferPointer(rebasing: text[range])
            guard quoted else { return String(decoding: bytes, as: UTF8.self).lowercased() }
            var unquoted: [UInt8] = []
            unquoted.reserveCapacity(bytes.count)
            var i = 0
            while i < bytes.count {
                unquoted.append(bytes[i])
                i += bytes[i] == UInt8(ascii: "\"") ? 2 : 1  // the lexer only ends a name at a lone quote
            }
            return String(decoding: unquoted, as: UTF8.self)
        }

        /// Whether `string(in:)` is exactly the bytes of `range` (ASCII, nothing to lower-case or
        /// unquote), so a view of the text can stand for the name.
        func isVerbatim(in text: UnsafeRawBufferPointer) -> Bool {
            guard let base = text.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return true }
            var i = range.lowerBound
            while i < range.upperBound {
                let c = base[i]
                if c >= 0x80 { return false }
                if quoted ? c == UInt8(ascii: "\"") : (c &- 0x41 < 26) { return false }
                i &+= 1
            }
            return true
        }
    }

    let kind: CQLStatement.Kind
    let keyspace: Name?
    let table: Name?

    init(kind: CQLStatement.Kind, keyspace: Name? = nil, table: Name? = nil) {
        self.kind = kind
        self.keyspace = keyspace
        self.table = table
    }

    init(_ bytes: UnsafeRawBufferPointer) {
        var lexer = CQLLexer(bytes)
        guard let first = lexer.next(), case .word = first else {
            self.init(kind: .other)
            return
        }
        if lexer.isKeyword(first, "select") {
            guard lexer.skip(toTopLevelKeyword: "from") else { self.init(kind: .select); return }
            self = lexer.qualifiedName(kind: .select)
        } else if lexer.isKeyword(first, "insert") {
            guard lexer.expect("into") else { self.init(kind: .insert); return }
            self = lexer.qualifiedName(kind: .insert)
        } else if lexer.isKeyword(first, "update") {
            self = lexer.qualifiedName(kind: .update)
        } else if lexer.isKeyword(first, "delete") {
            guard lexer.skip(toTopLevelKeyword: "from") else { self.init(kind: .delete); return }
            self = lexer.qualifiedName(kind: .delete)
        } else if lexer.isKeyword(first, "begin") || lexer.isKeyword(first, "apply") {
            self.init(kind: .batch)
        } else if lexer.isKeyword(first, "use") {
            self.init(kind: .use, keyspace: lexer.next()?.name)
        } else if lexer.isKeyword(first, "truncate") {
            lexer.skipOptional("table")
            self = lexer.qualifiedName(kind: .other)
        } else if lexer.isKeyword(first, "create") || lexer.isKeyword(first, "alter") || lexer.isKeyword(first, "drop") {
            self = Self.ddl(&lexer)
        } else {
            self.init(kind: .other)
        }
    }

    private static func ddl(_ lexer: inout CQLLexer) -> CQLStatementShape {
        lexer.skipOptional("or", "replace")
        lexer.skipOptional("custom")
        lexer.skipOptional("materialized")
        guard let object = lexer.next(), case .word = object else { return CQLStatementShape(kind: .ddl) }
        if lexer.isKeyword(object, "keyspace") || lexer.isKeyword(object, "schema") {
            lexer.skipIfExists()
            return CQLStatementShape(kind: .ddl, keyspace: lexer.next()?.name)
        }
        if lexer.isKeyword(object, "table") || lexer.isKeyword(object, "columnfamily") || lexer.isKeyword(object, "view")
            || lexer.isKeyword(object, "type") {
            lexer.skipIfExists()
            return lexer.qualifiedName(kind: .ddl)
        }
        if lexer.isKeyword(object, "index") {
            lexer.skipIfExists()
            // CREATE INDEX [name] ON [ks.]table; DROP INDEX [ks.]name.
            var probe = lexer
            if probe.skip(toTopLevelKeyword: "on") { return probe.qualifiedName(kind: .ddl) }
            let name = lexer.qualifiedName(kind: .ddl)
            return CQLStatementShape(kind: .ddl, keyspace: name.keyspace)
        }
        if lexer.isKeyword(object, "function") || lexer.isKeyword(object, "aggregate") {
            lexer.skipIfExists()
            let name = lexer.qualifiedName(kind: .ddl)
            return CQLStatementShape(kind: .ddl, keyspace: name.keyspace)
        }
        return CQLStatementShape(kind: .ddl)
    }
}

/// The tokens of CQL text the classifier needs: names (where they are; `CQLStatementShape.Name`
/// reads them as CQL does: unquoted lower-cased, quoted as written), punctuation, and everything
/// else skipped (literals, numbers, comments). Tokens are ranges of the text: no allocation.
struct CQLLexer {
    enum Token: Equatable {
        /// An unquoted word (keywords are words, compared without case).
        case word(Range<Int>)
        /// A double-quoted name, without its quotes (`""` inside still doubled).
        case quoted(Range<Int>)
        case symbol(UInt8)
        case literal

        var name: CQLStatementShape.Name? {
            switch self {
            case .word(let range): return CQLStatementShape.Name(range: range, quoted: false)
            case .quoted(let range): return CQLStatementShape.Name(range: range, quoted: true)
            default: return nil
            }
        }
    }

    private let bytes: UnsafeRawBufferPointer
    /// The text's first byte and length, read directly: `position` never passes `count`, so the
    /// loops below compare indexes instead of unwrapping an optional byte per step.
    private let base: UnsafePointer<UInt8>
    private let count: Int
    private var position = 0

    init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
        count = bytes.count
        // An empty text may have no address; any valid pointer serves, as nothing is read from it.
        base = bytes.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) } ?? CQLLexer.emptyText
    }

    private static let emptyText: UnsafePointer<UInt8> = {
        let one = UnsafeMutablePointer<UInt8>.allocate(capacity: 1)
        one.initialize(to: 0)
        return UnsafePointer(one)
    }()

    /// Whether the two bytes at `position` are `first` and `second`.
    @inline(__always)
    private func pair(_ first: UInt8, _ second: UInt8) -> Bool {
        count &- position >= 2 && base[position] == first && base[position &+ 1] == second
    }

    @inline(__always)
    private mutating func skipSpaceAndComments() {
        while position < count {
            let c = base[position]
            if c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D {
                position &+= 1
            } else if pair(UInt8(ascii: "-"), UInt8(ascii: "-")) || pair(UInt8(ascii: "/"), UInt8(ascii: "/")) {
                while position < count, base[position] != 0x0A { position &+= 1 }
            } else if pair(UInt8(ascii: "/"), UInt8(ascii: "*")) {
                position &+= 2
                while position < count, !pair(UInt8(ascii: "*"), UInt8(ascii: "/")) { position &+= 1 }
                position = min(position &+ 2, count)
            } else {
                return
            }
        }
    }

    @inline(__always)
    private static func isWordByte(_ c: UInt8) -> Bool {
        // c | 0x20 is in a...z exactly when c is an ASCII letter of either case.
        (c &- 0x30 < 10) || ((c | 0x20) &- 0x61 < 26) || c == UInt8(ascii: "_") || c >= 0x80
    }

    mutating func next() -> Token? {
        skipSpaceAndComments()
        guard position < count else { return nil }
        let c = base[position]
        if Self.isWordByte(c) {
            let start = position
            position &+= 1
            while position < count, Self.isWordByte(base[position]) { position &+= 1 }
            return .word(start..<position)
        }
        if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
            position &+= 1
            let start = position
            var end = count  // unterminated: the rest of the text
            while position < count {
                let d = base[position]
                position &+= 1
                if d == c {
                    if position < count, base[position] == c { position &+= 1; continue }
                    end = position &- 1
                    break
                }
            }
            return c == UInt8(ascii: "'") ? .literal : .quoted(start..<end)
        }
        if pair(UInt8(ascii: "$"), UInt8(ascii: "$")) {
            position &+= 2
            while position < count, !pair(UInt8(ascii: "$"), UInt8(ascii: "$")) { position &+= 1 }
            position = min(position &+ 2, count)
            return .literal
        }
        position &+= 1
        return .symbol(c)
    }

    /// Whether `token` is the word `keyword` (given in lower case), case aside. A word with bytes
    /// beyond ASCII is lower-cased as Unicode text first, as CQL's own lower-casing would.
    func isKeyword(_ token: Token, _ keyword: StaticString) -> Bool {
        guard case .word(let range) = token else { return false }
        let expected = keyword.utf8Start
        let length = keyword.utf8CodeUnitCount
        if range.count == length {
            var i = 0
            while i < length {
                let c = base[range.lowerBound &+ i]
                if c >= 0x80 { return Self.lowercasedEquals(UnsafeRawBufferPointer(rebasing: bytes[range]), keyword) }
                // The bytes so far are ASCII, which lower-casing keeps in place: a difference is final.
                if (c &- 0x41 < 26 ? c | 0x20 : c) != expected[i] { return false }
                i &+= 1
            }
            return true
        }
        // Of another length: equal only if lower-casing a byte beyond ASCII changes the length.
        for i in range where base[i] >= 0x80 {
            return Self.lowercasedEquals(UnsafeRawBufferPointer(rebasing: bytes[range]), keyword)
        }
        return false
    }

    private static func lowercasedEquals(_ word: UnsafeRawBufferPointer, _ keyword: StaticString) -> Bool {
        let expected = UnsafeRawBufferPointer(start: keyword.utf8Start, count: keyword.utf8CodeUnitCount)
        return String(decoding: word, as: UTF8.self).lowercased().utf8.elementsEqual(expected)
    }

    /// Consumes `word` if it is next; false (consuming nothing) otherwise.
    mutating func expect(_ word: StaticString) -> Bool {
        var probe = self
        guard let token = probe.next(), isKeyword(token, word) else { return false }
        self = probe
        return true
    }

    /// Consumes the words if they all come next, in order.
    mutating func skipOptional(_ words: StaticString...) {
        var probe = self
        for word in words {
            guard let token = probe.next(), isKeyword(token, word) else { return }
        }
        self = probe
    }

    mutating func skipIfExists() {
        skipOptional("if", "not", "exists")
        skipOptional("if", "exists")
    }

    /// Moves past the next `word` outside parentheses; false when the text ends first. Words and
    /// parentheses are read in place (this walks every select list, per request): only other
    /// tokens (literals, quoted names, symbols) go through `next()`.
    mutating func skip(toTopLevelKeyword word: StaticString) -> Bool {
        var depth = 0
        while true {
            skipSpaceAndComments()
            guard position < count else { return false }
            let c = base[position]
            if Self.isWordByte(c) {
                let start = position
                position &+= 1
                while position < count, Self.isWordByte(base[position]) { position &+= 1 }
                if depth == 0, isKeyword(.word(start..<position), word) { return true }
            } else if c == UInt8(ascii: "(") {
                depth &+= 1
                position &+= 1
            } else if c == UInt8(ascii: ")") {
                depth = max(0, depth &- 1)
                position &+= 1
            } else {
                _ = next()
            }
        }
    }

    /// Reads `name` or `keyspace.name`.
    mutating func qualifiedName(kind: CQLStatement.Kind) -> CQLStatementShape {
        guard let first = next()?.name else { return CQLStatementShape(kind: kind) }
        var probe = self
        if probe.next() == .symbol(UInt8(ascii: ".")), let second = probe.next()?.name {
            self = probe
            return CQLStatementShape(kind: kind, keyspace: first, table: second)
        }
        return CQLStatementShape(kind: kind, table: first)
    }
}
