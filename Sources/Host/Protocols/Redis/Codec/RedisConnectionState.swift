/// Which Redis commands tie a client to a backend connection of its own.
///
/// A client that only sends self-contained commands (GET, SET, INCR, MGET…) can share one backend
/// connection with every other such client on its event loop, so replies for many clients come back
/// in one read and requests go out in one write. A command that changes or depends on connection
/// state (SELECT, AUTH, HELLO, MULTI/WATCH, most CLIENT subcommands), blocks the connection (BLPOP, XREAD BLOCK,
/// WAIT), or turns it into a push channel (SUBSCRIBE, MONITOR) moves the client to a dedicated
/// connection for the rest of its life.
enum RedisConnectionState {
    /// True if the command in `bytes` (a multibulk request) needs a dedicated backend connection.
    static func needsDedicatedConnection(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let name = commandName(bytes), name.count >= 4, name.count <= 12 else { return false }
        let first = name[0] | 0x20
        for candidate in candidates(startingWith: first) where RedisReplyPlan.equalsIgnoringCase(name, candidate) {
            return first != UInt8(ascii: "c") || !isSharableClientCommand(bytes)
        }
        return false
    }

    /// CLIENT subcommands that neither read nor change the state of the connection they arrive on:
    /// SETINFO only labels it (redis-py, Jedis and others send it on every new connection, which
    /// would otherwise cost each of them a backend connection of its own); MAINT_NOTIFICATIONS (sent
    /// by redis-py 8 on connect) asks for pushes about endpoint moves, which a client behind a proxy
    /// cannot act on, and which a shared connection drops; LIST, KILL, PAUSE and UNPAUSE act on the
    /// whole server. The rest (SETNAME, ID, TRACKING, NO-EVICT…) stay dedicated.
    private static func isSharableClientCommand(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var sharable = false
        RESPCommandReader.forEachArgument(bytes) { index, start, length in
            guard index == 1 else { return true }
            let subcommand = UnsafeRawBufferPointer(rebasing: bytes[start..<start + length])
            sharable = Names.sharableClientSubcommands.contains { RedisReplyPlan.equalsIgnoringCase(subcommand, $0) }
            return false
        }
        return sharable
    }

    /// 2 or 3 if the command is a lone protocol switch (`HELLO 2`, `HELLO 3`: no AUTH or SETNAME
    /// option); nil for anything else.
    static func protocolSwitch(_ bytes: UnsafeRawBufferPointer) -> Int? {
        var version: Int?
        let count = RESPCommandReader.forEachArgument(bytes) { index, start, length in
            if index == 0 {
                return RedisReplyPlan.equalsIgnoringCase(UnsafeRawBufferPointer(rebasing: bytes[start..<start + length]), "hello")
            }
            if length == 1, bytes[start] == UInt8(ascii: "2") || bytes[start] == UInt8(ascii: "3") {
                version = Int(bytes[start] - UInt8(ascii: "0"))
            }
            return false
        }
        return count == 2 ? version : nil
    }

    /// True if the command may legitimately wait without replying for as long as it likes (blocking
    /// pops, XREAD BLOCK, WAIT, MONITOR, replication): such batches are exempt from the reply timeout.
    static func mayWaitIndefinitely(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let name = commandName(bytes), name.count >= 4, name.count <= 10 else { return false }
        let list: [StaticString]
        switch name[0] | 0x20 {
        case UInt8(ascii: "b"): list = Names.b
        case UInt8(ascii: "x"): list = Names.x
        case UInt8(ascii: "w"): list = ["wait", "waitaof"]
        case UInt8(ascii: "m"): list = ["monitor"]
        case UInt8(ascii: "s"): list = ["sync"]
        case UInt8(ascii: "p"): list = ["psync"]
        default: return false
        }
        return list.contains { RedisReplyPlan.equalsIgnoringCase(name, $0) }
    }

    private static func candidates(startingWith letter: UInt8) -> [StaticString] {
        switch letter {
        case UInt8(ascii: "a"): return Names.a
        case UInt8(ascii: "b"): return Names.b
        case UInt8(ascii: "c"): return Names.c
        case UInt8(ascii: "h"): return Names.h
        case UInt8(ascii: "m"): return Names.m
        case UInt8(ascii: "p"): return Names.p
        case UInt8(ascii: "r"): return Names.r
        case UInt8(ascii: "s"): return Names.s
        case UInt8(ascii: "u"): return Names.u
        case UInt8(ascii: "w"): return Names.w
        case UInt8(ascii: "x"): return Names.x
        default: return Names.none
        }
    }

    /// The commands, lowercase, by first letter.
    private enum Names {
        static let a: [StaticString] = ["auth", "asking"]
        static let b: [StaticString] = ["blpop", "brpop", "blmove", "brpoplpush", "bzpopmin", "bzpopmax", "blmpop", "bzmpop"]
        static let c: [StaticString] = ["client"]
        static let h: [StaticString] = ["hello"]
        static let m: [StaticString] = ["multi", "monitor"]
        static let p: [StaticString] = ["psubscribe", "punsubscribe", "psync"]
        static let r: [StaticString] = ["reset", "readonly", "readwrite"]
        static let s: [StaticString] = ["select", "subscribe", "ssubscribe", "sunsubscribe", "sync", "swapdb"]
        /// UNSUBSCRIBE answers once per channel even outside subscribed mode: never on a shared connection.
        static let u: [StaticString] = ["unsubscribe"]
        static let w: [StaticString] = ["watch", "wait", "waitaof"]
        static let x: [StaticString] = ["xread", "xreadgroup"]
        static let none: [StaticString] = []
        static let sharableClientSubcommands: [StaticString] = ["setinfo", "maint_notifications", "list", "kill",
                                                                "pause", "unpause", "help"]
    }

    /// Argument 0 of a multibulk request, without copying.
    @inline(__always)
    static func commandName(_ bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        // Fast path for "*N\r\n$L\r\nNAME": one-digit argument count and name length (almost every
        // request; checked every time it is asked, once per transform and per classification).
        if bytes.count >= 10, bytes[0] == UInt8(ascii: "*"), bytes[2] == 13, bytes[3] == 10,
           bytes[4] == UInt8(ascii: "$"), bytes[6] == 13, bytes[7] == 10,
           bytes[1] &- UInt8(ascii: "1") < 9, bytes[5] &- UInt8(ascii: "1") < 9 {
            let length = Int(bytes[5] &- UInt8(ascii: "0"))
            guard 8 + length <= bytes.count else { return nil }
            return UnsafeRawBufferPointer(rebasing: bytes[8..<8 + length])
        }
        var result: UnsafeRawBufferPointer?
        RESPCommandReader.forEachArgument(bytes) { _, start, length in
            result = UnsafeRawBufferPointer(rebasing: bytes[start..<start + length])
            return false
        }
        return result
    }
}
