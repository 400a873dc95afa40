import NIOCore
import XCTest
@testable import SluiceHost

/// The client side of a `cassandra` source as plain values (no sockets): version negotiation,
/// the handshake Sluice answers, compression and v5 segments switched on by the STARTUP answer,
/// frames split at any byte and of several MiB, and protocol violations answered with an ERROR
/// frame and a close.
final class CQLClientConnectionTests: XCTestCase {
    // MARK: helpers

    private func connection(auth: CQLClientConnection.Authentication = .none,
                            maxFrameBytes: Int = 16 << 20) -> CQLClientConnection {
        CQLClientConnection(maxFrameBytes: maxFrameBytes, authentication: auth)
    }

    private func startup(_ version: CQLVersion, compression: String? = nil, stream: Int16 = 1,
                         cqlVersion: String? = "3.0.0") -> ByteBuffer {
        var options: [String: String] = [:]
        if let cqlVersion { options["CQL_VERSION"] = cqlVersion }
        if let compression { options["COMPRESSION"] = compression }
        return CQLFrameBuilder.frame(version: version, isResponse: false, stream: stream, opcode: .startup) {
            $0.writeCQLStringMap(options)
        }
    }

    private func request(_ version: CQLVersion, _ opcode: CQLOpcode, stream: Int16, _ body: (inout ByteBuffer) -> Void = { _ in }) -> ByteBuffer {
        CQLFrameBuilder.frame(version: version, isResponse: false, stream: stream, opcode: opcode, body)
    }

    private func authResponse(_ version: CQLVersion, stream: Int16, user: String, password: String) -> ByteBuffer {
        request(version, .authResponse, stream: stream) { $0.writeCQLBytes(Array("\0\(user)\0\(password)".utf8)) }
    }

    /// Every step the connection takes for `bytes` (fed at once, or in pieces of `chunk` bytes).
    private func steps(_ connection: inout CQLClientConnection, _ bytes: ByteBuffer,
                       chunk: Int? = nil) -> [CQLClientConnection.Step] {
        var result: [CQLClientConnection.Step] = []
        var pending = ByteBuffer()
        var rest = bytes
        while rest.readableBytes > 0 {
            var piece = rest.readSlice(length: min(chunk ?? rest.readableBytes, rest.readableBytes))!
            pending.writeBuffer(&piece)
            // As the client session calls it: only while it has bytes it has not handed over.
            while pending.readableBytes > 0, let step = connection.next(&pending) {
                result.append(encoded(&connection, step))
            }
            pending.discardReadBytes()
        }
        return result
    }

    /// The step with the frame it writes (answer, close) replaced by the bytes `encodeReply` puts on
    /// the wire for it, as a session writes it.
    private func encoded(_ connection: inout CQLClientConnection, _ step: CQLClientConnection.Step) -> CQLClientConnection.Step {
        var out = ByteBuffer()
        switch step {
        case .request:
            return step
        case .answer(let frame, let event):
            _ = connection.encodeReply(frame, into: &out)
            connection.flush(into: &out)
            return .answer(out, event: event)
        case .close(let frame, let violation):
            _ = connection.encodeReply(frame, into: &out)
            connection.flush(into: &out)
            return .close(out, violation: violation)
        }
    }

    /// The only step for `bytes`, which must be an answer: its wire bytes.
    private func answer(_ connection: inout CQLClientConnection, _ bytes: ByteBuffer,
                        file: StaticString = #filePath, line: UInt = #line) -> (ByteBuffer, CQLClientConnection.Event?) {
        let all = steps(&connection, bytes)
        guard all.count == 1, case .answer(let wire, let event) = all[0] else {
            XCTFail("expected one answer, got \(all)", file: file, line: line)
            return (ByteBuffer(), nil)
        }
        return (wire, event)
    }

