import Foundation
import NIOCore
import XCTest
@testable import SluiceHost

/// `CQLClusterView`: SELECTs on system.peers / system.peers_v2 get the backend's reply emptied.
/// The replies are the test backend's own, with two nodes (Tests/cql/cluster_view_vectors.py emit),
/// and the emptied ones are read back by the DataStax python driver (… check).
final class CQLClusterViewRewriteTests: XCTestCase {
    private static let vectors: Result<[String: ByteBuffer], Error> = Result(catching: {
        let json = try CQLDriverVectors.runPython("Tests/cql/cluster_view_vectors.py", arguments: ["emit"]) as! [String: String]
        return json.mapValues { ByteBuffer(bytes: CQLDriverVectors.hexBytes($0)) }
    })

    private func vector(_ name: String) throws -> ByteBuffer {
        try XCTUnwrap(try Self.vectors.get()[name], "no vector \(name)")
    }

    private func rows(_ frame: ByteBuffer) throws -> CQLRows {
        let wire = try XCTUnwrap(CQLWireFrame(frame))
        XCTAssertEqual(wire.bodyLength, frame.readableBytes - CQLFrameHeader.size)
        guard case .rows(let rows) = try CQLResult(message: try XCTUnwrap(wire.message()), version: try XCTUnwrap(wire.version))
        else { throw XCTSkip("not rows") }
        return rows
    }

    private let peersVectors = ["peers", "peers_v2", "peers_columns", "peers_v2_paged", "peers_v2_no_metadata"]

    func testPeersRepliesLoseTheirRowsAndKeepTheirColumns() throws {
        var emptied: [String: String] = [:]
        for name in peersVectors {
            for version in [4, 5] {
                let key = "\(name)_v\(version)"
                let original = try vector(key)
                let before = try rows(original)
                XCTAssertGreaterThan(before.rowCount, 0, key)
                let after = try XCTUnwrap(CQLClusterView.emptyingRows(original), key)
                let emptiedRows = try rows(after)
                XCTAssertEqual(emptiedRows.rowCount, 0, key)
                XCTAssertEqual(emptiedRows.content.readableBytes, 0, key)
                XCTAssertEqual(emptiedRows.metadata.columnCount, before.metadata.columnCount, key)
                XCTAssertEqual(emptiedRows.metadata.columns?.map(\.name), before.metadata.columns?.map(\.name), key)
                XCTAssertEqual(emptiedRows.metadata.columns?.map(\.type), before.metadata.columns?.map(\.type), key)
                XCTAssertNil(emptiedRows.metadata.pagingState, key)
                XCTAssertFalse(emptiedRows.metadata.flags.contains(.hasMorePages), key)
                XCTAssertEqual(emptiedRows.metadata.flags, before.metadata.flags.subtracting(.hasMorePages), key)
                XCTAssertEqual(after.readableBytesView.prefix(5).elementsEqual(original.readableBytesView.prefix(5)), true, key)
                if name == "peers_v2_paged" { XCTAssertNotNil(before.metadata.pagingState, key) }
                if name.hasSuffix("no_metadata") { XCTAssertNil(emptiedRows.metadata.columns, key) }
                else { emptied[key] = CQLDriverVectors.hex(after) }
            }
        }
        // The driver reads them: the same columns, no rows, no paging state.
        let seen = try CQLDriverVectors.runPython("Tests/cql/cluster_view_vectors.py", arguments: ["check"],
                                                  input: try JSONSerialization.data(withJSONObject: emptied)) as! [String: [String: Any]]
        let originals = try CQLDriverVectors.runPython(
            "Tests/cql/cluster_view_vectors.py", arguments: ["check"],
            input: try JSONSerialization.data(withJSONObject: try Self.vectors.get().mapValues { CQLDriverVectors.hex($0) }))
            as! [String: [String: Any]]
        XCTAssertEqual(seen.count, emptied.count)
        for (key, fields) in seen {
            XCTAssertEqual(fields["rows"] as? Int, 0, key)
            XCTAssertEqual(fields["stream"] as? Int, 11, key)
            XCTAssertTrue(fields["paging_state"] is NSNull, key)
            XCTAssertEqual(fields["columns"] as? [String], originals[key]?["columns"] as? [String], key)
            XCTAssertFalse((fields["columns"] as? [String] ?? []).isEmpty, key)
        }
    }

