import SluiceSDK

/// Where credentials sit in Redis commands and replies, so debug-printer never logs them.
///
/// Requests: AUTH's arguments; everything after HELLO's AUTH; the value of CONFIG SET for
/// parameters that hold a password (requirepass, masterauth, the TLS key passphrases); MIGRATE's
/// `AUTH password` and `AUTH2 username password`; ACL SETUSER rules that add or remove a password
/// or its hash (`>pw`, `<pw`, `#hash`, `!hash`); SENTINEL SET's `auth-pass`.
/// Replies: the values CONFIG GET returns for those parameters, and every string of an ACL reply
/// (GETUSER and LIST show password hashes, GENPASS makes a password).
enum Credentials {
    /// CONFIG parameters whose value is a secret (lowercase).
    static let secretParameters: Set<String> = [
        "requirepass", "masterauth", "tls-key-file-pass", "tls-client-key-file-pass",
    ]

    /// The arguments of a command (argc of them in `args`) that must be printed as "(redacted)".
    /// Empty for almost every command; allocates only for the few that carry credentials.
    static func secretArguments(_ args: ArgumentViews, argc: Int) -> Set<Int> {
        guard argc > 1 else { return [] }
        let name = args[0]
        if name.equalsIgnoringCase("auth") { return Set(1..<argc) }
        if name.equalsIgnoringCase("hello") {
            // Everything after AUTH: the user name, the password and whatever follows.
            for a in 1..<argc where args[a].equalsIgnoringCase("auth") { return Set((a + 1)..<max(a + 1, argc)) }
            return []
        }
        if name.equalsIgnoringCase("config"), args[1].equalsIgnoringCase("set") {
            var secret = Set<Int>()
            var a = 2
            while a + 1 < argc {  // CONFIG SET parameter value [parameter value …]
                if args[a].count <= 32, secretParameters.contains(args[a].asciiLowercased) { secret.insert(a + 1) }
                a += 2
            }
            return secret
        }
        if name.equalsIgnoringCase("migrate") {
            // MIGRATE host port key|"" db timeout [COPY] [REPLACE] [AUTH pw | AUTH2 user pw] [KEYS k…]:
            // options start after the timeout; after KEYS only key names follow.
            var secret = Set<Int>()
            var a = 6
            while a < argc {
                if args[a].equalsIgnoringCase("keys") { break }
                if args[a].equalsIgnoringCase("auth") {
                    if a + 1 < argc { secret.insert(a + 1) }
                    a += 2
                } else if args[a].equalsIgnoringCase("auth2") {
                    if a + 2 < argc { secret.insert(a + 2) }
                    a += 3
                } else {
                    a += 1
                }
            }
            return secret
        }
        if name.equalsIgnoringCase("acl"), args[1].equalsIgnoringCase("setuser") {
            // ACL SETUSER name rule…: rules naming a password or its hash are secrets.
            var secret = Set<Int>()
            for a in 3..<max(3, argc) {
                guard let first = args[a].first else { continue }
                if first == UInt8(ascii: ">") || first == UInt8(ascii: "<") || first == UInt8(ascii: "#")
                    || first == UInt8(ascii: "!") { secret.insert(a) }
            }
            return secret
        }
        if name.equalsIgnoringCase("sentinel"), argc > 2, args[1].equalsIgnoringCase("set") {
            var secret = Set<Int>()
            var a = 3  // SENTINEL SET master option value [option value …]
            while a + 1 < argc {
                if args[a].equalsIgnoringCase("auth-pass") { secret.insert(a + 1) }
                a += 2
            }
            return secret
        }
        return []
    }

    /// How a reply to this command must be redacted.
    enum ReplyPolicy {
        /// Nothing secret in it.
        case none
        /// CONFIG GET: a value following the name of a secret parameter.
        case configValues
        /// ACL: every string.
        case allStrings
    }

    static func replyPolicy(_ args: ArgumentViews, argc: Int) -> ReplyPolicy {
        guard argc > 1 else { return .none }
        if args[0].equalsIgnoringCase("config"), args[1].equalsIgnoringCase("get") { return .configValues }
        if args[0].equalsIgnoringCase("acl") { return .allStrings }
        return .none
    }
}
