import NIOCore
import PluginABI

/// The host side of one plugin instance (`sluice_instance_env*`): its connection, its timers and
/// sends, and whether it is still alive (completions and timers are dropped after the instance is
/// freed).
final class InstanceEnv {
    unowned let session: ChainSession
    let step: TransformStep
    private(set) var isClosed = false
    /// Pending timers and sends with a handle, by handle bits.
    private var timers: [UInt: PluginTimer] = [:]
    private var sends: [UInt: SendCompletion] = [:]
    /// Sends of this instance whose completion has not run yet (the call deadline does not count
    /// while the transform waits for one of its own sends).
    private(set) var sendsInFlight = 0

    init(session: ChainSession, step: TransformStep) {
        self.session = session
        self.step = step
    }

    var handle: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    static func from(_ handle: OpaquePointer) -> InstanceEnv {
        Unmanaged<InstanceEnv>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
    }

    /// Cancels every timer and send. Their handles stay valid (a plugin may still cancel them from
    /// instance_free) until `retireHandles`, after instance_free.
    func close() {
        isClosed = true
        for timer in timers.values { timer.task?.cancel() }
        for send in sends.values { send.abandon() }
    }

    /// After instance_free: the handles of timers and sends that were still pending are refused
    /// from now on.
    func retireHandles() {
        let handles = session.handles
        for timer in timers.values { handles.retire(timer.handle) }
        for send in sends.values { handles.retire(send.handle) }
        timers.removeAll()
        sends.removeAll()
    }

    // MARK: timers

    func startTimer(delayMilliseconds: UInt64, callback: sluice_timer_fn, userData: UnsafeMutableRawPointer?)
        -> OpaquePointer
    {
        let timer = PluginTimer(owner: self)
        let handles = session.handles
        let handle = handles.register(timer, kind: .timer, step: step)
        timer.handle = handle
        let key = UInt(bitPattern: handle)
        timers[key] = timer
        let delay = TimeAmount.milliseconds(Int64(min(delayMilliseconds, UInt64(Int64.max / 1_000_000))))
        timer.task = session.eventLoop.scheduleTask(in: delay) { [weak self] in
            guard let self, !self.isClosed, self.timers.removeValue(forKey: key) != nil else { return }
            // The handle stays valid until the callback returns (it may cancel itself: a no-op).
            self.session.runningHook(self.step, .timer) { callback(userData) }
            handles.retire(handle)
        }
        return handle
    }

    /// timer_cancel: the timer does not fire; its handle is retired (unless instance_free runs,
    /// during which handles stay valid).
    func cancelTimer(_ timer: PluginTimer) {
        timer.task?.cancel()
        guard !isClosed, let handle = timer.handle, timers.removeValue(forKey: UInt(bitPattern: handle)) != nil
        else { return }
        session.handles.retire(handle)
    }

    // MARK: sends

    func sendStarted() { sendsInFlight += 1 }
    func sendEnded() { sendsInFlight -= 1 }

    /// Registers a send the plugin may cancel (or that has a timeout) and returns its handle.
    func track(_ send: SendCompletion) -> OpaquePointer {
        let handle = session.handles.register(send, kind: .send, step: step)
        send.handle = handle
        sends[UInt(bitPattern: handle)] = send
        return handle
    }

    /// A tracked send completed, timed out or was cancelled: its handle ends.
    func untrack(_ send: SendCompletion) {
        guard !isClosed, let handle = send.handle, sends.removeValue(forKey: UInt(bitPattern: handle)) != nil
        else { return }
        session.handles.retire(handle)
    }
}

/// A timer a plugin started (`sluice_timer*`, a `HandleTable` handle).
final class PluginTimer {
    var task: Scheduled<Void>?
    weak var owner: InstanceEnv?
    var handle: OpaquePointer?

    init(owner: InstanceEnv) {
        self.owner = owner
    }

    static func from(_ handle: OpaquePointer?, _ function: StaticString) -> PluginTimer? {
        guard let (object, _) = HandleTable.resolve(handle, .timer, function) else { return nil }
        return unsafeDowncast(object.takeUnretainedValue(), to: PluginTimer.self)
    }
}

/// Delivers the outcome of a plugin's `send` to its completion callback, never synchronously from
/// inside `send`, never after the instance was freed, and at most once: a send with a timeout
/// fails with SLUICE_ERROR_TIMEOUT when it expires, a cancelled one never calls back, and responses
/// that arrive after either are dropped.
final class SendCompletion: ResponseReceiver {
    let env: InstanceEnv
    let callback: sluice_send_completion_fn
    let userData: UnsafeMutableRawPointer?
    let targetName: String
    var insideSend = true
    private var delivered = false {
        didSet { if delivered, !oldValue { env.sendEnded() } }
    }
    /// Set for sends made with send_ex (they can be cancelled or time out).
    var handle: OpaquePointer?
    private var timeout: Scheduled<Void>?

    init(env: InstanceEnv, callback: sluice_send_completion_fn, userData: UnsafeMutableRawPointer?,
         targetName: String) {
        self.env = env
        self.callback = callback
        self.userData = userData
        self.targetName = targetName
        env.sendStarted()
    }

    /// Fails the send with SLUICE_ERROR_TIMEOUT after `milliseconds` unless it completed before.
    func startTimeout(milliseconds: UInt64) {
        let delay = TimeAmount.milliseconds(Int64(min(milliseconds, UInt64(Int64.max / 1_000_000))))
        timeout = env.session.eventLoop.scheduleTask(in: delay) { [weak self] in
            guard let self, !self.delivered else { return }
            self.timeout = nil
            self.deliver(.failed("send to '\(self.targetName)' timed out after \(milliseconds) ms"),
                         status: SLUICE_ERROR_TIMEOUT)
        }
    }

    /// send_cancel: the completion will not be called; late responses are dropped.
    func cancel() {
        guard !delivered else { return }
        delivered = true
        timeout?.cancel()
        timeout = nil
        env.untrack(self)
    }

    /// The instance is being freed: nothing is delivered any more.
    func abandon() {
        delivered = true
        timeout?.cancel()
        timeout = nil
    }

    func receive(_ outcome: ChainOutcome) {
        if insideSend {
            env.session.eventLoop.execute { self.deliver(outcome, status: SLUICE_ERROR) }
        } else {
            deliver(outcome, status: SLUICE_ERROR)
        }
    }

    private func deliver(_ outcome: ChainOutcome, status failure: Int32) {
        guard !delivered, !env.isClosed else { return }
        delivered = true
        timeout?.cancel()
        timeout = nil
        // The handle ends before the callback runs: the send is over, a send_cancel from inside the
        // completion is refused as stale.
        env.untrack(self)
        switch outcome {
        case .responses(let batch):
            let handle = batch.handOverToPlugin(step: env.step)
            env.session.runningHook(env.step, .sendCompletion) { callback(userData, SLUICE_OK, handle, sluice_host_view(ptr: nil, len: 0)) }
        case .failed(let message):
            var text = message
            text.withUTF8 { utf8 in
                env.session.runningHook(env.step, .sendCompletion) {
                    callback(userData, failure, nil, sluice_host_view(ptr: utf8.baseAddress, len: utf8.count))
                }
            }
        }
    }
}
