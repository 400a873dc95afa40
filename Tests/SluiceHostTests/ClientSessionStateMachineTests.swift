import XCTest
@testable import SluiceHost

/// The lifecycle of a client connection, driven as plain values (no channel, no clock).
final class ClientSessionStateMachineTests: XCTestCase {
    private func active() -> ClientSessionStateMachine {
        var machine = ClientSessionStateMachine()
        XCTAssertEqual(machine.activate(), .none)
        return machine
    }

    func testANewConnectionReadsAndWritesOnceActive() {
        var machine = ClientSessionStateMachine()
        XCTAssertEqual(machine.state, .starting(drainRequested: false))
        XCTAssertFalse(machine.isActive)
        XCTAssertEqual(machine.activate(), .none)
        XCTAssertEqual(machine.state, .active)
        XCTAssertTrue(machine.isActive)
        XCTAssertTrue(machine.writesReplies)
        XCTAssertTrue(machine.runsHeldRequests)
        XCTAssertEqual(machine.everythingAnswered(heldBack: false), .none, "an active client with nothing in flight stays open")
    }

    func testADrainBeforeTheConnectionIsActiveClosesItAsSoonAsItIs() {
        var machine = ClientSessionStateMachine()
        XCTAssertEqual(machine.drain(heldBack: false), .none)
        XCTAssertEqual(machine.state, .starting(drainRequested: true))
        XCTAssertEqual(machine.activate(), .closeNow)
        XCTAssertEqual(machine.state, .closeScheduled)
        XCTAssertFalse(machine.writesReplies)
    }

    func testADrainStopsReadingAnswersEverythingThenHalfCloses() {
        var machine = active()
        XCTAssertEqual(machine.drain(heldBack: false), .stopReading)
        XCTAssertEqual(machine.state, .draining(runsHeld: false))
        XCTAssertFalse(machine.isActive)
        XCTAssertTrue(machine.writesReplies, "replies still owed are written")
        XCTAssertEqual(machine.drain(heldBack: false), .none, "a second drain changes nothing")
        XCTAssertEqual(machine.everythingAnswered(heldBack: false), .halfCloseNextTurn)
        XCTAssertEqual(machine.state, .halfClosing)
        XCTAssertFalse(machine.writesReplies)
        XCTAssertTrue(machine.closeIsScheduled)
        XCTAssertEqual(machine.everythingAnswered(heldBack: false), .none, "the half-close happens once")
    }

    func testADrainedClientStillRunsTheRequestsTheBudgetHeldBack() {
        var machine = active()
        XCTAssertEqual(machine.drain(heldBack: true), .stopReading)
        XCTAssertTrue(machine.runsHeldRequests)
        XCTAssertEqual(machine.everythingAnswered(heldBack: true), .none, "held-back requests still to run")
        XCTAssertEqual(machine.state, .draining(runsHeld: true))
        XCTAssertEqual(machine.everythingAnswered(heldBack: false), .halfCloseNextTurn)
    }

    func testAProtocolErrorWhileDrainingRunsNothingHeldBackAfterIt() {
        var machine = active()
        _ = machine.drain(heldBack: true)
        machine.closeAfterReply()
        XCTAssertEqual(machine.state, .draining(runsHeld: false))
        XCTAssertFalse(machine.runsHeldRequests)
        XCTAssertEqual(machine.everythingAnswered(heldBack: true), .halfCloseNextTurn)
    }

    func testQuitClosesFullyOnceItsReplyIsWritten() {
        var machine = active()
        machine.closeAfterReply()
        XCTAssertEqual(machine.state, .closing)
        XCTAssertFalse(machine.isActive, "nothing more is read after QUIT")
        XCTAssertFalse(machine.runsHeldRequests)
        XCTAssertTrue(machine.writesReplies, "the replies before QUIT's and QUIT's own are written")
        XCTAssertEqual(machine.closeAfterWrite(), .closeNextTurn)
        XCTAssertEqual(machine.state, .closeScheduled)
        XCTAssertEqual(machine.closeAfterWrite(), .none)
    }

    func testAClosingClientWithNothingOwedClosesOnTheNextTurn() {
        var machine = active()
        machine.closeAfterReply()
        XCTAssertEqual(machine.everythingAnswered(heldBack: false), .closeNextTurn)
        XCTAssertEqual(machine.state, .closeScheduled)
    }

    func testAbortClosesAtOnceFromAnyOpenStateAndOnlyOnce() {
        for prepare in [{ (m: inout ClientSessionStateMachine) in },
                        { m in _ = m.drain(heldBack: false) },
                        { m in m.closeAfterReply() }] {
            var machine = active()
            prepare(&machine)
            XCTAssertEqual(machine.abort(), .closeNow)
            XCTAssertEqual(machine.state, .closeScheduled)
            XCTAssertEqual(machine.abort(), .none)
        }
    }

    func testARefusedClientIsClosedAtOnce() {
        var machine = active()
        XCTAssertEqual(machine.refuse(), .closeNow)
        XCTAssertFalse(machine.writesReplies)
        XCTAssertEqual(machine.drain(heldBack: false), .none)
    }

    func testTooManyUnreadRepliesCloseTheClientAndStopWrites() {
        var machine = active()
        XCTAssertEqual(machine.closeAfterWrite(), .closeNextTurn)
        XCTAssertFalse(machine.writesReplies)
    }

    func testAClosedChannelTakesNoMoreEvents() {
        var machine = active()
        machine.channelInactive()
        XCTAssertEqual(machine.state, .closed)
        XCTAssertEqual(machine.drain(heldBack: false), .none)
        XCTAssertEqual(machine.abort(), .none)
        XCTAssertEqual(machine.closeAfterWrite(), .none)
        XCTAssertEqual(machine.everythingAnswered(heldBack: false), .none)
        XCTAssertFalse(machine.writesReplies)
        XCTAssertFalse(machine.isActive)
    }
}
