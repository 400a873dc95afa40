import NIOSSL

/// A configured backend (`sinks: NAME: { redis: { address: host:port } }`, or `cassandra:`).
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
    /// What only a Redis sink uses (its AUTH command).
    var redis = RedisSinkSettings()
    /// TLS to the backend (nil: plain TCP).
    let tls: TLS?
    /// Whether the backend is reachable, shared by every connection to it on every event loop
    /// (a CQL connection of v5 sees `CQLSinkState.v5Health` here instead: `forCQLConnection`). Set only there.
    var health = SinkHealth()
    /// The protocol the backend speaks.
    var protocolKind: SinkProtocol = .redis
    /// What only a Cassandra sink uses: its credentials, and the objects every event loop shares
    /// (prepared statements, the versions the backend speaks, the v5 connections' health), which
    /// copies of this plan share too.
    var cql = CQLSinkState()

    var address: String { "\(host):\(port)" }

    struct TLS {
        let context: NIOSSLContext
        /// Checked against the backend's certificate and sent as SNI; nil: the IP address is checked.
        let serverName: String?

        /// The sink's host when it is a name: an IP address is not a server name.
        static func defaultServerName(_ host: String) -> String? {
            TLSContexts.isIPAddress(host) ? nil : host
        }
    }
}
