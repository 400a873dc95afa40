import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import SluiceHost

/// Checks of command-line values that ArgumentParser's types cannot express, with the same limits
/// the config file's settings have. A failure is a `ValidationError`: ArgumentParser prints it with
/// the usage and exits with status 64, as it does for a value that does not parse at all.
enum CommandLineChecks {
    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    static func threads(_ count: Int) throws {
        let range = SluiceConfig.threadRange
        guard range.contains(count) else {
            throw ValidationError("--threads: expected \(range.lowerBound)...\(range.upperBound) event-loop threads, found \(count)")
        }
        // Each event loop holds three descriptors (epoll, eventfd, timerfd); leave room for clients.
        var limit = rlimit()
        #if canImport(Glibc)
        let status = getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        #else
        let status = getrlimit(RLIMIT_NOFILE, &limit)
        #endif
        if status == 0, limit.rlim_cur != rlim_t.max {
            let needed = count * 3 + 64
            guard needed <= Int(limit.rlim_cur) else {
                throw ValidationError("--threads: \(count) event loops need about \(needed) file descriptors, the limit is \(limit.rlim_cur) (ulimit -n)")
            }
        }
    }

    static func logLevel(_ level: String) throws {
        guard logLevels.contains(level) else {
            throw ValidationError("--log-level: expected one of \(logLevels.joined(separator: ", ")), found '\(level)'")
        }
    }
}
