import NIOCore
import XCTest
@testable import SluiceHost

/// The accessors read a QUERY in place (`CQLQueryLayout`) instead of decoding it: these tests hold
/// the two readings to the same answers, for every field a QUERY can carry, for every truncation of
/// such frames and for lengths that make the codec refuse them.
final class CQLQueryLayoutTests: XCTestCase {
    /// A QUERY frame: `body` writes the body; the header's length is the body's.
    private func frame(_ version: CQLVersion, flags: CQLFrameFlags = [], _ body: (inout ByteBuffer) -> Void) -> ByteBuffer {
        var frame = CQLFrameBuilder.frame(version: version, isResponse: false, stream: 3, opcode: .query, body)
        frame.setInteger(flags.rawValue, at: frame.readerIndex + 1)
        return frame
    }

    /// Everything a QUERY may hold: custom payload, named values (null, unset, empty, bytes), page
    /// size, paging state, serial consistency, timestamp and (v5) keyspace and now_in_seconds.
    private func fullQuery(_ version: CQLVersion) -> ByteBuffer {
        frame(version, flags: .customPayload) { body in
            body.writeInteger(UInt16(2))
            body.writeCQLString("k1")
            body.writeInteger(Int32(3))
            body.writeBytes([1, 2, 3])
            body.writeCQLString("k2")
            body.writeInteger(Int32(-1))
            body.writeCQLLongString("SELECT * FROM \"Ks\".t WHERE a = :a AND b = :b")
            body.writeInteger(CQLConsistency.quorum.rawValue)
            var flags: CQLQueryFlags = [.values, .namesForValues, .pageSize, .pagingState, .serialConsistency, .defaultTimestamp]
            if version.hasV5Messages { flags.formUnion([.keyspace, .nowInSeconds]) }
            flags.write(to: &body, version: version)
            body.writeInteger(UInt16(4))
            for (name, value) in [("a", CQLValue.bytes(ByteBuffer(bytes: [9, 8]))), ("b", .null), ("c", .unset),
                                  ("d", .bytes(ByteBuffer()))] {
                body.writeCQLString(name)
                body.writeCQLValue(value)
            }
            body.writeInteger(Int32(100))
            body.writeInteger(Int32(4))
            body.writeBytes([7, 7, 7, 7])
            body.writeInteger(CQLConsistency.localSerial.rawValue)
            body.writeInteger(Int64(1_700_000_000))
            if version.hasV5Messages {
                body.writeCQLString("ks5")
                body.writeInteger(Int32(42))
            }
        }
    }

    /// The same frame with its body cut to `length` bytes (the header's length following).
    private func truncated(_ frame: ByteBuffer, bodyLength length: Int) -> ByteBuffer {
        var cut = frame.getSlice(at: frame.readerIndex, length: CQLFrameHeader.size + length)!
        cut = ByteBuffer(bytes: cut.readableBytesView)
        cut.setInteger(UInt32(length), at: 5)
        return cut
    }

    /// Both readings of `frame` agree: the layout exists exactly when the codec reads the QUERY,
    /// and then names the same text, values and keyspace.
    private func assertAgree(_ frame: ByteBuffer, _ what: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let header = try XCTUnwrap(try CQLFrameScanner(direction: .requests, maxFrameBytes: 1 << 20, supportedVersions: [.v3, .v4, .v5]).scan(frame), file: file, line: line)
        let decoded = try? CQLMessage(frame: CQLFrame(header: header, bytes: frame), compression: nil, maxBodyBytes: 1 << 20)
        let layout = frame.withUnsafeReadableBytes { CQLQueryLayout(frame: $0, version: header.version, flags: header.flags) }
        guard case .query(let query)? = decoded else {
            XCTAssertNil(layout, "\(what): the codec refuses it, the layout reads it", file: file, line: line)
            return
        }
        let found = try XCTUnwrap(layout, "\(what): the codec reads it, the layout does not", file: file, line: line)
        let view = Array(frame.readableBytesView)
        XCTAssertEqual(Array(view[found.text]), Array(query.query.readableBytesView), what, file: file, line: line)
        XCTAssertEqual(Array(view[found.values]), Array(query.parameters.values.bytes.readableBytesView), what, file: file, line: line)
        XCTAssertEqual(found.valueCount, query.parameters.values.count, what, file: file, line: line)
        XCTAssertEqual(found.named, query.parameters.values.named, what, file: file, line: line)
        XCTAssertEqual(found.keyspace.map { String(decoding: view[$0], as: UTF8.self) }, query.parameters.keyspace, what,
                       file: file, line: line)
    }

