import Foundation
import NIOCore
import XCTest
@testable import SluiceHost

/// The real DataStax python driver, not told which version to use, negotiating against Sluice's
/// rejection frames: Tests/cql/negotiation_check.py puts a relay in front of the Python test backend
/// that answers every version Sluice does not speak with the frame `CQLVersionNegotiation` built,
/// and relays the rest. The driver opens with DSE v66, then v65, and must settle on the highest
/// version Sluice speaks.
final class CQLVersionNegotiationDriverTests: XCTestCase {
    private func negotiate(supported: [CQLVersion]) throws -> [String: Any] {
        var rejections: [String: String] = [:]
        for raw: UInt8 in [0x42, 0x41, 6, 5, 4, 3] where !supported.map(\.rawValue).contains(raw) {
            rejections[String(raw)] = CQLDriverVectors.hex(CQLVersionNegotiation.rejection(of: raw, supported: supported, stream: 0))
        }
        let request: [String: Any] = ["supported": supported.map { Int($0.rawValue) }, "rejections": rejections]
        return try CQLDriverVectors.runPython("Tests/cql/negotiation_check.py",
                                              input: try JSONSerialization.data(withJSONObject: request)) as! [String: Any]
    }

    func testDriverDowngradesFromDSEToV5() throws {
        let outcome = try negotiate(supported: [.v4, .v5])
        XCTAssertNil(outcome["exception"], "\(outcome)")
        XCTAssertEqual(outcome["protocol_version"] as? Int, 5, "\(outcome)")
        XCTAssertEqual(outcome["refused"] as? [Int], [0x42, 0x41])
        XCTAssertEqual(outcome["problems"] as? [String], [])
        XCTAssertEqual(outcome["release_version"] as? String, "5.0.0")
    }

    func testDriverDowngradesToV4WhenV5IsNotSpoken() throws {
        let outcome = try negotiate(supported: [.v4])
        XCTAssertNil(outcome["exception"], "\(outcome)")
        XCTAssertEqual(outcome["protocol_version"] as? Int, 4, "\(outcome)")
        XCTAssertEqual(outcome["refused"] as? [Int], [0x42, 0x41, 5])
        XCTAssertEqual(outcome["problems"] as? [String], [])
    }
}
