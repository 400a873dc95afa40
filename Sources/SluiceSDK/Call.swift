/// A pending `on_requests` call: end it with exactly one of forward, respond or fail.
public struct Call {
    public let raw: OpaquePointer
    /// The instance's outstanding work, so per-call state is released if the connection closes
    /// before the call completes.
    let outstanding: Outstanding

    /// Sends the (possibly modified) request batch down the chain.
    @discardableResult
    public func forward() -> Int32 { sluiceHost.pointee.call_forward(raw) }

    /// Sends the (possibly modified, same-sized) request batch down the chain, letting the responses of
    /// this call bypass `onResponses` (cheaper when this batch needs nothing on the way back).
    @discardableResult
    public func pass() -> Int32 { completing { sluiceHost.pointee.call_pass(raw) } }

    /// Answers with an owned response batch (ownership passes to the host).
    @discardableResult
    public func respond(_ responses: Batch) -> Int32 {
        completing { sluiceHost.pointee.call_respond(raw, responses.raw) }
    }

    /// In `onResponses`: answers with the lent response batch as modified in place.
    @discardableResult
    public func respondWithReceived() -> Int32 { completing { sluiceHost.pointee.call_respond(raw, nil) } }

    /// Answers every request of the batch with `ERR <transform>: message`.
    @discardableResult
    public func fail(_ message: String) -> Int32 {
        var text = message
        return completing {
            text.withUTF8 { utf8 in
                utf8.withMemoryRebound(to: CChar.self) { sluiceHost.pointee.call_fail(raw, $0.baseAddress, $0.count) }
            }
        }
    }

    /// Runs a continuation that ends the call; once it succeeded, state set with `setState` and
    /// never taken is released (it was held for this call only). The state's key is read first:
    /// a completed call's pointer may already stand for another call.
    private func completing(_ complete: () -> Int32) -> Int32 {
        let state = sluiceHost.pointee.call_data(raw)
        let status = complete()
        if status == SLUICE_OK, let state { outstanding.states.removeValue(forKey: state) }
        return status
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
    /// after the instance is freed).
    public func send(_ batch: Batch, to target: Target, completion: @escaping (SendResult) -> Void) {
        let completionBox = CompletionBox(completion, outstanding: outstanding)
        let box = Unmanaged.passUnretained(completionBox).toOpaque()
        outstanding.completions[box] = completionBox
        let status = sluiceHost.pointee.send(raw, target.raw, batch.raw, { user, status, responses, error in
            guard let box = CompletionBox.take(user) else { return }
            if status == SLUICE_OK, let responses {
                box.completion(.responses(Batch(raw: responses)))
            } else {
                let message = String(decoding: UnsafeRawBufferPointer(start: error.ptr, count: error.len), as: UTF8.self)
                box.completion(.failed(message.isEmpty ? "send failed with status \(status)" : message))
            }
        }, box)
        if status != SLUICE_OK {
            // The host never calls a refused send's completion; deliver the refusal ourselves, on a
            // 0 ms timer, so that a completion still never runs inside `send`.
            completionBox.refusal = "send refused with status \(status)"
            let timer = sluiceHost.pointee.timer_start(raw, 0, { user in
                guard let box = CompletionBox.take(user) else { return }
                box.completion(.failed(box.refusal ?? "send refused"))
            }, box, nil)
            if timer != SLUICE_OK, let box = CompletionBox.take(box) {
                box.completion(.failed(box.refusal ?? "send refused"))
            }
        }
    }

    /// "ip:port" of the client.
    public var clientAddress: String {
        var view = sluice_host_view()
        sluiceHost.pointee.client_address(raw, &view)
        return String(decoding: UnsafeRawBufferPointer(start: view.ptr, count: view.len), as: UTF8.self)
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
