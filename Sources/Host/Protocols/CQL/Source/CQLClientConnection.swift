import NIOCore

/// One client connection of a `cassandra` source as a state machine over plain values: the bytes
/// the client sends go in (`next`), and out come the requests to run through the chain (the
/// session batches those of one read), and the answers Sluice gives itself; every frame written to the client (answers,
/// the chain's replies, events) goes out through `encodeReply`, which compresses or segments it.
///
/// Sluice answers the handshake itself: OPTIONS with SUPPORTED (at any time), STARTUP with READY, or
/// with AUTHENTICATE when the source authenticates clients (its own users, or `passthrough`: the
/// client's AUTH_RESPONSE then runs through the chain to the sink, which signs in to the backend
/// with it, and its AUTH_SUCCESS or ERROR comes back as a reply). Framing (`CQLClientWire`) switches
/// with the STARTUP answer.
///
/// States: `awaitingStartup` → (READY) `ready`, or → (AUTHENTICATE) `authenticating` → (AUTH_SUCCESS)
/// `ready`; any → `closed` after a protocol violation (its ERROR frame is the last thing written).
/// Requests in the wrong state get an ERROR frame and the connection stays open, as on Cassandra.
struct CQLClientConnection {
    /// How clients authenticate.
    enum Authentication {
        /// Not at all: STARTUP gets READY.
        case none
        /// Sluice checks the client's SASL PLAIN token against the source's users.
        case sluice(CQLClientAuth)
        /// The client's AUTH_RESPONSE runs through the chain; the sink carries it to the backend.
        case passthrough
    }

    enum State: Equatable {
        case awaitingStartup
        /// AUTHENTICATE was sent; with passthrough, `pending` is the stream of the AUTH_RESPONSE
        /// on its way to the backend.
        case authenticating(pending: Int16?)
        case ready
        case closed
    }

    /// What the caller does next.
    enum Step {
        /// Run this request (one whole uncompressed frame) through the chain.
        case request(CQLFrame)
        /// Write this frame (an answer given here, uncompressed; see `encodeReply`); `event` is for
        /// metrics and the session's facts.
        case answer(ByteBuffer, event: Event?)
        /// Write this ERROR frame, then close: nothing more is read.
        case close(ByteBuffer, violation: CQLProtocolViolation)
    }

    enum Event: Equatable {
        case signedIn(user: String?)
        case authenticationFailed(user: String?)
    }

    private(set) var state: State = .awaitingStartup
    private(set) var wire: CQLClientWire
    let authentication: Authentication
    /// Which versions a first frame may open with, beyond Sluice's own (`wire.supportedVersions`).
    private var backendVersions: BackendVersions = .awaitingBackend
    /// The versions SUPPORTED lists (PROTOCOL_VERSIONS): Sluice's, or those of them the sink's
    /// backend speaks too once that is known (`backendVersionsKnown`), so that a client asking
    /// is never offered a version the connection would refuse.
    private var offeredVersions: [CQLVersion]

    private enum BackendVersions {
        /// Nothing said yet (see `backendVersionsKnown`).
        case awaitingBackend
        /// Only these of Sluice's versions: the sink's backend does not speak the others.
        case limitedTo([CQLVersion])
        /// Sluice's versions, or the first frame was read: nothing more to check.
        case settled
    }

    /// Whether the caller should say, with `backendVersionsKnown`, which versions the sink's
    /// backend speaks (once, before the first frame is read).
    var awaitsBackendVersions: Bool {
        if case .awaitingBackend = backendVersions { return true }
        return false
    }

    /// The versions the sink's backend speaks (nil: unknown, or no cassandra sink: every version
    /// Sluice speaks). A client whose first frame is in a version Sluice speaks but the backend
    /// does not gets the PROTOCOL_ERROR drivers downgrade on, as for a version Sluice does not
    /// speak, so it reconnects in a version that works end to end instead of being told READY and
    /// then failing on every request.
    mutating func backendVersionsKnown(_ versions: [CQLVersion]?) {
        if let versions, !versions.isEmpty, versions != wire.supportedVersions {
            backendVersions = .limitedTo(versions)
            offeredVersions = versions
        } else {
            backendVersions = .settled
        }
    }

