import XCTest
@testable import SluiceHost

/// The rule of when a client connection may move to a newer configuration generation.
final class SafePointTests: XCTestCase {
    let idle = SafePoint(requestsInFlight: 0, requestsHeldBack: false, inTransaction: false, subscribed: false,
                         pluginWorkPending: false, closing: false)

    func testAnIdleConnectionMoves() {
        XCTAssertTrue(idle.allowsMove)
        XCTAssertNil(idle.obstacle)
    }

    func testEachObstacleAloneKeepsTheConnectionWhereItIs() {
        var cases: [(SafePoint, String)] = []
        var p = idle
        p.requestsInFlight = 1  // a blocking command counts here until its reply
        cases.append((p, "requests in flight"))
        p = idle
        p.requestsHeldBack = true
        cases.append((p, "requests held back"))
        p = idle
        p.inTransaction = true
        cases.append((p, "inside MULTI"))
        p = idle
        p.subscribed = true
        cases.append((p, "subscribed or monitoring"))
        p = idle
        p.pluginWorkPending = true
        cases.append((p, "plugin work pending"))
        p = idle
        p.backendStateOnChangedSink = true
        cases.append((p, "its backend session is on a sink the reload changed"))
        p = idle
        p.closing = true
        cases.append((p, "closing"))
        for (point, reason) in cases {
            XCTAssertFalse(point.allowsMove, reason)
            XCTAssertEqual(point.obstacle, reason)
        }
    }

    func testClosingIsNamedFirst() {
        var p = idle
        p.closing = true
        p.inTransaction = true
        p.requestsInFlight = 3
        XCTAssertEqual(p.obstacle, "closing")
    }
}
