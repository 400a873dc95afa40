import NIOCore
import XCTest
@testable import SluiceHost

/// The frame boundary scanner: whole frames from a stream split anywhere, large frames, and the
/// violations (oversize, unsupported or changed version, wrong direction, bad length or opcode),
/// each with the ERROR frame the peer gets.
final class CQLFrameScannerTests: XCTestCase {
    private let allocator = ByteBufferAllocator()

    private func frames(_ stream: ByteBuffer, scanner: CQLFrameScanner) throws -> [CQLFrame] {
        var input = stream
        var out: [CQLFrame] = []
        while let frame = try scanner.nextFrame(&input) { out.append(frame) }
        return out
    }

    /// Three different frames back to back, fed in two pieces cut at every byte boundary.
    func testFramesSplitAtEveryByte() throws {
        var stream = CQLFrameBuilder.query(version: .v4, stream: 1, query: "SELECT * FROM ks.t", values: [.bytes(ByteBuffer(string: "v"))])
        var second = CQLFrameBuilder.query(version: .v4, stream: 2, query: "USE ks")
        var third = CQLFrameBuilder.frame(version: .v4, isResponse: false, stream: 3, opcode: .options) { _ in }
        let longest = max(stream.readableBytes, second.readableBytes, third.readableBytes)
        stream.writeBuffer(&second)
        stream.writeBuffer(&third)
        let all = Array(stream.readableBytesView)
        // Before and after the version is settled (the header is then read in one look in place).
        for scanner in [CQLFrameScanner(direction: .requests, maxFrameBytes: 1 << 20),
                        CQLFrameScanner(direction: .requests, maxFrameBytes: 1 << 20, negotiatedVersion: .v4)] {
        for cut in 0...all.count {
            var buffer = allocator.buffer(capacity: all.count)
            buffer.writeBytes(all[..<cut])
            var seen: [Int16] = []
            while let frame = try scanner.nextFrame(&buffer) { seen.append(frame.header.stream) }
            let afterFirstPiece = buffer.readableBytes
            buffer.writeBytes(all[cut...])
            while let frame = try scanner.nextFrame(&buffer) { seen.append(frame.header.stream) }
            XCTAssertEqual(seen, [1, 2, 3], "cut at \(cut)")
            XCTAssertEqual(buffer.readableBytes, 0, "cut at \(cut)")
            XCTAssertLessThan(afterFirstPiece, longest, "only a partial frame is left over")
        }
        // And byte by byte.
        var buffer = allocator.buffer(capacity: all.count)
        var seen: [Int16] = []
        for byte in all {
            buffer.writeInteger(byte)
            while let frame = try scanner.nextFrame(&buffer) { seen.append(frame.header.stream) }
        }
        XCTAssertEqual(seen, [1, 2, 3])
        }
    }

