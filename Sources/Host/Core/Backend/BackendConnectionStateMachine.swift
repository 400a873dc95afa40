import Logging

/// The lifecycle of one backend connection as a plain value: idle, connecting, securing (TLS),
/// handshaking (the protocol's steps), ready, closed. The connection reports what happens (a
/// request to send, a connect result, a TLS or handshake reply, a closed channel, an overdue reply,
/// a reply out of step) and carries out the returned `Action`; nothing here does I/O or reads a
/// clock, so tests drive every transition without sockets.
///
/// `Link` is what the connection writes to and closes (a NIO `Channel` in the host, anything
/// `Equatable` in tests). Events about a channel carry it, so an event from a channel given up
/// earlier (closed after a reply timeout, still delivering while TLS shuts down) is ignored.
///
/// What the connection keeps beside it is not lifecycle: the requests waiting and in flight (the
/// protocol's pairing), the shared back-off of the sink (`SinkHealth`), the reply-timeout clock.
struct BackendConnectionStateMachine<Link: Equatable> {
    enum State: Equatable {
        /// No channel. The next request connects (unless the sink is backing off).
        case idle
        /// A TCP connect is under way; requests wait.
        case connecting
        /// Connected, the TLS handshake is under way; requests wait.
        case securing(Link)
        /// The handshake requests were written; the backend owes the reply to step `step`.
        case handshaking(Link, step: Int)
        /// Established: requests go out as they come. `answered`: the backend sent a reply on this
        /// channel (a TLS error before that is a failed connect); `closeReason`: why it is closing
        /// (a TLS error), for the failures that follow.
        case ready(Link, answered: Bool, closeReason: String?)
        /// No channel: the last handshake was refused by a step whose refusal answers the requests
        /// (`.answersRequests`: a USE of a keyspace that does not exist, a client's own credentials
        /// refused). Like `idle` (the next request connects again), but the connection's owner can
        /// tell this refusal apart from a lost channel or a failed connect.
        case refused
        /// Closed for good (its client went away); requests fail at once.
        case closed
    }

    /// What to do with a request to send (kept apart from `Action`: it is decided per request, and
    /// a small enum is cheap to return and destroy).
    enum SubmitAction: Equatable {
        /// Write the request on the established channel.
        case write(Link)
        /// Hold the request until the connection is established (`established`) or fails.
        case wait
        /// Hold the request and open a channel (the state is `connecting`).
        case connect
        /// The sink is backing off after failed connects: fail the request at once with the last error.
        case failBackingOff(error: String, milliseconds: Int64)
        /// Closed for good: fail the request.
        case failClosed
    }

    enum Action: Equatable {
        case none
        /// Close this channel; nothing else changes (a connect that completed after `close`, a
        /// malformed reply on an established channel: its close is reported next).
        case closeChannel(Link)
        /// TLS started on the new channel: bound its handshake by the connect timeout.
        case awaitTLS(Link)
        /// Write the handshake's requests on the new channel: every step's when the handshake is
        /// pipelined, else the first step's only (the others follow one by one: `sendHandshakeRequest`).
        case sendHandshake(Link)
        /// Write this handshake request (the next step's, or a further answer to the current step's
        /// challenge) on the channel.
        case sendHandshakeRequest(Link, [UInt8])
        /// Ready: write the requests that waited, then flush. Back-off of the sink ends.
        case established(Link)
        /// Connecting failed (TCP, TLS, a refused or unanswered handshake step): close `close` if
        /// set, back the sink off, and fail what waited with `reason`. The state is `idle`.
        case connectFailed(close: Link?, reason: String, level: Logger.Level)
        /// A handshake step refused with `.answersRequests`: close the channel, answer every waiting
        /// request with `message`, no back-off. The state is `refused`.
        case answerWithRefusal(close: Link, message: String)
        /// The established channel closed: fail what was in flight (`why`: a TLS error that
        /// caused it). The state is `idle`.
        case lost(why: String?)
        /// A TLS error on the established channel (its close follows); `beforeFirstReply`: it
        /// never answered, so it counts as a failed connect and the sink is backed off.
        case tlsError(reason: String, beforeFirstReply: Bool)
        /// The oldest request waited too long on the established channel: fail what was in flight,
        /// close it. The state is `idle`.
        case replyTimedOut(Link)
        /// A reply out of step with the requests: fail what was in flight, close the channel. The
        /// state is `idle`. `what`: what was noticed.
        case reset(Link, what: String)
    }

