/// A configured Redis backend (`sinks: NAME: { redis: { address: host:port } }`).
struct SinkPlan {
    let name: String
    let host: String
    let port: Int
    let connectTimeoutMilliseconds: Int64
    /// How long a shared connection may owe a reply before it is closed and its batches failed (0: no
    /// limit). Dedicated connections carry blocking commands and pub/sub, so they have no such limit.
    let replyTimeoutMilliseconds: Int64
    /// Largest reply accepted from the backend.
    let maxFrameBytes: Int
    /// Whether the backend is reachable, shared by every connection to it on every event loop.
    let health = SinkHealth()

    var address: String { "\(host):\(port)" }
}
