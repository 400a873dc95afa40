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
///
/// One client request can reach several routes (tee sends a copy of the batch to its target, then
/// passes the batch on), and each route records it. The log tells the copies apart from new requests
/// by the request's identity: a message's bytes as read from the client keep their address in the
/// read buffer through every copy of the batch (a transform that rewrites a message makes a new
/// one). Each entry holds its request, so that address cannot be reused for another request while
/// the entry lives; superseded entries are remembered the same way (`superseded`, bounded), so that
/// a copy of a batch with two SELECTs does not log the first one again. A route sending a batch
/// neither replays entries that came from that batch (`replay(after:sending:)`) nor logs them twice.
final class ClientStateLog {
    private enum Kind { case hello, select, auth, reset }

    private struct Entry {
        let sequence: Int
        let kind: Kind
        let request: ByteBuffer
        /// 2 or 3 for a lone HELLO 2 / HELLO 3.
        let protocolSwitch: Int?
    }

    private var entries: [Entry] = []
    /// Requests whose entries a later SELECT or RESET removed, newest last, kept only to recognise
    /// copies of them (at most `supersededLimit`).
    private var superseded: [ByteBuffer] = []
    private static let supersededLimit = 64
    /// The sequence number of the newest entry (0: nothing logged yet).
    private(set) var lastSequence = 0

    /// Appends the state-setting commands of `batch`, in order, except those already logged from
    /// another copy of the same client requests.
    func record(_ batch: Batch) {
        if batch.plainRequests { return }  // no state commands among them
        for i in 0..<batch.count {
            guard let kind = batch.withMessageBytes(i, Self.kind(of:)) else { continue }
            let request = batch.messages[i]
            if isLogged(request) { continue }
            switch kind {
            case .select:
                if let index = entries.firstIndex(where: { $0.kind == .select }) {
                    retire(entries.remove(at: index).request)
                }
            case .reset:
                for entry in entries { retire(entry.request) }
                entries.removeAll()
            case .hello, .auth: break
            }
            lastSequence += 1
            let version = kind == .hello ? batch.withMessageBytes(i, RedisConnectionState.protocolSwitch) : nil
            entries.append(Entry(sequence: lastSequence, kind: kind, request: request, protocolSwitch: version))
        }
    }

    /// What a route missed after `sequence`, apart from the requests of `sending` (the batch it is
    /// about to send): nil if nothing; else whether it was protocol switches only (then a route on
    /// a shared connection just moves to the one speaking the last protocol), and whether that last
    /// protocol is RESP3.
    func missed(after sequence: Int, sending: Batch) -> (onlyProtocol: Bool, resp3: Bool)? {
        guard sequence < lastSequence else { return nil }
        var last: Int?
        for entry in entries where entry.sequence > sequence && !Self.contains(sending, entry.request) {
            guard let version = entry.protocolSwitch else { return (false, false) }
            last = version
        }
        guard let last else { return nil }  // superseded entries, or the batch's own, only
        return (true, last == 3)
    }

    /// The requests logged after `sequence`, apart from those of `sending` (the batch the route is
    /// about to send, which carries them itself), as a request batch to replay; nil if there are none.
    ///
    /// Replayed in the order Redis needs on a new connection, which is not always the order the
    /// client sent them in: a client signed in without a password (Redis's `default` user) may
    /// switch to RESP3 and only later AUTH (after a `CONFIG SET requirepass`), but a new connection
    /// to that backend refuses HELLO until it is authenticated. So the last lone protocol switch
    /// before the last AUTH moves right after that AUTH (unless another HELLO lies between them,
    /// whose protocol it would then override).
    func replay(after sequence: Int, sending: Batch? = nil) -> Batch? {
        guard sequence < lastSequence else { return nil }
        var missed = entries.filter { entry in
            entry.sequence > sequence && !(sending.map { Self.contains($0, entry.request) } ?? false)
        }
        guard !missed.isEmpty else { return nil }
        if let lastAuth = missed.lastIndex(where: { $0.kind == .auth }),
           let lastSwitch = missed[..<lastAuth].lastIndex(where: { $0.protocolSwitch != nil }),
           !missed[(lastSwitch + 1)..<lastAuth].contains(where: { $0.kind == .hello }) {
            let hello = missed.remove(at: lastSwitch)
            missed.insert(hello, at: lastAuth)  // lastAuth moved one place up with the removal
        }
        return Batch(kind: Batch.requests, protocolID: Batch.redis, messages: missed.map(\.request))
    }

    /// Whether `request` (this very message, not just the same bytes) is logged or was superseded.
    private func isLogged(_ request: ByteBuffer) -> Bool {
        entries.contains { Self.same($0.request, request) } || superseded.contains { Self.same($0, request) }
    }

    private func retire(_ request: ByteBuffer) {
        if superseded.count == Self.supersededLimit { superseded.removeFirst() }
        superseded.append(request)
    }

    private static func contains(_ batch: Batch, _ request: ByteBuffer) -> Bool {
        for i in 0..<batch.count where same(batch.messages[i], request) { return true }
        return false
    }

    /// The same client request: the same bytes at the same place in the same storage.
    @inline(__always)
    private static func same(_ a: ByteBuffer, _ b: ByteBuffer) -> Bool {
        a.readableBytes == b.readableBytes
            && a.withUnsafeReadableBytes { x in b.withUnsafeReadableBytes { y in x.baseAddress == y.baseAddress } }
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
