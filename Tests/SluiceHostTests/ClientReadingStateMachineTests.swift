import XCTest
@testable import SluiceHost

/// Whether a client's socket is read and what becomes of the requests the in-flight limit held
/// back, driven as plain values (no channel, no clock), alone and beside the machines the session
/// consults with it (`ClientFlowControl`, `ClientSessionStateMachine`, `NextTurnWork`).
final class ClientReadingStateMachineTests: XCTestCase {
    let limits = ClientLimits(replySoftBytes: 1 << 20, replyHardBytes: 64 << 20)

    /// A machine whose last run stopped at the in-flight limit.
    private func holdingRequests() -> ClientReadingStateMachine {
        var reading = ClientReadingStateMachine()
        reading.processBegan()
        reading.inFlightLimitReached()
        XCTAssertEqual(reading.processEnded(mayRunHeld: false), .none)
        return reading
    }

    func testANewClientIsReadAndHoldsNothing() {
        let reading = ClientReadingStateMachine()
        XCTAssertEqual(reading.socket, .reading)
        XCTAssertEqual(reading.requests, .idle)
        XCTAssertTrue(reading.socketIsReading)
        XCTAssertFalse(reading.holdsRequests)
        XCTAssertFalse(reading.isProcessing)
    }

    func testARunThatFitsTheLimitLeavesNothingHeld() {
        var reading = ClientReadingStateMachine()
        reading.processBegan()
        XCTAssertEqual(reading.requests, .processing(heldBack: false))
        XCTAssertTrue(reading.isProcessing)
        XCTAssertFalse(reading.holdsRequests)
        XCTAssertEqual(reading.processEnded(mayRunHeld: { XCTFail("not asked when nothing is held"); return true }()), .none)
        XCTAssertEqual(reading.requests, .idle)
        XCTAssertFalse(reading.isProcessing)
    }

    func testARunStoppedAtTheLimitHoldsTheRestUntilTheNextRun() {
        var reading = ClientReadingStateMachine()
        reading.processBegan()
        reading.inFlightLimitReached()
        XCTAssertEqual(reading.requests, .processing(heldBack: true))
        XCTAssertTrue(reading.holdsRequests, "held from the moment the run stopped scanning")
        XCTAssertTrue(reading.isProcessing)
        XCTAssertEqual(reading.processEnded(mayRunHeld: false), .none, "reading paused: a reply will run them")
        XCTAssertEqual(reading.requests, .heldBack)
        XCTAssertTrue(reading.holdsRequests)
        XCTAssertFalse(reading.isProcessing)
        // The next run (the held ones, or a read joined behind them) starts with nothing held.
        reading.processBegan()
        XCTAssertEqual(reading.requests, .processing(heldBack: false))
        XCTAssertFalse(reading.holdsRequests)
        XCTAssertEqual(reading.processEnded(mayRunHeld: true), .none)
        XCTAssertEqual(reading.requests, .idle)
    }

    func testRequestsHeldWhilePluginsAnsweredEverythingRunOnTheNextTurn() {
        // Plugins answered the run's batches synchronously: reading was never paused, and no reply
        // is still to come that would run the held requests.
        var reading = ClientReadingStateMachine()
        reading.processBegan()
        reading.inFlightLimitReached()
        XCTAssertEqual(reading.processEnded(mayRunHeld: true), .runNextTurn)
        XCTAssertEqual(reading.requests, .heldBack)
    }

    func testHeldRequestsRunOnlyWhenAllowedAndNeverInsideARun() {
        var idle = ClientReadingStateMachine()
        XCTAssertEqual(idle.heldRunRequested(allowed: { XCTFail("not asked when nothing is held"); return true }()), .none)

        var held = holdingRequests()
        XCTAssertEqual(held.heldRunRequested(allowed: false), .none, "no room in flight, or the lifecycle runs none")
        XCTAssertEqual(held.heldRunRequested(allowed: true), .runNow)
        XCTAssertEqual(held.requests, .heldBack, "held until the run begins")

        // Reading resumed inside the run that held them (a reply answered synchronously).
        var running = ClientReadingStateMachine()
        running.processBegan()
        running.inFlightLimitReached()
        XCTAssertEqual(running.heldRunRequested(allowed: true), .runNextTurn)
        XCTAssertEqual(running.requests, .processing(heldBack: true), "asking changes nothing")
    }

