import Foundation
import NIOHTTP1
import XCTest
@testable import SluiceHost

/// The admin endpoint over a unix domain socket (as a supervisor reaches its workers): the same
/// service, routes and token check as over TCP, through the real listener and client.
final class AdminEndpointTests: XCTestCase {
    func testUnixSocketServesTheRoutesAndChecksTheToken() throws {
        let path = NSTemporaryDirectory() + "sluice-admin-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        defer { unlink(path) }
        let token = "0123456789abcdef-token"
        var reloads = 0
        let service = AdminService(control: ControlPlane(currentPlan: { nil }), token: token,
                                   reload: { reloads += 1; return (true, "generation 2") })
        let server = try AdminServer(unixSocketPath: path, service: service)
        defer { server.stop() }
        XCTAssertEqual(server.boundAddress, "unix:\(path)")

        let anonymous = AdminClient(address: .unixSocket(path: path), token: nil)
        XCTAssertEqual(try anonymous.request(.GET, "/functions").status, 401)
        XCTAssertEqual(try anonymous.request(.POST, "/reload").status, 401)
        XCTAssertEqual(reloads, 0, "nothing runs without the token")
        XCTAssertEqual(try AdminClient(address: .unixSocket(path: path), token: token + "x").request(.GET, "/functions").status, 401)

        let client = AdminClient(address: .unixSocket(path: path), token: token)
        let functions = try client.request(.GET, "/functions")
        XCTAssertEqual(functions.status, 200)
        XCTAssertEqual((functions.object["functions"] as? [Any])?.count, 0)
        let reload = try client.request(.POST, "/reload")
        XCTAssertEqual(reload.status, 200)
        XCTAssertEqual(reload.object["result"] as? String, "generation 2")
        XCTAssertEqual(reloads, 1)
        let call = try client.request(.POST, "/call", json: ["function": "tee.set_policy", "step": "main[0]", "args": ["fail"]])
        XCTAssertEqual(call.status, 400)
        XCTAssertEqual(call.object["called"] as? Bool, false)
        XCTAssertEqual(try client.request(.POST, "/call", json: ["nothing": 1]).status, 400)
        XCTAssertEqual(try client.request(.GET, "/call").status, 405)
        XCTAssertEqual(try client.request(.GET, "/nowhere").status, 404)
    }

    func testReloadWithoutAHandlerSaysItIsNotAvailable() throws {
        let path = NSTemporaryDirectory() + "sluice-admin-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        defer { unlink(path) }
        let server = try AdminServer(unixSocketPath: path,
                                     service: AdminService(control: ControlPlane(currentPlan: { nil }), token: nil, reload: nil))
        defer { server.stop() }
        let answer = try AdminClient(address: .unixSocket(path: path), token: nil).request(.POST, "/reload")
        XCTAssertEqual(answer.status, 501)
        XCTAssertEqual(answer.object["error"] as? String, "reload not available in this build")
    }
}
