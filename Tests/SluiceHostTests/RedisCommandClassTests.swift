import NIOCore
import XCTest
@testable import SluiceHost

/// A plain request (`RedisCommandClass`) lets every per-request check skip it: so each of those
/// checks must treat every plain command as nothing special.
final class RedisCommandClassTests: XCTestCase {
    /// The names `RedisReplyPlan.expectedReply` knows a reply kind for (plain however long).
    static let knownReplyNames = ["get", "hget", "getdel", "getset", "lindex", "del", "decr", "hdel", "hlen", "incr",
                                  "llen", "sadd", "srem", "lpush", "rpush", "scard", "setnx", "zcard", "decrby",
                                  "exists", "hsetnx", "incrby", "lpushx", "rpushx", "strlen", "unlink", "hexists",
                                  "hincrby", "hstrlen"]

    private func request(_ name: String, arguments: Int) -> ByteBuffer {
        var text = "*\(arguments + 1)\r\n$\(name.utf8.count)\r\n\(name)\r\n"
        for i in 0..<arguments { text += "$1\r\n\(i)\r\n" }
        return ByteBuffer(string: text)
    }

    private func assertNothingSpecial(_ name: String, file: StaticString = #filePath, line: UInt = #line) {
        for arguments in [0, 1, 2] {
            let message = request(name, arguments: arguments)
            message.withUnsafeReadableBytes { bytes in
                XCTAssertNotNil(RedisCommandClass.plainReply(bytes), "\(name) is not plain", file: file, line: line)
                XCTAssertFalse(RedisConnectionState.needsDedicatedConnection(bytes), name, file: file, line: line)
                XCTAssertFalse(RedisConnectionState.mayWaitIndefinitely(bytes), name, file: file, line: line)
                XCTAssertNil(RedisConnectionState.protocolSwitch(bytes), name, file: file, line: line)
                XCTAssertNil(RedisSessionChange.change(of: bytes), name, file: file, line: line)
                XCTAssertFalse(RedisReplyPlan.isSubscriptionCommand(bytes), name, file: file, line: line)
                XCTAssertNil(RedisReplyPlan.unsubscribeConfirmations(bytes), name, file: file, line: line)
                for inTransaction in [false, true] {
                    var state = inTransaction
                    XCTAssertEqual(RedisLocalAnswers.verdict(bytes, inTransaction: &state), .forward, name, file: file, line: line)
                    XCTAssertEqual(state, inTransaction, "\(name) moved the transaction state", file: file, line: line)
                }
                var mode = RedisReplyMode()
                XCTAssertTrue(mode.answers(bytes), name, file: file, line: line)
                XCTAssertTrue(mode.answers(bytes), name, file: file, line: line)
                XCTAssertFalse(mode.isMonitoring || mode.isInTransaction, name, file: file, line: line)
            }
            let log = ClientStateLog()
            log.record(Batch(kind: Batch.requests, protocolID: Batch.redis, messages: [message]))
            XCTAssertEqual(log.lastSequence, 0, "\(name) was logged as a connection setting", file: file, line: line)
        }
    }

    func testEveryNameOfUpToThreeLettersIsPlainAndNothingSpecialToAnyCheck() {
        let letters = Array("abcdefghijklmnopqrstuvwxyz")
        var names = letters.map { String($0) }
        for a in letters { for b in letters { names.append(String([a, b])) } }
        for a in letters { for b in letters { for c in letters { names.append(String([a, b, c])) } } }
        for name in names { assertNothingSpecial(name) }
    }

    func testEveryNameWithAKnownReplyKindIsPlainAndNothingSpecialToAnyCheck() {
        for name in Self.knownReplyNames {
            assertNothingSpecial(name)
            assertNothingSpecial(name.uppercased())
        }
    }

    func testSpecialCommandsAreNotPlain() {
        for name in ["hello", "select", "auth", "client", "reset", "multi", "exec", "discard", "quit", "subscribe",
                     "unsubscribe", "monitor", "blpop", "watch", "replconf", "psync", "sync", "set4", "mset", "ping"] {
            request(name, arguments: 1).withUnsafeReadableBytes {
                XCTAssertNil(RedisCommandClass.plainReply($0), name)
            }
        }
    }

    func testTheMarkSurvivesACopyButNotAChange() {
        let batch = Batch(kind: Batch.requests, protocolID: Batch.redis, messages: [request("get", arguments: 1)])
        batch.markPlain(expectedReplies: RedisReplyPlan.bulkReply)
        XCTAssertEqual(RedisReplyPlan.expectedReplies(batch), RedisReplyPlan.bulkReply)
        let copy = batch.copy()
        XCTAssertTrue(copy.plainRequests)
        copy.put(request("hello", arguments: 1), at: 0)
        XCTAssertFalse(copy.plainRequests, "a changed batch kept its plain mark")
        XCTAssertEqual(RedisReplyPlan.expectedReplies(copy), RedisReplyPlan.anyReply)
        XCTAssertNotNil(RedisSessionChange.changes(in: copy))
        batch.remove(at: 0)
        XCTAssertFalse(batch.plainRequests)
        let reused = Batch(kind: Batch.requests, protocolID: Batch.redis, messages: [request("get", arguments: 1)])
        reused.markPlain(expectedReplies: 0)
        reused.clearForReuse()
        XCTAssertFalse(reused.plainRequests)
    }
}
