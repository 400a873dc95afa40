/// The outcome of `InstanceEnv.send`.
public enum SendResult {
    /// One response per sent request. OWNED: give it to `Call.respond(_:)` or `free()` it.
    case responses(Batch)
    /// The target could not answer (dead backend, a transform of the target chain failed the batch,
    /// or the send was refused); the message says why.
    case failed(String)
}

/// The per-connection context of an instance: send batches to other targets, timers, client address.
/// Valid until the instance is freed. THREAD: the instance's.
public struct InstanceEnv {
    /// The host's `sluice_instance_env*`.
    public let raw: OpaquePointer
    @usableFromInline unowned(unsafe) let context: InstanceContext

    init(raw: OpaquePointer, context: InstanceContext) {
        self.raw = raw
        self.context = context
    }

    /// Sends an OWNED request batch to a chain or sink (on this client's own connections to it) and
    /// calls `completion` exactly once, always later on this thread — never from inside `send`, even
    /// when the host refuses the send — unless the connection closes first (then the closure is
    /// released without being called). Ownership of `batch` passes to the host in every case.
    public func send(_ batch: Batch, to target: Target, completion: @escaping (SendResult) -> Void) {
        let node = SendNode(completion)
        context.track(node)
        let user = Unmanaged.passUnretained(node).toOpaque()
        let status = Host.api.pointee.send(raw, target.raw, batch.raw, sendCompletionTrampoline, user)
        guard status != SLUICE_OK else { return }
        // The host will not call the completion: deliver the refusal on a 0 ms timer instead.
        node.refusal = "send to \(target.name) refused: \(statusName(status))"
        if Host.api.pointee.timer_start(raw, 0, sendRefusedTrampoline, user, nil) != SLUICE_OK {
            context.untrack(node)
            Log.error("\(context.transformName): send to \(target.name) refused (\(statusName(status))) and no timer "
                      + "could report it; the completion is dropped")
        }
    }

    /// Calls `callback` once after `milliseconds` on this thread (not after the connection closed).
    /// Returns nil if the host refused the timer.
    @discardableResult
    public func startTimer(milliseconds: UInt64, _ callback: @escaping () -> Void) -> TimerHandle? {
        let node = TimerNode(callback)
        context.track(node)
        var timer: OpaquePointer?
        let status = Host.api.pointee.timer_start(raw, milliseconds, timerTrampoline,
                                                  Unmanaged.passUnretained(node).toOpaque(), &timer)
        guard status == SLUICE_OK else {
            context.untrack(node)
            return nil
        }
        node.timer = timer
        return TimerHandle(node: node)
    }

    /// The client's remote address "ip:port" as borrowed bytes (valid until the instance is freed).
    public var clientAddressBytes: UnsafeRawBufferPointer {
        var view = sluice_host_view()
        Host.api.pointee.client_address(raw, &view)
        return UnsafeRawBufferPointer(start: view.ptr, count: view.len)
    }

    /// The client's remote address "ip:port".
    public var clientAddress: String { String(decoding: clientAddressBytes, as: UTF8.self) }

    /// The name of the transform this instance belongs to (as written in the chain).
    public var transformName: String { context.transformName }
}

/// A pending timer started with `InstanceEnv.startTimer`.
public struct TimerHandle {
    let node: TimerNode

    /// Cancels the timer if it has not fired yet (its callback will not run). Safe to call after it
    /// fired or twice.
    public func cancel() {
        guard node.isLinked, let timer = node.timer else { return }
        Host.api.pointee.timer_cancel(timer)
        node.context?.untrack(node)
    }

    /// True until the timer fired or was cancelled.
    public var isPending: Bool { node.isLinked }
}

// MARK: - Bookkeeping (internal)

/// Something the host holds a pointer to on behalf of an instance: a send completion, a timer, per-call
/// state. Linked into the instance's list so that everything still pending is released when the
/// instance is freed (the host drops pending completions and timers without calling them).
@usableFromInline
class PendingNode {
    var next: PendingNode?
    unowned(unsafe) var previous: PendingNode?
    var isLinked = false
    /// Set while linked (the owning context outlives its linked nodes).
    unowned(unsafe) var context: InstanceContext?

    init() {}

    /// Releases what the node holds (closures, state) when the instance is freed: breaks cycles
    /// such as instance → timer handle → closure → instance.
    func drop() {}
}

final class SendNode: PendingNode {
    var completion: ((SendResult) -> Void)?
    var refusal: String?
    init(_ completion: @escaping (SendResult) -> Void) { self.completion = completion }
    override func drop() { completion = nil }
}