    /// Reads bare response frames (v4 bodies decompressed with `compression`).
    private func responses(_ wire: ByteBuffer, compression: CQLCompression? = nil) throws -> [(CQLFrameHeader, CQLMessage)] {
        var input = wire
        let scanner = CQLFrameScanner(direction: .responses, maxFrameBytes: 64 << 20, supportedVersions: CQLVersion.allCases)
        var result: [(CQLFrameHeader, CQLMessage)] = []
        while let frame = try scanner.nextFrame(&input) {
            result.append((frame.header, try CQLMessage(frame: frame, compression: compression, maxBodyBytes: 64 << 20)))
        }
        XCTAssertEqual(input.readableBytes, 0, "bytes after the last whole frame")
        return result
    }

    /// Reads response frames out of v5 segments.
    private func segmentResponses(_ wire: ByteBuffer, lz4: Bool) throws -> [CQLFrame] {
        var input = wire
        var reader = CQLSegmentReader(codec: CQLSegmentCodec(compressed: lz4),
                                      scanner: CQLFrameScanner(direction: .responses, maxFrameBytes: 64 << 20))
        var result: [CQLFrame] = []
        while let frame = try reader.nextFrame(&input) { result.append(frame) }
        XCTAssertEqual(input.readableBytes, 0, "bytes after the last whole segment")
        return result
    }

    private func segments(_ frames: [ByteBuffer], lz4: Bool) -> ByteBuffer {
        var writer = CQLSegmentWriter(codec: CQLSegmentCodec(compressed: lz4))
        var out = ByteBuffer()
        for frame in frames { writer.append(frame: frame, into: &out) }
        writer.flush(into: &out)
        return out
    }

    private func errorMessage(_ wire: ByteBuffer, file: StaticString = #filePath, line: UInt = #line) throws -> (CQLFrameHeader, CQLErrorMessage) {
        let read = try responses(wire)
        XCTAssertEqual(read.count, 1, file: file, line: line)
        guard case .error(let error) = read[0].1 else {
            XCTFail("not an ERROR: \(read[0].1)", file: file, line: line)
            throw CQLProtocolViolation(.malformed, "not an error")
        }
        return (read[0].0, error)
    }

    // MARK: the handshake

    func testOptionsGetsSupportedOfferingVersionsAndThePerVersionCompressions() throws {
        for (version, compressions) in [(CQLVersion.v4, ["lz4", "snappy"]), (.v5, ["lz4"])] {
            var c = connection()
            let (wire, _) = answer(&c, request(version, .options, stream: 7))
            let read = try responses(wire)
            XCTAssertEqual(read.first?.0.stream, 7)
            XCTAssertEqual(read.first?.0.version, version)
            guard case .supported(let supported) = read.first?.1 else { return XCTFail("not SUPPORTED") }
            XCTAssertEqual(supported.options["COMPRESSION"], compressions)
            XCTAssertEqual(supported.options["PROTOCOL_VERSIONS"], ["4/v4", "5/v5"])
            XCTAssertEqual(supported.options["CQL_VERSION"], [CQLSupportedOptions.cqlVersion])
            XCTAssertEqual(c.state, .awaitingStartup)
        }
    }

    func testStartupGetsReadyAndRequestsThenRunUntouched() throws {
        var c = connection()
        let (ready, _) = answer(&c, startup(.v4))
        let read = try responses(ready)
        XCTAssertEqual(read.first?.0.opcode, .ready)
        XCTAssertEqual(read.first?.0.stream, 1)
        XCTAssertEqual(c.state, .ready)
        let query = CQLFrameBuilder.query(version: .v4, stream: 300, query: "SELECT * FROM ks.t")
        let all = steps(&c, query)
        guard all.count == 1, case .request(let frame) = all[0] else { return XCTFail("\(all)") }
        XCTAssertEqual(frame.bytes, query)
        XCTAssertEqual(frame.header.stream, 300)
    }

