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
                            authCommand: Array("*2\r\n$4\r\nAUTH\r\n$1\r\np\r\n".utf8), tls: nil)
        XCTAssertEqual(RedisBackend.handshake(plan, resp3: true).map(\.name), ["AUTH", "HELLO 3"])
        XCTAssertEqual(RedisBackend.handshake(plan, resp3: true).map(\.refusal), [.failsConnect, .answersRequests])
        XCTAssertEqual(RedisBackend.handshake(plan, resp3: false).map(\.name), ["AUTH"])
    }
}
