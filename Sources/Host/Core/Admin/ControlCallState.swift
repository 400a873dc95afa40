import NIOConcurrencyHelpers
import PluginABI

/// The control call in progress (at most one per process) as the host functions control_reply and
/// control_publish see it.
///
/// A `sluice_control_call *` is a token, never an address: a number that grows with every call,
/// so a stale handle (kept past its call) never matches the current one and is refused without
/// being dereferenced.
final class ControlCallState {
    static let shared = ControlCallState()

    /// What a plugin asked to publish during the call.
    struct Publish {
        let apply: sluice_on_publish_fn
        let data: UnsafeMutableRawPointer?
        let done: sluice_on_publish_done_fn?
    }

    /// What the call left behind when it returned.
    struct Finished {
        var reply: [UInt8]?
        var publishes: [Publish]
    }

    /// Longest reply text kept (the header's limit).
    static let maximumReplyBytes = 65_536

    private let lock = NIOLock()
    private var current: UInt = 0
    private var lastToken: UInt = 0
    private var finished = Finished(reply: nil, publishes: [])

    /// Starts a call; returns its handle.
    func begin() -> OpaquePointer {
        lock.withLock {
            lastToken += 1
            current = lastToken
            finished = Finished(reply: nil, publishes: [])
            // Odd, and shifted so it never looks like a small integer or an aligned address.
            return OpaquePointer(bitPattern: (current << 4) | 0x5)!
        }
    }

    /// Ends the call: its handle is stale from here on.
    func end() -> Finished {
        lock.withLock {
            current = 0
            defer { finished = Finished(reply: nil, publishes: []) }
            return finished
        }
    }

    /// Whether `handle` is the call in progress.
    private func isCurrent(_ handle: OpaquePointer) -> Bool {
        let bits = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(handle)))
        return current != 0 && bits == (current << 4) | 0x5
    }

    func reply(_ handle: OpaquePointer?, _ text: UnsafePointer<CChar>?, _ length: Int) -> Int32 {
        guard let handle, text != nil || length == 0, length >= 0 else { return SLUICE_ERROR_INVALID_ARGUMENT }
        return lock.withLock {
            guard isCurrent(handle) else { return SLUICE_ERROR_STATE }
            let kept = min(length, Self.maximumReplyBytes)
            finished.reply = kept == 0 ? [] : Array(UnsafeRawBufferPointer(start: text, count: kept))
            return SLUICE_OK
        }
    }

    func publish(_ handle: OpaquePointer?, _ apply: sluice_on_publish_fn?, _ data: UnsafeMutableRawPointer?,
                 _ done: sluice_on_publish_done_fn?) -> Int32 {
        guard let handle, let apply else { return SLUICE_ERROR_INVALID_ARGUMENT }
        return lock.withLock {
            guard isCurrent(handle) else { return SLUICE_ERROR_STATE }
            finished.publishes.append(Publish(apply: apply, data: data, done: done))
            return SLUICE_OK
        }
    }
}
