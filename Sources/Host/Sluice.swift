import Foundation
import Logging
import NIOCore

/// The host's entry points, as the `sluice` command uses them.
public enum Sluice {
    public static var version: String { HostAPI.version }

    /// What `sluice check` and `sluice run` share: a validated config with its plugins loaded and
    /// every transform configured.
    public struct Prepared {
        public let config: SluiceConfig
        public let plugins: PluginLoader.Result
        let plan: RuntimePlan
        let sources: [RuntimeBuilder.SourcePlan]

        /// Frees every transform's config (config_free). Call once nothing runs on the plan any
        /// more: after `SluiceServer.stop`, when start-up failed, or when `sluice check` is done.
        public func release() {
            plan.freeConfigs()
        }

        public var summary: String {
            var lines = ["config \(config.file): OK"]
            for p in plugins.loaded {
                lines.append("  plugin \(p.name) \(p.version) (ABI \(p.abiMajor).\(p.abiMinor)): \(p.transforms.map(\.name).joined(separator: ", "))")
            }
            for r in plugins.refused { lines.append("  refused \(r.path): \(r.reason)") }
            for s in config.sinks { lines.append("  sink \(s.name) -> redis \(s.host):\(s.port)") }
            for c in config.chains {
                lines.append("  chain \(c.name): \(c.steps.map { $0.kind == .sink ? "sink \($0.name)" : $0.name }.joined(separator: " -> "))")
            }
            for s in config.sources { lines.append("  source \(s.kind.rawValue) \(s.host):\(s.port) -> chain \(s.chain)") }
            return lines.joined(separator: "\n")
        }
    }

    /// Loads the config, its plugins and configures every transform, and checks the addresses it
    /// listens on (trying to bind them unless `tryBinding` is false). Throws `ConfigErrors`.
    /// `quarantined` (supervised workers): chain name → the error its requests get instead.
    public static func prepare(configPath: String, tryBinding: Bool = true,
                               quarantined: [String: String] = [:]) throws -> Prepared {
        let config = try SluiceConfig.load(path: configPath)
        let plugins = config.pluginDirectory.map { PluginLoader.loadDirectory($0) } ?? PluginLoader.Result()
        var errors: [ConfigError] = []
        if let problem = plugins.directoryProblem, let node = config.pluginDirectoryNode {
            errors.append(config.error(node, "plugins.directory: \(problem), so no transform is available"))
        } else if config.pluginDirectory == nil,
                  let step = config.chains.lazy.flatMap(\.steps).first(where: { $0.kind == .transform }) {
            errors.append(config.error(step.node, "transform '\(step.name)' is used but no plugin directory is configured (plugins: { directory: DIR })"))
        }
        var built: (RuntimePlan, [RuntimeBuilder.SourcePlan])?
        do {
            built = try RuntimeBuilder.build(config, plugins: plugins, quarantined: quarantined)
        } catch let failures as ConfigErrors {
            errors += failures.errors
        }
        errors += ListenCheck.problems(of: config, tryBinding: tryBinding)
        guard errors.isEmpty, let built else {
            built?.0.freeConfigs()  // configured, but never to run: config_free for each
            throw ConfigErrors(errors: errors)
        }
        return Prepared(config: config, plugins: plugins, plan: built.0, sources: built.1)
    }

    /// Routes swift-log to stderr at `level` and swift-metrics to the Prometheus registry.
    public static func bootstrapObservability(logLevel: Logger.Level) {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = logLevel
            return handler
        }
        MetricsEndpoint.bootstrap()
    }

    /// Starts listening as the prepared config says (`sharedPorts`: SO_REUSEPORT, for workers).
    public static func start(_ prepared: Prepared, threads: Int? = nil, sharedPorts: Bool = false) throws -> SluiceServer {
        let count = threads ?? prepared.config.threads ?? max(1, System.coreCount / 2)
        for r in prepared.plugins.refused { HostLog.host.warning("plugin refused: \(r.path): \(r.reason)") }
        let server: SluiceServer
        do {
            server = try SluiceServer(first: ConfigGeneration(number: 1, prepared: prepared),
                                      metricsListen: prepared.config.metricsListen, threads: count,
                                      sharedPorts: sharedPorts)
        } catch {
            prepared.release()  // nothing will use the configs: a failed start-up frees them too
            throw ListenFailure.explaining(error, config: prepared.config)
        }
        ReloadMetrics.started(generation: 1)
        HostLog.host.info("sluice \(version) listening on \(server.boundAddresses.joined(separator: ", ")) with \(count) event loops")
        return server
    }
}

