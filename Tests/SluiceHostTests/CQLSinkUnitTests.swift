import NIOCore
import NIOEmbedded
import XCTest
@testable import SluiceHost

/// The cassandra sink's parts as plain values: the stream-id allocator, the pairing table, the
/// segment packing of outgoing frames, the backend frame scanner, and the handshake's verdicts in
/// the connection state machine.
final class CQLSinkUnitTests: XCTestCase {
    func testStreamIDsAreUniqueWhileInFlightAndReused() {
        var ids = CQLStreamIDs()
        var seen = Set<Int16>()
        for _ in 0..<CQLStreamIDs.capacity {
            let id = ids.allocate()!
            XCTAssertTrue(seen.insert(id).inserted)
            XCTAssertTrue(id >= 0)
        }
        XCTAssertNil(ids.allocate(), "32768 in flight: none left")
        ids.release(1234)
        XCTAssertEqual(ids.allocate(), 1234)
        XCTAssertEqual(ids.inUse, CQLStreamIDs.capacity)
        ids.reset()
        XCTAssertEqual(ids.inUse, 0)
        XCTAssertEqual(ids.allocate(), 0)
    }

    private final class Collect: ResponseReceiver {
        var replies: [ByteBuffer] = []
        func receive(_ outcome: ChainOutcome) {
            if case .responses(let batch) = outcome { replies.append(contentsOf: batch.messages) }
        }
    }

    /// The replies of one read get their clients' stream ids in one copy of the read (the read
    /// itself is not changed); a reply whose id needs no change is the read's own slice; an
    /// answered entry and its reply batch are reused for the next request and reply.
    func testRepliesOfOneReadGetTheirClientsStreamIDs() throws {
        let loop = EmbeddedEventLoop()
        let pairing = CQLStreamPairing(keyspace: nil, registry: CQLPreparedRegistry(), eventLoop: loop,
                                       allocator: ByteBufferAllocator())
        let receivers = (0..<3).map { _ in Collect() }
        var wire: [Int16] = []
        for (i, clientStream) in [Int16(40), 41, 0].enumerated() {
            let batch = Batch(kind: Batch.requests, protocolID: Batch.cql,
                              messages: [CQLFrameBuilder.query(version: .v4, stream: clientStream, query: "SELECT \(i)")])
            let entry = pairing.entry(for: batch, receiver: receivers[i], route: nil, sentAtCheck: nil)
            pairing.add(entry)
            wire.append(CQLWireFrame(batch.messages[0])!.stream)
        }
        XCTAssertEqual(wire, [0, 1, 2])
        // The third client's request went out on Sluice's stream 2 with its own id 0: the read holds
        // the replies to streams 1, 2 and 0, then the start of another frame.
        var read = ByteBuffer()
        read.writeString("xx")  // bytes of the read before it, already taken
        read.moveReaderIndex(forwardBy: 2)
        for stream in [wire[1], wire[2], wire[0]] { read.writeImmutableBuffer(CQLFrameBuilder.resultVoid(version: .v4, stream: stream)) }
        read.writeBytes([0x84, 0, 0])
        let original = Array(read.readableBytesView)
        pairing.beginRead(read)
        var scan = read
        for _ in 0..<3 {
            let start = scan.readerIndex
            let frame = scan.readSlice(length: CQLFrameHeader.size + Int(scan.getInteger(at: start + 5, as: Int32.self)!))!
            XCTAssertEqual(pairing.frameArrived(frame, start: start), .accepted)
        }
        pairing.endRead()
        XCTAssertEqual(receivers.map { $0.replies.map { CQLWireFrame($0)!.stream } }, [[40], [41], [0]])
        XCTAssertEqual(Array(read.readableBytesView), original, "the read itself is unchanged")
        for receiver in receivers {
            XCTAssertEqual(CQLWireFrame(receiver.replies[0])!.opcodeByte, CQLOpcode.result.rawValue)
            XCTAssertEqual(receiver.replies[0].readableBytes, CQLFrameHeader.size + 4)
        }
        XCTAssertEqual(pairing.count, 0)
        // Answered entries come back for the next requests, with nothing of the old ones.
        let next = Collect()
        let batch = Batch(kind: Batch.requests, protocolID: Batch.cql,
                          messages: [CQLFrameBuilder.query(version: .v4, stream: 9, query: "SELECT 9")])
        let entry = pairing.entry(for: batch, receiver: next, route: nil, sentAtCheck: nil)
        XCTAssertEqual(entry.clientStream, 9)
        XCTAssertTrue(entry.receiver === next)
        pairing.add(entry)
        let stream = CQLWireFrame(batch.messages[0])!.stream
        XCTAssertEqual(pairing.frameArrived(CQLFrameBuilder.resultVoid(version: .v4, stream: stream), start: 0), .accepted)
        XCTAssertEqual(next.replies.map { CQLWireFrame($0)!.stream }, [9])
    }

