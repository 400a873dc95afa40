/// Where the keys of a Redis command are: arguments first...last (negative last counts from the end,
/// as in COMMAND INFO) stepping by step. Commands not listed have no keys Sluice routes by.
struct KeySpec {
    let first: Int
    let last: Int
    let step: Int
}

enum CommandKeys {
    /// Lowercase command name → key positions.
    static let table: [String: KeySpec] = {
        var t: [String: KeySpec] = [:]
        let single = ["get", "set", "setex", "psetex", "setnx", "getset", "getdel", "getex", "append", "strlen",
                      "incr", "decr", "incrby", "decrby", "incrbyfloat", "type", "expire", "pexpire", "expireat",
                      "pexpireat", "ttl", "pttl", "persist", "expiretime", "hset", "hget", "hmset", "hmget", "hgetall",
                      "hdel", "hexists", "hincrby", "hincrbyfloat", "hlen", "hkeys", "hvals", "hsetnx", "hstrlen",
                      "lpush", "rpush", "lpushx", "rpushx", "lpop", "rpop", "llen", "lrange", "lindex", "lset",
                      "lrem", "ltrim", "linsert", "lpos", "sadd", "srem", "smembers", "sismember", "smismember",
                      "scard", "spop", "srandmember", "zadd", "zrem", "zrange", "zscore", "zcard", "zincrby",
                      "zrank", "zrevrank", "zrevrange", "zrangebyscore", "zrevrangebyscore", "zcount", "zmscore",
                      "zremrangebyscore", "zremrangebyrank", "xadd", "xlen", "xrange", "xrevrange", "xdel", "xtrim",
                      "dump", "restore", "bitcount", "setbit", "getbit", "setrange", "getrange", "bitpos",
                      "pfadd", "geoadd", "geodist", "geopos", "geosearch", "hscan", "sscan", "zscan", "touch",
                      "object", "getrange", "substr", "sort", "sort_ro"]
        for name in single { t[name] = KeySpec(first: 1, last: 1, step: 1) }
        for name in ["mget", "del", "unlink", "exists", "pfcount", "sinter", "sunion", "sdiff", "touch", "watch"] {
            t[name] = KeySpec(first: 1, last: -1, step: 1)
        }
        for name in ["mset", "msetnx"] { t[name] = KeySpec(first: 1, last: -1, step: 2) }
        for name in ["rename", "renamenx", "copy", "smove", "rpoplpush", "lmove"] {
            t[name] = KeySpec(first: 1, last: 2, step: 1)
        }
        t["object"] = KeySpec(first: 2, last: 2, step: 1)
        return t
    }()

    /// Indices of the key arguments of a command with `argc` arguments, or [] if it has none.
    static func keyIndices(of spec: KeySpec, argc: Int) -> StrideTo<Int> {
        let last = spec.last < 0 ? argc + spec.last : spec.last
        return stride(from: spec.first, to: min(last, argc - 1) + 1, by: spec.step)
    }
}
