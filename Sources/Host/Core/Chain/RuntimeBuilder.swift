import NIOSSL
import PluginABI

/// Turns a validated config plus the loaded plugins into the `RuntimePlan`: resolves transform
/// names, calls each transform's config_new with its YAML, and checks targets and cycles.
enum RuntimeBuilder {
    struct SourcePlan {
        let host: String
        let port: Int
        let chainIndex: Int
        let maxFrameBytes: Int
        let maxClients: Int
        let idleTimeoutMilliseconds: Int64
        /// The users clients must authenticate as (nil: no authentication).
        let clientAuth: RedisClientAuth?
        /// TLS for clients (nil: plain TCP).
        let tls: NIOSSLContext?
        /// Reply and request byte limits and the request timeout of each client.
        var limits = ClientLimits()
        /// The protocol of the source's clients.
        var kind: SluiceConfig.SourceKind = .redis
        /// A `cassandra` source's client authentication (`clientAuth` is Redis's).
        var cqlAuthentication: CQLClientConnection.Authentication = .none
    }

    /// `quarantined`: chain name → the error its requests get (from the supervisor; see `ChainPlan`).
    static func build(_ config: SluiceConfig, plugins: PluginLoader.Result,
                      quarantined: [String: String] = [:]) throws -> (RuntimePlan, [SourcePlan]) {
        var errors: [ConfigError] = []
        for required in config.requiredPlugins where !plugins.loaded.contains(where: { $0.name == required.name }) {
            let refusals = plugins.refused.filter { $0.path.split(separator: "/").last?.contains(required.name) ?? false }
            let why = refusals.isEmpty
                ? "no loaded plugin has that name (loaded: \(plugins.loaded.map(\.name).joined(separator: ", ")))"
                : refusals.map { "\($0.path): \($0.reason)" }.joined(separator: "; ")
            errors.append(ConfigError(file: config.file, line: required.line, column: required.column,
                                      message: "required plugin '\(required.name)' is not available: \(why)"))
        }

        var transformsByName: [String: [(LoadedPlugin, LoadedTransform)]] = [:]
        for plugin in plugins.loaded {
            for t in plugin.transforms { transformsByName[t.name, default: []].append((plugin, t)) }
        }

        var targets: [String: TargetRef] = [:]
        let sinks = config.sinks.map { sink in
            var tls: SinkPlan.TLS?
            if let settings = sink.tls {
                do {
                    tls = SinkPlan.TLS(context: try TLSContexts.client(settings),
                                       serverName: settings.serverName ?? SinkPlan.TLS.defaultServerName(sink.host))
                } catch {
                    errors.append(config.error(sink.node, "sink '\(sink.name)': cannot set up TLS: \(error)"))
                }
            }
            let isCQL = sink.kind == .cassandra
            var plan = SinkPlan(name: sink.name, host: sink.host, port: sink.port,
                                connectTimeoutMilliseconds: sink.connectTimeoutMilliseconds,
                                replyTimeoutMilliseconds: sink.replyTimeoutMilliseconds, maxFrameBytes: sink.maxReplyBytes,
                                redis: RedisSinkSettings(authCommand: isCQL ? nil : sink.credentials.map(RedisSinkSettings.authCommand)),
                                tls: tls)
            if isCQL {
                plan.protocolKind = .cql
                plan.cql.credentials = sink.credentials
            }
            return plan
        }
        for (i, sink) in sinks.enumerated() { targets[sink.name] = TargetRef(name: sink.name, kind: .sink(i)) }
        for (i, chain) in config.chains.enumerated() { targets[chain.name] = TargetRef(name: chain.name, kind: .chain(i)) }

        var chains: [ChainPlan] = []
        var sendsTo: [String: [String]] = [:]
        let sinkIndex = Dictionary(uniqueKeysWithValues: sinks.enumerated().map { ($1.name, $0) })
        // The protocols of the sources that run each chain directly; chains reached through sends
        // are checked once the sends are known (after config_new), below.
        var sourceProtocols: [String: UInt32] = [:]
        for source in config.sources { sourceProtocols[source.chain, default: 0] |= source.kind.protocolFlag }
        var transformSteps: [String: [ProtocolCheck.Step]] = [:]
        for chain in config.chains {
            var steps: [StepPlan] = []
            for (position, step) in chain.steps.enumerated() {
                switch step.kind {
                case .sink:
                    if let index = sinkIndex[step.name] { steps.append(.sink(index)) }
                case .transform:
                    guard let candidates = transformsByName[step.name] else {
                        let known = transformsByName.keys.sorted().joined(separator: ", ")
                        errors.append(config.error(step.node, "chain '\(chain.name)': unknown transform '\(step.name)' (transforms of the loaded plugins: \(known.isEmpty ? "none" : known))"))
                        continue
                    }
                    guard candidates.count == 1, let (plugin, transform) = candidates.first else {
                        errors.append(config.error(step.node, "chain '\(chain.name)': transform '\(step.name)' is offered by several plugins: \(candidates.map(\.0.path).joined(separator: ", "))"))
                        continue
                    }
                    let checked = ProtocolCheck.Step(chain: chain.name, position: position, name: step.name,
                                                     node: step.node, protocols: transform.protocols)
                    if let refusal = ProtocolCheck.refusal(checked, reachedBy: sourceProtocols[chain.name] ?? 0) {
                        errors.append(config.error(step.node, refusal))
                        continue
                    }
                    transformSteps[chain.name, default: []].append(checked)
                    // A quarantined chain runs none of its steps (ChainInstance answers its error),
                    // so its config_new, which may be what crashed the workers, is not called either.
                    if quarantined[chain.name] != nil { continue }
                    let label = "\(chain.name)[\(position)] \(step.name)"
                    let planned = TransformStep(pluginName: plugin.name, transformName: transform.name, label: label,
                                                descriptor: transform)
                    let env = ConfigEnv(file: config.file, step: planned, stepNode: step.node, chainName: chain.name,
                                        targets: targets)
                    var object: UnsafeMutableRawPointer?
                    let status = recordingCrashStep(planned.crashLabels, .configNew) {
                        planned.configNew(env.handle, step.config.handle, &object)
                    }
                    errors.append(contentsOf: env.errors)
                    if status != SLUICE_OK {
                        if env.errors.isEmpty {
                            errors.append(config.error(step.node, "\(label): config_new returned status \(status)"))
                        }
                        continue
                    }
                    planned.config = object
                    planned.hasConfig = true
                    sendsTo[chain.name, default: []].append(contentsOf: env.resolvedChains)
                    steps.append(.transform(planned))
                }
            }
            chains.append(ChainPlan(name: chain.name, steps: steps, outOfService: quarantined[chain.name]))
        }

        for refused in ProtocolCheck.refusalsThroughSends(sourceProtocols: sourceProtocols, sendsTo: sendsTo,
                                                          steps: transformSteps) {
            errors.append(config.error(refused.step.node, refused.message))
        }
        for chain in config.chains {
            if let cycle = findCycle(from: chain.name, edges: sendsTo) {
                errors.append(config.error(chain.node, "chains send to each other in a loop: \(cycle.joined(separator: " -> "))"))
                break
            }
        }

        let plan = RuntimePlan(chains: chains, sinks: sinks, callDeadlineMilliseconds: config.callDeadlineMilliseconds)
        let sources = config.sources.compactMap { source -> SourcePlan? in
            var tls: NIOSSLContext?
            if let settings = source.tls {
                do {
                    tls = try TLSContexts.server(settings)
                } catch {
                    errors.append(config.error(source.node, "source \(source.host):\(source.port): cannot set up TLS: \(error)"))
                }
            }
            return plan.chainIndex[source.chain].map {
                var planned = SourcePlan(host: source.host, port: source.port, chainIndex: $0, maxFrameBytes: source.maxFrameBytes,
                           maxClients: source.maxClients, idleTimeoutMilliseconds: source.idleTimeoutMilliseconds,
                           clientAuth: source.auth.isEmpty || source.kind != .redis ? nil : RedisClientAuth(users: source.auth.map {
                               RedisClientAuth.User(name: Array(($0.username ?? "default").utf8), password: Array($0.password.utf8))
                           }), tls: tls, limits: source.limits)
                planned.kind = source.kind
                if source.kind == .cassandra { planned.cqlAuthentication = CQLClientConnection.Authentication(source) }
                return planned
            }
        }
        if !errors.isEmpty {
            plan.freeConfigs()  // the configs that were made before the error are never used
            throw ConfigErrors(errors: errors)
        }
        return (plan, sources)
    }

    /// A path that leads from `start` back to itself, if any.
    static func findCycle(from start: String, edges: [String: [String]]) -> [String]? {
        var path: [String] = [start]
        var visited: Set<String> = []
        func visit(_ node: String) -> Bool {
            for next in edges[node] ?? [] {
                if next == start {
                    path.append(next)
                    return true
                }
                guard visited.insert(next).inserted else { continue }
                path.append(next)
                if visit(next) { return true }
                path.removeLast()
            }
            return false
        }
        return visit(start) ? path : nil
    }
}
