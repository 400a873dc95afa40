import Metrics
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus

/// Prometheus exposition of the host's metrics over HTTP (`GET /metrics`).
enum MetricsEndpoint {
    /// The registry every swift-metrics counter and gauge of the process lands in.
    static let registry = PrometheusCollectorRegistry()

    /// Routes swift-metrics to the Prometheus registry. Call once, before any metric is created.
    static func bootstrap() {
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
    }

    /// Starts the HTTP listener; returns its channel.
    /// `sharedPort`: SO_REUSEPORT, for supervised workers (each scrape reaches one of them).
    static func start(host: String, port: Int, group: EventLoopGroup, sharedPort: Bool = false) throws -> Channel {
        try ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(SluiceServer.reusePort, value: sharedPort ? 1 : 0)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(MetricsHTTPHandler())
                }
            }
            .bind(host: host, port: port).wait()
    }
}

/// Answers `GET /metrics` with the Prometheus text format, anything else with 404.
private final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private var path = ""

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            path = head.uri
        case .body:
            break
        case .end:
            var body = context.channel.allocator.buffer(capacity: 4096)
            let status: HTTPResponseStatus
            if path == "/metrics" {
                status = .ok
                body.writeBytes(MetricsEndpoint.registry.emitToBuffer())
            } else {
                status = .notFound
                body.writeString("not found; try /metrics\n")
            }
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "text/plain; version=0.0.4")
            headers.add(name: "Content-Length", value: String(body.readableBytes))
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))),
                          promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}
