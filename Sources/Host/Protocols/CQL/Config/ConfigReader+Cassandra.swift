import Foundation

/// Reading the `cassandra` sink and source of a config (`ConfigReader`, Core/Config): the
/// protocol's own keys; the shared ones (credentials, TLS, client limits, users) are read by Core.
extension ConfigReader {
    /// `sinks: NAME: { cassandra: { address, connect_timeout_ms, reply_timeout_ms, tls, username,
    /// password | password_env } }`: a single Cassandra node (credentials for its
    /// PasswordAuthenticator, sent when it asks).
    mutating func readCassandraSink(name: String, key: YAMLNode, _ node: YAMLNode) -> SluiceConfig.Sink? {
        let what = "sink '\(name)'.cassandra"
        guard expectMap(node, what, allowed: ["address", "connect_timeout_ms", "reply_timeout_ms", "max_frame_bytes",
                                              "username", "password", "password_env", "tls"]),
              let (host, port) = address(node["address"], "\(what).address", at: node)
        else { return nil }
        let timeout = integer(node["connect_timeout_ms"], "\(what).connect_timeout_ms", range: 1...600_000) ?? 2000
        let replyTimeout = integer(node["reply_timeout_ms"], "\(what).reply_timeout_ms", range: 0...3_600_000) ?? 30_000
        let maxFrame = integer(node["max_frame_bytes"], "\(what).max_frame_bytes", range: 1024...(1 << 31))
            ?? SluiceConfig.defaultCQLMaxFrameBytes
        var sink = SluiceConfig.Sink(name: name, host: host, port: port, connectTimeoutMilliseconds: Int64(timeout),
                                     replyTimeoutMilliseconds: Int64(replyTimeout), maxReplyBytes: maxFrame,
                                     credentials: readCredentials(node, what),
                                     tls: readTLS(node["tls"], what, isSource: false), node: key)
        sink.kind = .cassandra
        return sink
    }

    /// A `cassandra` source: the keys of a Redis source (client limits included, the client session
    /// is the same), `auth: passthrough`, and users that need a user name (SASL PLAIN has one).
    mutating func readCassandraSource(_ node: YAMLNode, chainNames: Set<String>) -> SluiceConfig.Source? {
        let what = "source.cassandra"
        guard expectMap(node, what, allowed: ["listen", "chain", "max_frame_bytes", "max_clients", "idle_timeout_ms", "auth", "tls"] + Self.clientLimitKeys),
              let (host, port) = address(node["listen"], "\(what).listen", at: node),
              let chain = scalar(node["chain"], "\(what).chain", at: node)
        else { return nil }
        if !chainNames.contains(chain) {
            fail(node["chain"]!, "\(what).chain: unknown chain '\(chain)' (defined chains: \(chainNames.sorted().joined(separator: ", ")))")
        }
        let maxFrame = integer(node["max_frame_bytes"], "\(what).max_frame_bytes", range: 1024...(1 << 31))
            ?? SluiceConfig.defaultCQLSourceMaxFrameBytes
        let maxClients = integer(node["max_clients"], "\(what).max_clients", range: 1...1_000_000) ?? SluiceConfig.defaultMaxClients
        let idle = integer(node["idle_timeout_ms"], "\(what).idle_timeout_ms", range: 0...(86_400_000 * 365)) ?? 0
        var passthrough = false
        var users: [SluiceConfig.Credentials] = []
        if let auth = node["auth"] {
            if auth.kind == .scalar {
                if auth.scalar == "passthrough" {
                    passthrough = true
                } else {
                    fail(auth, "\(what).auth: expected 'passthrough', { username: ..., password: ... } (or password_env) or a non-empty sequence of them, found '\(auth.scalar)'")
                }
            } else {
                users = readClientAuth(auth, what: "\(what).auth")
                for entry in auth.kind == .sequence ? auth.items : [auth] where entry.kind == .map && entry["username"] == nil {
                    fail(entry, "\(what).auth: a username is required (drivers send one with the password)")
                }
                users.removeAll { $0.username == nil }
            }
        }
        var source = SluiceConfig.Source(host: host, port: port, chain: chain, maxFrameBytes: maxFrame, maxClients: maxClients,
                                         idleTimeoutMilliseconds: Int64(idle), auth: users,
                                         tls: readTLS(node["tls"], what, isSource: true), node: node)
        source.limits = readClientLimits(node, maxFrameBytes: maxFrame)
        source.kind = .cassandra
        source.authPassthrough = passthrough
        return source
    }
}
