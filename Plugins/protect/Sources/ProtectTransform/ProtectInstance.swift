import SluiceSDK

/// The per-connection side of protect: encrypts values in requests in place (redis_set_arg),
/// answers refused commands here (call_answer, the rest of the batch goes on), and decrypts the
/// replies that carry stored values. A batch that touches no protected key is passed untouched.
final class ProtectInstance: TransformInstance {
    let protect: Protect
    let env: InstanceEnv
    /// Reused argument views and key positions (no per-request allocation for unprotected keys).
    private var arguments = ArgumentViews()
    private var keys = KeyPositions()
    /// Inside MULTI (followed from the client's requests): the reply plan of each command queued so
    /// far, for EXEC's array. nil outside a transaction.
    private var queued: [ReplyPlan?]?
    /// Whether the request being handled was answered here (refused): it is not queued at the server.
    private var answeredHere = false
    /// Whether protect refused a command of the current transaction: its EXEC then aborts.
    private var refusedInTransaction = false

    init(protect: Protect, env: InstanceEnv) {
        self.protect = protect
        self.env = env
    }

    func onRequests(_ call: Call, _ requests: Batch) throws {
        var pending: PendingReplies?
        for index in 0..<requests.count {
            let argc = requests.arguments(at: index, into: &arguments)
            let kind = argc > 0 ? commandKind(arguments[0]) : nil
            switch kind {
            case .multi?:
                // A nested MULTI is refused by the server and changes nothing.
                if queued == nil {
                    queued = []
                    refusedInTransaction = false
                }
                continue
            case .exec? where queued != nil && refusedInTransaction:
                try requests.setArgument(0, ofCommand: index, to: Array("DISCARD".utf8))
                if pending == nil { pending = PendingReplies() }
                pending!.entries.append((index, .execAbort, []))
                queued = nil
                continue
            case .exec?:
                if let plans = queued, plans.contains(where: { $0 != nil }) {
                    if pending == nil { pending = PendingReplies() }
                    pending!.entries.append((index, .transaction(plans), []))
                }
                queued = nil
                continue
            case .endTransaction?:
                queued = nil
                continue
            default:
                break
            }
            answeredHere = false
            let plan = try kind.flatMap { try handle($0, index, argc, requests, call) }
            if queued != nil {
                // Inside MULTI the reply is +QUEUED; the value comes back in EXEC's array.
                if answeredHere { refusedInTransaction = true } else { queued!.append(plan) }
            } else if let plan {
                if pending == nil { pending = PendingReplies() }
                requests.arguments(at: index, into: &arguments)  // an encrypted argument invalidated the views
                pending!.entries.append((index, plan, Array(arguments[1])))
            }
        }
        if let pending {
            call.setState(pending)
            call.forward()
        } else {
            call.pass()
        }
    }

