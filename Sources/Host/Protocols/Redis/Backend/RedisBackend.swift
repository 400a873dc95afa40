import NIOCore

/// Redis as a backend protocol: RESP framing, replies paired in order (`RedisReplyPairing`), the
/// handshake of every new connection (AUTH with the sink's credentials, HELLO 3 for RESP3) and
/// `-ERR` replies.
enum RedisBackend: BackendProtocol {
    typealias Scanner = RESPFrameScanner
    typealias Pairing = RedisReplyPairing

    static func channelHandler(for connection: RedisSinkConnection, maxFrameBytes: Int) -> ChannelHandler {
        RedisBackendHandler(connection: connection, maxFrameBytes: maxFrameBytes)
    }

    /// AUTH when the sink has credentials, then HELLO 3 for a connection that speaks RESP3. A refused
    /// AUTH is a failed connect; a refused HELLO 3 (NOAUTH: the backend wants a password and the
    /// sink has none) is the backend's answer to the RESP3 client's requests.
    static func handshake(_ plan: SinkPlan, resp3: Bool) -> [BackendHandshakeStep] {
        var steps: [BackendHandshakeStep] = []
        if let auth = plan.redis.authCommand { steps.append(.init(name: "AUTH", request: auth, refusal: .failsConnect)) }
        if resp3 {
            steps.append(.init(name: "HELLO 3", request: Array("*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n".utf8),
                               refusal: .answersRequests))
        }
        return steps
    }

    /// An error reply refuses: its text without the `-` is the backend's own words (WRONGPASS…, or
    /// no password configured there; they never echo it).
    static func handshakeRefusal(_ reply: ByteBuffer) -> String? {
        guard reply.readableBytes > 0, reply.getInteger(at: reply.readerIndex, as: UInt8.self) == UInt8(ascii: "-") else {
            return nil
        }
        return String(decoding: reply.readableBytesView.dropFirst().prefix { $0 != 13 && $0 != 10 }, as: UTF8.self)
    }

    static func errorReplies(_ message: String, count: Int, allocator: ByteBufferAllocator) -> Batch {
        Batch.redisErrors(message, count: count, allocator: allocator)
    }
}

/// A connection to one Redis backend (see `BackendConnection`): shared by the stateless clients of
/// one event loop, or dedicated to one client.
typealias RedisSinkConnection = BackendConnection<RedisBackend>

extension BackendConnection where P == RedisBackend {
    /// A dedicated connection for one client: keeps SELECT/AUTH/MULTI/blocking/pub-sub state,
    /// delivers pushes to that client.
    convenience init(plan: SinkPlan, dedicatedTo owner: ChainSession, deliversPushes: Bool, resp3: Bool) {
        self.init(plan: plan, owner: owner, eventLoop: owner.eventLoop, allocator: owner.allocator,
                  handshake: RedisBackend.handshake(plan, resp3: resp3),
                  pairing: RedisReplyPairing(owner: owner, deliversPushes: deliversPushes, resp3: resp3,
                                             eventLoop: owner.eventLoop, allocator: owner.allocator))
    }

    /// A connection shared by the stateless clients of one event loop.
    convenience init(plan: SinkPlan, sharedOn eventLoop: EventLoop, resp3: Bool) {
        let allocator = ByteBufferAllocator()
        self.init(plan: plan, owner: nil, eventLoop: eventLoop, allocator: allocator,
                  handshake: RedisBackend.handshake(plan, resp3: resp3),
                  pairing: RedisReplyPairing(owner: nil, deliversPushes: false, resp3: resp3,
                                             eventLoop: eventLoop, allocator: allocator))
    }

    /// The client holds subscriptions on this connection, or monitors (it waits for messages, it is
    /// not idle).
    var isSubscribed: Bool { pairing.isSubscribed }
}

extension RESPFrameScanner: BackendFrameScanner {
    @inline(__always)
    mutating func scanFrame(_ bytes: UnsafeRawBufferPointer) -> BackendFrameScan {
        switch scan(bytes) {
        case .complete(let length): return .complete(length: length)
        case .needMore: return .needMore
        case .malformed(let message): return .malformed(message)
        }
    }
}
