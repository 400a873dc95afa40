#if canImport(Glibc)
import Glibc
#endif
import Logging

/// `sluice run` without `--single-process`: a process that loads no plugin and serves no client,
/// so nothing a plugin does can take it down. It spawns the workers (this binary again, see
/// `WorkerProcess.spawn`), which listen on the same ports (SO_REUSEPORT), restarts one that dies,
/// names the signal and the plugin hook that was running, and quarantines a chain whose plugin
/// keeps crashing them (`supervision.quarantine_after`).
///
/// Start-up is not retried: until every first worker said "ready", a worker that exits (a config
/// refused, a port in use) makes the supervisor stop the others and exit with the same status, its
/// messages being the worker's own on the shared stderr. SIGINT and SIGTERM are forwarded, and the
/// supervisor exits once every worker drained and exited; SIGHUP is forwarded to every worker.
///
/// Single-threaded: one loop waits for signals (sigtimedwait, 20 ms at most) and reads the
/// workers' report pipes in between.
public final class Supervisor {
    static let log = Logger(label: "sluice.supervisor")

    /// The supervisor's phase. Workers are spawned one by one at start-up (the first one alone, so
    /// a refused config is reported once), and none is restarted once stopping.
    enum Phase { case startingUp, serving, stopping }

    /// One worker slot's state.
    enum Slot {
        /// Spawned, not ready yet. `replacing`: the monotonic time the worker it replaces died.
        case starting(WorkerProcess, replacing: UInt64?)
        case serving(WorkerProcess)
        /// Its worker failed to start again; another try at `at` (monotonic ms).
        case waiting(at: UInt64, since: UInt64)
        /// Not running, not to be restarted (before start-up reached it, or stopping).
        case idle
    }

    private let arguments: [String]
    private let settings: SupervisionSettings
    private var phase = Phase.startingUp
    private var slots: [Slot]
    /// Consecutive failed starts per slot (for the back-off of restarts that fail before ready).
    private var failedStarts: [Int]
    private var ledger: CrashLedger
    /// The status the supervisor exits with once stopping is over (the worst of the workers').
    private var stopStatus: Int32 = 0
    private let handledSignals: sigset_t

    /// `arguments`: this process's command line, which each worker is started with.
    public init(arguments: [String], settings: SupervisionSettings) {
        self.arguments = arguments
        self.settings = settings
        slots = Array(repeating: .idle, count: settings.workers)
        failedStarts = Array(repeating: 0, count: settings.workers)
        ledger = CrashLedger(settings: settings)
        var set = sigset_t()
        sigemptyset(&set)
        for signal in [SIGINT, SIGTERM, SIGHUP, SIGCHLD] { sigaddset(&set, signal) }
        handledSignals = set
    }

    /// Runs until the workers stopped; returns the status to exit with.
    public func run() -> Int32 {
        var blocked = handledSignals
        pthread_sigmask(SIG_BLOCK, &blocked, nil)
        guard start(slot: 0, replacing: nil) else { return 1 }
        while true {
            var waitFor = handledSignals
            var timeout = timespec(tv_sec: 0, tv_nsec: 20_000_000)
            let signal = sigtimedwait(&waitFor, nil, &timeout)
            if signal > 0 { handle(signal: signal) }
            readReports()
            if let status = reapWorkers() { return status }
            startDueRestarts()
        }
    }

