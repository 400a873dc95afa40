/// Where the keys of a Redis command are: the host's answer to `redis_keys`.
///
/// The knowledge is Redis's own key specs (`COMMAND INFO`), kept as data in `RedisKeyTable` and
/// read here: a spec says where the search begins (a fixed argument, or the argument after a
/// keyword) and how the keys follow from there (a range, or a count of keys then the keys). SORT and
/// MIGRATE, whose specs Redis leaves "unknown" or "incomplete", have rules of their own.
enum RedisCommandKeys {
    /// What `positions` found out about a command.
    enum Lookup: Equatable {
        /// The command is known; `body` was called once per key (possibly never).
        case found
        /// Neither the command nor (for a container such as OBJECT) its subcommand is in the table.
        case unknownCommand
        /// The arguments contradict the key spec (a key count that is no number, or keys beyond the
        /// last argument): the server refuses such a command, and nothing was reported.
        case malformed
    }

    /// Calls `body` with the argument index of each key of the command in `bytes` (a multibulk
    /// request), in key-spec order (`COMMAND GETKEYS` order). Nothing is reported unless the whole
    /// command is well-formed for its specs.
    static func positions(_ bytes: UnsafeRawBufferPointer, _ body: (Int) -> Void) -> Lookup {
        let argc = RESPCommandReader.argumentCount(bytes)
        guard argc > 0 else { return .unknownCommand }
        // Argument offsets, on the stack for ordinary commands (heap only for very long ones).
        return withUnsafeTemporaryAllocation(of: (start: Int, length: Int).self, capacity: argc) { offsets in
            var filled = 0
            RESPCommandReader.forEachArgument(bytes) { index, start, length in
                offsets[index] = (start, length)
                filled = index + 1
                return true
            }
            guard filled == argc else { return .unknownCommand }
            let arguments = CommandArguments(bytes: bytes, offsets: UnsafeBufferPointer(offsets))
            guard let rule = rule(for: arguments) else { return .unknownCommand }
            return withUnsafeTemporaryAllocation(of: Int.self, capacity: argc) { found in
                var count = 0
                let lookup = rule.keys(of: arguments) { position in
                    guard count < argc else { return }  // overlapping specs cannot name more keys than arguments
                    found[count] = position
                    count += 1
                }
                guard lookup == .found else { return lookup }
                for i in 0..<count { body(found[i]) }
                return .found
            }
        }
    }

    /// The rule of the command (or of its subcommand, for containers such as OBJECT and XINFO).
    private static func rule(for arguments: CommandArguments) -> RedisKeyRule? {
        guard let entry = RedisKeyRule.table.find(arguments[0], nil) else { return nil }
        guard case .bySubcommand = entry else { return entry }
        guard arguments.count > 1 else { return nil }
        return RedisKeyRule.table.find(arguments[0], arguments[1])
    }
}

/// The arguments of one command: views into its message, by index.
struct CommandArguments {
    let bytes: UnsafeRawBufferPointer
    let offsets: UnsafeBufferPointer<(start: Int, length: Int)>

    var count: Int { offsets.count }

    subscript(i: Int) -> UnsafeRawBufferPointer {
        let o = offsets[i]
        return UnsafeRawBufferPointer(rebasing: bytes[o.start..<o.start + o.length])
    }

    /// Argument i equals `lowercase` ignoring ASCII case.
    func `is`(_ i: Int, _ lowercase: [UInt8]) -> Bool {
        let argument = self[i]
        guard argument.count == lowercase.count else { return false }
        for (a, b) in zip(argument, lowercase) where (a &- 65 < 26 ? a | 0x20 : a) != b { return false }
        return true
    }

    /// Argument i as a non-negative decimal number (at most 18 digits), or nil.
    func count(at i: Int) -> Int? {
        let argument = self[i]
        guard !argument.isEmpty, argument.count <= 18 else { return nil }
        var value = 0
        for b in argument {
            guard b &- 48 < 10 else { return nil }
            value = value * 10 + Int(b &- 48)
        }
        return value
    }
}

