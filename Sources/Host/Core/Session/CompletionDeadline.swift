import NIOCore

/// What a client has begun and must finish within `request_timeout_ms`: its TLS handshake, or a
/// request whose first bytes arrived. A plain value; the handler reads the clock and runs the timer.
///
/// Without it, a client that sends one byte a second (or opens a TLS connection and never says
/// hello) holds a place under `max_clients`, and the buffer of its request, for ever.
/// The clock does not run while complete requests wait for the client's in-flight limit (that wait
/// is not the client's doing); it does run while reading is paused for a spent request-buffer
/// budget or for unread replies, so that clients stuck that way are closed too.
struct CompletionDeadline {
    enum Pending: Equatable {
        case nothing
        case tlsHandshake(since: NIODeadline)
        case request(since: NIODeadline)
    }

    enum Verdict: Equatable {
        case nothingPending
        /// Not late yet: look again then.
        case checkAgain(at: NIODeadline)
        /// Late: close the client; `what` says what it did not finish.
        case expired(what: String)
    }

    /// Nil: no limit.
    let timeout: TimeAmount?
    private(set) var pending: Pending = .nothing

    init(timeoutMilliseconds: Int64) {
        timeout = timeoutMilliseconds > 0 ? .milliseconds(timeoutMilliseconds) : nil
    }

    var isActive: Bool { timeout != nil }

    mutating func tlsHandshakeBegan(at now: NIODeadline) {
        guard timeout != nil else { return }
        pending = .tlsHandshake(since: now)
    }

    mutating func tlsHandshakeCompleted() {
        if case .tlsHandshake = pending { pending = .nothing }
    }

    /// A read left an incomplete request buffered. `begunInThisRead`: the read also completed a
    /// request, so the incomplete one began in it (a pipelining client whose reads end inside a
    /// request keeps a fresh clock); otherwise the clock keeps running from the request's first
    /// read. The clock is read only when the request began now.
    /// Returns true when no deadline was pending before (the caller arms its check if none is armed).
    mutating func requestIncomplete(begunInThisRead: Bool, now: () -> NIODeadline) -> Bool {
        guard timeout != nil else { return false }
        switch pending {
        case .nothing:
            pending = .request(since: now())
            return true
        case .request where begunInThisRead:
            pending = .request(since: now())
            return false
        case .request, .tlsHandshake:
            return false
        }
    }

    /// No incomplete request is buffered (or only complete requests wait for their turn).
    mutating func requestsComplete() {
        if case .request = pending { pending = .nothing }
    }

    func check(at now: NIODeadline) -> Verdict {
        guard let timeout else { return .nothingPending }
        let since: NIODeadline
        let what: String
        switch pending {
        case .nothing: return .nothingPending
        case .tlsHandshake(let start): (since, what) = (start, "TLS handshake")
        case .request(let start): (since, what) = (start, "request")
        }
        let due = since + timeout
        return now >= due ? .expired(what: what) : .checkAgain(at: due)
    }
}
