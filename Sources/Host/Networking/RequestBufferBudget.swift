import NIOConcurrencyHelpers
import NIOCore

/// The request bytes all clients of one source have buffered (partial requests, and requests read
/// but held back by the in-flight limit), against `request_buffer_budget_bytes`.
///
/// A client whose buffer grows while the total is over the budget stops being read and waits here,
/// unless it is the client that has been buffering the longest: that one may go on, so the requests
/// already begun always complete one after another (waiting clients never hold the budget against
/// each other for ever), and the total stays below the budget plus one request. Waiting clients are
/// told, on their own event loops, when the total fell below seven eighths of the budget or the
/// longest-buffering client finished its request.
///
/// Touched only when a client's buffered byte count changes (a read that ends inside a request), so
/// a client whose reads hold whole requests never takes the lock. Thread-safe.
final class RequestBufferBudget: @unchecked Sendable {
    /// Told (on its event loop) that it may read again.
    protocol Waiter: AnyObject {
        func requestBudgetFreed()
    }

    private struct Holder {
        var bytes: Int
        /// When it started buffering, in `setBuffered` calls (the oldest holder may exceed the budget).
        let since: UInt64
    }

    let limit: Int
    private let lock = NIOLock()
    private var used = 0
    private var holders: [ObjectIdentifier: Holder] = [:]
    private var waiters: [ObjectIdentifier: (EventLoop, Waiter)] = [:]
    private var clock: UInt64 = 0

    init(limit: Int) {
        self.limit = limit
    }

    /// How many bytes are buffered now (for tests).
    var bytesBuffered: Int { lock.withLock { used } }

    /// Records that `client` now buffers `bytes` (they are in memory already). Returns true when the
    /// client must stop reading: its buffer grew, the total is over the budget and another client has
    /// been buffering longer. It is then told when to read again.
    func setBuffered(_ bytes: Int, for client: Waiter, on eventLoop: EventLoop) -> Bool {
        let key = ObjectIdentifier(client)
        var mustWait = false
        let woken: [(EventLoop, Waiter)] = lock.withLock {
            let previous = holders[key]
            let before = previous?.bytes ?? 0
            used += bytes - before
            guard bytes > 0 else {
                holders.removeValue(forKey: key)
                waiters.removeValue(forKey: key)
                return wakeIfRoom(leaving: previous)
            }
            if previous != nil {
                holders[key]!.bytes = bytes
            } else {
                clock &+= 1
                holders[key] = Holder(bytes: bytes, since: clock)
            }
            if bytes > before {
                if used > limit, !isOldest(holders[key]!) {
                    waiters[key] = (eventLoop, client)
                    mustWait = true
                }
                return []
            }
            return wakeIfRoom(leaving: nil)
        }
        for (loop, waiter) in woken { loop.execute { waiter.requestBudgetFreed() } }
        return mustWait
    }

    /// A client that closes gives its bytes back and stops waiting.
    func remove(_ client: Waiter) {
        let key = ObjectIdentifier(client)
        let woken: [(EventLoop, Waiter)] = lock.withLock {
            waiters.removeValue(forKey: key)
            guard let holder = holders.removeValue(forKey: key) else { return [] }
            used -= holder.bytes
            return wakeIfRoom(leaving: holder)
        }
        for (loop, waiter) in woken { loop.execute { waiter.requestBudgetFreed() } }
    }

    /// Whether no other holder started buffering before `holder` (called with the lock held).
    private func isOldest(_ holder: Holder) -> Bool {
        !holders.values.contains { $0.since < holder.since }
    }

    /// The waiters to tell, once the total fell below 7/8 of the budget or the oldest holder left
    /// (`leaving`, already removed: a waiter may be the oldest now); called with the lock held.
    private func wakeIfRoom(leaving: Holder?) -> [(EventLoop, Waiter)] {
        guard !waiters.isEmpty,
              used <= limit - limit / 8 || leaving.map(isOldest) == true else { return [] }
        defer { waiters.removeAll() }
        return Array(waiters.values)
    }
}