    /// Where a frame read from the current channel belongs.
    enum FrameDestination: Equatable {
        /// The reply to handshake step `step`.
        case handshake(step: Int)
        /// A reply (or unsolicited frame) for the requests.
        case requests
    }

    private(set) var state: State = .idle
    let handshake: [BackendHandshakeStep]
    /// Whether the channel is secured with TLS before the handshake.
    let usesTLS: Bool
    /// Whether every step is written at once (Redis: AUTH and HELLO together); otherwise each step is
    /// written once the previous one was accepted (CQL: the backend's answer to STARTUP changes the
    /// framing, and decides whether credentials are wanted).
    let pipelinesHandshake: Bool

    init(handshake: [BackendHandshakeStep], usesTLS: Bool, pipelinesHandshake: Bool = true) {
        self.handshake = handshake
        self.usesTLS = usesTLS
        self.pipelinesHandshake = pipelinesHandshake
    }

    // MARK: requests

    /// A request is to be sent. `backoff` is asked only when idle: the sink's last connect error and
    /// the milliseconds left while connects are held back (nil: connect now).
    @inline(__always)
    mutating func requestSubmitted(backoff: @autoclosure () -> (error: String, milliseconds: Int64)?) -> SubmitAction {
        switch state {
        case .ready(let link, _, _):
            return .write(link)
        case .connecting, .securing, .handshaking:
            return .wait
        case .idle, .refused:
            if let (error, wait) = backoff() { return .failBackingOff(error: error, milliseconds: wait) }
            state = .connecting
            return .connect
        case .closed:
            return .failClosed
        }
    }

    /// The established channel, if any.
    var readyLink: Link? {
        if case .ready(let link, _, _) = state { return link }
        return nil
    }

    var isClosed: Bool { state == .closed }

    /// Whether a request submitted now is written (`requestSubmitted` answers `.write`).
    var isReady: Bool {
        if case .ready = state { return true }
        return false
    }

    /// The channel being handshaken on or established, if any.
    var readyOrHandshakingLink: Link? {
        switch state {
        case .handshaking(let link, _), .ready(let link, _, _): return link
        default: return nil
        }
    }

    /// Whether frames read from `link` are this connection's: a channel given up can still deliver
    /// data while TLS closes it. Nothing is read while TLS is being negotiated.
    func isCurrent(_ link: Link) -> Bool {
        switch state {
        case .handshaking(let current, _), .ready(let current, _, _): return current == link
        case .idle, .refused, .connecting, .securing, .closed: return false
        }
    }

    // MARK: connecting

    mutating func connectSucceeded(_ link: Link) -> Action {
        guard state == .connecting else { return .closeChannel(link) }
        if usesTLS {
            state = .securing(link)
            return .awaitTLS(link)
        }
        return startHandshake(link)
    }

    mutating func connectFailed(_ reason: String) -> Action {
        guard state == .connecting else { return .none }  // closed meanwhile: not the backend's failure
        state = .idle
        return .connectFailed(close: nil, reason: reason, level: .warning)
    }

    mutating func tlsCompleted(_ link: Link) -> Action {
        guard state == .securing(link) else { return .none }
        return startHandshake(link)
    }

    /// The connect timeout passed since `link` connected.
    mutating func tlsTimedOut(_ link: Link, milliseconds: Int64) -> Action {
        guard state == .securing(link) else { return .none }
        return giveUpConnecting(link, "no TLS handshake within \(milliseconds) ms", level: .warning)
    }

    private mutating func startHandshake(_ link: Link) -> Action {
        guard !handshake.isEmpty else {
            state = .ready(link, answered: false, closeReason: nil)
            return .established(link)
        }
        state = .handshaking(link, step: 0)
        return .sendHandshake(link)
    }

    // MARK: frames

    /// A frame arrived from the current channel.
    @inline(__always)
    mutating func frameArrived() -> FrameDestination {
        switch state {
        case .handshaking(_, let step):
            return .handshake(step: step)
        case .ready(let link, false, let reason):
            state = .ready(link, answered: true, closeReason: reason)
            return .requests
        default:
            return .requests
        }
    }

    /// The backend's reply to the current handshake step: nil when it accepted, else its refusal.
    mutating func handshakeReplied(refusal: String?) -> Action {
        handshakeReplied(refusal.map(BackendHandshakeVerdict.refused) ?? .accepted)
    }

