import XCTest
@testable import SluiceHost

/// When a connection's framing changes: only a READY or AUTHENTICATE answer to STARTUP switches it.
final class CQLFramingTests: XCTestCase {
    func testTheStartupAnswerSwitchesFraming() {
        let start = CQLFraming.handshake
        XCTAssertEqual(start.afterStartupAnswer(.ready, version: .v5, compression: nil), .segments(lz4: false))
        XCTAssertEqual(start.afterStartupAnswer(.authenticate, version: .v5, compression: .lz4), .segments(lz4: true))
        XCTAssertEqual(start.afterStartupAnswer(.ready, version: .v4, compression: .snappy), .frames(compression: .snappy))
        XCTAssertEqual(start.afterStartupAnswer(.authenticate, version: .v4, compression: nil), .frames(compression: nil))
        XCTAssertEqual(start.afterStartupAnswer(.error, version: .v5, compression: .lz4), .handshake)
        XCTAssertEqual(start.afterStartupAnswer(.supported, version: .v5, compression: nil), .handshake)
        // Once switched, later answers (READY after AUTH_SUCCESS is not sent, but a second
        // AUTHENTICATE must not reset anything) change nothing.
        let switched = start.afterStartupAnswer(.authenticate, version: .v5, compression: .lz4)
        XCTAssertEqual(switched.afterStartupAnswer(.ready, version: .v5, compression: nil), switched)
        XCTAssertEqual(switched.segmentCodec?.compressed, true)
        XCTAssertNil(switched.bodyCompression)
        XCTAssertEqual(CQLFraming.frames(compression: .lz4).bodyCompression, .lz4)
        XCTAssertNil(CQLFraming.handshake.segmentCodec)
        XCTAssertFalse(CQLCompression.snappy.isAvailable(in: .v5))
        XCTAssertTrue(CQLCompression.snappy.isAvailable(in: .v4))
        XCTAssertEqual(CQLCompression(startupName: "LZ4"), .lz4)
    }
}
