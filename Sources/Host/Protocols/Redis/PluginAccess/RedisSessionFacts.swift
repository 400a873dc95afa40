/// What a Redis client's session has told the host (`SessionFacts.redis`): the RESP version, the
/// database and the client name. They follow the replies the client received: a HELLO, SELECT,
/// AUTH, CLIENT SETNAME or RESET counts once its success reply came back through the chain
/// (`RedisSessionObserver`). Set only through `SessionFacts.apply(_:)` below, on the client's event
/// loop. (The user is the session's for either protocol: `SessionFacts.user`.)
struct RedisSessionFacts {
    /// 2 or 3 (RESP2 until a HELLO 3 succeeds).
    fileprivate(set) var protocolVersion = 2
    fileprivate(set) var database = 0
    /// CLIENT SETNAME / HELLO SETNAME; nil when none.
    fileprivate(set) var clientName: FactBytes?
}

/// A change a request makes to the session once its reply says it succeeded.
enum RedisSessionChange: Equatable {
    case hello(version: Int?, user: [UInt8]?, name: [UInt8]?)
    case select(Int)
    case auth(user: [UInt8])
    case setName([UInt8])
    case reset

    /// The changes the requests of `batch` make if they succeed, by request index; nil when none of
    /// them is a session command (almost every batch: one look at each command name).
    static func changes(in batch: Batch) -> [(index: Int, change: RedisSessionChange)]? {
        if batch.plainRequests { return nil }
        var found: [(index: Int, change: RedisSessionChange)]?
        for i in 0..<batch.count {
            guard let change = batch.withMessageBytes(i, change(of:)) else { continue }
            if found == nil { found = [] }
            found!.append((i, change))
        }
        return found
    }

    /// The change request `bytes` makes if it succeeds, or nil.
    static func change(of bytes: UnsafeRawBufferPointer) -> RedisSessionChange? {
        guard let name = RedisConnectionState.commandName(bytes), name.count >= 4, name.count <= 6 else { return nil }
        switch name[0] | 0x20 {
        case UInt8(ascii: "h"), UInt8(ascii: "s"), UInt8(ascii: "a"), UInt8(ascii: "c"), UInt8(ascii: "r"): break
        default: return nil
        }
        let named = { (word: StaticString) in RedisReplyPlan.equalsIgnoringCase(name, word) }
        guard named("hello") || named("select") || named("auth") || named("client") || named("reset") else { return nil }
        var args: [UnsafeRawBufferPointer] = []
        RESPCommandReader.forEachArgument(bytes) { _, start, length in
            args.append(UnsafeRawBufferPointer(rebasing: bytes[start..<start + length]))
            return args.count < 8  // HELLO ver AUTH u p SETNAME n: no session command needs more
        }
        switch args.count {
        case _ where named("reset"): return .reset
        case 2 where named("select"): return number(args[1]).map { .select($0) }
        case 2 where named("auth"): return .auth(user: Array("default".utf8))
        case 3 where named("auth"): return .auth(user: Array(args[1]))
        case 3 where named("client"):
            return RedisReplyPlan.equalsIgnoringCase(args[1], "setname") ? .setName(Array(args[2])) : nil
        case 1... where named("hello"):
            var version: Int?, user: [UInt8]?, clientName: [UInt8]?
            var i = 1
            if args.count > 1, let v = number(args[1]) {
                version = v
                i = 2
            }
            while i < args.count {
                if RedisReplyPlan.equalsIgnoringCase(args[i], "auth"), i + 2 < args.count {
                    user = Array(args[i + 1])
                    i += 3
                } else if RedisReplyPlan.equalsIgnoringCase(args[i], "setname"), i + 1 < args.count {
                    clientName = Array(args[i + 1])
                    i += 2
                } else {
                    return nil  // an option Redis refuses: no change
                }
            }
            return .hello(version: version, user: user, name: clientName)
        default:
            return nil
        }
    }

    /// The user an AUTH or HELLO … AUTH request signs in as ("default" for AUTH with a password
    /// only), or nil for any other request.
    static func userName(signingIn bytes: UnsafeRawBufferPointer) -> [UInt8]? {
        switch change(of: bytes) {
        case .auth(let user)?: return user
        case .hello(_, let user?, _)?: return user
        default: return nil
        }
    }

    /// Whether `reply` says the request that makes `change` succeeded (not an error, not +QUEUED).
    static func succeeded(_ change: RedisSessionChange, reply: UnsafeRawBufferPointer) -> Bool {
        guard let first = reply.first else { return false }
        switch change {
        case .hello: return first == UInt8(ascii: "%") || first == UInt8(ascii: "*")
        case .reset: return reply.starts(with: "+RESET\r\n".utf8)
        case .select, .auth, .setName: return reply.starts(with: "+OK\r\n".utf8)
        }
    }

    private static func number(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard !bytes.isEmpty, bytes.count <= 9, bytes.allSatisfy({ $0 &- 48 < 10 }) else { return nil }
        return bytes.reduce(0) { $0 * 10 + Int($1 - 48) }
    }
}

extension SessionFacts {
    /// A session command's success reply reached the client.
    func apply(_ change: RedisSessionChange) {
        switch change {
        case .hello(let version, let user, let name):
            if let version { redis.protocolVersion = version }
            if let user { signedIn(as: user) }
            if let name { replace(&redis.clientName, with: name.isEmpty ? nil : name) }
        case .select(let index):
            redis.database = index
        case .auth(let user):
            signedIn(as: user)
        case .setName(let name):
            replace(&redis.clientName, with: name.isEmpty ? nil : name)
        case .reset:
            redis.protocolVersion = 2
            redis.database = 0
            signedOut()
            replace(&redis.clientName, with: nil)
        }
    }
}