/// One Redis key spec (see `RedisKeyTable` for the notation).
struct RedisKeySpec: Equatable {
    enum Begin: Equatable {
        /// The search begins at this argument.
        case index(Int)
        /// The search begins after this keyword (lowercase), looked for from argument `from` on
        /// (a negative `from` looks backwards from the end).
        case keyword([UInt8], from: Int)
    }

    enum Find: Equatable {
        /// Keys from the beginning up to `lastKey` (relative to it; negative: from the end), every
        /// `step` arguments; with a negative `lastKey` and `limit` > 1, only 1/limit of what remains.
        case range(lastKey: Int, step: Int, limit: Int)
        /// The number of keys is argument `countAt` (relative), the keys start at `firstKey`
        /// (relative), every `step` arguments.
        case keyCount(countAt: Int, firstKey: Int, step: Int)
    }

    let begin: Begin
    let find: Find

    /// Reports the keys of this spec; `.malformed` if the arguments cannot hold them.
    func keys(of arguments: CommandArguments, _ report: (Int) -> Void) -> RedisCommandKeys.Lookup {
        let argc = arguments.count
        var first: Int
        switch begin {
        case .index(let i):
            first = i
        case .keyword(let word, let from):
            // The last argument is never taken for the keyword: no key could follow it.
            var found: Int?
            if from >= 0 {
                var i = from
                while i < argc - 1 {
                    if arguments.is(i, word) { found = i; break }
                    i += 1
                }
            } else {
                var i = argc + from
                while i >= 1 {
                    if i < argc - 1, arguments.is(i, word) { found = i; break }
                    i -= 1
                }
            }
            guard let found else { return .found }  // an optional keyword that is absent
            first = found + 1
        }
        var last: Int, step: Int
        switch find {
        case .range(let lastKey, let s, let limit):
            step = max(s, 1)
            if lastKey >= 0 {
                last = first + lastKey
            } else if limit <= 1 {
                last = argc + lastKey
            } else {
                last = first + (argc - first) / limit + lastKey
            }
        case .keyCount(let countAt, let firstKey, let s):
            step = max(s, 1)
            guard first + countAt < argc, let n = arguments.count(at: first + countAt), n <= argc else {
                return .malformed
            }
            first += firstKey
            last = first + (n - 1) * step
        }
        guard last >= first else { return .found }  // no keys (MSET alone, EVAL with 0 keys)
        guard last < argc else { return .malformed }
        var i = first
        while i <= last {
            report(i)
            i += step
        }
        return .found
    }
}

/// How a command's keys are found.
enum RedisKeyRule {
    /// By its key specs, in order (none: a command without keys).
    case specs([RedisKeySpec])
    /// By the specs of its subcommand (argument 1): OBJECT, XINFO, MEMORY…
    case bySubcommand
    /// SORT: argument 1, and the argument after STORE (skipping LIMIT's two and BY's and GET's one).
    case sort
    /// MIGRATE: argument 3, or when that is empty, every argument after KEYS (skipping AUTH's one
    /// and AUTH2's two).
    case migrate

    func keys(of arguments: CommandArguments, _ report: (Int) -> Void) -> RedisCommandKeys.Lookup {
        let argc = arguments.count
        switch self {
        case .specs(let specs):
            for spec in specs {
                let lookup = spec.keys(of: arguments, report)
                if lookup != .found { return lookup }
            }
        case .bySubcommand:
            return .unknownCommand
        case .sort:
            guard argc > 1 else { return .malformed }
            report(1)
            var store: Int?
            var i = 2
            while i < argc {
                if arguments.is(i, Self.limit) {
                    i += 2
                } else if arguments.is(i, Self.by) || arguments.is(i, Self.get) {
                    i += 1
                } else if arguments.is(i, Self.store), i + 1 < argc {
                    store = i + 1
                    i += 1
                }
                i += 1
            }
            if let store { report(store) }
        case .migrate:
            guard argc > 5 else { return .malformed }
            guard arguments[3].isEmpty else {
                report(3)
                return .found
            }
            var i = 6
            while i < argc {
                if arguments.is(i, Self.auth) {
                    i += 1
                } else if arguments.is(i, Self.auth2) {
                    i += 2
                } else if arguments.is(i, Self.keys) {
                    for k in i + 1..<argc { report(k) }
                    break
                }
                i += 1
            }
        }
        return .found
    }

