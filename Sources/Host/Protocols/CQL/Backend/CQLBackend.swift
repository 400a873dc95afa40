import NIOCore

/// Cassandra's native protocol (v4, v5) as a backend protocol: frames split by their header
/// (`CQLBackendScanner`), replies paired by stream id (`CQLStreamPairing`), and the handshake of
/// every new connection, one step at a time: STARTUP in the version of the clients it serves; SASL
/// PLAIN with the sink's credentials when the backend answers AUTHENTICATE (PasswordAuthenticator,
/// or DSE's, which first wants the mechanism's name and then challenges); `USE` the keyspace the
/// connection is for. A v5 connection switches to segments when the backend answers STARTUP.
enum CQLBackend: BackendProtocol {
    typealias Scanner = CQLBackendScanner
    typealias Pairing = CQLStreamPairing

    static let startupStep = "STARTUP"
    static let authStep = "AUTH_RESPONSE"
    static let useStep = "USE"
    /// SASL challenges answered before the handshake is given up.
    static let maxChallenges = 4

    static var pipelinesHandshake: Bool { false }

    static func channelHandler(for connection: CQLSinkConnection, maxFrameBytes: Int) -> ChannelHandler {
        CQLBackendHandler(connection: connection, maxFrameBytes: maxFrameBytes)
    }

    /// The steps of a new connection of `version`: STARTUP, the credentials (sent only if the
    /// backend asks), `USE keyspace`. A refused STARTUP or credentials is a failed connect; a
    /// refused USE (no such keyspace) is the backend's answer to the requests that waited.
    /// `authRefusal`: what refused credentials mean (a client's own, passed through, are its
    /// answer, not the backend's failure: `.answersRequests`).
    static func handshake(version: CQLVersion, credentials: SluiceConfig.Credentials?, keyspace: String?,
                          authRefusal: BackendHandshakeStep.Refusal = .failsConnect) -> [BackendHandshakeStep] {
        let startup = CQLFrameBuilder.frame(version: version, isResponse: false, stream: 0, opcode: .startup) { body in
            body.writeCQLStringMap(["CQL_VERSION": "3.0.0"])
        }
        var steps = [BackendHandshakeStep(name: startupStep, request: Array(buffer: startup), refusal: .failsConnect)]
        if let credentials {
            steps.append(BackendHandshakeStep(name: authStep, request: authResponse(version: version, token: plainToken(credentials)),
                                              refusal: authRefusal))
        }
        if let keyspace {
            let use = CQLFrameBuilder.query(version: version, stream: 0, query: "USE \(quoted(keyspace))")
            steps.append(BackendHandshakeStep(name: useStep, request: Array(buffer: use), refusal: .answersRequests))
        }
        return steps
    }

    /// SASL PLAIN: no authorisation id, the user name, the password, NUL-separated.
    static func plainToken(_ credentials: SluiceConfig.Credentials) -> [UInt8] {
        [0] + Array((credentials.username ?? "").utf8) + [0] + Array(credentials.password.utf8)
    }

    static func authResponse(version: CQLVersion, token: [UInt8]) -> [UInt8] {
        Array(buffer: CQLFrameBuilder.frame(version: version, isResponse: false, stream: 0, opcode: .authResponse) {
            $0.writeCQLBytes(token)
        })
    }