    func testWhatTravelsAsItIs() throws {
        // Bare and uncompressed: requests are the bytes received, replies go out as they are.
        var bare = connection()
        XCTAssertTrue(bare.wire.outboundIsBare)
        var input = startup(.v4)
        guard case .answer(let ready, _)? = bare.next(&input) else { return XCTFail() }
        XCTAssertFalse(bare.wire.outboundIsBare, "the STARTUP answer is still to switch the framing")
        var out = ByteBuffer()
        _ = bare.encodeReply(ready, into: &out)
        XCTAssertEqual(out, ready)
        XCTAssertTrue(bare.wire.outboundIsBare)
        _ = steps(&bare, CQLFrameBuilder.query(version: .v4, stream: 2, query: "SELECT 1"))
        XCTAssertTrue(bare.wire.lastRequestAsReceived)
        // Compressed frames are rebuilt; uncompressed ones on the same connection are not.
        var lz4 = connection()
        _ = answer(&lz4, startup(.v4, compression: "lz4"))
        XCTAssertFalse(lz4.wire.outboundIsBare)
        _ = steps(&lz4, CQLFrameBuilder.compressed(CQLFrameBuilder.query(version: .v4, stream: 2, query: String(repeating: "SELECT 1 ", count: 20)), with: .lz4))
        XCTAssertFalse(lz4.wire.lastRequestAsReceived)
        _ = steps(&lz4, CQLFrameBuilder.query(version: .v4, stream: 3, query: "SELECT 1"))
        XCTAssertTrue(lz4.wire.lastRequestAsReceived)
        // Frames out of segments are never the bytes received.
        var v5 = connection()
        _ = answer(&v5, startup(.v5))
        XCTAssertFalse(v5.wire.outboundIsBare)
        _ = steps(&v5, segments([CQLFrameBuilder.query(version: .v5, stream: 2, query: "SELECT 1")], lz4: false))
        XCTAssertFalse(v5.wire.lastRequestAsReceived)
    }

    func testRequestsBeforeStartupAreRefusedAndTheConnectionStaysOpen() throws {
        var c = connection()
        let (wire, _) = answer(&c, CQLFrameBuilder.query(version: .v4, stream: 3, query: "SELECT 1"))
        let (header, error) = try errorMessage(wire)
        XCTAssertEqual(header.stream, 3)
        XCTAssertEqual(error.code, .protocolError)
        XCTAssertTrue(error.message.contains("expecting STARTUP or OPTIONS"), error.message)
        XCTAssertEqual(c.state, .awaitingStartup)
        _ = answer(&c, startup(.v4))
        XCTAssertEqual(c.state, .ready)
        // A second STARTUP is refused; the connection goes on.
        let (again, _) = answer(&c, startup(.v4, stream: 9))
        XCTAssertEqual(try errorMessage(again).1.code, .protocolError)
        XCTAssertEqual(c.state, .ready)
    }

    func testStartupWithoutCQLVersionOrWithAnUnknownOrUnavailableCompressionIsRefused() throws {
        for (bytes, text) in [(startup(.v4, cqlVersion: nil), "Missing value CQL_VERSION"),
                              (startup(.v4, compression: "zstd"), "Unknown compression algorithm: zstd"),
                              (startup(.v5, compression: "snappy"), "snappy compression is not supported in protocol v5")] {
            var c = connection()
            let (wire, _) = answer(&c, bytes)
            let (_, error) = try errorMessage(wire)
            XCTAssertEqual(error.code, .protocolError)
            XCTAssertTrue(error.message.contains(text), error.message)
            XCTAssertEqual(c.state, .awaitingStartup)
            XCTAssertEqual(c.wire.inbound, .handshake)
        }
    }

    // MARK: version negotiation

    func testDriverProbeVersionsGetTheRejectionTheyDowngradeOnAndAClose() throws {
        // The DataStax python driver opens with DSE v66 (0x42), then v65 (0x41); others with v6 or v3.
        for (raw, replyVersion) in [(UInt8(0x42), UInt8(5)), (0x41, 5), (6, 5), (3, 3)] {
            var c = connection()
            var bytes = ByteBuffer()
            bytes.writeMultipleIntegers(raw, UInt8(0), Int16(4), CQLOpcode.options.rawValue, UInt32(0))
            let all = steps(&c, bytes)
            guard all.count == 1, case .close(let wire, let violation) = all[0] else { return XCTFail("\(all)") }
            XCTAssertEqual(violation.kind, .unsupportedVersion(raw))
            XCTAssertEqual(wire.getInteger(at: 0, as: UInt8.self), 0x80 | replyVersion)
            XCTAssertEqual(wire.getInteger(at: 2, as: Int16.self), 4, "answered on the client's stream")
            let (_, error) = try errorMessage(wire)
            XCTAssertEqual(error.code, .protocolError)
            XCTAssertTrue(error.message.contains("unsupported protocol version"), error.message)
            XCTAssertEqual(c.state, .closed)
            XCTAssertNil(c.next(&bytes), "nothing is read after the close")
        }
    }

