#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Registers a plugin's transforms with the host. Every Swift plugin exports the entry point like this
/// (the function name is free; the `@_cdecl` name is the contract):
///
///     import SluiceSDK
///
///     @_cdecl("sluice_plugin_init")
///     public func sluicePluginInit(_ host: UnsafePointer<sluice_host_api>?) -> UnsafePointer<sluice_plugin_descriptor>? {
///         SluicePlugin.initialize(host: host, name: "tee", version: "1.0.0", transforms: [Tee.self])
///     }
public enum SluicePlugin {
    /// Stores the host table (for `Host.api`) and returns the plugin's descriptor, built once in
    /// memory that lives for the whole process. Returns nil (refusing to load) only when `host` is nil.
    /// A host of another ABI major gets the descriptor anyway and refuses the plugin itself, with a
    /// message naming both versions. Calls no host function.
    public static func initialize(host: UnsafePointer<sluice_host_api>?, name: String, version: String,
                                  transforms: [any Transform.Type]) -> UnsafePointer<sluice_plugin_descriptor>? {
        guard let host else { return nil }
        _sluiceHostAPI = host
        if let descriptor = builtDescriptor { return descriptor }
        let descriptor = makePluginDescriptor(name: name, version: version, transforms: transforms)
        builtDescriptor = descriptor
        return descriptor
    }

    nonisolated(unsafe) private static var builtDescriptor: UnsafePointer<sluice_plugin_descriptor>?
}

/// Builds a plugin descriptor for `transforms` in static memory (allocated once, never freed: the host
/// keeps the pointers for the whole process) whose hooks are C trampolines into the Swift types.
/// `SluicePlugin.initialize` calls this; call it yourself only to build a descriptor by hand.
public func makePluginDescriptor(name: String, version: String,
                                 transforms: [any Transform.Type]) -> UnsafePointer<sluice_plugin_descriptor> {
    let entries = transforms.map { TransformEntry($0) }
    registeredTransforms = entries
    let array = UnsafeMutablePointer<sluice_transform_descriptor>.allocate(capacity: max(entries.count, 1))
    for (i, entry) in entries.enumerated() {
        (array + i).initialize(to: sluice_transform_descriptor(
            struct_size: UInt32(MemoryLayout<sluice_transform_descriptor>.stride),
            protocols: UInt32(SLUICE_PROTOCOL_REDIS),
            name: permanentCString(entry.name),
            description: permanentCString(entry.summary),
            config_new: configNewTrampoline,
            config_free: configFreeTrampoline,
            instance_new: instanceNewTrampoline,
            instance_free: instanceFreeTrampoline,
            on_requests: onRequestsTrampoline,
            on_responses: entry.handlesResponses ? onResponsesTrampoline : nil))
    }
    let descriptor = UnsafeMutablePointer<sluice_plugin_descriptor>.allocate(capacity: 1)
    descriptor.initialize(to: sluice_plugin_descriptor(
        magic: SLUICE_PLUGIN_MAGIC,
        struct_size: UInt32(MemoryLayout<sluice_plugin_descriptor>.stride),
        abi_major: UInt32(SLUICE_ABI_VERSION_MAJOR),
        abi_minor: UInt32(SLUICE_ABI_VERSION_MINOR),
        flags: 0,
        transform_count: UInt32(entries.count),
        name: permanentCString(name),
        version: permanentCString(version),
        transforms: UnsafePointer(array)))
    return UnsafePointer(descriptor)
}

/// A NUL-terminated copy that is never freed.
private func permanentCString(_ text: String) -> UnsafePointer<CChar> {
    guard let copy = strdup(text) else { fatalError("out of memory") }
    return UnsafePointer(copy)
}

// MARK: - Type erasure of the registered transforms

/// What the trampolines need to know about one transform type.
struct TransformEntry {
    let name: String
    let summary: String
    let handlesResponses: Bool
    let makeConfig: (ConfigNode, ConfigEnv) throws -> AnyObject
    let makeInstance: (AnyObject, InstanceEnv) throws -> any TransformInstance

    init<T: Transform>(_ type: T.Type) {
        name = T.name
        summary = T.summary
        handlesResponses = T.Instance.self is any ResponseHandler.Type
        makeConfig = { node, env in try T(config: node, env: env) }
        makeInstance = { config, env in try unsafeDowncast(config, to: T.self).makeInstance(env: env) }
    }
}

