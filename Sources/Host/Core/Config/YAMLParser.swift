import CYaml

/// Parses YAML text into `YAMLNode`s (first document only) from libyaml's event stream, so every
/// limit holds while the file is read, not after: a file nested 100,000 levels deep is refused at
/// level 65 after reading a few hundred bytes, instead of after libyaml built the whole document.
///
/// Aliases are resolved here: an alias is the node its anchor names (shared, not copied), and it
/// counts towards the limits as if it had been expanded, so an alias bomb is refused too.
/// Duplicate keys of one map are collected (every one, with both positions) rather than
/// stopping at the first.
enum YAMLParser {
    /// A problem at a place in the text (1-based line and column). `earlier` is the other place
    /// the problem involves (the first occurrence of a duplicate key).
    struct Failure: Error {
        let line: Int
        let column: Int
        let message: String
        var earlier: (line: Int, column: Int)? = nil
    }

    /// Every problem found; parsing stops at the first one that is not a duplicate key.
    struct Failures: Error {
        let all: [Failure]
    }

    /// Deepest nesting of collections accepted (the root is level 1).
    static let maxDepth = 64
    /// Most nodes accepted in a document, counting every alias as the nodes it stands for.
    static let maxNodes = 100_000

    static func parse(_ text: String) throws -> YAMLNode {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else {
            throw Failures(all: [Failure(line: 0, column: 0, message: "cannot initialise the YAML parser")])
        }
        defer { yaml_parser_delete(&parser) }
        var bytes = Array(text.utf8)
        return try bytes.withUnsafeMutableBufferPointer { buffer -> YAMLNode in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            var builder = TreeBuilder()
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else {
                    let mark = parser.problem_mark
                    let problem = parser.problem.map { String(cString: $0) } ?? "invalid YAML"
                    let context = parser.context.map { String(cString: $0) + ": " } ?? ""
                    throw Failures(all: builder.duplicates + [Failure(line: Int(mark.line) + 1, column: Int(mark.column) + 1,
                                                                      message: context + problem)])
                }
                defer { yaml_event_delete(&event) }
                let finished: Bool
                do {
                    finished = try builder.take(event)
                } catch let failure as Failure {
                    throw Failures(all: builder.duplicates + [failure])
                }
                if finished { break }
            }
            if !builder.duplicates.isEmpty { throw Failures(all: builder.duplicates) }
            return builder.root ?? YAMLNode(kind: .null, line: 1, column: 1)
        }
    }
}

/// Builds the tree from events with an explicit stack of open collections (no recursion, so the
/// depth of the input never touches the machine stack).
private struct TreeBuilder {
    /// A sequence or map being read.
    private struct Open {
        let kind: YAMLNode.Kind
        let line: Int
        let column: Int
        let anchor: String?
        var items: [YAMLNode] = []
        /// Nodes in this collection's subtree, aliases expanded (itself included).
        var size = 1
        /// Levels below this collection (0: no child collections).
        var height = 0
    }

    /// What an anchor names, with the figures an alias to it adds to the document.
    private struct Anchored {
        let node: YAMLNode
        let size: Int
        let height: Int
    }

    private var stack: [Open] = []
    private var anchors: [String: Anchored] = [:]
    private var nodes = 0
    private(set) var root: YAMLNode?
    private(set) var duplicates: [YAMLParser.Failure] = []

