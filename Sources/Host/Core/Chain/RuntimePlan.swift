import PluginABI

/// The resolved configuration the event loops run: chains of transform steps ending in a sink, and
/// the sinks themselves. Built once at start-up and shared read-only by every connection.
final class RuntimePlan {
    let chains: [ChainPlan]
    let sinks: [SinkPlan]
    let chainIndex: [String: Int]
    /// The backend connections shared by stateless clients, per event loop and sink.
    let sharedConnections = SharedSinkConnections()
    /// How long a plugin may keep a call it must answer (0: no limit); see `ChainInstance`.
    let callDeadlineMilliseconds: Int64
    private var configsFreed = false

    init(chains: [ChainPlan], sinks: [SinkPlan], callDeadlineMilliseconds: Int64 = SluiceConfig.defaultCallDeadlineMilliseconds) {
        self.chains = chains
        self.sinks = sinks
        self.callDeadlineMilliseconds = callDeadlineMilliseconds
        var index: [String: Int] = [:]
        for (i, c) in chains.enumerated() { index[c.name] = i }
        chainIndex = index
    }
}

extension RuntimePlan {
    /// Calls config_free for every transform's config, once, on the calling (main) thread: at
    /// shutdown after the event loops stopped, or when start-up or `sluice check` ends.
    func freeConfigs() {
        guard !configsFreed else { return }
        configsFreed = true
        RuntimePlan.freeConfigs(of: chains)
    }

    static func freeConfigs(of chains: [ChainPlan]) {
        for chain in chains {
            for case .transform(let step) in chain.steps { step.freeConfig() }
        }
    }
}

struct ChainPlan {
    let name: String
    let steps: [StepPlan]
    /// Set when the supervisor quarantined this chain (its plugin kept crashing workers): the
    /// error every request on it is answered with; its plugins get no instance.
    var outOfService: String? = nil
}

enum StepPlan {
    case transform(TransformStep)
    /// Index into `RuntimePlan.sinks`.
    case sink(Int)
}

/// A named chain or sink that a plugin may `send` to (the `sluice_target*` handle).
final class TargetRef {
    enum Kind { case chain(Int), sink(Int) }
    let name: String
    let kind: Kind
    init(name: String, kind: Kind) {
        self.name = name
        self.kind = kind
    }
}

/// One transform at one position of one chain: the plugin's hooks plus its config object.
final class TransformStep {
    let pluginName: String
    let transformName: String
    /// "chain[position] transform" for logs and error replies.
    let label: String
    let configNew: sluice_on_config_new_fn
    let configFree: sluice_on_config_free_fn?
    let instanceNew: sluice_on_instance_new_fn?
    let instanceFree: sluice_on_instance_free_fn?
    let onRequests: sluice_on_requests_fn?
    let onResponses: sluice_on_responses_fn?
    /// The plugin's config object, set once config_new succeeded.
    var config: UnsafeMutableRawPointer?
    let metrics: TransformMetrics
    /// The control functions the transform declares (ABI 1.2), callable with this step's config.
    let controlFunctions: [ControlFunction]
    /// The instances of this step's config on every event loop (for control_publish).
    let liveInstances = LiveInstances()
    /// What the crash handler names if this step's plugin kills the worker (Supervision/CrashLabels).
    let crashLabels: CrashLabels

    init(pluginName: String, transformName: String, label: String, descriptor: LoadedTransform) {
        self.pluginName = pluginName
        self.transformName = transformName
        self.label = label
        configNew = descriptor.configNew
        configFree = descriptor.configFree
        instanceNew = descriptor.instanceNew
        instanceFree = descriptor.instanceFree
        onRequests = descriptor.onRequests
        onResponses = descriptor.onResponses
        controlFunctions = descriptor.controlFunctions
        metrics = TransformMetrics(plugin: pluginName, transform: transformName, label: label)
        crashLabels = CrashLabels(plugin: pluginName, transform: transformName, label: label)
    }

    /// config_free for the config config_new made (once; a step whose config_new failed has none).
    func freeConfig() {
        // Exclusive of control calls: a control function never runs during or after config_free.
        liveInstances.exclusively { _ in
            guard hasConfig else { return }
            hasConfig = false
            configFree?(config)
            config = nil
        }
    }

    /// Whether config_new succeeded and config_free has not run yet (the config may be NULL).
    var hasConfig = false
}
