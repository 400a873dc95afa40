/// One line a worker's crash handler wrote before dying: "crash signal=N plugin=P transform=T
/// hook=H chain=C step=C[i]", or "crash signal=N host" when no plugin hook was running.
struct WorkerCrashRecord {
    let signal: Int32
    /// nil when the host's own code was running.
    let plugin: String?
    let transform: String?
    let hook: String?
    let chain: String?
    let step: String?

    init?(line: String) {
        let words = line.split(separator: " ")
        guard words.first == "crash" else { return nil }
        var fields: [String: String] = [:]
        for word in words.dropFirst() {
            let parts = word.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
        }
        guard let signalText = fields["signal"], let signal = Int32(signalText) else { return nil }
        self.signal = signal
        plugin = fields["plugin"]
        transform = fields["transform"]
        hook = fields["hook"]
        chain = fields["chain"]
        step = fields["step"]
    }

    /// "plugin crashy (transform crash-after, hook on_requests, step main[0])" or "the host's own code".
    var running: String {
        guard let plugin else { return "the host's own code (no plugin hook was running)" }
        return "plugin \(plugin) (transform \(transform ?? "?"), hook \(hook ?? "?"), step \(step ?? "?"))"
    }
}

/// The supervisor's memory of worker crashes: totals per plugin and hook (which workers expose
/// as `sluice_worker_crashes_total`), and, with `quarantine_after`, the chains taken out of
/// service because their plugin crashed workers that many times within the window.
struct CrashLedger {
    let quarantineAfter: Int
    let windowMilliseconds: UInt64
    /// (plugin, hook) → crashes since the supervisor started, in the order first seen.
    private(set) var totals: [(plugin: String, hook: String, count: Int)] = []
    /// chain → times (monotonic ms) of its plugins' recent crashes.
    private var recent: [String: [UInt64]] = [:]
    /// chain → the error its requests get.
    private(set) var quarantined: [String: String] = [:]

    /// Hooks that run for an operator's control call (see PluginHook).
    static let operatorHooks: Set<String> = [PluginHook.controlFunction.rawValue, PluginHook.controlPublish.rawValue]

    init(settings: SupervisionSettings) {
        quarantineAfter = settings.quarantineAfter
        windowMilliseconds = UInt64(settings.quarantineWindowMilliseconds)
    }

    /// Counts a crash in a plugin hook; returns the chain's out-of-service message when this crash
    /// quarantined it.
    mutating func record(_ crash: WorkerCrashRecord, at now: UInt64) -> (chain: String, message: String)? {
        guard let plugin = crash.plugin else { return nil }
        let hook = crash.hook ?? "?"
        if let i = totals.firstIndex(where: { $0.plugin == plugin && $0.hook == hook }) {
            totals[i].count += 1
        } else {
            totals.append((plugin, hook, 1))
        }
        // A control function or control_publish callback runs for an operator's call, not for
        // the chain's traffic: counted, but never a reason to take the chain out of service.
        guard quarantineAfter > 0, let chain = crash.chain, quarantined[chain] == nil,
              !CrashLedger.operatorHooks.contains(hook) else { return nil }
        var times = recent[chain, default: []].filter { now - $0 < windowMilliseconds }
        times.append(now)
        recent[chain] = times
        guard times.count >= quarantineAfter else { return nil }
        let message = "sluice: chain '\(chain)' is out of service: its plugin \(plugin) (transform \(crash.transform ?? "?"), \(hook)) crashed \(times.count) workers within \(windowMilliseconds) ms"
        quarantined[chain] = message
        return (chain, message)
    }

    /// The environment entries that tell a new worker about crashes and quarantined chains.
    var environment: [String: String] {
        [
            WorkerRole.Variable.crashes: totals.map { "\($0.plugin)\t\($0.hook)\t\($0.count)" }.joined(separator: "\n"),
            WorkerRole.Variable.quarantine: quarantined.map { "\($0.key)\t\($0.value)" }.joined(separator: "\n"),
        ]
    }
}
