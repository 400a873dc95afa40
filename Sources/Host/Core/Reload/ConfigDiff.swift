import Foundation

/// What a reload changes, by name: chains, sinks, sources (by listen address) and plugins added,
/// removed or changed. Computed from two `ConfigSnapshot`s; it decides nothing by itself except
/// which sinks keep their backend connections (`unchangedSinks`), and gives the reload's log line.
struct ConfigDiff: Equatable {
    struct Changes: Equatable {
        var added: [String] = []
        var removed: [String] = []
        var changed: [String] = []
        var isEmpty: Bool { added.isEmpty && removed.isEmpty && changed.isEmpty }

        init(added: [String] = [], removed: [String] = [], changed: [String] = []) {
            self.added = added
            self.removed = removed
            self.changed = changed
        }

        init(old: [String: String], new: [String: String]) {
            added = new.keys.filter { old[$0] == nil }.sorted()
            removed = old.keys.filter { new[$0] == nil }.sorted()
            changed = new.keys.filter { old[$0] != nil && old[$0] != new[$0] }.sorted()
        }

        /// The names present in both and identical.
        static func unchanged(old: [String: String], new: [String: String]) -> Set<String> {
            Set(new.keys.filter { old[$0] == new[$0] })
        }
    }

    var chains: Changes
    var sinks: Changes
    var sources: Changes
    var plugins: Changes
    /// Sinks identical in both (their backend connections are kept).
    var unchangedSinks: Set<String>
    /// Sources whose listen address stayed but whose protocol changed (redis ↔ cassandra): one
    /// source removed and another added (they are in `sources.removed` and `sources.added`, not
    /// in `changed`), since none of the old one's clients can go on under the new one; they are
    /// drained like a removed source's. The listener itself stays bound (binding the address
    /// again before the old one closed would fail) and takes the new protocol's clients.
    var sourcesReplaced: [String]

    init(old: ConfigSnapshot, new: ConfigSnapshot) {
        chains = Changes(old: old.chains, new: new.chains)
        sinks = Changes(old: old.sinks, new: new.sinks)
        sources = Changes(old: old.sources, new: new.sources)
        plugins = Changes(old: old.plugins, new: new.plugins)
        unchangedSinks = Changes.unchanged(old: old.sinks, new: new.sinks)
        let replaced = sources.changed.filter { old.sourceKinds[$0] != new.sourceKinds[$0] }
        sourcesReplaced = replaced
        sources.changed.removeAll { replaced.contains($0) }
        sources.removed = (sources.removed + replaced).sorted()
        sources.added = (sources.added + replaced).sorted()
    }

    /// The sources whose listeners a reload opens (added ones at a new address).
    var listenersToOpen: [String] { sources.added.filter { !sourcesReplaced.contains($0) } }
    /// The sources whose listeners a reload closes (removed ones whose address is gone).
    var listenersToClose: [String] { sources.removed.filter { !sourcesReplaced.contains($0) } }

    var isEmpty: Bool { chains.isEmpty && sinks.isEmpty && sources.isEmpty && plugins.isEmpty }

    /// One line: "chains changed: main; sources added: 127.0.0.1:7001", or "nothing changed".
    var summary: String {
        var parts: [String] = []
        for (what, changes) in [("chains", chains), ("sinks", sinks), ("sources", sources), ("plugins", plugins)] {
            if !changes.added.isEmpty { parts.append("\(what) added: \(changes.added.joined(separator: ", "))") }
            if !changes.removed.isEmpty { parts.append("\(what) removed: \(changes.removed.joined(separator: ", "))") }
            if !changes.changed.isEmpty { parts.append("\(what) changed: \(changes.changed.joined(separator: ", "))") }
        }
        return parts.isEmpty ? "nothing changed" : parts.joined(separator: "; ")
    }
}

/// A configuration reduced to comparable fingerprints per name. A fingerprint is text that is equal
/// exactly when the thing would behave the same (a chain's steps with their YAML, a sink's address
/// and settings, a plugin's version and file contents); it may hold secrets' hashes and is never
/// logged.
struct ConfigSnapshot: Equatable {
    var chains: [String: String] = [:]
    var sinks: [String: String] = [:]
    /// By "host:port".
    var sources: [String: String] = [:]
    /// Each source's protocol ("redis", "cassandra"), by "host:port".
    var sourceKinds: [String: String] = [:]
    var plugins: [String: String] = [:]

    init(chains: [String: String] = [:], sinks: [String: String] = [:], sources: [String: String] = [:],
         plugins: [String: String] = [:]) {
        self.chains = chains
        self.sinks = sinks
        self.sources = sources
        self.plugins = plugins
    }

    init(config: SluiceConfig, plugins loaded: [LoadedPlugin]) {
        for chain in config.chains {
            chains[chain.name] = chain.steps.map { step in
                step.kind == .sink ? "sink \(step.name)" : "\(step.name) \(step.config.canonicalText)"
            }.joined(separator: " -> ")
        }
        for sink in config.sinks {
            sinks[sink.name] = "\(sink.host):\(sink.port) connect=\(sink.connectTimeoutMilliseconds) reply=\(sink.replyTimeoutMilliseconds) max=\(sink.maxReplyBytes) auth=\(Self.fingerprint(sink.credentials)) tls=\(String(describing: sink.tls))"
        }
        for source in config.sources {
            sourceKinds[Self.key(host: source.host, port: source.port)] = source.kind.rawValue
            sources[Self.key(host: source.host, port: source.port)] = "chain=\(source.chain) max_frame=\(source.maxFrameBytes) max_clients=\(source.maxClients) idle=\(source.idleTimeoutMilliseconds) auth=\(source.auth.map(Self.fingerprint).joined(separator: ",")) tls=\(String(describing: source.tls)) limits=\(source.limits) kind=\(source.kind.rawValue) passthrough=\(source.authPassthrough)"
        }
        for plugin in loaded {
            // The private copy is named by the file's contents: a rebuilt plugin has a new one.
            plugins[plugin.name] = "\(plugin.version) \((plugin.loadedFrom as NSString).lastPathComponent)"
        }
    }

    /// The name of a source: its listen address as written.
    static func key(host: String, port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    private static func fingerprint(_ credentials: SluiceConfig.Credentials?) -> String {
        guard let credentials else { return "none" }
        var hasher = Hasher()
        hasher.combine(credentials.password)
        return "\(credentials.username ?? "default")/\(hasher.finalize())"
    }
}

extension YAMLNode {
    /// The node as text that is equal exactly when two nodes hold the same data (positions aside).
    var canonicalText: String {
        switch kind {
        case .null: return "~"
        case .scalar: return "\"\(scalar.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\""))\""
        case .sequence: return "[" + items.map(\.canonicalText).joined(separator: ",") + "]"
        case .map: return "{" + pairs.map { "\($0.key.canonicalText):\($0.value.canonicalText)" }.joined(separator: ",") + "}"
        }
    }
}
