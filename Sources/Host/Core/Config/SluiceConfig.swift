import Foundation

/// The user's config file, validated: plugin directory, sinks, chains and sources.
/// Every problem is reported with the file, line and column it comes from.
public struct SluiceConfig {
    public struct Sink {
        public let name: String
        public let host: String
        public let port: Int
        public let connectTimeoutMilliseconds: Int64
        /// How long a shared backend connection may owe a reply before it is given up (0: never).
        public let replyTimeoutMilliseconds: Int64
        /// Largest reply accepted from this backend; a larger one closes the backend connection.
        public let maxReplyBytes: Int
        /// Credentials Sluice sends (`AUTH [username] password`) on every connection it opens to this
        /// backend; nil when the backend needs none.
        public let credentials: Credentials?
        /// TLS to this backend (nil: plain TCP).
        public let tls: TLS?
        let node: YAMLNode
        /// The protocol the backend speaks (`redis:` or `cassandra:`).
        public var kind: Kind = .redis

        public enum Kind: String {
            case redis
            case cassandra
        }
    }

    /// An ACL user name (nil: the user "default") and password: what Sluice sends a backend, or
    /// what a source accepts from its clients. Never logged.
    public struct Credentials {
        public let username: String?
        public let password: String
    }

    public struct Step {
        public enum Kind { case transform, sink }
        public let kind: Kind
        /// Transform name, or sink name for a sink step.
        public let name: String
        /// The transform's own config (the value under its name).
        let config: YAMLNode
        let node: YAMLNode
    }

    public struct Chain {
        public let name: String
        public let steps: [Step]
        let node: YAMLNode
    }

    public struct Source {
        public let host: String
        public let port: Int
        public let chain: String
        public let maxFrameBytes: Int
        /// Connections accepted at once; one more is told so and closed (Redis's maxclients).
        public let maxClients: Int
        /// Close a client that sent nothing for this long (0 = never; Redis's timeout).
        public let idleTimeoutMilliseconds: Int64
        /// The users a client must authenticate as (AUTH / HELLO AUTH) before anything else; empty:
        /// clients need not authenticate.
        public let auth: [Credentials]
        /// TLS for this source's clients (nil: plain TCP).
        public let tls: TLS?
        /// Reply and request byte limits and the request timeout of each client (`reply_buffer_*`,
        /// `request_buffer_budget_bytes`, `request_timeout_ms`).
        public var limits = ClientLimits()
        let node: YAMLNode
        /// The protocol its clients speak (`- redis:` or `- cassandra:`).
        public var kind: SourceKind = .redis
        /// `cassandra` only, `auth: passthrough`: the client's SASL exchange reaches the backend
        /// (`auth` is then empty).
        public var authPassthrough = false
    }

    /// The protocol of a source's clients.
    public enum SourceKind: String, Sendable {
        case redis
        case cassandra
    }

    public let file: String
    public let pluginDirectory: String?
    /// Where `plugins.directory` is written (for errors about that directory).
    let pluginDirectoryNode: YAMLNode?
    public let requiredPlugins: [(name: String, line: Int, column: Int)]
    /// How long a transform may keep a call it must answer (`plugins.call_deadline_ms`, 0: no limit)
    /// before the host fails the call's requests itself.
    public var callDeadlineMilliseconds: Int64 = SluiceConfig.defaultCallDeadlineMilliseconds
    public let sinks: [Sink]
    public let chains: [Chain]
    public let sources: [Source]
    public let metricsListen: (host: String, port: Int)?
    /// Where `observability.metrics` is written (for errors about that address).
    let metricsListenNode: YAMLNode?
    public let threads: Int?
    public let logLevel: String?
    /// The admin endpoint (`admin:`), nil when not configured (see AdminSettings).
    public var admin: AdminSettings?
    /// Worker processes and crash quarantine of `sluice run` (`supervision:`; Supervision/).
    public var supervision = SupervisionSettings()
    /// After a reload, how long a client connection that cannot move to the new generation (inside
    /// MULTI, subscribed, a blocking command) keeps the old one before it is drained (`reload.grace_ms`).
    public var reloadGraceMilliseconds: Int64 = SluiceConfig.defaultReloadGraceMilliseconds

