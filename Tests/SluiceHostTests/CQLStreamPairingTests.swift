import NIOCore
import NIOEmbedded
import XCTest
@testable import SluiceHost

/// `CQLStreamPairing` as a plain value (an embedded event loop, frames made by `CQLFrameBuilder`):
/// what it does beyond pairing replies with requests.
final class CQLStreamPairingTests: XCTestCase {
    private final class Collect: ResponseReceiver {
        var replies: [ByteBuffer] = []
        func receive(_ outcome: ChainOutcome) {
            if case .responses(let batch) = outcome { replies.append(contentsOf: batch.messages) }
        }
    }

    private func pairing(keyspace: String? = nil) -> CQLStreamPairing {
        CQLStreamPairing(keyspace: keyspace, registry: CQLPreparedRegistry(), eventLoop: EmbeddedEventLoop(),
                         allocator: ByteBufferAllocator())
    }

    /// Sends one QUERY through `pairing`; returns Sluice's stream id on the wire.
    private func send(_ text: String, on pairing: CQLStreamPairing, to receiver: ResponseReceiver,
                      stream: Int16 = 7) -> Int16 {
        let frame = CQLFrameBuilder.query(version: .v4, stream: stream, query: text)
        let batch = Batch(kind: Batch.requests, protocolID: Batch.cql, messages: [frame])
        let entry = pairing.entry(for: batch, receiver: receiver, route: nil, sentAtCheck: nil)
        pairing.add(entry)
        return CQLWireFrame(batch.messages[0])!.stream
    }

    private func setKeyspace(_ name: String, stream: Int16) -> ByteBuffer {
        CQLFrameBuilder.frame(version: .v4, isResponse: true, stream: stream, opcode: .result) {
            $0.writeInteger(Int32(CQLResultKind.setKeyspace.rawValue))
            $0.writeCQLString(name)
        }
    }

    /// A SET_KEYSPACE naming the connection's own keyspace (a client's USE of it) changes nothing;
    /// one naming another keyspace (an EXECUTE of a USE prepared elsewhere) reaches its client and
    /// then reports the connection as switched, so it is shared no longer.
    func testASwitchedKeyspaceIsReportedAfterTheReplyIsDelivered() {
        let pairing = pairing(keyspace: "ks")
        let client = Collect()
        var switched: [Int] = []
        pairing.keyspaceSwitched = { switched.append(client.replies.count) }
        let use = send("USE ks", on: pairing, to: client)
        XCTAssertEqual(pairing.frameArrived(setKeyspace("ks", stream: use), start: 0), .accepted)
        XCTAssertEqual(switched, [], "the connection's own keyspace")
        let execute = send("(an EXECUTE)", on: pairing, to: client)
        XCTAssertEqual(pairing.frameArrived(setKeyspace("other", stream: execute), start: 0), .accepted)
        XCTAssertEqual(switched, [2], "reported once, after its reply reached the client")
        XCTAssertEqual(client.replies.compactMap { CQLWireFrame($0)?.stream }, [7, 7])

        let noKeyspace = self.pairing()
        var reported = false
        noKeyspace.keyspaceSwitched = { reported = true }
        let stream = send("(an EXECUTE)", on: noKeyspace, to: Collect())
        XCTAssertEqual(noKeyspace.frameArrived(setKeyspace("ks", stream: stream), start: 0), .accepted)
        XCTAssertTrue(reported, "a connection without a keyspace switched to one")
    }

    private final class Receiver: ResponseReceiver {
        func receive(_ outcome: ChainOutcome) {}
    }

    private func void(stream: Int16) -> ByteBuffer {
        CQLFrameBuilder.resultVoid(version: .v4, stream: stream)
    }

    /// Requests answered are let go at once (their receivers, and the request bytes that pin the
    /// client's read buffer), with or without a reply timeout, also while one slow request is
    /// outstanding; the reply timeout still sees the oldest request in flight.
    func testAnsweredRequestsAreNotKept() {
        for timeout in [false, true] {
            let pairing = pairing()
            var check = 0
            func send(_ receiver: ResponseReceiver) -> Int16 {
                let frame = CQLFrameBuilder.query(version: .v4, stream: 1, query: "SELECT 1")
                let batch = Batch(kind: Batch.requests, protocolID: Batch.cql, messages: [frame])
                pairing.add(pairing.entry(for: batch, receiver: receiver, route: nil, sentAtCheck: timeout ? check : nil))
                return CQLWireFrame(batch.messages[0])!.stream
            }
            let slow = send(Receiver())
            var answered: [() -> AnyObject?] = []
            for i in 0..<2000 {
                if i % 100 == 0 { check += 1 }  // the reply-timeout clock ticks meanwhile
                let receiver = Receiver()
                answered.append { [weak receiver] in receiver }
                XCTAssertEqual(pairing.frameArrived(void(stream: send(receiver)), start: 0), .accepted)
            }
            XCTAssertEqual(answered.filter { $0() != nil }.count, 0, "timeout \(timeout): answered requests still held")
            XCTAssertEqual(pairing.count, 1)
            XCTAssertEqual(pairing.oldestSentAtCheck, timeout ? 0 : nil, "the slow request is the oldest")
            XCTAssertEqual(pairing.frameArrived(void(stream: slow), start: 0), .accepted)
            XCTAssertNil(pairing.oldestSentAtCheck)
        }
    }

