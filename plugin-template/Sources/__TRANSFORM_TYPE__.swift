import SluiceSDK

/// The entry point the host looks up when it loads the plugin: hands the host's function table to
/// the SDK and returns the plugin's descriptor (its name, version and transforms).
@_cdecl("sluice_plugin_init")
public func sluicePluginInit(_ host: UnsafePointer<sluice_host_api>?) -> UnsafeRawPointer? {
    SluicePlugin.initialize(host: host, name: "__TRANSFORM_NAME__", version: "0.1.0",
                            transforms: [__TRANSFORM_TYPE__.self])
}

/// The transform's configuration: made once per place it is used in a chain, from the YAML under
/// `__TRANSFORM_NAME__:`, then shared read-only by every client connection.
///
/// As generated it passes every request on unchanged, counts them, and (with `deny: [NAME, …]`)
/// answers the listed commands itself with an error instead of forwarding them.
final class __TRANSFORM_TYPE__: Transform {
    static let name = "__TRANSFORM_NAME__"
    static let summary = "counts requests; answers denied commands with an error"

    /// Exported as sluice_plugin___TRANSFORM_METRIC___requests_total.
    let requests: Counter
    /// Lowercase command names this transform answers itself.
    let denied: Set<String>

    init(config: ConfigNode, env: ConfigEnv) throws {
        // Unknown keys are errors that point at the user's file (line:column).
        try config.requireKeys(["deny"], in: "__TRANSFORM_NAME__")
        denied = Set(try config.strings("deny").map { $0.lowercased() })
        requests = try env.counter("__TRANSFORM_METRIC___requests")
    }

    func makeInstance(env: InstanceEnv) -> TransformInstance { __TRANSFORM_TYPE__Instance(config: self) }
}

/// One per client connection, only ever used from that connection's thread (no locks needed).
final class __TRANSFORM_TYPE__Instance: TransformInstance {
    let config: __TRANSFORM_TYPE__
    private var args = ArgumentViews(capacity: 1)

    init(config: __TRANSFORM_TYPE__) {
        self.config = config
    }

    /// Every batch of requests ends in exactly one of call.forward(), call.respond(_:), call.fail(_:).
    /// Override onResponses(_:requests:responses:) (and set `handlesResponses = true` on the
    /// transform) to see the responses as well. A thrown error fails the whole batch with its text.
    func onRequests(_ call: Call, _ requests: Batch) throws {
        config.requests.add(requests.count)
        // Decisions per request of a pipelined batch: a denied command is answered here, and the
        // host forwards only the others and puts this error back in its place.
        for i in 0..<requests.count where !config.denied.isEmpty && requests.arguments(at: i, into: &args) > 0 {
            let name = args[0].asciiLowercased
            if config.denied.contains(name) { try call.answer(i, error: "ERR __TRANSFORM_NAME__: '\(name)' is denied") }
        }
        call.forward()  // untouched batches: the host writes the client's original bytes
    }
}