    public static let defaultMaxFrameBytes = 512 * 1024 * 1024
    /// Event-loop threads accepted (config `threads`, `sluice run --threads`).
    public static let threadRange = 1...256
    public static let defaultCallDeadlineMilliseconds: Int64 = 60_000
    public static let defaultReloadGraceMilliseconds: Int64 = 30_000
    /// Redis's own default maxclients.
    public static let defaultMaxClients = 10_000
    /// A `cassandra` sink's largest reply frame by default (256 MiB).
    public static let defaultCQLMaxFrameBytes = 256 * 1024 * 1024
    /// A `cassandra` source's largest request frame by default: 16 MiB, Cassandra's own
    /// `native_transport_max_frame_size` since 4.0. Also the most one compressed body may
    /// decompress to, so it bounds what a small LZ4 body can make Sluice allocate.
    public static let defaultCQLSourceMaxFrameBytes = 16 * 1024 * 1024

    /// Largest config file read (a config is a few kilobytes; this only keeps a wrong path, such
    /// as a log file or a device, from being read into memory).
    public static let maxFileBytes = 8 * 1024 * 1024

    /// Reads and validates a config file.
    public static func load(path: String) throws -> SluiceConfig {
        let text: String
        do {
            text = try ConfigFile.contents(of: path, maxBytes: maxFileBytes)
        } catch let problem as ConfigFile.Problem {
            throw ConfigErrors(errors: [ConfigError(file: path, line: 0, column: 0, message: problem.message)])
        }
        return try parse(text, file: path)
    }

    /// Validates config text; `file` names it in errors and anchors relative paths.
    public static func parse(_ text: String, file: String) throws -> SluiceConfig {
        let root: YAMLNode
        do {
            root = try YAMLParser.parse(text)
        } catch let failures as YAMLParser.Failures {
            throw ConfigErrors(errors: failures.all.map { failure in
                if let earlier = failure.earlier {
                    return ConfigError(file: file, line: failure.line, column: failure.column,
                                       message: "\(failure.message) (first at \(file):\(earlier.line):\(earlier.column))")
                }
                return ConfigError(file: file, line: failure.line, column: failure.column,
                                   message: "invalid YAML: \(failure.message)")
            })
        }
        var reader = ConfigReader(file: file)
        let config = reader.read(root)
        if !reader.errors.isEmpty { throw ConfigErrors(errors: reader.errors) }
        return config!
    }

    func error(_ node: YAMLNode, _ message: String) -> ConfigError {
        ConfigError(file: file, line: node.line, column: node.column, message: message)
    }
}

/// Walks the YAML tree, collecting every problem instead of stopping at the first.
struct ConfigReader {
    let file: String
    var errors: [ConfigError] = []

    init(file: String) {
        self.file = file
    }

    mutating func fail(_ node: YAMLNode, _ message: String) {
        errors.append(ConfigError(file: file, line: node.line, column: node.column, message: message))
    }

    /// Checks that node is a map with only the allowed keys.
    mutating func expectMap(_ node: YAMLNode, _ what: String, allowed: [String]) -> Bool {
        guard node.kind == .map else {
            fail(node, "\(what): expected a map, found \(node.kindDescription)")
            return false
        }
        for (key, _) in node.pairs where !allowed.contains(key.scalar) {
            fail(key, "\(what): unknown key '\(key.scalar)' (expected one of: \(allowed.joined(separator: ", ")))")
        }
        return true
    }

    mutating func scalar(_ node: YAMLNode?, _ what: String, at parent: YAMLNode) -> String? {
        guard let node else {
            fail(parent, "\(what) is required")
            return nil
        }
        guard node.kind == .scalar else {
            fail(node, "\(what): expected a scalar, found \(node.kindDescription)")
            return nil
        }
        return node.scalar
    }

    mutating func integer(_ node: YAMLNode?, _ what: String, range: ClosedRange<Int>) -> Int? {
        guard let node else { return nil }
        guard node.kind == .scalar, let value = Int(node.scalar), range.contains(value) else {
            fail(node, "\(what): expected an integer in \(range.lowerBound)...\(range.upperBound)")
            return nil
        }
        return value
    }

