import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOPosix
import XCTest
@testable import SluiceHost

/// A response slot whose replies go one by one (`ResponseSlot.repliesOneByOne`, a CQL read of
/// several frames run as one batch): as plain values with an owner that records what it is told,
/// and against the real CQL test backend through `CQLSinkRoute` (a slow query among fast ones).
final class ResponseSlotOneByOneTests: XCTestCase {
    /// Records what a slot reports; error replies are "E<key>:<message>".
    private final class Owner: ResponseSlotOwner {
        var replied: [String] = []
        var completed: [Batch] = []
        /// The number of requests still unanswered each time a reply was reported.
        var unanswered: [Int] = []

        func slotCompleted(_ slot: ResponseSlot) { completed.append(slot.result!) }
        func slotReplied(_ slot: ResponseSlot, _ replies: Batch) {
            replied.append(contentsOf: replies.messages.map { String(buffer: $0) })
            unanswered.append(slot.unansweredRequests)
        }
        func errorReplies(_ message: String, count: Int, replyKeys: ReplyKeys, first: Int) -> Batch {
            Batch(kind: Batch.responses, protocolID: Batch.cql,
                  messages: (first..<first + count).map { ByteBuffer(string: "E\(replyKeys[$0]):\(message)") })
        }
    }

    private func reply(_ text: String) -> ChainOutcome {
        .responses(Batch(kind: Batch.responses, protocolID: Batch.cql, messages: [ByteBuffer(string: text)]))
    }

    private func slot(_ owner: Owner, requests: Int, oneByOne: Bool = true) -> ResponseSlot {
        let slot = ResponseSlot(owner: owner, requestCount: requests, replyKey: 10)
        for i in 1..<max(requests, 1) { slot.replyKeys.append(UInt64(10 + i)) }
        if oneByOne { slot.takeRepliesOneByOne() }
        return slot
    }

    func testEachReplyIsReportedAsItComesAndTheLastEndsTheSlot() throws {
        let owner = Owner()
        let slot = slot(owner, requests: 3)
        let receivers = try (0..<3).map { try XCTUnwrap(slot.replyReceiver(forRequest: $0)) }
        XCTAssertNil(slot.replyReceiver(forRequest: 3), "beyond the batch")
        receivers[2].receive(reply("r2"))
        receivers[0].receive(.failed("down"))  // request 0's error, with its own key
        receivers[0].receive(reply("again"))  // a second answer is ignored
        receivers[1].receive(reply("r1"))
        XCTAssertEqual(owner.replied, ["r2", "E10:down", "r1"])
        XCTAssertEqual(owner.unanswered, [2, 1, 0])
        XCTAssertTrue(owner.completed.isEmpty, "written one by one, never as a whole")
        XCTAssertNil(slot.result)
    }

    func testAWholeOutcomeIsWrittenWholeWithEachRequestsErrorReply() {
        // Nothing came one by one (a transform failed the batch): one error per request, each
        // with its own key (CQL: its own stream and version).
        let owner = Owner()
        let slot = slot(owner, requests: 3)
        slot.receive(.failed("down"))
        XCTAssertEqual(owner.completed.map { $0.messages.map { String(buffer: $0) } }, [["E10:down", "E11:down", "E12:down"]])
        XCTAssertTrue(owner.replied.isEmpty)
    }

    func testAWholeOutcomeAfterSomeRepliesAnswersOnlyTheRest() throws {
        let owner = Owner()
        let slot = slot(owner, requests: 3)
        try XCTUnwrap(slot.replyReceiver(forRequest: 1)).receive(reply("r1"))
        slot.receive(.failed("gone"))
        XCTAssertEqual(owner.replied, ["r1", "E10:gone", "E12:gone"])
        XCTAssertEqual(owner.unanswered.last, 0)
        XCTAssertTrue(owner.completed.isEmpty)
    }

    func testASlotThatTakesRepliesTogetherHandsOutNoRequestReceiver() {
        let owner = Owner()
        XCTAssertNil(slot(owner, requests: 3, oneByOne: false).replyReceiver(forRequest: 0))
        let reused = slot(owner, requests: 2)
        reused.reuse(requestCount: 2)
        XCTAssertNil(reused.replyReceiver(forRequest: 0), "reuse starts over, together")
    }

