import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// Waiting on a future from a test thread, with a bound, and asking whether it is done yet: the
/// tests that drive a real backend through an event loop share these.
extension EventLoopFuture {
    /// Whether the future is fulfilled now (asked on its event loop).
    var isFulfilledForTest: Bool {
        (try? eventLoop.submit { () -> Bool in
            var done = false
            self.whenComplete { _ in done = true }
            return done
        }.wait()) ?? false
    }

    /// The future's value, or an error once `timeout` passed without one.
    func wait(timeout: TimeAmount) throws -> Value {
        let done = DispatchSemaphore(value: 0)
        let result = NIOLockedValueBox<Result<Value, Error>?>(nil)
        whenComplete { outcome in
            result.withLockedValue { $0 = outcome }
            done.signal()
        }
        guard done.wait(timeout: .now() + .nanoseconds(Int(timeout.nanoseconds))) == .success else {
            throw NSError(domain: "timed out", code: 3)
        }
        return try result.withLockedValue { $0! }.get()
    }
}
