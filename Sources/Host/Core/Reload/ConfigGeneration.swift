import NIOConcurrencyHelpers

/// One configuration generation: a validated config with its plugins, the `RuntimePlan` built from
/// it (every transform's config made by config_new) and its sources by listen address.
///
/// A generation counts the client sessions that run on it. Once a newer generation replaced it
/// (`retire`) and its last session left, `onUnused` is called once: the registry then frees its
/// configs (config_free). Its `RuntimePlan` object itself is never deallocated (see
/// `GenerationRegistry`).
final class ConfigGeneration: @unchecked Sendable {
    /// 1 for the configuration `sluice run` started with, one more for each reload that switched.
    let number: Int
    let config: SluiceConfig
    let plugins: PluginLoader.Result
    let plan: RuntimePlan
    /// By `ConfigSnapshot.key(host:port:)`.
    let sources: [String: RuntimeBuilder.SourcePlan]
    /// Source keys in config order (the order listeners are opened in).
    let sourceOrder: [String]
    let snapshot: ConfigSnapshot

    private let lock = NIOLock()
    private var sessions = 0
    private var retired = false
    private var reportedUnused = false
    /// Called once, on whichever thread retired it or ended its last session.
    var onUnused: ((ConfigGeneration) -> Void)?

    init(number: Int, prepared: Sluice.Prepared) {
        self.number = number
        config = prepared.config
        plugins = prepared.plugins
        plan = prepared.plan
        var byKey: [String: RuntimeBuilder.SourcePlan] = [:]
        var order: [String] = []
        for source in prepared.sources {
            let key = ConfigSnapshot.key(host: source.host, port: source.port)
            if byKey[key] == nil { order.append(key) }
            byKey[key] = source
        }
        sources = byKey
        sourceOrder = order
        snapshot = ConfigSnapshot(config: prepared.config, plugins: prepared.plugins.loaded)
    }

    /// How long connections that cannot move to a newer generation keep this one after a reload
    /// to it (`reload.grace_ms`).
    var graceMilliseconds: Int64 { config.reloadGraceMilliseconds }

    /// A client session starts running on this generation, unless it already ended: false once
    /// it was retired with no session left (its configs are freed, or about to be). That check and
    /// the count are one step under the lock, so a generation never gains a session after the
    /// registry was told to free it. A refused caller starts on the registry's current generation
    /// instead (see `LoopGeneration.startSession`).
    @discardableResult
    func sessionStarted() -> Bool {
        lock.withLock {
            guard !reportedUnused else { return false }
            sessions += 1
            return true
        }
    }

    /// A client session left this generation (moved on or closed, its plugin instances freed).
    func sessionEnded() {
        let unused = lock.withLock { () -> Bool in
            sessions -= 1
            return takeUnused()
        }
        if unused { onUnused?(self) }
    }

    /// A newer generation is current: this one ends with its last session.
    func retire() {
        let unused = lock.withLock { () -> Bool in
            retired = true
            return takeUnused()
        }
        if unused { onUnused?(self) }
    }

    var sessionCount: Int { lock.withLock { sessions } }

    /// Whether it is retired and unused, the first time that is true (under the lock).
    private func takeUnused() -> Bool {
        guard retired, sessions == 0, !reportedUnused else { return false }
        reportedUnused = true
        return true
    }
}

extension ConfigGeneration {
    /// For each sink of this generation that `next` has unchanged (same name, same settings): its
    /// index here to its index there. Those sinks keep their backend connections across the move.
    func sinkIndices(to next: ConfigGeneration) -> [Int: Int] {
        var nextIndex: [String: Int] = [:]
        for (i, sink) in next.plan.sinks.enumerated() { nextIndex[sink.name] = i }
        var map: [Int: Int] = [:]
        for (i, sink) in plan.sinks.enumerated() {
            guard let j = nextIndex[sink.name], let mine = snapshot.sinks[sink.name],
                  mine == next.snapshot.sinks[sink.name] else { continue }
            map[i] = j
        }
        return map
    }
}