    func testCQLErrorRepliesCarryEachFramesStreamAndVersion() throws {
        let requests = Batch(kind: Batch.requests, protocolID: Batch.cql, messages: [
            CQLFrameBuilder.query(version: .v4, stream: -7, query: "SELECT 1"),
            CQLFrameBuilder.query(version: .v5, stream: 32000, query: "SELECT 2"),
            CQLFrameBuilder.query(version: .v4, stream: 3, query: "SELECT 3"),
        ])
        var keys = ReplyKeys()
        CQLSource.replyKeys(of: requests, into: &keys)
        let replies = CQLSource.errorReplies("sluice: backend down", count: 3, replyKeys: keys, first: 0,
                                             allocator: ByteBufferAllocator())
        XCTAssertEqual(replies.count, 3)
        let headers = replies.messages.compactMap { CQLWireFrame($0) }.map { ($0.rawVersion, $0.stream, $0.opcodeByte) }
        XCTAssertEqual(headers.map { $0.0 }, [4, 5, 4])
        XCTAssertEqual(headers.map { $0.1 }, [-7, 32000, 3])
        XCTAssertEqual(headers.map { $0.2 }, Array(repeating: CQLOpcode.error.rawValue, count: 3))
        // One request's error alone (a reply that failed on its own).
        let one = CQLSource.errorReplies("x", count: 1, replyKeys: keys, first: 1, allocator: ByteBufferAllocator())
        XCTAssertEqual(CQLWireFrame(one.messages[0])?.stream, 32000)
    }

    /// A transform answered request 1 itself (call_answer) and passed the call: its answer goes to
    /// the slot at once (on the next turn, not inside the hook), the two passed on one by one.
    func testLocalAnswersGoAtOnceAndTheRequestsPassedOnOneByOne() throws {
        let owner = Owner()
        let slot = slot(owner, requests: 3)
        var answers = LocalAnswers()
        answers.set(ByteBuffer(string: "local1"), at: 1)
        let requests = Batch(kind: Batch.requests, protocolID: Batch.cql,
                             messages: (0..<3).map { CQLFrameBuilder.query(version: .v4, stream: Int16(10 + $0), query: "SELECT 1") })
        let loop = EmbeddedEventLoop()
        let merger = LocalAnswersMerger(answers: answers, requests: requests, receiver: slot, allocator: ByteBufferAllocator())
        merger.deliverLocalAnswers(on: loop)
        XCTAssertEqual(owner.replied, [], "not inside the hook")
        loop.run()
        XCTAssertEqual(owner.replied, ["local1"])
        XCTAssertNil(merger.replyReceiver(forRequest: 2), "two requests were passed on")
        try XCTUnwrap(merger.replyReceiver(forRequest: 1)).receive(reply("r2"))  // passed on as index 1: request 2
        try XCTUnwrap(merger.replyReceiver(forRequest: 0)).receive(reply("r0"))
        XCTAssertEqual(owner.replied, ["local1", "r2", "r0"])
        XCTAssertEqual(owner.unanswered, [2, 1, 0])
        XCTAssertTrue(owner.completed.isEmpty)
    }

    /// The requests passed on came back together (a later transform's on_responses): each still
    /// reaches its own request; a failure becomes each request's error.
    func testRequestsPassedOnThatComeBackTogetherStillGoOneByOne() throws {
        let owner = Owner()
        let slot = slot(owner, requests: 3)
        var answers = LocalAnswers()
        answers.set(ByteBuffer(string: "local0"), at: 0)
        let requests = Batch(kind: Batch.requests, protocolID: Batch.cql,
                             messages: (0..<3).map { CQLFrameBuilder.query(version: .v4, stream: Int16(10 + $0), query: "SELECT 1") })
        let loop = EmbeddedEventLoop()
        let merger = LocalAnswersMerger(answers: answers, requests: requests, receiver: slot, allocator: ByteBufferAllocator())
        merger.deliverLocalAnswers(on: loop)
        merger.receive(.responses(Batch(kind: Batch.responses, protocolID: Batch.cql,
                                        messages: [ByteBuffer(string: "r1"), ByteBuffer(string: "r2")])))
        loop.run()
        XCTAssertEqual(owner.replied, ["r1", "r2", "local0"])
        XCTAssertEqual(owner.unanswered.last, 0)
    }

