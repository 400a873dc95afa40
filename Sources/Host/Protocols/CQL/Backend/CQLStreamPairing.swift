import NIOCore

/// The requests in flight on one CQL backend connection, paired with replies by stream id: every
/// request gets a stream id of Sluice's (`CQLStreamIDs`) on the way out, written in a new 9-byte
/// header in front of the client's body (the body itself is not copied), and the reply gets the
/// client's stream id back. Replies are delivered as the backend sends them, so a slow query
/// delays no other stream. EVENT frames (stream -1) go to `events`.
///
/// Beyond pairing: a RESULT Prepared is recorded in the sink's `CQLPreparedRegistry`, and an
/// UNPREPARED error is handed to `unprepared` (which prepares again and retries) instead of the
/// client, once per request. Lives on the connection's event loop.
final class CQLStreamPairing: BackendReplyPairing {
    typealias Route = CQLSinkRoute

    /// One request in flight.
    final class Pending {
        let receiver: ResponseReceiver
        /// The client's frame as it sent it (for re-preparing and retrying, and PREPARE's text).
        let request: ByteBuffer
        let clientStream: Int16
        let version: CQLVersion
        let opcode: UInt8
        /// Sluice's stream id on the backend connection (nil: none was free).
        fileprivate(set) var stream: Int16?
        /// The reply-timeout clock when it was sent (nil: the sink has no reply timeout).
        fileprivate(set) var sentAtCheck: Int?
        /// A retry after re-preparing: a second UNPREPARED goes to the client.
        let isRetry: Bool
        fileprivate var settled = false

        init(receiver: ResponseReceiver, request: ByteBuffer, clientStream: Int16, version: CQLVersion, opcode: UInt8,
             isRetry: Bool) {
            self.receiver = receiver
            self.request = request
            self.clientStream = clientStream
            self.version = version
            self.opcode = opcode
            self.isRetry = isRetry
        }
    }

    private let eventLoop: EventLoop
    private let allocator: ByteBufferAllocator
    /// The keyspace the connection's handshake USEd (nil: none).
    let keyspace: String?
    /// Where RESULT Prepared replies are recorded: the sink's (replaced when a reload carries the
    /// connection over to the next generation).
    var registry: CQLPreparedRegistry
    /// Entries by Sluice's stream id.
    private var table: [Pending?] = []
    private var ids = CQLStreamIDs()
    /// How many requests in flight were sent at each tick of the reply-timeout clock, oldest
    /// first (only with a reply timeout): the oldest tick is the reply timeout's. Holds counts,
    /// not requests, so an answered request is let go at once (its receiver, and its bytes that
    /// pin the client's read buffer) even while an older one is still outstanding; it has one
    /// element per tick at which requests still in flight were sent.
    private var inFlightPerCheck = CircularBuffer<(check: Int, count: Int)>(initialCapacity: 4)
    /// Requests in flight whose replies are still to be delivered (not those failed by the reply
    /// timeout, `overdue`).
    private(set) var count = 0
    /// Requests the reply timeout failed alone (`failOverdue`): they stay in `table`, settled, with
    /// their stream ids reserved until the backend's late reply arrives (dropped) or the connection
    /// ends, so an id is never reused while the backend may still answer on it.
    private(set) var overdue = 0
    /// The reply-timeout clock of the newest request added, and its value when the backend last
    /// answered: a reply shows the connection alive after the requests sent up to then.
    private var latestSentCheck = 0
    private var answeredAtCheck: Int?
    private var nextIsRetry = false
    /// Where EVENT frames go (the sink's event connection); nil: dropped.
    var events: ((ByteBuffer) -> Void)?
    /// Given an UNPREPARED error for an entry and the statement's id: true when it takes over (it
    /// prepares again and retries); false delivers the error to the client.
    var unprepared: ((Pending, [UInt8]) -> Bool)?

    init(keyspace: String?, registry: CQLPreparedRegistry, eventLoop: EventLoop, allocator: ByteBufferAllocator) {
        self.keyspace = keyspace
        self.registry = registry
        self.eventLoop = eventLoop
        self.allocator = allocator
    }

    /// The next request sent is a retry after re-preparing.
    func markNextAsRetry() {
        nextIsRetry = true
    }

    // MARK: requests