    /// Requests of clients using the same stream ids get distinct ids of Sluice's on the wire (a
    /// small request copied whole with the new id, a large one as a new header in front of its body,
    /// untouched, in a slice of its own); replies in any order go back with each client's id.
    func testPairingRemapsAndRestoresStreams() throws {
        let loop = EmbeddedEventLoop()
        let registry = CQLPreparedRegistry()
        let pairing = CQLStreamPairing(keyspace: nil, registry: registry, eventLoop: loop, allocator: ByteBufferAllocator())
        let a = Collect(), b = Collect(), c = Collect()
        var wire: [Int16] = []
        let large = "SELECT * FROM t WHERE k IN (" + (0..<2000).map(String.init).joined(separator: ",") + ")"
        for (receiver, text) in [(a, "SELECT 1"), (b, "SELECT 2"), (c, large)] {
            let frame = CQLFrameBuilder.query(version: .v4, stream: 7, query: text)
            let batch = Batch(kind: Batch.requests, protocolID: Batch.cql, messages: [frame])
            let entry = pairing.entry(for: batch, receiver: receiver, route: nil, sentAtCheck: nil)
            pairing.add(entry)
            let sent = CQLWireFrame(batch.messages[0])!
            if frame.readableBytes <= CQLStreamPairing.copyLimit {
                XCTAssertEqual(batch.count, 1, "the whole frame with Sluice's stream id")
                XCTAssertEqual(Array(buffer: sent.body), Array(buffer: CQLWireFrame(frame)!.body))
                XCTAssertEqual(Array(sent.bytes.readableBytesView.prefix(2)), Array(frame.readableBytesView.prefix(2)))
                XCTAssertEqual(Array(sent.bytes.readableBytesView.dropFirst(4).prefix(5)),
                               Array(frame.readableBytesView.dropFirst(4).prefix(5)), "opcode and length")
            } else {
                XCTAssertEqual(batch.count, 2, "new header, then the body")
                XCTAssertEqual(batch.messages[0].readableBytes, CQLFrameHeader.size)
                XCTAssertEqual(Array(buffer: batch.messages[1]), Array(buffer: CQLWireFrame(frame)!.body))
            }
            wire.append(sent.stream)
        }
        XCTAssertEqual(Set(wire).count, 3)
        XCTAssertEqual(pairing.frameArrived(CQLFrameBuilder.resultVoid(version: .v4, stream: wire[2]), start: 0), .accepted)
        XCTAssertEqual(c.replies.map { CQLWireFrame($0)!.stream }, [7])
        wire.removeLast()
        XCTAssertNotEqual(wire[0], wire[1])
        XCTAssertEqual(pairing.count, 2)
        // b's reply first.
        for (stream, kind) in [(wire[1], CQLResultKind.void), (wire[0], .void)] {
            _ = kind
            let reply = CQLFrameBuilder.resultVoid(version: .v4, stream: stream)
            XCTAssertEqual(pairing.frameArrived(reply, start: 0), .accepted)
        }
        XCTAssertEqual(a.replies.map { CQLWireFrame($0)!.stream }, [7])
        XCTAssertEqual(b.replies.map { CQLWireFrame($0)!.stream }, [7])
        XCTAssertEqual(pairing.count, 0)
        // A reply no request waits for is out of step; an EVENT is not.
        if case .accepted = pairing.frameArrived(CQLFrameBuilder.resultVoid(version: .v4, stream: wire[0]), start: 0) {
            XCTFail("a second reply on a settled stream must be out of step")
        }
        var events: [ByteBuffer] = []
        pairing.events = { events.append($0) }
        let event = CQLFrameBuilder.frame(version: .v4, isResponse: true, stream: -1, opcode: .event) {
            $0.writeCQLString("SCHEMA_CHANGE")
        }
        XCTAssertEqual(pairing.frameArrived(event, start: 0), .accepted)
        XCTAssertEqual(events.count, 1)
        XCTAssertEqual(CQLEventFanOut.eventType(events[0]), "SCHEMA_CHANGE")
    }