    func testLocalAnswersAreMergedForAReceiverThatTakesRepliesTogether() {
        let owner = Owner()
        let slot = slot(owner, requests: 3, oneByOne: false)
        var answers = LocalAnswers()
        answers.set(ByteBuffer(string: "local1"), at: 1)
        let requests = Batch(kind: Batch.requests, protocolID: Batch.cql,
                             messages: (0..<3).map { CQLFrameBuilder.query(version: .v4, stream: Int16(10 + $0), query: "SELECT 1") })
        let loop = EmbeddedEventLoop()
        let merger = LocalAnswersMerger(answers: answers, requests: requests, receiver: slot, allocator: ByteBufferAllocator())
        merger.deliverLocalAnswers(on: loop)
        loop.run()
        XCTAssertNil(merger.replyReceiver(forRequest: 0))
        merger.receive(.responses(Batch(kind: Batch.responses, protocolID: Batch.cql,
                                        messages: [ByteBuffer(string: "r0"), ByteBuffer(string: "r2")])))
        XCTAssertEqual(owner.completed.map { $0.messages.map { String(buffer: $0) } }, [["r0", "local1", "r2"]])
        XCTAssertTrue(owner.replied.isEmpty)
    }

    func testFlowControlCountsRequestsAnsweredOneByOne() {
        var flow = ClientFlowControl(limits: ClientLimits())
        _ = flow.batchStarted(requests: 3, requestBytes: 300)
        _ = flow.requestAnswered(replyBytes: 50)
        XCTAssertEqual(flow.requestsInFlight, 2)
        XCTAssertEqual(flow.batchesInFlight, 1)
        XCTAssertEqual(flow.requestBytesInFlight, 300)
        _ = flow.requestAnswered(replyBytes: 50)
        _ = flow.requestAnswered(replyBytes: 50)
        _ = flow.batchWritten(requests: 0, requestBytes: 300, replyBytes: 0)
        XCTAssertEqual(flow.requestsInFlight, 0)
        XCTAssertEqual(flow.batchesInFlight, 0)
        XCTAssertEqual(flow.requestBytesInFlight, 0)
        XCTAssertEqual(flow.replyBytesPerRequest, 50)
    }

    // MARK: against the CQL test backend

    private var group: MultiThreadedEventLoopGroup!
    private let backends = CQLTestBackends()

    override func tearDown() {
        backends.stopAll()
        try? group?.syncShutdownGracefully()
    }

    /// Replies by stream, fulfilled as each is reported; the slot completing whole fulfils them all.
    private final class StreamOwner: ResponseSlotOwner {
        let promises: [Int16: EventLoopPromise<ByteBuffer>]
        var wholeBatches = 0
        init(_ promises: [Int16: EventLoopPromise<ByteBuffer>]) { self.promises = promises }
        func slotCompleted(_ slot: ResponseSlot) {
            wholeBatches += 1
            for frame in slot.result!.messages { deliver(frame) }
        }
        func slotReplied(_ slot: ResponseSlot, _ replies: Batch) {
            for frame in replies.messages { deliver(frame) }
        }
        private func deliver(_ frame: ByteBuffer) {
            if let stream = CQLWireFrame(frame)?.stream { promises[stream]?.succeed(frame) }
        }
        func errorReplies(_ message: String, count: Int, replyKeys: ReplyKeys, first: Int) -> Batch {
            CQLSource.errorReplies(message, count: count, replyKeys: replyKeys, first: first, allocator: ByteBufferAllocator())
        }
    }

