/// A node of the user's YAML, valid during `Transform.init(config:env:)` only.
public struct ConfigNode {
    public enum Kind { case null, scalar, sequence, map }
    let raw: OpaquePointer?

    public var kind: Kind {
        switch sluiceHost.pointee.node_kind(raw) {
        case Int32(SLUICE_NODE_SCALAR): return .scalar
        case Int32(SLUICE_NODE_SEQUENCE): return .sequence
        case Int32(SLUICE_NODE_MAP): return .map
        default: return .null
        }
    }

    /// The text of a scalar, nil for other kinds.
    public var string: String? {
        var view = sluice_host_view()
        guard sluiceHost.pointee.node_scalar(raw, &view) == SLUICE_OK else { return nil }
        return String(decoding: UnsafeRawBufferPointer(start: view.ptr, count: view.len), as: UTF8.self)
    }

    /// The value under key of a map, nil when absent.
    public subscript(key: String) -> ConfigNode? {
        var out: OpaquePointer?
        let status = key.utf8CString.withUnsafeBufferPointer {
            sluiceHost.pointee.node_map_get(raw, $0.baseAddress, $0.count - 1, &out)
        }
        return status == SLUICE_OK ? ConfigNode(raw: out) : nil
    }

    /// Items of a sequence.
    public var items: [ConfigNode] {
        guard kind == .sequence else { return [] }
        return (0..<sluiceHost.pointee.node_count(raw)).map { i in
            var value: OpaquePointer?
            _ = sluiceHost.pointee.node_at(raw, i, nil, &value)
            return ConfigNode(raw: value)
        }
    }

    /// Key/value pairs of a map, in file order.
    public var pairs: [(key: ConfigNode, value: ConfigNode)] {
        guard kind == .map else { return [] }
        return (0..<sluiceHost.pointee.node_count(raw)).map { i in
            var key: OpaquePointer?
            var value: OpaquePointer?
            _ = sluiceHost.pointee.node_at(raw, i, &key, &value)
            return (ConfigNode(raw: key), ConfigNode(raw: value))
        }
    }

    public var isNull: Bool { kind == .null }
}

/// A configuration problem; thrown from `Transform.init`, reported at the node's line and column.
public struct ConfigError: Error {
    public let node: ConfigNode?
    public let message: String
    public init(_ message: String, at node: ConfigNode? = nil) {
        self.node = node
        self.message = message
    }
}

/// What a transform may ask for while it is configured.
public struct ConfigEnv {
    let raw: OpaquePointer

    /// Reports a problem at a node (several may be reported before throwing).
    public func error(_ message: String, at node: ConfigNode?) {
        var text = message
        text.withUTF8 { utf8 in
            utf8.withMemoryRebound(to: CChar.self) {
                sluiceHost.pointee.config_error(raw, node?.raw, $0.baseAddress, $0.count)
            }
        }
    }

    /// Resolves a chain or sink name written at `node`.
    public func target(_ name: String, at node: ConfigNode?) throws -> Target {
        var out: OpaquePointer?
        let status = name.utf8CString.withUnsafeBufferPointer {
            sluiceHost.pointee.target_resolve(raw, $0.baseAddress, $0.count - 1, &out)
        }
        guard status == SLUICE_OK, let out else {
            throw ConfigError("no chain or sink is named '\(name)'", at: node)
        }
        return Target(name: name, raw: out)
    }

    /// A counter exported as sluice_plugin_<name>_total.
    public func counter(_ name: String) throws -> Counter {
        var out: OpaquePointer?
        let status = name.utf8CString.withUnsafeBufferPointer {
            sluiceHost.pointee.metric_counter(raw, $0.baseAddress, $0.count - 1, &out)
        }
        guard status == SLUICE_OK, let out else { throw ConfigError("invalid metric name '\(name)'") }
        return Counter(raw: out)
    }

    /// The transform name being configured.
    var transformName: String {
        var view = sluice_host_view()
        sluiceHost.pointee.config_transform_name(raw, &view)
        return String(decoding: UnsafeRawBufferPointer(start: view.ptr, count: view.len), as: UTF8.self)
    }
}

extension ConfigNode {
    /// Throws if a map has a key outside `allowed` (so typos are not silently ignored).
    public func requireKeys(_ allowed: Set<String>, in what: String) throws {
        if isNull { return }
        guard kind == .map else { throw ConfigError("\(what): expected a map", at: self) }
        for (key, _) in pairs where !allowed.contains(key.string ?? "") {
            throw ConfigError("unknown key '\(key.string ?? "?")' (expected one of: \(allowed.sorted().joined(separator: ", ")))", at: key)
        }
    }

    /// The scalar under key, or nil when absent; throws when present but not a scalar.
    public func string(_ key: String) throws -> String? {
        guard let node = self[key], !node.isNull else { return nil }
        guard let text = node.string else { throw ConfigError("\(key): expected a scalar", at: node) }
        return text
    }

    /// The list of scalars under key ([] when absent).
    public func strings(_ key: String) throws -> [String] {
        guard let node = self[key], !node.isNull else { return [] }
        guard node.kind == .sequence else { throw ConfigError("\(key): expected a sequence", at: node) }
        return try node.items.map {
            guard let s = $0.string else { throw ConfigError("\(key): every item must be a scalar", at: $0) }
            return s
        }
    }
}
