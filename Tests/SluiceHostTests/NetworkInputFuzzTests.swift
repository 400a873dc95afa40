import Foundation
import NIOCore
import PluginABI
import XCTest
@testable import SluiceHost

/// Mutated RESP (and CQL frames and v5 segments) through every parser that sees bytes from the network, the way the source handler
/// and the sink connection drive them. A Swift bounds or overflow check failing here would be a host
/// crash on input from a client or a backend. Seeded: a failure repeats, and its seed is printed.
/// `SLUICE_FUZZ_SEED` and `SLUICE_FUZZ_ITERATIONS` run other seeds, or longer, by hand.
final class NetworkInputFuzzTests: XCTestCase {
    private static let environment = ProcessInfo.processInfo.environment
    private static let iterations = environment["SLUICE_FUZZ_ITERATIONS"].flatMap { Int($0) } ?? 60_000
    private static func seed(_ fallback: UInt64) -> UInt64 {
        environment["SLUICE_FUZZ_SEED"].flatMap { UInt64($0) } ?? fallback
    }

    /// SplitMix64: small, seedable, good enough to pick mutations.
    private struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    private static let requestSeeds: [String] = [
        "*1\r\n$4\r\nPING\r\n", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n", "*2\r\n$3\r\nGET\r\n$0\r\n\r\n",
        "*7\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$2\r\npw\r\n$7\r\nSETNAME\r\n$1\r\nx\r\n",
        "*3\r\n$4\r\nAUTH\r\n$3\r\napp\r\n$2\r\npw\r\n", "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n", "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n",
        "*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$1\r\nb\r\n", "*1\r\n$11\r\nUNSUBSCRIBE\r\n", "*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$3\r\nOFF\r\n",
        "*3\r\n$6\r\nCLIENT\r\n$7\r\nSETINFO\r\n$1\r\nx\r\n", "*1\r\n$5\r\nMULTI\r\n", "*1\r\n$4\r\nEXEC\r\n", "*1\r\n$5\r\nRESET\r\n",
        "*6\r\n$5\r\nXREAD\r\n$5\r\nBLOCK\r\n$1\r\n0\r\n$7\r\nSTREAMS\r\n$1\r\ns\r\n$1\r\n0\r\n", "*3\r\n$5\r\nBLPOP\r\n$1\r\nl\r\n$1\r\n0\r\n",
        "*2\r\n$6\r\nSELECT\r\n$1\r\n1\r\n", "*1\r\n$4\r\nQUIT\r\n", "*0\r\n", "*-1\r\n", "SET \"a b\" 'c\\'d' \"\\x41\"\r\n",
        "PING\n", "*1\r\n$7\r\nMONITOR\r\n", "*2\r\n$4\r\nSYNC\r\n$0\r\n\r\n",
    ]

    private static let replySeeds: [String] = [
        "+OK\r\n", "-ERR x\r\n", ":12\r\n", "$3\r\nabc\r\n", "$-1\r\n", "*2\r\n$1\r\na\r\n:1\r\n", "*-1\r\n",
        "%1\r\n+k\r\n*1\r\n_\r\n", ",1.5\r\n", "#t\r\n", "(123\r\n", "=7\r\ntxt:abc\r\n", "!3\r\nerr\r\n", "~1\r\n:1\r\n",
        ">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n", "|1\r\n+a\r\n+b\r\n:2\r\n", "*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n",
        "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n",
    ]

    private static let palette = Array("*$:+-_,#(=!%~>|\r\n0123456789-".utf8)

