import NIOCore
import NIOEmbedded
import XCTest
@testable import SluiceHost

/// How a shared Redis backend connection pairs replies with requests (in order), drops unsolicited
/// pushes, notices replies out of step, and settles what is in flight, driven without sockets.
final class RedisReplyPairingTests: XCTestCase {
    private let allocator = ByteBufferAllocator()
    private let loop = EmbeddedEventLoop()

    private final class Outcomes: ResponseReceiver {
        var received: [ChainOutcome] = []
        func receive(_ outcome: ChainOutcome) { received.append(outcome) }

        var replies: [[String]] {
            received.compactMap {
                guard case .responses(let batch) = $0 else { return nil }
                return batch.messages.map { String(buffer: $0) }
            }
        }
    }

    private func requests(_ commands: [String]...) -> Batch {
        Batch(kind: Batch.requests, protocolID: Batch.redis,
              messages: commands.map { RESPEncoding.command($0.map { Array($0.utf8) }, allocator: allocator) })
    }

    private func shared() -> RedisReplyPairing {
        RedisReplyPairing(owner: nil, deliversPushes: false, resp3: false, eventLoop: loop, allocator: allocator)
    }

    /// Sends `batch` (written at once) and returns who receives its replies.
    private func send(_ batch: Batch, on pairing: RedisReplyPairing, sentAtCheck: Int? = nil) -> Outcomes {
        let receiver = Outcomes()
        pairing.add(pairing.entry(for: batch, receiver: receiver, route: nil, sentAtCheck: sentAtCheck))
        pairing.requestsWritten()
        return receiver
    }

    /// Hands `text` to the pairing as one backend read, frame by frame, as the channel handler does.
    private func read(_ text: String, into pairing: RedisReplyPairing) -> [BackendReplyOutcome] {
        var buffer = allocator.buffer(string: text)
        var scanner = RESPFrameScanner(maxFrameBytes: 1 << 20)
        pairing.beginRead(buffer)
        defer { pairing.endRead() }
        var outcomes: [BackendReplyOutcome] = []
        while buffer.readableBytes > 0,
              case .complete(let length) = buffer.withUnsafeReadableBytes({ scanner.scanFrame($0) }) {
            let start = buffer.readerIndex
            outcomes.append(pairing.frameArrived(buffer.readSlice(length: length)!, start: start))
        }
        XCTAssertEqual(buffer.readableBytes, 0, "whole frames only")
        return outcomes
    }

    func testRepliesPairInOrderAndABatchCompletesWithItsLastReply() {
        let pairing = shared()
        let first = send(requests(["GET", "a"], ["INCR", "n"]), on: pairing)
        let second = send(requests(["PING"]), on: pairing)
        XCTAssertEqual(pairing.count, 2)
        XCTAssertEqual(read("$1\r\nx\r\n", into: pairing), [.accepted])
        XCTAssertTrue(first.received.isEmpty, "half a batch is not answered")
        XCTAssertEqual(read(":5\r\n+PONG\r\n", into: pairing), [.accepted, .accepted])
        XCTAssertEqual(first.replies, [["$1\r\nx\r\n", ":5\r\n"]])
        XCTAssertEqual(second.replies, [["+PONG\r\n"]])
        XCTAssertEqual(pairing.count, 0)
        XCTAssertNil(pairing.oldestSentAtCheck)
    }

    func testABatchAnsweredInOneReadIsOneSliceOfIt() {
        let pairing = shared()
        let receiver = send(requests(["GET", "a"], ["GET", "b"]), on: pairing)
        _ = read("$1\r\nx\r\n$-1\r\n", into: pairing)
        guard case .responses(let batch) = receiver.received.first else { return XCTFail("no replies") }
        XCTAssertEqual(batch.contiguous.map { String(buffer: $0) }, "$1\r\nx\r\n$-1\r\n")
    }

    func testAPushOnASharedConnectionIsNotAReply() {
        let pairing = shared()
        let receiver = send(requests(["GET", "a"]), on: pairing)
        XCTAssertEqual(read(">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\na\r\n$1\r\nx\r\n", into: pairing),
                       [.accepted, .accepted])
        XCTAssertEqual(receiver.replies, [["$1\r\nx\r\n"]])
    }

