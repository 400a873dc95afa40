import SluiceSDK

/// The entry point the host looks up when it loads the plugin: hands the host's function table to
/// the SDK and returns the plugin's descriptor (its name, version and transforms). The SDK declares
/// the ABI minor it was built with as required (SLUICE_PLUGIN_FLAG_REQUIRES_MINOR), so a host older
/// than ABI 1.1 refuses this plugin by name.
@_cdecl("sluice_plugin_init")
public func sluicePluginInit(_ host: UnsafePointer<sluice_host_api>?) -> UnsafeRawPointer? {
    SluicePlugin.initialize(host: host, name: "__TRANSFORM_NAME__", version: "0.1.0",
                            transforms: [__TRANSFORM_TYPE__Config.self])
}

/// The transform's configuration, made once per place it is used in a chain from the YAML under
/// `__TRANSFORM_NAME__:`, then shared read-only by every client connection:
///
///     - __TRANSFORM_NAME__: { deny: [FLUSHALL, KEYS], report_every_ms: 10000 }
///
/// As generated it answers the commands under `deny:` with an error and passes everything else on
/// untouched, counts requests and denials in two metrics, and with `report_every_ms` logs each
/// connection's count while it changes.
final class __TRANSFORM_TYPE__Config: Transform {
    static let name = "__TRANSFORM_NAME__"
    static let summary = "answers denied commands with an error; counts requests"
    /// The protocols it handles: a chain a source of another protocol runs may not hold it. A CQL
    /// transform says `[.redis, .cql]` (or `.cql`) and reads CQL batches with the SDK's cql* functions.
    static let protocols: Protocols = .redis

    /// Lowercase command names this transform answers itself.
    let denied: Set<String>
    /// How often each connection logs its count (0: never).
    let reportEveryMilliseconds: UInt64
    /// Exported as sluice_plugin___TRANSFORM_IDENT___requests_total.
    let requestCounter: Counter
    /// Exported as sluice_plugin___TRANSFORM_IDENT___denied_total.
    let deniedCounter: Counter

    /// Validates everything here: a thrown `ConfigError(…, at: node)` is shown to the user at their
    /// file's line and column ("sluice.yaml:9:32: main[0] __TRANSFORM_NAME__: unknown key 'limit' …").
    init(config: ConfigNode, env: ConfigEnv) throws {
        try config.requireKeys(["deny", "report_every_ms"], in: Self.name)
        denied = Set(try config.strings("deny").map { $0.lowercased() })
        reportEveryMilliseconds = try Self.milliseconds(config, "report_every_ms")
        requestCounter = try env.counter("__TRANSFORM_IDENT___requests")
        deniedCounter = try env.counter("__TRANSFORM_IDENT___denied")
    }

    /// A whole number of milliseconds under `key` (0 when absent), or an error at its node.
    private static func milliseconds(_ config: ConfigNode, _ key: String) throws -> UInt64 {
        guard let node = config[key], !node.isNull else { return 0 }
        guard let text = node.string, let value = UInt64(text) else {
            throw ConfigError("\(key): expected a whole number of milliseconds", at: node)
        }
        return value
    }

    func makeInstance(env: InstanceEnv) -> TransformInstance { __TRANSFORM_TYPE__Connection(config: self, env: env) }
}

/// One per client connection, only ever used from that connection's thread (no locks needed).
final class __TRANSFORM_TYPE__Connection: TransformInstance {
    let config: __TRANSFORM_TYPE__Config
    let env: InstanceEnv
    /// Reused storage for a request's arguments (only the command name is read).
    private var arguments = ArgumentViews(capacity: 1)
    private var requests = 0
    private var denied = 0
    private var reportedRequests = 0

    init(config: __TRANSFORM_TYPE__Config, env: InstanceEnv) {
        self.config = config
        self.env = env
        if config.reportEveryMilliseconds > 0 { scheduleReport() }
    }

    /// Every batch ends in exactly one of call.forward(), call.pass(), call.respond(_:) or
    /// call.fail(_:). Decisions are made request by request: a denied command of a pipelined batch
    /// is answered here with call.answer, and call.pass() sends only the others on (their responses
    /// bypass this transform) while the host puts the errors back in their places, so the client
    /// gets every reply in order. A thrown error fails the whole batch with its message.
    /// (Inside MULTI a denial should doom the transaction: see Plugins/command-filter in Sluice.)
    func onRequests(_ call: Call, _ requests: Batch) throws {
        config.requestCounter.add(requests.count)
        self.requests += requests.count
        if !config.denied.isEmpty {
            for i in 0..<requests.count where requests.arguments(at: i, into: &arguments) > 0 {
                let command = arguments[0].asciiLowercased
                guard config.denied.contains(command) else { continue }
                try call.answer(i, error: "ERR __TRANSFORM_NAME__: '\(command)' is denied")
                config.deniedCounter.add()
                denied += 1
            }
        }
        call.pass()
    }

    /// A one-shot timer on this connection's thread, started again each time it fires. The SDK
    /// drops it when the connection closes, so nothing needs cancelling here (`SluiceTimer.cancel()`
    /// stops one earlier).
    private func scheduleReport() {
        do {
            try env.startTimer(afterMilliseconds: config.reportEveryMilliseconds) { [weak self] in self?.report() }
        } catch {
            Log.warning("__TRANSFORM_NAME__: no report timer: \(error)")
        }
    }

    private func report() {
        if requests != reportedRequests {
            Log.info("__TRANSFORM_NAME__: client \(env.clientAddress): \(requests) requests, \(denied) denied")
            reportedRequests = requests
        }
        scheduleReport()
    }
}
