import NIOCore
import PluginABI

/// One chain as one client connection uses it: the plugin instances of its transform steps.
/// Lives on the connection's event loop only.
final class ChainInstance {
    unowned let session: ChainSession
    let plan: ChainPlan
    private var instances: [UnsafeMutableRawPointer?]
    private var envs: [InstanceEnv?]
    /// Per transform step, the instance's registration for control_publish.
    private var registrations: [LiveInstances.Entry?]
    /// Set when the client connection closed: outcomes still arriving for its calls are dropped
    /// (their plugin instances are gone).
    private(set) var isClosed = false
    /// Calls handed to a plugin and not completed yet, as an intrusive list (O(1), no hashing on the
    /// hot path). Holding them here rather than by a bare retain lets `close` abandon them.
    private var held: Call?
    /// Per step, a call completed inside its hook and ready for the step's next batch (most
    /// transforms pass or answer at once, so this spares an allocation per batch and step).
    private var spareCalls: [Call?]
    /// Per step, what `run` needs to decide where a batch goes next: trivial values only.
    private let hooks: [StepHooks]
    /// Per sink step, the client's route to that sink (nil until first used).
    private var sinkRoutes: [SinkRoute?]
    /// The one scheduled check for held calls past their deadline (nil when none is pending).
    private var deadlineSweep: Scheduled<Void>?
    private var sweepDue: NIODeadline?

    private struct StepHooks {
        /// The sink index for a sink step, -1 for a transform.
        let sink: Int
        let onRequests: Bool
        let onResponses: Bool
    }

    func hold(_ call: Call) {
        call.nextHeld = held
        held?.previousHeld = call
        held = call
    }

    func release(_ call: Call) {
        if let previous = call.previousHeld { previous.nextHeld = call.nextHeld } else { held = call.nextHeld }
        call.nextHeld?.previousHeld = call.previousHeld
        call.nextHeld = nil
        call.previousHeld = nil
    }

    // MARK: call deadline

    /// A held call became the plugin's turn: make sure a deadline check is scheduled. One check
    /// per chain instance at a time, so calls kept past their hook cost no timer each.
    func callAwaitsPlugin(_ call: Call) {
        let deadline = call.deadlineMilliseconds
        guard deadline > 0, !isClosed, let started = call.turnStarted else { return }
        let due = started + .milliseconds(deadline)
        if let scheduled = sweepDue, scheduled <= due { return }
        scheduleDeadlineSweep(at: due)
    }

    private func scheduleDeadlineSweep(at due: NIODeadline) {
        deadlineSweep?.cancel()
        sweepDue = due
        deadlineSweep = session.eventLoop.scheduleTask(deadline: due) { [weak self] in
            self?.sweepDeadlines()
        }
    }

    /// Fails every held call whose plugin had it longer than the deadline, then schedules the next
    /// check for the oldest call still waiting on its plugin.
    private func sweepDeadlines() {
        deadlineSweep = nil
        sweepDue = nil
        guard !isClosed else { return }
        let now = NIODeadline.now()
        var expired: [Call] = []
        var next: NIODeadline?
        var call = held
        while let c = call {
            call = c.nextHeld
            let milliseconds = c.deadlineMilliseconds
            guard c.isPluginsTurn, milliseconds > 0, var started = c.turnStarted else { continue }
            if let env = envs[c.position], env.sendsInFlight > 0 {
                // The transform waits for a send of its own (tee, redirect): not forgotten. Its
                // deadline starts again from here.
                c.restartTurn(at: now)
                started = now
            }
            let due = started + .milliseconds(milliseconds)
            if due <= now {
                expired.append(c)
            } else if next.map({ due < $0 }) ?? true {
                next = due
            }
        }
        for c in expired { c.expire(after: c.deadlineMilliseconds) }
        if let next, !isClosed, sweepDue.map({ next < $0 }) ?? true {
            scheduleDeadlineSweep(at: next)
        }
    }

    /// Creates every plugin instance of the chain; throws the first instance_new failure.
    init(session: ChainSession, plan: ChainPlan) throws {
        self.session = session
        self.plan = plan
        instances = Array(repeating: nil, count: plan.steps.count)
        envs = Array(repeating: nil, count: plan.steps.count)
        registrations = Array(repeating: nil, count: plan.steps.count)
        spareCalls = Array(repeating: nil, count: plan.steps.count)
        sinkRoutes = Array(repeating: nil, count: plan.steps.count)
        // A quarantined chain runs none of its steps: `run` answers every batch with its error.
        hooks = plan.outOfService != nil ? [] : plan.steps.map { step in
            switch step {
            case .sink(let index): return StepHooks(sink: index, onRequests: false, onResponses: false)
            case .transform(let t):
                return StepHooks(sink: -1, onRequests: t.onRequests != nil, onResponses: t.onResponses != nil)
            }
        }
        for (i, step) in plan.steps.enumerated() where plan.outOfService == nil {
            guard case .transform(let t) = step else { continue }
            guard let instanceNew = t.instanceNew else {
                // No instance to make, but its hooks still get the config: it must be alive.
                guard t.liveInstances.exclusively({ _ in t.hasConfig }) else {
                    close()
                    throw ChainError.configFreed(t.label)
                }
                continue
            }
            let env = InstanceEnv(session: session, step: t)
            envs[i] = env
            let creation = t.liveInstances.create(on: session.eventLoop, hasConfig: { t.hasConfig }) {
                var instance: UnsafeMutableRawPointer?
                let status = session.runningHook(t, .instanceNew) { instanceNew(t.config, env.handle, &instance) }
                return (status, instance)
            }
            guard case .made(let registration) = creation else {
                env.close()
                env.retireHandles()
                envs[i] = nil
                close()
                if case .refused(let status) = creation { throw ChainError.instanceRefused(t.label, status) }
                throw ChainError.configFreed(t.label)
            }
            instances[i] = registration.instance
            registrations[i] = registration
        }
    }