    func testAReplyWithNoRequestWaitingIsOutOfStep() {
        let pairing = shared()
        XCTAssertEqual(read("+OK\r\n", into: pairing),
                       [.outOfStep("a reply arrived with no request waiting for one")])
    }

    func testAReplyOfTheWrongKindIsOutOfStep() {
        let pairing = shared()
        _ = send(requests(["GET", "a"], ["INCR", "n"]), on: pairing)
        XCTAssertEqual(read("$1\r\nx\r\n$1\r\ny\r\n", into: pairing),
                       [.accepted, .outOfStep("a reply starting with '$' arrived for a request answered with an integer")])
        // An error may answer anything.
        let other = shared()
        let receiver = send(requests(["GET", "a"]), on: other)
        XCTAssertEqual(read("-ERR x\r\n", into: other), [.accepted])
        XCTAssertEqual(receiver.replies, [["-ERR x\r\n"]])
    }

    func testSettleAllAnswersEveryBatchInALaterTurn() {
        let pairing = shared()
        let first = send(requests(["GET", "a"], ["GET", "b"]), on: pairing, sentAtCheck: 3)
        let second = send(requests(["GET", "c"]), on: pairing, sentAtCheck: 4)
        XCTAssertEqual(pairing.oldestSentAtCheck, 3)
        XCTAssertFalse(pairing.oldestMayWaitIndefinitely())
        var counts: [Int] = []
        pairing.settleAll(on: loop) { count in
            counts.append(count)
            return .failed("gone")
        }
        XCTAssertEqual(pairing.count, 0)
        XCTAssertTrue(first.received.isEmpty, "never from inside the caller")
        loop.run()
        XCTAssertEqual(counts, [2, 1])
        for receiver in [first, second] {
            guard case .failed(let message) = receiver.received.first else { return XCTFail("not failed") }
            XCTAssertEqual(message, "gone")
        }
    }

    /// A dedicated connection's pairing, its client's pushes, and whether the client was closed.
    private final class Client {
        let session: ChainSession
        var pushes: [String] = []
        var lost: [String] = []
        init(loop: EventLoop) {
            session = ChainSession(eventLoop: loop, allocator: ByteBufferAllocator(),
                                   plan: RuntimePlan(chains: [ChainPlan(name: "main", steps: [])], sinks: []),
                                   clientAddress: "test", mainChain: 0)
            session.onPush = { [unowned self] bytes, _ in pushes.append(String(buffer: bytes)) }
            session.onBackendLost = { [unowned self] reason in lost.append(reason) }
        }
    }

    private func dedicated(_ client: Client, resp3: Bool = false) -> RedisReplyPairing {
        RedisReplyPairing(owner: client.session, deliversPushes: true, resp3: resp3, eventLoop: loop, allocator: allocator)
    }

    private let unsubscribed = "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"  // RESP2, no channel left
    private let helloMap = "%1\r\n$5\r\nproto\r\n:3\r\n"  // HELLO 3's reply (shortened), in RESP3

    /// tee's target (and any client that pipelines): UNSUBSCRIBE's confirmation, written in RESP2,
    /// was still on its way when HELLO 3 went out; it is a confirmation, not HELLO's reply.
    func testAConfirmationStillOnItsWayWhenHello3IsSentIsNoReplyToIt() {
        let client = Client(loop: loop)
        let pairing = dedicated(client)
        let unsubscribe = send(requests(["UNSUBSCRIBE"]), on: pairing)
        loop.run()
        XCTAssertEqual(unsubscribe.replies, [[""]], "answered by its confirmation, out of band")
        let hello = send(requests(["HELLO", "3"]), on: pairing)
        XCTAssertEqual(read(unsubscribed + helloMap, into: pairing), [.accepted, .accepted])
        XCTAssertEqual(client.pushes, [unsubscribed])
        XCTAssertEqual(hello.replies, [[helloMap]])
        XCTAssertEqual(pairing.count, 0)
    }

