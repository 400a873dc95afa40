import NIOCore
import XCTest
@testable import SluiceHost

final class ClientStateLogTests: XCTestCase {
    private let allocator = ByteBufferAllocator()

    private func batch(_ commands: [[String]]) -> Batch {
        Batch(kind: Batch.requests, protocolID: Batch.redis,
              messages: commands.map { RESPEncoding.command($0.map { Array($0.utf8) }, allocator: allocator) })
    }

    /// The commands of a replay batch, as argument lists.
    private func commands(_ replay: Batch?) -> [[String]] {
        guard let replay else { return [] }
        return (0..<replay.count).map { i in
            replay.withMessageBytes(i) { bytes in
                var args: [String] = []
                RESPCommandReader.forEachArgument(bytes) { _, start, length in
                    args.append(String(decoding: bytes[start..<start + length], as: UTF8.self))
                    return true
                }
                return args
            }
        }
    }

    func testOnlyConnectionSettingsAreLoggedInOrder() {
        let log = ClientStateLog()
        log.record(batch([["GET", "k"], ["hello", "3"], ["SET", "k", "v"], ["AUTH", "user", "pw"], ["SELECTX", "1"]]))
        XCTAssertEqual(log.lastSequence, 2)
        // Replayed in Redis's order: a new connection refuses HELLO before it is authenticated.
        XCTAssertEqual(commands(log.replay(after: 0)), [["AUTH", "user", "pw"], ["hello", "3"]])
        XCTAssertEqual(commands(log.replay(after: 1)), [["AUTH", "user", "pw"]])
        XCTAssertNil(log.replay(after: 2))
    }

    func testAProtocolSwitchIsReplayedAfterTheAuthThatFollowedIt() {
        let log = ClientStateLog()
        log.record(batch([["HELLO", "2"], ["SELECT", "1"], ["HELLO", "3"], ["AUTH", "a", "1"], ["AUTH", "b", "2"]]))
        XCTAssertEqual(commands(log.replay(after: 0)),
                       [["HELLO", "2"], ["SELECT", "1"], ["AUTH", "a", "1"], ["AUTH", "b", "2"], ["HELLO", "3"]])
        // A HELLO with options between them keeps the order: moving the switch would override it.
        let other = ClientStateLog()
        other.record(batch([["HELLO", "3"], ["HELLO", "2", "SETNAME", "x"], ["AUTH", "a", "1"]]))
        XCTAssertEqual(commands(other.replay(after: 0)), [["HELLO", "3"], ["HELLO", "2", "SETNAME", "x"], ["AUTH", "a", "1"]])
        // Already in Redis's order: unchanged.
        let ordered = ClientStateLog()
        ordered.record(batch([["AUTH", "a", "1"], ["HELLO", "3"]]))
        XCTAssertEqual(commands(ordered.replay(after: 0)), [["AUTH", "a", "1"], ["HELLO", "3"]])
    }

    func testALaterSelectSupersedesAnEarlierOne() {
        let log = ClientStateLog()
        log.record(batch([["SELECT", "1"], ["HELLO", "3"]]))
        log.record(batch([["select", "2"]]))
        XCTAssertEqual(commands(log.replay(after: 0)), [["HELLO", "3"], ["select", "2"]])
        // A route that already saw SELECT 1 and HELLO still needs SELECT 2.
        XCTAssertEqual(commands(log.replay(after: 2)), [["select", "2"]])
    }

    func testResetForgetsEverythingBeforeIt() {
        let log = ClientStateLog()
        log.record(batch([["SELECT", "4"], ["HELLO", "3"], ["RESET"]]))
        XCTAssertEqual(commands(log.replay(after: 0)), [["RESET"]])
        XCTAssertEqual(log.lastSequence, 3)
    }

    func testNothingLoggedCostsNothing() {
        let log = ClientStateLog()
        log.record(batch([["GET", "a"], ["MGET", "a", "b"], ["PING"]]))
        XCTAssertEqual(log.lastSequence, 0)
        XCTAssertNil(log.replay(after: 0))
    }

    /// Tee's case: its target's route logs a batch first, then the primary's route sends a copy of
    /// the same batch; the primary must neither replay the batch's own requests nor log them again.
    func testACopyOfABatchIsNeitherReplayedNorLoggedAgain() {
        let log = ClientStateLog()
        let first = batch([["HELLO", "3"]])
        log.record(first)
        let second = batch([["HELLO", "2"], ["SELECT", "1"], ["SELECT", "2"]])
        log.record(second.copy())  // the target's route: it saw everything before
        XCTAssertEqual(log.lastSequence, 4)
        // The primary's route saw only the first batch: nothing to replay, the batch carries it all.
        XCTAssertNil(log.replay(after: 1, sending: second))
        XCTAssertNil(log.missed(after: 1, sending: second))
        log.record(second)  // not logged twice, not even the superseded SELECT 1
        XCTAssertEqual(log.lastSequence, 4)
        XCTAssertEqual(commands(log.replay(after: 0)), [["HELLO", "3"], ["HELLO", "2"], ["SELECT", "2"]])
        // The same bytes read again are a new request (a client may send HELLO 2 twice).
        let again = batch([["HELLO", "2"]])
        XCTAssertEqual(commands(log.replay(after: 4, sending: again)), [])
        log.record(again)
        XCTAssertEqual(log.lastSequence, 5)
        // A route that missed more than the batch it sends replays only what it missed.
        XCTAssertEqual(commands(log.replay(after: 1, sending: again)), [["HELLO", "2"], ["SELECT", "2"]])
    }
}
