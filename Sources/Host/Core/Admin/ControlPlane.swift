import Dispatch
import NIOConcurrencyHelpers
import PluginABI

/// The control functions of the running configuration: lists them with the chain steps they can
/// be called on, and calls one with the config of a step (through `ControlInvoker`), then hands
/// what it published to the step's live instances.
///
/// Calls are made one at a time (the caller's serial admin queue; a lock here as well), never on an
/// event loop, as the header promises plugins.
public final class ControlPlane {
    /// The plan whose steps are controlled: the current one (after a reload, the new generation's).
    private let currentPlan: () -> RuntimePlan?
    private let callLock = NIOLock()
    /// How long a call waits for its publishes to reach every live instance.
    static let publishWait = 5.0

    init(currentPlan: @escaping () -> RuntimePlan?) {
        self.currentPlan = currentPlan
    }

    /// One control function as `sluice ctl functions` shows it.
    public struct Listing: Equatable {
        public let plugin: String
        public let transform: String
        public let function: String
        public let parameters: String
        public let help: String
        /// The chain steps it can be called on, "main[0]".
        public var steps: [String]
    }

    /// What a call came to.
    public enum Outcome: Equatable {
        /// Nothing was called: unknown function or step, wrong arguments (the message says which).
        case refused(String)
        /// The function returned `status` (SLUICE_OK or an error) with its reply text, and what it
        /// published reached `instances` live instances (`publishComplete` false: not all within
        /// the wait).
        case returned(status: Int32, reply: String?, instances: Int, publishComplete: Bool)
    }

    public func functions() -> [Listing] {
        guard let plan = currentPlan() else { return [] }
        var listings: [Listing] = []
        for chain in plan.chains {
            for (position, step) in chain.steps.enumerated() {
                guard case .transform(let t) = step else { continue }
                for f in t.controlFunctions {
                    let label = "\(chain.name)[\(position)]"
                    if let i = listings.firstIndex(where: { $0.plugin == t.pluginName && $0.transform == t.transformName && $0.function == f.name }) {
                        listings[i].steps.append(label)
                    } else {
                        listings.append(Listing(plugin: t.pluginName, transform: t.transformName, function: f.name,
                                                parameters: f.signature.text, help: f.help, steps: [label]))
                    }
                }
            }
        }
        return listings
    }

    /// Calls `PLUGIN.FUNCTION` (or `TRANSFORM.FUNCTION`) with the config of chain step `step`
    /// ("main[0]") and the text arguments, converted by the declared signature first.
    public func call(_ qualifiedName: String, step: String, arguments: [String]) -> Outcome {
        guard let dot = qualifiedName.lastIndex(of: "."), dot != qualifiedName.startIndex,
              qualifiedName.index(after: dot) != qualifiedName.endIndex else {
            return .refused("expected PLUGIN.FUNCTION, found '\(qualifiedName)'")
        }
        let owner = String(qualifiedName[..<dot])
        let name = String(qualifiedName[qualifiedName.index(after: dot)...])
        guard let plan = currentPlan() else { return .refused("no configuration is running") }
        let transform: TransformStep
        switch Self.resolve(step: step, in: plan) {
        case .success(let t): transform = t
        case .failure(let refusal): return .refused(refusal.message)
        }
        guard owner == transform.pluginName || owner == transform.transformName else {
            return .refused("step \(step) is transform '\(transform.transformName)' of plugin '\(transform.pluginName)', not '\(owner)'")
        }
        guard let function = transform.controlFunctions.first(where: { $0.name == name }) else {
            let known = transform.controlFunctions.map(\.name)
            return .refused("\(transform.pluginName) (\(transform.transformName) at \(step)) has no control function '\(name)' (it has: \(known.isEmpty ? "none" : known.joined(separator: ", ")))")
        }
        let converted: [ControlSignature.Argument]
        do {
            converted = try function.signature.convert(arguments)
        } catch {
            return .refused("\(owner).\(name)(\(function.signature.text)): \(error)")
        }
        return callLock.withLock { invoke(function, of: transform, arguments: converted) }
    }

