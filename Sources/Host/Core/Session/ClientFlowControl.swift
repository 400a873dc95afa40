/// Whether a client's requests are read, how many may be in flight, and when its queued replies
/// close it: the backpressure of one client connection, as a plain value (no channel, no clock).
/// `ClientSession` reports what happens and carries out the returned `Action`.
///
/// Reading pauses for any of three reasons and resumes once none is left:
/// - `inFlight`: the client has `maxBatchesInFlight` batches, or `requestLimit` requests, or
///   `requestBytesLimit` bytes of requests unanswered (it resumes at half of each). The bytes are
///   those of the requests as they run, so a request that grew on the way in (a CQL body
///   decompressed: LZ4 expands up to 255 times) counts at its full size;
/// - `replies`: its socket does not take our writes (more than the soft limit of replies queued:
///   NIO's write-buffer water marks; it resumes below a quarter of it);
/// - `requestBudget`: the source's budget for buffered partial requests is spent and this client's
///   partial request grew (it resumes when the budget has room again, or its buffer no longer
///   counts: the requests it holds then are complete and run as the in-flight limit allows).
/// Once stopped (QUIT, a protocol error, a drain, a close) it never resumes.
///
/// `requestLimit` follows the client's replies: a client may have requested about `windowBytes` of
/// replies at once (by the size of its recent replies per request), at least one request and at
/// most `maxRequestsInFlight`. Before its first reply it may have `initialRequestLimit` requests in
/// flight. So a client that asks for large values and does not read them holds a bounded number of
/// them in flight, on a backend connection it may share with other clients, instead of thousands.
struct ClientFlowControl {
    struct PauseReasons: OptionSet, Equatable {
        let rawValue: UInt8
        static let inFlight = PauseReasons(rawValue: 1)
        static let replies = PauseReasons(rawValue: 2)
        static let requestBudget = PauseReasons(rawValue: 4)
    }

    enum State: Equatable {
        case reading
        case paused(PauseReasons)
        case stopped
    }

    enum Action: Equatable {
        case none
        /// Stop reading the client's socket.
        case pause
        /// Read again (first run what the in-flight limit held back).
        case resume
    }

    static let maxBatchesInFlight = 256
    static let maxRequestsInFlight = 4096
    static let initialRequestLimit = 16
    /// Requests of one read run as batches of at most this many. A batch's replies are written when
    /// all of them arrived, so this bounds what a batch gathers before the reply limits see it.
    static let maxRequestsPerBatch = 64

    private(set) var state: State = .reading
    private(set) var batchesInFlight = 0
    private(set) var requestsInFlight = 0
    /// Requests the client may have in flight now.
    private(set) var requestLimit = Self.initialRequestLimit
    /// Bytes of the requests in flight (as they run: decompressed, rebuilt).
    private(set) var requestBytesInFlight = 0
    /// Request bytes the client may have in flight (at least one request always runs).
    let requestBytesLimit: Int
    /// Reply bytes per request, as the client's recent replies tell (nil before the first one).
    private(set) var replyBytesPerRequest: Int?
    /// Reply bytes queued for the client since its socket stopped taking our writes.
    private(set) var repliesWhileBlocked = 0
    private var writable = true
    /// The source's request-buffer budget made this client wait (see `requestBudget(spent:)`).
    private(set) var waitsForRequestBudget = false
    let windowBytes: Int
    let hardLimitBytes: Int

    init(limits: ClientLimits) {
        windowBytes = limits.replyWindowBytes
        hardLimitBytes = limits.replyHardBytes
        requestBytesLimit = limits.requestWindowBytes
    }

    var isReading: Bool { state == .reading }

    /// Whether `scanned` more requests (read but not run yet) still fit within the in-flight limits.
    func hasRoom(forMore scanned: Int) -> Bool {
        requestsInFlight + scanned < requestLimit && requestBytesInFlight < requestBytesLimit
    }

    /// A batch of `requests` (`requestBytes` in all) took its place in the response order (run,
    /// answered here, or a push).
    mutating func batchStarted(requests: Int, requestBytes: Int = 0) -> Action {
        batchesInFlight += 1
        requestsInFlight += requests
        requestBytesInFlight += requestBytes
        return reevaluate()
    }

