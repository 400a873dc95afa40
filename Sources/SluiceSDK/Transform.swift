/// A transform: the type is registered with `SluicePlugin.initialize`; an object of it is made once
/// per chain position where the transform is used, from the user's YAML (the "config"), and shared
/// read-only by every connection on every thread. It makes one `Instance` per client connection.
///
///     final class Pass: Transform {
///         static let name = "pass"
///         let seen: Counter
///         init(config: ConfigNode, env: ConfigEnv) throws {
///             try config.checkKeys([])
///             seen = try env.counter("pass_requests")
///         }
///         func makeInstance(env: InstanceEnv) -> PassInstance { PassInstance(config: self) }
///     }
///     final class PassInstance: TransformInstance {
///         let config: Pass
///         init(config: Pass) { self.config = config }
///         func onRequests(_ call: Call, _ requests: Batch) {
///             config.seen.add(requests.count)
///             call.forward()
///         }
///     }
public protocol Transform: AnyObject {
    /// The per-connection side.
    associatedtype Instance: TransformInstance

    /// The name used in chains: `[a-z0-9_-]+`.
    static var name: String { get }
    /// One line shown by `sluice plugins`.
    static var summary: String { get }

    /// Validates the options under the transform's name and resolves targets and counters.
    /// Throw `ConfigError` (with the offending node) for anything wrong. THREAD: main. After this
    /// returns the object is shared by all threads: keep it immutable (or synchronise it).
    init(config: ConfigNode, env: ConfigEnv) throws

    /// A new instance for one client connection. It is only ever touched from that connection's
    /// event-loop thread, so it needs no locks. `env` stays valid until the instance is freed.
    /// Throwing refuses the connection (the error is logged).
    func makeInstance(env: InstanceEnv) throws -> Instance
}

extension Transform {
    public static var summary: String { "" }
}

/// The per-connection side of a transform.
///
/// Instances that only look at requests conform to `TransformInstance`; the host then does not keep
/// the call after `forward()` and responses pass up the chain untouched (cheapest). Conform to
/// `ResponseHandler` to see the responses of forwarded calls.
///
/// Freeing: when the connection closes, pending send completions and timers are dropped without
/// being called (their closures are released), per-call state set with `Call.setState` is released,
/// and then the instance is released (its `deinit` runs). Give owned batches you still hold back in
/// a `deinit` of the object holding them.
public protocol TransformInstance: AnyObject {
    /// A batch of requests arrived (LENT until the call completes). End the call — now or later — in
    /// exactly one of `call.forward()`, `call.respond(_:)`, `call.fail(_:)`. An error thrown before
    /// the call is completed fails the call with the error's description.
    func onRequests(_ call: Call, _ requests: Batch) throws
}

/// A transform instance that also handles the responses of the calls it forwards.
public protocol ResponseHandler: TransformInstance {
    /// Responses for a forwarded call arrived: `requests` is the batch that was forwarded (read-only),
    /// `responses` is LENT and modifiable until the call completes. End in `call.respond()` (the lent
    /// responses as modified), `call.respond(_:)` with an owned batch, or `call.fail(_:)` — now or
    /// later (the lent batches stay valid until then).
    func onResponses(_ call: Call, requests: Batch, responses: Batch) throws
}