    private func mutate(_ seed: [UInt8], _ g: inout Generator) -> [UInt8] {
        var bytes = seed
        for _ in 0..<Int.random(in: 1...4, using: &g) {
            let position = bytes.isEmpty ? 0 : Int.random(in: 0..<bytes.count, using: &g)
            switch Int.random(in: 0..<7, using: &g) {
            case 0 where !bytes.isEmpty: bytes[position] = UInt8.random(in: 0...255, using: &g)
            case 1: bytes.insert(Self.palette.randomElement(using: &g)!, at: position)
            case 2 where !bytes.isEmpty: bytes.removeSubrange(position..<min(bytes.count, position + Int.random(in: 1...6, using: &g)))
            case 3: bytes.insert(contentsOf: Array(["9223372036854775807", "-9223372036854775808", "99999999999999999999",
                                                    "-1", "0", "00", "-0"].randomElement(using: &g)!.utf8), at: position)
            case 4 where !bytes.isEmpty:
                let end = min(bytes.count, position + Int.random(in: 1...20, using: &g))
                bytes.insert(contentsOf: bytes[position..<end], at: position)
            case 5: bytes = Array(bytes.prefix(position))
            default: bytes[position...].shuffle(using: &g)
            }
        }
        return bytes
    }

    private func input(_ seeds: [String], _ g: inout Generator) -> [UInt8] {
        var bytes: [UInt8] = []
        for _ in 0..<Int.random(in: 1...3, using: &g) {
            let seed = Array(seeds.randomElement(using: &g)!.utf8)
            bytes += Bool.random(using: &g) ? mutate(seed, &g) : seed
        }
        return bytes
    }

    /// Everything the host asks of a request it accepted.
    private func inspectRequest(_ frame: UnsafeRawBufferPointer, _ auth: RedisClientAuth, _ g: inout Generator) {
        var inTransaction = Bool.random(using: &g)
        _ = RedisLocalAnswers.verdict(frame, inTransaction: &inTransaction)
        _ = auth.screen(frame, authenticated: Bool.random(using: &g), inTransaction: inTransaction,
                        allocator: ByteBufferAllocator())
        _ = RedisConnectionState.needsDedicatedConnection(frame)
        _ = RedisConnectionState.protocolSwitch(frame)
        _ = RedisConnectionState.mayWaitIndefinitely(frame)
        _ = RedisConnectionState.commandName(frame)
        _ = RedisReplyPlan.isSubscriptionCommand(frame)
        _ = RedisReplyPlan.unsubscribeConfirmations(frame)
        _ = RedisReplyPlan.expectedReply(frame)
        var mode = RedisReplyMode()
        _ = mode.answers(frame)
        _ = mode.answers(frame)
        let declared = RESPCommandReader.forEachArgument(frame) { _, start, length in
            XCTAssert(start >= 0 && length >= 0 && start + length <= frame.count)
            return true
        }
        XCTAssertEqual(declared, RESPCommandReader.argumentCount(frame))
    }

    func testRequestsFromClients() {
        let seed = Self.seed(0x5EED_0001)
        var g = Generator(state: seed)
        let auth = RedisClientAuth(users: [.init(name: Array("default".utf8), password: Array("pw".utf8))])
        for iteration in 0..<Self.iterations {
            let bytes = input(Self.requestSeeds, &g)
            var scanner = RESPRequestScanner(maxFrameBytes: 1 << 16)
            bytes.withUnsafeBytes { all in
                var offset = 0
                scanning: while offset < all.count {
                    let rest = UnsafeRawBufferPointer(rebasing: all[offset...])
                    switch scanner.scan(rest) {
                    case .multibulk(let length):
                        XCTAssert(length > 0 && length <= rest.count, "seed \(seed) iteration \(iteration)")
                        inspectRequest(UnsafeRawBufferPointer(rebasing: rest[..<length]), auth, &g)
                        offset += length
                    case .empty(let length):
                        XCTAssert(length > 0 && length <= rest.count, "seed \(seed) iteration \(iteration)")
                        offset += length
                    case .inline(let lineLength, let length):
                        XCTAssert(lineLength <= length && length <= rest.count && length > 0, "seed \(seed) iteration \(iteration)")
                        if let args = try? RESPInlineCommand.arguments(of: UnsafeRawBufferPointer(rebasing: rest[..<lineLength])),
                           !args.isEmpty {
                            let command = RESPEncoding.command(args, allocator: ByteBufferAllocator())
                            command.withUnsafeReadableBytes { inspectRequest($0, auth, &g) }
                        }
                        offset += length
                    case .needMore, .malformed:
                        break scanning
                    }
                }
            }
        }
    }

