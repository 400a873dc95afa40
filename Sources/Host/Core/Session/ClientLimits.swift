/// What one Redis source allows each of its clients to make Sluice hold, and for how long: the
/// `reply_buffer_*`, `request_buffer_budget_bytes` and `request_timeout_ms` keys of a source.
/// See docs/config.md and docs/architecture.md ("Backpressure").
public struct ClientLimits: Equatable, Sendable {
    /// Replies queued for a client beyond this (bytes its socket has not taken yet): its requests
    /// are no longer read until the queue drained to a quarter of it.
    public var replySoftBytes: Int
    /// A client that is past the soft limit (not reading its replies) and would then hold more than
    /// this in queued replies is closed. A single reply larger than this still reaches a client that
    /// reads it.
    public var replyHardBytes: Int
    /// Request bytes (partial requests and requests waiting for their turn) all clients of the
    /// source may have buffered together; past it, a client whose buffer grows is not read until
    /// the total fell below seven eighths of it.
    public var requestBufferBudgetBytes: Int
    /// A request begun (its first byte read), or a TLS handshake, must be complete within this many
    /// milliseconds, or the client is closed (0: no limit).
    public var requestTimeoutMilliseconds: Int64

    public static let defaultReplySoftBytes = 1 << 20
    public static let defaultReplyHardBytes = 64 << 20
    /// At least 1 GiB, and room for two requests of `max_frame_bytes`.
    public static func defaultRequestBufferBudget(maxFrameBytes: Int) -> Int { max(1 << 30, 2 * maxFrameBytes) }
    public static let defaultRequestTimeoutMilliseconds: Int64 = 30_000

    public init(replySoftBytes: Int = Self.defaultReplySoftBytes, replyHardBytes: Int = Self.defaultReplyHardBytes,
                requestBufferBudgetBytes: Int = 1 << 30,
                requestTimeoutMilliseconds: Int64 = Self.defaultRequestTimeoutMilliseconds) {
        self.replySoftBytes = replySoftBytes
        self.replyHardBytes = replyHardBytes
        self.requestBufferBudgetBytes = requestBufferBudgetBytes
        self.requestTimeoutMilliseconds = requestTimeoutMilliseconds
    }

    /// How many bytes of replies a client may have requested and not received yet, as far as its
    /// recent reply sizes tell (see `ClientFlowControl`): a quarter of the hard limit, so a client that
    /// stops reading is paused by the soft limit well before its replies in flight reach the hard one.
    var replyWindowBytes: Int { max(replyHardBytes / 4, 1) }

    /// How many bytes of requests, as they run (a CQL body decompressed), one client may have in
    /// flight before it is no longer read: a sixteenth of the request-buffer budget (64 MiB by
    /// default), at least 1 MiB; one request always runs, however large. Without it a client could
    /// make Sluice hold `maxRequestsInFlight` requests that each decompressed to `max_frame_bytes`.
    var requestWindowBytes: Int { max(requestBufferBudgetBytes / 16, 1 << 20) }
}
