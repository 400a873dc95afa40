/// A pending `on_requests` call: end it with exactly one of forward, respond or fail.
public struct Call {
    public let raw: OpaquePointer
    /// The instance's outstanding work, so per-call state is released if the connection closes
    /// before the call completes.
    let outstanding: Outstanding

    /// Sends the (possibly modified) request batch down the chain.
    @discardableResult
    public func forward() -> SluiceStatus { SluiceStatus(sluiceHost.pointee.call_forward(raw), "call_forward") }

    /// Sends the (possibly modified, same-sized) request batch down the chain, letting the responses of
    /// this call bypass `onResponses` (cheaper when this batch needs nothing on the way back).
    @discardableResult
    public func pass() -> SluiceStatus { completing("call_pass") { sluiceHost.pointee.call_pass(raw) } }

    /// Answers with an owned response batch (ownership passes to the host).
    @discardableResult
    public func respond(_ responses: Batch) -> SluiceStatus {
        completing("call_respond") { sluiceHost.pointee.call_respond(raw, responses.raw) }
    }

    /// In `onResponses`: answers with the lent response batch as modified in place.
    @discardableResult
    public func respondWithReceived() -> SluiceStatus {
        completing("call_respond") { sluiceHost.pointee.call_respond(raw, nil) }
    }

    /// Answers every request of the batch with `ERR <transform>: message`.
    @discardableResult
    public func fail(_ message: String) -> SluiceStatus {
        var text = message
        return completing("call_fail") {
            text.withUTF8 { utf8 in
                utf8.withMemoryRebound(to: CChar.self) { sluiceHost.pointee.call_fail(raw, $0.baseAddress, $0.count) }
            }
        }
    }

    /// From now, this call must be completed within `milliseconds` while it is this transform's turn
    /// (0: no deadline for it, e.g. while a blocking command waits at another target). Without it the
    /// host's `plugins.call_deadline_ms` applies.
    @discardableResult
    public func setDeadline(milliseconds: UInt64) -> SluiceStatus {
        SluiceStatus(sluiceHost.pointee.call_set_deadline(raw, milliseconds), "call_set_deadline")
    }

    /// Runs a continuation that ends the call; once it succeeded, state set with `setState` and
    /// never taken is released (it was held for this call only). The state's key is read first:
    /// once completed, the call's handle is stale and its data unreadable.
    func completing(_ function: String, _ complete: () -> Int32) -> SluiceStatus {
        let state = sluiceHost.pointee.call_data(raw)
        let status = complete()
        if status == SLUICE_OK, let state { outstanding.states.removeValue(forKey: state) }
        return SluiceStatus(status, function)
    }

    /// Per-call state kept for `onResponses`, held by the instance until taken with `takeState` or
    /// until the call completes (or until the connection closes, if the call never completes).
    public func setState(_ state: AnyObject?) {
        if let old = sluiceHost.pointee.call_data(raw) { outstanding.states.removeValue(forKey: old) }
        guard let state else {
            sluiceHost.pointee.call_set_data(raw, nil)
            return
        }
        let key = Unmanaged.passUnretained(state).toOpaque()
        outstanding.states[key] = state
        sluiceHost.pointee.call_set_data(raw, key)
    }

    /// The state set with `setState`, released from the call.
    public func takeState<T: AnyObject>(as type: T.Type) -> T? {
        guard let data = sluiceHost.pointee.call_data(raw) else { return nil }
        sluiceHost.pointee.call_set_data(raw, nil)
        return outstanding.states.removeValue(forKey: data) as? T
    }
}

/// The outcome of `InstanceEnv.send`.
public enum SendResult {
    /// One response per sent request; owned: give it away or `free()` it.
    case responses(Batch)
    case failed(String)
}

/// The per-connection context of an instance: send to other targets, timers, client address.
public struct InstanceEnv {
    public let raw: OpaquePointer
    let outstanding: Outstanding

    /// Sends an owned request batch to a chain or sink; `completion` runs later on this thread (never
    /// after the instance is freed), exactly once.
    public func send(_ batch: Batch, to target: Target, completion: @escaping (SendResult) -> Void) {
        let box = CompletionBox.keep(completion, outstanding)
        let status = sluiceHost.pointee.send(raw, target.raw, batch.raw, deliverSendCompletion, box)
        if status != SLUICE_OK { deliverRefusal(status, box) }
    }