    static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1000 + UInt64(time.tv_nsec) / 1_000_000
    }

    // MARK: workers

    private var live: [WorkerProcess] {
        slots.compactMap {
            switch $0 {
            case .starting(let worker, _), .serving(let worker): return worker
            case .waiting, .idle: return nil
            }
        }
    }

    /// Spawns the worker of `slot`; false (logged) if the system refused.
    @discardableResult
    private func start(slot: Int, replacing diedAt: UInt64?) -> Bool {
        var extra = ledger.environment
        extra[WorkerRole.Variable.index] = String(slot)
        // Only the very first worker may try binding the ports (as `sluice check` does, to report
        // a port in use at its line); later ones would fail that trial against their siblings.
        extra[WorkerRole.Variable.sharedPorts] = slot == 0 && diedAt == nil ? "0" : "1"
        do {
            let worker = try WorkerProcess.spawn(arguments: arguments, extra: extra)
            slots[slot] = .starting(worker, replacing: diedAt)
            return true
        } catch {
            Self.log.error("cannot start worker \(slot): \(error)")
            slots[slot] = .waiting(at: Self.now() + 1000, since: diedAt ?? Self.now())
            return false
        }
    }

    private func readReports() {
        for slot in slots.indices {
            guard case .starting(let worker, let diedAt) = slots[slot], worker.readReports() else { continue }
            slots[slot] = .serving(worker)
            failedStarts[slot] = 0
            if let diedAt {
                Self.log.notice("worker \(slot) (pid \(worker.pid)) serving again, \(Self.now() - diedAt) ms after its predecessor died")
            }
            if phase == .startingUp { continueStartUp() }
        }
    }

    /// The first worker is ready: its siblings start now; once all are ready, start-up is over.
    private func continueStartUp() {
        if let next = slots.firstIndex(where: { if case .idle = $0 { return true } else { return false } }) {
            if case .serving = slots[0] { start(slot: next, replacing: nil) }
            return
        }
        if slots.allSatisfy({ if case .serving = $0 { return true } else { return false } }) {
            phase = .serving
            Self.log.info("supervising \(slots.count) worker(s): \(live.map { String($0.pid) }.joined(separator: ", "))")
        }
    }

    /// Collects every worker that ended; returns the status to exit with when the supervisor is done.
    private func reapWorkers() -> Int32? {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            guard pid > 0 else { break }
            guard let slot = slots.firstIndex(where: {
                switch $0 {
                case .starting(let w, _), .serving(let w): return w.pid == pid
                default: return false
                }
            }) else { continue }
            if let exitStatus = workerEnded(slot: slot, exit: WorkerExit(status: status)) { return exitStatus }
        }
        if phase == .stopping, live.isEmpty { return stopStatus }
        return nil
    }

    private func workerEnded(slot: Int, exit: WorkerExit) -> Int32? {
        let worker: WorkerProcess
        let wasServing: Bool
        switch slots[slot] {
        case .starting(let w, _): (worker, wasServing) = (w, false)
        case .serving(let w): (worker, wasServing) = (w, true)
        default: return nil
        }
        worker.finish()
        let died = Self.now()
        slots[slot] = .idle
        let running = exit.signal == nil ? "" : " in " + (worker.crash?.running ?? "an unknown place (no crash record: killed from outside?)")
        switch phase {
        case .stopping:
            if exit.status != 0 {
                Self.log.warning("worker \(slot) (pid \(worker.pid)) \(exit)\(running) while stopping")
                if stopStatus == 0 { stopStatus = exit.shellStatus }
            }
            return nil
        case .startingUp where !wasServing:
            // The worker's own messages (config refused, cannot listen) are on stderr already.
            if exit.signal != nil { Self.log.error("worker \(slot) (pid \(worker.pid)) \(exit)\(running) before it was ready") }
            stopAll(SIGTERM)
            for w in live { var s: Int32 = 0; waitpid(w.pid, &s, 0) }
            return exit.shellStatus
        case .startingUp, .serving:
            if !wasServing {
                // A restart that fails before listening (the config on disk changed, a plugin's
                // config_new crashes…): retried with a back-off, never in a tight loop.
                // A crash in a plugin hook counts toward its chain's quarantine here too: the
                // quarantined chain's config_new is not called by the next try.
                failedStarts[slot] += 1
                let delay = UInt64(min(30_000, 1000 << min(failedStarts[slot] - 1, 5)))
                Self.log.error("worker \(slot) (pid \(worker.pid)) \(exit)\(running) before it was ready; next try in \(delay) ms")
                recordCrash(of: worker, exit: exit, at: died)
                slots[slot] = .waiting(at: died + delay, since: died)
                return nil
            }
            Self.log.error("worker \(slot) (pid \(worker.pid)) \(exit)\(running); restarting it")
            recordCrash(of: worker, exit: exit, at: died)
            start(slot: slot, replacing: died)
            return nil
        }
    }

    /// Counts a worker's death by a signal with a crash record in the ledger (quarantining its
    /// chain when that was one crash too many).
    private func recordCrash(of worker: WorkerProcess, exit: WorkerExit, at died: UInt64) {
        guard exit.signal != nil, let crash = worker.crash, let quarantine = ledger.record(crash, at: died) else { return }
        Self.log.critical("quarantine: \(quarantine.message); its requests get that error until Sluice restarts")
    }

    private func startDueRestarts() {
        guard phase != .stopping else { return }
        let now = Self.now()
        for slot in slots.indices {
            if case .waiting(let at, let since) = slots[slot], at <= now { start(slot: slot, replacing: since) }
        }
    }

    // MARK: signals

    private func handle(signal: Int32) {
        switch signal {
        case SIGINT, SIGTERM:
            if phase != .stopping {
                phase = .stopping
                for slot in slots.indices {
                    if case .waiting = slots[slot] { slots[slot] = .idle }
                }
            }
            stopAll(signal)
        case SIGHUP:
            let workers = live
            for worker in workers { kill(worker.pid, SIGHUP) }
            Self.log.info("SIGHUP forwarded to \(workers.count) worker(s)")
        default:
            break  // SIGCHLD: the loop reaps
        }
    }

    private func stopAll(_ signal: Int32) {
        for worker in live { kill(worker.pid, signal) }
    }
}