    func testTheSocketFollowsTheFlowControlsAdvice() {
        var reading = ClientReadingStateMachine()
        XCTAssertEqual(reading.flowAdvised(.none, flowReads: false), .none)
        XCTAssertEqual(reading.flowAdvised(.pause, flowReads: false), .pause)
        XCTAssertEqual(reading.socket, .paused)
        XCTAssertFalse(reading.socketIsReading)
        XCTAssertEqual(reading.flowAdvised(.pause, flowReads: false), .none, "paused already")
        XCTAssertEqual(reading.flowAdvised(.resume, flowReads: true), .resume(runHeldFirst: false))
        XCTAssertEqual(reading.socket, .reading)
        XCTAssertEqual(reading.flowAdvised(.resume, flowReads: true), .none, "reading already")
    }

    func testStaleAdviceIsIgnored() {
        // Several replies written in one go: the flow control paused and resumed (or the reverse)
        // on the way, and only the last advice is applied; what counts is where it stands now.
        var reading = ClientReadingStateMachine()
        XCTAssertEqual(reading.flowAdvised(.pause, flowReads: true), .none, "reads again already")
        XCTAssertEqual(reading.socket, .reading)
        _ = reading.flowAdvised(.pause, flowReads: false)
        XCTAssertEqual(reading.flowAdvised(.resume, flowReads: false), .none, "paused again already")
        XCTAssertEqual(reading.socket, .paused)
    }

    func testResumingRunsTheHeldRequestsFirst() {
        var reading = holdingRequests()
        XCTAssertEqual(reading.flowAdvised(.pause, flowReads: false), .pause)
        XCTAssertEqual(reading.flowAdvised(.resume, flowReads: true), .resume(runHeldFirst: true))
        // The session runs them now (not inside a run), and they fill the limit again: reading
        // pauses again before the session would ask the socket for more.
        XCTAssertEqual(reading.heldRunRequested(allowed: true), .runNow)
        reading.processBegan()
        XCTAssertEqual(reading.flowAdvised(.pause, flowReads: false), .pause)
        reading.inFlightLimitReached()
        XCTAssertEqual(reading.processEnded(mayRunHeld: false), .none)
        XCTAssertFalse(reading.socketIsReading, "so no read is asked for after the held run")
        XCTAssertTrue(reading.holdsRequests)
    }

    func testAStoppedSocketIgnoresEveryAdvice() {
        var reading = ClientReadingStateMachine()
        _ = reading.flowAdvised(.pause, flowReads: false)
        reading.stopReading()
        XCTAssertEqual(reading.socket, .stopped)
        XCTAssertEqual(reading.flowAdvised(.resume, flowReads: true), .none)
        XCTAssertEqual(reading.flowAdvised(.pause, flowReads: false), .none)
        XCTAssertEqual(reading.socket, .stopped)
    }

    func testAClosedChannelHoldsNothing() {
        var reading = holdingRequests()
        reading.channelInactive()
        XCTAssertEqual(reading.socket, .stopped)
        XCTAssertEqual(reading.requests, .idle)
        XCTAssertEqual(reading.heldRunRequested(allowed: true), .none)
    }

    // MARK: with the machines beside it

    func testTheBudgetFreedWhileReadingIsPausedByTheWindowDoesNotResume() {
        var flow = ClientFlowControl(limits: limits)
        var reading = ClientReadingStateMachine()
        reading.processBegan()
        XCTAssertEqual(reading.flowAdvised(flow.batchStarted(requests: ClientFlowControl.initialRequestLimit),
                                           flowReads: flow.isReading), .pause)
        reading.inFlightLimitReached()
        _ = reading.processEnded(mayRunHeld: flow.isReading)
        // The request-buffer budget makes the client wait too, then has room again.
        XCTAssertEqual(reading.flowAdvised(flow.requestBudget(spent: true), flowReads: flow.isReading), .none)
        XCTAssertEqual(reading.flowAdvised(flow.requestBudget(spent: false), flowReads: flow.isReading), .none)
        XCTAssertEqual(reading.socket, .paused, "the in-flight window still holds it")
        XCTAssertEqual(flow.state, .paused(.inFlight))
        // The replies come back: reading resumes, and the held requests run before anything is read.
        let written = flow.batchWritten(requests: ClientFlowControl.initialRequestLimit, replyBytes: 80)
        XCTAssertEqual(reading.flowAdvised(written, flowReads: flow.isReading), .resume(runHeldFirst: true))
        XCTAssertEqual(reading.heldRunRequested(allowed: flow.hasRoom(forMore: 0)), .runNow)
    }

