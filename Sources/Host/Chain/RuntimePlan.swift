import PluginABI

/// The resolved configuration the event loops run: chains of transform steps ending in a sink, and
/// the sinks themselves. Built once at start-up and shared read-only by every connection.
final class RuntimePlan {
    let chains: [ChainPlan]
    let sinks: [SinkPlan]
    let chainIndex: [String: Int]
    /// The backend connections shared by stateless clients, per event loop and sink.
    let sharedConnections = SharedSinkConnections()

    init(chains: [ChainPlan], sinks: [SinkPlan]) {
        self.chains = chains
        self.sinks = sinks
        var index: [String: Int] = [:]
        for (i, c) in chains.enumerated() { index[c.name] = i }
        chainIndex = index
    }
}

struct ChainPlan {
    let name: String
    let steps: [StepPlan]
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
        metrics = TransformMetrics(plugin: pluginName, transform: transformName, label: label)
    }
}
