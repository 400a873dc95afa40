import NIOCore

/// The CQL side of a client connection of a `cassandra` source (`SourceProtocol`): the wire layer
/// and handshake of `CQLClientConnection` (version negotiation, STARTUP with LZ4/Snappy, v5
/// segments, OPTIONS/STARTUP/AUTH_RESPONSE answered here), ERROR frames for failed requests, and
/// the outbound compression/segmenting of every frame written. The request frames of one read run
/// as one batch (up to `maxRequestsPerBatch`, within the client's in-flight limits); each frame's
/// reply is written as soon as it is back, whatever the order of the streams, unless a transform
/// that intervened in the batch needs its replies together (docs/cql.md, "Frames read together").
struct CQLSource: SourceProtocol {
    struct Settings {
        let maxFrameBytes: Int
        let authentication: CQLClientConnection.Authentication
    }

    static var protocolID: Int32 { Batch.cql }
    static var repliesInOrder: Bool { false }
    static var maxRequestsPerBatch: Int { 64 }

    private var connection: CQLClientConnection
    private let metrics: SourceMetrics
    /// The user a sign-in answered here signs in as, once its answer took its place.
    private var pendingSignIn: String?
    /// The wire bytes of replies written since the last flush (see `write`).
    private var output = ByteBuffer()

    init(settings: Settings, metrics: SourceMetrics) {
        connection = CQLClientConnection(maxFrameBytes: settings.maxFrameBytes, authentication: settings.authentication)
        self.metrics = metrics
    }

    /// CQL has no transactions that tie a client to its backend connection.
    var inTransaction: Bool { false }

    mutating func nextRequest(_ buffer: inout ByteBuffer, session: ChainSession?,
                              allocator: ByteBufferAllocator) -> SourceScan {
        if connection.awaitsBackendVersions { limitVersionsToTheBackend(session) }
        guard let step = connection.next(&buffer) else { return .needMore }
        switch step {
        case .request(let frame):
            return .request(frame.bytes, asReceived: connection.wire.lastRequestAsReceived)
        case .answer(let frame, let event):
            switch event {
            case .authenticationFailed?: metrics.authFailed()
            case .signedIn(let user)?: pendingSignIn = user
            case nil: break
            }
            return .answer(frame)
        case .close(let frame, let violation):
            // A driver probing versions is not an error; a limit of Sluice's is worth a log line.
            if case .unsupportedVersion = violation.kind {
                return .close(reply: frame, protocolError: false, logDetail: nil)
            }
            let detail = violation.kind == .oversize
                ? "\(violation.message) (max_frame_bytes; answered PROTOCOL_ERROR)" : nil
            return .close(reply: frame, protocolError: true, logDetail: detail)
        }
    }

    /// Before the client's first frame: the versions it may open with are those Sluice speaks
    /// that the backend of its session's `mainSink` speaks too (`CQLBackendVersionKnowledge`; a
    /// probe starts here when nothing is known). Once per connection, never per request.
    private mutating func limitVersionsToTheBackend(_ session: ChainSession?) {
        guard let session, let index = session.mainSink, session.plan.sinks[index].protocolKind == .cql
        else { return connection.backendVersionsKnown(nil) }
        let sink = session.plan.sinks[index]
        let (versions, probe) = sink.cql.versions.clientVersions(supported: connection.wire.supportedVersions)
        if probe { CQLBackendVersionProbe.run(sink, on: session.eventLoop) }
        connection.backendVersionsKnown(versions)
    }

    mutating func sealBatch(_ batch: Batch) {}

    mutating func answerPlaced(session: ChainSession?) {
        guard let user = pendingSignIn.take() else { return }
        session?.facts.signedIn(as: Array(user.utf8))
    }

    /// The version byte and stream of each request frame of a batch: what its ERROR reply needs.
    static func replyKeys(of batch: Batch, into keys: inout ReplyKeys) {
        keys.reset(first: batch.count > 0 ? replyKey(of: batch.messages[0]) : 0)
        guard batch.count > 1 else { return }
        for i in 1..<batch.count { keys.append(replyKey(of: batch.messages[i])) }
    }

    @inline(__always)
    private static func replyKey(of frame: ByteBuffer) -> UInt64 {
        guard let (version, _, stream) = frame.getMultipleIntegers(at: frame.readerIndex, as: (UInt8, UInt8, Int16).self)
        else { return 0 }
        return UInt64(version & 0x7F) << 16 | UInt64(UInt16(bitPattern: stream))
    }

