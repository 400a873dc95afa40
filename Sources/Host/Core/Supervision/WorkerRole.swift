#if canImport(Glibc)
import Glibc
#endif
import CrashRecord
import Metrics
import NIOCore

/// What a supervised worker process learns from its supervisor: the environment it was spawned
/// with (the names are `WorkerRole.Variable`) and the pipe it reports on. The pipe carries lines:
/// "ready" once the worker listens, and "crash signal=N plugin=… hook=…" from the crash handler.
public struct WorkerRole {
    enum Variable {
        /// The write end of the report pipe (a file descriptor number).
        static let pipe = "SLUICE_WORKER_PIPE"
        /// The worker's slot, 0...workers-1 (for logs).
        static let index = "SLUICE_WORKER_INDEX"
        /// "1" when other workers may already hold the ports (no trial bind: it would fail).
        static let sharedPorts = "SLUICE_WORKER_PORTS_HELD"
        /// Quarantined chains: lines "chain\tmessage".
        static let quarantine = "SLUICE_WORKER_QUARANTINE"
        /// Crashes so far: lines "plugin\thook\tcount".
        static let crashes = "SLUICE_WORKER_CRASHES"
    }

    public let index: Int
    let pipe: Int32
    /// Whether the ports may be held by other workers already (so not worth a trial bind).
    public let portsHeld: Bool
    /// Chain name → the error every request on it gets.
    public let quarantined: [String: String]
    let crashes: [(plugin: String, hook: String, count: Int)]

    /// The role this process was spawned with, or nil when it is not a supervised worker.
    public static func fromEnvironment() -> WorkerRole? {
        guard let pipeText = getenv(Variable.pipe).map({ String(cString: $0) }), let pipe = Int32(pipeText) else { return nil }
        func variable(_ name: String) -> String { getenv(name).map { String(cString: $0) } ?? "" }
        var quarantined: [String: String] = [:]
        for line in variable(Variable.quarantine).split(separator: "\n") {
            let fields = line.split(separator: "\t", maxSplits: 1)
            if fields.count == 2 { quarantined[String(fields[0])] = String(fields[1]) }
        }
        let crashes = variable(Variable.crashes).split(separator: "\n").compactMap { line -> (String, String, Int)? in
            let fields = line.split(separator: "\t")
            guard fields.count == 3, let count = Int(fields[2]) else { return nil }
            return (String(fields[0]), String(fields[1]), count)
        }
        return WorkerRole(index: Int(variable(Variable.index)) ?? 0, pipe: pipe,
                          portsHeld: variable(Variable.sharedPorts) == "1", quarantined: quarantined, crashes: crashes)
    }

    /// From the start, before any plugin is loaded: the crash handler reports on the pipe, and the
    /// worker dies with its supervisor (no orphan keeps the ports).
    public func installCrashHandler() {
        _ = fcntl(pipe, F_SETFD, FD_CLOEXEC)
        _ = sluice_crash_die_with_parent(SIGTERM)
        _ = sluice_crash_handler_install(pipe)
    }

    /// Once listening: an alternate signal stack on every event loop (for a plugin that overflows
    /// its stack), the crash counts as metrics, then "ready" to the supervisor.
    public func announceReady(_ server: SluiceServer) {
        for loop in server.group.makeIterator() {
            try? loop.submit { _ = sluice_crash_altstack_install() }.wait()
        }
        for crash in crashes {
            Counter(label: "sluice_worker_crashes_total", dimensions: [("plugin", crash.plugin), ("hook", crash.hook)])
                .increment(by: crash.count)
        }
        for chain in quarantined.keys {
            Gauge(label: "sluice_chain_quarantined", dimensions: [("chain", chain)]).record(1)
        }
        let line = Array("ready\n".utf8)
        _ = line.withUnsafeBytes { write(pipe, $0.baseAddress, $0.count) }
    }
}