    func testTheFirstFrameFixesTheVersion() throws {
        var c = connection()
        _ = answer(&c, startup(.v4))
        let all = steps(&c, CQLFrameBuilder.query(version: .v5, stream: 2, query: "SELECT 1"))
        guard all.count == 1, case .close(let wire, let violation) = all[0] else { return XCTFail("\(all)") }
        XCTAssertEqual(violation.kind, .versionChanged)
        let (header, error) = try errorMessage(wire)
        XCTAssertEqual(header.version, .v4)
        XCTAssertEqual(header.stream, 2)
        XCTAssertEqual(error.code, .protocolError)
    }

    // MARK: compression and segments

    func testV4CompressionBothWaysWithTheDriversOwnFrames() throws {
        for (name, compression) in [("query_lz4_v4", CQLCompression.lz4), ("query_snappy_v4", .snappy)] {
            var c = connection()
            let (ready, _) = answer(&c, startup(.v4, compression: compression.rawValue))
            XCTAssertEqual(try responses(ready).first?.0.flags, [], "READY travels uncompressed")
            XCTAssertEqual(c.wire.inbound, .frames(compression: compression))
            // The driver's compressed QUERY comes out as the driver's uncompressed one.
            let plain = try CQLDriverVectors.vector("query_plain_v4")
            let all = steps(&c, try CQLDriverVectors.vector(name), chunk: 7)
            guard all.count == 1, case .request(let frame) = all[0] else { return XCTFail("\(all)") }
            XCTAssertEqual(frame.bytes, plain)
            XCTAssertFalse(frame.header.flags.contains(.compression))
            // A reply goes out compressed.
            let reply = CQLFrameBuilder.resultRows(version: .v4, stream: 13, keyspace: "ks", table: "t",
                                                   columns: [("v", .varchar)],
                                                   rows: Array(repeating: [ByteBuffer(string: "abcabcabcabc")], count: 50))
            var out = ByteBuffer()
            XCTAssertNil(c.encodeReply(reply, into: &out))
            c.flush(into: &out)
            XCTAssertEqual(out.getInteger(at: 1, as: UInt8.self)! & CQLFrameFlags.compression.rawValue,
                           CQLFrameFlags.compression.rawValue)
            XCTAssertLessThan(out.readableBytes, reply.readableBytes)
            var scanner = CQLFrameScanner(direction: .responses, maxFrameBytes: 1 << 20)
            scanner.negotiatedVersion = .v4
            let sent = try XCTUnwrap(try scanner.nextFrame(&out))
            XCTAssertEqual(try sent.decompressedBody(compression, maxBytes: 1 << 20),
                           reply.getSlice(at: 9, length: reply.readableBytes - 9))
            // An uncompressed frame on a compressed connection is taken as it is.
            let uncompressed = steps(&c, plain)
            guard case .request(let same)? = uncompressed.first else { return XCTFail("\(uncompressed)") }
            XCTAssertEqual(same.bytes, plain)
        }
    }

