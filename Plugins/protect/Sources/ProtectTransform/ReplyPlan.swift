/// Which parts of a reply are stored values of a protected key, to decrypt on the way back.
enum ReplyPlan {
    /// The reply is one bulk string (GET, HGET, GETSET, SET … GET…).
    case value
    /// Every element of the reply array (HMGET, HVALS).
    case allElements
    /// Every second element, starting with the second (HGETALL: RESP2 array or RESP3 map values).
    case pairValues
    /// The elements whose flag is set (MGET: the elements of protected keys).
    case elements([Bool])
    /// EXEC: the plan of each queued command, in order (nil: its reply is left as it is).
    case transaction([ReplyPlan?])
    /// EXEC of a transaction in which protect refused a command: sent as DISCARD, answered with
    /// Redis's EXECABORT (as Redis does when a command fails to queue).
    case execAbort

    func decrypts(element index: Int) -> Bool {
        switch self {
        case .value, .transaction, .execAbort: return false
        case .allElements: return true
        case .pairValues: return index % 2 == 1
        case .elements(let flags): return index < flags.count && flags[index]
        }
    }
}

/// The replies of one forwarded batch that need decrypting: request index, plan, and the key (for
/// error messages).
final class PendingReplies {
    var entries: [(index: Int, plan: ReplyPlan, key: [UInt8])] = []
}
