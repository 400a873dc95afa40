import NIOCore
import XCTest
@testable import SluiceHost

/// The versions a `cassandra` source lets clients open with when its sink's backend does not speak
/// v5, as plain values: what Sluice knows of the backend (`CQLBackendVersionKnowledge`), how it
/// reads the backend's answer to its probe, and the first frame of a client refused with the
/// PROTOCOL_ERROR drivers downgrade on. The probe and drivers end to end: `test_cql_versions.py`.
final class CQLBackendVersionsTests: XCTestCase {
    private let both: [CQLVersion] = [.v4, .v5]
    private let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    // MARK: what Sluice knows

    func testNothingIsRefusedUntilAProbeSaysSo() {
        var knowledge = CQLBackendVersionKnowledge()
        XCTAssertTrue(knowledge.startProbe())
        XCTAssertFalse(knowledge.startProbe(), "one probe at a time")
        let whileProbing = knowledge.clientVersions(supported: both, now: start)
        XCTAssertEqual(whileProbing.versions, both)
        XCTAssertFalse(whileProbing.probe)
        knowledge.probeAnswered(.refused(reason: "PROTOCOL_ERROR: Invalid or unsupported protocol version (5)"), now: start)
        XCTAssertEqual(knowledge.clientVersions(supported: both, now: start).versions, [.v4])
        XCTAssertEqual(knowledge.clientVersions(supported: [.v5], now: start).versions, [])
        XCTAssertFalse(knowledge.startProbe(), "an answer stands for the generation")
    }

    func testABackendThatSpeaksV5KeepsEveryVersion() {
        var knowledge = CQLBackendVersionKnowledge()
        _ = knowledge.startProbe()
        knowledge.probeAnswered(.accepted, now: start)
        XCTAssertEqual(knowledge.state, .accepts)
        XCTAssertEqual(knowledge.clientVersions(supported: both, now: start).versions, both)
        XCTAssertFalse(knowledge.clientVersions(supported: both, now: start).probe)
    }

    func testAnInconclusiveProbeIsRetriedByALaterClientNotByEveryClient() {
        var knowledge = CQLBackendVersionKnowledge()
        _ = knowledge.startProbe()
        knowledge.probeAnswered(.inconclusive(reason: "connect failed"), now: start)
        let soon = knowledge.clientVersions(supported: both, now: start + .milliseconds(200))
        XCTAssertEqual(soon.versions, both, "an unreachable backend makes Sluice refuse nothing")
        XCTAssertFalse(soon.probe)
        let later = knowledge.clientVersions(supported: both, now: start + CQLBackendVersionKnowledge.retryAfter)
        XCTAssertEqual(later.versions, both, "the client that starts the probe does not wait for it")
        XCTAssertTrue(later.probe)
        XCTAssertEqual(knowledge.state, .probing)
        XCTAssertFalse(knowledge.clientVersions(supported: both, now: start + .seconds(5)).probe)
        knowledge.probeAnswered(.refused(reason: "v5"), now: start + .seconds(5))
        XCTAssertEqual(knowledge.clientVersions(supported: both, now: start + .seconds(5)).versions, [.v4])
    }

    func testAClientBeforeAnyProbeStartsOne() {
        var knowledge = CQLBackendVersionKnowledge()
        XCTAssertTrue(knowledge.clientVersions(supported: both, now: start).probe)
        XCTAssertFalse(knowledge.startProbe())
    }

    // MARK: the backend's answer to the probe

    func testTheAnswerToTheProbe() throws {
        let ready = CQLFrameBuilder.frame(version: .v5, isResponse: true, stream: 0, opcode: .ready) { _ in }
        XCTAssertEqual(CQLBackendVersionProbe.outcome(ofReply: ready), .accepted)
        let authenticate = CQLFrameBuilder.frame(version: .v5, isResponse: true, stream: 0, opcode: .authenticate) {
            $0.writeCQLString("org.apache.cassandra.auth.PasswordAuthenticator")
        }
        XCTAssertEqual(CQLBackendVersionProbe.outcome(ofReply: authenticate), .accepted)
        // Cassandra 3.x answers a v5 STARTUP in v4.
        let refusal = CQLFrameBuilder.error(version: .v4, stream: 0, code: .protocolError,
                                            message: "Invalid or unsupported protocol version (5); the lowest supported version is 3 and the greatest is 4")
        guard case .refused(let reason)? = CQLBackendVersionProbe.outcome(ofReply: refusal) else {
            return XCTFail("\(String(describing: CQLBackendVersionProbe.outcome(ofReply: refusal)))")
        }
        XCTAssertTrue(reason.contains("unsupported protocol version (5)"), reason)
        // Whole frames only: every shorter prefix needs more bytes.
        for length in 0..<refusal.readableBytes {
            XCTAssertNil(CQLBackendVersionProbe.outcome(ofReply: refusal.getSlice(at: 0, length: length)!), "\(length)")
        }
        let otherError = CQLFrameBuilder.error(version: .v5, stream: 0, code: .protocolError,
                                               message: "Unknown compression algorithm")
        XCTAssertEqual(CQLBackendVersionProbe.outcome(ofReply: otherError),
                       .inconclusive(reason: "ERROR 0xa: Unknown compression algorithm"))
        let overloaded = CQLFrameBuilder.error(version: .v5, stream: 0, code: .overloaded, message: "busy")
        guard case .inconclusive? = CQLBackendVersionProbe.outcome(ofReply: overloaded) else { return XCTFail() }
        let garbage = ByteBuffer(string: "HTTP/1.1 400 Bad Request\r\n")
        guard case .inconclusive? = CQLBackendVersionProbe.outcome(ofReply: garbage) else { return XCTFail() }
    }

