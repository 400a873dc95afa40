/// The credentials a client signed in with when its source passes authentication through
/// (`auth: passthrough`): its SASL PLAIN token, which opens backend connections of its own (shared
/// by the clients of the event loop that signed in with the same token). Holds a secret: never log it.
struct CQLIdentity: Hashable {
    /// The PLAIN token (authorisation id, user, password, NUL-separated), as the client sent it.
    let token: [UInt8]
    let credentials: SluiceConfig.Credentials

    /// Nil when `token` is not a SASL PLAIN token.
    init?(token: [UInt8]) {
        let parts = token.split(separator: 0, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[2].isEmpty else { return nil }
        self.token = token
        credentials = SluiceConfig.Credentials(username: String(decoding: parts[1], as: UTF8.self),
                                               password: String(decoding: parts[2], as: UTF8.self))
    }

    static func == (a: CQLIdentity, b: CQLIdentity) -> Bool { a.token == b.token }
    func hash(into hasher: inout Hasher) { hasher.combine(token) }
}