    func testAMoveAskedForWhileProcessingWaitsForTheNextTurnAndIsQueuedOnce() {
        var reading = ClientReadingStateMachine()
        var nextTurn = NextTurnWork()
        reading.processBegan()
        // A plugin answered the last request synchronously: the session asks for a move then.
        let safePoint = { SafePoint(requestsInFlight: 0, requestsHeldBack: reading.holdsRequests, inTransaction: false,
                                    subscribed: false, pluginWorkPending: reading.isProcessing, closing: false) }
        XCTAssertFalse(safePoint().allowsMove, "never inside the run: it would free plugin instances on the stack")
        XCTAssertTrue(nextTurn.request(.move))
        XCTAssertFalse(nextTurn.request(.move), "asked again in the same turn: the one queued does it")
        XCTAssertEqual(reading.processEnded(mayRunHeld: true), .none)
        // The next turn: the task runs, with the run over.
        nextTurn.taskRuns(.move)
        XCTAssertTrue(safePoint().allowsMove)
        XCTAssertFalse(nextTurn.isQueued(.move))
        XCTAssertTrue(nextTurn.request(.move), "a later request queues another")
    }

    func testAHeldRunAskedForTwiceInsideARunIsQueuedOnce() {
        var reading = ClientReadingStateMachine()
        var nextTurn = NextTurnWork()
        reading.processBegan()
        reading.inFlightLimitReached()
        XCTAssertEqual(reading.heldRunRequested(allowed: true), .runNextTurn)
        XCTAssertTrue(nextTurn.request(.heldRun))
        XCTAssertEqual(reading.processEnded(mayRunHeld: true), .runNextTurn)
        XCTAssertFalse(nextTurn.request(.heldRun))
        nextTurn.taskRuns(.heldRun)
        XCTAssertEqual(reading.heldRunRequested(allowed: true), .runNow)
    }

    func testAFlushQueuedBeforeACloseStillRunsFirst() {
        // Replies written as they come (CQL): one is written unflushed, then a reply marked "close
        // after" schedules the close. The event loop runs tasks in the order queued.
        var lifecycle = ClientSessionStateMachine()
        _ = lifecycle.activate()
        var nextTurn = NextTurnWork()
        var eventLoop: [String] = []
        if nextTurn.request(.flush) { eventLoop.append("flush") }
        lifecycle.closeAfterReply()
        if lifecycle.closeAfterWrite() == .closeNextTurn { eventLoop.append("close") }
        XCTAssertFalse(lifecycle.writesReplies)
        XCTAssertTrue(nextTurn.isQueued(.flush), "closing cancels no queued flush")
        XCTAssertFalse(nextTurn.request(.flush))
        XCTAssertEqual(eventLoop, ["flush", "close"], "the replies written before the close go out")
        nextTurn.taskRuns(.flush)
        XCTAssertEqual(nextTurn, NextTurnWork())
    }

    func testKindsOfNextTurnWorkAreQueuedIndependently() {
        var nextTurn = NextTurnWork()
        XCTAssertTrue(nextTurn.request(.flush))
        XCTAssertTrue(nextTurn.request(.move))
        XCTAssertTrue(nextTurn.request(.heldRun))
        nextTurn.taskRuns(.move)
        XCTAssertTrue(nextTurn.isQueued(.flush))
        XCTAssertTrue(nextTurn.isQueued(.heldRun))
        XCTAssertFalse(nextTurn.isQueued(.move))
    }

    func testAHalfCloseWaitsForTheHeldBatchOfADrainedClient() {
        var lifecycle = ClientSessionStateMachine()
        _ = lifecycle.activate()
        var reading = holdingRequests()
        XCTAssertEqual(lifecycle.drain(heldBack: reading.holdsRequests), .stopReading)
        reading.stopReading()
        XCTAssertEqual(lifecycle.everythingAnswered(heldBack: reading.holdsRequests), .none,
                       "the requests read before the drain still run")
        XCTAssertEqual(reading.heldRunRequested(allowed: lifecycle.runsHeldRequests), .runNow)
        reading.processBegan()
        XCTAssertEqual(reading.processEnded(mayRunHeld: lifecycle.isActive), .none)
        XCTAssertEqual(lifecycle.everythingAnswered(heldBack: reading.holdsRequests), .halfCloseNextTurn)
    }

    func testAHalfCloseAfterAProtocolErrorDropsTheHeldBatch() {
        var lifecycle = ClientSessionStateMachine()
        _ = lifecycle.activate()
        var reading = holdingRequests()
        _ = lifecycle.drain(heldBack: reading.holdsRequests)
        reading.stopReading()
        lifecycle.closeAfterReply()  // the last run ended in malformed input: nothing after it runs
        XCTAssertEqual(reading.heldRunRequested(allowed: lifecycle.runsHeldRequests), .none)
        XCTAssertTrue(reading.holdsRequests)
        XCTAssertEqual(lifecycle.everythingAnswered(heldBack: reading.holdsRequests), .halfCloseNextTurn)
    }
}