    /// Three frames of one read run as one batch through a chain that is the `cassandra` sink alone
    /// (the session observer in front, as for a client: the batch holds a USE): the slow first
    /// query's reply comes last, the two fast ones while it still runs, each on its own stream.
    func testAFastReplyOfABatchDoesNotWaitForItsSlowFirstFrame() throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let (port, _) = try backends.start()
        var sink = SinkPlan(name: "cass", host: "127.0.0.1", port: port, connectTimeoutMilliseconds: 1000,
                            replyTimeoutMilliseconds: 5000, maxFrameBytes: 1 << 28, tls: nil)
        sink.protocolKind = .cql
        let runtime = RuntimePlan(chains: [ChainPlan(name: "c", steps: [.sink(0)])], sinks: [sink])
        let loop = group.next()
        for version in [CQLVersion.v4, .v5] {
            let session = try loop.submit {
                ChainSession(eventLoop: loop, allocator: ByteBufferAllocator(), plan: runtime, clientAddress: "test", mainChain: 0)
            }.wait()
            let streams: [Int16] = [5, 6, 7]
            let promises = Dictionary(uniqueKeysWithValues: streams.map { ($0, loop.makePromise(of: ByteBuffer.self)) })
            let owner = StreamOwner(promises)
            let batch = Batch(kind: Batch.requests, protocolID: Batch.cql, messages: [
                CQLFrameBuilder.query(version: version, stream: 5, query: "TESTBACKEND SLEEP 1500"),
                CQLFrameBuilder.query(version: version, stream: 6, query: "SELECT release_version FROM system.local"),
                CQLFrameBuilder.query(version: version, stream: 7, query: "USE system"),
            ])
            try loop.submit {
                let slot = ResponseSlot(owner: owner, requestCount: 3)
                CQLSource.replyKeys(of: batch, into: &slot.replyKeys)
                slot.takeRepliesOneByOne()
                session.runFromClient(batch, on: try session.chain(0), receiver: slot)
            }.wait()
            let fast = try promises[6]!.futureResult.wait(timeout: .seconds(10))
            let use = try promises[7]!.futureResult.wait(timeout: .seconds(10))
            XCTAssertFalse(promises[5]!.futureResult.isFulfilledForTest, "v\(version.rawValue): the fast replies came first")
            XCTAssertEqual(CQLWireFrame(fast)?.resultKind, .rows)
            XCTAssertEqual(CQLWireFrame(use)?.resultKind, .setKeyspace)
            XCTAssertEqual(CQLWireFrame(try promises[5]!.futureResult.wait(timeout: .seconds(10)))?.resultKind, .void)
            XCTAssertEqual(try loop.submit { owner.wholeBatches }.wait(), 0)
            // The USE among them reached the session's facts through the observer.
            let keyspace = try loop.submit { session.facts.cql.keyspace.map { String(decoding: UnsafeBufferPointer(start: $0.pointer, count: $0.count), as: UTF8.self) } }.wait()
            XCTAssertEqual(keyspace, "system")
            try loop.submit { session.close() }.wait()
        }
    }

    /// A receiver that takes the replies together (a transform's call that forwarded the batch)
    /// still gets them joined, in request order.
    func testAReceiverThatTakesRepliesTogetherGetsThemJoined() throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let (port, _) = try backends.start()
        var sink = SinkPlan(name: "cass", host: "127.0.0.1", port: port, connectTimeoutMilliseconds: 1000,
                            replyTimeoutMilliseconds: 5000, maxFrameBytes: 1 << 28, tls: nil)
        sink.protocolKind = .cql
        let runtime = RuntimePlan(chains: [ChainPlan(name: "c", steps: [.sink(0)])], sinks: [sink])
        let loop = group.next()
        let session = try loop.submit {
            ChainSession(eventLoop: loop, allocator: ByteBufferAllocator(), plan: runtime, clientAddress: "test", mainChain: 0)
        }.wait()
        final class Together: ResponseReceiver {
            let promise: EventLoopPromise<Batch>
            init(_ promise: EventLoopPromise<Batch>) { self.promise = promise }
            func receive(_ outcome: ChainOutcome) {
                if case .responses(let batch) = outcome { promise.succeed(batch) } else { promise.fail(NSError(domain: "failed", code: 1)) }
            }
        }
        let promise = loop.makePromise(of: Batch.self)
        try loop.submit {
            session.sink(0).send(Batch(kind: Batch.requests, protocolID: Batch.cql, messages: [
                CQLFrameBuilder.query(version: .v4, stream: 1, query: "TESTBACKEND SLEEP 300"),
                CQLFrameBuilder.query(version: .v4, stream: 2, query: "SELECT release_version FROM system.local"),
            ]), receiver: Together(promise))
        }.wait()
        let replies = try promise.futureResult.wait(timeout: .seconds(10))
        XCTAssertEqual(replies.messages.compactMap { CQLWireFrame($0)?.stream }, [1, 2])
        try loop.submit { session.close() }.wait()
    }
}
