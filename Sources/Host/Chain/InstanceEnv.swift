import NIOCore
import PluginABI

/// The host side of one plugin instance (`sluice_instance_env*`): its connection, its timers, and
/// whether it is still alive (completions and timers are dropped after the instance is freed).
final class InstanceEnv {
    unowned let session: ChainSession
    let step: TransformStep
    private(set) var isClosed = false
    private var timers: [ObjectIdentifier: PluginTimer] = [:]

    init(session: ChainSession, step: TransformStep) {
        self.session = session
        self.step = step
    }

    var handle: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    static func from(_ handle: OpaquePointer) -> InstanceEnv {
        Unmanaged<InstanceEnv>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
    }

    /// Cancels every timer. The handles stay valid (a plugin may still cancel them from
    /// instance_free) until the env itself goes away after instance_free.
    func close() {
        isClosed = true
        for timer in timers.values { timer.cancel() }
    }

    func startTimer(delayMilliseconds: UInt64, callback: sluice_timer_fn, userData: UnsafeMutableRawPointer?)
        -> PluginTimer
    {
        let timer = PluginTimer()
        timer.owner = self
        let key = ObjectIdentifier(timer)
        timers[key] = timer
        timer.task = session.eventLoop.scheduleTask(in: .milliseconds(Int64(min(delayMilliseconds, UInt64(Int64.max / 1_000_000))))) {
            [weak self] in
            guard let self, !self.isClosed, let fired = self.timers.removeValue(forKey: key) else { return }
            // The handle stays valid until the callback returns (it may cancel itself: a no-op).
            withExtendedLifetime(fired) { callback(userData) }
        }
        return timer
    }

    func cancelTimer(_ timer: PluginTimer) {
        guard timers.removeValue(forKey: ObjectIdentifier(timer)) != nil else { return }
        timer.cancel()
    }
}

/// A timer a plugin started (`sluice_timer*`); the env keeps it alive until it fires or is cancelled.
final class PluginTimer {
    var task: Scheduled<Void>?
    weak var owner: InstanceEnv?
    func cancel() { task?.cancel() }

    var handle: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }
    static func from(_ handle: OpaquePointer) -> PluginTimer {
        Unmanaged<PluginTimer>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
    }
}

/// Delivers the outcome of a plugin's `send` to its completion callback, never synchronously from
/// inside `send`, and never after the instance was freed.
final class SendCompletion: ResponseReceiver {
    let env: InstanceEnv
    let callback: sluice_send_completion_fn
    let userData: UnsafeMutableRawPointer?
    var insideSend = true
    private var delivered = false

    init(env: InstanceEnv, callback: sluice_send_completion_fn, userData: UnsafeMutableRawPointer?) {
        self.env = env
        self.callback = callback
        self.userData = userData
    }

    func receive(_ outcome: ChainOutcome) {
        if insideSend {
            env.session.eventLoop.execute { self.deliver(outcome) }
        } else {
            deliver(outcome)
        }
    }

    private func deliver(_ outcome: ChainOutcome) {
        guard !delivered, !env.isClosed else { return }
        delivered = true
        switch outcome {
        case .responses(let batch):
            callback(userData, SLUICE_OK, batch.handOverToPlugin(), sluice_host_view(ptr: nil, len: 0))
        case .failed(let message):
            var text = message
            text.withUTF8 { utf8 in
                callback(userData, SLUICE_ERROR, nil, sluice_host_view(ptr: utf8.baseAddress, len: utf8.count))
            }
        }
    }
}
