/// Builds a plugin's descriptor from Swift transform types, with C trampolines that route the
/// host's hooks to them. Use from the plugin's `@_cdecl("sluice_plugin_init")` function:
///
///     @_cdecl("sluice_plugin_init")
///     public func sluicePluginInit(_ host: UnsafePointer<sluice_host_api>?) -> UnsafeRawPointer? {
///         SluicePlugin.initialize(host: host, name: "tee", version: "1.0.0", transforms: [Tee.self])
///     }
public enum SluicePlugin {
    static var registry: [String: Transform.Type] = [:]

    /// Stores the host table and returns the descriptor (static memory), or nil if the host's ABI
    /// major differs.
    public static func initialize(host: UnsafePointer<sluice_host_api>?, name: String, version: String,
                                  transforms: [Transform.Type]) -> UnsafeRawPointer? {
        guard let host, host.pointee.abi_major == UInt32(SLUICE_ABI_VERSION_MAJOR) else { return nil }
        sluiceHost = host
        for t in transforms { registry[t.name] = t }
        let array = UnsafeMutablePointer<sluice_transform_descriptor>.allocate(capacity: transforms.count)
        for (i, t) in transforms.enumerated() {
            let controls = controlDeclarations(t.controlFunctions)
            array.advanced(by: i).initialize(to: sluice_transform_descriptor(
                struct_size: UInt32(MemoryLayout<sluice_transform_descriptor>.size),
                protocols: t.protocols.rawValue,
                name: permanentCString(t.name),
                description: permanentCString(t.summary),
                config_new: configNew,
                config_free: configFree,
                instance_new: instanceNew,
                instance_free: instanceFree,
                on_requests: onRequests,
                on_responses: t.handlesResponses ? onResponses : nil,
                control_functions: controls,
                control_function_count: UInt32(t.controlFunctions.count),
                reserved_1_2: 0))
        }
        let descriptor = UnsafeMutablePointer<sluice_plugin_descriptor>.allocate(capacity: 1)
        descriptor.initialize(to: sluice_plugin_descriptor(
            magic: SLUICE_PLUGIN_MAGIC,
            struct_size: UInt32(MemoryLayout<sluice_plugin_descriptor>.size),
            abi_major: UInt32(SLUICE_ABI_VERSION_MAJOR),
            abi_minor: UInt32(SLUICE_ABI_VERSION_MINOR),
            // The SDK calls functions of its own minor without checking: a host with an older
            // minor must refuse the plugin by name rather than let it call past its table.
            flags: UInt32(SLUICE_PLUGIN_FLAG_REQUIRES_MINOR),
            transform_count: UInt32(transforms.count),
            name: permanentCString(name),
            version: permanentCString(version),
            transforms: UnsafePointer(array)))
        return UnsafeRawPointer(descriptor)
    }

    /// The C declarations of a transform's control functions (static memory), nil for none.
    private static func controlDeclarations(_ functions: [ControlFunction]) -> UnsafePointer<sluice_control_function>? {
        guard !functions.isEmpty else { return nil }
        let array = UnsafeMutablePointer<sluice_control_function>.allocate(capacity: functions.count)
        for (i, f) in functions.enumerated() {
            array.advanced(by: i).initialize(to: sluice_control_function(
                struct_size: UInt32(MemoryLayout<sluice_control_function>.size), reserved: 0,
                name: permanentCString(f.name), params: permanentCString(f.parameters),
                help: permanentCString(f.help), fn: f.function))
        }
        return UnsafePointer(array)
    }

    private static func permanentCString(_ s: String) -> UnsafePointer<CChar> {
        let bytes = Array(s.utf8CString)
        let p = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count)
        p.initialize(from: bytes, count: bytes.count)
        return UnsafePointer(p)
    }
}