    func testRepliesFromBackends() {
        let seed = Self.seed(0x5EED_0002)
        var g = Generator(state: seed)
        for iteration in 0..<Self.iterations {
            let bytes = input(Self.replySeeds, &g)
            var scanner = RESPFrameScanner(maxFrameBytes: 1 << 16)
            var offset = 0
            while offset < bytes.count {
                let outcome = bytes.withUnsafeBytes { scanner.scan(UnsafeRawBufferPointer(rebasing: $0[offset...])) }
                guard case .complete(let length) = outcome else { break }
                XCTAssert(length > 0 && offset + length <= bytes.count, "seed \(seed) iteration \(iteration)")
                var frame = ByteBufferAllocator().buffer(capacity: length)
                frame.writeBytes(bytes[offset..<offset + length])
                walk(frame)
                frame.withUnsafeReadableBytes { reply in
                    var remaining: Int?
                    _ = RedisReplyPlan.isPubSubReply(reply, remainingSubscriptions: &remaining)
                }
                offset += length
                scanner.reset()
            }
        }
    }

    // MARK: CQL

    /// Seeds: frames made by the DataStax driver and the test backend (Tests/cql/codec_vectors.py),
    /// and frames Sluice builds.
    private static let cqlFrameSeeds: [[UInt8]] = {
        var seeds: [[UInt8]] = []
        if let vectors = try? CQLDriverVectors.emitted.get() {
            for (name, bytes) in vectors.sorted(by: { $0.key < $1.key })
            where !name.hasPrefix("segment") && !name.hasPrefix("big") && bytes.readableBytes < 4096 {
                seeds.append(Array(bytes.readableBytesView))
            }
        }
        let built = [
            CQLFrameBuilder.query(version: .v4, stream: 1, query: "SELECT * FROM ks.t", values: [.null, .unset], pageSize: 10),
            CQLFrameBuilder.query(version: .v5, stream: 2, query: "USE ks", keyspace: "x"),
            CQLFrameBuilder.resultRows(version: .v5, stream: 3, keyspace: "k", table: "t", columns: [("a", .int)],
                                       rows: [[ByteBuffer(bytes: [0, 0, 0, 1])], [nil]]),
            CQLFrameBuilder.error(version: .v4, stream: 4, code: .unprepared, message: "x"),
            CQLFrameBuilder.compressed(CQLFrameBuilder.query(version: .v4, stream: 5, query: String(repeating: "SELECT ", count: 20)), with: .lz4),
            CQLFrameBuilder.compressed(CQLFrameBuilder.query(version: .v4, stream: 6, query: String(repeating: "SELECT ", count: 20)), with: .snappy),
        ]
        seeds += built.map { Array($0.readableBytesView) }
        return seeds
    }()

    private static let cqlSegmentSeeds: [(bytes: [UInt8], lz4: Bool)] = {
        var seeds: [(bytes: [UInt8], lz4: Bool)] = []
        if let vectors = try? CQLDriverVectors.emitted.get() {
            for (name, lz4) in [("segment_two_frames", false), ("segment_three_frames_lz4", true)] {
                if let bytes = vectors[name] { seeds.append((Array(bytes.readableBytesView), lz4)) }
            }
        }
        for lz4 in [false, true] {
            var writer = CQLSegmentWriter(codec: CQLSegmentCodec(compressed: lz4))
            var output = ByteBuffer()
            writer.append(frame: CQLFrameBuilder.query(version: .v5, stream: 1, query: String(repeating: "SELECT 1 ", count: 30)), into: &output)
            writer.append(frame: CQLFrameBuilder.resultVoid(version: .v5, stream: 2), into: &output)
            writer.flush(into: &output)
            seeds.append((Array(output.readableBytesView), lz4))
        }
        return seeds
    }()

