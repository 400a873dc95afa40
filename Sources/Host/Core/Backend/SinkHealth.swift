import NIOConcurrencyHelpers
import NIOCore

/// Connect failures of one sink, shared by all its connections on all event loops: while a backend
/// is down, requests fail at once with the last error instead of each client connection starting a
/// connect of its own (a client library that reconnects after every error would otherwise turn a
/// dead backend into a connect storm). The wait doubles from 100 ms to 2 s and resets on success.
/// Only touched when a connection is about to connect, never per request on a live connection.
final class SinkHealth: Sendable {
    private struct State {
        var failures = 0
        var lastError = ""
        var nextAttempt = NIODeadline.uptimeNanoseconds(0)
    }

    private let state = NIOLockedValueBox(State())

    /// The last error and the milliseconds left while connects are held back; nil when a connect may
    /// be tried now.
    func backingOff() -> (error: String, milliseconds: Int64)? {
        state.withLockedValue { s in
            guard s.failures > 0 else { return nil }
            let now = NIODeadline.now()
            guard now < s.nextAttempt else { return nil }
            return (s.lastError, (s.nextAttempt - now).nanoseconds / 1_000_000)
        }
    }

    /// Records a failed connect; returns the backoff in milliseconds before the next attempt.
    func connectFailed(_ error: String) -> Int {
        state.withLockedValue { s in
            s.failures += 1
            s.lastError = error
            let backoff = min(100 << min(s.failures - 1, 5), 2000)
            s.nextAttempt = .now() + .milliseconds(Int64(backoff))
            return backoff
        }
    }

    func connected() {
        state.withLockedValue { $0.failures = 0 }
    }
}