    /// Like `send`, with a timeout (0: none) and a way to cancel: a send still unanswered after
    /// `timeoutMilliseconds` completes with `.failed("send to '…' timed out after … ms")`, and
    /// `PendingSend.cancel()` makes sure the completion never runs. Responses that arrive after
    /// either are dropped by the host.
    @discardableResult
    public func send(_ batch: Batch, to target: Target, timeoutMilliseconds: UInt64,
                     completion: @escaping (SendResult) -> Void) -> PendingSend {
        let box = CompletionBox.keep(completion, outstanding)
        var handle: OpaquePointer?
        let status = sluiceHost.pointee.send_ex(raw, target.raw, batch.raw, timeoutMilliseconds,
                                                deliverSendCompletion, box, &handle)
        if status != SLUICE_OK { deliverRefusal(status, box) }
        return PendingSend(handle: handle, box: box)
    }

    /// The host never calls a refused send's completion; deliver the refusal here, on a 0 ms timer,
    /// so that a completion still never runs inside `send`.
    private func deliverRefusal(_ status: Int32, _ box: UnsafeMutableRawPointer) {
        let message = "send refused with \(SluiceStatus.name(status))"
        Unmanaged<CompletionBox>.fromOpaque(box).takeUnretainedValue().refusal = message
        let timer = sluiceHost.pointee.timer_start(raw, 0, { user in
            guard let box = CompletionBox.take(user) else { return }
            box.completion(.failed(box.refusal ?? "send refused"))
        }, box, nil)
        if timer != SLUICE_OK, let taken = CompletionBox.take(box) {
            taken.completion(.failed(message))
        }
    }

    /// "ip:port" of the client.
    public var clientAddress: String {
        var view = sluice_host_view()
        sluiceHost.pointee.client_address(raw, &view)
        return String(decoding: UnsafeRawBufferPointer(start: view.ptr, count: view.len), as: UTF8.self)
    }
}

/// The completion callback of every SDK send: hands the outcome to the send's closure.
private let deliverSendCompletion: sluice_send_completion_fn = { user, status, responses, error in
    guard let box = CompletionBox.take(user) else { return }
    if status == SLUICE_OK, let responses {
        box.completion(.responses(Batch(raw: responses)))
    } else {
        let message = String(decoding: UnsafeRawBufferPointer(start: error.ptr, count: error.len), as: UTF8.self)
        box.completion(.failed(message.isEmpty ? "send failed with \(SluiceStatus.name(status))" : message))
    }
}

/// A send in flight, to cancel it.
public struct PendingSend {
    let handle: OpaquePointer?
    let box: UnsafeMutableRawPointer

    /// Cancels the send: its completion never runs, and its responses are dropped when they arrive.
    /// Returns `SLUICE_ERROR_STATE` if it already completed, timed out or was cancelled.
    @discardableResult
    public func cancel() -> SluiceStatus {
        guard let handle else { return SluiceStatus(SLUICE_ERROR_STATE, "send_cancel") }
        let status = sluiceHost.pointee.send_cancel(handle)
        if status == SLUICE_OK { _ = CompletionBox.take(box) }  // the closure will never run
        return SluiceStatus(status, "send_cancel")
    }
}

/// A send's completion closure. The instance's `Outstanding` holds it until the host calls back;
/// if the connection closes first the host never calls back, and freeing the instance frees it.
final class CompletionBox {
    let completion: (SendResult) -> Void
    unowned let outstanding: Outstanding
    var refusal: String?
    init(_ completion: @escaping (SendResult) -> Void, outstanding: Outstanding) {
        self.completion = completion
        self.outstanding = outstanding
    }

    /// Keeps a completion in the instance's outstanding work; returns the callback's user data.
    static func keep(_ completion: @escaping (SendResult) -> Void, _ outstanding: Outstanding) -> UnsafeMutableRawPointer {
        let box = CompletionBox(completion, outstanding: outstanding)
        let key = Unmanaged.passUnretained(box).toOpaque()
        outstanding.completions[key] = box
        return key
    }

    /// The box behind a callback's user data, taken out of its instance's outstanding work.
    static func take(_ user: UnsafeMutableRawPointer?) -> CompletionBox? {
        guard let user else { return nil }
        let box = Unmanaged<CompletionBox>.fromOpaque(user).takeUnretainedValue()
        return box.outstanding.completions.removeValue(forKey: user)
    }
}

/// What an instance has handed out and not got back: send completions and per-call state. Released
/// with the instance, so a connection that closes mid-call leaks nothing.
final class Outstanding {
    var completions: [UnsafeMutableRawPointer: CompletionBox] = [:]
    var states: [UnsafeMutableRawPointer: AnyObject] = [:]
}
