/// One pending `on_requests` call: the continuation. End it with exactly one of `forward()`,
/// `respond(_:)` / `respond()`, `fail(_:)`, during the hook or later (keep the `Call` in your
/// per-call state). After it completed, the handle is invalid. THREAD: the instance's.
public struct Call {
    /// The host's `sluice_call*`.
    public let raw: OpaquePointer
    @usableFromInline unowned(unsafe) let context: InstanceContext

    @usableFromInline
    init(raw: OpaquePointer, context: InstanceContext) {
        self.raw = raw
        self.context = context
    }

    /// Passes the request batch (as modified in place) to the next step of the chain. A
    /// `ResponseHandler` then gets the responses in `onResponses` with this same call; for other
    /// instances the call is finished. Returns false if the host refused (call already completed).
    @inlinable
    @discardableResult
    public func forward() -> Bool {
        context.willComplete(raw, finally: !context.handlesResponses)
        return Host.api.pointee.call_forward(raw) == SLUICE_OK
    }

    /// Completes the call with an OWNED response batch holding one response per request (ownership
    /// passes to the host). A wrong count fails the call with an error reply.
    @inlinable
    @discardableResult
    public func respond(_ responses: Batch) -> Bool {
        context.willComplete(raw, finally: true)
        return Host.api.pointee.call_respond(raw, responses.raw) == SLUICE_OK
    }

    /// In (or after) `onResponses`: completes the call with the LENT response batch as modified in place.
    @inlinable
    @discardableResult
    public func respond() -> Bool {
        context.willComplete(raw, finally: true)
        return Host.api.pointee.call_respond(raw, nil) == SLUICE_OK
    }

    /// Completes the call by answering every request with `-ERR <transform>: <message>`.
    @discardableResult
    public func fail(_ message: String) -> Bool {
        context.willComplete(raw, finally: true)
        var text = message
        return text.withUTF8 { utf8 in
            utf8.withMemoryRebound(to: CChar.self) { Host.api.pointee.call_fail(raw, $0.baseAddress, $0.count) }
        } == SLUICE_OK
    }

    // MARK: Per-call state

    /// Attaches an object to the call (e.g. what `onResponses` needs to know about this batch). The
    /// SDK retains it until `takeState` or until the call is completed with respond/fail (or the
    /// connection closes), so it never leaks. Replaces any previous state.
    public func setState(_ state: AnyObject?) {
        context.detachState(of: raw)
        guard let state else { return }
        let node = CallStateNode(state)
        context.attachState(node, to: raw)
    }

    /// The object given to `setState`, still attached.
    public func state<T: AnyObject>(as type: T.Type) -> T? {
        guard let data = Host.api.pointee.call_data(raw) else { return nil }
        return Unmanaged<CallStateNode>.fromOpaque(data).takeUnretainedValue().state as? T
    }

    /// The object given to `setState`, detached from the call.
    public func takeState<T: AnyObject>(as type: T.Type) -> T? {
        guard let data = Host.api.pointee.call_data(raw) else { return nil }
        let node = Unmanaged<CallStateNode>.fromOpaque(data).takeUnretainedValue()
        let state = node.state
        context.detachState(of: raw)
        return state as? T
    }
}
