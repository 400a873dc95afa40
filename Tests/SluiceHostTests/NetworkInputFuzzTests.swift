import Foundation
import NIOCore
import NIOEmbedded
import PluginABI
import XCTest
@testable import SluiceHost

/// Mutated RESP (and CQL frames and v5 segments) through every parser that sees bytes from the network, the way the source handler
/// and the sink connection drive them. A Swift bounds or overflow check failing here would be a host
/// crash on input from a client or a backend. Seeded: a failure repeats, and its seed is printed.
/// `SLUICE_FUZZ_SEED` and `SLUICE_FUZZ_ITERATIONS` run other seeds, or longer, by hand.
/// What the readers are given ends where its allocation ends (`ByteBuffer.endingAtItsAllocation`),
/// so that under AddressSanitizer (docs/testing.md) a read past the input, the frame or the text is
/// reported, not only a failed Swift bounds check.
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
            ByteBuffer.endingAtItsAllocation(bytes).withUnsafeReadableBytes { all in
                var offset = 0
                scanning: while offset < all.count {
                    let rest = UnsafeRawBufferPointer(rebasing: all[offset...])
                    switch scanner.scan(rest) {
                    case .multibulk(let length):
                        XCTAssert(length > 0 && length <= rest.count, "seed \(seed) iteration \(iteration)")
                        ByteBuffer.endingAtItsAllocation(rest[..<length]).withUnsafeReadableBytes { inspectRequest($0, auth, &g) }
                        offset += length
                    case .empty(let length):
                        XCTAssert(length > 0 && length <= rest.count, "seed \(seed) iteration \(iteration)")
                        offset += length
                    case .inline(let lineLength, let length):
                        XCTAssert(lineLength <= length && length <= rest.count && length > 0, "seed \(seed) iteration \(iteration)")
                        let line = ByteBuffer.endingAtItsAllocation(rest[..<lineLength])
                        if let args = line.withUnsafeReadableBytes({ try? RESPInlineCommand.arguments(of: $0) }), !args.isEmpty {
                            let command = ByteBuffer.endingAtItsAllocation(
                                RESPEncoding.command(args, allocator: ByteBufferAllocator()).readableBytesView)
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
                let outcome = ByteBuffer.endingAtItsAllocation(bytes[offset...]).withUnsafeReadableBytes { scanner.scan($0) }
                guard case .complete(let length) = outcome else { break }
                XCTAssert(length > 0 && offset + length <= bytes.count, "seed \(seed) iteration \(iteration)")
                let frame = ByteBuffer.endingAtItsAllocation(bytes[offset..<offset + length])
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
            var input = ByteBuffer.endingAtItsAllocation(bytes)
            do {
                while var frame = try scanner.nextFrame(&input) {
                    XCTAssertEqual(frame.bytes.readableBytes, frame.header.frameLength, "seed \(seed) iteration \(iteration)")
                    frame = CQLFrame(header: frame.header, bytes: .endingAtItsAllocation(frame.bytes.readableBytesView))
                    let compression = [nil, CQLCompression.lz4, .snappy].randomElement(using: &g)!
                    do {
                        inspectCQL(try CQLMessage(frame: frame, compression: compression, maxBodyBytes: 1 << 16))
                        accepted += 1
                    } catch {
                        _ = CQLFrameBuilder.error(for: error, version: frame.header.version)
                        refused += 1
                    }
                    // The same body read as every other opcode and version.
                    let body = ByteBuffer.endingAtItsAllocation(frame.body.readableBytesView)
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
            var input = ByteBuffer.endingAtItsAllocation(bytes)
            do {
                while let frame = try reader.nextFrame(&input) {
                    XCTAssertEqual(frame.bytes.readableBytes, frame.header.frameLength, "seed \(seed) iteration \(iteration)")
                    let alone = CQLFrame(header: frame.header, bytes: .endingAtItsAllocation(frame.bytes.readableBytesView))
                    if let message = try? CQLMessage(frame: alone, compression: nil, maxBodyBytes: 1 << 16) { inspectCQL(message) }
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
                input = .endingAtItsAllocation(Array(input.readableBytesView) + rest.prefix(n))
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

    // MARK: CQL replies from backends, and frames read for plugins

    /// Request frames a CQL route hands a backend connection: whole, uncompressed, of versions 3 to 5.
    private static let cqlRequestSeeds: [[UInt8]] = {
        var seeds = cqlFrameSeeds.filter {
            $0.count >= CQLFrameHeader.size && $0[0] & CQLFrameHeader.responseBit == 0
                && $0[1] & CQLFrameFlags.compression.rawValue == 0
        }
        let peersID = ByteBuffer(bytes: [0xAA, 0xBB])
        let built = [
            CQLFrameBuilder.query(version: .v4, stream: 30, query: "SELECT * FROM system.peers"),
            CQLFrameBuilder.query(version: .v5, stream: 31, query: "select peer from PEERS_V2 where x = 'peers'", keyspace: "system"),
            CQLFrameBuilder.query(version: .v4, stream: 32, query: "USE other"),
            CQLFrameBuilder.query(version: .v4, stream: 33, query: "/* c */ use \"Ks\""),
            CQLFrameBuilder.frame(version: .v4, isResponse: false, stream: 34, opcode: .prepare) {
                $0.writeCQLLongString("SELECT * FROM system.peers")
            },
            CQLFrameBuilder.frame(version: .v4, isResponse: false, stream: 35, opcode: .execute) {
                $0.writeCQLShortBytes(peersID)
                $0.writeInteger(CQLConsistency.one.rawValue)
                $0.writeInteger(UInt8(0))
            },
        ]
        seeds += built.map { Array($0.readableBytesView) }
        return seeds
    }()

    /// Response frames a backend sends: every kind the driver's vectors have, and RESULT Rows of
    /// the peers tables (which `CQLClusterView` empties).
    private static let cqlResponseSeeds: [[UInt8]] = {
        var seeds = cqlFrameSeeds.filter {
            $0.count >= CQLFrameHeader.size && $0[0] & CQLFrameHeader.responseBit != 0
                && $0[1] & CQLFrameFlags.compression.rawValue == 0
        }
        let built = [
            CQLFrameBuilder.resultRows(version: .v4, stream: 1, keyspace: "system", table: "peers",
                                       columns: [("peer", .inet), ("rpc_address", .inet)],
                                       rows: [[ByteBuffer(bytes: [127, 0, 0, 2]), nil]]),
            CQLFrameBuilder.resultRows(version: .v5, stream: 1, keyspace: "system", table: "peers_v2",
                                       columns: [("peer", .inet)], rows: [[ByteBuffer(bytes: [127, 0, 0, 3])], [nil]]),
            CQLFrameBuilder.resultVoid(version: .v5, stream: 1),
            CQLFrameBuilder.frame(version: .v4, isResponse: true, stream: 1, opcode: .result) {
                $0.writeInteger(Int32(CQLResultKind.setKeyspace.rawValue))
                $0.writeCQLString("other")
            },
        ]
        seeds += built.map { Array($0.readableBytesView) }
        return seeds
    }()

    private static func named(_ prefix: String) -> [[UInt8]] {
        guard let vectors = try? CQLDriverVectors.emitted.get() else { return [] }
        return vectors.filter { $0.key.hasPrefix(prefix) }.sorted { $0.key < $1.key }.map { Array($0.value.readableBytesView) }
    }

    /// `bytes` with the header's body length made to match what follows it.
    private static func withHonestLength(_ bytes: [UInt8]) -> [UInt8] {
        guard bytes.count >= CQLFrameHeader.size else { return bytes }
        var fixed = bytes
        let body = UInt32(bytes.count - CQLFrameHeader.size)
        for i in 0..<4 { fixed[5 + i] = UInt8(truncatingIfNeeded: body >> (8 * (3 - i))) }
        return fixed
    }

    private static func withStream(_ bytes: [UInt8], _ stream: Int16) -> [UInt8] {
        guard bytes.count >= 4 else { return bytes }
        var changed = bytes
        changed[2] = UInt8(truncatingIfNeeded: UInt16(bitPattern: stream) >> 8)
        changed[3] = UInt8(truncatingIfNeeded: UInt16(bitPattern: stream))
        return changed
    }

    /// A client's receiver behind the cluster view and the session observer: what reached it.
    private final class ReplyCollector: ResponseReceiver {
        var replies: [ByteBuffer] = []
        func receive(_ outcome: ChainOutcome) {
            guard case .responses(let batch) = outcome else { return XCTFail("a CQL reply is always a frame") }
            replies.append(contentsOf: batch.messages)
        }
    }

    /// Everything the backend path reads of a reply the backend scanner accepted: the wire frame's
    /// accessors, the pairing's readers, the cluster view's emptying (whose output must be a whole
    /// RESULT Rows without rows) and the session observer's parse.
    private func inspectReply(_ frame: ByteBuffer, _ context: @autoclosure () -> String) -> Bool {
        let frame = ByteBuffer.endingAtItsAllocation(frame.readableBytesView)
        guard let wire = CQLWireFrame(frame) else {
            XCTFail("the backend scanner handed on a frame shorter than a header, \(context())")
            return false
        }
        XCTAssertEqual(wire.bodyLength, frame.readableBytes - CQLFrameHeader.size, context())
        XCTAssertTrue(wire.isResponse, context())
        _ = wire.version
        _ = wire.stream
        _ = wire.message()?.readableBytes
        if let length = wire.textInPlace({ $0.count }) { XCTAssertLessThanOrEqual(length, frame.readableBytes, context()) }
        _ = wire.errorCode
        _ = wire.resultKind
        _ = CQLStreamPairing.setKeyspace(wire)
        _ = CQLStreamPairing.unpreparedID(wire)
        var emptied = false
        if let empty = CQLClusterView.emptyingRows(frame) {
            let out = CQLWireFrame(empty)
            XCTAssertEqual(out?.bodyLength, empty.readableBytes - CQLFrameHeader.size, context())
            XCTAssertEqual(out?.stream, wire.stream, context())
            XCTAssertEqual(out?.resultKind, .rows, context())
            if let version = out?.version, let message = out?.message(),
               case .rows(let rows)? = try? CQLResult(message: message, version: version) {
                XCTAssertEqual(rows.rowCount, 0, context())
            } else {
                XCTFail("an emptied RESULT Rows does not read, \(context())")
            }
            emptied = true
        }
        let parsed = CQLParsedMessage(frame, isResponse: true)
        if let rows = parsed.rows {
            XCTAssertLessThanOrEqual(rows.contentOffset + rows.contentLength, parsed.bytes.readableBytes, context())
        }
        return emptied
    }

    /// A CQL sink's backend connection as `BackendReadLoop` and `CQLBackendHandler` drive it: a few
    /// requests in flight (QUERY, PREPARE, EXECUTE, USE, SELECTs of the peers tables, each behind
    /// the cluster view's receiver and the session observer), then their replies (and EVENTs, and
    /// replies on streams nobody waits on), mutated, in bare frames or v5 segments, in reads of
    /// random sizes (one byte each, sometimes): `CQLBackendScanner`, `beginRead`'s stream rewrite
    /// (`forEachWholeFrame`), `frameArrived` (`ReplyHeader`, UNPREPARED, RESULT Prepared and
    /// Set_keyspace), `CQLWireFrame`, the peers emptying and the observer. Whatever comes, every
    /// request is answered exactly once on its client's stream (by its reply, or by the error the
    /// connection's end gives it), unless the UNPREPARED handler took it over; unmutated replies
    /// are all accepted.
    func testCQLRepliesFromBackends() {
        let seed = Self.seed(0x5EED_0C04)
        var g = Generator(state: seed)
        let loop = EmbeddedEventLoop()
        let requests = Self.cqlRequestSeeds, responses = Self.cqlResponseSeeds
        let prepared = Self.named("result_prepared"), unprepared = Self.named("error_unprepared")
        let events = Self.named("event_"), setKeyspace = Self.named("result_set_keyspace")
        XCTAssertGreaterThan(responses.count, 30, "the driver's vectors are missing")
        XCTAssertFalse(prepared.isEmpty || unprepared.isEmpty || events.isEmpty || setKeyspace.isEmpty)
        var accepted = 0, outOfStep = 0, malformed = 0, emptied = 0, takenOver = 0, cleanRuns = 0, eventsDelivered = 0
        for iteration in 0..<Self.iterations / 12 {
            let context = "seed \(seed) iteration \(iteration)"
            let pairing = CQLStreamPairing(keyspace: Bool.random(using: &g) ? "ks" : nil, registry: CQLPreparedRegistry(),
                                           eventLoop: loop, allocator: ByteBufferAllocator())
            pairing.events = { _ in eventsDelivered += 1 }
            let takeOver = Bool.random(using: &g)
            var tookOver: Set<Int16> = []
            pairing.unprepared = { entry, _ in
                if takeOver { tookOver.insert(entry.clientStream) }
                return takeOver
            }
            pairing.keyspaceSwitched = {}
            let facts = SessionFacts(eventLoop: loop, sourceName: "fuzz")
            let statements = CQLPreparedStatements(capacity: 16)
            let clean = Int.random(in: 0..<3, using: &g) == 0
            // The requests, each on a client stream of its own.
            var clients: [(collector: ReplyCollector, clientStream: Int16, stream: Int16?, opcode: UInt8)] = []
            var output = ByteBuffer()
            for n in 0..<Int.random(in: 1...4, using: &g) {
                let clientStream = Int16(n * 16 + Int.random(in: 0..<16, using: &g))
                var bytes = Self.withStream(requests.randomElement(using: &g)!, clientStream)
                if !clean, Int.random(in: 0..<4, using: &g) == 0 {
                    // A body the codec may refuse, in a header the client's scanner accepts.
                    let mutated = Self.withStream(Self.withHonestLength(mutateCQL(bytes, &g)), clientStream)
                    if mutated.withUnsafeBytes({ CQLParsedMessage.header(of: $0, isResponse: false) }) != nil { bytes = mutated }
                }
                let frame = ByteBuffer(bytes: bytes)
                let wire = CQLWireFrame(frame)!
                let batch = Batch(kind: Batch.requests, protocolID: Batch.cql, messages: [frame])
                let collector = ReplyCollector()
                var receiver: ResponseReceiver = CQLClusterView.asksForPeers(wire, keyspace: pairing.keyspace,
                                                                             registry: pairing.registry)
                    ? CQLClusterView.emptying(collector) : collector
                receiver = CQLSessionObserver.observing(batch, facts: facts, registry: statements, receiver: receiver)
                let check: Int? = Bool.random(using: &g) ? Int.random(in: 0...2, using: &g) : nil
                let entry = Bool.random(using: &g)
                    ? pairing.entry(for: batch, receiver: receiver, route: nil, sentAtCheck: check, appendingTo: &output).entry
                    : pairing.entry(for: batch, receiver: receiver, route: nil, sentAtCheck: check)
                pairing.add(entry)
                XCTAssertNotNil(entry.stream, context)
                clients.append((collector, clientStream, entry.stream, wire.opcodeByte))
            }
            // Their replies, in any order, on Sluice's stream ids.
            var stream: [UInt8] = []
            for client in clients.shuffled(using: &g) {
                guard let sluiceStream = client.stream else { continue }
                var reply: [UInt8]
                switch client.opcode {
                case CQLOpcode.prepare.rawValue where Bool.random(using: &g): reply = prepared.randomElement(using: &g)!
                case CQLOpcode.execute.rawValue where Bool.random(using: &g): reply = unprepared.randomElement(using: &g)!
                case CQLOpcode.query.rawValue where Int.random(in: 0..<4, using: &g) == 0: reply = setKeyspace.randomElement(using: &g)!
                default: reply = responses.randomElement(using: &g)!
                }
                reply = Self.withStream(reply, sluiceStream)
                if !clean, Bool.random(using: &g) { reply = mutateCQL(reply, &g) }
                stream += reply
                if Int.random(in: 0..<6, using: &g) == 0 { stream += events.randomElement(using: &g)! }
                if !clean, Int.random(in: 0..<10, using: &g) == 0 {
                    stream += Self.withStream(responses.randomElement(using: &g)!, Int16.random(in: 100...Int16.max, using: &g))
                }
            }
            if !clean, Int.random(in: 0..<4, using: &g) == 0 { stream = mutate(stream, &g) }
            // Bare frames, or (a v5 connection after its STARTUP) uncompressed segments.
            let segments = Int.random(in: 0..<4, using: &g) == 0
            var wire = stream
            if segments {
                var out = ByteBuffer()
                var rest = stream[...]
                while !rest.isEmpty || out.readableBytes == 0 {
                    let n = min(rest.count, Int.random(in: 1...max(1, rest.count), using: &g))
                    CQLSegmentCodec(compressed: false).encode(ByteBuffer(bytes: rest.prefix(n)), selfContained: Bool.random(using: &g),
                                                            into: &out)
                    rest = rest.dropFirst(n)
                    if rest.isEmpty { break }
                }
                wire = Array(out.readableBytesView)
                if !clean, Int.random(in: 0..<4, using: &g) == 0 {
                    wire = mutate(wire, &g)
                    if Bool.random(using: &g) { wire = Self.fixChecksums(wire, lz4: false) }
                }
            }
            // The reads.
            let oneByteReads = Int.random(in: 0..<8, using: &g) == 0
            var buffered: ByteBuffer?
            var partialSegment: ByteBuffer?
            var open = true
            var rest = wire[...]
            var firstRead = true
            func read(_ data: ByteBuffer) {
                var buffer = ByteBuffer.joining(&buffered, data)
                pairing.beginRead(buffer)
                defer { pairing.endRead() }
                var scanner = CQLBackendScanner(maxFrameBytes: 1 << 16)
                while open, buffer.readableBytes > 0 {
                    switch buffer.withUnsafeReadableBytes({ scanner.scanFrame($0) }) {
                    case .complete(let length):
                        XCTAssert(length >= CQLFrameHeader.size && length <= buffer.readableBytes, context)
                        let start = buffer.readerIndex
                        let frame = buffer.readSlice(length: length)!
                        if inspectReply(frame, context) { emptied += 1 }
                        switch pairing.frameArrived(frame, start: start) {
                        case .accepted: accepted += 1
                        case .outOfStep: outOfStep += 1; open = false
                        }
                    case .needMore:
                        buffered = buffer
                        return
                    case .malformed:
                        malformed += 1
                        open = false
                    }
                }
            }
            while open, !rest.isEmpty {
                let n = oneByteReads ? 1 : Int.random(in: 1...rest.count, using: &g)
                let data = ByteBuffer.endingAtItsAllocation(rest.prefix(n))
                rest = rest.dropFirst(n)
                if segments {
                    var input = ByteBuffer.joining(&partialSegment, data)
                    do {
                        while open, let segment = try CQLSegmentCodec(compressed: false).decode(&input) { read(segment.payload) }
                    } catch {
                        malformed += 1
                        open = false
                    }
                    if input.readableBytes > 0 { partialSegment = input }
                } else {
                    read(data)
                }
                if firstRead, !clean, Int.random(in: 0..<4, using: &g) == 0 {
                    _ = pairing.failOverdue(sentAtOrBefore: Int.random(in: 0...2, using: &g), message: "sluice: late")
                }
                firstRead = false
            }
            if clean {
                XCTAssertTrue(open, "unmutated replies were refused, \(context)")
                XCTAssertEqual(pairing.count, 0, "unmutated replies left requests waiting, \(context)")
                cleanRuns += 1
            }
            // The connection ends (BackendConnection.lost): whatever still waits fails.
            pairing.connectionLost()
            pairing.settleAll(on: loop) { _ in .failed("sluice: backend unavailable") }
            loop.run()
            takenOver += tookOver.count
            for client in clients {
                let expected = tookOver.contains(client.clientStream) ? 0 : 1
                XCTAssertEqual(client.collector.replies.count, expected, "replies to client stream \(client.clientStream), \(context)")
                for reply in client.collector.replies {
                    let frame = CQLWireFrame(reply)
                    XCTAssertEqual(frame?.stream, client.clientStream, context)
                    XCTAssertEqual(frame?.bodyLength, reply.readableBytes - CQLFrameHeader.size, context)
                }
            }
        }
        XCTAssertGreaterThan(accepted, 0)
        XCTAssertGreaterThan(outOfStep, 0)
        XCTAssertGreaterThan(malformed, 0)
        XCTAssertGreaterThan(emptied, 0, "no peers reply was emptied")
        XCTAssertGreaterThan(takenOver, 0, "no UNPREPARED was taken over")
        XCTAssertGreaterThan(cleanRuns, 0)
        XCTAssertGreaterThan(eventsDelivered, 0)
    }

    /// Whether `view` (non-empty) lies inside `bytes`.
    private static func lies(_ view: sluice_host_view, in bytes: sluice_host_view) -> Bool {
        guard view.len > 0 else { return true }
        guard let start = view.ptr, let base = bytes.ptr else { return false }
        return start >= base && start + view.len <= base + bytes.len
    }

    /// What the cql_* host functions read of CQL frames for plugins, on mutated requests and
    /// responses in a batch as a source or a backend connection hands them on (whole frames, their
    /// bodies anything): `CQLParsedMessage.header(of:isResponse:)`, `CQLQueryLayout` (for every
    /// version, and against the codec: a QUERY has a layout exactly when the codec reads it, with
    /// the same text and values), statements (`CQLStatementInfo`, the classifier), bound values
    /// (`CQLBoundValues`), RESULT Rows (columns, the cells cursor, cell replacement). Every text,
    /// value and cell handed out lies in the message.
    func testCQLFramesReadForPlugins() {
        let seed = Self.seed(0x5EED_0C05)
        var g = Generator(state: seed)
        let api = HostAPI.table.pointee
        let requests = Self.cqlRequestSeeds, responses = Self.cqlResponseSeeds
        XCTAssertGreaterThan(requests.count, 20, "the driver's vectors are missing")
        var layouts = 0, agreed = 0, statements = 0, values = 0, cells = 0, edits = 0
        let names: [[CChar]] = ["a", "B b", "k", "v", "", "\u{0}"].map { Array($0.utf8CString.dropLast()) }
        for iteration in 0..<Self.iterations / 4 {
            let context = "seed \(seed) iteration \(iteration)"
            let isResponse = Bool.random(using: &g)
            var frames: [ByteBuffer] = []
            for _ in 0..<Int.random(in: 1...3, using: &g) {
                var bytes = mutateCQL((isResponse ? responses : requests).randomElement(using: &g)!, &g)
                if Int.random(in: 0..<4, using: &g) != 0 { bytes = Self.withHonestLength(bytes) }
                ByteBuffer.endingAtItsAllocation(bytes).withUnsafeReadableBytes { raw in
                    for direction in [false, true] {
                        if let header = CQLParsedMessage.header(of: raw, isResponse: direction) {
                            XCTAssertEqual(header.bodyLength + CQLFrameHeader.size, raw.count, context)
                        }
                    }
                    for version in CQLVersion.allCases {
                        let flags = CQLFrameFlags(rawValue: raw.count > 1 ? raw[1] : 0)
                        guard let layout = CQLQueryLayout(frame: raw, version: version, flags: flags) else { continue }
                        layouts += 1
                        for range in [layout.text, layout.values] + (layout.keyspace.map { [$0] } ?? []) {
                            XCTAssert(range.lowerBound >= CQLFrameHeader.size && range.upperBound <= raw.count, context)
                        }
                    }
                    // The layout against the codec.
                    guard let header = CQLParsedMessage.header(of: raw, isResponse: false),
                          header.opcodeByte == CQLOpcode.query.rawValue, !header.flags.contains(.compression) else { return }
                    let layout = CQLQueryLayout(frame: raw, version: header.version, flags: header.flags)
                    let decoded = try? CQLMessage(frame: CQLFrame(header: header, bytes: .endingAtItsAllocation(raw)), compression: nil,
                                                  maxBodyBytes: 1 << 20)
                    guard case .query(let query)? = decoded else {
                        return XCTAssertNil(layout, "the codec refuses the QUERY, the layout reads it, \(context)")
                    }
                    guard let layout else { return XCTFail("the codec reads the QUERY, the layout does not, \(context)") }
                    XCTAssertEqual(Array(raw[layout.text]), Array(query.query.readableBytesView), context)
                    XCTAssertEqual(Array(raw[layout.values]), Array(query.parameters.values.bytes.readableBytesView), context)
                    XCTAssertEqual(layout.valueCount, query.parameters.values.count, context)
                    agreed += 1
                }
                frames.append(.endingAtItsAllocation(bytes))
            }
            let batch = Batch(kind: isResponse ? Batch.responses : Batch.requests, protocolID: Batch.cql, messages: frames)
            let handle = HandleTable.current.register(batch, kind: .ownedBatch)
            defer { HandleTable.current.retire(handle) }
            for index in 0...frames.count {
                var message = sluice_host_view()
                _ = api.batch_message_bytes(handle, index, &message)
                var header = sluice_cql_header()
                // The header's fields as they are (a source hands on only frames whose length is right).
                if api.cql_header(handle, index, &header) == SLUICE_OK,
                   CQLParsedMessage.header(of: UnsafeRawBufferPointer(start: message.ptr, count: message.len), isResponse: isResponse) != nil {
                    XCTAssertEqual(Int(header.body_length) + CQLFrameHeader.size, message.len, context)
                }
                let opcode = message.len > 4 ? message.ptr![4] : 0
                let count = api.cql_statement_count(handle, index)
                XCTAssertLessThanOrEqual(count, max(message.len, 1), context)
                for statement in 0...min(count, 8) {
                    var text = sluice_host_view()
                    if api.cql_query(handle, index, statement, &text) == SLUICE_OK,
                       opcode == CQLOpcode.query.rawValue || opcode == CQLOpcode.prepare.rawValue {
                        XCTAssert(Self.lies(text, in: message), "a statement's text outside its message, \(context)")
                    }
                    var info = sluice_cql_statement()
                    if api.cql_statement(handle, index, statement, &info) == SLUICE_OK { statements += 1 }
                    let valueCount = api.cql_value_count(handle, index, statement)
                    for position in 0...min(valueCount, 8) {
                        var value = sluice_cql_value()
                        if api.cql_value(handle, index, statement, position, &value) == SLUICE_OK {
                            XCTAssert(Self.lies(value.bytes, in: message), "a value outside its message, \(context)")
                            values += 1
                        }
                    }
                    let name = names.randomElement(using: &g)!
                    var value = sluice_cql_value()
                    if name.withUnsafeBufferPointer({ api.cql_value_named(handle, index, statement, $0.baseAddress, $0.count, &value) })
                        == SLUICE_OK {
                        XCTAssert(Self.lies(value.bytes, in: message), "a value outside its message, \(context)")
                    }
                }
                var rows: Int64 = 0, columns: Int32 = 0
                guard api.cql_result_rows(handle, index, &rows, &columns) == SLUICE_OK else { continue }
                for column in -1...min(max(columns, 0), 8) {
                    var spec = sluice_cql_column()
                    _ = api.cql_result_column(handle, index, column, &spec)
                }
                // The cells, then again after one is replaced (the message is a new one then).
                for pass in 0..<2 {
                    _ = api.batch_message_bytes(handle, index, &message)
                    var cursor = sluice_cql_cursor()
                    var cell = sluice_cql_cell()
                    var seen = 0
                    if api.cql_rows_init(handle, index, &cursor) == SLUICE_OK {
                        while api.cql_rows_next(&cursor, &cell) == SLUICE_OK {
                            XCTAssert(Self.lies(cell.bytes, in: message), "a cell outside its message, \(context)")
                            seen += 1
                            cells += 1
                            if seen > message.len { XCTFail("the cursor does not end, \(context)"); break }
                        }
                    }
                    guard pass == 0 else { break }
                    let replacement: [UInt8] = Array(repeating: 0x41, count: Int.random(in: 0...5, using: &g))
                    let status = replacement.withUnsafeBufferPointer { buffer in
                        var input = sluice_cql_input_value(state: Bool.random(using: &g) ? SLUICE_CQL_VALUE_SET : SLUICE_CQL_VALUE_NULL,
                                                           reserved: 0, bytes: buffer.baseAddress, len: buffer.count)
                        return api.cql_set_cell(handle, index, Int64.random(in: -1...max(rows, 0), using: &g),
                                                Int32.random(in: -1...max(columns, 0), using: &g), &input)
                    }
                    if status == SLUICE_OK { edits += 1 }
                }
            }
        }
        XCTAssertGreaterThan(layouts, 0)
        XCTAssertGreaterThan(agreed, 0)
        XCTAssertGreaterThan(statements, 0)
        XCTAssertGreaterThan(values, 0)
        XCTAssertGreaterThan(cells, 0)
        XCTAssertGreaterThan(edits, 0)
    }

    private static let statementSeeds: [String] = [
        "SELECT * FROM ks.t WHERE k = ?", "select \"Quoted\"\"Name\".t from x", "INSERT INTO \"Ks\".\"T\" (a) VALUES ('it''s')",
        "UPDATE t USING TTL 5 SET v = $$x$$ WHERE k = 1", "DELETE v FROM ks.t WHERE k IN (1, 2)",
        "BEGIN BATCH INSERT INTO t (k) VALUES (1); APPLY BATCH", "USE \"MyKs\"", "use ks", "-- c\nUSE ks", "// c\nuse x;",
        "/* a */ SELECT peers FROM system.peers", "select * from SYSTEM.PEERS_V2", "SELECT * FROM \"system\".\"peers\"",
        "CREATE TABLE IF NOT EXISTS ks.t (k int PRIMARY KEY)", "CREATE KEYSPACE x WITH replication = {'class': 'S'}",
        "DROP MATERIALIZED VIEW IF EXISTS ks.v", "ALTER TYPE ks.ty ADD f int", "TRUNCATE TABLE ks.t", "TRUNCATE t",
        "CREATE OR REPLACE FUNCTION ks.f(a int) RETURNS NULL ON NULL INPUT RETURNS int LANGUAGE java AS $$ return a; $$",
        "CREATE CUSTOM INDEX i ON ks.t (v)", "SELECT count(*) FROM ks.t WHERE token(k) > 0 ALLOW FILTERING",
        "SELECT \"from\" FROM t", "select from from from", "", " ", "\"", "/*", "'", "$$", "--", "SELECT * FROM ks.\"t\"\"",
        "SELECT * FROM ks.", "SELECT * FROM .t", "é SELECT", "USEks", "use", "usE\t\"q\"", "GRANT SELECT ON ks.t TO r",
    ]
    private static let statementPalette = Array("\"'$-/*.;(), \n\t\\_PpeErRsSuU\u{7F}".utf8) + [0x00, 0x80, 0xC3, 0xFF]

    /// Statement texts as clients write them, mutated (quotes, comments and dollar strings left
    /// open, names cut, bytes that are not UTF-8), through what reads them per request: the
    /// classifier (`CQLStatement`, `CQLStatementShape`, the plugin accessors' `CQLStatementInfo` and
    /// the thread's shape cache), the session observer's USE check and the cluster view's peers
    /// checks. Every name lies in the text; the cached and the direct classification agree; the
    /// peers pre-check finds "peers" exactly when it is there.
    func testCQLStatementTexts() {
        let seed = Self.seed(0x5EED_0C06)
        var g = Generator(state: seed)
        var named = 0, uses = 0
        for iteration in 0..<Self.iterations / 4 {
            let context = "seed \(seed) iteration \(iteration)"
            var bytes = Array(Self.statementSeeds.randomElement(using: &g)!.utf8)
            for _ in 0..<Int.random(in: 0...3, using: &g) {
                let position = Int.random(in: 0...bytes.count, using: &g)
                switch Int.random(in: 0..<4, using: &g) {
                case 0: bytes.insert(Self.statementPalette.randomElement(using: &g)!, at: position)
                case 1: bytes = Array(bytes.prefix(position))
                case 2: bytes.insert(contentsOf: Array(Self.statementSeeds.randomElement(using: &g)!.utf8), at: position)
                default: if !bytes.isEmpty { bytes = mutate(bytes, &g) }
                }
            }
            // In a buffer that ends where its allocation ends, so that a read past the text is a read past the allocation.
            let text = ByteBuffer.endingAtItsAllocation(bytes)
            let statement = CQLStatement.classify(text)
            text.withUnsafeReadableBytes { raw in
                let shape = CQLStatementShape(raw)
                XCTAssertEqual(shape.kind, statement.kind, context)
                for name in [shape.keyspace, shape.table].compactMap({ $0 }) {
                    XCTAssert(name.range.lowerBound >= 0 && name.range.upperBound <= raw.count, context)
                    _ = name.isVerbatim(in: raw)
                    named += 1
                }
                if CQLSessionObserver.startsWithUse(raw) { uses += 1 }
                let lowered = bytes.map { $0 | 0x20 }
                let hasPeers = lowered.count >= 5 && (0...(lowered.count - 5)).contains {
                    lowered[$0..<$0 + 5].elementsEqual("peers".utf8)
                }
                XCTAssertEqual(CQLClusterView.mentionsPeers(raw), hasPeers, context)
            }
            _ = CQLClusterView.selectsPeers(text, keyspace: Bool.random(using: &g) ? "system" : nil)
            for _ in 0..<2 {  // the second from the thread's cache
                let info = CQLStatementInfo(text: text, values: .none, requestKeyspace: nil, prepared: nil)
                let classified = info.classification
                XCTAssertEqual(classified.kind, statement.kind, context)
                text.withUnsafeReadableBytes { raw in
                    let whole = sluice_host_view(ptr: raw.baseAddress?.assumingMemoryBound(to: UInt8.self), len: raw.count)
                    let shape = CQLStatementShape(raw)
                    for (view, name) in [(classified.keyspace, shape.keyspace), (classified.table, shape.table)] {
                        guard let view, view.len > 0, let name else { continue }
                        XCTAssertNotNil(view.ptr, context)
                        // A view of the text, or of the name made lower-cased or unquoted (which
                        // may be longer than the whole text: bytes that are not UTF-8 become U+FFFD).
                        if !Self.lies(view, in: whole) { XCTAssertFalse(name.isVerbatim(in: raw), context) }
                        XCTAssertEqual(Array(UnsafeBufferPointer(start: view.ptr, count: view.len)), Array(name.string(in: raw).utf8),
                                       context)
                    }
                }
            }
        }
        XCTAssertGreaterThan(named, 0)
        XCTAssertGreaterThan(uses, 0)
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

extension ByteBuffer {
    /// `bytes` in a buffer whose readable bytes end exactly where its allocation ends. NIO rounds a
    /// buffer's capacity up to a power of two, so `ByteBuffer(bytes:)` leaves slack after the bytes,
    /// and a read past them lands in that slack unseen, even by AddressSanitizer; here the slack
    /// lies before the reader index instead, and under ASan a read past the bytes is reported.
    static func endingAtItsAllocation<Bytes: Collection>(_ bytes: Bytes) -> ByteBuffer where Bytes.Element == UInt8 {
        var buffer = ByteBufferAllocator().buffer(capacity: Swift.max(bytes.count, 1))
        let slack = buffer.capacity - bytes.count
        buffer.writeRepeatingByte(0xA5, count: slack)
        buffer.writeBytes(bytes)
        buffer.moveReaderIndex(forwardBy: slack)
        return buffer
    }
}