    func testUnsubscribeAndHello3InOneBatch() {
        let client = Client(loop: loop)
        let pairing = dedicated(client)
        let receiver = send(requests(["UNSUBSCRIBE"], ["HELLO", "3"]), on: pairing)
        XCTAssertEqual(read(unsubscribed + helloMap, into: pairing), [.accepted, .accepted])
        loop.run()
        XCTAssertEqual(client.pushes, [unsubscribed])
        XCTAssertEqual(receiver.replies, [["", helloMap]])
    }

    /// A HELLO 3 the backend refuses leaves the connection in RESP2: a subscribed client's messages
    /// still come as `*3` arrays, and are no replies.
    func testARefusedHello3LeavesTheConnectionInRESP2() {
        let client = Client(loop: loop)
        let pairing = dedicated(client)
        _ = send(requests(["SUBSCRIBE", "ch"]), on: pairing)
        let subscribed = "*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
        XCTAssertEqual(read(subscribed, into: pairing), [.accepted])
        let hello = send(requests(["HELLO", "3"]), on: pairing)
        let message = "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n"
        XCTAssertEqual(read("-NOPROTO unsupported protocol version\r\n" + message, into: pairing), [.accepted, .accepted])
        loop.run()
        XCTAssertEqual(hello.replies, [["-NOPROTO unsupported protocol version\r\n"]])
        XCTAssertEqual(client.pushes, [subscribed, message])
    }

    /// HELLO 2 on a subscribed RESP3 connection: before its reply, an array is a reply (here an
    /// LRANGE's, which looks like a message); after it, a message comes as a RESP2 array.
    func testHello2SwitchesWhenAnswered() {
        let client = Client(loop: loop)
        let pairing = dedicated(client, resp3: true)
        _ = send(requests(["SUBSCRIBE", "ch"]), on: pairing)
        let receiver = send(requests(["LRANGE", "l", "0", "-1"], ["HELLO", "2"]), on: pairing)
        let subscribed = ">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
        let list = "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\ny\r\n"
        let helloReply = "*2\r\n$5\r\nproto\r\n:2\r\n"
        let message = "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n"
        XCTAssertEqual(read(subscribed + list + helloReply + message, into: pairing),
                       [.accepted, .accepted, .accepted, .accepted])
        loop.run()
        XCTAssertEqual(receiver.replies, [[list, helloReply]])
        XCTAssertEqual(client.pushes, [subscribed, message])
    }

    func testRefusedHandshakeStepsAnswerInTheBackendsWords() {
        XCTAssertNil(RedisBackend.handshakeRefusal(allocator.buffer(string: "+OK\r\n")))
        XCTAssertEqual(RedisBackend.handshakeRefusal(allocator.buffer(string: "-WRONGPASS invalid username-password pair\r\n")),
                       "WRONGPASS invalid username-password pair")
        let errors = RedisBackend.errorReplies("NOAUTH x", count: 2, allocator: allocator)
        XCTAssertEqual(errors.messages.map { String(buffer: $0) }, ["-NOAUTH x\r\n", "-NOAUTH x\r\n"])
    }

    func testTheHandshakeOfARESP3ConnectionWithCredentials() {
        let plan = SinkPlan(name: "s", host: "127.0.0.1", port: 1, connectTimeoutMilliseconds: 100,
                            replyTimeoutMilliseconds: 0, maxFrameBytes: 1 << 20,
                            redis: RedisSinkSettings(authCommand: Array("*2\r\n$4\r\nAUTH\r\n$1\r\np\r\n".utf8)), tls: nil)
        XCTAssertEqual(RedisBackend.handshake(plan, resp3: true).map(\.name), ["AUTH", "HELLO 3"])
        XCTAssertEqual(RedisBackend.handshake(plan, resp3: true).map(\.refusal), [.failsConnect, .answersRequests])
        XCTAssertEqual(RedisBackend.handshake(plan, resp3: false).map(\.name), ["AUTH"])
    }
}