    /// The reply timeout per request: while the backend answers other streams, the late request
    /// alone gets SERVER_ERROR on its client's stream; its stream id stays reserved until the late
    /// reply, which is dropped, and then the id is handed out again. A connection on which nothing
    /// was answered since the oldest overdue request was sent is left to close (nil).
    func testALateRequestFailsAloneAndKeepsItsStreamIDUntilItsReplyArrives() {
        let loop = EmbeddedEventLoop()
        let pairing = CQLStreamPairing(keyspace: nil, registry: CQLPreparedRegistry(), eventLoop: loop,
                                       allocator: ByteBufferAllocator())
        var check = 0
        func send(_ receiver: ResponseReceiver, stream: Int16) -> Int16 {
            let frame = CQLFrameBuilder.query(version: .v4, stream: stream, query: "SELECT 1")
            let batch = Batch(kind: Batch.requests, protocolID: Batch.cql, messages: [frame])
            pairing.add(pairing.entry(for: batch, receiver: receiver, route: nil, sentAtCheck: check))
            return CQLWireFrame(batch.messages[0])!.stream
        }
        let slowClient = Collect(), otherClient = Collect()
        let slow = send(slowClient, stream: 5)
        XCTAssertNil(pairing.failOverdue(sentAtOrBefore: 0, message: "late"), "nothing answered since: the connection closes")
        check = 1
        let other = send(otherClient, stream: 6)
        XCTAssertEqual(pairing.frameArrived(void(stream: other), start: 0), .accepted)
        let pending = send(otherClient, stream: 7)
        check = 6
        XCTAssertEqual(pairing.failOverdue(sentAtOrBefore: 0, message: "sluice: no reply to this request within 1000 ms"), 1)
        loop.run()
        XCTAssertEqual(slowClient.replies.count, 1)
        let error = CQLWireFrame(slowClient.replies[0])
        XCTAssertEqual(error?.stream, 5)
        XCTAssertEqual(error?.errorCode, .serverError)
        XCTAssertEqual(pairing.count, 1, "the other client's request is still in flight")
        XCTAssertEqual(pairing.overdue, 1)
        XCTAssertEqual(pairing.oldestSentAtCheck, 1)
        // A new request never gets the late request's stream id.
        let next = send(otherClient, stream: 8)
        XCTAssertNotEqual(next, slow)
        XCTAssertEqual(pairing.frameArrived(void(stream: slow), start: 0), .accepted, "the late reply")
        loop.run()
        XCTAssertEqual(slowClient.replies.count, 1, "the late reply is dropped")
        XCTAssertEqual(pairing.overdue, 0)
        XCTAssertEqual(send(otherClient, stream: 9), slow, "its id is free again (last freed, first reused)")
        XCTAssertEqual(pairing.frameArrived(void(stream: pending), start: 0), .accepted)
        XCTAssertEqual(otherClient.replies.compactMap { CQLWireFrame($0)?.stream }, [6, 7])
    }

    /// Frames of one batch (a transform's) are sent one by one and their replies joined in order;
    /// a part whose reply holds no frame is answered with an ERROR on its own stream (it was an
    /// empty buffer, which is no CQL frame at all).
    func testJoinedRepliesStandInAnErrorForAMissingFrame() {
        let joined = Collect()
        let replies = CQLJoinedReplies(count: 2, receiver: joined, allocator: ByteBufferAllocator())
        let second = replies.part(1, stream: 9, version: .v5)
        replies.part(0, stream: 8, version: .v4).receive(.responses(Batch(
            kind: Batch.responses, protocolID: Batch.cql, messages: [CQLFrameBuilder.resultVoid(version: .v4, stream: 8)])))
        XCTAssertTrue(joined.replies.isEmpty, "one part still missing")
        second.receive(.responses(Batch(kind: Batch.responses, protocolID: Batch.cql)))
        XCTAssertEqual(joined.replies.count, 2)
        XCTAssertEqual(CQLWireFrame(joined.replies[0])?.resultKind, .void)
        let error = CQLWireFrame(joined.replies[1])
        XCTAssertEqual(error?.opcodeByte, CQLOpcode.error.rawValue)
        XCTAssertEqual(error?.stream, 9)
        XCTAssertEqual(error?.version, .v5)
        XCTAssertEqual(error?.errorCode, .serverError)
    }

