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
