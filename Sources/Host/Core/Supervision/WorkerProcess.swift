#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// One spawned worker: its process and the read end of its report pipe.
final class WorkerProcess {
    let pid: pid_t
    /// Read end (non-blocking) of the pipe the worker reports on; -1 once closed.
    private(set) var pipe: Int32
    private var pending: [UInt8] = []
    /// The crash handler's line, if the worker wrote one.
    private(set) var crash: WorkerCrashRecord?
    private(set) var saidReady = false
    /// Monotonic milliseconds when it was spawned.
    let spawnedAt: UInt64

    private init(pid: pid_t, pipe: Int32, spawnedAt: UInt64) {
        self.pid = pid
        self.pipe = pipe
        self.spawnedAt = spawnedAt
    }

    /// The report pipe's number in the worker.
    static let pipeInWorker: Int32 = 3

    /// Starts `/proc/self/exe` (this very binary, even if the file was replaced since) with
    /// `arguments` and the supervisor's environment plus `extra`: posix_spawn, never fork, so
    /// nothing of this process's threads or state is copied. The worker starts with SIGINT,
    /// SIGTERM and SIGHUP blocked (and every signal otherwise unblocked), those and SIGCHLD at
    /// their default actions; its report pipe is file descriptor 3.
    static func spawn(arguments: [String], extra: [String: String]) throws -> WorkerProcess {
        var ends: [Int32] = [-1, -1]
        // The supervisor is single-threaded: nothing can spawn between pipe and FD_CLOEXEC.
        guard Glibc.pipe(&ends) == 0 else { throw SpawnFailure("pipe: \(String(cString: strerror(errno)))") }
        let readEnd = ends[0]
        _ = fcntl(readEnd, F_SETFD, FD_CLOEXEC)
        // Above the worker's fd 3, so that dup2 always makes a fresh, inheritable descriptor.
        let writeEnd = fcntl(ends[1], F_DUPFD_CLOEXEC, 10)
        close(ends[1])
        defer { close(writeEnd) }
        _ = fcntl(readEnd, F_SETFL, fcntl(readEnd, F_GETFL) | O_NONBLOCK)

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, writeEnd, pipeInWorker)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // SIGINT, SIGTERM and SIGHUP stay blocked from the first instruction: the worker takes
        // them synchronously once it serves (a SIGHUP or SIGTERM forwarded while it starts waits
        // until then, rather than killing it at the default action).
        var mask = sigset_t()
        sigemptyset(&mask)
        for signal in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&mask, signal) }
        posix_spawnattr_setsigmask(&attributes, &mask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGINT, SIGTERM, SIGHUP, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var environment = ProcessInfo.processInfo.environment
        for (key, value) in extra { environment[key] = value }
        environment[WorkerRole.Variable.pipe] = String(pipeInWorker)
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, "/proc/self/exe", &actions, &attributes, argv, envp)
        guard status == 0 else {
            close(readEnd)
            throw SpawnFailure("posix_spawn: \(String(cString: strerror(status)))")
        }
        return WorkerProcess(pid: pid, pipe: readEnd, spawnedAt: Supervisor.now())
    }

    /// Reads what the worker reported so far; returns true when it said "ready" in this read.
    func readReports() -> Bool {
        guard pipe >= 0 else { return false }
        var becameReady = false
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(pipe, $0.baseAddress, $0.count) }
            if count > 0 {
                pending += chunk[0..<count]
                continue
            }
            if count == 0 {  // every write end is closed: the worker is gone
                close(pipe)
                pipe = -1
            }
            break
        }
        while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
            let line = String(decoding: pending[..<newline], as: UTF8.self)
            pending.removeSubrange(...newline)
            if line == "ready", !saidReady {
                saidReady = true
                becameReady = true
            } else if let record = WorkerCrashRecord(line: line) {
                crash = record
            }
        }
        return becameReady
    }

    /// After the worker was reaped: the last of its reports, then the pipe is closed.
    func finish() {
        _ = readReports()
        if pipe >= 0 {
            close(pipe)
            pipe = -1
        }
    }

    struct SpawnFailure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }
}

/// How a worker ended, from waitpid's status.
struct WorkerExit: CustomStringConvertible {
    let status: Int32

    /// The signal that killed it, if any.
    var signal: Int32? {
        let number = status & 0x7f
        return number != 0 && number != 0x7f ? number : nil
    }

    var exitCode: Int32 { (status >> 8) & 0xff }

    /// What a shell would report: the exit code, or 128 + the signal.
    var shellStatus: Int32 { signal.map { 128 + $0 } ?? exitCode }

    var description: String {
        guard let signal else { return "exited with status \(exitCode)" }
        return "killed by signal \(signal) (\(WorkerExit.name(of: signal)))"
    }

    static func name(of signal: Int32) -> String {
        let names: [Int32: String] = [SIGSEGV: "SIGSEGV", SIGBUS: "SIGBUS", SIGILL: "SIGILL", SIGTRAP: "SIGTRAP",
                                      SIGFPE: "SIGFPE", SIGABRT: "SIGABRT", SIGKILL: "SIGKILL", SIGTERM: "SIGTERM",
                                      SIGINT: "SIGINT", SIGHUP: "SIGHUP", SIGPIPE: "SIGPIPE", SIGUSR1: "SIGUSR1",
                                      SIGUSR2: "SIGUSR2"]
        return names[signal] ?? "signal \(signal)"
    }
}
