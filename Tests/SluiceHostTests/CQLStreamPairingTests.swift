import NIOCore
import NIOEmbedded
import XCTest
@testable import SluiceHost

/// `CQLStreamPairing` as a plain value (an embedded event loop, frames made by `CQLFrameBuilder`):
/// what it does beyond pairing replies with requests.
final class CQLStreamPairingTests: XCTestCase {
    private final class Collect: ResponseReceiver {
        var replies: [ByteBuffer] = []
        func receive(_ outcome: ChainOutcome) {
            if case .responses(let batch) = outcome { replies.append(contentsOf: batch.messages) }
        }
    }

    private func pairing(keyspace: String? = nil) -> CQLStreamPairing {
        CQLStreamPairing(keyspace: keyspace, registry: CQLPreparedRegistry(), eventLoop: EmbeddedEventLoop(),
                         allocator: ByteBufferAllocator())
    }

    /// Sends one QUERY through `pairing`; returns Sluice's stream id on the wire.
    private func send(_ text: String, on pairing: CQLStreamPairing, to receiver: ResponseReceiver,
                      stream: Int16 = 7) -> Int16 {
        let frame = CQLFrameBuilder.query(version: .v4, stream: stream, query: text)
        let batch = Batch(kind: Batch.requests, protocolID: Batch.cql, messages: [frame])
        let entry = pairing.entry(for: batch, receiver: receiver, route: nil, sentAtCheck: nil)
        pairing.add(entry)
        return CQLWireFrame(batch.messages[0])!.stream
    }

    private func setKeyspace(_ name: String, stream: Int16) -> ByteBuffer {
        CQLFrameBuilder.frame(version: .v4, isResponse: true, stream: stream, opcode: .result) {
            $0.writeInteger(Int32(CQLResultKind.setKeyspace.rawValue))
            $0.writeCQLString(name)
        }
    }

    /// A SET_KEYSPACE naming the connection's own keyspace (a client's USE of it) changes nothing;
    /// one naming another keyspace (an EXECUTE of a USE prepared elsewhere) reaches its client and
    /// then reports the connection as switched, so it is shared no longer.
    func testASwitchedKeyspaceIsReportedAfterTheReplyIsDelivered() {
        let pairing = pairing(keyspace: "ks")
        let client = Collect()
        var switched: [Int] = []
        pairing.keyspaceSwitched = { switched.append(client.replies.count) }
        let use = send("USE ks", on: pairing, to: client)
        XCTAssertEqual(pairing.frameArrived(setKeyspace("ks", stream: use), start: 0), .accepted)
        XCTAssertEqual(switched, [], "the connection's own keyspace")
        let execute = send("(an EXECUTE)", on: pairing, to: client)
        XCTAssertEqual(pairing.frameArrived(setKeyspace("other", stream: execute), start: 0), .accepted)
        XCTAssertEqual(switched, [2], "reported once, after its reply reached the client")
        XCTAssertEqual(client.replies.compactMap { CQLWireFrame($0)?.stream }, [7, 7])

        let noKeyspace = self.pairing()
        var reported = false
        noKeyspace.keyspaceSwitched = { reported = true }
        let stream = send("(an EXECUTE)", on: noKeyspace, to: Collect())
        XCTAssertEqual(noKeyspace.frameArrived(setKeyspace("ks", stream: stream), start: 0), .accepted)
        XCTAssertTrue(reported, "a connection without a keyspace switched to one")
    }
}
