import Foundation
import PluginABI
import XCTest
import NIOEmbedded
@testable import SluiceHost

/// Control functions (ABI 1.2): parsing the declared parameters, converting an operator's text
/// arguments by them, and the libffi call itself (with real C-convention functions).
final class ControlFunctionTests: XCTestCase {
    // MARK: declarations

    func testDeclarationsOfEveryTypeParse() throws {
        let s = try ControlSignature.parse("int64_t n, double  x,bool on, const char*text, const uint8_t *data, size_t data_len")
        XCTAssertEqual(s.parameters.map(\.type), [.int64, .double, .bool, .string, .bytes])
        XCTAssertEqual(s.parameters.map(\.name), ["n", "x", "on", "text", "data"])
        XCTAssertEqual(s.text, "int64_t n, double x, bool on, const char *text, const uint8_t *data, size_t data_len")
        XCTAssertEqual(try ControlSignature.parse("").parameters, [])
        XCTAssertEqual(try ControlSignature.parse(" void ").parameters, [])
    }

    func testBadDeclarationsAreRefusedWithTheReason() {
        let cases: [(String, String)] = [
            ("int n", "type 'int' is not one of"),
            ("char *s", "type 'char *' is not one of"),
            ("const uint8_t *data", "must be followed by its length"),
            ("const uint8_t *data, int64_t n", "must be followed by its length"),
            ("size_t n", "size_t only follows"),
            ("int64_t", "expected 'TYPE NAME'"),
            ("int64_t a, int64_t a", "used twice"),
            ("int64_t n,", "expected 'TYPE NAME'"),
            (Array(repeating: "bool b", count: 9).enumerated().map { "bool b\($0.offset)" }.joined(separator: ", "), "at most 8"),
        ]
        for (declaration, reason) in cases {
            XCTAssertThrowsError(try ControlSignature.parse(declaration), declaration) { error in
                XCTAssertTrue("\(error)".contains(reason), "\(declaration): \(error)")
            }
        }
    }

    // MARK: arguments

    func testArgumentsConvertByType() throws {
        let s = try ControlSignature.parse("int64_t n, double x, bool on, const char *text, const uint8_t *data, size_t len")
        XCTAssertEqual(try s.convert(["-9223372036854775808", "1e3", "OFF", "héllo", "a\u{0}b"]),
                       [.int64(Int64.min), .double(1000), .bool(false), .string(Array("héllo".utf8)), .bytes([97, 0, 98])])
        XCTAssertEqual(try s.convert(["+7", "-0.5", "yes", "", ""]),
                       [.int64(7), .double(-0.5), .bool(true), .string([]), .bytes([])])
    }

    func testWrongArgumentsAreRefusedNamingTheParameter() throws {
        let s = try ControlSignature.parse("int64_t n, double x, bool on, const char *text")
        let cases: [([String], String)] = [
            (["1", "2", "true"], "expected 4 argument(s)"),
            (["1", "2", "true", "t", "extra"], "expected 4 argument(s)"),
            (["", "2", "true", "t"], "argument 1 (n): expected an integer"),
            (["1 ", "2", "true", "t"], "argument 1 (n)"),
            (["0x10", "2", "true", "t"], "argument 1 (n)"),
            (["9223372036854775808", "2", "true", "t"], "argument 1 (n)"),
            (["1", "inf", "true", "t"], "argument 2 (x): expected a finite number"),
            (["1", "1e999", "true", "t"], "argument 2 (x)"),
            (["1", ".", "true", "t"], "argument 2 (x)"),
            (["1", "2", "2", "t"], "argument 3 (on): expected a bool"),
            (["1", "2", "true", "a\u{0}b"], "argument 4 (text): expected text without a NUL byte"),
        ]
        for (arguments, reason) in cases {
            XCTAssertThrowsError(try s.convert(arguments), "\(arguments)") { error in
                XCTAssertTrue("\(error)".contains(reason), "\(arguments): \(error)")
            }
        }
    }

    // MARK: the libffi call

    /// What the C functions below saw (one test at a time).
    nonisolated(unsafe) static var seen: [String] = []

