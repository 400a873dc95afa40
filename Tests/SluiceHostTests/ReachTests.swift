import NIOCore
import XCTest
@testable import SluiceHost

/// The host sides of redis_set_arg / redis_splice_arg, call_answer's merging and the session facts.
final class ReachTests: XCTestCase {
    private let allocator = ByteBufferAllocator()

    private func command(_ args: [String]) -> ByteBuffer {
        RESPEncoding.command(args.map { Array($0.utf8) }, allocator: allocator)
    }

    private func text(_ buffer: ByteBuffer?) -> String? {
        buffer.map { String(decoding: $0.readableBytesView, as: UTF8.self) }
    }

    private func splice(_ args: [String], _ argument: Int, _ offset: Int, _ removing: Int?, _ new: String) -> String? {
        let message = command(args)
        return message.withUnsafeReadableBytes { bytes in
            Array(new.utf8).withUnsafeBytes {
                text(RESPArgumentSplice.splice(bytes, argument: argument, offset: offset, removing: removing,
                                               replacement: $0, allocator: allocator))
            }
        }
    }

    func testSetArgReplacesOneArgumentAndKeepsTheRestByteForByte() {
        XCTAssertEqual(splice(["SET", "k", "value"], 1, 0, nil, "longer-key"),
                       text(command(["SET", "longer-key", "value"])))
        XCTAssertEqual(splice(["SET", "k", "value"], 2, 0, nil, ""), text(command(["SET", "k", ""])))
        XCTAssertEqual(splice(["GET", "k"], 0, 0, nil, "get"), text(command(["get", "k"])))
        XCTAssertNil(splice(["GET", "k"], 2, 0, nil, "x"))  // no such argument
    }

    func testSpliceReplacesAByteRange() {
        XCTAssertEqual(splice(["GET", "key"], 1, 0, 0, "ns:"), text(command(["GET", "ns:key"])))
        XCTAssertEqual(splice(["GET", "old:key"], 1, 0, 4, "new:"), text(command(["GET", "new:key"])))
        XCTAssertEqual(splice(["GET", "key"], 1, 3, 0, "!"), text(command(["GET", "key!"])))
        XCTAssertNil(splice(["GET", "key"], 1, 2, 2, "x"))  // beyond the argument
        XCTAssertNil(splice(["GET", "key"], 1, 4, 0, "x"))
    }

    func testTheNewBytesMayComeFromTheMessageBeingReplaced() {
        let message = command(["SET", "key", "a-much-longer-value"])
        let edited = message.withUnsafeReadableBytes { bytes -> ByteBuffer? in
            var value: UnsafeRawBufferPointer?
            RESPCommandReader.forEachArgument(bytes) { i, start, length in
                if i == 2 { value = UnsafeRawBufferPointer(rebasing: bytes[start..<start + length]) }
                return true
            }
            return RESPArgumentSplice.splice(bytes, argument: 1, offset: 0, removing: nil, replacement: value!,
                                             allocator: allocator)
        }
        XCTAssertEqual(text(edited), text(command(["SET", "a-much-longer-value", "a-much-longer-value"])))
    }

    func testLocalAnswersGoBackInTheirPlaces() {
        var answers = LocalAnswers()
        answers.set(RESPEncoding.error("ERR one", allocator: allocator), at: 1)
        answers.set(RESPEncoding.error("ERR three", allocator: allocator), at: 3)
        answers.set(RESPEncoding.error("ERR 1", allocator: allocator), at: 1)  // replaces
        let requests = Batch(kind: Batch.requests, protocolID: Batch.redis,
                             messages: (0..<5).map { command(["GET", "k\($0)"]) })
        let rest = answers.unanswered(requests)
        XCTAssertEqual(rest.count, 3)
        XCTAssertEqual(text(rest.messages[1]), text(command(["GET", "k2"])))
        XCTAssertTrue(answers.fit(5))
        XCTAssertFalse(answers.fit(3))
        let forwarded = Batch(kind: Batch.responses, protocolID: Batch.redis,
                              messages: ["+a\r\n", "+b\r\n", "+c\r\n"].map { ByteBuffer(string: $0) })
        let merged = answers.merged(.responses(forwarded), requests: requests, allocator: allocator)
        XCTAssertEqual(merged.messages.map { text($0)! }, ["+a\r\n", "-ERR 1\r\n", "+b\r\n", "-ERR three\r\n", "+c\r\n"])
        let failed = answers.merged(.failed("down"), requests: requests, allocator: allocator)
        XCTAssertEqual(failed.messages.map { text($0)! },
                       ["-ERR down\r\n", "-ERR 1\r\n", "-ERR down\r\n", "-ERR three\r\n", "-ERR down\r\n"])
    }

    private func change(_ args: [String]) -> RedisSessionChange? {
        command(args).withUnsafeReadableBytes { RedisSessionChange.change(of: $0) }
    }

    func testSessionCommandsAreRecognised() {
        XCTAssertEqual(change(["select", "4"]), .select(4))
        XCTAssertNil(change(["SELECT", "x"]))
        XCTAssertEqual(change(["AUTH", "pw"]), .auth(user: Array("default".utf8)))
        XCTAssertEqual(change(["AUTH", "alice", "pw"]), .auth(user: Array("alice".utf8)))
        XCTAssertEqual(change(["client", "SETNAME", "app"]), .setName(Array("app".utf8)))
        XCTAssertNil(change(["CLIENT", "ID"]))
        XCTAssertEqual(change(["HELLO", "3", "AUTH", "u", "p", "SETNAME", "n"]),
                       .hello(version: 3, user: Array("u".utf8), name: Array("n".utf8)))
        XCTAssertEqual(change(["HELLO"]), .hello(version: nil, user: nil, name: nil))
        XCTAssertNil(change(["HELLO", "3", "BOGUS"]))
        XCTAssertEqual(change(["RESET"]), .reset)
        XCTAssertNil(change(["GET", "k"]))
        XCTAssertNil(change(["SELECTED", "1"]))
    }

    func testOnlySuccessRepliesChangeTheFacts() {
        let ok = Array("+OK\r\n".utf8), queued = Array("+QUEUED\r\n".utf8), error = Array("-ERR no\r\n".utf8)
        func succeeded(_ change: RedisSessionChange, _ reply: [UInt8]) -> Bool {
            reply.withUnsafeBytes { RedisSessionChange.succeeded(change, reply: $0) }
        }
        XCTAssertTrue(succeeded(.select(1), ok))
        XCTAssertFalse(succeeded(.select(1), queued))
        XCTAssertFalse(succeeded(.select(1), error))
        XCTAssertTrue(succeeded(.hello(version: 3, user: nil, name: nil), Array("%7\r\n".utf8)))
        XCTAssertFalse(succeeded(.hello(version: 3, user: nil, name: nil), Array("-NOPROTO x\r\n".utf8)))
        XCTAssertTrue(succeeded(.reset, Array("+RESET\r\n".utf8)))
    }
}