    init(maxFrameBytes: Int, authentication: Authentication, supportedVersions: [CQLVersion] = [.v4, .v5],
         allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        wire = CQLClientWire(maxFrameBytes: maxFrameBytes, supportedVersions: supportedVersions, allocator: allocator)
        offeredVersions = supportedVersions
        self.authentication = authentication
    }

    /// The next step for the bytes at the front of `input` (the bytes of one whole frame or
    /// segment are taken off it), or nil when more bytes are needed or the connection is closed.
    mutating func next(_ input: inout ByteBuffer) -> Step? {
        guard state != .closed else { return nil }
        if case .limitedTo(let versions) = backendVersions {
            guard let (first, _, stream) = input.getMultipleIntegers(at: input.readerIndex, as: (UInt8, UInt8, Int16).self)
            else { return nil }
            if let opening = CQLVersion(rawValue: first & 0x7F), wire.supportedVersions.contains(opening),
               !versions.contains(opening) {
                state = .closed
                let refusal = CQLVersionNegotiation.unsupported(opening.rawValue, supported: versions, stream: stream)
                return .close(CQLVersionNegotiation.rejection(of: opening.rawValue, supported: versions, stream: stream),
                              violation: refusal)
            }
            backendVersions = .settled
        }
        do {
            while let frame = try wire.nextRequest(&input) {
                if let step = try handle(frame) { return step }
            }
            return nil
        } catch {
            state = .closed
            return .close(wire.errorFrame(for: error), violation: error)
        }
    }

    /// One request frame: forwarded, answered here, or nil (nothing to do; not used yet).
    /// (`frame` is consumed: a request forwarded is moved into its step, not copied, which cost an
    /// out-of-line copy of the frame and a retain and release of its bytes per request.)
    private mutating func handle(_ frame: consuming CQLFrame) throws(CQLProtocolViolation) -> Step? {
        let header = frame.header
        guard let opcode = header.opcode, opcode.isRequest else {
            let name = header.opcode?.name ?? "0x\(String(header.opcodeByte, radix: 16))"
            throw CQLProtocolViolation(.malformed, "\(name) is not a request", stream: header.stream)
        }
        switch (opcode, state) {
        case (.options, _):
            return answer(CQLSupportedOptions.frame(version: header.version, stream: header.stream,
                                                    supported: offeredVersions))
        case (.startup, .awaitingStartup):
            return try startup(frame)
        case (.startup, _):
            return refuse(frame, "Unexpected message STARTUP, the connection is already initialized")
        case (.authResponse, .authenticating(pending: nil)):
            return try authResponse(frame)
        case (.authResponse, _):
            return refuse(frame, "Unexpected message AUTH_RESPONSE"
                + (state == .ready ? ", the connection is already authenticated" : ""))
        case (_, .ready):
            return .request(frame)
        case (_, .awaitingStartup):
            return refuse(frame, "Unexpected message \(opcode.name), expecting STARTUP or OPTIONS")
        case (_, .authenticating):
            return refuse(frame, "Unexpected message \(opcode.name), expecting SASL response")
        case (_, .closed):
            return nil
        }
    }

    private mutating func startup(_ frame: CQLFrame) throws(CQLProtocolViolation) -> Step {
        guard case .startup(let startup) = try CQLMessage(frame: frame, compression: nil,
                                                           maxBodyBytes: wire.maxFrameBytes) else {
            return refuse(frame, "Unexpected message, expecting STARTUP")
        }
        guard startup.cqlVersion != nil else {
            return refuse(frame, "Missing value CQL_VERSION in STARTUP message")
        }
        let compression: CQLCompression?
        do {
            compression = try startup.compression()
        } catch {
            return refuse(frame, error.message)
        }
        if let compression, !compression.isAvailable(in: frame.header.version) {
            return refuse(frame, "\(compression.rawValue) compression is not supported in protocol v\(frame.header.version.rawValue)")
        }
        let reply: ByteBuffer
        switch authentication {
        case .none:
            reply = CQLFrameBuilder.frame(version: frame.header.version, isResponse: true, stream: frame.header.stream,
                                          opcode: .ready, capacity: 0) { _ in }
            state = .ready
        case .sluice, .passthrough:
            reply = CQLFrameBuilder.frame(version: frame.header.version, isResponse: true, stream: frame.header.stream,
                                          opcode: .authenticate, capacity: 64) { body in
                body.writeCQLString(CQLClientAuth.authenticator)
            }
            state = .authenticating(pending: nil)
        }
        // The answer itself travels bare; everything after it in the negotiated framing.
        wire.startupAnswered(with: state == .ready ? .ready : .authenticate, stream: frame.header.stream,
                             compression: compression)
        return .answer(reply, event: nil)
    }