    // MARK: a client's first frame

    private func startup(_ version: CQLVersion, stream: Int16) -> ByteBuffer {
        CQLFrameBuilder.frame(version: version, isResponse: false, stream: stream, opcode: .startup) {
            $0.writeCQLStringMap(["CQL_VERSION": "3.0.0"])
        }
    }

    func testAVersionTheBackendRefusesGetsTheDowngradeErrorOnItsFirstFrame() throws {
        var connection = CQLClientConnection(maxFrameBytes: 1 << 20, authentication: .none)
        XCTAssertTrue(connection.awaitsBackendVersions)
        connection.backendVersionsKnown([.v4])
        XCTAssertFalse(connection.awaitsBackendVersions)
        var input = startup(.v5, stream: 5)
        var partial = input.readSlice(length: 3)!
        XCTAssertNil(connection.next(&partial), "the stream is needed for the answer")
        input = startup(.v5, stream: 5)
        guard case .close(let frame, let violation)? = connection.next(&input) else { return XCTFail() }
        XCTAssertEqual(violation.kind, .unsupportedVersion(5))
        let (version, _, stream, opcode, _) = try XCTUnwrap(frame.getMultipleIntegers(at: 0, as: (UInt8, UInt8, Int16, UInt8, Int32).self))
        XCTAssertEqual(version, 0x84, "a response in v4, the version the client should use")
        XCTAssertEqual(stream, 5)
        XCTAssertEqual(opcode, CQLOpcode.error.rawValue)
        XCTAssertEqual(frame.getInteger(at: 9, as: Int32.self), CQLErrorCode.protocolError.rawValue)
        let length = try XCTUnwrap(frame.getInteger(at: 13, as: UInt16.self))
        let text = try XCTUnwrap(frame.getString(at: 15, length: Int(length)))
        XCTAssertEqual(text, "Invalid or unsupported protocol version (5); supported versions are (4/v4)")
        XCTAssertEqual(connection.state, .closed)
    }

    func testVersionsTheBackendSpeaksGoOnAsBefore() {
        for (known, version) in [([CQLVersion.v4], CQLVersion.v4), (nil, .v5), ([.v4, .v5], .v5), ([], .v5)] {
            var connection = CQLClientConnection(maxFrameBytes: 1 << 20, authentication: .none)
            connection.backendVersionsKnown(known)
            var input = startup(version, stream: 2)
            guard case .answer(let ready, _)? = connection.next(&input) else { return XCTFail("\(String(describing: known))") }
            XCTAssertEqual(ready.getInteger(at: 4, as: UInt8.self), CQLOpcode.ready.rawValue)
            XCTAssertEqual(connection.state, .ready)
        }
    }

    /// SUPPORTED lists only the versions the backend speaks too, once known: as the first frame and
    /// after STARTUP (before: 4/v4 and 5/v5 whatever the backend). Unknown or both: Sluice's two.
    func testOptionsListsOnlyTheVersionsTheBackendSpeaksToo() throws {
        func listed(_ connection: inout CQLClientConnection) throws -> [String]? {
            var input = CQLFrameBuilder.frame(version: .v4, isResponse: false, stream: 6, opcode: .options) { _ in }
            guard case .answer(let frame, _)? = connection.next(&input) else { XCTFail("no answer"); return nil }
            var bytes = frame
            let scanner = CQLFrameScanner(direction: .responses, maxFrameBytes: 1 << 20, supportedVersions: CQLVersion.allCases)
            let read = try XCTUnwrap(try scanner.nextFrame(&bytes))
            guard case .supported(let supported) = try CQLMessage(frame: read, compression: nil, maxBodyBytes: 1 << 20)
            else { XCTFail("not SUPPORTED"); return nil }
            return supported.options["PROTOCOL_VERSIONS"]
        }
        for (known, expected) in [([CQLVersion.v4], ["4/v4"]), (nil, ["4/v4", "5/v5"]), ([.v4, .v5], ["4/v4", "5/v5"])] {
            var connection = CQLClientConnection(maxFrameBytes: 1 << 20, authentication: .none)
            connection.backendVersionsKnown(known)
            XCTAssertEqual(try listed(&connection), expected, "first frame, \(String(describing: known))")
            var input = startup(.v4, stream: 2)
            guard case .answer? = connection.next(&input) else { return XCTFail() }
            XCTAssertEqual(connection.state, .ready)
            XCTAssertEqual(try listed(&connection), expected, "after STARTUP, \(String(describing: known))")
        }
    }

    func testAVersionSluiceDoesNotSpeakIsRefusedAsBefore() {
        var connection = CQLClientConnection(maxFrameBytes: 1 << 20, authentication: .none)
        connection.backendVersionsKnown([.v4])
        var input = ByteBuffer(bytes: [0x42, 0, 0, 0, 0x05, 0, 0, 0, 0])
        guard case .close(let frame, let violation)? = connection.next(&input) else { return XCTFail() }
        XCTAssertEqual(violation.kind, .unsupportedVersion(0x42))
        XCTAssertEqual(frame.getInteger(at: 0, as: UInt8.self), 0x85, "Sluice's own refusal, in v5")
    }
}
