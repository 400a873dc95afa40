import Foundation

/// The admin endpoint's settings (top-level `admin:` of the config): where it listens and the
/// bearer token callers must present. Absent: there is no admin endpoint.
public struct AdminSettings {
    public let host: String
    public let port: Int
    /// The environment variable the token was read from, and the token (nil: no token required).
    public let tokenVariable: String?
    let token: String?
    /// Where `admin.listen` is written (for errors about that address).
    let listenNode: YAMLNode

    /// Loopback addresses, the only ones allowed without a token: an IPv4 literal in 127.0.0.0/8 or
    /// the IPv6 literal ::1 (parsed with inet_pton). A host name is never loopback here, not even
    /// `localhost`: what it resolves to depends on /etc/hosts or DNS, and `127.attacker.example` is
    /// a name, not an address.
    static func isLoopback(_ host: String) -> Bool {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            return UInt32(bigEndian: v4.s_addr) >> 24 == 127
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { bytes in bytes.dropLast().allSatisfy { $0 == 0 } && bytes.last == 1 }
        }
        return false
    }
}

extension ConfigReader {
    /// `admin: { listen: [HOST:]PORT, token_env: VARIABLE }`. A bare port listens on 127.0.0.1;
    /// any other address must be given explicitly and then needs a token.
    mutating func readAdmin(_ node: YAMLNode) -> AdminSettings? {
        guard expectMap(node, "admin", allowed: ["listen", "token_env"]) else { return nil }
        guard let listenNode = node["listen"], let text = scalar(listenNode, "admin.listen", at: node) else {
            if node["listen"] == nil { fail(node, "admin: listen is required (e.g. listen: 127.0.0.1:9180)") }
            return nil
        }
        let host: String
        let port: Int
        if let bare = Int(text) {
            guard (0...65535).contains(bare) else {
                fail(listenNode, "admin.listen: expected [host:]port, found '\(text)'")
                return nil
            }
            (host, port) = ("127.0.0.1", bare)
        } else {
            guard let (h, p) = address(listenNode, "admin.listen", at: node) else { return nil }
            (host, port) = (h, p)
        }
        var variable: String?
        var token: String?
        if let tokenNode = node["token_env"] {
            guard let name = scalar(tokenNode, "admin.token_env", at: node) else { return nil }
            guard let value = ProcessInfo.processInfo.environment[name] else {
                fail(tokenNode, "admin.token_env: environment variable '\(name)' is not set")
                return nil
            }
            guard value.utf8.count >= 16 else {
                fail(tokenNode, "admin.token_env: the token in '\(name)' is shorter than 16 characters")
                return nil
            }
            (variable, token) = (name, value)
        }
        if token == nil, !AdminSettings.isLoopback(host) {
            fail(listenNode, "admin.listen: '\(host)' is not a loopback IP address (127.0.0.0/8 or ::1; host names such as localhost are not trusted); an admin endpoint without token_env must listen on one")
            return nil
        }
        return AdminSettings(host: host, port: port, tokenVariable: variable, token: token, listenNode: listenNode)
    }
}