    func testWarningsAndTracingInFrontOfTheResultStay() throws {
        let original = try vector("peers_v2_v4")
        let wire = try XCTUnwrap(CQLWireFrame(original))
        let tracing = ByteBuffer(bytes: Array(repeating: 0xAB, count: 16))
        let framed = CQLFrameBuilder.frame(version: .v4, isResponse: true, flags: [.tracing, .warning], stream: 11,
                                           opcode: .result) { body in
            body.writeImmutableBuffer(tracing)
            body.writeCQLStringList(["a warning"])
            body.writeImmutableBuffer(wire.body)
        }
        let after = try XCTUnwrap(CQLClusterView.emptyingRows(framed))
        XCTAssertEqual(try rows(after).rowCount, 0)
        let emptied = try XCTUnwrap(CQLWireFrame(after))
        XCTAssertEqual(emptied.flags, [.tracing, .warning])
        XCTAssertEqual(emptied.stream, 11)
        let header = CQLFrameHeader(version: .v4, isResponse: true, flags: emptied.flags, stream: 11,
                                    opcodeByte: emptied.opcodeByte, bodyLength: emptied.bodyLength)
        let envelope = try CQLEnvelopeBody(header: header, body: emptied.body)
        XCTAssertEqual(envelope.warnings, ["a warning"])
        XCTAssertEqual(envelope.tracingID, tracing)
    }

    func testOtherRepliesPassUnchanged() throws {
        XCTAssertNil(CQLClusterView.emptyingRows(CQLFrameBuilder.error(version: .v4, stream: 3, code: .invalid, message: "no")))
        XCTAssertNil(CQLClusterView.emptyingRows(CQLFrameBuilder.frame(version: .v5, isResponse: true, stream: 3, opcode: .result) {
            $0.writeInteger(CQLResultKind.void.rawValue)
        }))
        // Truncated rows metadata: left alone (the client's driver reports it), never a trap.
        let original = try vector("peers_v4")
        for cut in [13, 17, 21, 40] {
            var short = original.getSlice(at: 0, length: cut)!
            short.setInteger(Int32(cut - 9), at: 5)
            XCTAssertNil(CQLClusterView.emptyingRows(short), "\(cut)")
        }
    }

    func testWhichStatementsSelectPeers() {
        let yes = ["SELECT * FROM system.peers", "select peer, rpc_address from System.PEERS_V2 where peer = ?",
                   "SELECT * FROM \"system\".\"peers\"", "/* peers */ SELECT * FROM system.peers_v2"]
        for text in yes { XCTAssertTrue(CQLClusterView.selectsPeers(ByteBuffer(string: text), keyspace: nil), text) }
        XCTAssertTrue(CQLClusterView.selectsPeers(ByteBuffer(string: "SELECT * FROM peers"), keyspace: "system"))
        let no = ["SELECT * FROM peers", "SELECT * FROM ks.peers", "SELECT * FROM system.local", "SELECT * FROM system.peers_v3",
                  "INSERT INTO system.peers (peer) VALUES ('127.0.0.9')", "-- peers\nSELECT * FROM system.local",
                  "SELECT peers FROM ks.t", "SELECT * FROM system.\"PEERS\""]
        for text in no { XCTAssertFalse(CQLClusterView.selectsPeers(ByteBuffer(string: text), keyspace: nil), text) }
    }

    /// `mentionsPeers` skips eight bytes at a time: at every offset and length, in any case, next
    /// to bytes that differ from p/P by the case bit only, it must find what a byte-by-byte look finds.
    func testThePeersPreCheckFindsPeersAtEveryOffset() {
        func byteByByte(_ bytes: [UInt8]) -> Bool {
            guard bytes.count >= 5 else { return false }
            let word = Array("peers".utf8)
            return (0...(bytes.count - 5)).contains { i in (0..<5).allSatisfy { bytes[i + $0] | 0x20 == word[$0] } }
        }
        let fillers: [[UInt8]] = [Array("x".utf8), Array("p".utf8), Array("P".utf8), [0xD0], [0xF0], [0x50 ^ 0x20], Array("peer".utf8)]
        for spelling in ["peers", "PEERS", "pEeRs", "peer", "peexs", "eers"] {
            for length in 0...40 {
                for offset in 0...length {
                    for filler in fillers {
                        var text: [UInt8] = []
                        while text.count < offset { text += filler }
                        text = Array(text.prefix(offset)) + Array(spelling.utf8)
                        while text.count < length { text += filler }
                        text = Array(text.prefix(max(length, 0)))
                        let expected = byteByByte(text)
                        let found = text.withUnsafeBytes { CQLClusterView.mentionsPeers($0) }
                        XCTAssertEqual(found, expected, "\(spelling) at \(offset) in \(String(decoding: text, as: UTF8.self))")
                    }
                }
            }
        }
        func queryFrame(_ text: String) -> CQLWireFrame {
            CQLWireFrame(CQLFrameBuilder.frame(version: .v4, isResponse: false, stream: 1, opcode: .query) {
                $0.writeCQLLongString(text)
                $0.writeInteger(UInt16(1))
                $0.writeInteger(UInt8(0))
            })!
        }
        // Whole statements, the table name at every alignment (after spaces, comments, quoted, upper case).
        for padding in 0...17 {
            let pad = String(repeating: " ", count: padding)
            for text in ["\(pad)SELECT * FROM system.peers", "/*\(pad)*/ SELECT * FROM \"system\".\"peers\"",
                         "\(pad)select * from SYSTEM.PEERS_V2", "--\(pad)\nSELECT peer FROM system.peers WHERE peer = ?"] {
                XCTAssertTrue(CQLClusterView.selectsPeers(ByteBuffer(string: text), keyspace: nil), text)
                XCTAssertTrue(CQLClusterView.asksForPeers(queryFrame(text), keyspace: nil,
                                                          registry: CQLPreparedRegistry()), text)
            }
            XCTAssertFalse(CQLClusterView.asksForPeers(queryFrame("\(pad)SELECT * FROM system.peer"), keyspace: nil,
                                                       registry: CQLPreparedRegistry()))
        }
    }