    /// When the connection fails, every request in flight gets an ERROR frame on its own stream.
    func testSettleAllAnswersEachStreamWithAnError() throws {
        let loop = EmbeddedEventLoop()
        let pairing = CQLStreamPairing(keyspace: nil, registry: CQLPreparedRegistry(), eventLoop: loop,
                                       allocator: ByteBufferAllocator())
        let c = Collect()
        for stream in Int16(100)..<103 {
            let batch = Batch(kind: Batch.requests, protocolID: Batch.cql,
                              messages: [CQLFrameBuilder.query(version: .v5, stream: stream, query: "SELECT 1")])
            pairing.add(pairing.entry(for: batch, receiver: c, route: nil, sentAtCheck: 0))
        }
        pairing.settleAll(on: loop) { _ in .failed("sluice: backend 'cass' (x) unavailable: connect failed: refused") }
        loop.run()
        XCTAssertEqual(c.replies.map { CQLWireFrame($0)!.stream }, [100, 101, 102])
        XCTAssertEqual(c.replies.map { CQLWireFrame($0)!.errorCode }, Array(repeating: .overloaded, count: 3))
        XCTAssertEqual(c.replies.map { CQLWireFrame($0)!.rawVersion }, [5, 5, 5])
        XCTAssertEqual(pairing.count, 0)
    }

    /// The connection's failure messages for a refused sign-in with the sink's credentials become
    /// the client's message naming the sink (with or without the back-off's suffix); others do not.
    func testRefusedSinkCredentialsAreToldByName() {
        let refusal = "\(CQLBackend.sinkCredentialsRefused) (username/password): BAD_CREDENTIALS: Provided username u and/or password are incorrect"
        let failed = "sluice: backend 'cass' (127.0.0.1:9042) unavailable: connect failed: AUTH_RESPONSE refused (\(refusal))"
        XCTAssertEqual(CQLBackendErrors.sinkCredentialsRefused(failed), "sluice: sink 'cass' (127.0.0.1:9042): \(refusal)")
        XCTAssertEqual(CQLBackendErrors.sinkCredentialsRefused(failed + "; next attempt in 200 ms"),
                       "sluice: sink 'cass' (127.0.0.1:9042): \(refusal)")
        XCTAssertNil(CQLBackendErrors.sinkCredentialsRefused(
            "sluice: backend 'cass' (127.0.0.1:9042) unavailable: connect failed: connection refused"))
        XCTAssertEqual(CQLBackendErrors.code(forFailure: "sluice: backend 'cass' (127.0.0.1:9042) unavailable: connect failed: connection refused"),
                       .overloaded)
    }

    /// With every stream id of a connection in flight, one more request writes nothing and gets
    /// OVERLOADED on its own stream; once a reply frees an id, the next request gets it.
    func testAllStreamsInFlightAnswersOverloaded() throws {
        let loop = EmbeddedEventLoop()
        let pairing = CQLStreamPairing(keyspace: nil, registry: CQLPreparedRegistry(), eventLoop: loop,
                                       allocator: ByteBufferAllocator())
        let c = Collect()
        let frame = CQLFrameBuilder.query(version: .v4, stream: 9, query: "SELECT 1")
        for _ in 0..<CQLStreamIDs.capacity {
            pairing.add(pairing.entry(for: Batch(kind: Batch.requests, protocolID: Batch.cql, messages: [frame]),
                                      receiver: c, route: nil, sentAtCheck: nil))
        }
        let extra = Batch(kind: Batch.requests, protocolID: Batch.cql, messages: [frame])
        pairing.add(pairing.entry(for: extra, receiver: c, route: nil, sentAtCheck: nil))
        XCTAssertEqual(extra.count, 0, "nothing to write")
        loop.run()
        XCTAssertEqual(c.replies.map { CQLWireFrame($0)!.errorCode }, [.overloaded])
        XCTAssertEqual(c.replies.map { CQLWireFrame($0)!.stream }, [9])
        XCTAssertEqual(pairing.count, CQLStreamIDs.capacity)
        XCTAssertEqual(pairing.frameArrived(CQLFrameBuilder.resultVoid(version: .v4, stream: 77), start: 0), .accepted)
        let next = Batch(kind: Batch.requests, protocolID: Batch.cql, messages: [frame])
        pairing.add(pairing.entry(for: next, receiver: c, route: nil, sentAtCheck: nil))
        XCTAssertEqual(CQLWireFrame(next.messages[0])?.stream, 77)
    }