    /// SERVER_ERROR with `message` on each request's stream and in its version, for requests the
    /// chain or the sink could not answer (a dead backend, a transform's failure).
    static func errorReplies(_ message: String, count: Int, replyKeys: ReplyKeys, first: Int,
                             allocator: ByteBufferAllocator) -> Batch {
        var frames: [ByteBuffer] = []
        frames.reserveCapacity(count)
        for i in first..<first + count {
            let key = replyKeys[i]
            let version = CQLVersion(rawValue: UInt8(truncatingIfNeeded: key >> 16)) ?? .v4
            let stream = Int16(bitPattern: UInt16(truncatingIfNeeded: key))
            frames.append(CQLFrameBuilder.error(version: version, stream: stream, code: .serverError, message: message,
                                                allocator: allocator))
        }
        return Batch(kind: Batch.responses, protocolID: Batch.cql, messages: frames)
    }

    /// A client refused before it sent anything: its version is not known yet, so the ERROR is a v4
    /// frame on stream 0 (every driver reads v4, and its first request, OPTIONS or STARTUP, is on
    /// stream 0 or reads the frame as a connection error); OVERLOADED for `max_clients`.
    static func refusal(_ reason: ClientRefusal, allocator: ByteBufferAllocator) -> ByteBuffer {
        let (code, message): (CQLErrorCode, String)
        switch reason {
        case .maxClients(let limit):
            (code, message) = (.overloaded, "sluice: max_clients (\(limit)) reached")
        case .sourceRemoved:
            (code, message) = (.serverError, "sluice: this listener was removed by a configuration reload")
        case .chainUnavailable(let why):
            (code, message) = (.serverError, "sluice: \(why)")
        }
        return CQLFrameBuilder.error(version: .v4, stream: 0, code: code, message: message, allocator: allocator)
    }

    /// Replies are gathered in `output` (each frame copied once, compressed or put in a segment as
    /// the connection negotiated) and written with one NIO write per flush: at `flush: true`, or at
    /// the end of the event-loop turn (`flush(to:)`), whichever comes first. A large bare reply
    /// goes as its own write, after what was gathered before it, without a copy.
    mutating func write(_ replies: Batch, to context: ChannelHandlerContext, flush: Bool) {
        startGathering(context)
        if connection.wire.outboundIsBare {
            for message in replies.messages {
                let event = connection.observeReply(message)
                note(event)
                if message.readableBytes <= Self.gatherLimit {
                    output.writeImmutableBuffer(message)
                } else {
                    handOver(context)
                    context.write(NIOAny(message), promise: nil)
                }
            }
        } else {
            for message in replies.messages {
                // Two statements: `note(connection.encodeReply(…, into: &output))` made Swift copy
                // the whole source (`note` borrows self while `output` is inout), so every v5 reply
                // also copied `output`'s storage.
                let event = connection.encodeReply(message, into: &output)
                note(event)
            }
        }
        if flush { self.flush(to: context) }
    }

    mutating func writeFrame(_ frame: ByteBuffer, to context: ChannelHandlerContext) {
        write(Batch(kind: Batch.responses, protocolID: Batch.cql, messages: [frame]), to: context, flush: true)
    }

    mutating func flush(to context: ChannelHandlerContext) {
        handOver(context)
        context.flush()
    }

    /// Bare replies up to this size are copied into `output`; larger ones go as their own write.
    static var gatherLimit: Int { 4096 }

    /// Makes `output` ready to take replies: its storage is reused once NIO has written what was
    /// handed over from it (normally by the next turn), else it gets new storage.
    @inline(__always)
    private mutating func startGathering(_ context: ChannelHandlerContext) {
        if output.readableBytes == 0, output.writerIndex > 0 {
            output.clear()
        } else if output.capacity == 0 {
            output = context.channel.allocator.buffer(capacity: 4096)
        }
    }

    /// Writes (unflushed) what `output` gathered: the segment still open is closed first. Marks it
    /// consumed without clearing it: clearing now, while the channel holds the bytes, would
    /// allocate new storage (`startGathering` clears it on the next reply).
    private mutating func handOver(_ context: ChannelHandlerContext) {
        connection.flush(into: &output)
        guard output.readableBytes > 0 else { return }
        context.write(NIOAny(output), promise: nil)
        if output.capacity > Self.keptCapacity {
            output = ByteBuffer()  // a burst of large replies: its storage is not kept for the connection's life
        } else {
            output.moveReaderIndex(to: output.writerIndex)
        }
    }

    /// The largest output storage kept from one turn to the next.
    static var keptCapacity: Int { 65536 }

    private func note(_ event: CQLClientConnection.Event?) {
        if case .authenticationFailed? = event { metrics.authFailed() }
    }
}
