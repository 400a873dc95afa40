import Foundation

/// What one reload did: switched to a new generation (and what changed), or refused the new
/// configuration (and why, with file:line:column positions), the running one serving on.
public struct ReloadOutcome: CustomStringConvertible, Sendable {
    /// True when the new generation was built and switched to.
    public let switched: Bool
    /// The generation new clients take after this reload (unchanged when refused).
    public let generation: Int
    /// One line of what changed ("chains changed: main; sources added: 127.0.0.1:7001"), or the
    /// refusal's errors, one per line.
    public let detail: String

    public var description: String {
        switched ? "reloaded: generation \(generation): \(detail)"
                 : "reload refused (generation \(generation) keeps serving):\n\(detail)"
    }
}

/// Hot reload of a running server: re-reads the config file and the plugin directory, validates
/// them as `sluice check` does, and either refuses them (nothing changes) or builds a new
/// generation and switches to it (see docs/operations.md, "Hot reload").
///
/// Reloads run one at a time on the registry's control queue, which is also where the transform
/// configs of old generations are freed: config_new and config_free never run concurrently.
public final class Reloader: @unchecked Sendable {
    private let configPath: String
    private let server: SluiceServer
    /// A supervised worker's quarantined chains (chain name → the error its requests get), kept
    /// through reloads as at start-up.
    private let quarantined: [String: String]

    public init(server: SluiceServer, configPath: String, quarantined: [String: String] = [:]) {
        self.server = server
        self.configPath = configPath
        self.quarantined = quarantined
    }

    /// Reloads and returns what happened. Blocks the calling thread until done (plugins' config_new
    /// run, new ports are bound): never call it on an event loop, use `reload(then:)` there.
    public func reload() -> ReloadOutcome {
        server.registry.controlQueue.sync { perform() }
    }

    /// Reloads on the control queue and passes the outcome to `completion` there.
    public func reload(then completion: @escaping @Sendable (ReloadOutcome) -> Void) {
        server.registry.controlQueue.async { [self] in completion(perform()) }
    }

    /// The generation new clients take.
    public var generation: Int { server.registry.current.number }

    private func perform() -> ReloadOutcome {
        let previous = server.registry.current
        func refuse(_ detail: String) -> ReloadOutcome {
            ReloadMetrics.reloadRefused()
            let outcome = ReloadOutcome(switched: false, generation: previous.number, detail: detail)
            HostLog.host.error("\(outcome.description)")
            return outcome
        }
        // On the control queue, like `SluiceServer.stop`'s flag: a reload never runs alongside
        // or after the stop (its listeners and event loops are going away).
                        guard !server.isStopping else { return refuse("the server is stopping") }
        let prepared: Sluice.Prepared
        do {
            // The ports of sources kept are ours already; those of added sources are bound below.
            prepared = try Sluice.prepare(configPath: configPath, tryBinding: false, quarantined: quarantined)
        } catch {
            return refuse("\(error)")
        }
        for r in prepared.plugins.refused { HostLog.host.warning("plugin refused: \(r.path): \(r.reason)") }
        let next = ConfigGeneration(number: previous.number + 1, prepared: prepared)
        let diff = ConfigDiff(old: previous.snapshot, new: next.snapshot)
        let opened: [(String, SluiceServer.Listener)]
        do {
            opened = try server.openListeners(of: next, added: diff.listenersToOpen)
        } catch let refused as SluiceServer.ListenerRefused {
            prepared.release()  // never installed: config_free for the configs just made
            let config = prepared.config
            let node = config.sources.first { ConfigSnapshot.key(host: $0.host, port: $0.port) == refused.key }?.node
            return refuse("\(ConfigError(file: config.file, line: node?.line ?? 0, column: node?.column ?? 0, message: "source.redis.listen: cannot listen on \(refused.key): \(refused.error)"))")
        } catch {
            prepared.release()
            return refuse("\(error)")
        }
        previous.plan.sharedConnections.carryOver(to: next.plan.sharedConnections,
                                                  sinkIndices: previous.sinkIndices(to: next), nextSinks: next.plan.sinks)
        CQLBackendVersionProbe.probeSinks(of: next.plan, on: server.group)
        server.registry.install(next)
        server.switched(to: next, opened: opened, removed: diff.listenersToClose)
        ReloadMetrics.reloaded(to: next.number)
        let outcome = ReloadOutcome(switched: true, generation: next.number, detail: diff.summary)
        HostLog.host.notice("\(outcome.description)")
        return outcome
    }
}
