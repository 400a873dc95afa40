import NIOCore
import XCTest
@testable import SluiceHost

/// LZ4 and Snappy v4 frame bodies through liblz4 and libsnappy: round trips (empty, small,
/// several MiB), the output bound, and corrupt input as errors.
final class CQLCompressionTests: XCTestCase {
    private func sample(_ count: Int) -> ByteBuffer {
        ByteBuffer(bytes: (0..<count).map { UInt8(truncatingIfNeeded: ($0 / 7) &* 13) })
    }

    func testRoundTrips() throws {
        for compression in CQLCompression.allCases {
            for size in [0, 1, 100, 70_000, 5 << 20] {
                let body = sample(size)
                let packed = compression.compressBody(body)
                XCTAssertEqual(try compression.decompressBody(packed, maxBytes: 8 << 20), body, "\(compression) \(size)")
            }
        }
    }

    func testWholeFramesRoundTrip() throws {
        let frame = CQLFrameBuilder.query(version: .v4, stream: 3, query: "SELECT * FROM t " + String(repeating: "WHERE x ", count: 100))
        for compression in CQLCompression.allCases {
            let packed = CQLFrameBuilder.compressed(frame, with: compression)
            XCTAssertLessThan(packed.readableBytes, frame.readableBytes)
            let (whole, message) = try readMessage(packed, direction: .requests, compression: compression)
            XCTAssertTrue(whole.header.flags.contains(.compression))
            guard case .query(let query) = message else { return XCTFail() }
            XCTAssertTrue(query.queryText.hasPrefix("SELECT * FROM t WHERE x"))
        }
    }

    func testOutputIsBounded() {
        let packed = CQLCompression.lz4.compressBody(sample(100_000))
        XCTAssertThrowsError(try CQLCompression.lz4.decompressBody(packed, maxBytes: 99_999)) {
            XCTAssertEqual(($0 as? CQLProtocolViolation)?.kind, .oversize)
        }
        let snappy = CQLCompression.snappy.compressBody(sample(100_000))
        XCTAssertThrowsError(try CQLCompression.snappy.decompressBody(snappy, maxBytes: 99_999)) {
            XCTAssertEqual(($0 as? CQLProtocolViolation)?.kind, .oversize)
        }
        // An LZ4 length prefix announcing 2 GiB is refused before anything is reserved.
        var huge = ByteBuffer()
        huge.writeInteger(Int32.max)
        huge.writeBytes([0x10, 0x41])
        XCTAssertThrowsError(try CQLCompression.lz4.decompressBody(huge, maxBytes: 1 << 20))
    }

    func testCorruptInputIsAnError() {
        var g = SeededBytes(state: 0xC0DEC)
        for compression in CQLCompression.allCases {
            let packed = Array(compression.compressBody(sample(10_000)).readableBytesView)
            var failures = 0
            for _ in 0..<500 {
                var damaged = packed
                for _ in 0..<3 { damaged[Int.random(in: 0..<damaged.count, using: &g)] = UInt8.random(in: 0...255, using: &g) }
                if Bool.random(using: &g) { damaged.removeLast(Int.random(in: 1..<damaged.count, using: &g)) }
                do {
                    _ = try compression.decompressBody(ByteBuffer(bytes: damaged), maxBytes: 1 << 20)
                } catch {
                    XCTAssertTrue([.compression, .oversize].contains(error.kind))
                    failures += 1
                }
            }
            XCTAssertGreaterThan(failures, 0, "\(compression): damage went unnoticed every time")
        }
        XCTAssertThrowsError(try CQLCompression.lz4.decompressBody(ByteBuffer(bytes: [0, 0]), maxBytes: 100))
        XCTAssertThrowsError(try CQLCompression.snappy.decompressBody(ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]), maxBytes: 100))
    }
}

/// SplitMix64, so a failing damage pattern repeats.
private struct SeededBytes: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