    /// CQL-aware mutations on top of the byte-level ones: header fields (length, opcode, flags,
    /// version) and lengths inside the body set to edge values.
    private func mutateCQL(_ seed: [UInt8], _ g: inout Generator) -> [UInt8] {
        var bytes = Bool.random(using: &g) ? mutate(seed, &g) : seed
        guard bytes.count >= 9 else { return bytes }
        let edges: [UInt32] = [0, 1, 0x7FFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFE, 0x8000_0000, 0xFFFF, UInt32(bytes.count)]
        switch Int.random(in: 0..<6, using: &g) {
        case 0:
            let length = edges.randomElement(using: &g)!
            for i in 0..<4 { bytes[5 + i] = UInt8(truncatingIfNeeded: length >> (8 * (3 - i))) }
        case 1: bytes[4] = UInt8.random(in: 0...0x12, using: &g)
        case 2: bytes[1] = UInt8.random(in: 0...0x1F, using: &g)
        case 3: bytes[0] = [0x03, 0x04, 0x05, 0x83, 0x84, 0x85, 0x42, 0x01].randomElement(using: &g)!
        case 4 where bytes.count > 13:
            // A length-like field inside the body, then keep the header's length honest.
            let at = Int.random(in: 9..<(bytes.count - 3), using: &g)
            let value = edges.randomElement(using: &g)!
            for i in 0..<(Bool.random(using: &g) ? 2 : 4) where at + i < bytes.count {
                bytes[at + i] = UInt8(truncatingIfNeeded: value >> (8 * (3 - i)))
            }
            let body = UInt32(bytes.count - 9)
            for i in 0..<4 { bytes[5 + i] = UInt8(truncatingIfNeeded: body >> (8 * (3 - i))) }
        default: break
        }
        return bytes
    }

    /// Everything the codec offers over a message it accepted; every slice must lie in the frame.
    private func inspectCQL(_ message: CQLMessage) {
        switch message {
        case .query(let query):
            _ = CQLStatement.classify(query.query)
            for element in query.parameters.values { _ = element.value.bytes?.readableBytes }
            _ = query.parameters.values.value(at: 1)
            _ = query.parameters.values.value(named: "a")
        case .execute(let execute):
            _ = execute.parameters.values.map { $0.value }
        case .batch(let batch):
            for child in batch.children {
                if let text = child.queryText { _ = CQLStatement.classify(text) }
                _ = child.values.map { $0.name }
            }
        case .prepare(let prepare): _ = CQLStatement.classify(prepare.query)
        case .result(.rows(let rows)):
            var cursor = rows.makeCursor()
            var cells = 0
            while cursor.nextRow() { while let cell = cursor.nextCell() { _ = cell?.readableBytes; cells += 1 } }
            XCTAssertEqual(cells, rows.rowCount * rows.metadata.columnCount)
        case .authResponse(let token): _ = token.plainCredentials
        case .startup(let startup): _ = try? startup.compression()
        default: break
        }
    }

    func testCQLFramesFromClientsAndBackends() {
        let seed = Self.seed(0x5EED_0C01)
        var g = Generator(state: seed)
        let seeds = Self.cqlFrameSeeds
        XCTAssertGreaterThan(seeds.count, 40, "the driver's vectors are missing")
        var accepted = 0, refused = 0
        for iteration in 0..<Self.iterations / 4 {
            var bytes: [UInt8] = []
            for _ in 0..<Int.random(in: 1...3, using: &g) { bytes += mutateCQL(seeds.randomElement(using: &g)!, &g) }
            let direction: CQLFrameScanner.Direction = Bool.random(using: &g) ? .requests : .responses
            let scanner = CQLFrameScanner(direction: direction, maxFrameBytes: 1 << 16,
                                          supportedVersions: CQLVersion.allCases)
            var input = ByteBuffer(bytes: bytes)
            do {
                while let frame = try scanner.nextFrame(&input) {
                    XCTAssertEqual(frame.bytes.readableBytes, frame.header.frameLength, "seed \(seed) iteration \(iteration)")
                    let compression = [nil, CQLCompression.lz4, .snappy].randomElement(using: &g)!
                    do {
                        inspectCQL(try CQLMessage(frame: frame, compression: compression, maxBodyBytes: 1 << 16))
                        accepted += 1
                    } catch {
                        _ = CQLFrameBuilder.error(for: error, version: frame.header.version)
                        refused += 1
                    }
                    // The same body read as every other opcode and version.
                    let body = frame.body
                    for opcode in CQLOpcode.allCases {
                        if let message = try? CQLMessage(opcode: opcode, version: Bool.random(using: &g) ? .v4 : .v5, message: body) {
                            inspectCQL(message)
                        }
                    }
                }
            } catch {
                _ = CQLFrameBuilder.error(for: error, version: .v4)
                refused += 1
            }
        }
        XCTAssertGreaterThan(accepted, 0)
        XCTAssertGreaterThan(refused, 0)
    }

