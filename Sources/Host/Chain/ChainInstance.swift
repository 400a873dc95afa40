import NIOCore
import PluginABI

/// One chain as one client connection uses it: the plugin instances of its transform steps.
/// Lives on the connection's event loop only.
final class ChainInstance {
    unowned let session: ChainSession
    let plan: ChainPlan
    private var instances: [UnsafeMutableRawPointer?]
    private var envs: [InstanceEnv?]
    /// Set when the client connection closed: outcomes still arriving for its calls are dropped
    /// (their plugin instances are gone).
    private(set) var isClosed = false
    /// Calls handed to a plugin and not completed yet, as an intrusive list (O(1), no hashing on the
    /// hot path). Holding them here rather than by a bare retain lets `close` abandon them.
    private var held: Call?
    /// Per step, a call completed inside its hook and ready for the step's next batch (most
    /// transforms pass or answer at once, so this spares an allocation per batch and step).
    private var spareCalls: [Call?]

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

    /// Creates every plugin instance of the chain; throws the first instance_new failure.
    init(session: ChainSession, plan: ChainPlan) throws {
        self.session = session
        self.plan = plan
        instances = Array(repeating: nil, count: plan.steps.count)
        envs = Array(repeating: nil, count: plan.steps.count)
        spareCalls = Array(repeating: nil, count: plan.steps.count)
        for (i, step) in plan.steps.enumerated() {
            guard case .transform(let t) = step, let instanceNew = t.instanceNew else { continue }
            let env = InstanceEnv(session: session, step: t)
            envs[i] = env
            var instance: UnsafeMutableRawPointer?
            let status = instanceNew(t.config, env.handle, &instance)
            guard status == SLUICE_OK else {
                env.close()
                envs[i] = nil
                close()
                throw ChainError.instanceRefused(t.label, status)
            }
            instances[i] = instance
        }
    }

    enum ChainError: Error, CustomStringConvertible {
        case instanceRefused(String, Int32)
        var description: String {
            switch self {
            case .instanceRefused(let label, let status): return "\(label): instance_new returned status \(status)"
            }
        }
    }

    /// Runs a request batch through the steps from `position` on; the responses go to `receiver`.
    func run(_ batch: Batch, from position: Int, receiver: ResponseReceiver) {
        var batch = batch
        var receiver = receiver
        var position = position
        if batch.count == 0 {
            let empty = Batch(kind: Batch.responses, protocolID: batch.protocolID)
            session.eventLoop.execute { receiver.receive(.responses(empty)) }
            return
        }
        while position < plan.steps.count {
            switch plan.steps[position] {
            case .sink(let index):
                session.sink(index).send(batch, receiver: receiver)
                return
            case .transform(let step):
                if step.onRequests == nil {
                    if step.onResponses != nil {
                        receiver = Call(chain: self, position: position, step: step, instance: instances[position],
                                        requests: batch, receiver: receiver, forwarded: true)
                        batch = batch.copy()  // as in Call.forward: later changes must not show in on_responses
                    }
                    position += 1
                    continue
                }
                var call: Call
                if let spare = spareCalls[position] {
                    spareCalls[position] = nil
                    spare.restart(requests: batch, receiver: receiver)
                    call = spare
                } else {
                    call = Call(chain: self, position: position, step: step, instance: instances[position],
                                requests: batch, receiver: receiver)
                }
                call.start()
                if call.isReusable, !isClosed, isKnownUniquelyReferenced(&call) {
                    call.vacate()
                    spareCalls[position] = call
                }
                return
            }
        }
        receiver.receive(.failed("sluice: chain '\(plan.name)' ended without a sink"))
    }

    /// Frees every plugin instance (timers and pending send completions are cancelled first).
    func close() {
        isClosed = true
        spareCalls.removeAll()  // they reference this chain instance
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
            if case .transform(let t) = plan.steps[i], let free = t.instanceFree {
                free(instances[i])
            }
            // The env (and its timer handles) stays valid until instance_free returned, and until
            // the next event-loop turn: a plugin still on the stack may hold its pointer.
            session.eventLoop.execute { withExtendedLifetime(env) {} }
            envs[i] = nil
            instances[i] = nil
        }
    }
}
