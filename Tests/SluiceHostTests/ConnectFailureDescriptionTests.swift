import NIOCore
import NIOPosix
import XCTest
@testable import SluiceHost

/// A backend connect failure reaches clients' error replies: in words, never NIO's type names.
final class ConnectFailureDescriptionTests: XCTestCase {
    func testARefusedConnectIsSaidInWords() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        // A port nothing listens on: bound, then closed.
        let probe = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        let port = probe.localAddress!.port!
        try probe.close().wait()
        XCTAssertThrowsError(try ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port).wait()) { error in
            XCTAssertTrue("\(error)".contains("SingleConnectionFailure"), "NIO's own text changed: \(error)")
            XCTAssertEqual(ConnectFailureDescription.describe(error), "connection refused")
        }
    }

    func testTimeoutsAndErrnosAreSaidInWords() {
        XCTAssertEqual(ConnectFailureDescription.describe(ChannelError.connectTimeout(.milliseconds(1500))),
                       "no connection within 1500 ms")
        XCTAssertEqual(ConnectFailureDescription.describe(IOError(errnoCode: EHOSTUNREACH, reason: "connect")),
                       "no route to host")
    }
}
