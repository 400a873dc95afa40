/// Which requests redis-server answers in band on one connection, followed request by request in
/// the order they are sent: `CLIENT REPLY OFF` silences every reply until `CLIENT REPLY ON` (which
/// is answered), `CLIENT REPLY SKIP` silences itself and the next command's reply, and after
/// `MONITOR` the connection carries the monitor stream, in which the replies to later commands
/// travel too (only RESET's `+RESET` ends it as a reply). Inside MULTI nothing changes until EXEC.
///
/// A silenced request gets an empty response (nothing is written to its client), so the pairing of
/// replies to requests stays exact. Only dedicated connections carry these commands.
struct RedisReplyMode {
    private enum Mode {
        case on
        case off
        /// The next request's reply is skipped.
        case skipNext
        /// MONITOR was sent: everything after it streams out of band.
        case monitor
    }

    private var mode = Mode.on
    private var inTransaction = false

    /// MONITOR was sent (and no RESET after it).
    var isMonitoring: Bool { mode == .monitor }
    /// Inside MULTI: commands are answered `+QUEUED`, whatever they are.
    var isInTransaction: Bool { inTransaction }

    /// Whether the request in `bytes` gets a reply in band; advances the mode past it.
    mutating func answers(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let name = RedisConnectionState.commandName(bytes), name.count >= 4, name.count <= 7 else {
            return answersOther()
        }
        switch name[0] | 0x20 {
        case UInt8(ascii: "c") where RedisReplyPlan.equalsIgnoringCase(name, "client"):
            guard !inTransaction, let setting = Self.clientReplySetting(bytes) else { return answersOther() }
            return answersClientReply(setting)
        case UInt8(ascii: "m") where RedisReplyPlan.equalsIgnoringCase(name, "monitor"):
            if inTransaction { return true }  // queued (Redis refuses it there)
            let answered = answersOther()
            mode = .monitor
            return answered
        case UInt8(ascii: "m") where RedisReplyPlan.equalsIgnoringCase(name, "multi"):
            let answered = answersOther()
            inTransaction = true
            return answered
        case UInt8(ascii: "e") where RedisReplyPlan.equalsIgnoringCase(name, "exec"),
             UInt8(ascii: "d") where RedisReplyPlan.equalsIgnoringCase(name, "discard"):
            let answered = answersOther()
            inTransaction = false
            return answered
        case UInt8(ascii: "r") where RedisReplyPlan.equalsIgnoringCase(name, "reset"):
            // RESET turns replies back on and leaves MONITOR and MULTI; `+RESET` is sent unless
            // it is the command a SKIP silenced.
            let answered = mode != .skipNext
            mode = .on
            inTransaction = false
            return answered
        default:
            return answersOther()
        }
    }

    /// Any request that does not change the mode itself.
    private mutating func answersOther() -> Bool {
        switch mode {
        case .on: return true
        case .off, .monitor: return false
        case .skipNext:
            mode = .on
            return false
        }
    }

    private enum Setting { case on, off, skip }

    /// `CLIENT REPLY ON` is always answered (it clears OFF and SKIP before replying); OFF and SKIP
    /// never are. SKIP has no effect while replies are off.
    private mutating func answersClientReply(_ setting: Setting) -> Bool {
        switch (setting, mode) {
        case (_, .monitor):
            return false
        case (.on, _):
            mode = .on
            return true
        case (.off, _):
            mode = .off
            return false
        case (.skip, .off):
            return false
        case (.skip, _):
            mode = .skipNext
            return false
        }
    }

    /// ON, OFF or SKIP for `CLIENT REPLY ON|OFF|SKIP` (exactly three arguments); nil for any other
    /// CLIENT command (answered, with an error if malformed).
    private static func clientReplySetting(_ bytes: UnsafeRawBufferPointer) -> Setting? {
        var isReply = false
        var setting: Setting?
        let count = RESPCommandReader.forEachArgument(bytes) { index, start, length in
            let argument = UnsafeRawBufferPointer(rebasing: bytes[start..<start + length])
            switch index {
            case 0: return true
            case 1:
                isReply = RedisReplyPlan.equalsIgnoringCase(argument, "reply")
                return isReply
            default:
                if RedisReplyPlan.equalsIgnoringCase(argument, "on") { setting = .on }
                if RedisReplyPlan.equalsIgnoringCase(argument, "off") { setting = .off }
                if RedisReplyPlan.equalsIgnoringCase(argument, "skip") { setting = .skip }
                return false
            }
        }
        return isReply && count == 3 ? setting : nil
    }
}
