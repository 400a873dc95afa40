import Dispatch
import NIOConcurrencyHelpers
import NIOCore

/// The configuration generations of a running server: which one is current, each event loop's
/// view of it (`LoopGeneration`), and the end of old ones.
///
/// - New client connections take `current` when they become active; existing ones compare their
///   generation with their loop's at safe points (see `ClientSession`).
/// - A generation that was replaced and whose last session left has its transform configs freed
///   (config_free) on `controlQueue`, the one thread-ordered place where reloads also run
///   config_new, and the shared backend connections only it used are closed.
/// - Generation objects, and so every `RuntimePlan` and `TransformStep`, are kept for the life of
///   the process: handle tables keep unowned references to steps (a few kilobytes per reload).
///   Plugins are never dlclosed either.
final class GenerationRegistry: @unchecked Sendable {
    private let lock = NIOLock()
    private var currentGeneration: ConfigGeneration
    private var generations: [ConfigGeneration] = []
    private var freed: Set<Int> = []
    /// The server is stopping: the event loops are about to shut down and close every connection.
    private var stopping = false
    private let loops: [ObjectIdentifier: (EventLoop, LoopGeneration)]
    /// Where reloads run (config_new) and old generations are freed (config_free): one at a time.
    let controlQueue = DispatchQueue(label: "sluice.reload")
    /// Called on `controlQueue` after a generation's configs were freed (for logs and tests).
    var onFreed: ((ConfigGeneration) -> Void)?

    init(first: ConfigGeneration, group: EventLoopGroup) {
        currentGeneration = first
        var loops: [ObjectIdentifier: (EventLoop, LoopGeneration)] = [:]
        for loop in group.makeIterator() { loops[ObjectIdentifier(loop)] = (loop, LoopGeneration(first)) }
        self.loops = loops
        for (_, view) in loops.values { view.registry = self }
        adopt(first)
    }

    var current: ConfigGeneration { lock.withLock { currentGeneration } }

    /// The view of `eventLoop` (one of the server's loops). Look it up once per connection.
    func loopGeneration(for eventLoop: EventLoop) -> LoopGeneration {
        if let (_, view) = loops[ObjectIdentifier(eventLoop)] { return view }
        let fixed = LoopGeneration(current)  // not one of the group's loops: a fixed view (tests)
        fixed.registry = self
        return fixed
    }

    /// Makes `next` current: new connections take it at once, each loop learns of it with a task of
    /// its own, and the previous generation is retired (freed after its last session).
    ///
    /// Returns once every loop ran its task, so a request a client sends after the reload was
    /// reported is read on a loop that knows the new generation. (NIO handles a loop's ready
    /// sockets before its queued tasks in one turn: without the wait, a request arriving while the
    /// loop was busy ran on the old chain.) A loop busier than `patience` (a plugin call stuck
    /// until its deadline) is not waited for longer: it learns of `next` when it runs its task.
    /// Never call it on an event loop: it blocks.
    ///
    /// A loop's view may still name the previous generation after it was freed (two reloads before
    /// the loop ran its task); a session never starts on it: `sessionStarted` refuses an ended
    /// generation and the client takes `current` instead (`LoopGeneration.startSession`).
    func install(_ next: ConfigGeneration, patience: DispatchTimeInterval = .seconds(2)) {
        let previous = lock.withLock { () -> ConfigGeneration in
            let previous = currentGeneration
            currentGeneration = next
            return previous
        }
        adopt(next)
        previous.retire()
        let advanced = DispatchSemaphore(value: 0)
        for (loop, view) in loops.values {
            loop.submit { view.advance(to: next) }.whenComplete { _ in advanced.signal() }  // fails once shut down
        }
        let deadline = DispatchTime.now() + patience
        for _ in loops.values where advanced.wait(timeout: deadline) == .timedOut {
            HostLog.host.warning("reload to generation \(next.number): an event loop is still busy after \(patience); its clients take the new generation when it is free")
            break
        }
    }

    /// The server stops: generations that end from now on leave their connections to the shutdown.
    func serverStopping() {
        lock.withLock { stopping = true }
    }

    /// Frees every generation still holding configs (after the server stopped: no session is left).
    func freeAll() {
        controlQueue.sync {
            for generation in lock.withLock({ generations }) { free(generation, closingConnections: false) }
        }
    }

    private func adopt(_ generation: ConfigGeneration) {
        lock.withLock { generations.append(generation) }
        generation.onUnused = { [weak self] unused in
            guard let self else { return }
            controlQueue.async { self.free(unused, closingConnections: true) }
        }
    }

    /// On `controlQueue`: config_free for each transform of `generation` (once) and, while the
    /// event loops run, its own shared backend connections closed.
    private func free(_ generation: ConfigGeneration, closingConnections: Bool) {
        let (alreadyFreed, stillUsed, stopping) = lock.withLock { () -> (Bool, Set<ObjectIdentifier>, Bool) in
            let already = !freed.insert(generation.number).inserted
            var used = Set<ObjectIdentifier>()
            for other in generations where other !== generation && !freed.contains(other.number) {
                used.formUnion(other.plan.sharedConnections.identities)
            }
            return (already, used, self.stopping)
        }
        guard !alreadyFreed else { return }
        generation.plan.freeConfigs()
        if closingConnections, !stopping { generation.plan.sharedConnections.closeAll(except: stillUsed) }
        HostLog.host.debug("configuration generation \(generation.number) ended: its transform configs are freed")
        onFreed?(generation)
    }
}