    func testLibffiPassesEveryTypeAndTheReturnedStatus() throws {
        typealias Typed = @convention(c) (UnsafeMutableRawPointer?, OpaquePointer?, Int64, Double, Bool,
                                          UnsafePointer<CChar>?, UnsafePointer<UInt8>?, Int) -> Int32
        let typed: Typed = { config, ctl, n, x, on, text, data, length in
            let bytes = Array(UnsafeBufferPointer(start: data, count: length))
            ControlFunctionTests.seen = ["\(config.map { Int(bitPattern: $0) } ?? 0)", "\(ctl.map { Int(bitPattern: UnsafeRawPointer($0)) } ?? 0)",
                                         "\(n)", "\(x)", "\(on)", String(cString: text!), "\(bytes)"]
            return n < 0 ? Int32(SLUICE_ERROR) : Int32(SLUICE_OK)
        }
        let signature = try ControlSignature.parse("int64_t n, double x, bool on, const char *text, const uint8_t *data, size_t len")
        let config = UnsafeMutableRawPointer(bitPattern: 0x1234)
        let ctl = OpaquePointer(bitPattern: 0x5675)!
        var status = try ControlInvoker.call(unsafeBitCast(typed, to: UnsafeRawPointer.self), config: config, ctl: ctl,
                                             arguments: signature.convert(["42", "0.25", "true", "policy", "a\u{0}b"]))
        XCTAssertEqual(status, SLUICE_OK)
        XCTAssertEqual(Self.seen, ["\(0x1234)", "\(0x5675)", "42", "0.25", "true", "policy", "[97, 0, 98]"])
        status = try ControlInvoker.call(unsafeBitCast(typed, to: UnsafeRawPointer.self), config: nil, ctl: ctl,
                                         arguments: signature.convert(["-1", "-3", "no", "", ""]))
        XCTAssertEqual(status, SLUICE_ERROR)
        XCTAssertEqual(Self.seen, ["0", "\(0x5675)", "-1", "-3.0", "false", "", "[]"])
    }

    func testNoParameterFunction() throws {
        typealias Bare = @convention(c) (UnsafeMutableRawPointer?, OpaquePointer?) -> Int32
        let bare: Bare = { _, _ in
            ControlFunctionTests.seen = ["bare"]
            return 6
        }
        XCTAssertEqual(try ControlInvoker.call(unsafeBitCast(bare, to: UnsafeRawPointer.self), config: nil,
                                               ctl: OpaquePointer(bitPattern: 0x15)!, arguments: []), 6)
        XCTAssertEqual(Self.seen, ["bare"])
    }

    // MARK: the call handle

    func testReplyAndPublishOnlyDuringTheCall() throws {
        let state = ControlCallState()
        let ctl = state.begin()
        let text = "policy: fail"
        XCTAssertEqual(text.withCString { state.reply(ctl, $0, text.utf8.count) }, SLUICE_OK)
        let apply: sluice_on_publish_fn = { _, _ in }
        XCTAssertEqual(state.publish(ctl, apply, nil, nil), SLUICE_OK)
        XCTAssertEqual(state.publish(ctl, nil, nil, nil), SLUICE_ERROR_INVALID_ARGUMENT)
        let finished = state.end()
        XCTAssertEqual(finished.reply, Array(text.utf8))
        XCTAssertEqual(finished.publishes.count, 1)
        XCTAssertEqual(text.withCString { state.reply(ctl, $0, 3) }, SLUICE_ERROR_STATE)
        let next = state.begin()
        XCTAssertNotEqual(next, ctl)
        XCTAssertEqual(text.withCString { state.reply(ctl, $0, 3) }, SLUICE_ERROR_STATE)  // the old one stays stale
        XCTAssertEqual(state.publish(ctl, apply, nil, nil), SLUICE_ERROR_STATE)
        XCTAssertEqual(state.reply(nil, nil, 0), SLUICE_ERROR_INVALID_ARGUMENT)
        XCTAssertEqual(state.reply(next, nil, 5), SLUICE_ERROR_INVALID_ARGUMENT)
        XCTAssertEqual(state.end().publishes.count, 0)
    }

    // MARK: loading

    func testAPluginWithControlFunctionsLoadsThemAndAnOlderMinorHasNone() throws {
        let probe = try PluginLoader.load(path: PluginLoaderTests.fixtures + "/libcontrol-probe.so").get()
        XCTAssertEqual(probe.transforms.first?.controlFunctions.map(\.name), ["typed", "fail", "calls", "keep", "use_kept", "crash"])
        let old = try PluginLoader.load(path: PluginLoaderTests.fixtures + "/libminor-1-1.so").get()
        XCTAssertEqual(old.abiMinor, 1)
        XCTAssertEqual(old.transforms.first?.controlFunctions.count, 0)
    }

    /// A connection that closes while a control call on its step is running is forgotten at once:
    /// `remove` does not wait for the call (only instance_new and config_free do); the call's
    /// snapshot at its end no longer holds it.
    func testClosingAConnectionDoesNotWaitForAControlCall() {
        let live = LiveInstances()
        let loop = EmbeddedEventLoop()
        guard case .made(let entry) = live.create(on: loop, hasConfig: { true }, { (SLUICE_OK, nil) }) else {
            return XCTFail("instance not registered")
        }
        let removed = DispatchSemaphore(value: 0)
        let snapshot: [LiveInstances.Entry] = live.exclusively { current in
            // The control call is in progress (the exclusion lock is held); a close on another thread:
            DispatchQueue.global().async {
                live.remove(entry)
                removed.signal()
            }
            XCTAssertEqual(removed.wait(timeout: .now() + 30), .success, "remove waited for the control call")
            return current()
        }
        XCTAssertTrue(snapshot.isEmpty)
        XCTAssertFalse(entry.isAlive)
        XCTAssertEqual(live.count, 0)
    }
}