    private static let limit = Array("limit".utf8), by = Array("by".utf8), get = Array("get".utf8)
    private static let store = Array("store".utf8), auth = Array("auth".utf8), auth2 = Array("auth2".utf8)
    private static let keys = Array("keys".utf8)

    /// The parsed `RedisKeyTable`, built on first use.
    static let table = RedisKeyRuleTable(RedisKeyTable.text)
}

/// The key rules by lowercase command name ("object|encoding" for a subcommand), sorted for a
/// binary search that compares without allocating.
struct RedisKeyRuleTable {
    private let names: [[UInt8]]
    private let rules: [RedisKeyRule]

    init(_ text: String) {
        var entries: [([UInt8], RedisKeyRule)] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard let name = fields.first else { continue }
            let rule: RedisKeyRule
            switch fields.dropFirst().first {
            case "+": rule = .bySubcommand
            case "=sort": rule = .sort
            case "=migrate": rule = .migrate
            default: rule = .specs(fields.dropFirst().compactMap { Self.spec(String($0)) })
            }
            entries.append((Array(name.lowercased().utf8), rule))
        }
        entries.sort { $0.0.lexicographicallyPrecedes($1.0) }
        names = entries.map(\.0)
        rules = entries.map(\.1)
    }

    var count: Int { names.count }

    /// All names, sorted (for tests).
    var allNames: [String] { names.map { String(decoding: $0, as: UTF8.self) } }

    /// `iN:rL/S/M`, `kWORD@N:nC/F/S` and so on; nil for anything else.
    private static func spec(_ text: String) -> RedisKeySpec? {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2, let b = parts[0].first, let f = parts[1].first else { return nil }
        let begin: RedisKeySpec.Begin
        switch b {
        case "i":
            guard let i = Int(parts[0].dropFirst()) else { return nil }
            begin = .index(i)
        case "k":
            let keyword = parts[0].dropFirst().split(separator: "@", maxSplits: 1)
            guard keyword.count == 2, let from = Int(keyword[1]) else { return nil }
            begin = .keyword(Array(keyword[0].lowercased().utf8), from: from)
        default:
            return nil
        }
        let numbers = parts[1].dropFirst().split(separator: "/").compactMap { Int($0) }
        guard numbers.count == 3 else { return nil }
        switch f {
        case "r": return RedisKeySpec(begin: begin, find: .range(lastKey: numbers[0], step: numbers[1], limit: numbers[2]))
        case "n": return RedisKeySpec(begin: begin, find: .keyCount(countAt: numbers[0], firstKey: numbers[1], step: numbers[2]))
        default: return nil
        }
    }

    /// The rule for `command` (or `command|subcommand`), compared ignoring ASCII case.
    func find(_ command: UnsafeRawBufferPointer, _ subcommand: UnsafeRawBufferPointer?) -> RedisKeyRule? {
        var low = 0, high = names.count - 1
        while low <= high {
            let mid = (low + high) / 2
            let order = Self.compare(names[mid], command, subcommand)
            if order == 0 { return rules[mid] }
            if order < 0 { low = mid + 1 } else { high = mid - 1 }
        }
        return nil
    }

    /// The order of `name` against the lowercased `command` (+ "|" + `subcommand`): <0, 0, >0.
    private static func compare(_ name: [UInt8], _ command: UnsafeRawBufferPointer,
                                _ subcommand: UnsafeRawBufferPointer?) -> Int {
        let total = command.count + (subcommand.map { $0.count + 1 } ?? 0)
        var i = 0
        while i < name.count, i < total {
            let byte: UInt8
            if i < command.count {
                byte = command[i]
            } else if i == command.count {
                byte = UInt8(ascii: "|")
            } else {
                byte = subcommand![i - command.count - 1]
            }
            let folded = byte &- 65 < 26 ? byte | 0x20 : byte
            if name[i] != folded { return Int(name[i]) - Int(folded) }
            i += 1
        }
        return name.count - total
    }
}