    func testV5SegmentsStartAfterReadyBothWaysSplitAtEveryByte() throws {
        for lz4 in [false, true] {
            var c = connection()
            let queries = (0..<3).map { i in
                CQLFrameBuilder.query(version: .v5, stream: Int16(10 + i),
                                      query: "SELECT * FROM ks.t WHERE k = \(i) " + String(repeating: "AND 1 = 1 ", count: 20))
            }
            var input = startup(.v5, compression: lz4 ? "lz4" : nil)
            var inSegments = segments(queries, lz4: lz4)
            input.writeBuffer(&inSegments)
            for chunk in [1, 5, input.readableBytes] {
                c = connection()
                let all = steps(&c, input, chunk: chunk)
                XCTAssertEqual(all.count, 4)
                guard case .answer(let ready, _) = all[0] else { return XCTFail("\(all)") }
                XCTAssertEqual(try responses(ready).first?.0.opcode, .ready, "READY travels bare")
                let forwarded = all.dropFirst().compactMap { step -> ByteBuffer? in
                    if case .request(let frame) = step { return frame.bytes }
                    return nil
                }
                XCTAssertEqual(forwarded, queries, "lz4: \(lz4), chunk \(chunk)")
            }
            XCTAssertEqual(c.wire.inbound, .segments(lz4: lz4))
            // Replies are packed into segments; an OPTIONS answer too.
            var out = ByteBuffer()
            for i in 0..<3 {
                _ = c.encodeReply(CQLFrameBuilder.resultVoid(version: .v5, stream: Int16(12 - i)), into: &out)
            }
            c.flush(into: &out)
            let frames = try segmentResponses(out, lz4: lz4)
            XCTAssertEqual(frames.map(\.header.stream), [12, 11, 10])
            let (supported, _) = answer(&c, segments([request(.v5, .options, stream: 20)], lz4: lz4))
            XCTAssertEqual(try segmentResponses(supported, lz4: lz4).first?.header.opcode, .supported)
        }
    }

    /// A self-contained segment must hold whole frames only: its frames before a truncated one go
    /// through, the truncated one closes the connection with a PROTOCOL_ERROR, even when the bytes
    /// after the segment (the next segment) would complete it.
    func testASelfContainedSegmentEndingInsideAFrameIsRefusedAfterItsWholeFrames() throws {
        for cut in [3, CQLFrameHeader.size + 2] {  // inside the header, inside the body
            var c = connection()
            _ = steps(&c, startup(.v5))
            let whole = CQLFrameBuilder.query(version: .v5, stream: 1, query: "SELECT 1")
            let next = CQLFrameBuilder.query(version: .v5, stream: 2, query: "SELECT 2")
            var payload = whole
            payload.writeImmutableBuffer(next.getSlice(at: next.readerIndex, length: cut)!)
            var wire = ByteBuffer()
            CQLSegmentCodec(compressed: false).encode(payload, selfContained: true, into: &wire)
            // The rest of the cut frame follows in a segment of its own.
            CQLSegmentCodec(compressed: false).encode(next.getSlice(at: next.readerIndex + cut, length: next.readableBytes - cut)!,
                                                      selfContained: true, into: &wire)
            let all = steps(&c, wire)
            XCTAssertEqual(all.count, 2, "cut at \(cut): \(all)")
            guard case .request(let first) = all.first else { return XCTFail("\(all)") }
            XCTAssertEqual(first.bytes, whole)
            guard case .close(let bytes, let violation) = all.last else { return XCTFail("\(all)") }
            XCTAssertEqual(violation.message, "a self-contained segment ends inside a frame")
            let frames = try segmentResponses(bytes, lz4: false)
            XCTAssertEqual(frames.first?.header.opcode, .error)
        }
    }

