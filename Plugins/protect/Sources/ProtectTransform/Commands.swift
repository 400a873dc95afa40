import SluiceSDK

/// What protect does with a command, when its key is protected.
enum CommandKind {
    /// SET k v [… GET]: encrypt argument 2; with the GET option the reply is the old value.
    case set
    /// One value at this argument is encrypted (SETNX 2, SETEX/PSETEX 3, HSETNX 3).
    case valueAt(Int)
    /// GETSET k v: encrypt argument 2, decrypt the reply.
    case getSet
    /// The reply is one stored value (GET, GETEX, GETDEL, HGET).
    case readValue
    /// MSET / MSETNX k v [k v …]: each value whose key is protected.
    case keyValuePairs
    /// HSET / HMSET k f v [f v …]: every value (arguments 3, 5, …).
    case fieldValuePairs
    /// MGET k…: the reply's elements whose key is protected.
    case multiGet
    /// HMGET, HVALS: every element of the reply.
    case readAllElements
    /// HGETALL: every second element of the reply (the values; RESP3 map values).
    case readPairValues
    /// Would expose or compute on ciphertext: refused when any of its keys is protected.
    case refused
    /// HRANDFIELD: refused with WITHVALUES.
    case randomField
    /// HSCAN: refused unless NOVALUES.
    case hashScan
    /// Transactions: protect follows MULTI … EXEC to decrypt the replies of queued reads in EXEC's
    /// array (DISCARD and RESET drop what was queued).
    case multi
    case exec
    case endTransaction
}

/// The kind of a command from its name (ASCII case-insensitive), nil for commands protect leaves
/// alone. Allocation-free: switches on the length before comparing bytes.
func commandKind(_ name: UnsafeRawBufferPointer) -> CommandKind? {
    switch name.count {
    case 3:
        if name.equalsIgnoringCase("set") { return .set }
        if name.equalsIgnoringCase("get") { return .readValue }
        if name.equalsIgnoringCase("lcs") { return .refused }
    case 4:
        if name.equalsIgnoringCase("mget") { return .multiGet }
        if name.equalsIgnoringCase("mset") { return .keyValuePairs }
        if name.equalsIgnoringCase("hset") { return .fieldValuePairs }
        if name.equalsIgnoringCase("hget") { return .readValue }
        if name.equalsIgnoringCase("incr") || name.equalsIgnoringCase("decr") || name.equalsIgnoringCase("sort") { return .refused }
        if name.equalsIgnoringCase("exec") { return .exec }
    case 5:
        if name.equalsIgnoringCase("setex") { return .valueAt(3) }
        if name.equalsIgnoringCase("setnx") { return .valueAt(2) }
        if name.equalsIgnoringCase("getex") { return .readValue }
        if name.equalsIgnoringCase("hmset") { return .fieldValuePairs }
        if name.equalsIgnoringCase("hmget") || name.equalsIgnoringCase("hvals") { return .readAllElements }
        if name.equalsIgnoringCase("hscan") { return .hashScan }
        if name.equalsIgnoringCase("bitop") { return .refused }
        if name.equalsIgnoringCase("multi") { return .multi }
        if name.equalsIgnoringCase("reset") { return .endTransaction }
    case 6:
        if name.equalsIgnoringCase("getset") { return .getSet }
        if name.equalsIgnoringCase("getdel") { return .readValue }
        if name.equalsIgnoringCase("psetex") { return .valueAt(3) }
        if name.equalsIgnoringCase("msetnx") { return .keyValuePairs }
        if name.equalsIgnoringCase("hsetnx") { return .valueAt(3) }
        if name.equalsIgnoringCase("append") || name.equalsIgnoringCase("strlen") || name.equalsIgnoringCase("incrby")
            || name.equalsIgnoringCase("decrby") || name.equalsIgnoringCase("substr") || name.equalsIgnoringCase("setbit")
            || name.equalsIgnoringCase("getbit") || name.equalsIgnoringCase("bitpos") || name.equalsIgnoringCase("hgetex")
            || name.equalsIgnoringCase("hsetex") || name.equalsIgnoringCase("msetex") { return .refused }
    case 7:
        if name.equalsIgnoringCase("hgetall") { return .readPairValues }
        if name.equalsIgnoringCase("hincrby") || name.equalsIgnoringCase("hstrlen") || name.equalsIgnoringCase("sort_ro")
            || name.equalsIgnoringCase("hgetdel") { return .refused }
        if name.equalsIgnoringCase("discard") { return .endTransaction }
    case 8:
        if name.equalsIgnoringCase("getrange") || name.equalsIgnoringCase("setrange") || name.equalsIgnoringCase("bitcount")
            || name.equalsIgnoringCase("bitfield") { return .refused }
    case 10:
        if name.equalsIgnoringCase("hrandfield") { return .randomField }
    case 11:
        if name.equalsIgnoringCase("incrbyfloat") || name.equalsIgnoringCase("bitfield_ro") { return .refused }
    case 12:
        if name.equalsIgnoringCase("hincrbyfloat") { return .refused }
    default:
        break
    }
    return nil
}
