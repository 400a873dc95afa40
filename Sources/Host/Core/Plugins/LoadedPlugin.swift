import PluginABI

/// A plugin that passed every check: its descriptor's facts and its transforms.
public struct LoadedPlugin {
    /// The file of the plugin directory.
    public let path: String
    /// The process's private copy of it that was actually opened (see `PrivatePluginCopies`).
    public let loadedFrom: String
    public let name: String
    public let version: String
    public let abiMajor: UInt32
    public let abiMinor: UInt32
    public let transforms: [LoadedTransform]
}

/// One transform of a loaded plugin, its hooks read within the struct_size the plugin declared.
public struct LoadedTransform {
    public let name: String
    public let description: String
    public let protocols: UInt32
    let configNew: sluice_on_config_new_fn
    let configFree: sluice_on_config_free_fn?
    let instanceNew: sluice_on_instance_new_fn?
    let instanceFree: sluice_on_instance_free_fn?
    let onRequests: sluice_on_requests_fn?
    let onResponses: sluice_on_responses_fn?
    /// The control functions it declares (ABI 1.2; none for a plugin built against an older minor).
    public var controlFunctions: [ControlFunction] = []

    /// "redis", "redis, cql"…
    public var protocolNames: String {
        var names: [String] = []
        if protocols & UInt32(SLUICE_PROTOCOL_REDIS) != 0 { names.append("redis") }
        if protocols & UInt32(SLUICE_PROTOCOL_CQL) != 0 { names.append("cql") }
        return names.isEmpty ? "none" : names.joined(separator: ", ")
    }
}

/// A shared object that was offered as a plugin and refused, with the reason.
public struct RefusedPlugin: Error {
    public let path: String
    public let reason: String
}

/// A control function a transform declares (see CONTROL FUNCTIONS in sluice_plugin.h), checked at load.
public struct ControlFunction {
    public let name: String
    public let signature: ControlSignature
    public let help: String
    /// The C function, called through libffi as `int32_t fn(void *config, sluice_control_call *ctl, …)`.
    let function: UnsafeRawPointer
}