    /// Takes one event; true once the first document is complete.
    mutating func take(_ event: yaml_event_t) throws -> Bool {
        let line = Int(event.start_mark.line) + 1
        let column = Int(event.start_mark.column) + 1
        switch event.type {
        case YAML_SCALAR_EVENT:
            let scalar = event.data.scalar
            try admit(line: line, column: column, size: 1, height: 0)
            let text = String(decoding: UnsafeBufferPointer(start: scalar.value, count: scalar.length), as: UTF8.self)
            let isNull = scalar.style == YAML_PLAIN_SCALAR_STYLE && ["", "~", "null", "Null", "NULL"].contains(text)
            let node = isNull ? YAMLNode(kind: .null, line: line, column: column)
                              : YAMLNode(kind: .scalar, scalar: text, line: line, column: column)
            complete(node, anchor: Self.anchor(scalar.anchor), size: 1, height: 0)
        case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
            try admit(line: line, column: column, size: 1, height: 0)
            let isMap = event.type == YAML_MAPPING_START_EVENT
            let anchor = isMap ? event.data.mapping_start.anchor : event.data.sequence_start.anchor
            stack.append(Open(kind: isMap ? .map : .sequence, line: line, column: column, anchor: Self.anchor(anchor)))
        case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
            guard let open = stack.popLast() else { break }
            let node: YAMLNode
            if open.kind == .map {
                var pairs: [(key: YAMLNode, value: YAMLNode)] = []
                pairs.reserveCapacity(open.items.count / 2)
                var index = 0
                while index + 1 < open.items.count {
                    pairs.append((open.items[index], open.items[index + 1]))
                    index += 2
                }
                checkDuplicates(pairs)
                node = YAMLNode(kind: .map, pairs: pairs, line: open.line, column: open.column)
            } else {
                node = YAMLNode(kind: .sequence, items: open.items, line: open.line, column: open.column)
            }
            complete(node, anchor: open.anchor, size: open.size, height: open.height)
        case YAML_ALIAS_EVENT:
            let name = Self.anchor(event.data.alias.anchor) ?? ""
            guard let target = anchors[name] else {
                if stack.contains(where: { $0.anchor == name }) {
                    throw YAMLParser.Failure(line: line, column: column,
                                             message: "alias '*\(name)' refers to a node that contains it")
                }
                throw YAMLParser.Failure(line: line, column: column, message: "alias '*\(name)' names no anchor defined before it")
            }
            try admit(line: line, column: column, size: target.size, height: target.height)
            complete(target.node, anchor: nil, size: target.size, height: target.height)
        case YAML_DOCUMENT_END_EVENT, YAML_STREAM_END_EVENT:
            return true
        default:
            break  // stream and document start
        }
        return false
    }

    /// Refuses a node (of `size` nodes reaching `height` levels below itself) that would take the
    /// document past a limit.
    private mutating func admit(line: Int, column: Int, size: Int, height: Int) throws {
        if stack.count + height >= YAMLParser.maxDepth {
            throw YAMLParser.Failure(line: line, column: column, message: "nested deeper than \(YAMLParser.maxDepth) levels")
        }
        nodes += size
        if nodes > YAMLParser.maxNodes {
            throw YAMLParser.Failure(line: line, column: column,
                                     message: "more than \(YAMLParser.maxNodes) nodes (aliases counted as the nodes they stand for)")
        }
    }

    /// Adds a finished node to its parent (or makes it the root) and records its anchor.
    private mutating func complete(_ node: YAMLNode, anchor: String?, size: Int, height: Int) {
        if let anchor { anchors[anchor] = Anchored(node: node, size: size, height: height) }
        guard !stack.isEmpty else {
            if root == nil { root = node }
            return
        }
        let last = stack.count - 1
        stack[last].items.append(node)
        stack[last].size += size
        stack[last].height = max(stack[last].height, height + 1)
    }

    /// Records every key of `pairs` that repeats an earlier one (scalar keys, and null keys).
    private mutating func checkDuplicates(_ pairs: [(key: YAMLNode, value: YAMLNode)]) {
        guard pairs.count > 1 else { return }
        var seen: [String: YAMLNode] = [:]
        for (key, _) in pairs where key.kind == .scalar || key.kind == .null {
            let name = key.kind == .null ? "\u{0}null" : key.scalar
            if let first = seen[name] {
                let shown = key.kind == .null ? "null" : "'\(key.scalar)'"
                duplicates.append(YAMLParser.Failure(line: key.line, column: key.column,
                                                     message: "duplicate key \(shown) in this map",
                                                     earlier: (first.line, first.column)))
            } else {
                seen[name] = key
            }
        }
    }

    private static func anchor(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        pointer.map { String(cString: $0) }
    }
}