nonisolated(unsafe) private var registeredTransforms: [TransformEntry] = []

/// The config object the host holds as `void *config`.
final class ConfigBox {
    let entry: TransformEntry
    let config: AnyObject
    init(entry: TransformEntry, config: AnyObject) {
        self.entry = entry
        self.config = config
    }
}

// MARK: - Trampolines (no Swift error ever crosses them)

private let configNewTrampoline: sluice_on_config_new_fn = { env, node, out in
    guard let env, let out else { return SLUICE_ERROR_INVALID_ARGUMENT }
    let configEnv = ConfigEnv(raw: env)
    let name = configEnv.transformName
    let entry = registeredTransforms.first { $0.name == name }
        ?? (registeredTransforms.count == 1 ? registeredTransforms[0] : nil)
    guard let entry else {
        configEnv.error("this plugin does not offer a transform named '\(name)'", at: nil)
        return SLUICE_ERROR
    }
    do {
        let config = try entry.makeConfig(ConfigNode(raw: node), configEnv)
        out.pointee = Unmanaged.passRetained(ConfigBox(entry: entry, config: config)).toOpaque()
        return SLUICE_OK
    } catch let error as ConfigError {
        if !error.isAlreadyReported { configEnv.error(error.message, at: error.node) }
    } catch {
        configEnv.error("\(error)", at: nil)
    }
    return SLUICE_ERROR
}

private let configFreeTrampoline: sluice_on_config_free_fn = { config in
    guard let config else { return }
    Unmanaged<ConfigBox>.fromOpaque(config).release()
}

private let instanceNewTrampoline: sluice_on_instance_new_fn = { config, env, out in
    guard let config, let env, let out else { return SLUICE_ERROR_INVALID_ARGUMENT }
    let box = Unmanaged<ConfigBox>.fromOpaque(config).takeUnretainedValue()
    let context = InstanceContext(env: env, transformName: box.entry.name,
                                  handlesResponses: box.entry.handlesResponses)
    do {
        let instance = try box.entry.makeInstance(box.config, InstanceEnv(raw: env, context: context))
        context.instance = instance
        context.responder = instance as? any ResponseHandler
        out.pointee = Unmanaged.passRetained(context).toOpaque()
        return SLUICE_OK
    } catch {
        context.dropAll()
        Log.error("\(box.entry.name): could not make an instance: \(error)")
        return SLUICE_ERROR
    }
}

private let instanceFreeTrampoline: sluice_on_instance_free_fn = { instance in
    guard let instance else { return }
    let context = Unmanaged<InstanceContext>.fromOpaque(instance).takeRetainedValue()
    context.dropAll()
    context.responder = nil
    context.instance = nil
}

private let onRequestsTrampoline: sluice_on_requests_fn = { instance, call, requests in
    guard let instance, let call, let requests else { return SLUICE_ERROR_INVALID_ARGUMENT }
    let context = Unmanaged<InstanceContext>.fromOpaque(instance).takeUnretainedValue()
    guard let transform = context.instance else { return SLUICE_ERROR_STATE }
    let outerCall = context.hookCall, outerCompleted = context.hookCallCompleted
    context.hookCall = call
    context.hookCallCompleted = false
    defer {
        context.hookCall = outerCall
        context.hookCallCompleted = outerCompleted
    }
    do {
        try transform.onRequests(Call(raw: call, context: context), Batch(raw: requests))
    } catch {
        context.hookThrew(error, call: call, hook: "on_requests")
    }
    return SLUICE_OK
}

private let onResponsesTrampoline: sluice_on_responses_fn = { instance, call, requests, responses in
    guard let instance, let call, let requests, let responses else { return SLUICE_ERROR_INVALID_ARGUMENT }
    let context = Unmanaged<InstanceContext>.fromOpaque(instance).takeUnretainedValue()
    guard let responder = context.responder else {
        return Host.api.pointee.call_respond(call, nil)
    }
    let outerCall = context.hookCall, outerCompleted = context.hookCallCompleted
    context.hookCall = call
    context.hookCallCompleted = false
    defer {
        context.hookCall = outerCall
        context.hookCallCompleted = outerCompleted
    }
    do {
        try responder.onResponses(Call(raw: call, context: context), requests: Batch(raw: requests),
                                  responses: Batch(raw: responses))
    } catch {
        context.hookThrew(error, call: call, hook: "on_responses")
    }
    return SLUICE_OK
}
