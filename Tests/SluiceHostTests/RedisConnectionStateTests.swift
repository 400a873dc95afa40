import NIOCore
import XCTest
@testable import SluiceHost

final class RedisConnectionStateTests: XCTestCase {
    private func needsDedicated(_ command: String...) -> Bool { needsDedicated(command) }

    func testSelfContainedCommandsShareAConnection() {
        XCTAssertFalse(needsDedicated("GET", "k"))
        XCTAssertFalse(needsDedicated("set", "k", "v"))
        XCTAssertFalse(needsDedicated("CLIENTS"))  // not CLIENT
    }

    func testConnectionStateNeedsADedicatedConnection() {
        for command in [["SELECT", "1"], ["auth", "pw"], ["HELLO", "3"], ["MULTI"], ["WATCH", "k"], ["BLPOP", "q", "0"],
                        ["SUBSCRIBE", "c"], ["CLIENT", "SETNAME", "x"], ["client", "id"], ["CLIENT", "TRACKING", "on"],
                        ["CLIENT", "NO-EVICT", "on"], ["CLIENT"]] {
            XCTAssertTrue(needsDedicated(command), "\(command)")
        }
    }

    func testClientSubcommandsWithoutConnectionStateShare() {
        // SETINFO only labels the connection (client libraries send it on connect); the others act
        // on the whole server.
        for command in [["CLIENT", "SETINFO", "LIB-NAME", "redis-py"], ["client", "setinfo", "lib-ver", "8.1.0"],
                        ["CLIENT", "MAINT_NOTIFICATIONS", "ON", "moving-endpoint-type", "internal-fqdn"],
                        ["CLIENT", "LIST"], ["CLIENT", "KILL", "ID", "7"], ["CLIENT", "PAUSE", "10"],
                        ["CLIENT", "UNPAUSE"], ["CLIENT", "HELP"]] {
            XCTAssertFalse(needsDedicated(command), "\(command)")
        }
    }

    private func needsDedicated(_ command: [String]) -> Bool {
        let bytes = RESPEncoding.command(command.map { Array($0.utf8) }, allocator: ByteBufferAllocator())
        return bytes.withUnsafeReadableBytes(RedisConnectionState.needsDedicatedConnection)
    }
}
