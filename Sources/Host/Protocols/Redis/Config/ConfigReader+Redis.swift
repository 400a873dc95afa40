import Foundation

/// Reading the `redis` sink and source of a config (`ConfigReader`, Core/Config): the protocol's
/// own keys; the shared ones (credentials, TLS, client limits, users) are read by Core.
extension ConfigReader {
    /// `sinks: NAME: { redis: { address, connect_timeout_ms, reply_timeout_ms, max_reply_bytes,
    /// username, password | password_env, tls } }`.
    mutating func readRedisSink(name: String, key: YAMLNode, _ redis: YAMLNode) -> SluiceConfig.Sink? {
        guard expectMap(redis, "sink '\(name)'.redis", allowed: ["address", "connect_timeout_ms", "reply_timeout_ms", "max_reply_bytes",
                                                                "username", "password", "password_env", "tls"]),
              let (host, port) = address(redis["address"], "sink '\(name)'.redis.address", at: redis)
        else { return nil }
        let timeout = integer(redis["connect_timeout_ms"], "sink '\(name)'.redis.connect_timeout_ms", range: 1...600_000) ?? 2000
        let replyTimeout = integer(redis["reply_timeout_ms"], "sink '\(name)'.redis.reply_timeout_ms", range: 0...3_600_000) ?? 30_000
        let maxReply = integer(redis["max_reply_bytes"], "sink '\(name)'.redis.max_reply_bytes", range: 1024...(1 << 31))
            ?? SluiceConfig.defaultMaxFrameBytes
        return SluiceConfig.Sink(name: name, host: host, port: port, connectTimeoutMilliseconds: Int64(timeout),
                                 replyTimeoutMilliseconds: Int64(replyTimeout), maxReplyBytes: maxReply,
                                 credentials: readCredentials(redis, "sink '\(name)'.redis"),
                                 tls: readTLS(redis["tls"], "sink '\(name)'.redis", isSource: false), node: key)
    }

    /// `sources: - redis: { listen, chain, max_frame_bytes, max_clients, idle_timeout_ms, auth, tls,
    /// client limits }`.
    mutating func readRedisSource(_ redis: YAMLNode, chainNames: Set<String>) -> SluiceConfig.Source? {
        guard expectMap(redis, "source.redis", allowed: ["listen", "chain", "max_frame_bytes", "max_clients", "idle_timeout_ms", "auth", "tls"] + Self.clientLimitKeys),
              let (host, port) = address(redis["listen"], "source.redis.listen", at: redis),
              let chain = scalar(redis["chain"], "source.redis.chain", at: redis)
        else { return nil }
        if !chainNames.contains(chain) {
            fail(redis["chain"]!, "source.redis.chain: unknown chain '\(chain)' (defined chains: \(chainNames.sorted().joined(separator: ", ")))")
        }
        let maxFrame = integer(redis["max_frame_bytes"], "max_frame_bytes", range: 1024...(1 << 31))
            ?? SluiceConfig.defaultMaxFrameBytes
        let maxClients = integer(redis["max_clients"], "max_clients", range: 1...1_000_000) ?? SluiceConfig.defaultMaxClients
        let idle = integer(redis["idle_timeout_ms"], "idle_timeout_ms", range: 0...(86_400_000 * 365)) ?? 0
        var source = SluiceConfig.Source(host: host, port: port, chain: chain, maxFrameBytes: maxFrame, maxClients: maxClients,
                                         idleTimeoutMilliseconds: Int64(idle), auth: readClientAuth(redis["auth"]),
                                         tls: readTLS(redis["tls"], "source.redis", isSource: true), node: redis)
        source.limits = readClientLimits(redis, maxFrameBytes: maxFrame)
        return source
    }
}
