/// How many replies a backend sends for each request of a batch, and of what kind. Almost always
/// one each; the SUBSCRIBE family answers out of band (its confirmations travel like pushes), and
/// requests silenced by CLIENT REPLY or sent after MONITOR get none in band (see `RedisReplyMode`),
/// so they count zero.
enum RedisReplyPlan {
    /// The replies of a batch on a dedicated connection.
    struct InBand {
        /// nil when every request gets exactly one reply (the common case, no allocation); otherwise
        /// a flag per request, true for a request whose replies do not arrive in band.
        var outOfBand: [Bool]?
        /// A SUBSCRIBE-family request is among them.
        var subscribes = false
        /// The index of the MONITOR request after which the connection streams (nil: none).
        var monitorAt: Int?
        /// As `expectedReplies(_:)`, for the requests answered in band outside MULTI.
        var expectedReplies: UInt64 = 0
    }

    /// The replies of `batch`, sent after the requests `mode` has followed so far (it follows these too).
    static func inBand(_ batch: Batch, mode: inout RedisReplyMode) -> InBand {
        var plan = InBand()
        for i in 0..<batch.count {
            let (subscription, answered, monitors, expected) = batch.withMessageBytes(i) { bytes in
                let wasMonitoring = mode.isMonitoring
                let answered = mode.answers(bytes)
                // Inside MULTI every command is answered +QUEUED: nothing to check there.
                let expected = answered && !mode.isInTransaction && i < 32 ? expectedReply(bytes) : anyReply
                return (isSubscriptionCommand(bytes), answered, !wasMonitoring && mode.isMonitoring, expected)
            }
            if monitors { plan.monitorAt = i }
            plan.expectedReplies |= expected << UInt64(2 * min(i, 31))
            if subscription { plan.subscribes = true }
            guard subscription || !answered else { continue }
            if plan.outOfBand == nil { plan.outOfBand = Array(repeating: false, count: batch.count) }
            plan.outOfBand![i] = true
        }
        return plan
    }

    /// The kinds of reply that can answer the first 32 requests of a batch, two bits each (see
    /// `expectedReply`); 0 when nothing is known. Shared connections check each reply against it,
    /// with one shift and compare, to notice a backend out of step before a reply reaches the
    /// wrong client.
    static func expectedReplies(_ batch: Batch) -> UInt64 {
        if batch.plainRequests { return batch.plainExpectedReplies }  // worked out as the requests were read
        var expected: UInt64 = 0
        for i in 0..<min(batch.count, 32) {
            expected |= batch.withMessageBytes(i, expectedReply) << UInt64(2 * i)
        }
        return expected
    }

    /// Any reply may answer (nothing is known about the command).
    static let anyReply: UInt64 = 0
    /// A bulk string or null (GET and its family).
    static let bulkReply: UInt64 = 1
    /// An integer (INCR, DEL, LLEN…).
    static let integerReply: UInt64 = 2

    /// What kind of reply can answer the request in `bytes`, from its command name alone (an
    /// error can answer anything). Only commands whose reply kind never depends on arguments. The
    /// name (3 to 8 letters) is folded to lowercase and packed into one integer, so finding it is a
    /// switch over integer constants (each commented with its name).
    static func expectedReply(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        guard let name = RedisConnectionState.commandName(bytes) else { return anyReply }
        return replyKind(ofCommandNamed: name)
    }

    /// `expectedReply` of a request whose command name is `name`.
    static func replyKind(ofCommandNamed name: UnsafeRawBufferPointer) -> UInt64 {
        guard name.count >= 3, name.count <= 8 else { return anyReply }
        var packed: UInt64 = 0
        for i in 0..<name.count {
            // `| 0x20` lowercases letters; no other byte folds into a letter, and the names are letters.
            packed |= UInt64(name[i] | 0x20) << UInt64(8 * i)
        }
        switch packed {
        case 0x746567 /* get */,
             0x74656768 /* hget */,
             0x6c6564746567 /* getdel */,
             0x746573746567 /* getset */,
             0x7865646e696c /* lindex */:
            return bulkReply
        case 0x6c6564 /* del */,
             0x72636564 /* decr */,
             0x6c656468 /* hdel */,
             0x6e656c68 /* hlen */,
             0x72636e69 /* incr */,
             0x6e656c6c /* llen */,
             0x64646173 /* sadd */,
             0x6d657273 /* srem */,
             0x687375706c /* lpush */,
             0x6873757072 /* rpush */,
             0x6472616373 /* scard */,
             0x786e746573 /* setnx */,
             0x647261637a /* zcard */,
             0x796272636564 /* decrby */,
             0x737473697865 /* exists */,
             0x786e74657368 /* hsetnx */,
             0x796272636e69 /* incrby */,
             0x78687375706c /* lpushx */,
             0x786873757072 /* rpushx */,
             0x6e656c727473 /* strlen */,
             0x6b6e696c6e75 /* unlink */,
             0x73747369786568 /* hexists */,
             0x796272636e6968 /* hincrby */,
             0x6e656c72747368 /* hstrlen */:
            return integerReply
        default:
            return anyReply
        }
    }

    /// Whether a reply starting with `first` can answer a request expecting `kind` (not `anyReply`).
    @inline(__always)
    static func canAnswer(_ kind: UInt64, first: UInt8) -> Bool {
        switch first {
        case UInt8(ascii: "-"), UInt8(ascii: "!"), UInt8(ascii: "|"): return true  // errors; attributes precede a reply
        case UInt8(ascii: "$"), UInt8(ascii: "_"): return kind == bulkReply
        case UInt8(ascii: ":"): return kind == integerReply
        default: return false
        }
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
