import Foundation
import NIOCore
import NIOPosix
import XCTest
@testable import SluiceHost

/// Runs Tests/cql/codec_vectors.py: vectors encoded by the DataStax python driver and the Python test
/// backend (`emit`), and the driver's reading of bytes Sluice encoded (`check`). CI installs python3
/// and cassandra-driver (scripts/install-deps.sh); without them these tests fail rather than skip.
enum CQLDriverVectors {
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    static func runScript(_ mode: String, input: Data? = nil) throws -> Any {
        try runPython("Tests/cql/codec_vectors.py", arguments: [mode], input: input)
    }

    /// Runs a Python script of the repository and parses the JSON it prints.
    static func runPython(_ script: String, arguments: [String] = [], input: Data? = nil) throws -> Any {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", repositoryRoot.appendingPathComponent(script).path] + arguments
        let output = Pipe(), errors = Pipe(), stdin = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = stdin
        try process.run()
        if let input { stdin.fileHandleForWriting.write(input) }
        try stdin.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let errorText = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw NSError(domain: script, code: Int(process.terminationStatus),
                          userInfo: [NSLocalizedDescriptionKey: errorText])
        }
        return try JSONSerialization.jsonObject(with: data)
    }

    /// The vectors by name (computed once per test run).
    static let emitted: Result<[String: ByteBuffer], Error> = Result(catching: {
        let json = try runScript("emit") as! [String: String]
        return json.mapValues { ByteBuffer(bytes: hexBytes($0)) }
    })

    static func vector(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> ByteBuffer {
        let all = try emitted.get()
        return try XCTUnwrap(all[name], "no vector \(name)", file: file, line: line)
    }

    /// Asks the driver (or the test backend) to read Sluice-made bytes: kind is "response", "query",
    /// "segments" or "segments_lz4".
    static func check(_ items: [String: (kind: String, bytes: ByteBuffer)]) throws -> [String: Any] {
        var request: [String: [String: String]] = [:]
        for (name, item) in items { request[name] = ["kind": item.kind, "hex": hex(item.bytes)] }
        return try runScript("check", input: try JSONSerialization.data(withJSONObject: request)) as! [String: Any]
    }

    static func hexBytes(_ text: String) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count / 2)
        var high: UInt8?
        for c in text.utf8 {
            let nibble = c <= 57 ? c - 48 : (c | 0x20) - 87
            if let h = high { bytes.append(h << 4 | nibble); high = nil } else { high = nibble }
        }
        return bytes
    }

    static func hex(_ buffer: ByteBuffer) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(buffer.readableBytes * 2)
        for byte in buffer.readableBytesView {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

extension ByteBuffer {
    init(cqlText text: String) { self.init(string: text) }
}

/// Reads the one whole frame `bytes` must be.
func readSingleFrame(_ bytes: ByteBuffer, direction: CQLFrameScanner.Direction,
                     file: StaticString = #filePath, line: UInt = #line) throws -> CQLFrame {
    var input = bytes
    let scanner = CQLFrameScanner(direction: direction, maxFrameBytes: 64 << 20, supportedVersions: CQLVersion.allCases)
    let frame = try XCTUnwrap(try scanner.nextFrame(&input), "not a whole frame", file: file, line: line)
    XCTAssertEqual(input.readableBytes, 0, "bytes after the frame", file: file, line: line)
    return frame
}

func readMessage(_ bytes: ByteBuffer, direction: CQLFrameScanner.Direction, compression: CQLCompression? = nil,
                 file: StaticString = #filePath, line: UInt = #line) throws -> (CQLFrame, CQLMessage) {
    let frame = try readSingleFrame(bytes, direction: direction, file: file, line: line)
    return (frame, try CQLMessage(frame: frame, compression: compression, maxBodyBytes: 64 << 20))
}

/// The CQL test backend (Tests/cql/backend, Python, independent of Sluice's codec) run as processes
/// by one test, each on its own port; `stopAll` ends those still running (call it in tearDown).
final class CQLTestBackends {
    private var processes: [Process] = []

    /// A port nothing listens on right now.
    static func freePort() -> Int {
        let socket = try! ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).wait()
        let port = socket.localAddress!.port!
        try! socket.close().wait()
        return port
    }

    /// Starts a backend on `port` (a free one if nil) with `arguments`, and returns once it listens.
    @discardableResult
    func start(port: Int? = nil, _ arguments: [String] = []) throws -> (port: Int, process: Process) {
        let port = port ?? Self.freePort()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-m", "Tests.cql.backend", "--port", "\(port)"] + arguments
        process.currentDirectoryURL = CQLDriverVectors.repositoryRoot
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        processes.append(process)
        // It prints its address once listening.
        var line = Data()
        while !String(decoding: line, as: UTF8.self).contains("listening") {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { throw NSError(domain: "backend", code: 1, userInfo: [NSLocalizedDescriptionKey: "backend exited"]) }
            line.append(chunk)
        }
        return (port, process)
    }

    func stopAll() {
        for process in processes where process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }
}
