#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// A running Sluice: the event loops, the Redis listeners and the metrics endpoint.
///
/// Listeners are kept by listen address across hot reloads: a reload opens the ports of sources it
/// adds, closes those of sources it removes, and leaves the others' sockets open (a changed source's
/// new settings apply to the connections it accepts from then on).
public final class SluiceServer {
    public let group: MultiThreadedEventLoopGroup
    /// The configuration generations (hot reload).
    let registry: GenerationRegistry
    /// The Redis listeners by source key; changed only by `init` and a reload, and read after `init`
    /// only on the registry's control queue, so a reload (SIGHUP or POST /reload) and `stop` are
    /// serialised.
    private var listeners: [(key: String, listener: Listener)] = []
    /// Set by `stop` on the control queue: reloads from then on are refused.
    private(set) var isStopping = false
    private var metricsChannel: Channel?
    let clients = ClientConnections()
    /// The addresses actually bound, "host:port" (useful with port 0).
    public var boundAddresses: [String] {
        listeners.map(\.listener.boundAddress) + (metricsAddress.map { [$0] } ?? [])
    }
    private var metricsAddress: String?

    /// One listening socket of a Redis source, with what its clients share for as long as it is open.
    struct Listener {
        let channel: Channel
        let boundAddress: String
    }

    /// With `sharedPorts` (a supervised worker) every listener sets SO_REUSEPORT, so the workers
    /// listen on the same ports and the kernel spreads new connections over them.
    private let sharedPorts: Bool

    init(first: ConfigGeneration, metricsListen: (host: String, port: Int)?, threads: Int,
         sharedPorts: Bool = false) throws {
        self.sharedPorts = sharedPorts
        group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        registry = GenerationRegistry(first: first, group: group)
        CQLBackendVersionProbe.probeSinks(of: first.plan, on: group)
        do {
            for key in first.sourceOrder {
                listeners.append((key, try listen(key, source: first.sources[key]!, accepting: true)))
            }
            if let metricsListen {
                let channel = try MetricsEndpoint.start(host: metricsListen.host, port: metricsListen.port, group: group,
                                                         sharedPort: sharedPorts)
                metricsChannel = channel
                metricsAddress = Self.describe(channel.localAddress, fallback: "\(metricsListen.host):\(metricsListen.port)")
            }
        } catch {
            for (_, l) in listeners { l.channel.close(promise: nil) }
            metricsChannel?.close(promise: nil)
            try? group.syncShutdownGracefully()
            throw error
        }
    }

