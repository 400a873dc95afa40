import NIOCore

/// The channel handler of a Redis backend connection: RESP replies out of the byte stream, into the
/// connection (see `BackendReadLoop`, which does the work; this concrete class lets NIO call the
/// code specialised for Redis).
final class RedisBackendHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private var loop: BackendReadLoop<RedisBackend>

    init(connection: RedisSinkConnection, maxFrameBytes: Int) {
        loop = BackendReadLoop(connection: connection, maxFrameBytes: maxFrameBytes)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        loop.channelRead(unwrapInboundIn(data), on: context.channel)
    }

    func channelInactive(context: ChannelHandlerContext) {
        loop.channelInactive(context.channel)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        loop.userInboundEventTriggered(event, on: context.channel)
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        loop.errorCaught(error, on: context.channel)
        context.close(promise: nil)
    }
}
