/// A node of the user's YAML (a read-only view into the host's parsed config).
///
/// LIFETIME: only during `Transform.init(config:env:)`; copy out what you need. A node may be the
/// NULL node (the user wrote nothing under the transform's name, or looked up a missing key).
/// THREAD: main.
public struct ConfigNode {
    /// The kind of a node (`SLUICE_NODE_*`).
    public enum Kind: Int32 {
        case null = 0, scalar, sequence, map
    }

    /// The host's `const sluice_config_node*` (nil for the NULL node).
    public let raw: OpaquePointer?

    public init(raw: OpaquePointer?) { self.raw = raw }

    /// Scalar, sequence, map, or null (absent, `~`, `null`, or nothing written).
    public var kind: Kind { Kind(rawValue: Host.api.pointee.node_kind(raw)) ?? .null }

    /// True for the NULL node.
    public var isNull: Bool { kind == .null }

    /// The text of a scalar node; nil for other kinds.
    public var scalar: String? {
        var view = sluice_host_view()
        guard Host.api.pointee.node_scalar(raw, &view) == SLUICE_OK else { return nil }
        return String(decoding: UnsafeRawBufferPointer(start: view.ptr, count: view.len), as: UTF8.self)
    }

    /// The value under `key` of a map node; nil when the key is absent or this is not a map.
    public subscript(key: String) -> ConfigNode? {
        var out: OpaquePointer?
        var name = key
        let status = name.withUTF8 { utf8 in
            utf8.withMemoryRebound(to: CChar.self) { Host.api.pointee.node_map_get(raw, $0.baseAddress, $0.count, &out) }
        }
        return status == SLUICE_OK ? ConfigNode(raw: out) : nil
    }

    /// Number of items of a sequence or pairs of a map; 0 for other kinds.
    public var count: Int { Host.api.pointee.node_count(raw) }

    /// The items of a sequence, in file order ([] for other kinds).
    public var items: [ConfigNode] {
        guard kind == .sequence else { return [] }
        return (0..<count).map { i in
            var value: OpaquePointer?
            _ = Host.api.pointee.node_at(raw, i, nil, &value)
            return ConfigNode(raw: value)
        }
    }

    /// The key/value pairs of a map, in file order ([] for other kinds).
    public var pairs: [(key: ConfigNode, value: ConfigNode)] {
        guard kind == .map else { return [] }
        return (0..<count).map { i in
            var key: OpaquePointer?
            var value: OpaquePointer?
            _ = Host.api.pointee.node_at(raw, i, &key, &value)
            return (ConfigNode(raw: key), ConfigNode(raw: value))
        }
    }

    /// 1-based line and column in the user's file (0 when unknown).
    public var position: (line: Int, column: Int) {
        var line: UInt32 = 0
        var column: UInt32 = 0
        Host.api.pointee.node_position(raw, &line, &column)
        return (Int(line), Int(column))
    }

    /// The line, 1-based (0 when unknown).
    public var line: Int { position.line }
    /// The column, 1-based (0 when unknown).
    public var column: Int { position.column }
}

// MARK: - Typed helpers (each throws a ConfigError pointing at the offending node)

extension ConfigNode {
    /// Accepts the NULL node (nothing written) or a map whose keys are all in `allowed`; anything else
    /// throws at the offending node, so typos are reported instead of silently ignored.
    public func checkKeys(_ allowed: [String]) throws {
        switch kind {
        case .null: return
        case .map: break
        default:
            throw ConfigError("expected a map of options (\(allowed.joined(separator: ", ")))", at: self)
        }
        for (key, _) in pairs {
            guard let name = key.scalar, allowed.contains(name) else {
                let expected = allowed.isEmpty ? "this transform takes no options"
                    : "expected one of: \(allowed.joined(separator: ", "))"
                throw ConfigError("unknown key '\(key.scalar ?? "?")' (\(expected))", at: key)
            }
        }
    }

    /// The value node under `key`, or nil when absent or null.
    public func value(_ key: String) -> ConfigNode? {
        guard let node = self[key], !node.isNull else { return nil }
        return node
    }

    /// The scalar under `key`; nil when absent or null; throws when it is not a scalar.
    public func string(_ key: String) throws -> String? {
        guard let node = value(key) else { return nil }
        guard let text = node.scalar else { throw ConfigError("\(key): expected a single value", at: node) }
        return text
    }

    /// The scalar under `key`; throws (at this map) when it is absent.
    public func requiredString(_ key: String, _ what: String? = nil) throws -> String {
        guard let text = try string(key) else {
            throw ConfigError("\(key) is required\(what.map { " (\($0))" } ?? "")", at: self)
        }
        return text
    }

    /// The sequence of scalars under `key`; nil when absent or null; throws when it is not a sequence
    /// of scalars.
    public func stringList(_ key: String) throws -> [String]? {
        guard let node = value(key) else { return nil }
        guard node.kind == .sequence else { throw ConfigError("\(key): expected a sequence", at: node) }
        return try node.items.map { item in
            guard let text = item.scalar else { throw ConfigError("\(key): every item must be a single value", at: item) }
            return text
        }
    }