    /// Binds the listener of source `key`. Each accepted client takes the current generation's
    /// settings of that source; a listener opened by a reload accepts nothing (`accepting` false)
    /// until the reload switched (`startAccepting`), so that no client sees a generation without it.
    private func listen(_ key: String, source: RuntimeBuilder.SourcePlan, accepting: Bool) throws -> Listener {
        let metrics = SourceMetrics(listen: "\(source.host):\(source.port)")
        let requestBudget = RequestBufferBudget(limit: source.limits.requestBufferBudgetBytes)
        let limits = source.limits
        let channel = try ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 1024)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(Self.reusePort, value: sharedPorts ? 1 : 0)
            .serverChannelOption(ChannelOptions.autoRead, value: accepting)
            .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            // Past the soft limit of unsent replies a client counts as not reading and is not read
            // until they drained to a quarter of it (see ClientFlowControl).
            .childChannelOption(ChannelOptions.writeBufferWaterMark,
                                value: ChannelOptions.Types.WriteBufferWaterMark(low: limits.replySoftBytes / 4,
                                                                                 high: limits.replySoftBytes))
            .childChannelOption(ChannelOptions.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 16384, maximum: 1 << 20))
            .childChannelInitializer { [clients, registry] channel in
                // The newest generation, once per connection (a lock); a source a reload just
                // removed takes no more clients.
                let generation = registry.current
                guard let source = generation.sources[key] else {
                    return channel.close()
                }
                let handler: ChannelHandler & ClientConnection
                switch source.kind {
                case .redis:
                    handler = RedisClientHandler(generation: generation,
                                                 loopGeneration: registry.loopGeneration(for: channel.eventLoop),
                                                 sourceKey: key, chainIndex: source.chainIndex,
                                                 maxFrameBytes: source.maxFrameBytes,
                                                 maxClients: source.maxClients, clientAuth: source.clientAuth,
                                                 limits: source.limits, requestBudget: requestBudget,
                                                 usesTLS: source.tls != nil, metrics: metrics)
                case .cassandra:
                    handler = CQLClientHandler(generation: generation,
                                               loopGeneration: registry.loopGeneration(for: channel.eventLoop),
                                               sourceKey: key, chainIndex: source.chainIndex,
                                               maxFrameBytes: source.maxFrameBytes, maxClients: source.maxClients,
                                               authentication: source.cqlAuthentication,
                                               limits: source.limits, requestBudget: requestBudget,
                                               usesTLS: source.tls != nil, metrics: metrics)
                }
                do {
                    // Only with a timeout configured: the idle handler costs a clock read per read.
                    if let tls = source.tls {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
                    }
                    if source.idleTimeoutMilliseconds > 0 {
                        try channel.pipeline.syncOperations.addHandler(
                            IdleStateHandler(readTimeout: .milliseconds(source.idleTimeoutMilliseconds)))
                    }
                    try channel.pipeline.syncOperations.addHandler(handler)
                    clients.add(channel, handler)
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
            .bind(host: source.host, port: source.port).wait()
        return Listener(channel: channel,
                        boundAddress: Self.describe(channel.localAddress, fallback: "\(source.host):\(source.port)"))
    }

    // MARK: hot reload (on the registry's control queue)

    /// Binds the listeners of the sources `next` adds, not accepting yet. If one cannot be bound,
    /// those bound here are closed again and the error is thrown: the reload is refused.
    func openListeners(of next: ConfigGeneration, added: [String]) throws -> [(String, Listener)] {
        var opened: [(String, Listener)] = []
        for key in next.sourceOrder where added.contains(key) {
            do {
                opened.append((key, try listen(key, source: next.sources[key]!, accepting: false)))
            } catch {
                for (_, l) in opened { try? l.channel.close().wait() }
                throw ListenerRefused(key: key, error: error)
            }
        }
        return opened
    }

    struct ListenerRefused: Error {
        let key: String
        let error: Error
    }

    /// After the switch: the new listeners start accepting, those of removed sources close (their
    /// clients stay until they can move or the grace period ends), and every client is told.
    func switched(to next: ConfigGeneration, opened: [(String, Listener)], removed: [String]) {
        for (key, l) in opened {
            listeners.append((key, l))
            l.channel.setOption(ChannelOptions.autoRead, value: true).whenSuccess { l.channel.read() }
        }
        for (key, l) in listeners where removed.contains(key) {
            try? l.channel.close().wait()
        }
        listeners.removeAll { removed.contains($0.key) }
        clients.forEach { handler in handler.newGenerationAvailable() }
        let grace = next.graceMilliseconds
        group.next().scheduleTask(in: .milliseconds(grace)) { [clients] in
            clients.forEach { handler in handler.graceEnded(for: next.number) }
        }
    }

    /// SO_REUSEPORT (NIO names no constant for it).
    static let reusePort = ChannelOptions.socketOption(NIOBSDSocket.Option(rawValue: SO_REUSEPORT))

    private static func describe(_ address: SocketAddress?, fallback: String) -> String {
        guard let address, let ip = address.ipAddress, let port = address.port else { return fallback }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }

    /// The plan of the current configuration generation (the one new clients take).
    var currentPlan: RuntimePlan { registry.current.plan }

    /// Frees the transform configs (config_free) of every generation that still has them. Call
    /// once after `stop`, when no connection (no plugin instance) is left.
    public func releaseConfigs() {
        registry.freeAll()
    }

    /// Blocks until the listeners close (after `stop`).
    public func wait() throws {
        for l in registry.controlQueue.sync(execute: { listeners.map(\.listener) }) { try l.channel.closeFuture.wait() }
        try metricsChannel?.closeFuture.wait()
    }

    /// Stops gracefully: closes the listeners, lets every client finish the requests it has in
    /// flight (reading nothing more) and close, waits up to `drainTimeout` for that, closes whatever
    /// is left and shuts the event loops down. Returns how many clients had to be cut off.
    @discardableResult
    public func stop(drainTimeout: TimeAmount = .seconds(10)) -> Int {
        // After a reload in progress (its listener changes done), before any later one (refused).
        let open = registry.controlQueue.sync { () -> [Listener] in
            isStopping = true
            registry.serverStopping()
            return listeners.map(\.listener)
        }
        for l in open { try? l.channel.close().wait() }
        try? metricsChannel?.close().wait()
        clients.drainAll()
        let deadline = NIODeadline.now() + drainTimeout
        while clients.count > 0, NIODeadline.now() < deadline {
            usleep(20_000)
        }
        let cutOff = clients.count
        clients.closeAll()
        try? group.syncShutdownGracefully()
        return cutOff
    }
}
