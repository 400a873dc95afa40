import CYaml

/// A node of a parsed YAML document with its position in the file, as the config and the plugins
/// (through `sluice_config_node*`) see it.
final class YAMLNode {
    enum Kind { case null, scalar, sequence, map }

    let kind: Kind
    /// Scalar text (NUL-terminated copy kept for plugins in `cString`).
    let scalar: String
    let items: [YAMLNode]
    let pairs: [(key: YAMLNode, value: YAMLNode)]
    /// 1-based.
    let line: Int
    let column: Int
    /// The scalar's bytes plus a NUL, lent to plugins.
    let cString: [UInt8]

    init(kind: Kind, scalar: String = "", items: [YAMLNode] = [], pairs: [(key: YAMLNode, value: YAMLNode)] = [],
         line: Int, column: Int) {
        self.kind = kind
        self.scalar = scalar
        self.items = items
        self.pairs = pairs
        self.line = line
        self.column = column
        cString = Array(scalar.utf8) + [0]
    }

    /// Value under `key` in a map.
    subscript(key: String) -> YAMLNode? {
        pairs.first(where: { $0.key.scalar == key })?.value
    }

    var kindDescription: String {
        switch kind {
        case .null: return "nothing"
        case .scalar: return "a scalar"
        case .sequence: return "a sequence"
        case .map: return "a map"
        }
    }

    var handle: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    static func from(_ handle: OpaquePointer) -> YAMLNode {
        Unmanaged<YAMLNode>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
    }
}

/// Parses YAML text with libyaml into `YAMLNode`s (first document only; anchors and aliases are
/// resolved by libyaml's document loader).
enum YAMLParser {
    struct Failure: Error {
        let line: Int
        let column: Int
        let message: String
    }

    static func parse(_ text: String) throws -> YAMLNode {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else {
            throw Failure(line: 0, column: 0, message: "cannot initialise the YAML parser")
        }
        defer { yaml_parser_delete(&parser) }
        var bytes = Array(text.utf8)
        return try bytes.withUnsafeMutableBufferPointer { buffer -> YAMLNode in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            var document = yaml_document_t()
            guard yaml_parser_load(&parser, &document) == 1 else {
                let mark = parser.problem_mark
                let problem = parser.problem.map { String(cString: $0) } ?? "invalid YAML"
                let context = parser.context.map { String(cString: $0) + ": " } ?? ""
                throw Failure(line: Int(mark.line) + 1, column: Int(mark.column) + 1, message: context + problem)
            }
            defer { yaml_document_delete(&document) }
            guard let root = yaml_document_get_root_node(&document) else {
                return YAMLNode(kind: .null, line: 1, column: 1)
            }
            var budget = maxNodes
            return try convert(root, in: &document, depth: 0, budget: &budget)
        }
    }

    /// Limits that keep a hostile file from hanging the host: aliases can make a node contain itself
    /// (libyaml registers an anchor before loading its children) or expand exponentially.
    static let maxDepth = 64
    static let maxNodes = 100_000

    private static func convert(_ node: UnsafeMutablePointer<yaml_node_t>, in document: inout yaml_document_t,
                                depth: Int, budget: inout Int) throws -> YAMLNode {
        let line = Int(node.pointee.start_mark.line) + 1
        let column = Int(node.pointee.start_mark.column) + 1
        guard depth < maxDepth else {
            throw Failure(line: line, column: column,
                          message: "nested deeper than \(maxDepth) levels (or an alias that contains itself)")
        }
        budget -= 1
        guard budget >= 0 else {
            throw Failure(line: line, column: column,
                          message: "more than \(maxNodes) nodes once aliases are expanded")
        }
        switch node.pointee.type {
        case YAML_SCALAR_NODE:
            let scalar = node.pointee.data.scalar
            let text = String(decoding: UnsafeBufferPointer(start: scalar.value, count: scalar.length), as: UTF8.self)
            let plain = scalar.style == YAML_PLAIN_SCALAR_STYLE
            if plain, ["", "~", "null", "Null", "NULL"].contains(text) {
                return YAMLNode(kind: .null, line: line, column: column)
            }
            return YAMLNode(kind: .scalar, scalar: text, line: line, column: column)
        case YAML_SEQUENCE_NODE:
            var items: [YAMLNode] = []
            var item = node.pointee.data.sequence.items.start
            while let current = item, current != node.pointee.data.sequence.items.top {
                if let child = yaml_document_get_node(&document, current.pointee) {
                    items.append(try convert(child, in: &document, depth: depth + 1, budget: &budget))
                }
                item = current + 1
            }
            return YAMLNode(kind: .sequence, items: items, line: line, column: column)
        case YAML_MAPPING_NODE:
            var pairs: [(key: YAMLNode, value: YAMLNode)] = []
            var pair = node.pointee.data.mapping.pairs.start
            while let current = pair, current != node.pointee.data.mapping.pairs.top {
                if let k = yaml_document_get_node(&document, current.pointee.key),
                   let v = yaml_document_get_node(&document, current.pointee.value) {
                    pairs.append((try convert(k, in: &document, depth: depth + 1, budget: &budget),
                               try convert(v, in: &document, depth: depth + 1, budget: &budget)))
                }
                pair = current + 1
            }
            return YAMLNode(kind: .map, pairs: pairs, line: line, column: column)
        default:
            return YAMLNode(kind: .null, line: line, column: column)
        }
    }
}
