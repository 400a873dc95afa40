import XCTest
@testable import SluiceHost

final class RESPRequestScannerTests: XCTestCase {
    func scan(_ bytes: [UInt8], max: Int = 1 << 20) -> RESPRequestScanner.Outcome {
        var scanner = RESPRequestScanner(maxFrameBytes: max)
        return bytes.withUnsafeBytes { scanner.scan($0) }
    }

    func testMultibulkAtEverySplitPoint() {
        let requests = ["*1\r\n$4\r\nPING\r\n", "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n",
                        "*2\r\n$3\r\nGET\r\n$0\r\n\r\n", "*3\r\n$3\r\nSET\r\n$4\r\nk\r\n\0\r\n$2\r\n\u{1}\u{2}\r\n"]
        for r in requests {
            let bytes = Array(r.utf8)
            for split in 1..<bytes.count {
                var scanner = RESPRequestScanner(maxFrameBytes: 1 << 20)
                XCTAssertEqual(Array(bytes[..<split]).withUnsafeBytes { scanner.scan($0) }, .needMore)
                XCTAssertEqual(bytes.withUnsafeBytes { scanner.scan($0) }, .multibulk(length: bytes.count))
            }
        }
    }

    func testInlineCommands() {
        XCTAssertEqual(scan(Array("PING\r\n".utf8)), .inline(lineLength: 4, length: 6))
        XCTAssertEqual(scan(Array("PING\n".utf8)), .inline(lineLength: 4, length: 5))
        XCTAssertEqual(scan(Array("PIN".utf8)), .needMore)
    }

    func testInlineQuoting() throws {
        func args(_ line: String) throws -> [String] {
            try Array(line.utf8).withUnsafeBytes { try RESPInlineCommand.arguments(of: $0) }
                .map { String(decoding: $0, as: UTF8.self) }
        }
        XCTAssertEqual(try args("SET  key   value"), ["SET", "key", "value"])
        XCTAssertEqual(try args("SET \"a key\" 'it\\'s'"), ["SET", "a key", "it's"])
        XCTAssertEqual(try args("SET k \"x\\ny\\x41\""), ["SET", "k", "x\nyA"])
        XCTAssertEqual(try args("   "), [])
        XCTAssertThrowsError(try args("SET \"unterminated"))
        XCTAssertThrowsError(try args("SET \"a\"b"))
    }

    func testMalformedRequests() {
        for bad in ["*x\r\n", "*2\r\n:1\r\n", "*1\r\n$-5\r\n",
                    // lengths that would overflow Int arithmetic: refused, never a trap
                    "*1\r\n$9223372036854775807\r\n", "*1\r\n$99999999999999999999\r\n", "*9223372036854775807\r\n",
                    // forms redis-server's own parser refuses (leading zeros, minus zero)
                    "*0000\r\n", "*01\r\n$4\r\nPING\r\n", "*1\r\n$04\r\nPING\r\n", "*-0\r\n"] {
            guard case .malformed = scan(Array(bad.utf8)) else { return XCTFail("\(bad.debugDescription) accepted") }
        }
    }

    func testEmptyMultibulkIsSkippedNotForwarded() {
        XCTAssertEqual(scan(Array("*0\r\n".utf8)), .empty(length: 4))
        XCTAssertEqual(scan(Array("*-1\r\n*1\r\n$4\r\nPING\r\n".utf8)), .empty(length: 5))
        XCTAssertEqual(scan(Array("*-100\r\n".utf8)), .empty(length: 7))
    }

    func testOversizedRequestIsRefusedFromItsHeader() {
        guard case .malformed(let message) = scan(Array("*2\r\n$3\r\nSET\r\n$99999999\r\n".utf8), max: 4096) else {
            return XCTFail("oversized request accepted")
        }
        // Redis's words for the client (clients match on them), the configured limit for the log.
        XCTAssertEqual(message, "invalid bulk length")
        var scanner = RESPRequestScanner(maxFrameBytes: 4096)
        _ = Array("*2\r\n$3\r\nSET\r\n$99999999\r\n".utf8).withUnsafeBytes { scanner.scan($0) }
        XCTAssertEqual(scanner.detail, "request larger than max_frame_bytes (4096)")
    }

    func testBytesAfterABulkAreSkippedAsRedisDoes() {
        // redis-server reads "$3\r\nabcde" as "abc" and skips two bytes without checking them.
        XCTAssertEqual(scan(Array("*1\r\n$3\r\nabcde*1\r\n".utf8)), .multibulk(length: 13))
    }

    func testRedisWordingForLinesThatNeverEnd() {
        let digits = Array(repeating: UInt8(ascii: "1"), count: 10)
        XCTAssertEqual(scan(Array("*".utf8) + digits), .needMore)
        XCTAssertEqual(scan(Array("*".utf8) + Array(repeating: UInt8(ascii: "1"), count: 70_000)),
                       .malformed("too big mbulk count string"))
        XCTAssertEqual(scan(Array("*1\r\n$".utf8) + Array(repeating: UInt8(ascii: "x"), count: 70_000)),
                       .malformed("invalid bulk length"))
    }

    func testUnauthenticatedClientsGetRedisLimits() {
        func scan(_ text: String, unauthenticated: Bool) -> RESPRequestScanner.Outcome {
            var scanner = RESPRequestScanner(maxFrameBytes: 1 << 20)
            scanner.unauthenticated = unauthenticated
            return Array(text.utf8).withUnsafeBytes { scanner.scan($0) }
        }
        let eleven = "*11\r\n" + String(repeating: "$1\r\nx\r\n", count: 11)
        XCTAssertEqual(scan(eleven, unauthenticated: true), .malformed("unauthenticated multibulk length"))
        XCTAssertEqual(scan("*11\r\n", unauthenticated: true), .malformed("unauthenticated multibulk length"))
        XCTAssertEqual(scan(eleven, unauthenticated: false), .multibulk(length: eleven.utf8.count))
        let ten = "*10\r\n" + String(repeating: "$1\r\nx\r\n", count: 10)
        XCTAssertEqual(scan(ten, unauthenticated: true), .multibulk(length: ten.utf8.count))
        // Refused from the length line, before any of the value arrived.
        XCTAssertEqual(scan("*2\r\n$4\r\nAUTH\r\n$16385\r\n", unauthenticated: true), .malformed("unauthenticated bulk length"))
        XCTAssertEqual(scan("*2\r\n$4\r\nAUTH\r\n$16384\r\n", unauthenticated: true), .needMore)
        XCTAssertEqual(scan("*2\r\n$4\r\nAUTH\r\n$16385\r\n", unauthenticated: false), .needMore)
    }
}
