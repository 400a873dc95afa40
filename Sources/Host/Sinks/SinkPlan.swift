/// A configured Redis backend (`sinks: NAME: { redis: { address: host:port } }`).
struct SinkPlan {
    let name: String
    let host: String
    let port: Int
    let connectTimeoutMilliseconds: Int64
    /// Largest reply accepted from the backend.
    let maxFrameBytes: Int

    var address: String { "\(host):\(port)" }
}