    /// `batch` holds the client's one frame; it is rewritten in place to the new header (Sluice's
    /// stream id) and the body slice, which is what the connection writes.
    func entry(for batch: Batch, receiver: ResponseReceiver, route: CQLSinkRoute?, sentAtCheck: Int?) -> Pending {
        let isRetry = nextIsRetry
        nextIsRetry = false
        let frame = CQLWireFrame(batch.messages[0])!  // the route sends only whole frames
        let pending = Pending(receiver: receiver, request: frame.bytes, clientStream: frame.stream,
                              version: frame.version ?? .v4, opcode: frame.opcodeByte, isRetry: isRetry)
        pending.sentAtCheck = sentAtCheck
        guard let stream = ids.allocate() else {
            batch.remove(at: 0)  // nothing is written
            return pending
        }
        pending.stream = stream
        var header = allocator.buffer(capacity: CQLFrameHeader.size)
        header.writeMultipleIntegers(frame.bytes.getInteger(at: frame.bytes.readerIndex, as: UInt8.self)!,
                                     frame.flags.subtracting(.compression).rawValue, stream, frame.opcodeByte,
                                     UInt32(frame.bytes.readableBytes - CQLFrameHeader.size))
        let body = frame.body
        batch.put(header, at: 0)
        if body.readableBytes > 0 { batch.append(body) }
        return pending
    }

    func failUnsent(_ entry: Pending, _ message: String, completesRoute: Bool) {
        if let stream = entry.stream, !entry.settled {
            entry.settled = true
            ids.release(stream)
        }
        entry.receiver.receive(.responses(CQLBackendErrors.reply(to: entry, failure: message, allocator: allocator)))
    }

    func add(_ entry: Pending) {
        guard let stream = entry.stream else {
            let message = "sluice: \(CQLStreamIDs.capacity) requests are in flight on one backend connection"
            eventLoop.execute { [allocator] in
                entry.receiver.receive(.responses(CQLBackendErrors.reply(to: entry, code: .overloaded, message: message,
                                                                         allocator: allocator)))
            }
            return
        }
        let slot = Int(stream)
        if slot >= table.count {
            table.append(contentsOf: repeatElement(nil, count: max(slot + 1 - table.count, min(table.count, 4096), 16)))
        }
        table[slot] = entry
        if let check = entry.sentAtCheck {
            latestSentCheck = check
            if let last = inFlightPerCheck.last, last.check == check {
                inFlightPerCheck[inFlightPerCheck.index(before: inFlightPerCheck.endIndex)].count += 1
            } else {
                inFlightPerCheck.append((check, 1))
            }
        }
        count += 1
    }

    /// `entry`, in flight, got its reply: it no longer counts for the reply timeout.
    private func answered(_ entry: Pending) {
        guard let check = entry.sentAtCheck,
              let index = inFlightPerCheck.firstIndex(where: { $0.check == check }) else { return }
        inFlightPerCheck[index].count -= 1
        while let first = inFlightPerCheck.first, first.count == 0 { inFlightPerCheck.removeFirst() }
    }

    func requestsWritten() {}

    /// Whether a request sent now gets a stream id (not all 32768 are in flight or reserved).
    var hasFreeStreamID: Bool { ids.inUse < CQLStreamIDs.capacity }

    var oldestSentAtCheck: Int? { inFlightPerCheck.first?.check }

    func oldestMayWaitIndefinitely() -> Bool { false }

    /// The reply timeout per request: while the backend still answers on this connection (a reply
    /// arrived after a request sent in a later check period than the oldest overdue one), the requests sent at or before check
    /// `cutoff` get `message` (SERVER_ERROR) on their own streams and the others go on; their
    /// stream ids stay reserved (`overdue`). When nothing came back since, the backend is stuck or
    /// the connection half-open: nil, and the connection closes as for RESP. Scans the table once
    /// per timeout check that finds a request overdue, never per request.
    func failOverdue(sentAtOrBefore cutoff: Int, message: String) -> Int? {
        // Strictly later: a reply read in the same check period may have come before the request left.
        guard let oldest = oldestSentAtCheck, let answered = answeredAtCheck, answered > oldest else { return nil }
        var failed: [Pending] = []
        for case let entry? in table where !entry.settled {
            guard let check = entry.sentAtCheck, check <= cutoff else { continue }
            entry.settled = true
            failed.append(entry)
        }
        while let first = inFlightPerCheck.first, first.check <= cutoff { inFlightPerCheck.removeFirst() }
        count -= failed.count
        overdue += failed.count
        eventLoop.execute { [allocator] in
            for entry in failed {
                entry.receiver.receive(.responses(CQLBackendErrors.reply(to: entry, failure: message, allocator: allocator)))
            }
        }
        return failed.count
    }

