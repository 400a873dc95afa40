import NIOCore
import NIOPosix
import NIOSSL

/// Asks a `cassandra` sink's backend whether it speaks `CQLBackendVersions.probed` (v5): a
/// connection of its own (TLS as the sink's), one STARTUP in that version, its answer read, closed.
/// Never on a client's path: it runs on an event loop without blocking it, and clients do not wait
/// for it (`CQLBackendVersionKnowledge` says why). The shared connections are not used: a refused
/// STARTUP there is a failed connect that fails the requests waiting on it (and backs off the
/// sink's connections of that version, `CQLSinkState.v5Health`). When one is refused all the
/// same (before the probe told, or on a sink that is not the clients' main one), what it says is
/// learnt as from the probe (`learnt`).
enum CQLBackendVersionProbe {
    /// Probes every cassandra sink of a generation that starts (start-up, reload).
    static func probeSinks(of plan: RuntimePlan, on group: EventLoopGroup) {
        for sink in plan.sinks where sink.protocolKind == .cql && sink.cql.versions.startProbe() {
            run(sink, on: group.next())
        }
    }

    /// Runs one probe; the caller made the knowledge `.probing`.
    static func run(_ plan: SinkPlan, on eventLoop: EventLoop) {
        let versions = plan.cql.versions
        let startup = CQLBackend.handshake(version: versions.probed, credentials: nil, keyspace: nil)[0].request
        let answered = Answer(eventLoop.makePromise(of: CQLBackendVersionKnowledge.Outcome.self))
        answered.future.whenSuccess { outcome in learnt(outcome, about: plan, from: "the probe") }
        let timeout = TimeAmount.milliseconds(max(plan.connectTimeoutMilliseconds, 1))
        let deadline = eventLoop.scheduleTask(in: timeout) {
            answered.succeed(.inconclusive(reason: "no answer within \(plan.connectTimeoutMilliseconds) ms"))
        }
        answered.future.whenComplete { _ in deadline.cancel() }
        ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                do {
                    if let tls = plan.tls {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverName))
                    }
                    try channel.pipeline.syncOperations.addHandler(ReplyReader(answered: answered))
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
            .connect(host: plan.host, port: plan.port)
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    channel.writeAndFlush(channel.allocator.buffer(bytes: startup), promise: nil)
                    answered.future.whenComplete { _ in channel.close(promise: nil) }
                case .failure(let error):
                    answered.succeed(.inconclusive(reason: "connect failed: \(ConnectFailureDescription.describe(error))"))
                }
            }
    }

    /// Records what the sink's backend answered a STARTUP in `CQLBackendVersions.probed` (`from`:
    /// the probe, or a shared connection's handshake that the backend refused), logged once when
    /// it changes what Sluice knew.
    static func learnt(_ outcome: CQLBackendVersionKnowledge.Outcome, about plan: SinkPlan, from source: String) {
        let versions = plan.cql.versions
        let known = versions.state
        versions.probeAnswered(outcome)
        let sink = "sink '\(plan.name)' (\(plan.address))"
        switch outcome {
        case .refused(let reason):
            guard known != .refuses else { return }
            HostLog.sinks.notice("\(sink): the backend does not speak protocol v\(versions.probed.rawValue) (\(reason), answering \(source)); clients opening with it are told to use a lower version")
        case .accepted:
            HostLog.sinks.debug("\(sink): the backend speaks protocol v\(versions.probed.rawValue)")
        case .inconclusive(let reason):
            HostLog.sinks.debug("\(sink): protocol version probe inconclusive (\(reason)); every version is allowed until a probe tells")
        }
    }

    /// What the backend's answer to the STARTUP says, once `reply` holds its whole first frame
    /// (nil: more bytes needed). READY or AUTHENTICATE: accepted. ERROR PROTOCOL_ERROR naming the
    /// protocol version (Cassandra: "Invalid or unsupported protocol version (5); …"): refused,
    /// whatever version the error frame itself is in. Anything else: inconclusive.
    static func outcome(ofReply reply: ByteBuffer) -> CQLBackendVersionKnowledge.Outcome? {
        let start = reply.readerIndex
        guard let (_, _, _, opcode, length) = reply.getMultipleIntegers(at: start, as: (UInt8, UInt8, Int16, UInt8, Int32).self)
        else { return nil }
        guard length >= 0, length <= 65_536 else { return .inconclusive(reason: "an answer that is not a CQL frame") }
        guard reply.readableBytes >= CQLFrameHeader.size + Int(length) else { return nil }
        switch CQLOpcode(rawValue: opcode) {
        case .ready?, .authenticate?:
            return .accepted
        case .error?:
            let body = start + CQLFrameHeader.size
            guard let code = reply.getInteger(at: body, as: Int32.self),
                  let textLength = reply.getInteger(at: body + 4, as: UInt16.self),
                  let text = reply.getString(at: body + 6, length: Int(textLength))
            else { return .inconclusive(reason: "a malformed ERROR frame") }
            if code == CQLErrorCode.protocolError.rawValue, text.lowercased().contains("protocol version") {
                return .refused(reason: "PROTOCOL_ERROR: \(text)")
            }
            return .inconclusive(reason: "ERROR 0x\(String(code, radix: 16)): \(text)")
        default:
            return .inconclusive(reason: "unexpected opcode 0x\(String(opcode, radix: 16)) in reply to STARTUP")
        }
    }

    /// The probe's outcome, settled by whichever comes first (the answer, a close, the timeout);
    /// everything runs on the probe's event loop.
    private final class Answer {
        private let promise: EventLoopPromise<CQLBackendVersionKnowledge.Outcome>
        private var settled = false
        var future: EventLoopFuture<CQLBackendVersionKnowledge.Outcome> { promise.futureResult }

        init(_ promise: EventLoopPromise<CQLBackendVersionKnowledge.Outcome>) {
            self.promise = promise
        }

        func succeed(_ outcome: CQLBackendVersionKnowledge.Outcome) {
            guard !settled else { return }
            settled = true
            promise.succeed(outcome)
        }
    }

    /// Collects the answer's bytes until `outcome` can tell; a close before that is inconclusive.
    private final class ReplyReader: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        private let answered: Answer
        private var reply = ByteBuffer()

        init(answered: Answer) {
            self.answered = answered
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = unwrapInboundIn(data)
            reply.writeBuffer(&bytes)
            if let outcome = CQLBackendVersionProbe.outcome(ofReply: reply) { answered.succeed(outcome) }
        }

        func channelInactive(context: ChannelHandlerContext) {
            answered.succeed(.inconclusive(reason: "the backend closed the connection"))
        }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            answered.succeed(.inconclusive(reason: "\(error)"))
            context.close(promise: nil)
        }
    }
}