    /// A keyspace name as CQL reads it back exactly (double quotes, `""` for a quote).
    static func quoted(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// How a refused sign-in with the sink's own credentials (or none where the backend wants some)
    /// starts: the connect fails, and `CQLBackendErrors` answers every request it fails with
    /// BAD_CREDENTIALS naming the sink (a configuration error: retrying cannot help).
    static let sinkCredentialsRefused = "the backend refused the credentials configured for the sink"

    static func handshakeRefusal(_ reply: ByteBuffer) -> String? {
        guard let frame = CQLWireFrame(reply), frame.opcodeByte == CQLOpcode.error.rawValue else { return nil }
        return errorText(frame)
    }

    /// "CODE: message" of an ERROR frame (read back by `errorReplies`).
    static func errorText(_ frame: CQLWireFrame) -> String {
        guard let version = frame.version, let message = frame.message(),
              let error = try? CQLErrorMessage(message: message, version: version) else { return "SERVER_ERROR: malformed ERROR frame" }
        return "\(error.code): \(error.message)"
    }

    static func handshakeVerdict(_ reply: ByteBuffer, step: Int, of steps: [BackendHandshakeStep],
                                 channel: Channel) -> BackendHandshakeVerdict {
        guard let frame = CQLWireFrame(reply), let opcode = CQLOpcode(rawValue: frame.opcodeByte) else {
            return .refused("a reply shorter than a frame header")
        }
        if opcode == .error {
            if steps[step].name == startupStep,
               let connection = (try? channel.pipeline.syncOperations.handler(type: CQLBackendHandler.self))?.connection,
               case .refused(let reason)? = CQLBackendVersionProbe.outcome(ofReply: reply),
               steps[step].request.first == connection.plan.cql.versions.probed.rawValue {
                // The backend does not speak this connection's version (v5): its clients learn it
                // as from the probe; the connect fails, backing off only this version's connections.
                CQLBackendVersionProbe.learnt(.refused(reason: reason), about: connection.plan, from: "a v5 connection's STARTUP")
            }
            if steps[step].name == authStep, case .failsConnect = steps[step].refusal {
                // The sink's own credentials (a client's, passed through, answer that client instead).
                return .refused("\(sinkCredentialsRefused) (username/password): \(errorText(frame))")
            }
            return .refused(errorText(frame))
        }
        let handler = try? channel.pipeline.syncOperations.handler(type: CQLBackendHandler.self)
        let name = steps[step].name
        let hasCredentials = steps.indices.contains(step + 1) && steps[step + 1].name == authStep
        switch (name, opcode) {
        case (startupStep, .ready):
            if frame.version?.usesSegments == true { handler?.switchToSegments() }
            return hasCredentials ? .acceptedSkippingNext : .accepted
        case (startupStep, .authenticate):
            if frame.version?.usesSegments == true { handler?.switchToSegments() }
            let authenticator = frame.message().flatMap { try? CQLAuthenticate(message: $0).authenticator } ?? "?"
            guard hasCredentials, let version = frame.version else {
                return .refused("\(sinkCredentialsRefused): the backend requires authentication (\(authenticator)) and the sink has no username and password")
            }
            if authenticator.hasSuffix("DseAuthenticator") {
                return .acceptedSendingNext(authResponse(version: version, token: Array("PLAIN".utf8)))
            }
            return .accepted
        case (authStep, .authSuccess):
            return .accepted
        case (authStep, .authChallenge):
            guard let handler, handler.countChallenge() <= maxChallenges else {
                return .refused("more than \(maxChallenges) SASL challenges")
            }
            return .respond(steps[step].request)
        case (useStep, .result):
            return .accepted
        default:
            return .refused("unexpected \(opcode.name) in reply to \(name)")
        }
    }

    /// The refusal of a handshake step (`errorText`'s "CODE: message") as ERROR frames; the
    /// pairing puts each on its client's stream and version (`CQLBackendErrors`).
    static func errorReplies(_ message: String, count: Int, allocator: ByteBufferAllocator) -> Batch {
        var code = CQLErrorCode.serverError
        var text = message
        if let colon = message.range(of: ": "),
           let known = CQLBackend.codes[String(message[..<colon.lowerBound])] {
            code = known
            text = String(message[colon.upperBound...])
        }
        let frame = CQLFrameBuilder.error(version: .v4, stream: 0, code: code, message: text, allocator: allocator)
        return Batch(kind: Batch.responses, protocolID: Batch.cql, messages: Array(repeating: frame, count: count))
    }

    private static let codes: [String: CQLErrorCode] = Dictionary(uniqueKeysWithValues: [
        CQLErrorCode.serverError, .protocolError, .badCredentials, .unavailable, .overloaded, .isBootstrapping,
        .truncateError, .syntaxError, .unauthorized, .invalid, .configError, .alreadyExists,
    ].map { ($0.description, $0) })
}

/// A connection to one Cassandra backend (see `BackendConnection`), shared by the clients of one
/// event loop that speak one protocol version and use one keyspace.
typealias CQLSinkConnection = BackendConnection<CQLBackend>

extension BackendConnection where P == CQLBackend {
    /// A shared connection of `version` whose handshake USEs `keyspace` (nil: none), signed in with
    /// `identity` (the credentials of clients that signed in with them, passed through) or else the
    /// sink's own.
    convenience init(plan: SinkPlan, sharedOn eventLoop: EventLoop, version: CQLVersion, keyspace: String?,
                     identity: SluiceConfig.Credentials? = nil) {
        let allocator = ByteBufferAllocator()
        // A v5 connection the backend refuses backs off the sink's v5 connections only.
        self.init(plan: plan.forCQLConnection(of: version), owner: nil, eventLoop: eventLoop, allocator: allocator,
                  handshake: CQLBackend.handshake(version: version, credentials: identity ?? plan.cql.credentials,
                                                  keyspace: keyspace,
                                                  authRefusal: identity == nil ? .failsConnect : .answersRequests),
                  pairing: CQLStreamPairing(keyspace: keyspace, registry: plan.cql.preparedStatements,
                                            eventLoop: eventLoop, allocator: allocator))
    }
}
