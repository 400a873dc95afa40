import NIOCore

/// Client authentication on a Redis source (`auth:` in its config): what Redis's `requirepass` and
/// ACL passwords do, answered by Sluice itself.
///
/// Until a client authenticates, every request but AUTH, HELLO (with its AUTH option), QUIT and RESET
/// gets Redis's `-NOAUTH` error and reaches neither the chain nor a backend. AUTH is always answered
/// here, never forwarded: the backend is reached with the sink's own credentials, and neither a
/// transform nor a backend ever sees a client's password. HELLO's AUTH option is checked here and
/// taken out; the rest of the HELLO (protocol version, SETNAME) goes on as usual. RESET signs the
/// client out again, as it does on a Redis server that requires a password.
///
/// Replies and their order follow redis-server 7, so client libraries report failures as usual.
final class RedisClientAuth {
    /// One accepted user name and password (several: for rotation, or one per application).
    struct User {
        let name: [UInt8]
        let password: [UInt8]
        var isDefault: Bool { name.elementsEqual("default".utf8) }
    }

    private let users: [User]

    init(users: [User]) {
        precondition(!users.isEmpty, "client auth needs at least one user")
        self.users = users
    }

    /// What a request means for the client's authentication.
    enum Screening {
        /// Not an authentication matter here: the request goes on (`authenticated` stays as it was).
        case forward
        /// RESET: the request goes on and the client is signed out once it is sent.
        case forwardSigningOut
        /// A HELLO whose AUTH option was accepted: this HELLO, without the option, goes on instead.
        case forwardRewritten(ByteBuffer)
        /// Answered here with `reply` (a RESP line); `authenticated` becomes `signedIn` (nil: as it
        /// was). `failedPassword` counts a wrong password.
        case answer(reply: String, signedIn: Bool?, failedPassword: Bool)
    }

    static let noAuth = "-NOAUTH Authentication required.\r\n"
    static let wrongPass = "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    static let helloNoAuth = "-NOAUTH HELLO must be called with the client already authenticated, otherwise the "
        + "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP "
        + "protocol version at the same time\r\n"

    /// Screens one request of a client that is (or is not) `authenticated`. Costs one look at the
    /// command name for an authenticated client's ordinary requests.
    func screen(_ bytes: UnsafeRawBufferPointer, authenticated: Bool, inTransaction: Bool,
                allocator: ByteBufferAllocator) -> Screening {
        guard let name = RedisConnectionState.commandName(bytes) else {
            return authenticated ? .forward : .answer(reply: Self.noAuth, signedIn: nil, failedPassword: false)
        }
        if RedisReplyPlan.equalsIgnoringCase(name, "auth") {
            return auth(bytes, inTransaction: inTransaction)
        }
        if RedisReplyPlan.equalsIgnoringCase(name, "hello") {
            return hello(bytes, authenticated: authenticated, inTransaction: inTransaction, allocator: allocator)
        }
        if RedisReplyPlan.equalsIgnoringCase(name, "reset") {
            // A client that never signed in has no state anywhere to reset: answered here, so an
            // unauthenticated client cannot make Sluice open backend connections.
            return authenticated ? .forwardSigningOut : .answer(reply: "+RESET\r\n", signedIn: false, failedPassword: false)
        }
        if authenticated || RedisReplyPlan.equalsIgnoringCase(name, "quit") { return .forward }
        return .answer(reply: Self.noAuth, signedIn: nil, failedPassword: false)
    }

    /// `AUTH password` (the user "default") or `AUTH username password`.
    private func auth(_ bytes: UnsafeRawBufferPointer, inTransaction: Bool) -> Screening {
        var arguments: [UnsafeRawBufferPointer] = []
        let count = RESPCommandReader.forEachArgument(bytes) { _, start, length in
            arguments.append(UnsafeRawBufferPointer(rebasing: bytes[start..<start + length]))
            return arguments.count <= 3
        }
        if inTransaction {
            return .answer(reply: "-ERR sluice: AUTH inside MULTI is not supported through the proxy\r\n",
                           signedIn: nil, failedPassword: false)
        }
        switch count {
        case 2: return verdict(user: nil, password: arguments[1])
        case 3: return verdict(user: arguments[1], password: arguments[2])
        case 0, 1: return .answer(reply: "-ERR wrong number of arguments for 'auth' command\r\n", signedIn: nil, failedPassword: false)
        default: return .answer(reply: "-ERR syntax error\r\n", signedIn: nil, failedPassword: false)
        }
    }

    private func verdict(user: UnsafeRawBufferPointer?, password: UnsafeRawBufferPointer) -> Screening {
        accepts(user: user, password: password)
            ? .answer(reply: "+OK\r\n", signedIn: true, failedPassword: false)
            : .answer(reply: Self.wrongPass, signedIn: nil, failedPassword: true)
    }