    /// A shared connection's usual path: the request goes straight into the connection's write,
    /// copied once with Sluice's stream id (and no compression flag), the batch left as the
    /// client sent it; the reply gets the client's stream back. A request over `copyLimit` is not
    /// appended: the batch is rewritten, as on the other paths.
    func testRequestsAppendedToTheWriteCarrySluicesStreamID() {
        let pairing = pairing()
        let client = Collect()
        var output = ByteBuffer(string: "earlier")
        var sent: [Int16] = []
        for clientStream: Int16 in [7, 7, 300] {
            let frame = CQLFrameBuilder.frame(version: .v4, isResponse: false, flags: [.compression, .tracing],
                                              stream: clientStream, opcode: .query) {
                $0.writeCQLLongString("SELECT * FROM ks.t")
                $0.writeInteger(UInt16(1))
                $0.writeInteger(UInt8(0))
            }
            let batch = Batch(kind: Batch.requests, protocolID: Batch.cql, messages: [frame])
            let start = output.writerIndex
            let (entry, appended) = pairing.entry(for: batch, receiver: client, route: nil, sentAtCheck: nil,
                                                  appendingTo: &output)
            pairing.add(entry)
            XCTAssertTrue(appended)
            XCTAssertEqual(batch.messages, [frame], "the client's batch is left as it was")
            let wire = CQLWireFrame(output.getSlice(at: start, length: output.writerIndex - start)!)!
            XCTAssertEqual(wire.flags, [.tracing])
            XCTAssertEqual(wire.bodyLength, frame.readableBytes - CQLFrameHeader.size)
            XCTAssertEqual(wire.body, CQLWireFrame(frame)!.body)
            XCTAssertFalse(sent.contains(wire.stream), "a stream id of its own")
            sent.append(wire.stream)
        }
        XCTAssertEqual(output.getString(at: 0, length: 7), "earlier")
        for stream in sent.reversed() { XCTAssertEqual(pairing.frameArrived(void(stream: stream), start: 0), .accepted) }
        XCTAssertEqual(client.replies.compactMap { CQLWireFrame($0)?.stream }, [300, 7, 7])

        let large = CQLFrameBuilder.query(version: .v4, stream: 5, query: String(repeating: "x", count: CQLStreamPairing.copyLimit))
        let batch = Batch(kind: Batch.requests, protocolID: Batch.cql, messages: [large])
        let before = output
        let (entry, appended) = pairing.entry(for: batch, receiver: client, route: nil, sentAtCheck: nil, appendingTo: &output)
        pairing.add(entry)
        XCTAssertFalse(appended)
        XCTAssertEqual(output, before)
        XCTAssertEqual(batch.count, 2, "a new header in front of the untouched body")
        XCTAssertEqual(pairing.frameArrived(void(stream: CQLWireFrame(batch.messages[0])!.stream), start: 0), .accepted)
        XCTAssertEqual(client.replies.last.flatMap { CQLWireFrame($0)?.stream }, 5)
    }

    /// The RESULT kind is read in place when nothing comes before the message, and through the
    /// message otherwise: a SET_KEYSPACE behind warnings or a tracing id is seen as well.
    func testResultKindsBehindWarningsAndTracingAreSeen() {
        for flags: CQLFrameFlags in [[], [.warning], [.tracing], [.tracing, .warning]] {
            let pairing = pairing(keyspace: "ks")
            var switched = false
            pairing.keyspaceSwitched = { switched = true }
            let stream = send("(an EXECUTE)", on: pairing, to: Collect())
            let reply = CQLFrameBuilder.frame(version: .v4, isResponse: true, flags: flags, stream: stream, opcode: .result) {
                if flags.contains(.tracing) { $0.writeBytes([UInt8](repeating: 0xAB, count: 16)) }
                if flags.contains(.warning) { $0.writeInteger(UInt16(1)); $0.writeCQLString("careful") }
                $0.writeInteger(Int32(CQLResultKind.setKeyspace.rawValue))
                $0.writeCQLString("other")
            }
            XCTAssertEqual(pairing.frameArrived(reply, start: 0), .accepted)
            XCTAssertTrue(switched, "\(flags)")
        }
    }
}
