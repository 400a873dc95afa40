import Foundation
import NIOCore
import PluginABI
import XCTest
@testable import SluiceHost

/// Mutated RESP through every parser that sees bytes from the network, the way the source handler
/// and the sink connection drive them. A Swift bounds or overflow check failing here would be a host
/// crash on input from a client or a backend. Seeded: a failure repeats, and its seed is printed.
/// `SLUICE_FUZZ_SEED` and `SLUICE_FUZZ_ITERATIONS` run other seeds, or longer, by hand.
final class NetworkInputFuzzTests: XCTestCase {
    private static let environment = ProcessInfo.processInfo.environment
    private static let iterations = environment["SLUICE_FUZZ_ITERATIONS"].flatMap { Int($0) } ?? 60_000
    private static func seed(_ fallback: UInt64) -> UInt64 {
        environment["SLUICE_FUZZ_SEED"].flatMap { UInt64($0) } ?? fallback
    }

    /// SplitMix64: small, seedable, good enough to pick mutations.
    private struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    private static let requestSeeds: [String] = [
        "*1\r\n$4\r\nPING\r\n", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n", "*2\r\n$3\r\nGET\r\n$0\r\n\r\n",
        "*7\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$2\r\npw\r\n$7\r\nSETNAME\r\n$1\r\nx\r\n",
        "*3\r\n$4\r\nAUTH\r\n$3\r\napp\r\n$2\r\npw\r\n", "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n", "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n",
        "*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$1\r\nb\r\n", "*1\r\n$11\r\nUNSUBSCRIBE\r\n", "*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$3\r\nOFF\r\n",
        "*3\r\n$6\r\nCLIENT\r\n$7\r\nSETINFO\r\n$1\r\nx\r\n", "*1\r\n$5\r\nMULTI\r\n", "*1\r\n$4\r\nEXEC\r\n", "*1\r\n$5\r\nRESET\r\n",
        "*6\r\n$5\r\nXREAD\r\n$5\r\nBLOCK\r\n$1\r\n0\r\n$7\r\nSTREAMS\r\n$1\r\ns\r\n$1\r\n0\r\n", "*3\r\n$5\r\nBLPOP\r\n$1\r\nl\r\n$1\r\n0\r\n",
        "*2\r\n$6\r\nSELECT\r\n$1\r\n1\r\n", "*1\r\n$4\r\nQUIT\r\n", "*0\r\n", "*-1\r\n", "SET \"a b\" 'c\\'d' \"\\x41\"\r\n",
        "PING\n", "*1\r\n$7\r\nMONITOR\r\n", "*2\r\n$4\r\nSYNC\r\n$0\r\n\r\n",
    ]

    private static let replySeeds: [String] = [
        "+OK\r\n", "-ERR x\r\n", ":12\r\n", "$3\r\nabc\r\n", "$-1\r\n", "*2\r\n$1\r\na\r\n:1\r\n", "*-1\r\n",
        "%1\r\n+k\r\n*1\r\n_\r\n", ",1.5\r\n", "#t\r\n", "(123\r\n", "=7\r\ntxt:abc\r\n", "!3\r\nerr\r\n", "~1\r\n:1\r\n",
        ">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n", "|1\r\n+a\r\n+b\r\n:2\r\n", "*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n",
        "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n",
    ]

    private static let palette = Array("*$:+-_,#(=!%~>|\r\n0123456789-".utf8)

    private func mutate(_ seed: [UInt8], _ g: inout Generator) -> [UInt8] {
        var bytes = seed
        for _ in 0..<Int.random(in: 1...4, using: &g) {
            let position = bytes.isEmpty ? 0 : Int.random(in: 0..<bytes.count, using: &g)
            switch Int.random(in: 0..<7, using: &g) {
            case 0 where !bytes.isEmpty: bytes[position] = UInt8.random(in: 0...255, using: &g)
            case 1: bytes.insert(Self.palette.randomElement(using: &g)!, at: position)
            case 2 where !bytes.isEmpty: bytes.removeSubrange(position..<min(bytes.count, position + Int.random(in: 1...6, using: &g)))
            case 3: bytes.insert(contentsOf: Array(["9223372036854775807", "-9223372036854775808", "99999999999999999999",
                                                    "-1", "0", "00", "-0"].randomElement(using: &g)!.utf8), at: position)
            case 4 where !bytes.isEmpty:
                let end = min(bytes.count, position + Int.random(in: 1...20, using: &g))
                bytes.insert(contentsOf: bytes[position..<end], at: position)
            case 5: bytes = Array(bytes.prefix(position))
            default: bytes[position...].shuffle(using: &g)
            }
        }
        return bytes
    }

    private func input(_ seeds: [String], _ g: inout Generator) -> [UInt8] {
        var bytes: [UInt8] = []
        for _ in 0..<Int.random(in: 1...3, using: &g) {
            let seed = Array(seeds.randomElement(using: &g)!.utf8)
            bytes += Bool.random(using: &g) ? mutate(seed, &g) : seed
        }
        return bytes
    }