    /// `HELLO [protover [AUTH username password] [SETNAME name]]`, checked as redis-server does:
    /// the version, then the options, then the password, then whether the client may go on. A HELLO
    /// that mentions AUTH anywhere is checked here in full, so a password never travels on.
    private func hello(_ bytes: UnsafeRawBufferPointer, authenticated: Bool, inTransaction: Bool,
                       allocator: ByteBufferAllocator) -> Screening {
        var arguments: [UnsafeRawBufferPointer] = []
        RESPCommandReader.forEachArgument(bytes) { _, start, length in
            arguments.append(UnsafeRawBufferPointer(rebasing: bytes[start..<start + length]))
            return true
        }
        let mentionsAuth = arguments.dropFirst().contains { RedisReplyPlan.equalsIgnoringCase($0, "auth") }
        if authenticated, !mentionsAuth { return .forward }
        func refuse(_ reply: String) -> Screening { .answer(reply: reply, signedIn: nil, failedPassword: false) }
        if arguments.count >= 2 {
            // redis-server reads the version as a 64-bit integer (no leading zeros), then range-checks it.
            guard let version = Self.integer(arguments[1]) else {
                return refuse("-ERR Protocol version is not an integer or out of range\r\n")
            }
            if version != 2 && version != 3 { return refuse("-NOPROTO unsupported protocol version\r\n") }
        }
        var authOptions: [Int] = []  // every one is taken out; the last one counts, as in redis-server
        var index = 2
        while index < arguments.count {
            let option = arguments[index]
            if RedisReplyPlan.equalsIgnoringCase(option, "auth"), index + 2 < arguments.count {
                authOptions.append(index)
                index += 3
            } else if RedisReplyPlan.equalsIgnoringCase(option, "setname"), index + 1 < arguments.count {
                if arguments[index + 1].contains(where: { $0 < UInt8(ascii: "!") || $0 > UInt8(ascii: "~") }) {
                    return refuse("-ERR Client names cannot contain spaces, newlines or special characters.\r\n")
                }
                index += 2
            } else {
                let text = String(decoding: option, as: UTF8.self).filter { $0 != "\r" && $0 != "\n" }
                return refuse("-ERR Syntax error in HELLO option '\(text)'\r\n")
            }
        }
        guard let authAt = authOptions.last else { return authenticated ? .forward : refuse(Self.helloNoAuth) }
        if inTransaction { return refuse("-ERR sluice: HELLO with AUTH inside MULTI is not supported through the proxy\r\n") }
        guard accepts(user: arguments[authAt + 1], password: arguments[authAt + 2]) else {
            return .answer(reply: Self.wrongPass, signedIn: nil, failedPassword: true)
        }
        let kept = arguments.indices.filter { i in !authOptions.contains { i >= $0 && i <= $0 + 2 } }.map { Array(arguments[$0]) }
        return .forwardRewritten(RESPEncoding.command(kept, allocator: allocator))
    }

    /// Whether a user (nil: "default") and password match an accepted pair. Every password is
    /// compared, in constant time (user names are not secret).
    func accepts(user: UnsafeRawBufferPointer?, password: UnsafeRawBufferPointer) -> Bool {
        var matched = false
        for entry in users {
            let nameMatches = user.map { entry.name.elementsEqual($0) } ?? entry.isDefault
            let passwordMatches = Self.constantTimeEquals(password, entry.password)
            matched = matched || (nameMatches && passwordMatches)
        }
        return matched
    }

    /// Compares a byte string a client sent with a secret, in time that depends only on the length
    /// of what the client sent: neither where the bytes differ nor the secret's length shows.
    static func constantTimeEquals<A: Collection, B: Collection>(_ given: A, _ secret: B) -> Bool
    where A.Element == UInt8, B.Element == UInt8, B.Index == Int {
        var difference: UInt = given.count == secret.count ? 0 : 1
        guard !secret.isEmpty else { return given.isEmpty }
        var j = secret.startIndex
        for byte in given {
            difference |= UInt(byte ^ secret[j])
            j = j + 1 == secret.endIndex ? secret.startIndex : j + 1
        }
        return difference == 0
    }

    /// A RESP argument read as redis-server's string2ll does: optional '-', no leading zeros, 64 bits.
    static func integer(_ bytes: UnsafeRawBufferPointer) -> Int64? {
        guard !bytes.isEmpty, bytes.count <= 20 else { return nil }
        let negative = bytes[0] == UInt8(ascii: "-")
        let digits = negative ? UnsafeRawBufferPointer(rebasing: bytes[1...]) : bytes
        guard let first = digits.first, first &- UInt8(ascii: "0") < 10,
              first != UInt8(ascii: "0") || digits.count == 1, !(negative && digits.count == 1 && first == UInt8(ascii: "0"))
        else { return nil }
        var value: Int64 = 0
        for byte in digits {
            guard byte &- UInt8(ascii: "0") < 10 else { return nil }
            let (times, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = (negative ? times.subtractingReportingOverflow(Int64(byte - 48)) : times.addingReportingOverflow(Int64(byte - 48)))
            if o1 || o2 { return nil }
            value = sum
        }
        return value
    }
}