final class TimerNode: PendingNode {
    var callback: (() -> Void)?
    var timer: OpaquePointer?
    init(_ callback: @escaping () -> Void) { self.callback = callback }
    override func drop() { callback = nil }
}

final class CallStateNode: PendingNode {
    var state: AnyObject?
    init(_ state: AnyObject) { self.state = state }
    override func drop() { state = nil }
}

/// Everything the SDK keeps for one instance; the `void *instance` the host holds points here.
@usableFromInline
final class InstanceContext {
    let env: OpaquePointer
    let transformName: String
    @usableFromInline let handlesResponses: Bool
    var instance: (any TransformInstance)?
    var responder: (any ResponseHandler)?
    private let head = PendingNode()
    /// Number of calls with state attached (so completing a call looks at call_data only when needed).
    @usableFromInline var attachedStates = 0
    /// The call of the hook running now, and whether it has been completed (to tell whether an error
    /// thrown by the hook may still fail its call).
    @usableFromInline var hookCall: OpaquePointer?
    @usableFromInline var hookCallCompleted = false

    init(env: OpaquePointer, transformName: String, handlesResponses: Bool) {
        self.env = env
        self.transformName = transformName
        self.handlesResponses = handlesResponses
    }

    func track(_ node: PendingNode) {
        node.next = head.next
        node.previous = head
        head.next?.previous = node
        head.next = node
        node.isLinked = true
        node.context = self
    }

    func untrack(_ node: PendingNode) {
        guard node.isLinked else { return }
        withExtendedLifetime(node) {
            node.next?.previous = node.previous
            node.previous?.next = node.next
            node.next = nil
            node.previous = nil
            node.isLinked = false
            node.context = nil
        }
    }

    /// The instance is being freed: release everything still pending without calling it.
    func dropAll() {
        var node = head.next
        head.next = nil
        while let current = node {
            node = current.next
            current.next = nil
            current.previous = nil
            current.isLinked = false
            current.context = nil
            current.drop()
        }
    }

    @inlinable
    func willComplete(_ call: OpaquePointer, finally: Bool) {
        if call == hookCall { hookCallCompleted = true }
        if finally && attachedStates > 0 { detachState(of: call) }
    }

    @usableFromInline
    func detachState(of call: OpaquePointer) {
        guard let data = Host.api.pointee.call_data(call) else { return }
        Host.api.pointee.call_set_data(call, nil)
        untrack(Unmanaged<CallStateNode>.fromOpaque(data).takeUnretainedValue())
        attachedStates -= 1
    }

    func attachState(_ node: CallStateNode, to call: OpaquePointer) {
        track(node)
        attachedStates += 1
        Host.api.pointee.call_set_data(call, Unmanaged.passUnretained(node).toOpaque())
    }

    /// A hook threw: fail its call if it is still open, else log (the error came too late to answer).
    func hookThrew(_ error: Error, call: OpaquePointer, hook: String) {
        if !hookCallCompleted {
            Call(raw: call, context: self).fail("\(error)")
        } else {
            Log.error("\(transformName): \(hook) threw after completing its call: \(error)")
        }
    }
}

private let sendCompletionTrampoline: sluice_send_completion_fn = { user, status, responses, message in
    guard let user else { return }
    let node = Unmanaged<SendNode>.fromOpaque(user).takeUnretainedValue()
    node.context?.untrack(node)
    let completion = node.completion
    node.completion = nil
    let result: SendResult
    if status == SLUICE_OK, let responses {
        result = .responses(Batch(raw: responses))
    } else {
        let text = String(decoding: UnsafeRawBufferPointer(start: message.ptr, count: message.len), as: UTF8.self)
        result = .failed(text.isEmpty ? statusName(status) : text)
    }
    if let completion {
        completion(result)
    } else if case .responses(let batch) = result {
        batch.free()
    }
}

private let sendRefusedTrampoline: sluice_timer_fn = { user in
    guard let user else { return }
    let node = Unmanaged<SendNode>.fromOpaque(user).takeUnretainedValue()
    node.context?.untrack(node)
    let completion = node.completion
    node.completion = nil
    completion?(.failed(node.refusal ?? "send refused"))
}

private let timerTrampoline: sluice_timer_fn = { user in
    guard let user else { return }
    let node = Unmanaged<TimerNode>.fromOpaque(user).takeUnretainedValue()
    node.context?.untrack(node)
    let callback = node.callback
    node.callback = nil
    callback?()
}
