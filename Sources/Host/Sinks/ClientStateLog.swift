import NIOCore

/// The connection-level settings one client has made (HELLO, SELECT, AUTH, RESET), in order, so
/// that every backend connection used on the client's behalf speaks the same protocol, in the same
/// database, as the same user, whichever sink a transform sends it to (tee's shadow, redirect's hot
/// store) and whenever that sink is first used.
///
/// Each entry has a sequence number; a `SinkRoute` remembers the last one its backend has seen and,
/// before its next batch, replays the entries it missed (their replies are discarded). A later SELECT
/// supersedes an earlier one, and RESET supersedes everything before it, so the log stays short.
/// Lives on the client's event loop only.
final class ClientStateLog {
    private enum Kind { case hello, select, auth, reset }

    /// `protocolSwitch` is 2 or 3 for a lone HELLO 2 / HELLO 3.
    private var entries: [(sequence: Int, kind: Kind, request: ByteBuffer, protocolSwitch: Int?)] = []
    /// The sequence number of the newest entry (0: nothing logged yet).
    private(set) var lastSequence = 0

    /// Appends the state-setting commands of `batch`, in order.
    func record(_ batch: Batch) {
        for i in 0..<batch.count {
            guard let kind = batch.withMessageBytes(i, Self.kind(of:)) else { continue }
            switch kind {
            case .select: entries.removeAll { $0.kind == .select }
            case .reset: entries.removeAll()
            case .hello, .auth: break
            }
            lastSequence += 1
            let version = kind == .hello ? batch.withMessageBytes(i, RedisConnectionState.protocolSwitch) : nil
            entries.append((lastSequence, kind, batch.messages[i], version))
        }
    }

    /// What a route missed after `sequence`: nil if nothing; else whether it was protocol switches
    /// only (then a route on a shared connection just moves to the one speaking the last protocol),
    /// and whether that last protocol is RESP3.
    func missed(after sequence: Int) -> (onlyProtocol: Bool, resp3: Bool)? {
        guard sequence < lastSequence else { return nil }
        var last: Int?
        for entry in entries where entry.sequence > sequence {
            guard let version = entry.protocolSwitch else { return (false, false) }
            last = version
        }
        guard let last else { return nil }  // superseded entries only
        return (true, last == 3)
    }

    /// The requests logged after `sequence`, as a request batch to replay; nil if there are none.
    ///
    /// Replayed in the order Redis needs on a new connection, which is not always the order the
    /// client sent them in: a client signed in without a password (Redis's `default` user) may
    /// switch to RESP3 and only later AUTH (after a `CONFIG SET requirepass`), but a new connection
    /// to that backend refuses HELLO until it is authenticated. So the last lone protocol switch
    /// before the last AUTH moves right after that AUTH (unless another HELLO lies between them,
    /// whose protocol it would then override).
    func replay(after sequence: Int) -> Batch? {
        guard sequence < lastSequence else { return nil }
        var missed = entries.filter { $0.sequence > sequence }
        guard !missed.isEmpty else { return nil }
        if let lastAuth = missed.lastIndex(where: { $0.kind == .auth }),
           let lastSwitch = missed[..<lastAuth].lastIndex(where: { $0.protocolSwitch != nil }),
           !missed[(lastSwitch + 1)..<lastAuth].contains(where: { $0.kind == .hello }) {
            let hello = missed.remove(at: lastSwitch)
            missed.insert(hello, at: lastAuth)  // lastAuth moved one place up with the removal
        }
        return Batch(kind: Batch.requests, protocolID: Batch.redis, messages: missed.map(\.request))
    }

    private static func kind(of request: UnsafeRawBufferPointer) -> Kind? {
        guard let name = RedisConnectionState.commandName(request), name.count >= 4, name.count <= 6 else { return nil }
        let candidate: (StaticString, Kind)
        switch name[0] | 0x20 {
        case UInt8(ascii: "h"): candidate = ("hello", .hello)
        case UInt8(ascii: "s"): candidate = ("select", .select)
        case UInt8(ascii: "a"): candidate = ("auth", .auth)
        case UInt8(ascii: "r"): candidate = ("reset", .reset)
        default: return nil
        }
        return RedisReplyPlan.equalsIgnoringCase(name, candidate.0) ? candidate.1 : nil
    }
}

/// Swallows the replies of replayed state commands.
final class DiscardedReplies: ResponseReceiver {
    static let shared = DiscardedReplies()
    func receive(_ outcome: ChainOutcome) {}
}