    func testQueriesAndExecutesOfPreparedPeersSelects() throws {
        let registry = CQLPreparedRegistry()
        registry.record(id: [1, 2], .init(query: "SELECT * FROM system.peers_v2", keyspace: nil))
        registry.record(id: [3], .init(query: "SELECT * FROM peers", keyspace: "system"))
        registry.record(id: [4], .init(query: "SELECT * FROM ks.t", keyspace: nil))
        func query(_ text: String, _ version: CQLVersion) -> CQLWireFrame {
            CQLWireFrame(CQLFrameBuilder.frame(version: version, isResponse: false, stream: 1, opcode: .query) {
                $0.writeCQLLongString(text)
                $0.writeInteger(UInt16(1))  // consistency ONE
                if version == .v5 { $0.writeInteger(Int32(0)) } else { $0.writeInteger(UInt8(0)) }
            })!
        }
        func execute(_ id: [UInt8], _ version: CQLVersion) -> CQLWireFrame {
            CQLWireFrame(CQLFrameBuilder.frame(version: version, isResponse: false, stream: 1, opcode: .execute) {
                $0.writeCQLShortBytes(ByteBuffer(bytes: id))
                if version == .v5 { $0.writeCQLShortBytes(ByteBuffer(bytes: [9])) }
                $0.writeInteger(UInt16(1))
                if version == .v5 { $0.writeInteger(Int32(0)) } else { $0.writeInteger(UInt8(0)) }
            })!
        }
        for version in [CQLVersion.v4, .v5] {
            XCTAssertTrue(CQLClusterView.asksForPeers(query("SELECT * FROM system.peers", version), keyspace: nil, registry: registry))
            XCTAssertFalse(CQLClusterView.asksForPeers(query("SELECT * FROM system.local", version), keyspace: nil, registry: registry))
            XCTAssertTrue(CQLClusterView.asksForPeers(execute([1, 2], version), keyspace: nil, registry: registry))
            XCTAssertTrue(CQLClusterView.asksForPeers(execute([3], version), keyspace: nil, registry: registry))
            XCTAssertFalse(CQLClusterView.asksForPeers(execute([4], version), keyspace: nil, registry: registry))
            XCTAssertFalse(CQLClusterView.asksForPeers(execute([1], version), keyspace: nil, registry: registry))
            XCTAssertFalse(CQLClusterView.asksForPeers(execute([7, 7], version), keyspace: nil, registry: registry))
        }
        XCTAssertFalse(CQLClusterView.asksForPeers(execute([1, 2], .v4), keyspace: nil, registry: CQLPreparedRegistry()))
        // A v5 QUERY naming the keyspace of its unqualified names in its parameters (flag 0x80).
        func v5Query(_ text: String, keyspace: String) -> CQLWireFrame {
            CQLWireFrame(CQLFrameBuilder.frame(version: .v5, isResponse: false, stream: 1, opcode: .query) {
                $0.writeCQLLongString(text)
                $0.writeInteger(UInt16(1))
                $0.writeInteger(Int32(0x80))
                $0.writeCQLString(keyspace)
            })!
        }
        XCTAssertTrue(CQLClusterView.asksForPeers(v5Query("SELECT * FROM peers", keyspace: "system"), keyspace: "ks",
                                                  registry: registry))
        XCTAssertFalse(CQLClusterView.asksForPeers(v5Query("SELECT * FROM peers", keyspace: "ks"), keyspace: "system",
                                                   registry: registry))
        XCTAssertTrue(CQLClusterView.asksForPeers(v5Query("SELECT * FROM system.peers", keyspace: "ks"), keyspace: nil,
                                                  registry: registry))
    }
}
