import NIOCore
import XCTest
@testable import SluiceHost

/// Which requests get a reply in band, as redis-server 7 answers them (each sequence was checked
/// against redis-server directly, and the e2e suite compares the bytes through Sluice with it).
final class RedisReplyModeTests: XCTestCase {
    private func answered(_ commands: [[String]]) -> [Bool] {
        var mode = RedisReplyMode()
        return commands.map { command in
            RESPEncoding.command(command.map { Array($0.utf8) }, allocator: ByteBufferAllocator())
                .withUnsafeReadableBytes { mode.answers($0) }
        }
    }

    func testEverythingIsAnsweredByDefault() {
        XCTAssertEqual(answered([["GET", "a"], ["CLIENT", "SETNAME", "x"], ["CLIENT", "REPLY"], ["CLIENT", "REPLY", "BOGUS"]]),
                       [true, true, true, true])
    }

    func testOffUntilOn() {
        XCTAssertEqual(answered([["CLIENT", "REPLY", "OFF"], ["SET", "a", "1"], ["client", "reply", "skip"],
                                 ["GET", "a"], ["CLIENT", "REPLY", "ON"], ["GET", "a"]]),
                       [false, false, false, false, true, true])
    }

    func testSkipSilencesItselfAndTheNextCommand() {
        XCTAssertEqual(answered([["CLIENT", "REPLY", "SKIP"], ["SET", "a", "1"], ["GET", "a"]]), [false, false, true])
        XCTAssertEqual(answered([["CLIENT", "REPLY", "SKIP"], ["CLIENT", "REPLY", "SKIP"], ["GET", "a"], ["GET", "a"]]),
                       [false, false, false, true])
        XCTAssertEqual(answered([["CLIENT", "REPLY", "SKIP"], ["CLIENT", "REPLY", "ON"], ["GET", "a"]]), [false, true, true])
        XCTAssertEqual(answered([["CLIENT", "REPLY", "SKIP"], ["RESET"], ["GET", "a"]]), [false, false, true])
    }

    func testResetTurnsRepliesBackOn() {
        XCTAssertEqual(answered([["CLIENT", "REPLY", "OFF"], ["RESET"], ["GET", "a"]]), [false, true, true])
    }

    func testMonitorStreamsEverythingAfterItUntilReset() {
        XCTAssertEqual(answered([["MONITOR"], ["GET", "a"], ["CLIENT", "REPLY", "ON"], ["RESET"], ["GET", "a"]]),
                       [true, false, false, true, true])
    }

    func testNothingChangesInsideMulti() {
        XCTAssertEqual(answered([["MULTI"], ["MONITOR"], ["EXEC"], ["GET", "a"]]), [true, true, true, true])
        XCTAssertEqual(answered([["MULTI"], ["CLIENT", "REPLY", "OFF"], ["DISCARD"], ["GET", "a"]]), [true, true, true, true])
    }

    func testDedicatedConnectionsCheckNothingInsideMultiOrSilenced() {
        let allocator = ByteBufferAllocator()
        let commands: [[String]] = [["GET", "a"], ["MULTI"], ["GET", "a"], ["EXEC"], ["CLIENT", "REPLY", "SKIP"],
                                    ["INCR", "n"], ["INCR", "n"]]
        let batch = Batch(kind: Batch.requests, protocolID: Batch.redis,
                          messages: commands.map { RESPEncoding.command($0.map { Array($0.utf8) }, allocator: allocator) })
        var mode = RedisReplyMode()
        let plan = RedisReplyPlan.inBand(batch, mode: &mode)
        let kinds = (0..<commands.count).map { (plan.expectedReplies >> UInt64(2 * $0)) & 3 }
        XCTAssertEqual(kinds, [RedisReplyPlan.bulkReply, 0, 0, 0, 0, 0, RedisReplyPlan.integerReply])
        XCTAssertEqual(plan.outOfBand, [false, false, false, false, true, true, false])
    }

    func testExpectedReplyKinds() {
        func kind(_ command: [String]) -> UInt64 {
            RESPEncoding.command(command.map { Array($0.utf8) }, allocator: ByteBufferAllocator())
                .withUnsafeReadableBytes { RedisReplyPlan.expectedReply($0) }
        }
        XCTAssertEqual(kind(["GET", "k"]), RedisReplyPlan.bulkReply)
        XCTAssertEqual(kind(["incr", "k"]), RedisReplyPlan.integerReply)
        XCTAssertEqual(kind(["SET", "k", "v"]), RedisReplyPlan.anyReply)
        XCTAssertEqual(kind(["GETEX", "k"]), RedisReplyPlan.anyReply)
        for name in ["get", "getdel", "getset", "hget", "lindex"] {
            XCTAssertEqual(kind([name, "k"]), RedisReplyPlan.bulkReply, name)
            XCTAssertEqual(kind([name.uppercased(), "k"]), RedisReplyPlan.bulkReply, name)
        }
        for name in ["hlen", "hdel", "hexists", "hsetnx", "hincrby", "hstrlen", "llen", "lpush", "lpushx", "incr",
                     "incrby", "decr", "decrby", "del", "exists", "rpush", "rpushx", "sadd", "srem", "scard", "strlen",
                     "setnx", "unlink", "zcard"] {
            XCTAssertEqual(kind([name, "k"]), RedisReplyPlan.integerReply, name)
            XCTAssertEqual(kind([name.uppercased(), "k"]), RedisReplyPlan.integerReply, name)
        }
        for name in ["ge", "gets", "get_", "g\u{7}t", "GET\u{0}", "mget", "set", "lpop", "hgetall", "sismember"] {
            XCTAssertEqual(kind([name, "k"]), RedisReplyPlan.anyReply, name)
        }
        XCTAssertTrue(RedisReplyPlan.canAnswer(RedisReplyPlan.bulkReply, first: UInt8(ascii: "_")))
        XCTAssertTrue(RedisReplyPlan.canAnswer(RedisReplyPlan.integerReply, first: UInt8(ascii: "-")))
        XCTAssertFalse(RedisReplyPlan.canAnswer(RedisReplyPlan.bulkReply, first: UInt8(ascii: "+")))
        XCTAssertFalse(RedisReplyPlan.canAnswer(RedisReplyPlan.integerReply, first: UInt8(ascii: "$")))
    }
}