    func testTheLayoutReadsEveryFieldAsTheCodecDoes() throws {
        for version in [CQLVersion.v3, .v4, .v5] {
            let frame = fullQuery(version)
            try assertAgree(frame, "v\(version.rawValue) full")
            let layout = try XCTUnwrap(frame.withUnsafeReadableBytes { CQLQueryLayout(frame: $0, version: version, flags: .customPayload) })
            XCTAssertEqual(layout.valueCount, 4)
            XCTAssertTrue(layout.named)
            XCTAssertEqual(layout.keyspace != nil, version.hasV5Messages)
        }
        try assertAgree(CQLFrameBuilder.query(version: .v4, stream: 1, query: "SELECT k FROM ks.t"), "plain v4")
        try assertAgree(CQLFrameBuilder.query(version: .v5, stream: 1, query: "SELECT k FROM t", values: [.null], pageSize: 10,
                                              keyspace: "other"), "plain v5")
    }

    func testEveryTruncationIsRefusedByBothOrReadByBoth() throws {
        for version in [CQLVersion.v4, .v5] {
            let frame = fullQuery(version)
            for length in 0..<(frame.readableBytes - CQLFrameHeader.size) {
                try assertAgree(truncated(frame, bodyLength: length), "v\(version.rawValue) body cut to \(length)")
            }
        }
    }

    func testLengthsTheCodecRefusesAreRefused() throws {
        // A negative [long string] length, and a [value] length below -2.
        try assertAgree(frame(.v4) { body in
            body.writeInteger(Int32(-1))
            body.writeInteger(CQLConsistency.one.rawValue)
            body.writeInteger(UInt8(0))
        }, "negative text length")
        try assertAgree(frame(.v4) { body in
            body.writeCQLLongString("SELECT 1")
            body.writeInteger(CQLConsistency.one.rawValue)
            body.writeInteger(UInt8(CQLQueryFlags.values.rawValue))
            body.writeInteger(UInt16(1))
            body.writeInteger(Int32(-3))
        }, "value length -3")
        // Values flag with more values announced than sent; a negative paging state is null, not an error.
        try assertAgree(frame(.v4) { body in
            body.writeCQLLongString("SELECT 1")
            body.writeInteger(CQLConsistency.one.rawValue)
            body.writeInteger(UInt8(CQLQueryFlags.values.rawValue))
            body.writeInteger(UInt16(3))
            body.writeInteger(Int32(0))
        }, "values missing")
        try assertAgree(frame(.v4) { body in
            body.writeCQLLongString("SELECT 1")
            body.writeInteger(CQLConsistency.one.rawValue)
            body.writeInteger(UInt8(CQLQueryFlags.pagingState.rawValue | CQLQueryFlags.namesForValues.rawValue))
            body.writeInteger(Int32(-5))
        }, "null paging state, names without values")
    }

    /// Through the accessors' parsed message: a QUERY read in place gives the same statement as the
    /// decoded message, values and v5 keyspace included, and decodes the message only when asked.
    func testParsedMessageOfAQueryNeedsNoDecodeForItsStatement() throws {
        let frame = fullQuery(.v5)
        let parsed = CQLParsedMessage(frame, isResponse: false)
        XCTAssertEqual(parsed.statementCount, 1)
        let info = try XCTUnwrap(parsed.statement(0))
        XCTAssertEqual(info.text.map { String(buffer: $0) }, "SELECT * FROM \"Ks\".t WHERE a = :a AND b = :b")
        XCTAssertEqual(info.requestKeyspace.map { String(decoding: UnsafeBufferPointer(start: $0.pointer, count: $0.count), as: UTF8.self) },
                       "ks5")
        XCTAssertEqual(info.boundValues.map { $0.name.map { String(buffer: $0) } }, ["a", "b", "c", "d"])
        XCTAssertEqual(info.boundValues.map(\.value), [.bytes(ByteBuffer(bytes: [9, 8])), .null, .unset, .bytes(ByteBuffer())])
        XCTAssertTrue(info.values.named)
        let classified = info.classification
        XCTAssertEqual(classified.kind, .select)
        XCTAssertNil(parsed.statement(1))
        guard case .query(let query)? = parsed.message else { return XCTFail("the message decodes when asked") }
        XCTAssertEqual(query.parameters.values.count, 4)

        // A QUERY whose body does not read has no statements, as before.
        let broken = CQLParsedMessage(truncated(frame, bodyLength: 40), isResponse: false)
        XCTAssertEqual(broken.statementCount, 0)
        XCTAssertNil(broken.statement(0))
        XCTAssertNil(broken.message)
    }
}
