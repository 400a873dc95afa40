import NIOCore

/// The Redis side of a client connection (`SourceProtocol`): the RESP request scanner (with inline
/// commands turned into RESP arrays), the source's client authentication (`RedisClientAuth`), the
/// commands answered or refused here (`RedisLocalAnswers`: QUIT, replication commands, MULTI
/// tracking), `-ERR` replies, and the plain-command notes a batch carries for the reply-kind check.
/// Replies go back in request order, pushes as `ClientSession` places them.
struct RedisSource: SourceProtocol {
    struct Settings {
        let maxFrameBytes: Int
        /// The source's client authentication (nil: none).
        let clientAuth: RedisClientAuth?
    }

    static var protocolID: Int32 { Batch.redis }
    static var repliesInOrder: Bool { true }
    static var maxRequestsPerBatch: Int { ClientFlowControl.maxRequestsPerBatch }

    private var scanner: RESPRequestScanner
    private let clientAuth: RedisClientAuth?
    private let metrics: SourceMetrics
    /// Whether this client passed the source's authentication (always, without one).
    private var authenticated: Bool {
        didSet { scanner.unauthenticated = !authenticated }  // Redis's smaller limits until then
    }
    /// Between MULTI and EXEC/DISCARD/RESET, as far as the client's commands tell.
    private(set) var inTransaction = false
    /// What an AUTH answered here changes once its answer took its place (`answerPlaced`).
    private var pendingSignIn: (signedIn: Bool?, user: [UInt8]?)?
    /// The batch being collected: its request count, whether all are plain commands
    /// (`RedisCommandClass`), and the reply kinds the first 32 expect (two bits each).
    private var building = 0
    private var buildingPlain = true
    private var buildingReplies: UInt64 = 0

    init(settings: Settings, metrics: SourceMetrics) {
        clientAuth = settings.clientAuth
        self.metrics = metrics
        authenticated = settings.clientAuth == nil
        scanner = RESPRequestScanner(maxFrameBytes: settings.maxFrameBytes)
        scanner.unauthenticated = settings.clientAuth != nil
    }

    @inline(__always)
    mutating func nextRequest(_ buffer: inout ByteBuffer, session: ChainSession?,
                              allocator: ByteBufferAllocator) -> SourceScan {
        switch buffer.withUnsafeReadableBytes({ scanner.scan($0) }) {
            case .multibulk(let length):
                return take(buffer.readSlice(length: length)!, asReceived: true, session: session, allocator: allocator)
            case .empty(let length):
                buffer.moveReaderIndex(forwardBy: length)  // "*0\r\n" or "*-1\r\n" asks for nothing; Redis ignores it too
                return .nothing
            case .inline(let lineLength, let length):
                let line = buffer.getSlice(at: buffer.readerIndex, length: lineLength)!
                buffer.moveReaderIndex(forwardBy: length)
                do {
                    let args = try line.withUnsafeReadableBytes { try RESPInlineCommand.arguments(of: $0) }
                    if args.isEmpty { return .nothing }
                    return take(RESPEncoding.command(args, allocator: allocator), asReceived: false,
                                session: session, allocator: allocator)
                } catch {
                    return .close(reply: Self.text("-ERR Protocol error: unbalanced quotes in request\r\n", allocator),
                                  protocolError: true, logDetail: nil)
                }
            case .needMore:
                return .needMore
            case .malformed(let message):
                // A limit of Sluice's, not a Redis rule, is worth a log line (scanner.detail).
                return .close(reply: Self.text("-ERR Protocol error: \(message)\r\n", allocator), protocolError: true,
                              logDetail: scanner.detail.map { "\($0) (answered 'Protocol error: \(message)')" })
        }
    }

