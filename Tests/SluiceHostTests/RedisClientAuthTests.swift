import NIOCore
import XCTest
@testable import SluiceHost

final class RedisClientAuthTests: XCTestCase {
    private let auth = RedisClientAuth(users: [
        .init(name: Array("default".utf8), password: Array("pw".utf8)),
        .init(name: Array("app".utf8), password: Array("app-pw".utf8)),
    ])

    private func command(_ args: String...) -> ByteBuffer {
        RESPEncoding.command(args.map { Array($0.utf8) }, allocator: ByteBufferAllocator())
    }

    private func screen(_ frame: ByteBuffer, authenticated: Bool, inTransaction: Bool = false) -> RedisClientAuth.Screening {
        frame.withUnsafeReadableBytes {
            auth.screen($0, authenticated: authenticated, inTransaction: inTransaction, allocator: ByteBufferAllocator())
        }
    }

    private func reply(_ screening: RedisClientAuth.Screening) -> String? {
        if case .answer(let reply, _, _) = screening { return reply }
        return nil
    }

    func testHelloAuthIsCheckedAndTakenOutKeepingTheOtherOptions() {
        let screening = screen(command("hello", "3", "AUTH", "app", "app-pw", "SETNAME", "worker"), authenticated: false)
        guard case .forwardRewritten(let hello) = screening else { return XCTFail("\(screening)") }
        XCTAssertEqual(String(buffer: hello), "*4\r\n$5\r\nhello\r\n$1\r\n3\r\n$7\r\nSETNAME\r\n$6\r\nworker\r\n")
        // A password never travels on, even from a client already signed in.
        XCTAssertEqual(reply(screen(command("HELLO", "3", "AUTH", "app", "wrong"), authenticated: true)),
                       RedisClientAuth.wrongPass)
        XCTAssertEqual(reply(screen(command("HELLO", "AUTH", "app", "app-pw"), authenticated: true)),
                       "-ERR Protocol version is not an integer or out of range\r\n")
        guard case .forward = screen(command("HELLO", "3", "SETNAME", "x"), authenticated: true) else { return XCTFail() }
        // Every AUTH option is taken out; the last one counts, as in redis-server.
        let twice = screen(command("HELLO", "3", "AUTH", "default", "first-secret", "AUTH", "app", "app-pw"), authenticated: false)
        guard case .forwardRewritten(let stripped) = twice else { return XCTFail("\(twice)") }
        XCTAssertEqual(String(buffer: stripped), "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")
        // A client name Redis would refuse refuses the whole HELLO, sign-in included.
        XCTAssertEqual(reply(screen(command("HELLO", "3", "AUTH", "app", "app-pw", "SETNAME", "a b"), authenticated: false)),
                       "-ERR Client names cannot contain spaces, newlines or special characters.\r\n")
    }

    func testHelloVersionIsReadAsRedisReadsIt() {
        for (version, expected) in [("03", "-ERR Protocol version is not an integer or out of range\r\n"),
                                    ("x", "-ERR Protocol version is not an integer or out of range\r\n"),
                                    ("-0", "-ERR Protocol version is not an integer or out of range\r\n"),
                                    ("99999999999999999999", "-ERR Protocol version is not an integer or out of range\r\n"),
                                    ("-1", "-NOPROTO unsupported protocol version\r\n"),
                                    ("4", "-NOPROTO unsupported protocol version\r\n"),
                                    ("1234567890123456789", "-NOPROTO unsupported protocol version\r\n")] {
            XCTAssertEqual(reply(screen(command("HELLO", version, "AUTH", "app", "app-pw"), authenticated: false)), expected, version)
        }
    }

    func testAuthForms() {
        XCTAssertEqual(reply(screen(command("AUTH", "pw"), authenticated: false)), "+OK\r\n")
        XCTAssertEqual(reply(screen(command("auth", "app", "app-pw"), authenticated: false)), "+OK\r\n")
        XCTAssertEqual(reply(screen(command("AUTH", "app-pw"), authenticated: false)), RedisClientAuth.wrongPass,
                       "AUTH <password> is the user default")
        XCTAssertEqual(reply(screen(command("AUTH", "default", "app-pw"), authenticated: false)), RedisClientAuth.wrongPass)
        XCTAssertEqual(reply(screen(command("AUTH", "pw"), authenticated: true, inTransaction: true)),
                       "-ERR sluice: AUTH inside MULTI is not supported through the proxy\r\n")
        guard case .answer(_, nil, true) = screen(command("AUTH", "x"), authenticated: true) else {
            return XCTFail("a failed AUTH leaves the client as it was and counts as a failure")
        }
    }

    func testOnlyAuthHelloQuitAndResetBeforeSigningIn() {
        XCTAssertEqual(reply(screen(command("GET", "k"), authenticated: false)), RedisClientAuth.noAuth)
        XCTAssertEqual(reply(screen(command("SUBSCRIBE", "c"), authenticated: false)), RedisClientAuth.noAuth)
        guard case .forward = screen(command("QUIT"), authenticated: false) else { return XCTFail() }
        XCTAssertEqual(reply(screen(command("RESET"), authenticated: false)), "+RESET\r\n")
        guard case .forwardSigningOut = screen(command("reset"), authenticated: true) else { return XCTFail() }
        guard case .forward = screen(command("GET", "k"), authenticated: true) else { return XCTFail() }
    }

    func testConstantTimeEquals() {
        XCTAssertTrue(RedisClientAuth.constantTimeEquals(Array("abc".utf8), Array("abc".utf8)))
        XCTAssertFalse(RedisClientAuth.constantTimeEquals(Array("abc".utf8), Array("abd".utf8)))
        XCTAssertFalse(RedisClientAuth.constantTimeEquals(Array("abc".utf8), Array("ab".utf8)))
        XCTAssertTrue(RedisClientAuth.constantTimeEquals([UInt8](), [UInt8]()))
        XCTAssertFalse(RedisClientAuth.constantTimeEquals(Array("abcabc".utf8), Array("abc".utf8)), "a repeated secret is not the secret")
        XCTAssertFalse(RedisClientAuth.constantTimeEquals(Array("abc".utf8), [UInt8]()))
    }
}