    func testCQLSegments() {
        let seed = Self.seed(0x5EED_0C02)
        var g = Generator(state: seed)
        let seeds = Self.cqlSegmentSeeds
        XCTAssertGreaterThanOrEqual(seeds.count, 4, "the driver's vectors are missing")
        var frames = 0
        for iteration in 0..<Self.iterations / 4 {
            let (original, lz4) = seeds.randomElement(using: &g)!
            var bytes = mutate(original, &g)
            // Most damage is caught by the CRCs; recompute them half the time so the payload
            // (compressed or not, frames inside or not) gets through to the frame reader.
            if Bool.random(using: &g) { bytes = Self.fixChecksums(bytes, lz4: lz4) }
            let codec = CQLSegmentCodec(compressed: Int.random(in: 0..<8, using: &g) == 0 ? !lz4 : lz4)
            var reader = CQLSegmentReader(codec: codec, scanner: CQLFrameScanner(
                direction: .requests, maxFrameBytes: 1 << 16, supportedVersions: CQLVersion.allCases))
            var input = ByteBuffer(bytes: bytes)
            do {
                while let frame = try reader.nextFrame(&input) {
                    XCTAssertEqual(frame.bytes.readableBytes, frame.header.frameLength, "seed \(seed) iteration \(iteration)")
                    if let message = try? CQLMessage(frame: frame, compression: nil, maxBodyBytes: 1 << 16) { inspectCQL(message) }
                    frames += 1
                }
            } catch {
                _ = CQLFrameBuilder.error(for: error, version: .v5)
            }
        }
        XCTAssertGreaterThan(frames, 0)
    }

