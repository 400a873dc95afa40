/// Requests Sluice answers itself instead of forwarding, decided with one look at the command name.
///
/// QUIT (with or without arguments, as redis-server accepts) is answered `+OK` and closes the
/// client: forwarded, it would close a backend connection other clients may share.
///
/// The others are answered with an error because their replies cannot be matched to requests
/// through a proxy: they send no reply, or replies that never end, or change how many replies later
/// commands get. Forwarding them would shift every later reply on the connection, on a shared
/// connection into other clients' hands. (twemproxy refuses them too.)
///
/// - REPLCONF, SYNC, PSYNC: the replication protocol (REPLCONF ACK gets no reply at all).
/// - CLIENT REPLY OFF / SKIP inside MULTI: they would take effect in the middle of EXEC's reply.
///   (Outside MULTI they are forwarded, and the dedicated connection follows which requests get
///   replies: see `RedisReplyMode`; so is MONITOR, whose stream is passed through.)
/// - SUBSCRIBE-family inside MULTI: queued there, so their confirmations arrive in EXEC's reply
///   instead of out of band.
/// - SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE without a channel: Redis answers an in-band error where
///   the proxy expects out-of-band confirmations; answered here with Redis's own error.
enum RedisLocalAnswers {
    enum Verdict: Equatable {
        case forward
        /// Answer `+OK` and close the client.
        case quit
        /// Answer with this error (without "-" and CRLF).
        case refuse(String)
    }

    /// What to do with request `bytes`. Also follows the client's MULTI…EXEC state in `inTransaction`.
    static func verdict(_ bytes: UnsafeRawBufferPointer, inTransaction: inout Bool) -> Verdict {
        guard let name = RedisConnectionState.commandName(bytes), name.count >= 4, name.count <= 12 else { return .forward }
        switch name[0] | 0x20 {
        case UInt8(ascii: "q"):
            if RedisReplyPlan.equalsIgnoringCase(name, "quit") { return .quit }
        case UInt8(ascii: "m"):
            if RedisReplyPlan.equalsIgnoringCase(name, "multi") { inTransaction = true }
        case UInt8(ascii: "e"), UInt8(ascii: "d"):
            if RedisReplyPlan.equalsIgnoringCase(name, "exec") || RedisReplyPlan.equalsIgnoringCase(name, "discard") {
                inTransaction = false
            }
        case UInt8(ascii: "r"):
            if RedisReplyPlan.equalsIgnoringCase(name, "reset") { inTransaction = false }
            if RedisReplyPlan.equalsIgnoringCase(name, "replconf") {
                return .refuse("ERR sluice: REPLCONF (replication) is not supported through the proxy")
            }
        case UInt8(ascii: "c"):
            if inTransaction, RedisReplyPlan.equalsIgnoringCase(name, "client"), suppressesReplies(bytes) {
                return .refuse("ERR sluice: CLIENT REPLY OFF and SKIP inside MULTI are not supported through the proxy")
            }
        case UInt8(ascii: "p"), UInt8(ascii: "s"), UInt8(ascii: "u"):
            if RedisReplyPlan.equalsIgnoringCase(name, "sync") || RedisReplyPlan.equalsIgnoringCase(name, "psync") {
                return .refuse("ERR sluice: \(String(decoding: name, as: UTF8.self).uppercased()) (replication) is not supported through the proxy")
            }
            guard RedisReplyPlan.isSubscriptionCommand(bytes) else { return .forward }
            let lower = String(decoding: name, as: UTF8.self).lowercased()
            if inTransaction {
                return .refuse("ERR sluice: \(lower.uppercased()) inside MULTI is not supported through the proxy")
            }
            if RESPCommandReader.argumentCount(bytes) < 2, !lower.hasSuffix("unsubscribe") {
                return .refuse("ERR wrong number of arguments for '\(lower)' command")
            }
        default:
            break
        }
        return .forward
    }

    /// Whether a CLIENT command is CLIENT REPLY OFF or CLIENT REPLY SKIP.
    private static func suppressesReplies(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var isReply = false, suppresses = false
        RESPCommandReader.forEachArgument(bytes) { index, start, length in
            let argument = UnsafeRawBufferPointer(rebasing: bytes[start..<start + length])
            switch index {
            case 1:
                isReply = RedisReplyPlan.equalsIgnoringCase(argument, "reply")
                return isReply
            case 2:
                suppresses = RedisReplyPlan.equalsIgnoringCase(argument, "off") || RedisReplyPlan.equalsIgnoringCase(argument, "skip")
                return false
            default:
                return true
            }
        }
        return isReply && suppresses
    }
}
