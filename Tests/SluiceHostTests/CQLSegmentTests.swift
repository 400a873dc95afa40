import NIOCore
import XCTest
@testable import SluiceHost

/// v5 segments: the checksums as the spec defines them, segments made by the DataStax driver's
/// SegmentCodec read by Sluice (split at every byte), Sluice's segments read by the driver, CRC
/// mismatches, a large frame across segments, and frames packed into self-contained segments.
final class CQLSegmentTests: XCTestCase {
    private func reader(lz4: Bool, maxFrameBytes: Int = 1 << 20) -> CQLSegmentReader {
        CQLSegmentReader(codec: CQLSegmentCodec(compressed: lz4),
                         scanner: CQLFrameScanner(direction: .requests, maxFrameBytes: maxFrameBytes, negotiatedVersion: .v5))
    }

    private func frames(_ bytes: ByteBuffer, lz4: Bool, maxFrameBytes: Int = 1 << 20) throws -> [ByteBuffer] {
        var reader = reader(lz4: lz4, maxFrameBytes: maxFrameBytes)
        var input = bytes
        var out: [ByteBuffer] = []
        while let frame = try reader.nextFrame(&input) { out.append(frame.bytes) }
        XCTAssertEqual(input.readableBytes, 0)
        return out
    }

    func testChecksumsMatchTheSpecDefinition() {
        // Values computed with the DataStax driver's cassandra.segment compute_crc32 / compute_crc24.
        XCTAssertEqual(Array("123456789".utf8).withUnsafeBytes { CQLChecksums.crc32($0) }, 0xE2A2_61A7)
        XCTAssertEqual([UInt8]().withUnsafeBytes { CQLChecksums.crc32($0) }, 0x4477_7ED3)
        XCTAssertEqual(CQLChecksums.crc24(0, byteCount: 3), 0x7D_E777)
        XCTAssertEqual(CQLChecksums.crc24(0x02_008E, byteCount: 3), 0xCB_76AB)
        XCTAssertEqual(CQLChecksums.crc24(0x4_0000_0000 | (1019 << 17) | 150, byteCount: 5), 0x48_32AE)
    }

    /// The carry-less-multiply fold (x86-64 with PCLMULQDQ) gives zlib's CRC at every length and
    /// alignment, the largest payload included; elsewhere both are zlib.
    func testFoldedCRC32IsZlibsAtEveryLength() {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<(CQLSegmentCodec.maxPayloadLength + 64)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        bytes.withUnsafeBytes { all in
            for offset in 0..<3 {
                for length in Array(0...600) + [4095, 4096, 4097, 65_535, CQLSegmentCodec.maxPayloadLength] {
                    let payload = UnsafeRawBufferPointer(rebasing: all[offset..<(offset + length)])
                    XCTAssertEqual(CQLChecksums.crc32(payload), CQLChecksums.crc32ByZlib(payload), "\(length) at \(offset)")
                }
            }
        }
        #if arch(x86_64)
        print("PCLMULQDQ fold in use: \(CQLChecksums.hasPCLMUL)")
        #endif
        XCTAssertEqual(Array(repeating: UInt8(ascii: "a"), count: 100).withUnsafeBytes { CQLChecksums.crc32($0) },
                       Array(repeating: UInt8(ascii: "a"), count: 100).withUnsafeBytes { CQLChecksums.crc32ByZlib($0) })
    }

