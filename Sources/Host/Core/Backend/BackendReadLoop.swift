import NIOCore
import NIOTLS

/// What a backend channel's handler does with the bytes and events it receives, for any protocol:
/// splits the byte stream into complete frames (with the protocol's scanner) and hands them to the
/// connection. Frames are slices of the read buffer (no copy); a partial frame is kept until the rest
/// arrives.
///
/// Each protocol wraps it in a small non-generic `ChannelInboundHandler` (`RedisBackendHandler`):
/// NIO calls a handler through its protocol witnesses, and a generic handler's witnesses are the
/// unspecialised code, which would look up `P`'s metadata and witnesses for every read.
struct BackendReadLoop<P: BackendProtocol> {
    /// Strong: a reply can make the client close, and with it free its dedicated connection, while
    /// the handler is still parsing the read that carried the reply. The channel's pipeline
    /// releases the handler (and the cycle) when the channel closes.
    let connection: BackendConnection<P>
    private var scanner: P.Scanner
    private var buffered: ByteBuffer?

    init(connection: BackendConnection<P>, maxFrameBytes: Int) {
        self.connection = connection
        scanner = P.Scanner(maxFrameBytes: maxFrameBytes)
    }

    @inline(__always)
    mutating func channelRead(_ data: ByteBuffer, on channel: Channel) {
        // A channel the connection gave up on may still deliver data while TLS closes it.
        guard connection.isCurrent(channel) else { return }
        var buffer = ByteBuffer.joining(&buffered, data)
        connection.beginRead(buffer)
        defer { connection.endRead() }
        while buffer.readableBytes > 0, !connection.isClosed {
            let outcome = buffer.withUnsafeReadableBytes { scanner.scanFrame($0) }
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

    mutating func channelInactive(_ channel: Channel) {
        buffered = nil
        connection.connectionClosed(channel)
    }

    func userInboundEventTriggered(_ event: Any, on channel: Channel) {
        if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls {
            connection.tlsEstablished(channel)
        }
    }

    /// The handler closes the channel after this.
    func errorCaught(_ error: Error, on channel: Channel) {
        connection.channelError(error, on: channel)
    }
}
