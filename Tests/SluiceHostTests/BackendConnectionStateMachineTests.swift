import XCTest
@testable import SluiceHost

/// Every transition of a backend connection's lifecycle, driven as a plain value: channels are
/// numbers, nothing connects, nothing waits.
final class BackendConnectionStateMachineTests: XCTestCase {
    private typealias Machine = BackendConnectionStateMachine<Int>

    private let auth = BackendHandshakeStep(name: "AUTH", request: Array("*2\r\n$4\r\nAUTH\r\n$1\r\np\r\n".utf8),
                                            refusal: .failsConnect)
    private let hello = BackendHandshakeStep(name: "HELLO 3", request: Array("*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n".utf8),
                                             refusal: .answersRequests)

    private func machine(_ steps: [BackendHandshakeStep] = [], tls: Bool = false) -> Machine {
        Machine(handshake: steps, usesTLS: tls)
    }

    /// A machine with channel `link` established.
    private func ready(_ link: Int = 1) -> Machine {
        var m = machine()
        XCTAssertEqual(m.requestSubmitted(backoff: nil), .connect)
        XCTAssertEqual(m.connectSucceeded(link), .established(link))
        return m
    }

    // MARK: connecting

    func testFirstRequestConnectsAndLaterOnesWait() {
        var m = machine()
        XCTAssertEqual(m.state, .idle)
        XCTAssertEqual(m.requestSubmitted(backoff: nil), .connect)
        XCTAssertEqual(m.state, .connecting)
        XCTAssertEqual(m.requestSubmitted(backoff: nil), .wait)
        XCTAssertNil(m.readyLink)
        XCTAssertFalse(m.isCurrent(1))
    }

    func testConnectWithoutHandshakeIsReadyAtOnce() {
        var m = ready(7)
        XCTAssertEqual(m.state, .ready(7, answered: false, closeReason: nil))
        XCTAssertEqual(m.readyLink, 7)
        XCTAssertTrue(m.isCurrent(7))
        XCTAssertFalse(m.isCurrent(8))
        XCTAssertEqual(m.requestSubmitted(backoff: ("never asked", 1)), .write(7))
    }

    func testConnectFailureGoesBackToIdleAndFailsWhatWaited() {
        var m = machine()
        _ = m.requestSubmitted(backoff: nil)
        XCTAssertEqual(m.connectFailed("connection refused"),
                       .connectFailed(close: nil, reason: "connection refused", level: .warning))
        XCTAssertEqual(m.state, .idle)
        // A connect result that arrives when nothing waits for one changes nothing.
        XCTAssertEqual(m.connectFailed("again"), .none)
    }

    func testBackingOffFailsRequestsWithoutConnecting() {
        var m = machine()
        XCTAssertEqual(m.requestSubmitted(backoff: ("connection refused", 80)),
                       .failBackingOff(error: "connection refused", milliseconds: 80))
        XCTAssertEqual(m.state, .idle)
        // Once the back-off is over, the next request connects.
        XCTAssertEqual(m.requestSubmitted(backoff: nil), .connect)
    }

    func testBackoffIsOnlyAskedWhenIdle() {
        var m = machine()
        var asked = 0
        func backoff() -> (error: String, milliseconds: Int64)? {
            asked += 1
            return nil
        }
        _ = m.requestSubmitted(backoff: backoff())
        XCTAssertEqual(asked, 1)
        _ = m.requestSubmitted(backoff: backoff())  // connecting
        _ = m.connectSucceeded(1)
        _ = m.requestSubmitted(backoff: backoff())  // ready
        XCTAssertEqual(asked, 1)
    }

    // MARK: TLS

    func testTLSHandshakeComesBeforeTheProtocolHandshake() {
        var m = machine([auth], tls: true)
        _ = m.requestSubmitted(backoff: nil)
        XCTAssertEqual(m.connectSucceeded(3), .awaitTLS(3))
        XCTAssertEqual(m.state, .securing(3))
        XCTAssertFalse(m.isCurrent(3), "nothing is read before TLS is up")
        XCTAssertEqual(m.requestSubmitted(backoff: nil), .wait)
        XCTAssertEqual(m.tlsCompleted(4), .none, "another channel's TLS")
        XCTAssertEqual(m.tlsCompleted(3), .sendHandshake(3))
        XCTAssertEqual(m.state, .handshaking(3, step: 0))
        XCTAssertTrue(m.isCurrent(3))
    }

    func testTLSWithoutHandshakeIsReadyWhenTLSCompletes() {
        var m = machine(tls: true)
        _ = m.requestSubmitted(backoff: nil)
        _ = m.connectSucceeded(3)
        XCTAssertEqual(m.tlsCompleted(3), .established(3))
    }