    mutating func address(_ node: YAMLNode?, _ what: String, at parent: YAMLNode) -> (String, Int)? {
        guard let text = scalar(node, what, at: parent), let node else { return nil }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
              (0...65535).contains(port), colon != text.startIndex
        else {
            fail(node, "\(what): expected host:port, found '\(text)'")
            return nil
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }

    mutating func read(_ root: YAMLNode) -> SluiceConfig? {
        guard expectMap(root, "config", allowed: ["plugins", "sinks", "chains", "sources", "observability", "threads", "admin", "supervision", "reload"])
        else { return nil }
        let baseDirectory = URL(fileURLWithPath: file).deletingLastPathComponent().path

        var pluginDirectory: String?
        var required: [(name: String, line: Int, column: Int)] = []
        var callDeadline = SluiceConfig.defaultCallDeadlineMilliseconds
        if let plugins = root["plugins"], expectMap(plugins, "plugins", allowed: ["directory", "require", "call_deadline_ms"]) {
            if let value = integer(plugins["call_deadline_ms"], "plugins.call_deadline_ms", range: 0...86_400_000) {
                callDeadline = Int64(value)
            }
            if let dir = scalar(plugins["directory"], "plugins.directory", at: plugins) {
                pluginDirectory = dir.hasPrefix("/") ? dir : baseDirectory + "/" + dir
            }
            if let list = plugins["require"] {
                if list.kind == .sequence {
                    for item in list.items {
                        if let name = scalar(item, "plugins.require item", at: list) {
                            required.append((name, item.line, item.column))
                        }
                    }
                } else {
                    fail(list, "plugins.require: expected a sequence of plugin names")
                }
            }
        }

        var sinks: [SluiceConfig.Sink] = []
        var names: [String: YAMLNode] = [:]
        if let sinkMap = root["sinks"], expectMap(sinkMap, "sinks", allowed: sinkMap.pairs.map(\.key.scalar)) {
            // A sink named twice is a duplicate key, refused by the parser with both positions.
            for (key, value) in sinkMap.pairs {
                if let sink = readSink(name: key.scalar, key: key, value) {
                    sinks.append(sink)
                    names[sink.name] = key
                }
            }
        } else if root["sinks"] == nil {
            fail(root, "sinks: at least one sink is required")
        }

        var chains: [SluiceConfig.Chain] = []
        if let chainMap = root["chains"], expectMap(chainMap, "chains", allowed: chainMap.pairs.map(\.key.scalar)) {
            for (key, value) in chainMap.pairs {
                if let earlier = names[key.scalar] {
                    fail(key, "chain '\(key.scalar)': a sink or chain of that name already exists (line \(earlier.line)); chains and sinks share one namespace")
                    continue
                }
                names[key.scalar] = key
                if let chain = readChain(name: key.scalar, value, sinkNames: Set(sinks.map(\.name))) {
                    chains.append(chain)
                }
            }
        } else if root["chains"] == nil {
            fail(root, "chains: at least one chain is required")
        }

        var sources: [SluiceConfig.Source] = []
        if let list = root["sources"] {
            if list.kind == .sequence, !list.items.isEmpty {
                for item in list.items {
                    if let source = readSource(item, chainNames: Set(chains.map(\.name))) { sources.append(source) }
                }
            } else {
                fail(list, "sources: expected a non-empty sequence of sources")
            }
        } else {
            fail(root, "sources: at least one source is required")
        }

        checkSinkProtocols(sources: sources, chains: chains, sinks: sinks)

        var metrics: (String, Int)?
        var logLevel: String?
        if let obs = root["observability"], expectMap(obs, "observability", allowed: ["metrics", "log_level"]) {
            if obs["metrics"] != nil { metrics = address(obs["metrics"], "observability.metrics", at: obs) }
            if let level = obs["log_level"] {
                let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
                if let text = scalar(level, "observability.log_level", at: obs), !levels.contains(text) {
                    fail(level, "observability.log_level: expected one of \(levels.joined(separator: ", "))")
                } else {
                    logLevel = level.scalar
                }
            }
        }
        let threads = integer(root["threads"], "threads", range: SluiceConfig.threadRange)
        var supervision = SupervisionSettings()
        if let node = root["supervision"], expectMap(node, "supervision", allowed: SupervisionSettings.keys) {
            supervision = SupervisionSettings(
                workers: integer(node["workers"], "supervision.workers", range: SupervisionSettings.workerRange),
                quarantineAfter: integer(node["quarantine_after"], "supervision.quarantine_after", range: 0...1000),
                quarantineWindowMilliseconds: integer(node["quarantine_window_ms"], "supervision.quarantine_window_ms",
                                                      range: 1...86_400_000))
        }

        var config = SluiceConfig(file: file, pluginDirectory: pluginDirectory,
                                  pluginDirectoryNode: root["plugins"]?["directory"], requiredPlugins: required, sinks: sinks,
                                  chains: chains, sources: sources, metricsListen: metrics,
                                  metricsListenNode: metrics == nil ? nil : root["observability"]?["metrics"], threads: threads,
                                  logLevel: logLevel)
        config.callDeadlineMilliseconds = callDeadline
        config.admin = root["admin"].flatMap { readAdmin($0) }
        config.supervision = supervision
        if let reload = root["reload"], expectMap(reload, "reload", allowed: ["grace_ms"]),
           let grace = integer(reload["grace_ms"], "reload.grace_ms", range: 0...86_400_000) {
            config.reloadGraceMilliseconds = Int64(grace)
        }
        return config
    }

    private mutating func readSink(name: String, key: YAMLNode, _ node: YAMLNode) -> SluiceConfig.Sink? {
        guard expectMap(node, "sink '\(name)'", allowed: ["redis", "cassandra"]) else { return nil }
        if node.pairs.count > 1 {
            fail(node, "sink '\(name)': expected one of 'redis:' or 'cassandra:', not both")
            return nil
        }
        if let cassandra = node["cassandra"] { return readCassandraSink(name: name, key: key, cassandra) }
        guard let redis = node["redis"] else {
            fail(node, "sink '\(name)': expected 'redis: { address: host:port }' or 'cassandra: { address: host:port }'")
            return nil
        }
        return readRedisSink(name: name, key: key, redis)
    }

    /// A source's chain must end at a sink of the source's protocol: a Redis client's requests
    /// cannot go to a Cassandra backend, nor the other way round. Refused at the sink step.
    private mutating func checkSinkProtocols(sources: [SluiceConfig.Source], chains: [SluiceConfig.Chain],
                                             sinks: [SluiceConfig.Sink]) {
        let sinkKinds = Dictionary(sinks.map { ($0.name, $0.kind) }, uniquingKeysWith: { first, _ in first })
        var checked: Set<String> = []
        for source in sources {
            let protocolName = Self.protocolName(of: source)
            guard checked.insert("\(protocolName) \(source.chain)").inserted,
                  let chain = chains.first(where: { $0.name == source.chain }) else { continue }
            for (position, step) in chain.steps.enumerated() where step.kind == .sink {
                guard let kind = sinkKinds[step.name], kind.rawValue != protocolName else { continue }
                fail(step.node, "chain '\(chain.name)' step \(position + 1): sink '\(step.name)' is a \(kind.rawValue) sink, but the chain serves a \(protocolName) source (\(source.host):\(source.port)); a chain must end at sinks of its source's protocol")
            }
        }
    }

    /// "redis" or "cassandra".
    private static func protocolName(of source: SluiceConfig.Source) -> String {
        source.kind.rawValue
    }

    /// `username` (optional), and `password` or `password_env` (the name of an environment variable
    /// holding it, so the secret can stay out of the file).
    mutating func readCredentials(_ redis: YAMLNode, _ what: String) -> SluiceConfig.Credentials? {
        let username = redis["username"].flatMap { scalar($0, "\(what).username", at: redis) }
        var password: String?
        switch (redis["password"], redis["password_env"]) {
        case (nil, nil):
            if let node = redis["username"] { fail(node, "\(what).username: a password (password or password_env) is required with it") }
            return nil
        case (let node?, nil):
            password = scalar(node, "\(what).password", at: redis)
        case (nil, let node?):
            guard let variable = scalar(node, "\(what).password_env", at: redis) else { return nil }
            guard let value = ProcessInfo.processInfo.environment[variable] else {
                fail(node, "\(what).password_env: environment variable '\(variable)' is not set")
                return nil
            }
            password = value
        case (_, let node?):
            fail(node, "\(what): give either password or password_env, not both")
            return nil
        }
        guard let password else { return nil }
        if password.isEmpty {
            fail(redis["password"] ?? redis["password_env"]!, "\(what): the password is empty")
            return nil
        }
        if username?.isEmpty == true {
            fail(redis["username"]!, "\(what).username: expected a user name, found an empty string")
            return nil
        }
        return SluiceConfig.Credentials(username: username, password: password)
    }

    private mutating func readChain(name: String, _ node: YAMLNode, sinkNames: Set<String>) -> SluiceConfig.Chain? {
        guard node.kind == .sequence, !node.items.isEmpty else {
            fail(node, "chain '\(name)': expected a non-empty sequence of steps ending with '- sink: NAME'")
            return nil
        }
        var steps: [SluiceConfig.Step] = []
        for (i, item) in node.items.enumerated() {
            guard item.kind == .map, item.pairs.count == 1, let (key, value) = item.pairs.first else {
                fail(item, "chain '\(name)' step \(i + 1): expected a single-key map such as '- tee: {...}' or '- sink: NAME'")
                continue
            }
            if key.scalar == "sink" {
                guard let sinkName = scalar(value, "chain '\(name)' sink step", at: item) else { continue }
                if !sinkNames.contains(sinkName) {
                    fail(value, "chain '\(name)': unknown sink '\(sinkName)' (defined sinks: \(sinkNames.sorted().joined(separator: ", ")))")
                }
                if i != node.items.count - 1 {
                    fail(item, "chain '\(name)': the sink step must be the last step")
                }
                steps.append(SluiceConfig.Step(kind: .sink, name: sinkName, config: value, node: item))
            } else {
                steps.append(SluiceConfig.Step(kind: .transform, name: key.scalar, config: value, node: key))
            }
        }
        if let last = steps.last, last.kind != .sink {
            fail(node.items.last!, "chain '\(name)': the last step must be '- sink: NAME'")
        }
        return SluiceConfig.Chain(name: name, steps: steps, node: node)
    }

    private mutating func readSource(_ node: YAMLNode, chainNames: Set<String>) -> SluiceConfig.Source? {
        guard expectMap(node, "source", allowed: ["redis", "cassandra"]) else { return nil }
        if let cassandra = node["cassandra"] {
            if node["redis"] != nil {
                fail(node, "source: expected 'redis:' or 'cassandra:', not both")
                return nil
            }
            return readCassandraSource(cassandra, chainNames: chainNames)
        }
        guard let redis = node["redis"] else {
            fail(node, "source: expected 'redis: { listen: host:port, chain: NAME }' or 'cassandra: { listen: host:port, chain: NAME }'")
            return nil
        }
        return readRedisSource(redis, chainNames: chainNames)
    }

    static let clientLimitKeys = ["reply_buffer_soft_bytes", "reply_buffer_hard_bytes", "request_buffer_budget_bytes",
                                  "request_timeout_ms"]

    /// A source's client limits (see `ClientLimits` and docs/config.md); defaults where a key is absent.
    mutating func readClientLimits(_ redis: YAMLNode, maxFrameBytes: Int) -> ClientLimits {
        var limits = ClientLimits(requestBufferBudgetBytes: ClientLimits.defaultRequestBufferBudget(maxFrameBytes: maxFrameBytes))
        if let soft = integer(redis["reply_buffer_soft_bytes"], "reply_buffer_soft_bytes", range: 4096...(1 << 31)) {
            limits.replySoftBytes = soft
        }
        if let hard = integer(redis["reply_buffer_hard_bytes"], "reply_buffer_hard_bytes", range: 4096...(1 << 40)) {
            limits.replyHardBytes = hard
        }
        if limits.replyHardBytes < limits.replySoftBytes, let node = redis["reply_buffer_hard_bytes"] ?? redis["reply_buffer_soft_bytes"] {
            fail(node, "reply_buffer_hard_bytes (\(limits.replyHardBytes)) must not be below reply_buffer_soft_bytes (\(limits.replySoftBytes))")
        }
        if let budget = integer(redis["request_buffer_budget_bytes"], "request_buffer_budget_bytes", range: 1024...(1 << 40)) {
            limits.requestBufferBudgetBytes = budget
            if budget < maxFrameBytes, let node = redis["request_buffer_budget_bytes"] {
                fail(node, "request_buffer_budget_bytes (\(budget)) must hold at least one request of max_frame_bytes (\(maxFrameBytes))")
            }
        }
        if let timeout = integer(redis["request_timeout_ms"], "request_timeout_ms", range: 0...86_400_000) {
            limits.requestTimeoutMilliseconds = Int64(timeout)
        }
        return limits
    }

    /// `auth:` of a source: one `{ username?, password | password_env }` or a sequence of them (two
    /// passwords during a rotation, a user per application).
    mutating func readClientAuth(_ node: YAMLNode?, what: String = "source.redis.auth") -> [SluiceConfig.Credentials] {
        guard let node else { return [] }
        let entries: [YAMLNode]
        switch node.kind {
        case .map: entries = [node]
        case .sequence where !node.items.isEmpty: entries = node.items
        default:
            fail(node, "\(what): expected { password: ... } (or password_env, with an optional username), or a non-empty sequence of them")
            return []
        }
        var users: [SluiceConfig.Credentials] = []
        for entry in entries {
            guard expectMap(entry, what, allowed: ["username", "password", "password_env"]) else { continue }
            if entry["password"] == nil, entry["password_env"] == nil, entry["username"] == nil {
                fail(entry, "\(what): a password (password or password_env) is required")
                continue
            }
            if let credentials = readCredentials(entry, what) { users.append(credentials) }
        }
        return users
    }
}