    /// The integer under `key`, which must lie in `range`; nil when absent or null.
    public func int(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let node = value(key) else { return nil }
        guard let text = node.scalar, let number = Int(text), range.contains(number) else {
            throw ConfigError("\(key): expected an integer from \(range.lowerBound) to \(range.upperBound)", at: node)
        }
        return number
    }

    /// The boolean under `key` (true/false, yes/no, on/off); nil when absent or null.
    public func bool(_ key: String) throws -> Bool? {
        guard let node = value(key) else { return nil }
        switch node.scalar?.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw ConfigError("\(key): expected true or false", at: node)
        }
    }

    /// One of the cases of a `String` enum under `key`; nil when absent or null.
    public func choice<E: RawRepresentable & CaseIterable>(_ key: String, as type: E.Type = E.self) throws -> E?
    where E.RawValue == String {
        guard let node = value(key) else { return nil }
        guard let text = node.scalar, let value = E(rawValue: text) else {
            let expected = E.allCases.map(\.rawValue).joined(separator: ", ")
            throw ConfigError("\(key): expected one of \(expected), found '\(node.scalar ?? "a collection")'", at: node)
        }
        return value
    }
}

// MARK: - Errors and the config environment

/// A configuration problem. Throw it from `Transform.init(config:env:)`: the SDK reports it with
/// `config_error` at the node's line and column (the transform's own position when `node` is nil),
/// and the host refuses to start.
public struct ConfigError: Error, CustomStringConvertible {
    /// Where the problem is.
    public let node: ConfigNode?
    /// What is wrong ("target is required", "unknown key 'x'", …).
    public let message: String

    /// True for `alreadyReported`.
    public let isAlreadyReported: Bool

    public init(_ message: String, at node: ConfigNode? = nil) {
        self.message = message
        self.node = node
        isAlreadyReported = false
    }

    private init(reported: Void) {
        message = "invalid configuration (reported above)"
        node = nil
        isAlreadyReported = true
    }

    /// Throw this after reporting one or more problems yourself with `ConfigEnv.error(_:at:)`.
    public static var alreadyReported: ConfigError { ConfigError(reported: ()) }

    public var description: String { message }
}

/// What a transform may ask for while it is configured: error reporting, targets, counters.
/// LIFETIME: during `Transform.init(config:env:)` only. THREAD: main.
public struct ConfigEnv {
    /// The host's `sluice_config_env*`.
    public let raw: OpaquePointer

    public init(raw: OpaquePointer) { self.raw = raw }

    /// Reports a problem at `node` (nil: the transform's own position). Several may be reported;
    /// then throw `ConfigError.alreadyReported`.
    public func error(_ message: String, at node: ConfigNode?) {
        var text = message
        text.withUTF8 { utf8 in
            utf8.withMemoryRebound(to: CChar.self) {
                Host.api.pointee.config_error(raw, node?.raw, $0.baseAddress, $0.count)
            }
        }
    }

    /// Resolves a chain or sink by name; throws "no chain or sink is named 'X'" at `node`.
    public func resolveTarget(_ name: String, at node: ConfigNode?) throws -> Target {
        var out: OpaquePointer?
        var text = name
        let status = text.withUTF8 { utf8 in
            utf8.withMemoryRebound(to: CChar.self) { Host.api.pointee.target_resolve(raw, $0.baseAddress, $0.count, &out) }
        }
        guard status == SLUICE_OK, let out else {
            throw ConfigError("no chain or sink is named '\(name)'", at: node)
        }
        return Target(name: name, raw: out)
    }

    /// Resolves the target named by the scalar under `key` of `config`; nil when the key is absent.
    public func resolveTarget(key: String, in config: ConfigNode) throws -> Target? {
        guard let name = try config.string(key) else { return nil }
        return try resolveTarget(name, at: config[key])
    }

    /// Resolves the target named by the scalar under `key` of `config`; throws "KEY is required" (at
    /// the map) when it is absent, or "no chain or sink is named 'X'" (at the value).
    public func requireTarget(key: String, in config: ConfigNode) throws -> Target {
        guard let target = try resolveTarget(key: key, in: config) else {
            throw ConfigError("\(key) is required (the name of a chain or sink)", at: config)
        }
        return target
    }

    /// A counter exported as `sluice_plugin_<name>_total`, labelled with the plugin and the chain
    /// position. `name`: `[a-z0-9_]+`.
    public func counter(_ name: String) throws -> Counter {
        var out: OpaquePointer?
        var text = name
        let status = text.withUTF8 { utf8 in
            utf8.withMemoryRebound(to: CChar.self) { Host.api.pointee.metric_counter(raw, $0.baseAddress, $0.count, &out) }
        }
        guard status == SLUICE_OK, let out else {
            throw ConfigError("invalid metric name '\(name)' (expected [a-z0-9_]+)")
        }
        return Counter(raw: out)
    }

    /// The name of the transform being configured, as written in the chain.
    public var transformName: String {
        var view = sluice_host_view()
        Host.api.pointee.config_transform_name(raw, &view)
        return String(decoding: UnsafeRawBufferPointer(start: view.ptr, count: view.len), as: UTF8.self)
    }
}
