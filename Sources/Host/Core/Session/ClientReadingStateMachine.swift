/// Whether a client's socket is read, and what becomes of the complete requests read that the
/// in-flight limit held back, as a value: events in, an action out. It does no I/O; `ClientSession`
/// reports what happened and carries out the action. `ClientFlowControl` decides *whether* the
/// client should be read (its pause reasons); this machine follows that advice on the socket
/// (ignoring advice that is stale by the time it is applied) and keeps the held-back requests from
/// running inside a run that is already under way.
///
/// Two parts, each an enum:
/// ```
/// socket:    reading ◀──resume── paused            stopped (a drain; the flow control never
///               └──────pause─────▲                          resumes once the lifecycle left active)
///
/// requests:  idle ──processBegan──▶ processing(heldBack: false) ──inFlightLimitReached──┐
///             ▲ ◀──────processEnded──────┘ ▲                                          ▼
///             │                             └──processBegan── heldBack ◀──processEnded── processing(heldBack: true)
///             └── channelInactive (from any)              (the held ones run, new ones joined behind)
/// ```
/// A run of the held-back requests asked for while `processing` (a plugin answered synchronously,
/// so reading resumed inside the run) waits for the next event-loop turn (`NextTurnWork.heldRun`).
struct ClientReadingStateMachine: Equatable {
    /// What NIO's autoRead was last set to for this client.
    enum Socket: Equatable {
        case reading
        /// Paused for the flow control (the in-flight limit, unread replies, the request-buffer budget).
        case paused
        /// A drain stopped reading for good.
        case stopped
    }

    /// The requests read and not run yet.
    enum Requests: Equatable {
        /// None waits (at most a partial request is buffered).
        case idle
        /// A read's requests (or the held-back ones) are being run now; `heldBack`: the in-flight
        /// limit stopped the run with complete requests left in the buffer.
        case processing(heldBack: Bool)
        /// Complete requests wait in the buffer for room in flight.
        case heldBack
    }

    /// What the session must do with the socket.
    enum ReadingAction: Equatable {
        case none
        /// Set autoRead off.
        case pause
        /// Set autoRead on; first run the held-back requests if `runHeldFirst` (they may pause
        /// reading again), then ask the socket for a read if it is still `reading`.
        case resume(runHeldFirst: Bool)
    }

    /// What the session must do about the held-back requests.
    enum HeldRunAction: Equatable {
        case none
        /// Run them now (take them out of the buffer and process them).
        case runNow
        /// A run is under way on the stack: run them on the next event-loop turn.
        case runNextTurn
    }

    private(set) var socket: Socket = .reading
    private(set) var requests: Requests = .idle

    // MARK: questions

    /// The socket is read (as far as the flow control goes).
    var socketIsReading: Bool { socket == .reading }

    /// The buffer holds complete requests that the in-flight limit held back (not just a partial one).
    var holdsRequests: Bool {
        switch requests {
        case .heldBack, .processing(heldBack: true): return true
        case .idle, .processing(heldBack: false): return false
        }
    }

    /// A run of requests is on the stack (a plugin answering synchronously must not start another).
    var isProcessing: Bool {
        if case .processing = requests { return true }
        return false
    }

    // MARK: events: running requests

    /// A run of the requests read (new ones, joined behind any held back) begins.
    @inline(__always)
    mutating func processBegan() {
        requests = .processing(heldBack: false)
    }

    /// The run stopped at the in-flight limit with complete requests left in the buffer.
    @inline(__always)
    mutating func inFlightLimitReached() {
        requests = .processing(heldBack: true)
    }

    /// The run ended. Returns `.runNextTurn` when it held requests back and yet reading goes on
    /// (`mayRunHeld`: the flow control reads and the client is active): plugins answered everything
    /// at once, so no reply to come would run them.
    @inline(__always)
    mutating func processEnded(mayRunHeld: @autoclosure () -> Bool) -> HeldRunAction {
        guard case .processing(heldBack: true) = requests else {
            requests = .idle
            return .none
        }
        requests = .heldBack
        return mayRunHeld() ? .runNextTurn : .none
    }

    /// The held-back requests should run now if there are any and `allowed` (the lifecycle runs held
    /// requests and the in-flight limit has room).
    mutating func heldRunRequested(allowed: @autoclosure () -> Bool) -> HeldRunAction {
        guard holdsRequests, allowed() else { return .none }
        return isProcessing ? .runNextTurn : .runNow
    }

    // MARK: events: the socket

    /// The flow control advised `advice` (perhaps several events ago) and now `flowReads`. Advice
    /// the socket already follows, or that the flow control has changed its mind about since, is
    /// ignored.
    @inline(__always)
    mutating func flowAdvised(_ advice: ClientFlowControl.Action, flowReads: Bool) -> ReadingAction {
        switch advice {
        case .none:
            return .none
        case .pause:
            guard socket == .reading, !flowReads else { return .none }
            socket = .paused
            return .pause
        case .resume:
            guard socket == .paused, flowReads else { return .none }
            socket = .reading
            return .resume(runHeldFirst: holdsRequests)
        }
    }

    /// A drain stopped reading the socket for good.
    mutating func stopReading() {
        socket = .stopped
    }

    /// The channel closed: its buffer is gone.
    mutating func channelInactive() {
        socket = .stopped
        requests = .idle
    }
}
