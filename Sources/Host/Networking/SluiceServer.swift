#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// A running Sluice: the event loops, the Redis listeners and the metrics endpoint.
public final class SluiceServer {
    public let group: MultiThreadedEventLoopGroup
    private var channels: [Channel] = []
    private let clients = ClientConnections()
    /// The addresses actually bound, "host:port" (useful with port 0).
    public private(set) var boundAddresses: [String] = []

    /// With `sharedPorts` (a supervised worker) every listener sets SO_REUSEPORT, so the workers
    /// listen on the same ports and the kernel spreads new connections over them.
    init(plan: RuntimePlan, sources: [RuntimeBuilder.SourcePlan], metricsListen: (host: String, port: Int)?,
         threads: Int, sharedPorts: Bool = false) throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        do {
            for source in sources {
                let metrics = SourceMetrics(listen: "\(source.host):\(source.port)")
                let limits = source.limits
                let requestBudget = RequestBufferBudget(limit: limits.requestBufferBudgetBytes)
                let channel = try ServerBootstrap(group: group)
                    .serverChannelOption(ChannelOptions.backlog, value: 1024)
                    .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                    .serverChannelOption(Self.reusePort, value: sharedPorts ? 1 : 0)
                    .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
                    // Past the soft limit of unsent replies a client counts as not reading and is not read
                    // until they drained to a quarter of it (see ClientFlowControl).
                    .childChannelOption(ChannelOptions.writeBufferWaterMark,
                                        value: ChannelOptions.Types.WriteBufferWaterMark(low: limits.replySoftBytes / 4,
                                                                                         high: limits.replySoftBytes))
                    .childChannelOption(ChannelOptions.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 16384, maximum: 1 << 20))
                    .childChannelInitializer { [clients] channel in
                        let handler = RedisSourceHandler(plan: plan, chainIndex: source.chainIndex,
                                                         maxFrameBytes: source.maxFrameBytes,
                                                         maxClients: source.maxClients, clientAuth: source.clientAuth,
                                                         limits: limits, requestBudget: requestBudget,
                                                         usesTLS: source.tls != nil, metrics: metrics)
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
                channels.append(channel)
                boundAddresses.append(Self.describe(channel.localAddress, fallback: "\(source.host):\(source.port)"))
            }
            if let metricsListen {
                let channel = try MetricsEndpoint.start(host: metricsListen.host, port: metricsListen.port, group: group,
                                                         sharedPort: sharedPorts)
                channels.append(channel)
                boundAddresses.append(Self.describe(channel.localAddress, fallback: "\(metricsListen.host):\(metricsListen.port)"))
            }
        } catch {
            for c in channels { c.close(promise: nil) }
            try? group.syncShutdownGracefully()
            throw error
        }
    }

    /// SO_REUSEPORT (NIO names no constant for it).
    static let reusePort = ChannelOptions.socketOption(NIOBSDSocket.Option(rawValue: SO_REUSEPORT))

    private static func describe(_ address: SocketAddress?, fallback: String) -> String {
        guard let address, let ip = address.ipAddress, let port = address.port else { return fallback }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }

    /// Blocks until the listeners close (after `stop`).
    public func wait() throws {
        for c in channels { try c.closeFuture.wait() }
    }

    /// Stops gracefully: closes the listeners, lets every client finish the requests it has in
    /// flight (reading nothing more) and close, waits up to `drainTimeout` for that, closes whatever
    /// is left and shuts the event loops down. Returns how many clients had to be cut off.
    @discardableResult
    public func stop(drainTimeout: TimeAmount = .seconds(10)) -> Int {
        for c in channels { try? c.close().wait() }
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