    func testTheDriversLZ4SegmentsAndASeveralMiBFrame() throws {
        var c = connection()
        _ = answer(&c, startup(.v5, compression: "lz4"))
        let driverSegments = try CQLDriverVectors.vector("segment_three_frames_lz4")
        var expected = try CQLDriverVectors.vector("segment_three_frames_payload")
        let all = steps(&c, driverSegments, chunk: 3)
        var forwarded = ByteBuffer()
        for step in all {
            guard case .request(let frame) = step else { return XCTFail("\(step)") }
            forwarded.writeImmutableBuffer(frame.bytes)
        }
        XCTAssertEqual(all.count, 3)
        XCTAssertEqual(forwarded, expected)
        expected.clear()
        // 6 MiB each way, in 64 KiB reads.
        let big = CQLFrameBuilder.query(version: .v5, stream: 99,
                                        query: String(repeating: "abcdefghijklmnopqrstuvwxyz", count: (6 << 20) / 26))
        let bigSteps = steps(&c, segments([big], lz4: true), chunk: 64 * 1024)
        guard bigSteps.count == 1, case .request(let frame) = bigSteps[0] else { return XCTFail("\(bigSteps.count) steps") }
        XCTAssertEqual(frame.bytes, big)
        // Until its last segment is in, a split frame's segments stay in the caller's buffer (where
        // the source's request budget counts them and its request deadline runs).
        var almost = segments([big], lz4: true)
        almost.moveWriterIndex(to: almost.writerIndex - 1)
        let fed = almost.readableBytes
        XCTAssertNil(c.next(&almost))
        XCTAssertEqual(almost.readableBytes, fed, "nothing taken before the frame is whole")
        var out = ByteBuffer()
        _ = c.encodeReply(big.getSlice(at: 0, length: big.readableBytes)!.withResponseBit(), into: &out)
        c.flush(into: &out)
        let back = try segmentResponses(out, lz4: true)
        XCTAssertEqual(back.first?.bytes.readableBytes, big.readableBytes)
    }

    func testASplitFrameTrickledInIsCheckedInLinearTime() throws {
        // A v5 frame over 32 segments arriving in 16 KiB reads (256 reads): each segment header is
        // read once, not once per read (which was quadratic: about 32 × 256 / 2).
        var c = connection()
        _ = steps(&c, startup(.v5))
        let big = CQLFrameBuilder.query(version: .v5, stream: 7,
                                        query: String(repeating: "x", count: 32 * CQLSegmentCodec.maxPayloadLength - 200))
        let wire = segments([big], lz4: false)
        let reads = (wire.readableBytes + 16 * 1024 - 1) / (16 * 1024)
        let before = c.wire.splitSegmentHeadersRead
        let taken = steps(&c, wire, chunk: 16 * 1024)
        guard taken.count == 1, case .request(let frame) = taken[0] else { return XCTFail("\(taken.count) steps") }
        XCTAssertEqual(frame.bytes, big)
        let read = c.wire.splitSegmentHeadersRead - before
        XCTAssertEqual(read, 32, "each of the 32 segments once (\(reads) reads)")
    }

    func testASeveralMiBV4FrameCompressedSplitInReads() throws {
        var c = connection()
        _ = answer(&c, startup(.v4, compression: "lz4"))
        let big = CQLFrameBuilder.query(version: .v4, stream: 5, query: String(repeating: "SELECT 1; ", count: 600_000))
        let compressed = CQLFrameBuilder.compressed(big, with: .lz4)
        let all = steps(&c, compressed, chunk: 65536)
        guard all.count == 1, case .request(let frame) = all[0] else { return XCTFail("\(all.count)") }
        XCTAssertEqual(frame.bytes, big)
    }

    // MARK: violations: an ERROR frame, then close

    func testOversizeFramesAreRefusedFromTheirHeaderInTheConnectionsFraming() throws {
        var c = connection(maxFrameBytes: 4096)
        var header = ByteBuffer()
        CQLFrameHeader(version: .v4, isResponse: false, stream: 8, opcode: .query, bodyLength: 1 << 30).write(to: &header)
        let all = steps(&c, header)
        guard all.count == 1, case .close(let wire, let violation) = all[0] else { return XCTFail("\(all)") }
        XCTAssertEqual(violation.kind, .oversize)
        let (h, error) = try errorMessage(wire)
        XCTAssertEqual(h.version, .v4, "answered in the version the client opened with")
        XCTAssertEqual(h.stream, 8)
        XCTAssertEqual(error.code, .protocolError)

        // After the switch to segments, the ERROR travels in a segment.
        var v5 = connection(maxFrameBytes: 4096)
        _ = answer(&v5, startup(.v5))
        let oversize = CQLFrameBuilder.query(version: .v5, stream: 6, query: String(repeating: "x", count: 5000))
        let refused = steps(&v5, segments([oversize], lz4: false))
        guard refused.count == 1, case .close(let segmentWire, _) = refused[0] else { return XCTFail("\(refused)") }
        let frames = try segmentResponses(segmentWire, lz4: false)
        XCTAssertEqual(frames.first?.header.opcode, .error)
        XCTAssertEqual(frames.first?.header.stream, 6)
    }

