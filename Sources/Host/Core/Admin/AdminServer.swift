import NIOCore
import NIOHTTP1
import NIOPosix

/// The admin endpoint's HTTP listener, on a TCP address or a unix domain socket, handing each
/// request to an `AdminService` (or, in a supervisor, an `AdminForwarder`). It has its own event
/// loop: admin traffic never runs on the loops that serve clients.
public final class AdminServer {
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let channel: Channel
    public let service: AdminHandling
    /// "host:port" or "unix:PATH".
    public let boundAddress: String

    /// Listens on host:port (port 0: any free port; see `boundAddress`).
    public init(host: String, port: Int, service: AdminHandling) throws {
        self.service = service
        do {
            channel = try Self.bootstrap(group, service).bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
        let address = channel.localAddress
        let ip = address?.ipAddress ?? host
        boundAddress = (ip.contains(":") ? "[\(ip)]" : ip) + ":\(address?.port ?? port)"
    }

    /// Listens on a unix domain socket (an existing socket file at the path is replaced).
    public init(unixSocketPath: String, service: AdminHandling) throws {
        self.service = service
        do {
            channel = try Self.bootstrap(group, service)
                .bind(unixDomainSocketPath: unixSocketPath, cleanupExistingSocketFile: true).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
        boundAddress = "unix:\(unixSocketPath)"
    }

    private static func bootstrap(_ group: EventLoopGroup, _ service: AdminHandling) -> ServerBootstrap {
        ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(AdminHTTPHandler(service: service))
                }
            }
    }

    /// Stops listening and shuts the admin loop down.
    public func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

/// One HTTP connection of the admin endpoint: collects a request, lets the service answer it,
/// writes the answer and closes.
private final class AdminHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let service: AdminHandling
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var tooLarge = false

    init(service: AdminHandling) {
        self.service = service
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body.removeAll()
            tooLarge = false
        case .body(var chunk):
            if body.count + chunk.readableBytes > AdminService.maximumBodyBytes {
                tooLarge = true
            } else if let bytes = chunk.readBytes(length: chunk.readableBytes) {
                body += bytes
            }
        case .end:
            guard let head else { return }
            self.head = nil
            if tooLarge {
                write(context, AdminService.Response(status: 413, body: Array("{\"ok\":false,\"error\":\"request body too large\"}\n".utf8)))
                return
            }
            let peer = context.channel.remoteAddress.map { $0.ipAddress.map { "\($0):\(context.channel.remoteAddress?.port ?? 0)" } ?? "unix socket" } ?? "unknown"
            let request = AdminService.Request(method: head.method.rawValue, path: head.uri.split(separator: "?").first.map(String.init) ?? head.uri,
                                               authorization: head.headers.first(name: "Authorization"),
                                               body: body, peer: peer)
            body.removeAll()
            let loop = context.eventLoop
            let bound = NIOLoopBound((self, context), eventLoop: loop)
            service.handle(request) { response in
                loop.execute {
                    let (handler, context) = bound.value
                    handler.write(context, response)
                }
            }
        }
    }

    private func write(_ context: ChannelHandlerContext, _ response: AdminService.Response) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(response.body.count))
        headers.add(name: "Connection", value: "close")
        let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        var buffer = context.channel.allocator.buffer(capacity: response.body.count)
        buffer.writeBytes(response.body)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
    }
}