    func testDriverSegmentsSplitAtEveryByte() throws {
        for (name, payloadName, lz4) in [("segment_two_frames", "segment_two_frames_payload", false),
                                         ("segment_three_frames_lz4", "segment_three_frames_payload", true)] {
            let segment = try CQLDriverVectors.vector(name)
            let payload = try CQLDriverVectors.vector(payloadName)
            let all = Array(segment.readableBytesView)
            for cut in 0...all.count {
                var reader = reader(lz4: lz4)
                var input = ByteBuffer(bytes: all[..<cut])
                var joined = ByteBuffer()
                while let frame = try reader.nextFrame(&input) { joined.writeImmutableBuffer(frame.bytes) }
                input.writeBytes(all[cut...])
                while let frame = try reader.nextFrame(&input) { joined.writeImmutableBuffer(frame.bytes) }
                XCTAssertEqual(joined, payload, "\(name) cut at \(cut)")
            }
        }
        XCTAssertEqual(try frames(try CQLDriverVectors.vector("segment_three_frames_lz4"), lz4: true).count, 3)
    }

    func testDriverSplitsALargeFrameAcrossSegments() throws {
        let big = try CQLDriverVectors.vector("big_frame_v5")
        for (name, lz4) in [("segment_big", false), ("segment_big_lz4", true)] {
            let found = try frames(try CQLDriverVectors.vector(name), lz4: lz4)
            XCTAssertEqual(found, [big], name)
            // Over the limit: refused at the first segment, from the frame header inside it.
            XCTAssertThrowsError(try frames(try CQLDriverVectors.vector(name), lz4: lz4, maxFrameBytes: 300_000), name) {
                XCTAssertEqual(($0 as? CQLProtocolViolation)?.kind, .oversize)
            }
        }
    }

    func testCRCMismatchesAreViolations() throws {
        let segment = Array(try CQLDriverVectors.vector("segment_two_frames").readableBytesView)
        for position in [0, 2, 3, 5, 6, 40, segment.count - 5, segment.count - 1] {
            var damaged = segment
            damaged[position] ^= 0x10
            XCTAssertThrowsError(try frames(ByteBuffer(bytes: damaged), lz4: false), "byte \(position)") { error in
                let violation = error as! CQLProtocolViolation
                XCTAssertEqual(violation.kind, .checksum, "byte \(position)")
                XCTAssertTrue(violation.message.contains(position < 6 ? "CRC24" : "CRC32"), violation.message)
            }
        }
    }

    /// Sluice's writer: small frames share one self-contained segment, a 400 KB frame gets its own
    /// non-self-contained segments; the driver's SegmentCodec reads them back (plain and LZ4).
    func testSluiceSegmentsReadByTheDriver() throws {
        let small = (0..<3).map { CQLFrameBuilder.query(version: .v5, stream: Int16($0), query: "SELECT \($0) FROM ks.t " + String(repeating: "x", count: 50)) }
        let big = CQLFrameBuilder.query(version: .v5, stream: 9, query: "SELECT * FROM t WHERE k IN (" + (0..<60_000).map(String.init).joined(separator: ",") + ")")
        var items: [String: (kind: String, bytes: ByteBuffer)] = [:]
        for lz4 in [false, true] {
            var writer = CQLSegmentWriter(codec: CQLSegmentCodec(compressed: lz4))
            var output = ByteBuffer()
            for frame in small { writer.append(frame: frame, into: &output) }
            writer.append(frame: big, into: &output)
            writer.append(frame: small[0], into: &output)
            writer.flush(into: &output)
            // Sluice reads its own output back.
            XCTAssertEqual(try frames(output, lz4: lz4), small + [big, small[0]])
            items[lz4 ? "lz4" : "plain"] = (lz4 ? "segments_lz4" : "segments", output)
        }
        let seen = try CQLDriverVectors.check(items)
        for name in ["plain", "lz4"] {
            let segments = try XCTUnwrap(seen[name] as? [[String: Any]], "\(seen[name] ?? "nothing")")
            XCTAssertEqual(segments.map { $0["self_contained"] as? Bool }, [true, false, false, false, true], name)
            var smallPayload = ByteBuffer()
            for frame in small { smallPayload.writeImmutableBuffer(frame) }
            XCTAssertEqual(segments[0]["payload"] as? String, CQLDriverVectors.hex(smallPayload), name)
            let bigHex = segments[1...3].compactMap { $0["payload"] as? String }.joined()
            XCTAssertEqual(bigHex, CQLDriverVectors.hex(big), name)
            XCTAssertEqual(segments[4]["payload"] as? String, CQLDriverVectors.hex(small[0]), name)
            if name == "lz4" { XCTAssertEqual(segments[1]["compressed"] as? Bool, true) }
        }
    }

