/// A transform type: created once per chain position from the user's YAML, shared read-only by
/// all connections, and asked for one instance per client connection.
public protocol Transform: AnyObject {
    /// The name used in chains.
    static var name: String { get }
    static var summary: String { get }
    /// Whether instances implement `onResponses` (false lets the host skip the way back entirely).
    static var handlesResponses: Bool { get }
    /// The control functions operators may call on a step of this transform (see `ControlFunction`).
    static var controlFunctions: [ControlFunction] { get }
    /// The protocols the transform handles (`.redis` unless it says otherwise): a chain a source of
    /// another protocol reaches may not hold it (refused at start-up).
    static var protocols: Protocols { get }

    /// Validates the options; throw `ConfigError` (with the node) for anything wrong.
    init(config: ConfigNode, env: ConfigEnv) throws

    /// A new per-connection instance, touched only from that connection's thread.
    func makeInstance(env: InstanceEnv) -> TransformInstance
}

/// The per-connection side of a transform.
///
/// Hooks may throw: an error thrown before the hook completed its call fails the call with the
/// error's message (`-ERR <transform>: <message>` for each request), as `call.fail` would. An error
/// thrown after the call was completed is logged.
public protocol TransformInstance: AnyObject {
    /// A request batch arrived (lent until the call completes). End in forward, respond or fail.
    func onRequests(_ call: Call, _ requests: Batch) throws
    /// The responses of a forwarded call (lent, modifiable). End in respond or fail.
    func onResponses(_ call: Call, requests: Batch, responses: Batch) throws
}

extension TransformInstance {
    public func onResponses(_ call: Call, requests: Batch, responses: Batch) throws {
        call.respondWithReceived()
    }
}

extension Transform {
    public static var handlesResponses: Bool { false }
    public static var controlFunctions: [ControlFunction] { [] }
    public static var protocols: Protocols { .redis }
}