    /// A batch's replies (`replyBytes` in all) are about to be written to the client; its requests
    /// (`requestBytes`, as `batchStarted` counted them) are done.
    mutating func batchWritten(requests: Int, requestBytes: Int = 0, replyBytes: Int) -> Action {
        batchesInFlight -= 1
        requestsInFlight -= requests
        requestBytesInFlight -= requestBytes
        if !writable { repliesWhileBlocked += replyBytes }
        if requests > 0 { learn(replyBytesPerRequest: replyBytes / requests) }
        return reevaluate()
    }

    /// One request of a batch whose replies are written one by one (CQL: each as it comes) is
    /// answered, its reply of `replyBytes` about to be written. The batch itself, and its request
    /// bytes, are done once its last reply came: `batchWritten(requests: 0, requestBytes:, replyBytes: 0)`.
    mutating func requestAnswered(replyBytes: Int) -> Action {
        requestsInFlight -= 1
        if !writable { repliesWhileBlocked += replyBytes }
        learn(replyBytesPerRequest: replyBytes)
        return reevaluate()
    }

    /// A push (no request's reply) of `bytes` is about to be written: counted as replies are.
    mutating func pushWritten(bytes: Int) {
        if !writable { repliesWhileBlocked += bytes }
    }

    /// The replies queued since the socket stopped taking writes passed the hard limit: the client
    /// must be closed (it does not read, and its replies keep coming).
    var exceedsHardLimit: Bool { repliesWhileBlocked > hardLimitBytes }

    /// NIO reported the socket's writability (the soft limit's water marks).
    mutating func writabilityChanged(_ isWritable: Bool) -> Action {
        writable = isWritable
        if isWritable { repliesWhileBlocked = 0 }
        return reevaluate()
    }

    /// The source's request-buffer budget is spent (after this client's partial request grew), or
    /// has room again, or no longer makes this client wait.
    mutating func requestBudget(spent: Bool) -> Action {
        waitsForRequestBudget = spent
        return reevaluate()
    }

    /// Nothing more is read from this client.
    mutating func stop() {
        state = .stopped
    }

    /// Forgets what was in flight (the client closed).
    mutating func reset() {
        state = .stopped
        batchesInFlight = 0
        requestsInFlight = 0
        requestBytesInFlight = 0
    }

    /// Follows the client's reply sizes: a larger sample counts at once (the window shrinks before
    /// more large replies are requested), a smaller one a quarter at a time.
    private mutating func learn(replyBytesPerRequest sample: Int) {
        let estimate: Int
        if let previous = replyBytesPerRequest, sample < previous {
            estimate = previous - (previous - sample) / 4
        } else {
            estimate = sample
        }
        replyBytesPerRequest = estimate
        requestLimit = min(max(windowBytes / max(estimate, 1), 1), Self.maxRequestsInFlight)
    }

    private mutating func reevaluate() -> Action {
        let current: PauseReasons
        switch state {
        case .stopped: return .none
        case .reading: current = []
        case .paused(let reasons): current = reasons
        }
        var reasons: PauseReasons = []
        if batchesInFlight >= Self.maxBatchesInFlight || requestsInFlight >= requestLimit
            || requestBytesInFlight >= requestBytesLimit {
            reasons.insert(.inFlight)
        } else if current.contains(.inFlight),
                  batchesInFlight > Self.maxBatchesInFlight / 2 || requestsInFlight > requestLimit / 2
                  || requestBytesInFlight > requestBytesLimit / 2 {
            reasons.insert(.inFlight)  // resumes at half, so that reading does not flap per reply
        }
        if !writable { reasons.insert(.replies) }
        if waitsForRequestBudget { reasons.insert(.requestBudget) }
        state = reasons.isEmpty ? .reading : .paused(reasons)
        switch (current.isEmpty, reasons.isEmpty) {
        case (true, false): return .pause
        case (false, true): return .resume
        default: return .none
        }
    }
}