    /// Outgoing frames are packed into self-contained segments of whole frames; a frame larger
    /// than a payload travels in segments that are not; the segment reader gets the frames back.
    func testSegmentPacking() throws {
        var frames = ByteBuffer()
        var expected: [ByteBuffer] = []
        for size in [10, 70_000, 70_000, 300_000, 5] {
            let frame = CQLFrameBuilder.query(version: .v5, stream: Int16(expected.count), query: String(repeating: "x", count: size))
            expected.append(frame)
            frames.writeImmutableBuffer(frame)
        }
        var output = ByteBuffer()
        let codec = CQLSegmentCodec(compressed: false)
        CQLBackendHandler.pack(&frames, codec: codec, into: &output)
        XCTAssertEqual(frames.readableBytes, 0)
        var reader = CQLSegmentReader(codec: codec, scanner: CQLFrameScanner(direction: .requests, maxFrameBytes: 1 << 20))
        var got: [ByteBuffer] = []
        while let frame = try reader.nextFrame(&output) { got.append(frame.bytes) }
        XCTAssertEqual(got.map { Array(buffer: $0) }, expected.map { Array(buffer: $0) })
    }

    func testBackendScannerRefusesWhatIsNotAReply() {
        var scanner = CQLBackendScanner(maxFrameBytes: 1024)
        func scan(_ bytes: [UInt8]) -> BackendFrameScan { bytes.withUnsafeBytes { scanner.scanFrame($0) } }
        let reply = Array(buffer: CQLFrameBuilder.resultVoid(version: .v4, stream: 3))
        XCTAssertEqual(scan(reply), .complete(length: reply.count))
        XCTAssertEqual(scan(Array(reply.prefix(8))), .needMore)
        XCTAssertEqual(scan(Array(reply.dropLast())), .needMore)
        let request = Array(buffer: CQLFrameBuilder.query(version: .v4, stream: 1, query: "x"))
        guard case .malformed = scan(request) else { return XCTFail("a request frame") }
        guard case .malformed = scan([0x84, 0, 0, 1, 0x55, 0, 0, 0, 0]) else { return XCTFail("unknown opcode") }
        guard case .malformed = scan([0x84, 0, 0, 1, 0x08, 0, 0, 0x10, 0]) else { return XCTFail("over the limit") }
        guard case .malformed = scan(Array("\u{07}garbage that is not a CQL frame".utf8)) else { return XCTFail("garbage") }
    }

    /// A handshake written step by step: READY skips the credentials, a challenge is answered and
    /// awaited again, DSE gets its mechanism name first.
    func testStepByStepHandshakeVerdicts() {
        let steps = [BackendHandshakeStep(name: "STARTUP", request: [1], refusal: .failsConnect),
                     BackendHandshakeStep(name: "AUTH_RESPONSE", request: [2], refusal: .failsConnect),
                     BackendHandshakeStep(name: "USE", request: [3], refusal: .answersRequests)]
        var m = BackendConnectionStateMachine<Int>(handshake: steps, usesTLS: false, pipelinesHandshake: false)
        _ = m.requestSubmitted(backoff: nil)
        XCTAssertEqual(m.connectSucceeded(1), .sendHandshake(1))
        XCTAssertEqual(m.handshakeReplied(.acceptedSkippingNext), .sendHandshakeRequest(1, [3]))
        XCTAssertEqual(m.handshakeReplied(.accepted), .established(1))

        m = BackendConnectionStateMachine<Int>(handshake: steps, usesTLS: false, pipelinesHandshake: false)
        _ = m.requestSubmitted(backoff: nil)
        _ = m.connectSucceeded(2)
        XCTAssertEqual(m.handshakeReplied(.acceptedSendingNext([9])), .sendHandshakeRequest(2, [9]))
        XCTAssertEqual(m.handshakeReplied(.respond([2])), .sendHandshakeRequest(2, [2]))
        XCTAssertEqual(m.state, .handshaking(2, step: 1))
        XCTAssertEqual(m.handshakeReplied(.accepted), .sendHandshakeRequest(2, [3]))
        XCTAssertEqual(m.handshakeReplied(.refused("INVALID: Keyspace 'x' does not exist")),
                       .answerWithRefusal(close: 2, message: "INVALID: Keyspace 'x' does not exist"))
    }
}
