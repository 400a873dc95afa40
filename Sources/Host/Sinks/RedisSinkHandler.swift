import NIOCore
import NIOTLS

/// Splits the backend's byte stream into complete RESP replies and hands them to the connection.
/// Replies are slices of the read buffer (no copy); a partial reply is kept until the rest arrives.
final class RedisSinkHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    /// Strong: a reply can make the client close, and with it free its dedicated connection, while
    /// this handler is still parsing the read that carried the reply. The channel's pipeline
    /// releases the handler (and the cycle) when the channel closes.
    private let connection: RedisSinkConnection
    private var scanner: RESPFrameScanner
    private var buffered: ByteBuffer?

    init(connection: RedisSinkConnection, maxFrameBytes: Int) {
        self.connection = connection
        scanner = RESPFrameScanner(maxFrameBytes: maxFrameBytes)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // A channel the connection gave up on may still deliver data while TLS closes it.
        guard connection.isCurrent(context.channel) else { return }
        var buffer = ByteBuffer.joining(&buffered, unwrapInboundIn(data))
        connection.beginRead(buffer)
        defer { connection.endRead() }
        while buffer.readableBytes > 0, !connection.isClosed {
            let outcome = buffer.withUnsafeReadableBytes { scanner.scan($0) }
            switch outcome {
            case .complete(let length):
                let start = buffer.readerIndex
                let frame = buffer.readSlice(length: length)!
                // A reply out of step resets the connection: the rest of this read is not its replies.
                guard connection.handleReply(frame, start: start) else {
                    buffer.clear()
                    return
                }
            case .needMore:
                buffered = buffer
                return
            case .malformed(let message):
                connection.protocolError(message)
                buffer.clear()
                return
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        buffered = nil
        connection.connectionClosed(context.channel)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls {
            connection.tlsEstablished(context.channel)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        connection.channelError(error, on: context.channel)
        context.close(promise: nil)
    }
}