    func testMalformedInputIsAnsweredAndClosedNeverTrapped() throws {
        let cases: [(String, ByteBuffer)] = [
            ("unknown opcode", { var b = ByteBuffer(); b.writeMultipleIntegers(UInt8(4), UInt8(0), Int16(1), UInt8(0x33), UInt32(0)); return b }()),
            ("response bit", CQLFrameBuilder.resultVoid(version: .v4, stream: 1)),
            ("not a request", request(.v4, .ready, stream: 1)),
            ("negative length", { var b = ByteBuffer(); b.writeMultipleIntegers(UInt8(4), UInt8(0), Int16(1), UInt8(7), Int32(-5)); return b }()),
            ("truncated STARTUP body", request(.v4, .startup, stream: 1) { $0.writeInteger(UInt16(3)) }),
            ("compressed before STARTUP", CQLFrameBuilder.compressed(startup(.v4), with: .lz4)),
        ]
        for (name, bytes) in cases {
            var c = connection()
            let all = steps(&c, bytes)
            guard all.count == 1, case .close(let wire, _) = all[0] else { XCTFail("\(name): \(all)"); continue }
            let (_, error) = try errorMessage(wire)
            XCTAssertEqual(error.code, .protocolError, name)
            XCTAssertEqual(c.state, .closed, name)
        }
        // A damaged segment after the switch.
        var c = connection()
        _ = answer(&c, startup(.v5))
        var damaged = segments([CQLFrameBuilder.query(version: .v5, stream: 1, query: "SELECT 1")], lz4: false)
        damaged.setInteger(damaged.getInteger(at: 8, as: UInt8.self)! ^ 0xFF, at: 8)
        let all = steps(&c, damaged)
        guard all.count == 1, case .close(_, let violation) = all[0] else { return XCTFail("\(all)") }
        XCTAssertEqual(violation.kind, .checksum)
        // Random garbage, fed at once and byte by byte, in every phase: only steps, never a trap.
        var generator = SystemRandomNumberGenerator()
        for round in 0..<200 {
            var c = connection(maxFrameBytes: 2048)
            if round % 3 == 1 { _ = answer(&c, startup(.v4, compression: "lz4")) }
            if round % 3 == 2 { _ = answer(&c, startup(.v5, compression: "lz4")) }
            var garbage = ByteBuffer()
            garbage.writeInteger(UInt8(round % 3 == 1 ? 4 : 5))
            for _ in 0..<Int.random(in: 1..<300, using: &generator) { garbage.writeInteger(UInt8.random(in: 0...255, using: &generator)) }
            _ = steps(&c, garbage, chunk: round % 2 == 0 ? 1 : nil)
        }
    }

    // MARK: authentication

