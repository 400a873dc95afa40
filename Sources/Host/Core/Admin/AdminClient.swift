import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// A blocking HTTP client for the admin endpoint (`sluice ctl`, a supervisor forwarding to its
/// workers): one request per connection, over TCP or a unix domain socket.
public struct AdminClient {
    public enum Address {
        case tcp(host: String, port: Int)
        case unixSocket(path: String)
    }

    public struct Answer {
        public let status: Int
        /// The JSON object the endpoint answered with (empty if it was not JSON).
        public let object: [String: Any]
        public let text: String
    }

    public let address: Address
    public let token: String?
    public var timeoutSeconds: Int64 = 30

    public init(address: Address, token: String?) {
        self.address = address
        self.token = token
    }

    /// Sends one request and waits for the answer; throws when the endpoint cannot be reached.
    public func request(_ method: HTTPMethod, _ path: String, json: [String: Any]? = nil) throws -> Answer {
        let body = try json.map { try JSONSerialization.data(withJSONObject: $0) } ?? Data()
        return try request(method, path, body: Array(body))
    }

    /// Sends one request with a body as it is (a forwarded one) and waits for the answer.
    public func request(_ method: HTTPMethod, _ path: String, body: [UInt8]) throws -> Answer {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let promise = group.next().makePromise(of: (Int, [UInt8]).self)
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                channel.pipeline.addHTTPClientHandlers().flatMap {
                    channel.pipeline.addHandler(AnswerCollector(promise: promise))
                }
            }
        let channel: Channel
        do {
            switch address {
            case .tcp(let host, let port): channel = try bootstrap.connect(host: host, port: port).wait()
            case .unixSocket(let path): channel = try bootstrap.connect(unixDomainSocketPath: path).wait()
            }
        } catch {
            promise.fail(error)  // a promise must be completed before its event loop shuts down
            throw error
        }
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: "sluice-admin")
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(body.count))
        if let token { headers.add(name: "Authorization", value: "Bearer \(token)") }
        channel.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers)),
                      promise: nil)
        var buffer = channel.allocator.buffer(capacity: body.count)
        buffer.writeBytes(body)
        channel.write(HTTPClientRequestPart.body(.byteBuffer(buffer)), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        let timeout = group.next().scheduleTask(in: .seconds(timeoutSeconds)) {
            promise.fail(ChannelError.connectTimeout(.seconds(timeoutSeconds)))
        }
        defer {
            timeout.cancel()
            channel.close(promise: nil)
        }
        let status: Int
        let bytes: [UInt8]
        do {
            (status, bytes) = try promise.futureResult.wait()
        } catch {
            throw AdminAnswerLost(underlying: error)
        }
        let text = String(decoding: bytes, as: UTF8.self)
        let object = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] ?? [:]
        return Answer(status: status, object: object, text: text)
    }
}

/// The endpoint accepted the connection and the request was sent, but no answer came back (the
/// connection closed, or the answer timed out): the request may have run, and may be what ended
/// the other side (a control function that crashed its worker).
public struct AdminAnswerLost: Error, CustomStringConvertible {
    public let underlying: Error
    public var description: String { "\(underlying)" }
}

/// Collects one HTTP response.
private final class AnswerCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    private let promise: EventLoopPromise<(Int, [UInt8])>
    private var status = 0
    private var body: [UInt8] = []

    init(promise: EventLoopPromise<(Int, [UInt8])>) {
        self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): status = Int(head.status.code)
        case .body(var chunk): body += chunk.readBytes(length: chunk.readableBytes) ?? []
        case .end: promise.succeed((status, body))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(ChannelError.eof)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        promise.fail(error)
        context.close(promise: nil)
    }
}
