import NIOCore
import NIOEmbedded
import XCTest
@testable import SluiceHost

/// The backpressure of one client as a plain value: when reading pauses and resumes, how many
/// requests may be in flight, and when unread replies close the client.
final class ClientFlowControlTests: XCTestCase {
    let limits = ClientLimits(replySoftBytes: 1 << 20, replyHardBytes: 64 << 20)

    func testStartsReadingWithTheInitialLimitAndPausesWhenItIsReached() {
        var flow = ClientFlowControl(limits: limits)
        XCTAssertEqual(flow.state, .reading)
        XCTAssertEqual(flow.requestLimit, ClientFlowControl.initialRequestLimit)
        XCTAssertTrue(flow.hasRoom(forMore: ClientFlowControl.initialRequestLimit - 1))
        XCTAssertFalse(flow.hasRoom(forMore: ClientFlowControl.initialRequestLimit))
        XCTAssertEqual(flow.batchStarted(requests: 10), .none)
        XCTAssertEqual(flow.batchStarted(requests: 6), .pause)
        XCTAssertEqual(flow.state, .paused(.inFlight))
        XCTAssertFalse(flow.hasRoom(forMore: 0))
    }

    func testSmallRepliesOpenTheWindowToTheMaximum() {
        var flow = ClientFlowControl(limits: limits)
        _ = flow.batchStarted(requests: 16)
        XCTAssertEqual(flow.batchWritten(requests: 16, replyBytes: 16 * 5), .resume)  // ":1\r\n" and the like
        XCTAssertEqual(flow.requestLimit, ClientFlowControl.maxRequestsInFlight)
        XCTAssertEqual(flow.state, .reading)
    }

    func testLargeRepliesShrinkTheWindowAtOnceAndSmallOnesWidenItGradually() {
        var flow = ClientFlowControl(limits: limits)  // window: 16 MiB
        _ = flow.batchStarted(requests: 1)
        _ = flow.batchWritten(requests: 1, replyBytes: 10)
        XCTAssertEqual(flow.requestLimit, 4096)
        _ = flow.batchStarted(requests: 1)
        _ = flow.batchWritten(requests: 1, replyBytes: 1 << 20)  // one 1 MiB value
        XCTAssertEqual(flow.requestLimit, 16)
        var limits: [Int] = []
        for _ in 0..<40 {
            _ = flow.batchStarted(requests: 1)
            _ = flow.batchWritten(requests: 1, replyBytes: 10)
            limits.append(flow.requestLimit)
        }
        XCTAssertEqual(limits, limits.sorted(), "widens monotonically")
        XCTAssertLessThan(limits[0], 32)
        XCTAssertEqual(limits.last, 4096)
    }

    func testAValueLargerThanTheWindowStillLeavesOneRequestInFlight() {
        var flow = ClientFlowControl(limits: limits)
        _ = flow.batchStarted(requests: 1)
        _ = flow.batchWritten(requests: 1, replyBytes: 100 << 20)
        XCTAssertEqual(flow.requestLimit, 1)
        XCTAssertTrue(flow.hasRoom(forMore: 0))
        XCTAssertEqual(flow.batchStarted(requests: 1), .pause)
        XCTAssertEqual(flow.batchWritten(requests: 1, replyBytes: 100 << 20), .resume)
    }

    func testInFlightPauseResumesAtHalfNotAtTheFirstReply() {
        var flow = ClientFlowControl(limits: limits)
        _ = flow.batchStarted(requests: 1)
        _ = flow.batchWritten(requests: 1, replyBytes: 4)  // window: 4096 requests
        for _ in 0..<256 { _ = flow.batchStarted(requests: 16) }  // 256 batches, 4096 requests
        XCTAssertEqual(flow.state, .paused(.inFlight))
        var resumedAfter = 0
        for written in 1...256 {
            if flow.batchWritten(requests: 16, replyBytes: 64) == .resume {
                resumedAfter = written
                break
            }
        }
        XCTAssertEqual(resumedAfter, 128)
    }

