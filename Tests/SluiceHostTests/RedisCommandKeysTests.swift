import Foundation
import NIOCore
import XCTest
@testable import SluiceHost

/// The host's key table (`redis_keys`) against the real redis-server installed here: for each
/// sample command, the keys the host finds must be the keys `COMMAND GETKEYS` names, in order.
final class RedisCommandKeysTests: XCTestCase {
    private let allocator = ByteBufferAllocator()

    /// Commands in their everyday and their awkward forms (options, numkeys, keywords, subcommands).
    static let samples: [[String]] = [
        ["GET", "k"], ["SET", "k", "v", "EX", "10", "GET"], ["MSET", "a", "1", "b", "2", "c", "3"],
        ["MSETNX", "a", "1", "b", "2"], ["MGET", "a", "b", "c"], ["DEL", "a"], ["DEL", "a", "b", "c"],
        ["UNLINK", "x", "y"], ["EXISTS", "a", "b"], ["TOUCH", "a"], ["RENAME", "a", "b"], ["COPY", "a", "b", "REPLACE"],
        ["INCR", "k"], ["APPEND", "k", "v"], ["GETEX", "k", "PERSIST"], ["GETDEL", "k"], ["SETRANGE", "k", "0", "v"],
        ["EXPIRE", "k", "10", "NX"], ["TTL", "k"], ["TYPE", "k"], ["DUMP", "k"], ["OBJECT", "ENCODING", "k"],
        ["OBJECT", "FREQ", "k"], ["OBJECT", "HELP"], ["MEMORY", "USAGE", "k", "SAMPLES", "5"],
        ["HSET", "h", "f", "v", "g", "w"], ["HMGET", "h", "f", "g"], ["HGETALL", "h"], ["HSCAN", "h", "0", "MATCH", "*"],
        ["LPUSH", "l", "a", "b"], ["LRANGE", "l", "0", "-1"], ["LMOVE", "a", "b", "LEFT", "RIGHT"],
        ["BLPOP", "a", "b", "c", "0"], ["BRPOP", "a", "1.5"], ["BLMOVE", "a", "b", "LEFT", "LEFT", "0"],
        ["BRPOPLPUSH", "a", "b", "0"], ["LMPOP", "2", "a", "b", "LEFT", "COUNT", "2"], ["BLMPOP", "0", "1", "a", "RIGHT"],
        ["SADD", "s", "m"], ["SINTER", "a", "b", "c"], ["SINTERSTORE", "d", "a", "b"], ["SMOVE", "a", "b", "m"],
        ["SINTERCARD", "2", "a", "b", "LIMIT", "3"], ["SSCAN", "s", "0"], ["SMISMEMBER", "s", "a", "b"],
        ["ZADD", "z", "1", "m"], ["ZRANGE", "z", "0", "-1", "WITHSCORES"], ["ZRANGESTORE", "d", "z", "0", "-1"],
        ["ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2"], ["ZINTERSTORE", "d", "3", "a", "b", "c"],
        ["ZDIFFSTORE", "d", "1", "a"], ["ZUNION", "2", "a", "b"], ["ZINTER", "2", "a", "b", "WITHSCORES"],
        ["ZDIFF", "3", "a", "b", "c"], ["ZINTERCARD", "2", "a", "b"], ["ZMPOP", "2", "a", "b", "MIN"],
        ["BZMPOP", "0", "2", "a", "b", "MAX", "COUNT", "3"], ["BZPOPMIN", "a", "b", "0"],
        ["XADD", "s", "*", "f", "v"], ["XRANGE", "s", "-", "+"], ["XLEN", "s"],
        ["XREAD", "STREAMS", "a", "0"], ["XREAD", "COUNT", "2", "STREAMS", "a", "b", "0", "0"],
        ["XREAD", "BLOCK", "0", "COUNT", "1", "STREAMS", "a", "b", "c", "1", "2", "3"],
        ["XREADGROUP", "GROUP", "g", "c", "STREAMS", "a", "b", ">", ">"],
        ["XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "NOACK", "STREAMS", "a", ">"],
        ["XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"], ["XINFO", "STREAM", "s", "FULL"], ["XINFO", "GROUPS", "s"],
        ["XACK", "s", "g", "1-0"], ["XAUTOCLAIM", "s", "g", "c", "0", "0-0"],
        ["EVAL", "return 1", "0"], ["EVAL", "return 1", "2", "a", "b", "arg"], ["EVALSHA", "abc", "1", "k", "x"],
        ["EVAL_RO", "return 1", "1", "a"], ["FCALL", "f", "2", "a", "b", "x"], ["FCALL_RO", "f", "0", "x"],
        ["SORT", "k"], ["SORT", "k", "BY", "w_*", "LIMIT", "0", "10", "GET", "o_*", "DESC", "ALPHA", "STORE", "d"],
        ["SORT", "k", "STORE", "d", "GET", "#"], ["SORT", "k", "GET", "store", "STORE", "dest"], ["SORT_RO", "k", "BY", "x"],
        ["MIGRATE", "h", "6379", "k", "0", "1000"], ["MIGRATE", "h", "6379", "", "0", "1000", "COPY", "KEYS", "a", "b"],
        ["MIGRATE", "h", "6379", "", "0", "1000", "AUTH", "keys", "KEYS", "a"],
        ["MIGRATE", "h", "6379", "", "0", "1000", "AUTH2", "u", "keys", "KEYS", "a", "b"],
        ["GEOADD", "g", "1", "2", "m"], ["GEORADIUS", "g", "1", "2", "3", "km"],
        ["GEORADIUS", "g", "1", "2", "3", "km", "STORE", "d"], ["GEORADIUS", "g", "1", "2", "3", "km", "STOREDIST", "d"],
        ["GEORADIUSBYMEMBER", "g", "m", "3", "km", "STORE", "d"], ["GEOSEARCHSTORE", "d", "s", "FROMMEMBER", "m", "BYRADIUS", "1", "km"],
        ["BITOP", "AND", "d", "a", "b"], ["BITFIELD", "k", "GET", "u4", "0"], ["BITCOUNT", "k"], ["PFADD", "h", "a"],
        ["PFCOUNT", "a", "b"], ["PFMERGE", "d", "a", "b"], ["LCS", "a", "b"], ["WATCH", "a", "b"],
        ["RESTORE", "k", "0", "x"], ["SETNX", "k", "v"], ["GETSET", "k", "v"], ["SUBSTR", "k", "0", "1"],
    ]

    /// Commands the host must know to have no keys.
    static let keyless: [[String]] = [
        ["PING"], ["ECHO", "x"], ["MULTI"], ["EXEC"], ["SELECT", "1"], ["HELLO", "3"], ["CLIENT", "SETNAME", "n"],
        ["CONFIG", "GET", "maxmemory"], ["INFO"], ["DBSIZE"], ["FLUSHALL"], ["KEYS", "*"], ["SCAN", "0"],
        ["PUBLISH", "c", "m"], ["SUBSCRIBE", "c"], ["AUTH", "p"], ["COMMAND", "INFO", "get"], ["SCRIPT", "FLUSH"],
        ["FUNCTION", "LIST"],
    ]

    private func positions(_ command: [String]) -> (RedisCommandKeys.Lookup, [Int]) {
        let message = RESPEncoding.command(command.map { Array($0.utf8) }, allocator: allocator)
        var found: [Int] = []
        let lookup = message.withUnsafeReadableBytes { RedisCommandKeys.positions($0) { found.append($0) } }
        return (lookup, found)
    }

    func testMovableKeysWithoutAServer() {
        XCTAssertEqual(positions(["mset", "a", "1", "b", "2"]).1, [1, 3])
        XCTAssertEqual(positions(["EVAL", "s", "2", "a", "b", "c"]).1, [3, 4])
        XCTAssertEqual(positions(["XREAD", "COUNT", "1", "STREAMS", "a", "b", "0", "0"]).1, [4, 5])
        XCTAssertEqual(positions(["SORT", "k", "LIMIT", "0", "1", "STORE", "d"]).1, [1, 6])
        XCTAssertEqual(positions(["object", "encoding", "k"]).1, [2])
        XCTAssertEqual(positions(["PING"]).0, .found)
        XCTAssertEqual(positions(["PING"]).1, [])
        XCTAssertEqual(positions(["NOSUCHCOMMAND", "k"]).0, .unknownCommand)
        XCTAssertEqual(positions(["OBJECT", "NOSUCH", "k"]).0, .unknownCommand)
        XCTAssertEqual(positions(["EVAL", "s", "x", "a"]).0, .malformed)  // numkeys no number
        XCTAssertEqual(positions(["EVAL", "s", "3", "a"]).0, .malformed)  // more keys than arguments
        XCTAssertEqual(positions(["GET"]).0, .malformed)
        XCTAssertEqual(positions(["EVAL", "s", "0"]).1, [])
    }

    func testTheTableHasEveryCommandOnce() {
        let names = RedisKeyRule.table.allNames
        XCTAssertEqual(Set(names).count, names.count)
        XCTAssertGreaterThan(names.count, 300)
        XCTAssertTrue(names.contains("xinfo|stream"))
    }

    func testKeysAgreeWithCommandGetkeysOfRedisServer() throws {
        let server = try RedisProcess()
        defer { server.stop() }
        var checked = 0
        for sample in Self.samples {
            let (lookup, found) = positions(sample)
            XCTAssertEqual(lookup, .found, "\(sample)")
            let expected = try server.getkeys(sample)
            XCTAssertEqual(found.map { sample[$0] }, expected, "keys of \(sample.joined(separator: " "))")
            checked += 1
        }
        for sample in Self.keyless {
            let (lookup, found) = positions(sample)
            XCTAssertEqual(lookup, .found, "\(sample)")
            XCTAssertEqual(found, [], "\(sample)")
            // COMMAND GETKEYS needs at least one argument after the command name.
            if sample.count > 1 { XCTAssertEqual(try server.getkeys(sample), [], "redis-server finds keys in \(sample)") }
        }
        XCTAssertEqual(checked, Self.samples.count)
    }

    func testEveryCommandOfRedisServerIsInTheTable() throws {
        let server = try RedisProcess()
        defer { server.stop() }
        let names = try server.cli(["COMMAND", "LIST"]).split(separator: "\n").map { $0.lowercased() }
        XCTAssertGreaterThan(names.count, 200)
        let table = Set(RedisKeyRule.table.allNames)
        for name in names { XCTAssertTrue(table.contains(name), "\(name) is missing from the key table") }
    }
}

/// A redis-server on a free loopback port, driven with redis-cli (skips the test when either is
/// not installed).
final class RedisProcess {
    let port: Int
    private let process: Process

