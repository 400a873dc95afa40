import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Keeps a repeated warning from flooding the log: within each interval the first `burst` warnings
/// are written in full and the rest only counted; the first warning after the interval is written
/// with a summary of what was held back ("N more … in the last Ts; last: <reason>"). So a shadow
/// outage writes a few lines per interval however many requests fail, and nothing is lost from the
/// counts (the metrics count every failure). Shared by every connection on every event loop of one
/// tee position: one mutex-protected check per warning, never per request.
final class WarningLimiter: Sendable {
    private struct Window {
        var start: UInt64 = 0
        var written = 0
        var held = 0
        var lastHeld = ""
        var started = false
    }

    let intervalNanoseconds: UInt64
    let burst: Int
    /// What the summary calls the held-back warnings, e.g. "shadow failures of 'shadow'".
    let what: String
    private let window = Mutex(Window())

    init(intervalMilliseconds: UInt64, burst: Int, what: String) {
        intervalNanoseconds = intervalMilliseconds * 1_000_000
        self.burst = burst
        self.what = what
    }

    /// The line to log for this warning (`message` built lazily), or nil when it is only counted.
    func line(_ message: () -> String) -> String? {
        let now = Self.monotonicNanoseconds()
        enum Decision { case write(summary: (count: Int, seconds: Double, last: String)?), hold }
        let decision: Decision = window.withLock { w in
            if !w.started || now &- w.start >= intervalNanoseconds {
                let summary = w.held > 0 ? (w.held, Double(now &- w.start) / 1e9, w.lastHeld) : nil
                w = Window(start: now, written: 1, held: 0, lastHeld: "", started: true)
                return .write(summary: summary)
            }
            if w.written < burst {
                w.written += 1
                return .write(summary: nil)
            }
            w.held += 1
            w.lastHeld = message()
            return .hold
        }
        switch decision {
        case .hold:
            return nil
        case .write(let summary?):
            let seconds = (summary.seconds * 10).rounded() / 10
            return "\(message()) [and \(summary.count) more \(what) in the last \(seconds)s, not logged one by one; the last: \(summary.last)]"
        case .write(nil):
            return message()
        }
    }

    /// Writes the summary of warnings held back in an interval that has ended (a client leaving
    /// after an outage): nil when nothing is held back or the interval is still running.
    func flushIfExpired() -> String? {
        let now = Self.monotonicNanoseconds()
        return window.withLock { w -> String? in
            guard w.started, w.held > 0, now &- w.start >= intervalNanoseconds else { return nil }
            let seconds = (Double(now &- w.start) / 1e8).rounded() / 10
            let line = "\(w.held) more \(what) in the last \(seconds)s, not logged one by one; the last: \(w.lastHeld)"
            w = Window()
            return line
        }
    }

    private static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