    func testTooManyBatchesPauseEvenWithFewRequests() {
        var flow = ClientFlowControl(limits: limits)
        _ = flow.batchStarted(requests: 1)
        _ = flow.batchWritten(requests: 1, replyBytes: 4)
        var actions: [ClientFlowControl.Action] = []
        for _ in 0..<ClientFlowControl.maxBatchesInFlight { actions.append(flow.batchStarted(requests: 1)) }
        XCTAssertEqual(actions.last, .pause)
        XCTAssertEqual(actions.dropLast().filter { $0 != .none }, [])
    }

    func testEveryReasonMustClearBeforeReadingResumes() {
        var flow = ClientFlowControl(limits: limits)
        XCTAssertEqual(flow.writabilityChanged(false), .pause)
        XCTAssertEqual(flow.requestBudget(spent: true), .none)
        XCTAssertEqual(flow.state, .paused([.replies, .requestBudget]))
        XCTAssertEqual(flow.writabilityChanged(true), .none)
        XCTAssertEqual(flow.state, .paused(.requestBudget))
        XCTAssertEqual(flow.requestBudget(spent: false), .resume)
        XCTAssertEqual(flow.state, .reading)
    }

    func testRepliesQueuedWhileTheSocketIsBlockedCloseTheClientPastTheHardLimit() {
        var flow = ClientFlowControl(limits: ClientLimits(replySoftBytes: 1 << 20, replyHardBytes: 8 << 20))
        _ = flow.batchStarted(requests: 20)
        // A reply written while the client reads counts for nothing, however large.
        _ = flow.batchWritten(requests: 1, replyBytes: 100 << 20)
        XCTAssertFalse(flow.exceedsHardLimit)
        _ = flow.writabilityChanged(false)
        for _ in 0..<8 {
            _ = flow.batchWritten(requests: 1, replyBytes: 1 << 20)
            XCTAssertFalse(flow.exceedsHardLimit)
        }
        _ = flow.batchWritten(requests: 1, replyBytes: 1)
        XCTAssertTrue(flow.exceedsHardLimit)
    }

    func testASlowReaderThatDrainsStartsItsCountAfresh() {
        var flow = ClientFlowControl(limits: ClientLimits(replySoftBytes: 1 << 20, replyHardBytes: 8 << 20))
        _ = flow.batchStarted(requests: 100)
        for _ in 0..<10 {
            _ = flow.writabilityChanged(false)
            for _ in 0..<5 { _ = flow.batchWritten(requests: 1, replyBytes: 1 << 20) }
            _ = flow.writabilityChanged(true)
        }
        XCTAssertFalse(flow.exceedsHardLimit)
    }

    func testAStoppedClientNeverResumes() {
        var flow = ClientFlowControl(limits: limits)
        _ = flow.writabilityChanged(false)
        flow.stop()
        XCTAssertEqual(flow.writabilityChanged(true), .none)
        XCTAssertEqual(flow.batchStarted(requests: 1), .none)
        XCTAssertEqual(flow.state, .stopped)
        XCTAssertFalse(flow.isReading)
    }

    func testRequestBytesInFlightPauseTheReadingAndResumeItAtHalf() {
        var flow = ClientFlowControl(limits: ClientLimits(requestBufferBudgetBytes: 64 << 20))  // window 4 MiB
        XCTAssertEqual(flow.requestBytesLimit, 4 << 20)
        _ = flow.batchStarted(requests: 1)
        _ = flow.batchWritten(requests: 1, replyBytes: 4)  // small replies: 4096 requests may be in flight
        XCTAssertEqual(flow.batchStarted(requests: 1, requestBytes: 3 << 20), .none)
        XCTAssertTrue(flow.hasRoom(forMore: 0))
        XCTAssertEqual(flow.batchStarted(requests: 1, requestBytes: 3 << 20), .pause, "6 MiB in flight: one over is fine, no more")
        XCTAssertFalse(flow.hasRoom(forMore: 0))
        XCTAssertEqual(flow.batchWritten(requests: 1, requestBytes: 3 << 20, replyBytes: 4), .none, "3 MiB: above half")
        XCTAssertEqual(flow.requestBytesInFlight, 3 << 20)
        XCTAssertEqual(flow.batchWritten(requests: 1, requestBytes: 3 << 20, replyBytes: 4), .resume)
        XCTAssertEqual(flow.requestBytesInFlight, 0)
    }
}

