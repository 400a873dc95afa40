import NIOCore

/// Client authentication on a `cassandra` source answered by Sluice itself (`auth:` with users):
/// what Cassandra's PasswordAuthenticator does, without a backend.
///
/// STARTUP is answered with AUTHENTICATE naming `authenticator`; the client's AUTH_RESPONSE token
/// (SASL PLAIN: `authzid NUL user NUL password`) is checked here and never forwarded, so neither a
/// transform nor a backend sees a client's password; the backend is reached with the sink's own
/// credentials. Passwords are compared in constant time and never logged.
final class CQLClientAuth: Sendable {
    /// One accepted user name and password (several: for rotation, or one per application).
    struct User: Sendable {
        let name: [UInt8]
        let password: [UInt8]
    }

    /// The class drivers expect from a Cassandra that checks user names and passwords.
    static let authenticator = "org.apache.cassandra.auth.PasswordAuthenticator"

    private let users: [User]

    init(users: [User]) {
        precondition(!users.isEmpty, "client auth needs at least one user")
        self.users = users
    }

    /// What an AUTH_RESPONSE token means.
    enum Verdict: Equatable {
        /// The user signed in.
        case accepted(user: String)
        /// A wrong user name or password (`user` as given, for the error message).
        case rejected(user: String)
        /// Not a SASL PLAIN token at all.
        case malformed
    }

    /// Checks a SASL PLAIN token (nil: the client sent a null token).
    func check(token: ByteBuffer?) -> Verdict {
        guard let token else { return .malformed }
        return token.withUnsafeReadableBytes { bytes -> Verdict in
            // authzid NUL authcid NUL passwd; the authorisation identity is ignored, as Cassandra does.
            guard let first = bytes.firstIndex(of: 0),
                  let second = bytes[(first + 1)...].firstIndex(of: 0) else { return .malformed }
            let user = UnsafeRawBufferPointer(rebasing: bytes[(first + 1)..<second])
            let password = UnsafeRawBufferPointer(rebasing: bytes[(second + 1)...])
            let name = String(decoding: user, as: UTF8.self)
            return accepts(user: user, password: password) ? .accepted(user: name) : .rejected(user: name)
        }
    }

    /// Whether a user name and password match an accepted pair. Every password is compared, in
    /// constant time (user names are not secret).
    func accepts(user: UnsafeRawBufferPointer, password: UnsafeRawBufferPointer) -> Bool {
        var matched = false
        for entry in users {
            let nameMatches = entry.name.elementsEqual(user)
            let passwordMatches = Self.constantTimeEquals(password, entry.password)
            matched = matched || (nameMatches && passwordMatches)
        }
        return matched
    }

    /// Compares bytes a client sent with a secret in time that depends only on the length of what
    /// the client sent: neither where the bytes differ nor the secret's length shows.
    static func constantTimeEquals(_ given: UnsafeRawBufferPointer, _ secret: [UInt8]) -> Bool {
        guard !secret.isEmpty else { return given.isEmpty }
        var difference: UInt = given.count == secret.count ? 0 : 1
        var j = 0
        for byte in given {
            difference |= UInt(byte ^ secret[j])
            j = j + 1 == secret.count ? 0 : j + 1
        }
        return difference == 0
    }
}

extension CQLClientConnection.Authentication {
    /// How the clients of a `cassandra` source authenticate, from its config.
    init(_ source: SluiceConfig.Source) {
        if source.authPassthrough {
            self = .passthrough
        } else if source.auth.isEmpty {
            self = .none
        } else {
            self = .sluice(CQLClientAuth(users: source.auth.map {
                CQLClientAuth.User(name: Array(($0.username ?? "").utf8), password: Array($0.password.utf8))
            }))
        }
    }
}