    func settleAll(on eventLoop: EventLoop, _ outcome: @escaping (Int) -> ChainOutcome) {
        guard count > 0 || overdue > 0 else { return }
        let settled = table.compactMap { $0 }.filter { !$0.settled }  // not those the reply timeout failed
        for entry in settled { entry.settled = true }
        table.removeAll(keepingCapacity: true)
        inFlightPerCheck.removeAll(keepingCapacity: true)
        ids.reset()
        count = 0
        overdue = 0
        eventLoop.execute { [allocator] in
            for entry in settled {
                entry.receiver.receive(.responses(CQLBackendErrors.reply(to: entry, outcome: outcome(1), allocator: allocator)))
            }
        }
    }

    /// Called when the channel is gone (or a connect did not succeed): the event connection
    /// registers again (`CQLEventFanOut.reregister`).
    var lost: (() -> Void)?

    /// The requests in flight stay until settled (their stream ids with them); the ids the reply
    /// timeout kept reserved are free again (no late reply can come on a new channel).
    func connectionLost() {
        answeredAtCheck = nil
        if overdue > 0 {
            for slot in table.indices where table[slot]?.settled == true {
                table[slot] = nil
                ids.release(Int16(slot))
            }
            overdue = 0
        }
        lost?()
    }

    // MARK: replies

    func beginRead(_ buffer: ByteBuffer) {}
    func endRead() {}

    func frameArrived(_ frame: ByteBuffer, start: Int) -> BackendReplyOutcome {
        guard let reply = CQLWireFrame(frame) else { return .outOfStep("a frame shorter than its header") }
        let stream = reply.stream
        if stream < 0 {
            if reply.opcodeByte == CQLOpcode.event.rawValue { events?(frame) }
            return .accepted
        }
        guard Int(stream) < table.count, let entry = table[Int(stream)] else {
            return .outOfStep("a reply on stream \(stream), which no request is waiting on")
        }
        table[Int(stream)] = nil
        ids.release(stream)
        answeredAtCheck = latestSentCheck
        if entry.settled {  // the late reply to a request the reply timeout failed: dropped
            overdue -= 1
            return .accepted
        }
        entry.settled = true
        answered(entry)
        count -= 1
        if reply.opcodeByte == CQLOpcode.error.rawValue, !entry.isRetry, reply.errorCode == .unprepared,
           let id = Self.unpreparedID(reply), let unprepared, unprepared(entry, id) {
            return .accepted
        }
        if entry.opcode == CQLOpcode.prepare.rawValue, reply.resultKind == .prepared {
            record(reply, preparedBy: entry)
        }
        let bytes = reply.stream == entry.clientStream ? frame : reply.withStream(entry.clientStream)
        entry.receiver.receive(.responses(Batch(kind: Batch.responses, protocolID: Batch.cql, messages: [bytes])))
        if reply.resultKind == .setKeyspace, Self.setKeyspace(reply) != keyspace { keyspaceSwitched?() }
        return .accepted
    }

    /// Called (after the reply was delivered) when a request switched the connection to another
    /// keyspace than the one it is shared for (an EXECUTE of a USE prepared elsewhere): the
    /// connection must serve no one else (`SharedSinkConnections` retires it).
    var keyspaceSwitched: (() -> Void)?

    /// The keyspace a RESULT Set_keyspace names.
    static func setKeyspace(_ reply: CQLWireFrame) -> String? {
        guard let version = reply.version, let message = reply.message(),
              case .setKeyspace(let name)? = try? CQLResult(message: message, version: version) else { return nil }
        return name
    }

    /// The statement id an UNPREPARED error names.
    static func unpreparedID(_ reply: CQLWireFrame) -> [UInt8]? {
        guard let version = reply.version, let message = reply.message(),
              let error = try? CQLErrorMessage(message: message, version: version),
              case .unprepared(let id) = error.details else { return nil }
        return Array(buffer: id)
    }

    /// Records the id of a RESULT Prepared with the text of the PREPARE it answers.
    private func record(_ reply: CQLWireFrame, preparedBy entry: Pending) {
        guard let version = reply.version, let message = reply.message(),
              case .prepared(let prepared)? = try? CQLResult(message: message, version: version),
              let request = CQLWireFrame(entry.request), let requestBody = request.message(),
              let prepare = try? CQLPrepareRequest(message: requestBody, version: version)
        else { return }
        registry.record(id: Array(buffer: prepared.id),
                        .init(query: prepare.queryText, keyspace: prepare.keyspace ?? keyspace))
    }
}