final class CompletionDeadlineTests: XCTestCase {
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    func testAnIncompleteRequestMustCompleteInTime() {
        var deadline = CompletionDeadline(timeoutMilliseconds: 100)
        XCTAssertEqual(deadline.check(at: start), .nothingPending)
        XCTAssertTrue(deadline.requestIncomplete(begunInThisRead: false, now: { start }))
        // Later reads of the same request do not restart the clock (nor read it).
        XCTAssertFalse(deadline.requestIncomplete(begunInThisRead: false, now: { XCTFail("clock read"); return start }))
        XCTAssertEqual(deadline.check(at: start + .milliseconds(40)), .checkAgain(at: start + .milliseconds(100)))
        XCTAssertEqual(deadline.check(at: start + .milliseconds(100)), .expired(what: "request"))
    }

    func testACompletedRequestStopsTheClock() {
        var deadline = CompletionDeadline(timeoutMilliseconds: 100)
        _ = deadline.requestIncomplete(begunInThisRead: false, now: { start })
        deadline.requestsComplete()
        XCTAssertEqual(deadline.check(at: start + .seconds(10)), .nothingPending)
        XCTAssertTrue(deadline.requestIncomplete(begunInThisRead: false, now: { start + .seconds(10) }))
        XCTAssertEqual(deadline.check(at: start + .milliseconds(10_050)), .checkAgain(at: start + .milliseconds(10_100)))
    }

    func testAPipelineWhoseReadsEndInsideARequestKeepsAFreshClock() {
        var deadline = CompletionDeadline(timeoutMilliseconds: 100)
        XCTAssertTrue(deadline.requestIncomplete(begunInThisRead: true, now: { start }))
        for i in 1...50 {  // every read completes the request before and ends inside the next one
            let now = start + .milliseconds(Int64(i * 20))
            XCTAssertFalse(deadline.requestIncomplete(begunInThisRead: true, now: { now }))
            XCTAssertEqual(deadline.check(at: now + .milliseconds(10)), .checkAgain(at: now + .milliseconds(100)))
        }
    }

    func testTLSHandshake() {
        var deadline = CompletionDeadline(timeoutMilliseconds: 100)
        deadline.tlsHandshakeBegan(at: start)
        deadline.requestsComplete()  // not a request: the handshake stays pending
        XCTAssertEqual(deadline.check(at: start + .milliseconds(150)), .expired(what: "TLS handshake"))
        deadline.tlsHandshakeCompleted()
        XCTAssertEqual(deadline.check(at: start + .milliseconds(150)), .nothingPending)
    }

    func testZeroMeansNoLimit() {
        var deadline = CompletionDeadline(timeoutMilliseconds: 0)
        XCTAssertFalse(deadline.isActive)
        XCTAssertFalse(deadline.requestIncomplete(begunInThisRead: true, now: { XCTFail("clock read"); return start }))
        deadline.tlsHandshakeBegan(at: start)
        XCTAssertEqual(deadline.check(at: start + .seconds(1000)), .nothingPending)
    }
}

final class RequestBufferBudgetTests: XCTestCase {
    final class Waiter: RequestBufferBudget.Waiter {
        var freed = 0
        func requestBudgetFreed() { freed += 1 }
    }

    func testClientsWaitOnceTheBudgetIsSpentAndAreToldWhenThereIsRoom() {
        let loop = EmbeddedEventLoop()
        let budget = RequestBufferBudget(limit: 1000)
        let a = Waiter(), b = Waiter(), c = Waiter()
        XCTAssertFalse(budget.setBuffered(100, for: c, on: loop))
        XCTAssertFalse(budget.setBuffered(600, for: a, on: loop))
        XCTAssertTrue(budget.setBuffered(400, for: b, on: loop))  // 1100 > 1000, and c is older: b waits
        XCTAssertFalse(budget.setBuffered(300, for: a, on: loop), "a shrinking buffer never waits")
        loop.run()
        XCTAssertEqual(b.freed, 1, "800 <= 7/8 of the budget")
        XCTAssertEqual(budget.bytesBuffered, 800)
        XCTAssertFalse(budget.setBuffered(0, for: a, on: loop))
        XCTAssertFalse(budget.setBuffered(0, for: b, on: loop))
        XCTAssertFalse(budget.setBuffered(0, for: c, on: loop))
        XCTAssertEqual(budget.bytesBuffered, 0)
        loop.run()
        XCTAssertEqual(b.freed, 1, "told once per wait")
    }