    enum ChainError: Error, CustomStringConvertible {
        case instanceRefused(String, Int32)
        /// The step's config was freed (its configuration generation ended): no instance is made.
        case configFreed(String)
        var description: String {
            switch self {
            case .instanceRefused(let label, let status): return "\(label): instance_new returned status \(status)"
            case .configFreed(let label):
                return "\(label): its configuration generation has ended (config freed); reconnect"
            }
        }
    }

    /// Runs a request batch through the steps from `position` on; the responses go to `receiver`.
    ///
    /// The hot path of every request: it reads only trivial per-step values (`hooks`) and the
    /// routes cached here, so walking steps that pass costs no reference counting of its own.
    func run(_ batch: Batch, from position: Int, receiver: ResponseReceiver) {
        if batch.count == 0 {
            let empty = Batch(kind: Batch.responses, protocolID: batch.protocolID)
            session.eventLoop.execute { receiver.receive(.responses(empty)) }
            return
        }
        guard !isClosed else {
            receiver.receive(.failed("sluice: client connection closed"))
            return
        }
        var position = position
        while position < hooks.count {
            let hook = hooks[position]
            if hook.sink >= 0 {
                sinkRoute(position, hook.sink).send(batch, receiver: receiver)
                return
            }
            if hook.onRequests {
                runStep(position, batch, receiver)
                return
            }
            if hook.onResponses {
                // A step that only looks at responses: it sees the requests as they reach it.
                guard case .transform(let step) = plan.steps[position] else { return }
                let call = Call(chain: self, position: position, step: step, instance: instances[position],
                                requests: batch, receiver: receiver, forwarded: true)
                run(batch.copy(), from: position + 1, receiver: call)  // later changes must not show in on_responses
                return
            }
            position += 1
        }
        receiver.receive(.failed(plan.outOfService ?? "sluice: chain '\(plan.name)' ended without a sink"))
    }

    /// Hands a batch to the on_requests hook of the transform at `position`, reusing the step's
    /// spare call when the plugin completed the previous one inside its hook.
    private func runStep(_ position: Int, _ batch: Batch, _ receiver: ResponseReceiver) {
        var call: Call
        if let spare = spareCalls[position].take() {  // moved out: no retain and release
            spare.restart(requests: batch, receiver: receiver)
            call = spare
        } else {
            guard case .transform(let step) = plan.steps[position] else { return }
            call = Call(chain: self, position: position, step: step, instance: instances[position],
                        requests: batch, receiver: receiver)
        }
        call.start()
        if call.isReusable, !isClosed, isKnownUniquelyReferenced(&call) {
            call.vacate()
            spareCalls[position] = consume call
        }
    }

    /// The client's route to the sink ending this chain, looked up once per chain instance.
    private func sinkRoute(_ position: Int, _ index: Int) -> SinkRoute {
        if let route = sinkRoutes[position] { return route }
        let route = session.sink(index)
        sinkRoutes[position] = route
        return route
    }

    /// Whether a plugin holds a call of this chain or waits for a send it made.
    var hasPendingWork: Bool {
        held != nil || envs.contains { ($0?.sendsInFlight ?? 0) > 0 }
    }

    /// Frees every plugin instance (timers and pending send completions are cancelled first).
    func close() {
        isClosed = true
        deadlineSweep?.cancel()
        deadlineSweep = nil
        spareCalls.removeAll()  // they reference this chain instance
        for i in sinkRoutes.indices { sinkRoutes[i] = nil }
        // Calls the plugins never completed are abandoned (no hook runs for them again); the
        // plugins free their own per-call state in instance_free.
        while let call = held {
            held = call.nextHeld
            call.nextHeld = nil
            call.previousHeld = nil
            call.abandon()
        }
        for i in plan.steps.indices.reversed() {
            guard let env = envs[i] else { continue }
            env.close()
            if case .transform(let t) = plan.steps[i], let registration = registrations[i] {
                t.liveInstances.remove(registration)  // no publish reaches it from here on
                registrations[i] = nil
            }
            if case .transform(let t) = plan.steps[i], let free = t.instanceFree {
                let instance = instances[i]
                session.runningHook(t, .instanceFree) { free(instance) }
            }
            env.retireHandles()
            // The env (and its timer handles) stays valid until instance_free returned, and until
            // the next event-loop turn: a plugin still on the stack may hold its pointer.
            session.eventLoop.execute { withExtendedLifetime(env) {} }
            envs[i] = nil
            instances[i] = nil
        }
    }
}