    /// A 6 MiB frame across 49 segments, arriving in 64 KiB reads, plain and LZ4.
    func testSeveralMiBFrameAcrossSegments() throws {
        let value = ByteBuffer(bytes: (0..<(6 << 20)).map { UInt8(truncatingIfNeeded: ($0 / 3) &* 7) })
        let frame = CQLFrameBuilder.query(version: .v5, stream: 5, query: "INSERT INTO t (k, v) VALUES (1, ?)", values: [.bytes(value)])
        for lz4 in [false, true] {
            var writer = CQLSegmentWriter(codec: CQLSegmentCodec(compressed: lz4))
            var wire = ByteBuffer()
            writer.append(frame: frame, into: &wire)
            writer.flush(into: &wire)
            var reader = reader(lz4: lz4, maxFrameBytes: 8 << 20)
            var input = ByteBuffer()
            var found: [CQLFrame] = []
            while wire.readableBytes > 0 {
                var chunk = wire.readSlice(length: min(65_536, wire.readableBytes))!
                input.writeBuffer(&chunk)
                while let whole = try reader.nextFrame(&input) { found.append(whole) }
            }
            XCTAssertEqual(found.map(\.bytes), [frame], "lz4: \(lz4)")
        }
    }

    func testSegmentStateViolations() throws {
        let codec = CQLSegmentCodec(compressed: false)
        let frame = CQLFrameBuilder.query(version: .v5, stream: 1, query: "SELECT 1")
        // A self-contained segment cut inside a frame.
        var cut = ByteBuffer()
        codec.encode(frame.getSlice(at: 0, length: frame.readableBytes - 2)!, selfContained: true, into: &cut)
        XCTAssertThrowsError(try frames(cut, lz4: false)) { XCTAssertEqual(($0 as? CQLProtocolViolation)?.kind, .malformed) }
        // A self-contained segment while a split frame is unfinished.
        var interleaved = ByteBuffer()
        codec.encode(frame.getSlice(at: 0, length: 12)!, selfContained: false, into: &interleaved)
        codec.encode(frame, selfContained: true, into: &interleaved)
        XCTAssertThrowsError(try frames(interleaved, lz4: false)) { XCTAssertEqual(($0 as? CQLProtocolViolation)?.kind, .malformed) }
        // A split frame whose parts run past its end.
        var overlong = ByteBuffer()
        var padded = frame
        padded.writeString("junk")
        codec.encode(padded, selfContained: false, into: &overlong)
        XCTAssertThrowsError(try frames(overlong, lz4: false)) { XCTAssertEqual(($0 as? CQLProtocolViolation)?.kind, .malformed) }
        // A compressed segment whose LZ4 payload is garbage (with correct CRCs).
        var garbage = ByteBuffer()
        let payload = ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x01])
        let header: UInt64 = UInt64(payload.readableBytes) | (1000 << 17) | (1 << 34)
        for i in 0..<5 { garbage.writeInteger(UInt8(truncatingIfNeeded: header >> (8 * i))) }
        let crc24 = CQLChecksums.crc24(header, byteCount: 5)
        for i in 0..<3 { garbage.writeInteger(UInt8(truncatingIfNeeded: crc24 >> (8 * i))) }
        garbage.writeImmutableBuffer(payload)
        garbage.writeInteger(payload.withUnsafeReadableBytes { CQLChecksums.crc32($0) }, endianness: .little)
        XCTAssertThrowsError(try frames(garbage, lz4: true)) { XCTAssertEqual(($0 as? CQLProtocolViolation)?.kind, .compression) }
    }
}
