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
    /// `AUTH [username] password` as RESP, sent first on every connection to this backend (nil:
    /// the backend needs no credentials). Holds the secret: never log it.
    let authCommand: [UInt8]?
    /// TLS to the backend (nil: plain TCP).
    let tls: TLS?
    /// Whether the backend is reachable, shared by every connection to it on every event loop
    /// (a CQL connection of v5 sees `cqlV5Health` here instead: `forCQLConnection`). Set only there.
    var health = SinkHealth()
    /// Cassandra: the connect failures of the sink's v5 connections, kept apart from `health`: a
    /// backend that refuses a v5 STARTUP (it speaks v4 only, and the version probe had not told
    /// yet, or the clients' main sink is another) backs off only the v5 connections, never those
    /// of the v4 clients.
    let cqlV5Health = SinkHealth()
    /// The protocol the backend speaks.
    var protocolKind: SinkProtocol = .redis
    /// Cassandra: the user name and password of SASL PLAIN (PasswordAuthenticator) sent on every
    /// connection that the backend asks to authenticate (nil: none). Holds the secret: never log it.
    var cqlCredentials: SluiceConfig.Credentials? = nil
    /// Cassandra: prepared statements seen through this sink (for re-preparing), shared by every
    /// event loop.
    let preparedStatements = CQLPreparedRegistry()
    /// Cassandra: whether the backend speaks protocol v5 (probed per generation; see
    /// `CQLBackendVersionKnowledge`), which decides the versions clients may open with.
    let cqlVersions = CQLBackendVersions()

    var address: String { "\(host):\(port)" }

    /// This sink as a CQL connection of `version` uses it: with `cqlV5Health` as its health for
    /// the version the backend may refuse (`CQLBackendVersions.probed`).
    func forCQLConnection(of version: CQLVersion) -> SinkPlan {
        guard version == cqlVersions.probed else { return self }
        var plan = self
        plan.health = cqlV5Health
        return plan
    }

    struct TLS {
        let context: NIOSSLContext
        /// Checked against the backend's certificate and sent as SNI; nil: the IP address is checked.
        let serverName: String?

        /// The sink's host when it is a name: an IP address is not a server name.
        static func defaultServerName(_ host: String) -> String? {
            TLSContexts.isIPAddress(host) ? nil : host
        }
    }

    static func authCommand(_ credentials: SluiceConfig.Credentials) -> [UInt8] {
        let arguments = ["AUTH"] + (credentials.username.map { [$0] } ?? []) + [credentials.password]
        var bytes = Array("*\(arguments.count)\r\n".utf8)
        for argument in arguments {
            bytes += Array("$\(argument.utf8.count)\r\n".utf8) + Array(argument.utf8) + [13, 10]
        }
        return bytes
    }
}