    private func invoke(_ function: ControlFunction, of step: TransformStep, arguments: [ControlSignature.Argument]) -> Outcome {
        let state = ControlCallState.shared
        // Exclusive of instance_new and config_free of this config; the instances registered when
        // the function returned are the ones its publishes go to.
        let result: (Int32, ControlCallState.Finished, [LiveInstances.Entry])? = step.liveInstances.exclusively { current in
            guard step.hasConfig else { return nil }
            let ctl = state.begin()
            let status: Int32
            do {
                // A crash in the plugin's function is recorded as this step's (the supervisor names it).
                status = try recordingCrashStep(step.crashLabels, .controlFunction) {
                    Result { try ControlInvoker.call(function.function, config: step.config, ctl: ctl, arguments: arguments) }
                }.get()
            } catch {
                _ = state.end()
                HostLog.host.error("control call \(step.pluginName).\(function.name): \(error)")
                return (SLUICE_ERROR, ControlCallState.Finished(reply: Array("\(error)".utf8), publishes: []), [])
            }
            let finished = state.end()
            return (status, finished, finished.publishes.isEmpty ? [] : current())
        }
        guard let (status, finished, instances) = result else {
            return .refused("the config of \(step.label) was freed (the configuration was replaced)")
        }
        let complete = Self.dispatch(finished.publishes, to: instances, labels: step.crashLabels)
        let reply = finished.reply.map { String(decoding: $0, as: UTF8.self) }
        return .returned(status: status, reply: reply, instances: finished.publishes.isEmpty ? 0 : instances.count,
                         publishComplete: complete)
    }

    /// Runs every publish on each instance's event loop (in order), then each done callback once;
    /// waits up to `publishWait` seconds for all of it. Returns whether everything ran in time.
    static func dispatch(_ publishes: [ControlCallState.Publish], to instances: [LiveInstances.Entry],
                         labels: CrashLabels) -> Bool {
        guard !publishes.isEmpty else { return true }
        guard !instances.isEmpty else {
            for p in publishes { p.done?(p.data) }
            return true
        }
        let remaining = NIOLockedValueBox(instances.count)
        let group = DispatchGroup()
        for entry in instances {
            group.enter()
            entry.eventLoop.execute {
                if entry.isAlive {
                    recordingCrashStep(labels, .controlPublish) {
                        for p in publishes { p.apply(entry.instance, p.data) }
                    }
                }
                if remaining.withLockedValue({ $0 -= 1; return $0 == 0 }) {
                    for p in publishes { p.done?(p.data) }
                }
                group.leave()
            }
        }
        return group.wait(timeout: .now() + publishWait) == .success
    }

    struct Refusal: Error {
        let message: String
    }

    /// The transform step "CHAIN[N]" names.
    static func resolve(step: String, in plan: RuntimePlan) -> Result<TransformStep, Refusal> {
        guard step.hasSuffix("]"), let open = step.firstIndex(of: "["),
              let position = Int(step[step.index(after: open)..<step.index(before: step.endIndex)]), position >= 0
        else {
            return .failure(Refusal(message: "expected a chain step as CHAIN[N] (e.g. main[0]), found '\(step)'"))
        }
        let chainName = String(step[..<open])
        guard let chainIndex = plan.chainIndex[chainName] else {
            return .failure(Refusal(message: "no chain named '\(chainName)' (chains: \(plan.chains.map(\.name).joined(separator: ", ")))"))
        }
        let chain = plan.chains[chainIndex]
        guard position < chain.steps.count else {
            return .failure(Refusal(message: "chain '\(chainName)' has \(chain.steps.count) steps (0 to \(chain.steps.count - 1)); there is no step \(position)"))
        }
        guard case .transform(let t) = chain.steps[position] else {
            return .failure(Refusal(message: "\(step) is a sink, not a transform"))
        }
        return .success(t)
    }
}
