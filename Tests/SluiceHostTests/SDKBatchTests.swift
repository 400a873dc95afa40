import PluginABI
import SluiceSDK
import XCTest
@testable import SluiceHost

/// SluiceSDK's batch helpers against the real host function table (no event loop needed: batches
/// made with batch_new belong to the calling thread).
final class SDKBatchTests: XCTestCase {
    override func setUp() {
        sluiceHost = HostAPI.table
    }

    /// An MSET of 100,000 pairs: putCommand used to recurse once per argument and overflow the stack.
    func testPutCommandTakesAnyNumberOfArguments() {
        let batch = SluiceSDK.Batch.newRequests()
        defer { batch.free() }
        var arguments: [[UInt8]] = [Array("MSET".utf8)]
        for i in 0..<100_000 {
            arguments.append(Array("key:\(i)".utf8))
            arguments.append(Array("value:\(i)".utf8))
        }
        XCTAssertEqual(batch.putCommand(arguments, at: 0), SluiceStatus(SLUICE_OK, ""))
        XCTAssertEqual(batch.argumentCount(at: 0), arguments.count)
        var views = ArgumentViews()
        batch.arguments(at: 0, into: &views)
        XCTAssertEqual(Array(views[0]), Array("MSET".utf8))
        XCTAssertEqual(Array(views[arguments.count - 1]), Array("value:99999".utf8))
        XCTAssertEqual(Array(views[1]), Array("key:0".utf8))
    }

    func testPutCommandWithEmptyArguments() {
        let batch = SluiceSDK.Batch.newRequests()
        defer { batch.free() }
        XCTAssertTrue(batch.putCommand([Array("PING".utf8), []], at: 0).isOK)
        XCTAssertEqual(Array(batch.bytes(at: 0)), Array("*2\r\n$4\r\nPING\r\n$0\r\n\r\n".utf8))
        XCTAssertEqual(batch.putCommand([], at: 0).code, SLUICE_ERROR_INVALID_ARGUMENT)
    }

    /// Failures come back as statuses (and `check()` throws them), never silently dropped.
    func testHelpersReturnTheHostsStatus() throws {
        let responses = SluiceSDK.Batch.newResponses()
        XCTAssertTrue(responses.putError("ERR no", at: 0).isOK)
        XCTAssertEqual(responses.putInteger(1, at: 5).code, SLUICE_ERROR_INVALID_ARGUMENT)  // past the end
        XCTAssertThrowsError(try responses.putInteger(1, at: 5).check()) { error in
            XCTAssertEqual((error as? SluiceError)?.status, SLUICE_ERROR_INVALID_ARGUMENT)
        }
        XCTAssertEqual(responses.remove(at: 3).code, SLUICE_ERROR_INVALID_ARGUMENT)
        responses.free()
        // The batch is gone: its handle is stale, and every use of it says so.
        XCTAssertEqual(responses.putNull(at: 0).code, SLUICE_ERROR_STATE)
        XCTAssertEqual(responses.count, 0)
        responses.free()  // a second free is refused, not a double release
    }
}
