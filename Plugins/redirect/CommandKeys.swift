import SluiceSDK

/// Where the keys of a Redis command are, after the key specs of `COMMAND INFO`.
enum KeySpec {
    /// Arguments first...last (a negative last counts from the end: -1 is the last argument),
    /// stepping by step.
    case range(first: Int, last: Int, step: Int)
    /// A count of keys at argument `countAt`, the keys right after it (EVAL, FCALL, ZUNION,
    /// LMPOP…), plus the fixed key positions in `also` (ZUNIONSTORE's destination).
    case counted(countAt: Int, also: [Int])
    /// XREAD / XREADGROUP: after the STREAMS keyword, the first half of the remaining arguments.
    case streams
}

enum CommandKeys {
    /// Lowercase command name → key positions. Commands not listed have no keys Sluice routes by.
    static let table: [String: KeySpec] = {
        var t: [String: KeySpec] = [:]
        let single = ["get", "set", "setex", "psetex", "setnx", "getset", "getdel", "getex", "append", "strlen",
                      "incr", "decr", "incrby", "decrby", "incrbyfloat", "type", "expire", "pexpire", "expireat",
                      "pexpireat", "ttl", "pttl", "persist", "expiretime", "pexpiretime", "hset", "hget", "hmset",
                      "hmget", "hgetall", "hdel", "hexists", "hincrby", "hincrbyfloat", "hlen", "hkeys", "hvals",
                      "hsetnx", "hstrlen", "hrandfield", "lpush", "rpush", "lpushx", "rpushx", "lpop", "rpop",
                      "llen", "lrange", "lindex", "lset", "lrem", "ltrim", "linsert", "lpos", "sadd", "srem",
                      "smembers", "sismember", "smismember", "scard", "spop", "srandmember", "zadd", "zrem",
                      "zrange", "zscore", "zcard", "zincrby", "zrank", "zrevrank", "zrevrange", "zrangebyscore",
                      "zrevrangebyscore", "zrangebylex", "zrevrangebylex", "zlexcount", "zremrangebylex", "zcount",
                      "zmscore", "zremrangebyscore", "zremrangebyrank", "zpopmin", "zpopmax", "zrandmember",
                      "xadd", "xlen", "xrange", "xrevrange", "xdel", "xtrim", "xack", "xclaim", "xautoclaim",
                      "xpending", "xsetid", "xinfo", "dump", "restore", "bitcount", "setbit", "getbit", "setrange",
                      "getrange", "substr", "bitpos", "bitfield", "bitfield_ro", "pfadd", "geoadd", "geodist",
                      "geopos", "geohash", "geosearch", "georadius", "georadius_ro", "georadiusbymember",
                      "georadiusbymember_ro", "hscan", "sscan", "zscan", "sort_ro", "lcs_ro"]
        for name in single { t[name] = .range(first: 1, last: 1, step: 1) }
        for name in ["mget", "del", "unlink", "exists", "touch", "watch", "pfcount", "pfmerge", "sinter", "sunion",
                     "sdiff", "sinterstore", "sunionstore", "sdiffstore"] {
            t[name] = .range(first: 1, last: -1, step: 1)
        }
        // Blocking pops: every argument but the timeout is a key.
        for name in ["blpop", "brpop", "bzpopmin", "bzpopmax"] { t[name] = .range(first: 1, last: -2, step: 1) }
        for name in ["mset", "msetnx"] { t[name] = .range(first: 1, last: -1, step: 2) }
        for name in ["rename", "renamenx", "copy", "smove", "rpoplpush", "lmove", "brpoplpush", "blmove", "lcs",
                     "geosearchstore", "zrangestore"] {
            t[name] = .range(first: 1, last: 2, step: 1)
        }
        t["bitop"] = .range(first: 2, last: -1, step: 1)
        t["object"] = .range(first: 2, last: 2, step: 1)
        for name in ["eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"] {
            t[name] = .counted(countAt: 2, also: [])
        }
        for name in ["zunion", "zinter", "zdiff", "zintercard", "sintercard", "lmpop", "zmpop"] {
            t[name] = .counted(countAt: 1, also: [])
        }
        for name in ["blmpop", "bzmpop"] { t[name] = .counted(countAt: 2, also: []) }
        for name in ["zunionstore", "zinterstore", "zdiffstore"] { t[name] = .counted(countAt: 2, also: [1]) }
        t["xread"] = .streams
        t["xreadgroup"] = .streams
        return t
    }()

    /// Commands with keys this table cannot place reliably (their keys depend on options such as
    /// SORT … STORE, MIGRATE … KEYS): redirect answers them with an error when any argument looks hot,
    /// rather than guess.
    static let unplaceable: Set<String> = ["sort", "migrate"]

    /// Calls `body` with the index of each key argument of a command with `argc` arguments, where
    /// `argument(i)` reads argument i; stops early when `body` returns false.
    @inline(__always)
    static func forEachKey(_ spec: KeySpec, argc: Int, argument: (Int) -> UnsafeRawBufferPointer,
                           _ body: (Int) -> Bool) {
        switch spec {
        case .range(let first, let last, let step):
            let end = last < 0 ? argc + last : min(last, argc - 1)
            var i = first
            while i <= end {
                if !body(i) { return }
                i += step
            }
        case .counted(let countAt, let also):
            for i in also where i < argc {
                if !body(i) { return }
            }
            guard countAt < argc, let n = Int(decimal: argument(countAt)), n > 0 else { return }
            var i = countAt + 1
            while i <= min(countAt + n, argc - 1) {
                if !body(i) { return }
                i += 1
            }
        case .streams:
            var s = 1
            while s < argc, !argument(s).equalsIgnoringCase("streams") { s += 1 }
            let rest = argc - s - 1
            guard s < argc, rest > 0, rest % 2 == 0 else { return }
            var i = s + 1
            while i <= s + rest / 2 {
                if !body(i) { return }
                i += 1
            }
        }
    }
}

extension Int {
    /// A non-negative decimal number of at most 9 digits, or nil.
    init?(decimal bytes: UnsafeRawBufferPointer) {
        guard !bytes.isEmpty, bytes.count <= 9 else { return nil }
        var value = 0
        for b in bytes {
            guard b >= 48, b <= 57 else { return nil }
            value = value * 10 + Int(b - 48)
        }
        self = value
    }
}
