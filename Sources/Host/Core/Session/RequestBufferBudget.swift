import NIOConcurrencyHelpers
import NIOCore

/// The bytes of partial requests all clients of one source have buffered, against
/// `request_buffer_budget_bytes`. Complete requests a client read but holds back (its in-flight
/// limit is reached, its replies are unread) are not counted: reading that client is paused
/// already, so they are bounded by its own limits, and a client that never reads its replies holds
/// no budget and is never the "longest buffering" client below.
///
/// A client whose partial request grows while the total is over the budget stops being read and
/// waits here, unless it is the client that has been buffering the longest: that one may go on, so
/// the requests already begun complete one after another (waiting clients never hold the budget
/// against each other for ever), and the total stays below the budget plus one request. Waiting
/// clients are told, on their own event loops, when the total fell below seven eighths of the
/// budget or the longest-buffering client finished its request.
///
/// Touched only when a client's partial-request byte count changes (a read that ends inside a
/// request, or the first read after one), so reads that hold whole requests only never take the
/// lock. Thread-safe.
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

    /// Records that `client` now buffers `bytes` of a partial request (they are in memory already).
    /// Returns whether the client must not read now: its buffer grew, the total is over the budget
    /// and another client has been buffering longer (or it still waits from before). It is then
    /// told when to read again; when this returns false it does not wait (any more).
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
            let woken = wakeIfRoom(leaving: nil)
            mustWait = waiters[key] != nil
            return woken
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
