/// One-shot timers on a connection's event loop (the header's timer_start / timer_cancel).
///
///     reportTimer = try env.startTimer(afterMilliseconds: 10_000) { [weak self] in self?.report() }
///
/// The closure runs once, later, on the connection's thread, never after the connection closed:
/// the host cancels an instance's pending timers before freeing it and the SDK then drops their
/// closures, so a transform need not cancel its timers when it goes away. Start another timer from
/// the closure for a periodic one.
extension InstanceEnv {
    /// Runs `fire` once after `milliseconds`. Throws `SluiceError` if the host refuses (the
    /// connection is closing).
    @discardableResult
    public func startTimer(afterMilliseconds milliseconds: UInt64, _ fire: @escaping () -> Void) throws -> SluiceTimer {
        let box = TimerBox(fire, outstanding: outstanding)
        let key = Unmanaged.passUnretained(box).toOpaque()
        outstanding.states[key] = box
        var handle: OpaquePointer?
        let status = sluiceHost.pointee.timer_start(raw, milliseconds, fireTimer, key, &handle)
        guard status == SLUICE_OK else {
            outstanding.states.removeValue(forKey: key)
            throw SluiceError(status: status, operation: "timer_start")
        }
        box.handle = handle
        return SluiceTimer(box: box)
    }
}

/// A timer started with `InstanceEnv.startTimer`.
public struct SluiceTimer {
    /// Set while the timer is pending; nil once it fired, was cancelled or its connection closed.
    weak var box: TimerBox?

    /// Whether the closure is still to run.
    public var isPending: Bool { box != nil }

    /// Makes sure the closure never runs. Harmless after the timer fired or was cancelled.
    public func cancel() {
        guard let box, let handle = box.handle else { return }
        box.handle = nil
        _ = sluiceHost.pointee.timer_cancel(handle)
        box.outstanding.states.removeValue(forKey: Unmanaged.passUnretained(box).toOpaque())
    }
}

/// A pending timer's closure, held by its instance's outstanding work until it fires or is
/// cancelled (or the connection closes), so a closed connection leaks nothing.
final class TimerBox {
    let fire: () -> Void
    unowned let outstanding: Outstanding
    var handle: OpaquePointer?

    init(_ fire: @escaping () -> Void, outstanding: Outstanding) {
        self.fire = fire
        self.outstanding = outstanding
    }
}

/// The callback of every SDK timer: takes the box out of the outstanding work (the timer is spent),
/// then runs its closure.
private let fireTimer: sluice_timer_fn = { user in
    guard let user else { return }
    let outstanding = Unmanaged<TimerBox>.fromOpaque(user).takeUnretainedValue().outstanding
    guard let box = outstanding.states.removeValue(forKey: user) as? TimerBox else { return }
    box.handle = nil
    box.fire()
}