    private mutating func authResponse(_ frame: CQLFrame) throws(CQLProtocolViolation) -> Step {
        switch authentication {
        case .none:
            return refuse(frame, "Unexpected message AUTH_RESPONSE")
        case .passthrough:
            state = .authenticating(pending: frame.header.stream)
            return .request(frame)
        case .sluice(let auth):
            guard case .authResponse(let token) = try CQLMessage(frame: frame, compression: nil,
                                                                  maxBodyBytes: wire.maxFrameBytes) else {
                return refuse(frame, "Unexpected message, expecting AUTH_RESPONSE")
            }
            let header = frame.header
            switch auth.check(token: token.token) {
            case .accepted(let user):
                state = .ready
                let success = CQLFrameBuilder.frame(version: header.version, isResponse: true, stream: header.stream,
                                                    opcode: .authSuccess, capacity: 4) { $0.writeCQLBytes(nil) }
                return .answer(success, event: .signedIn(user: user))
            case .rejected(let user):
                return answerError(frame, .badCredentials, "Provided username \(user) and/or password are incorrect",
                                   event: .authenticationFailed(user: user))
            case .malformed:
                return answerError(frame, .badCredentials, "Authentication failed: expected a SASL PLAIN token",
                                   event: .authenticationFailed(user: nil))
            }
        }
    }

    /// A PROTOCOL_ERROR answer on the frame's stream; the connection stays open.
    private func refuse(_ frame: CQLFrame, _ message: String) -> Step {
        answerError(frame, .protocolError, message, event: nil)
    }

    private func answerError(_ frame: CQLFrame, _ code: CQLErrorCode, _ message: String, event: Event?) -> Step {
        .answer(CQLFrameBuilder.error(version: frame.header.version, stream: frame.header.stream, code: code,
                                      message: message), event: event)
    }

    private func answer(_ frame: ByteBuffer) -> Step {
        .answer(frame, event: nil)
    }

    // MARK: replies

    /// Appends the wire bytes of one frame to the client (a reply from the chain, uncompressed and on
    /// the client's stream; an answer or ERROR frame from `next`; an event) to `output`; end each
    /// run of frames with `flush`. A passthrough sign-in is decided by the reply to the client's
    /// AUTH_RESPONSE: AUTH_SUCCESS signs the client in (the event says so).
    mutating func encodeReply(_ frame: ByteBuffer, into output: inout ByteBuffer) -> Event? {
        let event = observeReply(frame)
        wire.encode(frame, into: &output)
        return event
    }

    /// What writing `frame` to the client means for the connection's state (a passthrough sign-in),
    /// for frames written as they are (`CQLClientWire.outboundIsBare`); `encodeReply` includes it.
    mutating func observeReply(_ frame: ByteBuffer) -> Event? {
        var event: Event?
        if case .authenticating(let pending?) = state,
           let (stream, opcodeByte) = frame.getMultipleIntegers(at: frame.readerIndex + 2, as: (Int16, UInt8).self),
           stream == pending {
            switch CQLOpcode(rawValue: opcodeByte) {
            case .authSuccess:
                state = .ready
                event = .signedIn(user: nil)
            case .error:
                state = .authenticating(pending: nil)
                event = .authenticationFailed(user: nil)
            default:
                state = .authenticating(pending: nil)  // AUTH_CHALLENGE: the client answers again
            }
        }
        return event
    }

    /// Writes what the segment writer still holds (see `CQLClientWire.flush`).
    mutating func flush(into output: inout ByteBuffer) {
        wire.flush(into: &output)
    }

    /// The ERROR frame Sluice gives for a request it took (a chain that failed without answering, a
    /// session that closed under it): `code` on `stream`, in the connection's version, for the
    /// caller to `encodeReply` like any reply.
    func errorReply(stream: Int16, code: CQLErrorCode = .serverError, message: String) -> ByteBuffer {
        CQLFrameBuilder.error(version: wire.replyVersion, stream: stream, code: code, message: message)
    }
}