    /// Everything the host asks of a request it accepted.
    private func inspectRequest(_ frame: UnsafeRawBufferPointer, _ auth: RedisClientAuth, _ g: inout Generator) {
        var inTransaction = Bool.random(using: &g)
        _ = RedisLocalAnswers.verdict(frame, inTransaction: &inTransaction)
        _ = auth.screen(frame, authenticated: Bool.random(using: &g), inTransaction: inTransaction,
                        allocator: ByteBufferAllocator())
        _ = RedisConnectionState.needsDedicatedConnection(frame)
        _ = RedisConnectionState.protocolSwitch(frame)
        _ = RedisConnectionState.mayWaitIndefinitely(frame)
        _ = RedisConnectionState.commandName(frame)
        _ = RedisReplyPlan.isSubscriptionCommand(frame)
        _ = RedisReplyPlan.unsubscribeConfirmations(frame)
        _ = RedisReplyPlan.expectedReply(frame)
        var mode = RedisReplyMode()
        _ = mode.answers(frame)
        _ = mode.answers(frame)
        let declared = RESPCommandReader.forEachArgument(frame) { _, start, length in
            XCTAssert(start >= 0 && length >= 0 && start + length <= frame.count)
            return true
        }
        XCTAssertEqual(declared, RESPCommandReader.argumentCount(frame))
    }

    func testRequestsFromClients() {
        let seed = Self.seed(0x5EED_0001)
        var g = Generator(state: seed)
        let auth = RedisClientAuth(users: [.init(name: Array("default".utf8), password: Array("pw".utf8))])
        for iteration in 0..<Self.iterations {
            let bytes = input(Self.requestSeeds, &g)
            var scanner = RESPRequestScanner(maxFrameBytes: 1 << 16)
            bytes.withUnsafeBytes { all in
                var offset = 0
                scanning: while offset < all.count {
                    let rest = UnsafeRawBufferPointer(rebasing: all[offset...])
                    switch scanner.scan(rest) {
                    case .multibulk(let length):
                        XCTAssert(length > 0 && length <= rest.count, "seed \(seed) iteration \(iteration)")
                        inspectRequest(UnsafeRawBufferPointer(rebasing: rest[..<length]), auth, &g)
                        offset += length
                    case .empty(let length):
                        XCTAssert(length > 0 && length <= rest.count, "seed \(seed) iteration \(iteration)")
                        offset += length
                    case .inline(let lineLength, let length):
                        XCTAssert(lineLength <= length && length <= rest.count && length > 0, "seed \(seed) iteration \(iteration)")
                        if let args = try? RESPInlineCommand.arguments(of: UnsafeRawBufferPointer(rebasing: rest[..<lineLength])),
                           !args.isEmpty {
                            let command = RESPEncoding.command(args, allocator: ByteBufferAllocator())
                            command.withUnsafeReadableBytes { inspectRequest($0, auth, &g) }
                        }
                        offset += length
                    case .needMore, .malformed:
                        break scanning
                    }
                }
            }
        }
    }

    func testRepliesFromBackends() {
        let seed = Self.seed(0x5EED_0002)
        var g = Generator(state: seed)
        for iteration in 0..<Self.iterations {
            let bytes = input(Self.replySeeds, &g)
            var scanner = RESPFrameScanner(maxFrameBytes: 1 << 16)
            var offset = 0
            while offset < bytes.count {
                let outcome = bytes.withUnsafeBytes { scanner.scan(UnsafeRawBufferPointer(rebasing: $0[offset...])) }
                guard case .complete(let length) = outcome else { break }
                XCTAssert(length > 0 && offset + length <= bytes.count, "seed \(seed) iteration \(iteration)")
                var frame = ByteBufferAllocator().buffer(capacity: length)
                frame.writeBytes(bytes[offset..<offset + length])
                walk(frame)
                frame.withUnsafeReadableBytes { reply in
                    var remaining: Int?
                    _ = RedisReplyPlan.isPubSubReply(reply, remainingSubscriptions: &remaining)
                }
                offset += length
                scanner.reset()
            }
        }
    }

    /// Walks an accepted reply with the cursor plugins use: every value must lie inside the frame.
    private func walk(_ frame: ByteBuffer) {
        let batch = Batch(kind: Batch.responses, protocolID: Batch.redis, messages: [frame])
        let handle = batch.handOverToPlugin()  // the cursor keeps the batch's handle
        defer { HandleTable.current.retire(handle) }
        batch.withMessageBytes(0) { bytes in
            var cursor = sluice_redis_cursor()
            var value = sluice_redis_value()
            ReplyCursor.initialize(&cursor, batch: handle, generation: batch.generation, bytes: bytes)
            var steps = 0
            while ReplyCursor.next(&cursor, &value) == SLUICE_OK {
                if value.bytes.len > 0 {
                    let start = UnsafeRawPointer(value.bytes.ptr!) - bytes.baseAddress!
                    XCTAssert(start >= 0 && start + value.bytes.len <= bytes.count)
                }
                steps += 1
                XCTAssert(steps <= bytes.count, "the cursor must move forward")
                if steps > bytes.count { break }
            }
        }
    }
}