    /// Takes a complete request: forwarded with the batch, or answered here in its place.
    @inline(__always)
    private mutating func take(_ received: ByteBuffer, asReceived: Bool, session: ChainSession?,
                               allocator: ByteBufferAllocator) -> SourceScan {
        var frame = received
        var asReceived = asReceived
        if let clientAuth {
            switch screen(received, clientAuth, session: session, allocator: allocator) {
            case .take(let accepted, let rewritten):
                if rewritten { asReceived = false }
                frame = accepted
            case .answered(let reply):
                return .answer(Self.text(reply, allocator))
            }
        }
        // The command is classified once here; a plain one needs none of the checks.
        let plainReply = frame.withUnsafeReadableBytes { RedisCommandClass.plainReply($0) }
        let verdict = plainReply != nil
            ? .forward : frame.withUnsafeReadableBytes { RedisLocalAnswers.verdict($0, inTransaction: &inTransaction) }
        switch verdict {
        case .forward:
            if let plainReply {
                if building < 32 { buildingReplies |= plainReply << UInt64(2 * building) }
            } else {
                buildingPlain = false
            }
            building += 1
            return .request(frame, asReceived: asReceived)
        case .quit:
            return .close(reply: Self.text("+OK\r\n", allocator), protocolError: false, logDetail: nil)
        case .refuse(let message):
            return .answer(RESPEncoding.error(message, allocator: allocator))
        }
    }

    /// What client auth made of a request.
    private enum Screened {
        /// Take this request (`rewritten`: a HELLO without its AUTH option, instead of the one read).
        case take(ByteBuffer, rewritten: Bool)
        /// Answered here with this RESP reply (AUTH, or anything before signing in).
        case answered(String)
    }

    /// With client auth: the request to take instead of `frame`, or its answer. A RESET signs the
    /// client out, taking effect from the next request; a sign-in by AUTH once its answer took its
    /// place (`answerPlaced`).
    @inline(never)
    private mutating func screen(_ frame: ByteBuffer, _ clientAuth: RedisClientAuth, session: ChainSession?,
                                 allocator: ByteBufferAllocator) -> Screened {
        switch frame.withUnsafeReadableBytes({
            clientAuth.screen($0, authenticated: authenticated, inTransaction: inTransaction, allocator: allocator)
        }) {
        case .forward:
            return .take(frame, rewritten: false)
        case .forwardSigningOut:
            authenticated = false  // screens the requests after this RESET, not the RESET itself
            return .take(frame, rewritten: false)
        case .forwardRewritten(let hello):
            authenticated = true
            if let user = frame.withUnsafeReadableBytes({ RedisSessionChange.userName(signingIn: $0) }) {
                session?.facts.signedIn(as: user)
            }
            return .take(hello, rewritten: true)
        case .answer(let reply, let signedIn, let failedPassword):
            if failedPassword { metrics.authFailed() }
            let user: [UInt8]? = signedIn == true
                ? frame.withUnsafeReadableBytes({ RedisSessionChange.userName(signingIn: $0) }) : nil
            pendingSignIn = (signedIn, user)
            return .answered(reply)
        }
    }

    mutating func answerPlaced(session: ChainSession?) {
        guard let (signedIn, user) = pendingSignIn.take() else { return }
        if let signedIn { authenticated = signedIn }
        if let user { session?.facts.signedIn(as: user) }
    }

    @inline(__always)
    mutating func sealBatch(_ batch: Batch) {
        if buildingPlain { batch.markPlain(expectedReplies: buildingReplies) }
        (building, buildingPlain, buildingReplies) = (0, true, 0)
    }

    @inline(__always)
    static func replyKeys(of batch: Batch, into keys: inout ReplyKeys) { keys.reset(first: 0) }

    static func errorReplies(_ message: String, count: Int, replyKeys: ReplyKeys, first: Int,
                             allocator: ByteBufferAllocator) -> Batch {
        Batch.redisErrors("ERR \(message)", count: count, allocator: allocator)
    }

    static func refusal(_ reason: ClientRefusal, allocator: ByteBufferAllocator) -> ByteBuffer {
        switch reason {
        case .maxClients:
            // Redis's own answer past maxclients, so clients report it the same way.
            return RESPEncoding.error("ERR max number of clients reached", allocator: allocator)
        case .sourceRemoved:
            return RESPEncoding.error("ERR sluice: this listener was removed by a configuration reload", allocator: allocator)
        case .chainUnavailable(let why):
            return RESPEncoding.error("ERR sluice: \(why)", allocator: allocator)
        }
    }

    private static func text(_ reply: String, _ allocator: ByteBufferAllocator) -> ByteBuffer {
        var bytes = allocator.buffer(capacity: reply.utf8.count)
        bytes.writeString(reply)
        return bytes
    }
}