    func testTLSTimeoutFailsTheConnect() {
        var m = machine(tls: true)
        _ = m.requestSubmitted(backoff: nil)
        _ = m.connectSucceeded(3)
        XCTAssertEqual(m.tlsTimedOut(3, milliseconds: 500),
                       .connectFailed(close: 3, reason: "no TLS handshake within 500 ms", level: .warning))
        XCTAssertEqual(m.state, .idle)
        // The timer of a channel given up, or of one that completed TLS, does nothing.
        XCTAssertEqual(m.tlsTimedOut(3, milliseconds: 500), .none)
    }

    func testTLSErrorDuringTheHandshakeIsAFailedConnect() {
        var m = machine([auth], tls: true)
        _ = m.requestSubmitted(backoff: nil)
        _ = m.connectSucceeded(3)
        XCTAssertEqual(m.tlsError(3, reason: "CERTIFICATE_VERIFY_FAILED"),
                       .connectFailed(close: 3, reason: "TLS handshake failed: CERTIFICATE_VERIFY_FAILED", level: .error))
        XCTAssertEqual(m.state, .idle)

        // TLS 1.3: refused only after the client saw its handshake complete, during AUTH.
        _ = m.requestSubmitted(backoff: nil)
        _ = m.connectSucceeded(4)
        _ = m.tlsCompleted(4)
        XCTAssertEqual(m.tlsError(4, reason: "TLSV13_ALERT_CERTIFICATE_REQUIRED"),
                       .connectFailed(close: 4, reason: "TLS handshake failed: TLSV13_ALERT_CERTIFICATE_REQUIRED",
                                      level: .error))
    }

    func testTLSErrorOnAnEstablishedChannelBeforeItsFirstReplyCountsAsAFailedConnect() {
        var m = ready(5)
        XCTAssertEqual(m.tlsError(5, reason: "X"), .tlsError(reason: "X", beforeFirstReply: true))
        // The close that follows names the TLS error.
        XCTAssertEqual(m.channelClosed(5), .lost(why: "TLS: X"))
        XCTAssertEqual(m.state, .idle)

        var answered = ready(6)
        XCTAssertEqual(answered.frameArrived(), .requests)
        XCTAssertEqual(answered.tlsError(6, reason: "Y"), .tlsError(reason: "Y", beforeFirstReply: false))
        XCTAssertEqual(answered.tlsError(9, reason: "Y"), .none, "another channel")
    }

    // MARK: handshake

    func testHandshakeStepsAreAnsweredInOrder() {
        var m = machine([auth, hello])
        _ = m.requestSubmitted(backoff: nil)
        XCTAssertEqual(m.connectSucceeded(2), .sendHandshake(2))
        XCTAssertEqual(m.requestSubmitted(backoff: nil), .wait)
        XCTAssertEqual(m.frameArrived(), .handshake(step: 0))
        XCTAssertEqual(m.handshakeReplied(refusal: nil), .none)
        XCTAssertEqual(m.state, .handshaking(2, step: 1))
        XCTAssertEqual(m.frameArrived(), .handshake(step: 1))
        XCTAssertEqual(m.handshakeReplied(refusal: nil), .established(2))
        XCTAssertEqual(m.frameArrived(), .requests)
        XCTAssertEqual(m.state, .ready(2, answered: true, closeReason: nil))
    }

    func testRefusedStepThatFailsTheConnect() {
        var m = machine([auth, hello])
        _ = m.requestSubmitted(backoff: nil)
        _ = m.connectSucceeded(2)
        XCTAssertEqual(m.handshakeReplied(refusal: "WRONGPASS invalid username-password pair"),
                       .connectFailed(close: 2, reason: "AUTH refused (WRONGPASS invalid username-password pair)",
                                      level: .error))
        XCTAssertEqual(m.state, .idle)
    }

    func testRefusedStepWhoseRefusalAnswersTheRequests() {
        var m = machine([hello])
        _ = m.requestSubmitted(backoff: nil)
        _ = m.connectSucceeded(2)
        XCTAssertEqual(m.handshakeReplied(refusal: "NOAUTH HELLO must be called with the client already authenticated"),
                       .answerWithRefusal(close: 2, message: "NOAUTH HELLO must be called with the client already authenticated"))
        XCTAssertEqual(m.state, .refused, "told apart from a lost channel")
        XCTAssertEqual(m.handshakeReplied(refusal: nil), .none, "no handshake under way")
        XCTAssertEqual(m.requestSubmitted(backoff: nil), .connect, "the next request connects again")
        XCTAssertEqual(m.state, .connecting)
    }

