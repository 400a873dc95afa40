import ArgumentParser
import Foundation
import Logging
import SluiceHost

/// `sluice run --config FILE`: validate, load plugins, listen until SIGINT/SIGTERM; SIGHUP reloads
/// (see `Reloader`; the supervisor forwards it to every worker).
///
/// Supervised by default: this process becomes the supervisor (no plugin loaded, no client
/// served) and runs this same command again as worker processes, which serve (`serve`). With
/// `--single-process` it serves itself, as a worker does.
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

    @Flag(help: "Serve in this process, without a supervisor (a plugin crash then stops Sluice).")
    var singleProcess = false

    @Option(help: "Worker processes, 1...64 (default: the config's 'supervision.workers', else 1).")
    var workers: Int?

    /// Flags are checked as the config's own settings are, before anything starts (an event-loop
    /// group of 0 threads traps, one of 100,000 runs out of file descriptors).
    func validate() throws {
        if let threads { try CommandLineChecks.threads(threads) }
        if let logLevel { try CommandLineChecks.logLevel(logLevel) }
        if drainTimeoutMs < 0 {
            throw ValidationError("--drain-timeout-ms: expected 0 or more milliseconds, found \(drainTimeoutMs)")
        }
        if let workers, !SupervisionSettings.workerRange.contains(workers) {
            throw ValidationError("--workers: expected 1...64, found \(workers)")
        }
    }

    func run() throws {
        if let role = WorkerRole.fromEnvironment() {
            try serve(as: role)
        } else if singleProcess {
            try serve(as: nil)
        } else {
            try supervise()
        }
    }

    /// The supervisor: reads the config only for its log level and `supervision:` settings (a
    /// config that does not parse is the first worker's to report), then runs the workers.
    private func supervise() throws {
        // Before any thread exists (the admin endpoint's event loop below, logging): the signals
        // the supervisor takes synchronously are blocked, so that every thread inherits the mask
        // and none of them can receive one at its default action (which would end the
        // supervisor, and with it every worker).
        var supervisorSignals = sigset_t()
        sigemptyset(&supervisorSignals)
        for signal in [SIGINT, SIGTERM, SIGHUP, SIGCHLD] { sigaddset(&supervisorSignals, signal) }
        pthread_sigmask(SIG_BLOCK, &supervisorSignals, nil)

        let parsed = try? SluiceConfig.load(path: config)
        Sluice.bootstrapObservability(logLevel: Logger.Level(rawValue: logLevel ?? parsed?.logLevel ?? "info") ?? .info)
        var settings = parsed?.supervision ?? SupervisionSettings()
        if let workers { settings.workers = workers }
        // The admin endpoint lives here, where a worker crash cannot take it down, and forwards
        // each request to every worker's private socket.
        var admin: (server: AdminServer, socketDirectory: String)?
        if let parsed {
            do {
                admin = try Sluice.startSupervisorAdmin(parsed, workers: settings.workers)
            } catch {
                FileHandle.standardError.write(Data("sluice: cannot start the admin endpoint:\n\(error)\n".utf8))
                throw ExitCode(1)
            }
        }
        let status = Supervisor(arguments: CommandLine.arguments, settings: settings).run()
        if let admin {
            admin.server.stop()
            try? FileManager.default.removeItem(atPath: admin.socketDirectory)
        }
        if status != 0 { throw ExitCode(status) }
    }

    /// A worker (`role` from its supervisor) or `--single-process`: load the plugins and serve.
    private func serve(as role: WorkerRole?) throws {
        role?.installCrashHandler()  // first: a crash in a plugin's config_new is reported too
        // SIGINT and SIGTERM are blocked in every thread (the event loops inherit the mask) and
        // taken synchronously by the main thread below, which then stops the server.
        var stopSignals = sigset_t()
        sigemptyset(&stopSignals)
        sigaddset(&stopSignals, SIGINT)
        sigaddset(&stopSignals, SIGTERM)
        sigaddset(&stopSignals, SIGHUP)
        pthread_sigmask(SIG_BLOCK, &stopSignals, nil)

        let prepared: Sluice.Prepared
        do {
            // Plugins may log while loading, so logging is set up first: the command line's level,
            // else the config's (a config that does not parse reports that just below).
            let level = logLevel ?? (try? SluiceConfig.load(path: config))?.logLevel ?? "info"
            Sluice.bootstrapObservability(logLevel: Logger.Level(rawValue: level) ?? .info)
            prepared = try Sluice.prepare(configPath: config, tryBinding: !(role?.portsHeld ?? false),
                                          quarantined: role?.quarantined ?? [:])
        } catch {
            FileHandle.standardError.write(Data("sluice: configuration refused:\n\(error)\n".utf8))
            throw ExitCode(2)
        }
        let server: SluiceServer
        do {
            server = try Sluice.start(prepared, threads: threads, sharedPorts: role != nil)
        } catch {
            FileHandle.standardError.write(Data("sluice: cannot start:\n\(error)\n".utf8))
            throw ExitCode(1)
        }
        let reloader = Reloader(server: server, configPath: config, quarantined: role?.quarantined ?? [:])
        let admin: AdminServer?
        do {
            // Supervised, each worker serves it on its private socket, for the supervisor's
            // endpoint to forward to (see AdminForwarder).
            admin = try Sluice.startAdmin(prepared, worker: role?.index, server: server, reload: {
                let outcome = reloader.reload()
                return (outcome.switched, outcome.description)
            })
        } catch {
            FileHandle.standardError.write(Data("sluice: cannot start the admin endpoint:\n\(error)\n".utf8))
            server.stop(drainTimeout: .milliseconds(0))
            server.releaseConfigs()
            throw ExitCode(1)
        }
        role?.announceReady(server)
        let received = waitForStopSignal(&stopSignals, reloader: reloader)
        admin?.stop()  // no control call runs while the server stops
        FileHandle.standardError.write(Data("sluice: signal \(received), draining clients (up to \(drainTimeoutMs) ms)\n".utf8))
        let cutOff = server.stop(drainTimeout: .milliseconds(max(0, drainTimeoutMs)))
        server.releaseConfigs()  // config_free, now that no connection (no instance) is left
        let how = cutOff == 0 ? "every client was answered" : "\(cutOff) client(s) cut off at the drain timeout"
        FileHandle.standardError.write(Data("sluice: stopped; \(how)\n".utf8))
    }

    /// Takes the blocked signals until SIGINT or SIGTERM (returned); each SIGHUP reloads the config
    /// and plugins (see `Reloader`) and the outcome is logged there.
    private func waitForStopSignal(_ signals: inout sigset_t, reloader: Reloader) -> Int32 {
        var received: Int32 = 0
        while true {
            sigwait(&signals, &received)
            guard received == SIGHUP else { return received }
            _ = reloader.reload()
        }
    }
}