/// Holds an instance behind the C `void *instance` (no dynamic cast per call), with the work it
/// has outstanding (released together when the connection closes).
final class InstanceBox {
    let instance: TransformInstance
    let outstanding: Outstanding
    init(_ instance: TransformInstance, outstanding: Outstanding) {
        self.instance = instance
        self.outstanding = outstanding
    }
}

/// Holds a configured transform behind the C `void *config`.
final class ConfigBox {
    let transform: Transform
    init(_ transform: Transform) { self.transform = transform }
}

private let configNew: sluice_on_config_new_fn = { env, node, out in
    guard let env, let out else { return Int32(SLUICE_ERROR_INVALID_ARGUMENT) }
    let configEnv = ConfigEnv(raw: env)
    guard let type = SluicePlugin.registry[configEnv.transformName] else {
        configEnv.error("this plugin does not offer '\(configEnv.transformName)'", at: nil)
        return Int32(SLUICE_ERROR)
    }
    do {
        let transform = try type.init(config: ConfigNode(raw: node), env: configEnv)
        out.pointee = Unmanaged.passRetained(ConfigBox(transform)).toOpaque()
        return Int32(SLUICE_OK)
    } catch let error as ConfigError {
        configEnv.error(error.message, at: error.node)
    } catch {
        configEnv.error("\(error)", at: nil)
    }
    return Int32(SLUICE_ERROR)
}

private let configFree: sluice_on_config_free_fn = { config in
    guard let config else { return }
    Unmanaged<ConfigBox>.fromOpaque(config).release()
}

private let instanceNew: sluice_on_instance_new_fn = { config, env, out in
    guard let config, let env, let out else { return Int32(SLUICE_ERROR_INVALID_ARGUMENT) }
    let box = Unmanaged<ConfigBox>.fromOpaque(config).takeUnretainedValue()
    let outstanding = Outstanding()
    let instance = box.transform.makeInstance(env: InstanceEnv(raw: env, outstanding: outstanding))
    out.pointee = Unmanaged.passRetained(InstanceBox(instance, outstanding: outstanding)).toOpaque()
    return Int32(SLUICE_OK)
}

private let instanceFree: sluice_on_instance_free_fn = { instance in
    guard let instance else { return }
    let box = Unmanaged<InstanceBox>.fromOpaque(instance).takeRetainedValue()
    // The host calls no completion after this: drop what is still outstanding, then the instance.
    box.outstanding.completions.removeAll()
    box.outstanding.states.removeAll()
}

private let onRequests: sluice_on_requests_fn = { instance, call, requests in
    guard let instance, let call, let requests else { return Int32(SLUICE_ERROR_INVALID_ARGUMENT) }
    let box = Unmanaged<InstanceBox>.fromOpaque(instance).takeUnretainedValue()
    let wrapped = Call(raw: call, outstanding: box.outstanding)
    do {
        try box.instance.onRequests(wrapped, Batch(raw: requests))
    } catch {
        failThrown(wrapped, error, hook: "onRequests")
    }
    return Int32(SLUICE_OK)
}

private let onResponses: sluice_on_responses_fn = { instance, call, requests, responses in
    guard let instance, let call, let requests, let responses else { return Int32(SLUICE_ERROR_INVALID_ARGUMENT) }
    let box = Unmanaged<InstanceBox>.fromOpaque(instance).takeUnretainedValue()
    let wrapped = Call(raw: call, outstanding: box.outstanding)
    do {
        try box.instance.onResponses(wrapped, requests: Batch(raw: requests), responses: Batch(raw: responses))
    } catch {
        failThrown(wrapped, error, hook: "onResponses")
    }
    return Int32(SLUICE_OK)
}

/// A hook threw: its call fails with the error's message (Swift errors never cross the ABI). If the
/// hook had completed the call already, the host refuses the second completion and the error is
/// logged instead.
private func failThrown(_ call: Call, _ error: Error, hook: String) {
    let message = (error as? SluiceError)?.message ?? String(describing: error)
    if !call.fail(message).isOK {
        Log.warning("\(hook) threw after completing its call: \(message)")
    }
}
