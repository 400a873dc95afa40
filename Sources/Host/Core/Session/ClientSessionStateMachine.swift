/// The lifecycle of one client connection, as a value: events in, an action out. It does no I/O;
/// `ClientSession` feeds it what happened and carries out the action it returns. (What is in flight
/// — reply slots, the in-flight budget, held-back requests — stays with the session; the machine is
/// told what it needs about them when it decides.)
///
/// ```
/// starting ──activate──▶ active ──drain──▶ draining ──everything answered──▶ halfClosing ─┐
///    │ (drain first)       │  ╲                 │ (protocol close: no held requests)      │
///    ▼                     │   ╲ closeAfterReply│                                        │
/// closeScheduled ◀─abort/refuse  ▶ closing ──everything answered──▶ closeScheduled ─────┤
///                                                                                      ▼
///                                                         channelInactive ──────────▶ closed
/// ```
struct ClientSessionStateMachine: Equatable {
    enum State: Equatable {
        /// Accepted, not active yet; `drainRequested`: the server began stopping meanwhile.
        case starting(drainRequested: Bool)
        /// Reading requests and answering them.
        case active
        /// After QUIT or a protocol error: nothing more is read; a full close once everything read
        /// was answered.
        case closing
        /// The server is stopping (or a reload's grace period ended): nothing more is read; what
        /// was read is answered — with `runsHeld`, also the requests the in-flight budget held back
        /// — then the connection is half-closed.
        case draining(runsHeld: Bool)
        /// A full close is scheduled or under way: nothing more is written.
        case closeScheduled
        /// The replies were followed by a FIN; whatever the client still sends is read and dropped
        /// until it closes its side (or the linger ends). Nothing more is written.
        case halfClosing
        /// The channel is inactive.
        case closed
    }

    /// What the session must do.
    enum Action: Equatable {
        case none
        /// Close the channel now (nothing of the client's is on the stack).
        case closeNow
        /// Close the channel on the next event-loop turn (never inside the completion or hook that
        /// got here: closing frees the client's plugin instances, which may be on the stack).
        case closeNextTurn
        /// Stop reading the socket (a drain); held-back requests may still run.
        case stopReading
        /// On the next turn: close the output (FIN after the replies), read and drop the rest, close
        /// when the client closes or after the linger.
        case halfCloseNextTurn
    }

    private(set) var state: State = .starting(drainRequested: false)

    // MARK: questions

    /// Requests are read and run (every state but `active` reads nothing more).
    var isActive: Bool { state == .active }

    /// Requests read before and held back by the in-flight budget may still run.
    var runsHeldRequests: Bool {
        switch state {
        case .active, .draining(runsHeld: true): return true
        default: return false
        }
    }

    /// Replies are still written (not after a close was scheduled or the output closed).
    var writesReplies: Bool {
        switch state {
        case .starting, .active, .closing, .draining: return true
        case .closeScheduled, .halfClosing, .closed: return false
        }
    }

    /// A close (full or half) is scheduled, under way or done.
    var closeIsScheduled: Bool { !writesReplies }

    // MARK: events

    /// The channel became active.
    mutating func activate() -> Action {
        guard case .starting(let drainRequested) = state else { return .none }
        if drainRequested {
            state = .closeScheduled
            return .closeNow
        }
        state = .active
        return .none
    }

    /// The client is refused (its one error reply is written by the session first).
    mutating func refuse() -> Action {
        abort()
    }

    /// The connection must end now: idle, a request not complete in time, its backend session lost,
    /// an error setting up its chain on a reload.
    mutating func abort() -> Action {
        switch state {
        case .closeScheduled, .closed: return .none
        default:
            state = .closeScheduled
            return .closeNow
        }
    }

    /// The server is stopping. `heldBack`: requests read and held back by the in-flight budget.
    mutating func drain(heldBack: Bool) -> Action {
        switch state {
        case .starting:
            state = .starting(drainRequested: true)
            return .none
        case .active:
            state = .draining(runsHeld: heldBack)
            return .stopReading
        default:
            return .none
        }
    }

    /// The last request read is answered here and then the connection ends (QUIT, malformed input):
    /// nothing after it runs, not even requests held back by a drain.
    mutating func closeAfterReply() {
        switch state {
        case .active: state = .closing
        case .draining: state = .draining(runsHeld: false)
        default: break
        }
    }

    /// A reply marked "close after" was written, or the client let too many replies pile up.
    mutating func closeAfterWrite() -> Action {
        switch state {
        case .closeScheduled, .halfClosing, .closed: return .none
        default:
            state = .closeScheduled
            return .closeNextTurn
        }
    }

    /// Every request read is answered and no request is being read (call it only then).
    /// `heldBack`: requests the in-flight budget held back are still waiting.
    mutating func everythingAnswered(heldBack: Bool) -> Action {
        switch state {
        case .closing:
            state = .closeScheduled
            return .closeNextTurn
        case .draining(let runsHeld):
            if runsHeld && heldBack { return .none }
            state = .halfClosing
            return .halfCloseNextTurn
        default:
            return .none
        }
    }

    /// The channel closed.
    mutating func channelInactive() {
        state = .closed
    }
}