    /// A 6 MiB frame arriving in 64 KiB reads: complete only at its last byte, carried exactly.
    func testSeveralMiBFrame() throws {
        let value = ByteBuffer(bytes: (0..<(6 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        let frame = CQLFrameBuilder.query(version: .v5, stream: 77, query: "INSERT INTO t (k, v) VALUES (1, ?)", values: [.bytes(value)])
        let scanner = CQLFrameScanner(direction: .requests, maxFrameBytes: 8 << 20)
        var input = allocator.buffer(capacity: frame.readableBytes)
        var rest = frame
        var found: CQLFrame?
        while rest.readableBytes > 0 {
            var chunk = rest.readSlice(length: min(65_536, rest.readableBytes))!
            input.writeBuffer(&chunk)
            if let whole = try scanner.nextFrame(&input) {
                XCTAssertEqual(rest.readableBytes, 0, "whole before its last byte arrived")
                found = whole
            }
        }
        let whole = try XCTUnwrap(found)
        XCTAssertEqual(whole.bytes, frame)
        guard case .query(let query) = try CQLMessage(frame: whole, compression: nil, maxBodyBytes: 8 << 20) else { return XCTFail() }
        XCTAssertEqual(query.parameters.values.value(at: 0), .bytes(value))
    }

    func testOversizeFrameRefusedFromItsHeader() throws {
        var header = allocator.buffer(capacity: 9)
        CQLFrameHeader(version: .v4, isResponse: false, stream: 9, opcode: .query, bodyLength: 2_000_000).write(to: &header)
        let scanner = CQLFrameScanner(direction: .requests, maxFrameBytes: 1 << 20)
        XCTAssertThrowsError(try scanner.nextFrame(&header)) { error in
            let violation = error as! CQLProtocolViolation
            XCTAssertEqual(violation.kind, .oversize)
            XCTAssertEqual(violation.stream, 9)
            self.assertProtocolError(CQLFrameBuilder.error(for: violation, version: .v4), version: 0x84, stream: 9,
                                     contains: "exceeds the 1048576-byte limit")
        }
    }

    func testUnsupportedVersionsGetTheReplyDriversDowngradeOn() throws {
        let scanner = CQLFrameScanner(direction: .requests, maxFrameBytes: 1 << 20, supportedVersions: [.v4, .v5])
        // (first bytes, reply version byte, stream)
        let cases: [([UInt8], UInt8, Int16)] = [
            ([0x42, 0x00, 0x00, 0x00, 0x05], 0x85, 0),         // DataStax python driver's first try: DSE v2
            ([0x41, 0x00, 0x00, 0x03], 0x85, 3),               // DSE v1
            ([0x06, 0x10, 0x00, 0x01, 0x05], 0x85, 1),         // v6 beta
            ([0x03, 0x00, 0x00, 0x02, 0x05, 0, 0, 0, 0], 0x83, 2), // v3: answered in v3
            ([0x02, 0x00, 0x04, 0x05], 0x82, 4),               // v2: one-byte stream at offset 2
        ]
        for (bytes, replyVersion, stream) in cases {
            var input = ByteBuffer(bytes: bytes)
            XCTAssertThrowsError(try scanner.nextFrame(&input), "\(bytes)") { error in
                let violation = error as! CQLProtocolViolation
                XCTAssertEqual(violation.kind, .unsupportedVersion(bytes[0] & 0x7F))
                let reply = CQLFrameBuilder.error(for: violation, version: .v4)
                XCTAssertEqual(reply.getInteger(at: 0, as: UInt8.self), replyVersion)
                if replyVersion & 0x7F >= 3 {
                    self.assertProtocolError(reply, version: replyVersion, stream: stream,
                                             contains: "Invalid or unsupported protocol version (\(bytes[0] & 0x7F)); supported versions are (4/v4, 5/v5)")
                } else {
                    XCTAssertEqual(reply.getInteger(at: 2, as: Int8.self), Int8(stream))
                    XCTAssertEqual(reply.getInteger(at: 3, as: UInt8.self), CQLOpcode.error.rawValue)
                    XCTAssertEqual(reply.getInteger(at: 8, as: Int32.self), CQLErrorCode.protocolError.rawValue)
                }
            }
        }
        // Too few bytes to name the stream: wait.
        var short = ByteBuffer(bytes: [0x42, 0x00, 0x00])
        XCTAssertNil(try scanner.nextFrame(&short))
    }

    func testWrongDirectionChangedVersionBadLengthUnknownOpcode() throws {
        func violation(_ bytes: [UInt8], _ scanner: CQLFrameScanner) -> CQLProtocolViolation? {
            var input = ByteBuffer(bytes: bytes)
            do { _ = try scanner.nextFrame(&input); return nil } catch { return error }
        }
        // Before and after the version is settled (the header is then read in one look in place).
        for settled in [nil, CQLVersion.v4] {
            let requests = CQLFrameScanner(direction: .requests, maxFrameBytes: 1 << 20, negotiatedVersion: settled)
            XCTAssertEqual(violation([0x84, 0, 0, 1, 0x07, 0, 0, 0, 0], requests)?.kind, .wrongDirection)
            let responses = CQLFrameScanner(direction: .responses, maxFrameBytes: 1 << 20, negotiatedVersion: settled)
            XCTAssertEqual(violation([0x04, 0, 0, 1, 0x08, 0, 0, 0, 0], responses)?.kind, .wrongDirection)
            XCTAssertEqual(violation([0x04, 0, 0, 1, 0x07, 0xFF, 0xFF, 0xFF, 0xFF], requests)?.kind, .malformed)
            XCTAssertEqual(violation([0x04, 0, 0, 1, 0x04, 0, 0, 0, 0], requests)?.message, "unknown opcode 0x4")
            let small = CQLFrameScanner(direction: .requests, maxFrameBytes: 100, negotiatedVersion: settled)
            XCTAssertEqual(violation([0x04, 0, 0, 1, 0x07, 0, 0, 0, 92], small)?.kind, .oversize)
            XCTAssertNil(violation([0x04, 0, 0, 1, 0x07, 0, 0, 0, 91], small), "exactly the limit: waits for the body")
        }
        let negotiated = CQLFrameScanner(direction: .requests, maxFrameBytes: 1 << 20, negotiatedVersion: .v4)
        let changed = violation([0x05, 0, 0, 6, 0x07, 0, 0, 0, 0], negotiated)
        XCTAssertEqual(changed?.kind, .versionChanged)
        XCTAssertEqual(changed?.stream, 6)
        // A v5-only scanner (a connection that negotiated v5) refuses v4 as unsupported.
        let v5only = CQLFrameScanner(direction: .requests, maxFrameBytes: 1 << 20, supportedVersions: [.v5])
        XCTAssertEqual(violation([0x04, 0, 0, 1, 0x07, 0, 0, 0, 0], v5only)?.kind, .unsupportedVersion(4))
    }

    func testMalformedBodyIsAViolationOnItsStream() throws {
        // A QUERY whose [long string] claims more bytes than the body has.
        let frame = CQLFrameBuilder.frame(version: .v4, isResponse: false, stream: 12, opcode: .query) { body in
            body.writeInteger(Int32(1000))
            body.writeString("short")
        }
        let whole = try readSingleFrame(frame, direction: .requests)
        XCTAssertThrowsError(try CQLMessage(frame: whole, compression: nil, maxBodyBytes: 1 << 20)) { error in
            let violation = error as! CQLProtocolViolation
            XCTAssertEqual(violation.stream, 12)
            XCTAssertEqual(violation.kind, .malformed)
            self.assertProtocolError(CQLFrameBuilder.error(for: violation, version: .v4), version: 0x84, stream: 12,
                                     contains: "truncated message")
        }
    }

    private func assertProtocolError(_ reply: ByteBuffer, version: UInt8, stream: Int16, contains text: String,
                                     file: StaticString = #filePath, line: UInt = #line) {
        do {
            let (frame, message) = try readMessage(reply, direction: .responses)
            XCTAssertEqual(frame.header.versionByte, version, file: file, line: line)
            XCTAssertEqual(frame.header.stream, stream, file: file, line: line)
            guard case .error(let error) = message else { return XCTFail("not an ERROR", file: file, line: line) }
            XCTAssertEqual(error.code, .protocolError, file: file, line: line)
            XCTAssertTrue(error.message.contains(text), "\(error.message)", file: file, line: line)
        } catch {
            XCTFail("\(error)", file: file, line: line)
        }
    }
}