    /// A `cassandra` source's client connections (`CQLClientConnection`): a STARTUP (any version,
    /// compression and authentication), then mutated frames, or mutated segments after a v5
    /// STARTUP, fed in reads of random sizes. Every request handed on is one whole uncompressed
    /// frame; every answer encodes; after a close nothing more is read.
    func testCQLClientConnections() {
        let seed = Self.seed(0x5EED_0C03)
        var g = Generator(state: seed)
        let frames = Self.cqlFrameSeeds
        let segments = Self.cqlSegmentSeeds
        let auth = CQLClientAuth(users: [.init(name: Array("cassandra".utf8), password: Array("secret".utf8))])
        var requests = 0, closes = 0
        for iteration in 0..<Self.iterations / 4 {
            let authentication: CQLClientConnection.Authentication = [.none, .sluice(auth), .passthrough].randomElement(using: &g)!
            var connection = CQLClientConnection(maxFrameBytes: 1 << 16, authentication: authentication)
            let version: CQLVersion = Bool.random(using: &g) ? .v4 : .v5
            let compression = version == .v5 ? ["lz4", nil].randomElement(using: &g)! : ["lz4", "snappy", nil].randomElement(using: &g)!
            var bytes = Array(CQLFrameBuilder.frame(version: version, isResponse: false, stream: 1, opcode: .startup) {
                $0.writeCQLStringMap(compression.map { ["CQL_VERSION": "3.0.0", "COMPRESSION": $0] } ?? ["CQL_VERSION": "3.0.0"])
            }.readableBytesView)
            if Int.random(in: 0..<8, using: &g) == 0 { bytes = mutateCQL(bytes, &g) }
            if version == .v5, Bool.random(using: &g) {
                let (original, lz4) = segments.randomElement(using: &g)!
                var segment = mutate(original, &g)
                if Bool.random(using: &g) { segment = Self.fixChecksums(segment, lz4: lz4) }
                bytes += segment
            } else {
                for _ in 0..<Int.random(in: 1...3, using: &g) { bytes += mutateCQL(frames.randomElement(using: &g)!, &g) }
            }
            var input = ByteBuffer()
            var rest = bytes[...]
            var closed = false
            while !rest.isEmpty {
                let n = Int.random(in: 1...max(1, rest.count), using: &g)
                input.writeBytes(rest.prefix(n))
                rest = rest.dropFirst(n)
                while let step = connection.next(&input) {
                    XCTAssertFalse(closed, "a step after the close, seed \(seed) iteration \(iteration)")
                    var out = ByteBuffer()
                    switch step {
                    case .request(let frame):
                        XCTAssertEqual(frame.bytes.readableBytes, frame.header.frameLength, "seed \(seed) iteration \(iteration)")
                        XCTAssertFalse(frame.header.flags.contains(.compression), "seed \(seed) iteration \(iteration)")
                        requests += 1
                    case .answer(let frame, _):
                        _ = connection.encodeReply(frame, into: &out)
                    case .close(let frame, _):
                        _ = connection.encodeReply(frame, into: &out)
                        closed = true
                        closes += 1
                    }
                    connection.flush(into: &out)
                }
            }
        }
        XCTAssertGreaterThan(requests, 0)
        XCTAssertGreaterThan(closes, 0)
    }

    /// The segment header's CRC24 and the payload's CRC32 made right for whatever the bytes now say.
    private static func fixChecksums(_ bytes: [UInt8], lz4: Bool) -> [UInt8] {
        let headerLength = lz4 ? 5 : 3
        guard bytes.count >= headerLength + 3 else { return bytes }
        var fixed = bytes
        var header: UInt64 = 0
        for i in 0..<headerLength { header |= UInt64(bytes[i]) << (8 * i) }
        let crc24 = CQLChecksums.crc24(header, byteCount: headerLength)
        for i in 0..<3 { fixed[headerLength + i] = UInt8(truncatingIfNeeded: crc24 >> (8 * i)) }
        let payloadLength = Int(header & 0x1FFFF)
        let start = headerLength + 3
        guard fixed.count >= start + payloadLength + 4 else { return fixed }
        let crc32 = fixed[start..<start + payloadLength].withUnsafeBytes { CQLChecksums.crc32($0) }
        for i in 0..<4 { fixed[start + payloadLength + i] = UInt8(truncatingIfNeeded: crc32 >> (8 * i)) }
        return fixed
    }

    /// Walks an accepted reply with the cursor plugins use: every value must lie inside the frame.
    private func walk(_ frame: ByteBuffer) {
        let batch = Batch(kind: Batch.responses, protocolID: Batch.redis, messages: [frame])
        let handle = batch.handOverToPlugin()  // the cursor keeps the batch's handle
        defer { HandleTable.current.retire(handle) }
        batch.withMessageBytes(0) { bytes in
            var cursor = sluice_redis_cursor()
            var value = sluice_redis_value()
            ReplyCursor.initialize(&cursor, batch: handle, generation: batch.generation, bytes: bytes)
            var steps = 0
            while ReplyCursor.next(&cursor, &value) == SLUICE_OK {
                if value.bytes.len > 0 {
                    let start = UnsafeRawPointer(value.bytes.ptr!) - bytes.baseAddress!
                    XCTAssert(start >= 0 && start + value.bytes.len <= bytes.count)
                }
                steps += 1
                XCTAssert(steps <= bytes.count, "the cursor must move forward")
                if steps > bytes.count { break }
            }
        }
    }
}