    func testChannelClosedDuringTheHandshakeNamesTheStep() {
        var m = machine([auth, hello])
        _ = m.requestSubmitted(backoff: nil)
        _ = m.connectSucceeded(2)
        _ = m.handshakeReplied(refusal: nil)
        XCTAssertEqual(m.channelClosed(9), .none, "another channel")
        XCTAssertEqual(m.channelClosed(2),
                       .connectFailed(close: 2, reason: "backend closed the connection before answering HELLO 3", level: .warning))
        XCTAssertEqual(m.state, .idle)
    }

    func testHandshakeReplyOverdue() {
        var m = machine([auth])
        _ = m.requestSubmitted(backoff: nil)
        _ = m.connectSucceeded(2)
        XCTAssertEqual(m.replyOverdue(timeoutMilliseconds: 100),
                       .connectFailed(close: 2, reason: "no reply to AUTH within 100 ms", level: .warning))
        XCTAssertEqual(m.state, .idle)
    }

    func testMalformedHandshakeReply() {
        var m = machine([auth])
        _ = m.requestSubmitted(backoff: nil)
        _ = m.connectSucceeded(2)
        XCTAssertEqual(m.malformedReply("invalid bulk length"),
                       .connectFailed(close: 2, reason: "malformed reply to AUTH: invalid bulk length", level: .warning))
    }

    // MARK: established

    func testReplyTimeoutOnAnEstablishedChannel() {
        var m = ready(1)
        XCTAssertEqual(m.replyOverdue(timeoutMilliseconds: 100), .replyTimedOut(1))
        XCTAssertEqual(m.state, .idle)
        // The channel given up closes later: it is not the connection's any more.
        XCTAssertEqual(m.channelClosed(1), .none)
        XCTAssertEqual(m.requestSubmitted(backoff: nil), .connect)
        XCTAssertEqual(m.replyOverdue(timeoutMilliseconds: 100), .none, "a TCP connect has its own timeout")
    }

    func testPeerCloseLosesTheConnection() {
        var m = ready(1)
        XCTAssertEqual(m.channelClosed(2), .none, "a channel given up earlier")
        XCTAssertEqual(m.channelClosed(1), .lost(why: nil))
        XCTAssertEqual(m.state, .idle)
        XCTAssertEqual(m.requestSubmitted(backoff: nil), .connect)
    }

    func testOutOfStepResetsTheConnection() {
        var m = ready(1)
        XCTAssertEqual(m.outOfStep("a reply arrived with no request waiting for one"),
                       .reset(1, what: "a reply arrived with no request waiting for one"))
        XCTAssertEqual(m.state, .idle)
        XCTAssertFalse(m.isCurrent(1), "the rest of the read is not parsed")
        XCTAssertEqual(m.outOfStep("again"), .none)
    }

    func testMalformedReplyClosesTheEstablishedChannel() {
        var m = ready(1)
        XCTAssertEqual(m.malformedReply("bad"), .closeChannel(1))
        // Its close is what loses the connection.
        XCTAssertEqual(m.state, .ready(1, answered: false, closeReason: nil))
        XCTAssertEqual(m.channelClosed(1), .lost(why: nil))
    }

    // MARK: closed

    func testCloseIsForGood() {
        var m = ready(1)
        XCTAssertEqual(m.close(), .closeChannel(1))
        XCTAssertTrue(m.isClosed)
        XCTAssertEqual(m.requestSubmitted(backoff: nil), .failClosed)
        XCTAssertEqual(m.channelClosed(1), .none, "its own close is not a lost connection")
        XCTAssertEqual(m.close(), .none)
    }

    func testCloseWhileConnectingClosesTheChannelThatArrivesLater() {
        var m = machine()
        _ = m.requestSubmitted(backoff: nil)
        XCTAssertEqual(m.close(), .none)
        XCTAssertEqual(m.connectSucceeded(4), .closeChannel(4))
        XCTAssertEqual(m.connectFailed("refused"), .none, "not the backend's failure: nobody waits")
        XCTAssertTrue(m.isClosed)
    }

    func testCloseDuringTheHandshakeIsNotAFailedConnect() {
        var m = machine([auth], tls: true)
        _ = m.requestSubmitted(backoff: nil)
        _ = m.connectSucceeded(4)
        XCTAssertEqual(m.close(), .closeChannel(4))
        XCTAssertEqual(m.channelClosed(4), .none)
        XCTAssertEqual(m.tlsTimedOut(4, milliseconds: 10), .none)
    }
}