    /// The backend's reply to the current handshake step, as the protocol judged it.
    mutating func handshakeReplied(_ verdict: BackendHandshakeVerdict) -> Action {
        guard case .handshaking(let link, let step) = state else { return .none }
        let message: String
        switch verdict {
        case .refused(let refusal):
            message = refusal
        case .respond(let request):
            return .sendHandshakeRequest(link, request)
        case .accepted, .acceptedSkippingNext, .acceptedSendingNext:
            var next = step + 1
            if case .acceptedSkippingNext = verdict { next += 1 }
            if next >= handshake.count {
                state = .ready(link, answered: false, closeReason: nil)
                return .established(link)
            }
            state = .handshaking(link, step: next)
            // Pipelined steps were all written at the start (and are never skipped).
            guard !pipelinesHandshake else { return .none }
            if case .acceptedSendingNext(let request) = verdict { return .sendHandshakeRequest(link, request) }
            return .sendHandshakeRequest(link, handshake[next].request)
        }
        switch handshake[step].refusal {
        case .failsConnect:
            state = .idle
            return .connectFailed(close: link, reason: "\(handshake[step].name) refused (\(message))", level: .error)
        case .answersRequests:
            state = .refused
            return .answerWithRefusal(close: link, message: message)
        }
    }

    /// The backend's bytes could not be parsed.
    mutating func malformedReply(_ message: String) -> Action {
        switch state {
        case .ready(let link, _, _):
            return .closeChannel(link)
        case .securing(let link), .handshaking(let link, _):
            return giveUpConnecting(link, "malformed reply to \(awaited): \(message)", level: .warning)
        case .idle, .refused, .connecting, .closed:
            return .none
        }
    }

    /// The reply to the current handshake step did not reach the connection when expected.
    mutating func replyOverdue(timeoutMilliseconds: Int64) -> Action {
        switch state {
        case .securing(let link), .handshaking(let link, _):
            return giveUpConnecting(link, "no reply to \(awaited) within \(timeoutMilliseconds) ms", level: .warning)
        case .ready(let link, _, _):
            state = .idle
            return .replyTimedOut(link)
        case .idle, .refused, .connecting, .closed:
            return .none
        }
    }

    /// A reply that cannot answer the request it would be paired with (or none waits).
    mutating func outOfStep(_ what: String) -> Action {
        guard case .ready(let link, _, _) = state else { return .none }
        state = .idle
        return .reset(link, what: what)
    }

    // MARK: channel events

    mutating func channelClosed(_ link: Link) -> Action {
        switch state {
        case .securing(link), .handshaking(link, _):
            return giveUpConnecting(link, "backend closed the connection before answering \(awaited)", level: .warning)
        case .ready(link, _, let why):
            state = .idle
            return .lost(why: why)
        default:
            return .none
        }
    }

    /// A TLS error on `link` (its close follows). During TLS's handshake or the protocol's (with
    /// TLS 1.3 a backend refuses a missing client certificate only after the client saw the
    /// handshake complete) it is a failed connect, with TLS's reason.
    mutating func tlsError(_ link: Link, reason: String) -> Action {
        switch state {
        case .securing(link), .handshaking(link, _):
            return giveUpConnecting(link, "TLS handshake failed: \(reason)", level: .error)
        case .ready(link, let answered, _):
            state = .ready(link, answered: answered, closeReason: "TLS: \(reason)")
            return .tlsError(reason: reason, beforeFirstReply: !answered)
        default:
            return .none
        }
    }

    /// The connection's client went away: closed for good.
    mutating func close() -> Action {
        let previous = state
        state = .closed
        switch previous {
        case .securing(let link), .handshaking(let link, _), .ready(let link, _, _):
            return .closeChannel(link)
        case .idle, .refused, .connecting, .closed:
            return .none
        }
    }

    // MARK: helpers

    private mutating func giveUpConnecting(_ link: Link, _ reason: String, level: Logger.Level) -> Action {
        state = .idle
        return .connectFailed(close: link, reason: reason, level: level)
    }

    /// What the connection waits for while being set up, for error messages.
    private var awaited: String {
        switch state {
        case .securing: return "the TLS handshake"
        case .handshaking(_, let step): return handshake[step].name
        default: return "the handshake"
        }
    }
}
