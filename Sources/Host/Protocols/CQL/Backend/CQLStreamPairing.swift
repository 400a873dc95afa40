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

    /// One request in flight. Answered, it is parked for the next request (`park`, `reuse`)
    /// unless something else still holds it (a re-prepare).
    final class Pending {
        /// Nil only while parked for reuse.
        private(set) var receiver: ResponseReceiver!
        /// The client's frame as it sent it (for re-preparing and retrying, and PREPARE's text).
        var request: ByteBuffer { requestBytes ?? ByteBuffer() }
        /// Nil only while parked (no empty buffer stored, whose shared storage every park would
        /// retain and every reuse release).
        private var requestBytes: ByteBuffer?
        private(set) var clientStream: Int16
        private(set) var version: CQLVersion
        private(set) var opcode: UInt8
        /// Sluice's stream id on the backend connection (nil: none was free).
        fileprivate(set) var stream: Int16?
        /// The reply-timeout clock when it was sent (nil: the sink has no reply timeout).
        fileprivate(set) var sentAtCheck: Int?
        /// A retry after re-preparing: a second UNPREPARED goes to the client.
        private(set) var isRetry: Bool
        fileprivate var settled = false

        init(receiver: ResponseReceiver, request: ByteBuffer, clientStream: Int16, version: CQLVersion, opcode: UInt8,
             isRetry: Bool) {
            self.receiver = receiver
            requestBytes = request
            self.clientStream = clientStream
            self.version = version
            self.opcode = opcode
            self.isRetry = isRetry
        }

        fileprivate func reuse(receiver: ResponseReceiver, request: ByteBuffer, clientStream: Int16, version: CQLVersion,
                               opcode: UInt8, isRetry: Bool) {
            self.receiver = receiver
            requestBytes = request
            self.clientStream = clientStream
            self.version = version
            self.opcode = opcode
            self.isRetry = isRetry
            stream = nil
            sentAtCheck = nil
            settled = false
        }

        /// Lets go of the receiver and the request's bytes (which pin the client's read buffer).
        fileprivate func park() {
            if receiver != nil { receiver = nil }  // `frameArrived` took it already: no release to make
            requestBytes = nil
        }

        /// Moves the receiver out (no retain; nil until `reuse`), for delivering the reply: the
        /// entry is settled, and nothing reads the receiver of a settled entry again.
        @inline(__always)
        fileprivate func takeReceiver() -> ResponseReceiver {
            receiver.take()!
        }
    }

    /// Answered entries kept for reuse (one allocation less per request).
    private var sparePendings: [Pending] = []
    private static let maxSparePendings = 64
    /// `entry(for:)` writes a small request here, with Sluice's stream id, as the one message of the
    /// batch the connection writes (which copies it): its storage is reused from request to request.
    private var outbound: ByteBuffer
    /// Requests up to this size are copied into `outbound`; larger ones get a new header in front
    /// of their body (not copied).
    static var copyLimit: Int { 4096 }
    /// The response batch handed to the last receiver, kept for the next reply when nothing
    /// held on to it (the client's reply was written; no transform keeps it).
    private var spareReply: Batch?
    /// The current read with the stream ids of its replies already replaced by the clients' (see
    /// `beginRead`), and where it starts in the read buffer; nil when no reply of the read needs it.
    private var rewrittenRead: ByteBuffer?
    private var rewrittenReadStart = 0

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
        outbound = allocator.buffer(capacity: 0)
    }

    /// The next request sent is a retry after re-preparing.
    func markNextAsRetry() {
        nextIsRetry = true
    }

    // MARK: requests

    /// `batch` holds the client's one frame; it is rewritten in place to the new header (Sluice's
    /// stream id) and the body slice, which is what the connection writes.
    func entry(for batch: Batch, receiver: ResponseReceiver, route: CQLSinkRoute?, sentAtCheck: Int?) -> Pending {
        let frame = CQLWireFrame(batch.messages[0])!  // the route sends only whole frames
        let pending = newPending(frame.bytes, clientStream: frame.stream, version: frame.version ?? .v4,
                                 opcode: frame.opcodeByte, receiver: receiver, sentAtCheck: sentAtCheck)
        guard let stream = ids.allocate() else {
            batch.remove(at: 0)  // nothing is written
            return pending
        }
        pending.stream = stream
        let flags = frame.flags
        if frame.bytes.readableBytes <= Self.copyLimit {
            // The storage is free again once the connection copied the last request out of it
            // (clear() allocates only when something still holds it).
            outbound.clear()
            outbound.writeImmutableBuffer(frame.bytes)
            outbound.setInteger(stream, at: 2)
            if flags.contains(.compression) { outbound.setInteger(flags.subtracting(.compression).rawValue, at: 1) }
            batch.put(outbound, at: 0)
            return pending
        }
        var header = allocator.buffer(capacity: CQLFrameHeader.size)
        header.writeMultipleIntegers(frame.bytes.getInteger(at: frame.bytes.readerIndex, as: UInt8.self)!,
                                     flags.subtracting(.compression).rawValue, stream, frame.opcodeByte,
                                     UInt32(frame.bytes.readableBytes - CQLFrameHeader.size))
        let body = frame.body
        batch.put(header, at: 0)
        if body.readableBytes > 0 { batch.append(body) }
        return pending
    }

    /// The usual case (a shared connection writing now): a request up to `copyLimit` is copied
    /// straight into the connection's write with Sluice's stream id, the batch left as it is.
    func entry(for batch: Batch, receiver: ResponseReceiver, route: CQLSinkRoute?, sentAtCheck: Int?,
               appendingTo output: inout ByteBuffer) -> (entry: Pending, appended: Bool) {
        if let pending = entry(forRequest: batch.messages[0], receiver: receiver, sentAtCheck: sentAtCheck,
                               appendingTo: &output) {
            return (pending, true)
        }
        return (entry(for: batch, receiver: receiver, route: route, sentAtCheck: sentAtCheck), false)
    }

    /// The same for a request with no batch around it (`BackendConnection.send(request:)`, a
    /// route's request frame): nil, with nothing changed, for a request over `copyLimit` or when
    /// no stream id is free.
    func entry(forRequest request: ByteBuffer, receiver: ResponseReceiver, sentAtCheck: Int?,
               appendingTo output: inout ByteBuffer) -> Pending? {
        guard request.readableBytes <= Self.copyLimit, request.readableBytes >= CQLFrameHeader.size,
              let stream = ids.allocate() else {
            return nil
        }
        // One pass over the client's bytes: the header fields the entry keeps, and the copy with
        // Sluice's stream id (and the compression flag cleared: the connection's frames are bare).
        // (Through the output's whole storage: NIO's writable-bytes view costs a generic slice per call.)
        let length = request.readableBytes
        output.reserveCapacity(minimumWritableBytes: length)
        let at = output.writerIndex
        let (clientStream, versionByte, opcode) = request.withUnsafeReadableBytes { frame in
            output.withVeryUnsafeMutableBytes { storage in
                let out = storage.baseAddress! + at
                out.copyMemory(from: frame.baseAddress!, byteCount: length)
                out.storeBytes(of: UInt16(bitPattern: stream).bigEndian, toByteOffset: 2, as: UInt16.self)
                out.storeBytes(of: frame[1] & ~CQLFrameFlags.compression.rawValue, toByteOffset: 1, as: UInt8.self)
            }
            return (Int16(bitPattern: UInt16(frame[2]) << 8 | UInt16(frame[3])), frame[0] & 0x7F, frame[4])
        }
        output.moveWriterIndex(forwardBy: length)
        let pending = newPending(request, clientStream: clientStream, version: CQLVersion(rawValue: versionByte) ?? .v4,
                                 opcode: opcode, receiver: receiver, sentAtCheck: sentAtCheck)
        pending.stream = stream
        return pending
    }

    /// The entry of a request, a parked one when there is one (its stream id still to be set).
    @inline(__always)
    private func newPending(_ request: ByteBuffer, clientStream: Int16, version: CQLVersion, opcode: UInt8,
                            receiver: ResponseReceiver, sentAtCheck: Int?) -> Pending {
        let isRetry = nextIsRetry
        nextIsRetry = false
        // Each branch returns its own object (moved out: copying the spare into a shared local
        // cost two retains and a release per request).
        if var spare = sparePendings.popLast(), isKnownUniquelyReferenced(&spare) {
            spare.reuse(receiver: receiver, request: request, clientStream: clientStream, version: version,
                        opcode: opcode, isRetry: isRetry)
            spare.sentAtCheck = sentAtCheck
            return spare
        }
        let pending = Pending(receiver: receiver, request: request, clientStream: clientStream,
                              version: version, opcode: opcode, isRetry: isRetry)
        pending.sentAtCheck = sentAtCheck
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
        guard let check = entry.sentAtCheck, !inFlightPerCheck.isEmpty else { return }
        // Most replies answer a request of the oldest tick or the newest: no search then.
        let index: CircularBuffer<(check: Int, count: Int)>.Index
        if inFlightPerCheck[inFlightPerCheck.startIndex].check == check {
            index = inFlightPerCheck.startIndex
        } else if let found = inFlightPerCheck.firstIndex(where: { $0.check == check }) {
            index = found
        } else {
            return
        }
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

    /// Replaces, in one copy of the read, the stream id of every whole reply in it whose request
    /// came on another stream id from the client (most do): one allocation and copy per read
    /// instead of one per reply. Replies that came as Sluice's stream id is the client's, and
    /// reads with none of those, are not copied.
    func beginRead(_ buffer: ByteBuffer) {
        rewrittenRead = nil
        let rewrite = buffer.withUnsafeReadableBytes { bytes in
            var found = false
            Self.forEachWholeFrame(in: bytes) { _, stream in
                found = clientStream(replacing: stream) != nil
                return !found
            }
            return found
        }
        guard rewrite else { return }
        var copy = allocator.buffer(capacity: buffer.readableBytes)
        copy.writeImmutableBuffer(buffer)
        copy.withUnsafeMutableReadableBytes { bytes in
            Self.forEachWholeFrame(in: UnsafeRawBufferPointer(bytes)) { at, stream in
                if let clientStream = clientStream(replacing: stream) {
                    bytes.storeBytes(of: UInt16(bitPattern: clientStream).bigEndian, toByteOffset: at + 2, as: UInt16.self)
                }
                return true
            }
        }
        rewrittenRead = copy
        rewrittenReadStart = buffer.readerIndex
    }

    /// Calls `body` with the offset and the stream id of each whole frame at the front of `bytes`,
    /// in order, until it returns false or a frame is cut off (or announces a negative length).
    @inline(__always)
    private static func forEachWholeFrame(in bytes: UnsafeRawBufferPointer, _ body: (Int, Int16) -> Bool) {
        var at = 0
        while at + CQLFrameHeader.size <= bytes.count {
            let stream = Int16(bitPattern: UInt16(bytes[at + 2]) << 8 | UInt16(bytes[at + 3]))
            let length = Int32(bigEndian: bytes.loadUnaligned(fromByteOffset: at + 5, as: Int32.self))
            guard length >= 0, at + CQLFrameHeader.size + Int(length) <= bytes.count, body(at, stream) else { return }
            at += CQLFrameHeader.size + Int(length)
        }
    }

    /// The client's stream id for a reply on Sluice's `stream` when a request waits on it and the
    /// client sent it on another id; nil otherwise.
    @inline(__always)
    private func clientStream(replacing stream: Int16) -> Int16? {
        guard stream >= 0, Int(stream) < table.count, let entry = table[Int(stream)], entry.clientStream != stream else {
            return nil
        }
        return entry.clientStream
    }

    func endRead() {
        rewrittenRead = nil
    }

    /// The reply `frame` (at `start` in the read) with the client's stream id `clientStream`: from
    /// the rewritten read when it has it, else a copy of its own.
    private func reply(_ frame: ByteBuffer, stream: Int16, start: Int, clientStream: Int16) -> ByteBuffer {
        if stream == clientStream { return frame }
        if start >= rewrittenReadStart,
           let bytes = Self.slice(of: &rewrittenRead, at: start - rewrittenReadStart, length: frame.readableBytes),
           bytes.readableBytes >= CQLFrameHeader.size, ReplyHeader.stream(of: bytes) == clientStream {
            return bytes
        }
        return CQLWireFrame(frame)!.withStream(clientStream)
    }

    /// A slice of `read` (nil when there is no read, or it is too short). `read` is inout only so
    /// that the slice is taken in place: reading a stored property to slice it copies it first (a
    /// retain and a release of its storage around the call).
    @inline(__always)
    private static func slice(of read: inout ByteBuffer?, at index: Int, length: Int) -> ByteBuffer? {
        read?.getSlice(at: index, length: length)
    }

    /// A response batch holding `reply`: the spare one when there is one.
    private func replyBatch(_ reply: ByteBuffer) -> Batch {
        if let spare = spareReply.take() {
            spare.appendReceived(reply)
            return spare
        }
        return Batch(kind: Batch.responses, protocolID: Batch.cql, messages: [reply])
    }

    /// Reads `frame` in place: a `CQLWireFrame` of it (a copy, so a retain of the read's storage)
    /// is made only on the rare paths that parse its message.
    func frameArrived(_ frame: ByteBuffer, start: Int) -> BackendReplyOutcome {
        guard frame.readableBytes >= CQLFrameHeader.size else { return .outOfStep("a frame shorter than its header") }
        let header = ReplyHeader(frame)
        let stream = header.stream
        if stream < 0 {
            if header.opcode == CQLOpcode.event.rawValue { events?(frame) }
            return .accepted
        }
        // Moved out of the table (no retain and release of the entry).
        guard Int(stream) < table.count, let entry = table[Int(stream)].take() else {
            return .outOfStep("a reply on stream \(stream), which no request is waiting on")
        }
        ids.release(stream)
        answeredAtCheck = latestSentCheck
        if entry.settled {  // the late reply to a request the reply timeout failed: dropped
            overdue -= 1
            return .accepted
        }
        entry.settled = true
        answered(entry)
        count -= 1
        if header.opcode == CQLOpcode.error.rawValue, !entry.isRetry,
           (header.lead.map { CQLErrorCode(rawValue: $0) } ?? CQLWireFrame(frame)!.errorCode) == .unprepared,
           let id = Self.unpreparedID(CQLWireFrame(frame)!), let unprepared, unprepared(entry, id) {
            return .accepted
        }
        let resultKind = header.opcode != CQLOpcode.result.rawValue ? nil
            : header.lead.map { CQLResultKind(rawValue: $0) } ?? CQLWireFrame(frame)!.resultKind
        if entry.opcode == CQLOpcode.prepare.rawValue, resultKind == .prepared {
            record(CQLWireFrame(frame)!, preparedBy: entry)
        }
        let bytes = reply(frame, stream: stream, start: start, clientStream: entry.clientStream)
        var batch = replyBatch(bytes)
        entry.takeReceiver().receive(.responses(batch))
        if isKnownUniquelyReferenced(&batch) {
            batch.clearForReuse()
            spareReply = consume batch
        }
        if resultKind == .setKeyspace, Self.setKeyspace(CQLWireFrame(frame)!) != keyspace {
            keyspaceSwitched?()
        }
        park(consume entry)
        return .accepted
    }

    /// What `frameArrived` reads of every reply, in one look at its bytes: the stream, the opcode,
    /// and the first [int] of the message (a RESULT's kind, an ERROR's code) when nothing comes
    /// before the message (no tracing id, warnings or custom payload: the usual case; nil
    /// otherwise, and the frame's own accessors parse it).
    private struct ReplyHeader {
        let stream: Int16
        let opcode: UInt8
        let lead: Int32?

        /// The stream of `frame`, a whole header long at least.
        @inline(__always)
        static func stream(of frame: ByteBuffer) -> Int16 {
            frame.withUnsafeReadableBytes { Int16(bitPattern: UInt16($0[2]) << 8 | UInt16($0[3])) }
        }

        @inline(__always)
        init(_ frame: ByteBuffer) {
            (stream, opcode, lead) = frame.withUnsafeReadableBytes { bytes -> (Int16, UInt8, Int32?) in
                let stream = Int16(bitPattern: UInt16(bytes[2]) << 8 | UInt16(bytes[3]))
                let prefixed = CQLFrameFlags([.tracing, .warning, .customPayload]).rawValue
                guard bytes[1] & prefixed == 0, bytes.count >= CQLFrameHeader.size + 4 else { return (stream, bytes[4], nil) }
                return (stream, bytes[4], Int32(bigEndian: bytes.loadUnaligned(fromByteOffset: CQLFrameHeader.size, as: Int32.self)))
            }
        }
    }

    /// Keeps an answered entry for the next request, when nothing else holds it.
    private func park(_ entry: consuming Pending) {
        guard sparePendings.count < Self.maxSparePendings, isKnownUniquelyReferenced(&entry) else { return }
        entry.park()
        sparePendings.append(consume entry)
    }

    /// Called (after the reply was delivered) when a request switched the connection to another
    /// keyspace than the one it is shared for (an EXECUTE of a USE prepared elsewhere): the
    /// connection must serve no one else (`CQLConnectionTable` retires it).
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