    /// Encrypts or refuses request `index` as its kind needs; returns how to decrypt its reply.
    /// `arguments` holds the request's arguments on entry (it may be refilled).
    private func handle(_ kind: CommandKind, _ index: Int, _ argc: Int, _ requests: Batch, _ call: Call) throws -> ReplyPlan? {
        let p = protect
        switch kind {
        case .multi, .exec, .endTransaction:
            break
        case .set:
            guard argc >= 3, p.isProtected(arguments[1]) else { return nil }
            let returnsOld = (3..<argc).contains { arguments[$0].equalsIgnoringCase("get") }
            try encrypt([2], of: index, in: requests, call: call)
            return returnsOld ? .value : nil
        case .valueAt(let position):
            guard argc > position, p.isProtected(arguments[1]) else { return nil }
            try encrypt([position], of: index, in: requests, call: call)
        case .getSet:
            guard argc >= 3, p.isProtected(arguments[1]) else { return nil }
            try encrypt([2], of: index, in: requests, call: call)
            return .value
        case .readValue, .readAllElements, .readPairValues:
            guard argc >= 2, p.isProtected(arguments[1]) else { return nil }
            switch kind {
            case .readValue: return .value
            case .readAllElements: return .allElements
            default: return .pairValues
            }
        case .keyValuePairs:
            guard argc >= 3, argc % 2 == 1,
                  stride(from: 1, to: argc, by: 2).contains(where: { p.isProtected(arguments[$0]) }) else { return nil }
            let values = stride(from: 1, to: argc, by: 2).filter { p.isProtected(arguments[$0]) }.map { $0 + 1 }
            try encrypt(values, of: index, in: requests, call: call)
        case .fieldValuePairs:
            guard argc >= 4, argc % 2 == 0, p.isProtected(arguments[1]) else { return nil }
            try encrypt(Array(stride(from: 3, to: argc, by: 2)), of: index, in: requests, call: call)
        case .multiGet:
            guard argc >= 2, (1..<argc).contains(where: { p.isProtected(arguments[$0]) }) else { return nil }
            let flags = (1..<argc).map { p.isProtected(arguments[$0]) }
            return .elements(flags)
        case .refused:
            guard case .known = try requests.keyPositions(at: index, into: &keys) else { return nil }
            for position in keys where position < argc && p.isProtected(arguments[position]) {
                try refuse(index, call, "\(commandName) is refused on the protected key '\(printable(arguments[position], limit: 100))': its stored value is ciphertext")
                return nil
            }
        case .randomField:
            guard argc >= 4, p.isProtected(arguments[1]), arguments[argc - 1].equalsIgnoringCase("withvalues") else { return nil }
            try refuse(index, call, "HRANDFIELD … WITHVALUES is refused on the protected key '\(printable(arguments[1], limit: 100))': its values are ciphertext")
        case .hashScan:
            guard argc >= 3, p.isProtected(arguments[1]),
                  !(3..<argc).contains(where: { arguments[$0].equalsIgnoringCase("novalues") }) else { return nil }
            try refuse(index, call, "HSCAN is refused on the protected key '\(printable(arguments[1], limit: 100))': its values are ciphertext (HSCAN … NOVALUES is allowed)")
        }
        return nil
    }

    /// The command name of the current request, upper-cased, for messages.
    private var commandName: String { arguments[0].asciiLowercased.uppercased() }

    /// Encrypts arguments `positions` of request `index` in place with the current key.
    private func encrypt(_ positions: [Int], of index: Int, in requests: Batch, call: Call) throws {
        // Every ciphertext is made before the first replacement: replacing invalidates the views.
        let sealed: [[UInt8]]
        do {
            sealed = try positions.map { try protect.keyRing.seal(arguments[$0]) }
        } catch {
            try refuse(index, call, "encryption failed: \(error)", counted: false)
            return
        }
        if sealed.count == 1 {
            try requests.setArgument(positions[0], ofCommand: index, to: sealed[0])
        } else {
            // Several values (MSET, HSET …): one rebuild, not one copy of the whole command per value.
            var rebuilt = (0..<arguments.count).map { [UInt8](arguments[$0]) }
            for (position, ciphertext) in zip(positions, sealed) { rebuilt[position] = ciphertext }
            requests.putCommand(rebuilt, at: index)
        }
        protect.encrypted.add(sealed.count)
    }

    /// Answers request `index` here with an error; the rest of the batch goes on.
    private func refuse(_ index: Int, _ call: Call, _ message: String, counted: Bool = true) throws {
        try call.answer(index, error: "ERR protect: " + message)
        answeredHere = true
        if counted { protect.refused.add() }
    }

    func onResponses(_ call: Call, requests: Batch, responses: Batch) throws {
        guard let pending = call.takeState(as: PendingReplies.self) else {
            call.respondWithReceived()
            return
        }
        let resp3 = (try? env.protocolVersion()) == 3
        var rewriter = ReplyRewriter(keyRing: protect.keyRing, resp3: resp3)
        for entry in pending.entries {
            do {
                try rewriter.rewrite(responses, index: entry.index, plan: entry.plan)
            } catch {
                protect.decryptFailures.add()
                let subject: String
                if case .transaction = entry.plan {
                    subject = "a value in EXEC's reply"
                } else {
                    subject = "the value of key '\(entry.key.withUnsafeBytes { printable($0, limit: 100) })'"
                }
                responses.putError("ERR protect: \(subject) cannot be decrypted: \(error)", at: entry.index)
            }
        }
        protect.decrypted.add(rewriter.decrypted)
        call.respondWithReceived()
    }
}
