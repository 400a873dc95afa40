/// Control functions (ABI 1.2) for Swift transforms: functions an operator calls while Sluice runs
/// (`sluice ctl call PLUGIN.FUNCTION --step CHAIN[N] ARGS…`), with the transform of that step.
///
/// The host calls a control function through libffi by its C signature, so the function is a C
/// function: declare it with one of the factory methods below, passing a `@convention(c)` closure
/// literal (it captures nothing) whose body hands over to Swift with `ControlCall.run`:
///
///     static let controlFunctions: [ControlFunction] = [
///         .text("set_policy", parameter: "policy", help: "ignore, log or fail") { config, ctl, policy in
///             ControlCall.run(config, ctl, as: Tee.self) { tee, call in
///                 try tee.setPolicy(String(cString: policy!), call)
///             }
///         },
///     ]
///
/// THREAD: a control function runs on the host's admin thread, concurrently with the instances'
/// hooks on the event loops. Change the transform's settings (which `makeInstance` reads: never at
/// the same time as a control call), and reach live instances with `ControlCall.publish`, which runs
/// a closure on each instance on its own event loop.
public struct ControlFunction {
    public let name: String
    /// The C parameters after (config, ctl), as the header's type set spells them.
    public let parameters: String
    public let help: String
    let function: sluice_control_fn

    /// A function of any declared signature: `function` must really have the C type
    /// `int32_t (void *config, sluice_control_call *ctl, <parameters>)`.
    public init(_ name: String, parameters: String, help: String, function: sluice_control_fn) {
        self.name = name
        self.parameters = parameters
        self.help = help
        self.function = function
    }

    public typealias Config = UnsafeMutableRawPointer?
    public typealias Handle = OpaquePointer?

    /// `int32_t f(void *config, sluice_control_call *ctl)`.
    public static func noArguments(_ name: String, help: String,
                                   _ body: @escaping @convention(c) (Config, Handle) -> Int32) -> ControlFunction {
        ControlFunction(name, parameters: "", help: help, function: unsafeBitCast(body, to: sluice_control_fn.self))
    }

    /// `int32_t f(void *config, sluice_control_call *ctl, const char *parameter)`.
    public static func text(_ name: String, parameter: String, help: String,
                            _ body: @escaping @convention(c) (Config, Handle, UnsafePointer<CChar>?) -> Int32) -> ControlFunction {
        ControlFunction(name, parameters: "const char *\(parameter)", help: help,
                        function: unsafeBitCast(body, to: sluice_control_fn.self))
    }

    /// `int32_t f(void *config, sluice_control_call *ctl, int64_t parameter)`.
    public static func integer(_ name: String, parameter: String, help: String,
                               _ body: @escaping @convention(c) (Config, Handle, Int64) -> Int32) -> ControlFunction {
        ControlFunction(name, parameters: "int64_t \(parameter)", help: help,
                        function: unsafeBitCast(body, to: sluice_control_fn.self))
    }

    /// `int32_t f(void *config, sluice_control_call *ctl, double parameter)`.
    public static func number(_ name: String, parameter: String, help: String,
                              _ body: @escaping @convention(c) (Config, Handle, Double) -> Int32) -> ControlFunction {
        ControlFunction(name, parameters: "double \(parameter)", help: help,
                        function: unsafeBitCast(body, to: sluice_control_fn.self))
    }

    /// `int32_t f(void *config, sluice_control_call *ctl, bool parameter)`.
    public static func flag(_ name: String, parameter: String, help: String,
                            _ body: @escaping @convention(c) (Config, Handle, Bool) -> Int32) -> ControlFunction {
        ControlFunction(name, parameters: "bool \(parameter)", help: help,
                        function: unsafeBitCast(body, to: sluice_control_fn.self))
    }
}

/// One control call in progress: its reply text and its publishes. Valid during the call only.
public struct ControlCall {
    let raw: OpaquePointer

    /// Runs `body` with the step's transform; a thrown error becomes the call's error return
    /// (its message the reply, SLUICE_ERROR the status: `SluiceError` keeps its own status).
    /// Returns the status for the C function to return.
    public static func run<T: Transform>(_ config: UnsafeMutableRawPointer?, _ ctl: OpaquePointer?, as type: T.Type,
                                         _ body: (T, ControlCall) throws -> Void) -> Int32 {
        guard let ctl else { return Int32(SLUICE_ERROR_INVALID_ARGUMENT) }
        let call = ControlCall(raw: ctl)
        guard let config, let transform = Unmanaged<ConfigBox>.fromOpaque(config).takeUnretainedValue().transform as? T else {
            call.reply("this step's config is not a \(T.name)")
            return Int32(SLUICE_ERROR_INVALID_ARGUMENT)
        }
        do {
            try body(transform, call)
            return Int32(SLUICE_OK)
        } catch let error as SluiceError {
            call.reply(error.message)
            return error.status == SLUICE_OK ? Int32(SLUICE_ERROR) : error.status
        } catch {
            call.reply("\(error)")
            return Int32(SLUICE_ERROR)
        }
    }

    /// The text the operator sees: the result on success, the message on an error return.
    public func reply(_ text: String) {
        var text = text
        text.withUTF8 { utf8 in
            utf8.withMemoryRebound(to: CChar.self) { _ = sluiceHost.pointee.control_reply(raw, $0.baseAddress, $0.count) }
        }
    }

    /// Runs `apply` once on every live instance of this step's config, each on its own event loop
    /// between its hooks, after the control function returned. `apply` is shared by all loops: it
    /// may only read what it captured (capture the new settings as immutable values).
    @discardableResult
    public func publish(_ apply: @escaping (TransformInstance) -> Void) -> Bool {
        let box = Unmanaged.passRetained(PublishBox(apply)).toOpaque()
        guard sluiceHost.pointee.control_publish(raw, publishApply, box, publishDone) == SLUICE_OK else {
            Unmanaged<PublishBox>.fromOpaque(box).release()
            return false
        }
        return true
    }
}

private final class PublishBox {
    let apply: (TransformInstance) -> Void
    init(_ apply: @escaping (TransformInstance) -> Void) { self.apply = apply }
}

private let publishApply: sluice_on_publish_fn = { instance, data in
    guard let instance, let data else { return }
    let box = Unmanaged<PublishBox>.fromOpaque(data).takeUnretainedValue()
    box.apply(Unmanaged<InstanceBox>.fromOpaque(instance).takeUnretainedValue().instance)
}

private let publishDone: sluice_on_publish_done_fn = { data in
    guard let data else { return }
    Unmanaged<PublishBox>.fromOpaque(data).release()
}