    func testTheLongestBufferingClientMayExceedTheBudgetSoThatSomeoneFinishes() {
        let loop = EmbeddedEventLoop()
        let budget = RequestBufferBudget(limit: 1000)
        let a = Waiter(), b = Waiter(), c = Waiter()
        XCTAssertFalse(budget.setBuffered(400, for: a, on: loop))
        XCTAssertFalse(budget.setBuffered(400, for: b, on: loop))
        XCTAssertTrue(budget.setBuffered(400, for: c, on: loop))
        XCTAssertTrue(budget.setBuffered(500, for: b, on: loop))
        XCTAssertFalse(budget.setBuffered(900, for: a, on: loop), "the oldest goes on")
        XCTAssertFalse(budget.setBuffered(0, for: a, on: loop))  // its request completed: 900 left
        loop.run()
        XCTAssertEqual([b.freed, c.freed], [1, 1], "the oldest left: b is the oldest now")
        XCTAssertFalse(budget.setBuffered(700, for: b, on: loop))
        XCTAssertTrue(budget.setBuffered(500, for: c, on: loop))
    }

    func testAWaitingClientWhoseBufferNoLongerCountsStopsWaiting() {
        // The handler counts a client's partial request only: once the requests it holds are
        // complete (held back by its in-flight limit), it counts 0 and must not wait any more.
        let loop = EmbeddedEventLoop()
        let budget = RequestBufferBudget(limit: 1000)
        let a = Waiter(), b = Waiter()
        XCTAssertFalse(budget.setBuffered(900, for: a, on: loop))
        XCTAssertTrue(budget.setBuffered(200, for: b, on: loop))
        XCTAssertTrue(budget.setBuffered(150, for: b, on: loop), "still over the budget: still waits")
        XCTAssertFalse(budget.setBuffered(0, for: b, on: loop), "counts nothing: does not wait")
        XCTAssertEqual(budget.bytesBuffered, 900)
        loop.run()
        XCTAssertEqual(b.freed, 0, "no longer a waiter, so not told")
    }

    func testAClientThatStoppedCountingIsNoLongerTheOldest() {
        // B began buffering first, then its buffer held complete requests only (counted 0): the
        // exemption passes to the client buffering longest among those that count.
        let loop = EmbeddedEventLoop()
        let budget = RequestBufferBudget(limit: 1000)
        let b = Waiter(), a1 = Waiter(), a2 = Waiter()
        XCTAssertFalse(budget.setBuffered(300, for: b, on: loop))
        XCTAssertFalse(budget.setBuffered(500, for: a1, on: loop))
        XCTAssertTrue(budget.setBuffered(400, for: a2, on: loop))
        XCTAssertTrue(budget.setBuffered(600, for: a1, on: loop), "b is older")
        XCTAssertFalse(budget.setBuffered(0, for: b, on: loop))
        loop.run()
        XCTAssertEqual([a1.freed, a2.freed], [1, 1], "the oldest left")
        XCTAssertFalse(budget.setBuffered(700, for: a1, on: loop), "a1 is the oldest now")
        XCTAssertTrue(budget.setBuffered(500, for: a2, on: loop))
    }

    func testAClosedClientGivesItsBytesBackAndIsNotTold() {
        let loop = EmbeddedEventLoop()
        let budget = RequestBufferBudget(limit: 100)
        let a = Waiter(), b = Waiter()
        XCTAssertFalse(budget.setBuffered(150, for: a, on: loop))
        XCTAssertTrue(budget.setBuffered(50, for: b, on: loop))
        budget.remove(b)
        budget.remove(a)
        loop.run()
        XCTAssertEqual([a.freed, b.freed], [0, 0])
        XCTAssertEqual(budget.bytesBuffered, 0)
    }

}