    init() throws {
        guard let server = Self.which("redis-server"), Self.which("redis-cli") != nil else {
            throw XCTSkip("redis-server and redis-cli are needed")
        }
        port = Self.freePort()
        process = Process()
        process.executableURL = URL(fileURLWithPath: server)
        process.arguments = ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        for _ in 0..<100 {
            if (try? cli(["PING"])) == "PONG" { return }
            usleep(50_000)
        }
        stop()
        throw XCTSkip("redis-server did not start on port \(port)")
    }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }

    /// The keys COMMAND GETKEYS names ([] when it says the command has none).
    func getkeys(_ command: [String]) throws -> [String] {
        let output = try cli(["COMMAND", "GETKEYS"] + command)
        if output.hasPrefix("ERR The command has no key arguments") { return [] }
        if output.hasPrefix("ERR") { throw XCTSkip("GETKEYS \(command): \(output)") }
        return output.isEmpty ? [] : output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    }

    /// redis-cli's raw output, without the final newline.
    func cli(_ arguments: [String]) throws -> String {
        let cli = Process()
        cli.executableURL = URL(fileURLWithPath: Self.which("redis-cli")!)
        cli.arguments = ["-p", "\(port)", "--raw"] + arguments
        let pipe = Pipe()
        cli.standardOutput = pipe
        cli.standardError = pipe
        try cli.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        cli.waitUntilExit()
        var text = String(decoding: data, as: UTF8.self)
        if text.hasSuffix("\n") { text.removeLast() }
        return text
    }

    private static func which(_ name: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
            let path = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    private static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