    func testSluiceChecksThePasswordItselfAndCountsFailures() throws {
        let auth = CQLClientAuth(users: [.init(name: Array("app".utf8), password: Array("s3cret".utf8)),
                                         .init(name: Array("ops".utf8), password: Array("other".utf8))])
        var c = connection(auth: .sluice(auth))
        let (authenticate, _) = answer(&c, startup(.v5, compression: "lz4"))
        let read = try responses(authenticate)
        guard case .authenticate(let which) = read.first?.1 else { return XCTFail("not AUTHENTICATE") }
        XCTAssertEqual(which.authenticator, "org.apache.cassandra.auth.PasswordAuthenticator")
        XCTAssertEqual(c.wire.inbound, .segments(lz4: true), "AUTHENTICATE switches the framing")

        // Nothing else before signing in.
        let (early, _) = answer(&c, segments([CQLFrameBuilder.query(version: .v5, stream: 2, query: "SELECT 1")], lz4: true))
        let earlyError = try XCTUnwrap(try segmentResponses(early, lz4: true).first)
        XCTAssertEqual(earlyError.header.opcode, .error)

        for (user, password) in [("app", "wrong"), ("ops", "s3cret"), ("app", "s3cre"), ("app", "s3cret!")] {
            let (wire, event) = answer(&c, segments([authResponse(.v5, stream: 3, user: user, password: password)], lz4: true))
            XCTAssertEqual(event, .authenticationFailed(user: user))
            let frame = try XCTUnwrap(try segmentResponses(wire, lz4: true).first)
            guard case .error(let error) = try CQLMessage(frame: frame, compression: nil, maxBodyBytes: 1 << 20) else {
                return XCTFail("not an error")
            }
            XCTAssertEqual(error.code, .badCredentials)
            XCTAssertFalse(error.message.contains(password), "the password is never echoed")
            XCTAssertEqual(c.state, .authenticating(pending: nil))
        }
        let (success, event) = answer(&c, segments([authResponse(.v5, stream: 4, user: "ops", password: "other")], lz4: true))
        XCTAssertEqual(event, .signedIn(user: "ops"))
        XCTAssertEqual(try segmentResponses(success, lz4: true).first?.header.opcode, .authSuccess)
        XCTAssertEqual(c.state, .ready)
        let query = CQLFrameBuilder.query(version: .v5, stream: 5, query: "SELECT 1")
        guard case .request(let frame)? = steps(&c, segments([query], lz4: true)).first else { return XCTFail() }
        XCTAssertEqual(frame.bytes, query)
    }

    func testAMalformedTokenIsBadCredentials() throws {
        let auth = CQLClientAuth(users: [.init(name: Array("app".utf8), password: Array("pw".utf8))])
        var c = connection(auth: .sluice(auth))
        _ = answer(&c, startup(.v4))
        for token in [nil, Array("no separators".utf8), [0, 0x61, 0]] as [[UInt8]?] {
            let (wire, event) = answer(&c, request(.v4, .authResponse, stream: 2) { body in
                if let token { body.writeCQLBytes(token) } else { body.writeInteger(Int32(-1)) }
            })
            XCTAssertEqual(event, token == [0, 0x61, 0] ? .authenticationFailed(user: "a") : .authenticationFailed(user: nil))
            XCTAssertEqual(try errorMessage(wire).1.code, .badCredentials)
        }
    }

    func testPassthroughSendsTheTokenOnAndTheBackendsAnswerDecides() throws {
        var c = connection(auth: .passthrough)
        _ = answer(&c, startup(.v4))
        XCTAssertEqual(c.state, .authenticating(pending: nil))
        let token = authResponse(.v4, stream: 7, user: "u", password: "p")
        guard case .request(let frame)? = steps(&c, token).first else { return XCTFail() }
        XCTAssertEqual(frame.bytes, token)
        XCTAssertEqual(c.state, .authenticating(pending: 7))
        // A second token while the first is out is refused.
        let (wire, _) = answer(&c, authResponse(.v4, stream: 8, user: "u", password: "p"))
        XCTAssertEqual(try errorMessage(wire).1.code, .protocolError)
        // The backend refuses: the client may try again.
        var out = ByteBuffer()
        let refused = CQLFrameBuilder.error(version: .v4, stream: 7, code: .badCredentials, message: "no")
        XCTAssertEqual(c.encodeReply(refused, into: &out), .authenticationFailed(user: nil))
        XCTAssertEqual(out, refused)
        XCTAssertEqual(c.state, .authenticating(pending: nil))
        guard case .request? = steps(&c, token).first else { return XCTFail() }
        let success = CQLFrameBuilder.frame(version: .v4, isResponse: true, stream: 7, opcode: .authSuccess) { $0.writeCQLBytes(nil) }
        XCTAssertEqual(c.encodeReply(success, into: &out), .signedIn(user: nil))
        XCTAssertEqual(c.state, .ready)
    }
}

private extension ByteBuffer {
    /// The same frame with the response bit set (a request frame echoed as a reply, for size tests).
    func withResponseBit() -> ByteBuffer {
        var copy = self
        copy.setInteger(getInteger(at: readerIndex, as: UInt8.self)! | 0x80, at: readerIndex)
        return copy
    }
}
