import XCTest
@testable import SluiceHost

/// Reply framing, with examples from the RESP2 and RESP3 specifications, fed whole and split at
/// every byte.
final class RESPFrameScannerTests: XCTestCase {
    static let specExamples: [String] = [
        "+OK\r\n",
        "-ERR unknown command 'foobar'\r\n",
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        ":1000\r\n",
        ":-42\r\n",
        "$5\r\nhello\r\n",
        "$0\r\n\r\n",
        "$-1\r\n",
        "*-1\r\n",
        "*0\r\n",
        "*2\r\n$5\r\nhello\r\n$5\r\nworld\r\n",
        "*3\r\n:1\r\n:2\r\n:3\r\n",
        "*5\r\n:1\r\n:2\r\n:3\r\n:4\r\n$5\r\nhello\r\n",
        "*2\r\n*3\r\n:1\r\n:2\r\n:3\r\n*2\r\n+Hello\r\n-World\r\n",
        "*3\r\n$5\r\nhello\r\n$-1\r\n$5\r\nworld\r\n",
        // RESP3
        "_\r\n",
        "#t\r\n",
        "#f\r\n",
        ",1.23\r\n",
        ",inf\r\n",
        "(3492890328409238509324850943850943825024385\r\n",
        "!21\r\nSYNTAX invalid syntax\r\n",
        "=15\r\ntxt:Some string\r\n",
        "%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n",
        "~5\r\n+orange\r\n+apple\r\n#t\r\n:100\r\n:999\r\n",
        "|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n*2\r\n:2039123\r\n:9543892\r\n",
        "*3\r\n:1\r\n|1\r\n+ttl\r\n:3600\r\n:2\r\n:3\r\n",
        ">4\r\n+pubsub\r\n+message\r\n+somechannel\r\n+this is the message\r\n",
        "*1\r\n%1\r\n~1\r\n:1\r\n*0\r\n",
    ]

    func scanWhole(_ text: [UInt8]) -> RESPFrameScanner.Outcome {
        var scanner = RESPFrameScanner(maxFrameBytes: 1 << 20)
        return text.withUnsafeBytes { scanner.scan($0) }
    }

    func testEverySpecExampleIsOneCompleteFrame() {
        for example in Self.specExamples {
            let bytes = Array(example.utf8)
            XCTAssertEqual(scanWhole(bytes), .complete(length: bytes.count), example.debugDescription)
        }
    }

    func testEverySplitPointNeedsMoreThenCompletes() {
        for example in Self.specExamples {
            let bytes = Array(example.utf8)
            for split in 1..<bytes.count {
                var scanner = RESPFrameScanner(maxFrameBytes: 1 << 20)
                let first = Array(bytes[..<split]).withUnsafeBytes { scanner.scan($0) }
                XCTAssertEqual(first, .needMore, "\(example.debugDescription) split at \(split)")
                let whole = bytes.withUnsafeBytes { scanner.scan($0) }
                XCTAssertEqual(whole, .complete(length: bytes.count), "\(example.debugDescription) split at \(split)")
            }
        }
    }

    func testByteByByteResumes() {
        for example in Self.specExamples {
            let bytes = Array(example.utf8)
            var scanner = RESPFrameScanner(maxFrameBytes: 1 << 20)
            var outcome = RESPFrameScanner.Outcome.needMore
            for end in 1...bytes.count {
                outcome = Array(bytes[..<end]).withUnsafeBytes { scanner.scan($0) }
                if end < bytes.count { XCTAssertEqual(outcome, .needMore, example.debugDescription) }
            }
            XCTAssertEqual(outcome, .complete(length: bytes.count), example.debugDescription)
        }
    }

    func testPipelinedFramesAreFoundOneByOne() {
        let all = Self.specExamples.joined()
        var bytes = Array(all.utf8)
        var found = 0
        var scanner = RESPFrameScanner(maxFrameBytes: 1 << 20)
        while !bytes.isEmpty {
            guard case .complete(let length) = bytes.withUnsafeBytes({ scanner.scan($0) }) else {
                return XCTFail("frame \(found) not found")
            }
            XCTAssertEqual(length, Self.specExamples[found].utf8.count)
            bytes.removeFirst(length)
            found += 1
        }
        XCTAssertEqual(found, Self.specExamples.count)
    }

    func testMalformedInputIsReportedNotCrashed() {
        let bad = ["x\r\n", "$abc\r\n", "$-2\r\n", "*-7\r\n", "$3\r\nabcXY", "+OK\rX\n", ":12\r\n$2\r\n"]
        for text in bad.prefix(6) {
            guard case .malformed = scanWhole(Array(text.utf8)) else {
                return XCTFail("\(text.debugDescription) should be malformed")
            }
        }
    }

    func testHugeLengthsAreRefusedEvenWithoutALimit() {
        // The host validates plugin-built values with no size limit: lengths near Int.max must be
        // refused, not overflow.
        for text in ["$9223372036854775807\r\n", "$999999999999999999\r\n", "*9223372036854775807\r\n",
                     "%4611686018427387904\r\n"] {
            var scanner = RESPFrameScanner(maxFrameBytes: Int.max)
            let outcome = Array(text.utf8).withUnsafeBytes { scanner.scan($0) }
            XCTAssertNotEqual(outcome, .complete(length: text.utf8.count), text)
            if case .complete = outcome { XCTFail("\(text.debugDescription) accepted") }
        }
    }

    func testBulkLargerThanLimitIsRefusedBeforeItArrives() {
        var scanner = RESPFrameScanner(maxFrameBytes: 1024)
        let header = Array("$4096\r\n".utf8)
        guard case .malformed = header.withUnsafeBytes({ scanner.scan($0) }) else {
            return XCTFail("oversized bulk accepted")
        }
    }

    func testLargeValueArrivingInChunksIsScannedIncrementally() {
        let payload = [UInt8](repeating: 120, count: 20 * 1024 * 1024)
        var bytes = Array("$\(payload.count)\r\n".utf8) + payload + Array("\r\n".utf8)
        var scanner = RESPFrameScanner(maxFrameBytes: 64 << 20)
        var end = 0
        while end < bytes.count {
            end = min(bytes.count, end + 65_536)
            let outcome = bytes[..<end].withUnsafeBytes { scanner.scan($0) }
            if end < bytes.count { XCTAssertEqual(outcome, .needMore) } else {
                XCTAssertEqual(outcome, .complete(length: bytes.count))
            }
        }
        bytes.removeAll()
    }

    func testNestingAsDeepAsTheFrameAllows() {
        // Redis answers a Lua table that contains itself with `*1` nested ~8,000 levels deep.
        let text = String(repeating: "*1\r\n", count: 100_000) + ":1\r\n"
        XCTAssertEqual(scanWhole(Array(text.utf8)), .complete(length: text.utf8.count))
        // Resumed one level at a time, as it may arrive.
        var scanner = RESPFrameScanner(maxFrameBytes: 1 << 20)
        let bytes = Array(text.utf8)
        for end in stride(from: 4, to: bytes.count, by: 4) {
            XCTAssertEqual(bytes[..<end].withUnsafeBytes { scanner.scan($0) }, .needMore)
        }
        XCTAssertEqual(bytes.withUnsafeBytes { scanner.scan($0) }, .complete(length: bytes.count))
    }
}
