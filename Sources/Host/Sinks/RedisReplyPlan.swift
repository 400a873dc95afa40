/// How many replies a backend sends for each request of a batch. Almost always one each; the
/// SUBSCRIBE family answers out of band (its confirmations travel like pushes), so they count zero.
enum RedisReplyPlan {
    /// nil when every request gets exactly one reply (the common case, no allocation); otherwise a flag
    /// per request, true for a request whose replies arrive out of band.
    static func outOfBand(_ batch: Batch) -> [Bool]? {
        var flags: [Bool]?
        for i in 0..<batch.count where batch.withMessageBytes(i, isSubscriptionCommand) {
            if flags == nil { flags = Array(repeating: false, count: batch.count) }
            flags![i] = true
        }
        return flags
    }

    /// How many unsubscribe confirmations request `bytes` will bring: nil if it is no UNSUBSCRIBE,
    /// PUNSUBSCRIBE or SUNSUBSCRIBE; 0 for one without channels ("all": one confirmation per
    /// subscription, the last reporting 0 left); otherwise one per channel named.
    static func unsubscribeConfirmations(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard RESPCommandReader.commandIs(bytes, "unsubscribe") || RESPCommandReader.commandIs(bytes, "punsubscribe")
            || RESPCommandReader.commandIs(bytes, "sunsubscribe")
        else { return nil }
        return RESPCommandReader.argumentCount(bytes) - 1
    }

    /// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE, UNSUBSCRIBE, PUNSUBSCRIBE, SUNSUBSCRIBE.
    static func isSubscriptionCommand(_ bytes: UnsafeRawBufferPointer) -> Bool {
        // Cheap pre-check on the first letter of the command name: "*N\r\n$L\r\n<name>".
        guard bytes.count > 8 else { return false }
        var i = 1
        while i < bytes.count, bytes[i] != 10 { i += 1 }
        i += 1
        while i < bytes.count, bytes[i] != 10 { i += 1 }
        i += 1
        guard i < bytes.count else { return false }
        switch bytes[i] | 0x20 {
        case UInt8(ascii: "s"), UInt8(ascii: "p"), UInt8(ascii: "u"): break
        default: return false
        }
        return RESPCommandReader.commandIs(bytes, "subscribe") || RESPCommandReader.commandIs(bytes, "psubscribe")
            || RESPCommandReader.commandIs(bytes, "ssubscribe") || RESPCommandReader.commandIs(bytes, "unsubscribe")
            || RESPCommandReader.commandIs(bytes, "punsubscribe") || RESPCommandReader.commandIs(bytes, "sunsubscribe")
    }

    /// True when a reply is a pub/sub message or (un)subscribe confirmation: a RESP2 array or RESP3
    /// push whose first element is one of the pub/sub kinds. Sets `remaining` to the subscription
    /// count of an unsubscribe confirmation.
    static func isPubSubReply(_ bytes: UnsafeRawBufferPointer, remainingSubscriptions: inout Int?) -> Bool {
        guard bytes.count > 4, bytes[0] == UInt8(ascii: "*") || bytes[0] == UInt8(ascii: ">"),
              let top = RESPValueReader.header(bytes, at: 0),
              top.type == RESPValueReader.array || top.type == RESPValueReader.push, top.count >= 3,
              let first = RESPValueReader.header(bytes, at: top.next), first.type == RESPValueReader.bulkString
        else { return false }
        let kind = UnsafeRawBufferPointer(rebasing: bytes[first.payloadStart..<first.payloadStart + first.payloadLength])
        let kinds: [StaticString] = ["message", "pmessage", "smessage", "subscribe", "psubscribe", "ssubscribe",
                                     "unsubscribe", "punsubscribe", "sunsubscribe"]
        guard let match = kinds.first(where: { equalsIgnoringCase(kind, $0) }) else { return false }
        if "\(match)".hasSuffix("unsubscribe"),
           let second = RESPValueReader.header(bytes, at: first.next),
           let third = RESPValueReader.header(bytes, at: second.next), third.type == RESPValueReader.integer {
            remainingSubscriptions = Int(third.integer)
        }
        return true
    }

    static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ name: StaticString) -> Bool {
        guard bytes.count == name.utf8CodeUnitCount else { return false }
        let expected = UnsafeRawBufferPointer(start: name.utf8Start, count: bytes.count)
        for i in 0..<bytes.count {
            let byte = bytes[i]
            // Only ASCII letters fold: `| 0x20` would also turn '_' into DEL and '@' into '`'.
            let folded = byte &- UInt8(ascii: "A") < 26 ? byte | 0x20 : byte
            if folded != expected[i] { return false }
        }
        return true
    }
}
