import ArgumentParser
import Foundation
import Logging
import SluiceHost

/// `sluice run --config FILE`: validate, load plugins, listen until SIGINT/SIGTERM.
struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the proxy with a config file.")

    @Option(name: .shortAndLong, help: "The YAML config file.")
    var config: String

    @Option(help: "Event-loop threads, 1...256 (default: the config's 'threads', else half the cores, at least one).")
    var threads: Int?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical (overrides the config).")
    var logLevel: String?

    @Option(help: "On SIGINT/SIGTERM, how long clients may take to receive the replies they are owed before they are cut off.")
    var drainTimeoutMs: Int64 = 10_000

    /// Flags are checked as the config's own settings are, before anything starts (an event-loop
    /// group of 0 threads traps, one of 100,000 runs out of file descriptors).
    func validate() throws {
        if let threads { try CommandLineChecks.threads(threads) }
        if let logLevel { try CommandLineChecks.logLevel(logLevel) }
        if drainTimeoutMs < 0 {
            throw ValidationError("--drain-timeout-ms: expected 0 or more milliseconds, found \(drainTimeoutMs)")
        }
    }

    func run() throws {
        // SIGINT and SIGTERM are blocked in every thread (the event loops inherit the mask) and
        // taken synchronously by the main thread below, which then stops the server.
        var stopSignals = sigset_t()
        sigemptyset(&stopSignals)
        sigaddset(&stopSignals, SIGINT)
        sigaddset(&stopSignals, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &stopSignals, nil)

        let prepared: Sluice.Prepared
        do {
            // Plugins may log while loading, so logging is set up first: the command line's level,
            // else the config's (a config that does not parse reports that just below).
            let level = logLevel ?? (try? SluiceConfig.load(path: config))?.logLevel ?? "info"
            Sluice.bootstrapObservability(logLevel: Logger.Level(rawValue: level) ?? .info)
            prepared = try Sluice.prepare(configPath: config)
        } catch {
            FileHandle.standardError.write(Data("sluice: configuration refused:\n\(error)\n".utf8))
            throw ExitCode(2)
        }
        let server: SluiceServer
        do {
            server = try Sluice.start(prepared, threads: threads)
        } catch {
            FileHandle.standardError.write(Data("sluice: cannot start:\n\(error)\n".utf8))
            throw ExitCode(1)
        }
        let admin: AdminServer?
        do {
            admin = try Sluice.startAdmin(prepared)
        } catch {
            FileHandle.standardError.write(Data("sluice: cannot start the admin endpoint:\n\(error)\n".utf8))
            server.stop(drainTimeout: .milliseconds(0))
            prepared.release()
            throw ExitCode(1)
        }
        var received: Int32 = 0
        sigwait(&stopSignals, &received)
        admin?.stop()  // no control call runs while the server stops
        FileHandle.standardError.write(Data("sluice: signal \(received), draining clients (up to \(drainTimeoutMs) ms)\n".utf8))
        let cutOff = server.stop(drainTimeout: .milliseconds(max(0, drainTimeoutMs)))
        prepared.release()  // config_free, now that no connection (no instance) is left
        let how = cutOff == 0 ? "every client was answered" : "\(cutOff) client(s) cut off at the drain timeout"
        FileHandle.standardError.write(Data("sluice: stopped; \(how)\n".utf8))
    }
}
