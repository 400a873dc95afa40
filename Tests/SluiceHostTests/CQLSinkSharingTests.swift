import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest
@testable import SluiceHost

/// What one client of a `cassandra` sink must not do to the others that share its backend
/// connections, against the real CQL test backend (Tests/cql/backend): an error reply to its USE
/// does not close a shared connection, a prepared USE does not switch one's keyspace.
final class CQLSinkSharingTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private let backends = CQLTestBackends()

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    override func tearDown() {
        backends.stopAll()
        try? group.syncShutdownGracefully()
    }

    // MARK: helpers

    /// Starts the test backend on `port` (a free one if nil); returns the port and the process.
    private func startBackend(port: Int? = nil, _ arguments: [String] = []) throws -> (port: Int, process: Process) {
        try backends.start(port: port, arguments)
    }

    /// `sinks` cassandra sinks to the backend at `port`; the chain ends at the first.
    private func runtime(port: Int, sinks: Int = 1) -> RuntimePlan {
        let plans = (0..<sinks).map { i in
            var plan = SinkPlan(name: "cass\(i)", host: "127.0.0.1", port: port, connectTimeoutMilliseconds: 1000,
                                replyTimeoutMilliseconds: 5000, maxFrameBytes: 1 << 28, tls: nil)
            plan.protocolKind = .cql
            return plan
        }
        return RuntimePlan(chains: [ChainPlan(name: "c", steps: [.sink(0)])], sinks: plans)
    }

    private func session(_ runtime: RuntimePlan) throws -> ChainSession {
        let loop = group.next()
        return try loop.submit {
            ChainSession(eventLoop: loop, allocator: ByteBufferAllocator(), plan: runtime, clientAddress: "test", mainChain: 0)
        }.wait()
    }

    private final class Collect: ResponseReceiver {
        let promise: EventLoopPromise<ByteBuffer>
        init(_ promise: EventLoopPromise<ByteBuffer>) { self.promise = promise }
        func receive(_ outcome: ChainOutcome) {
            switch outcome {
            case .responses(let batch) where batch.count == 1: promise.succeed(batch.messages[0])
            case .responses(let batch): promise.fail(NSError(domain: "\(batch.count) replies", code: 1))
            case .failed(let message): promise.fail(NSError(domain: message, code: 2))
            }
        }
    }

    private func send(_ frame: ByteBuffer, _ session: ChainSession, sink: Int = 0) throws -> CQLWireFrame {
        let promise = session.eventLoop.makePromise(of: ByteBuffer.self)
        session.eventLoop.execute {
            session.sink(sink).send(Batch(kind: Batch.requests, protocolID: Batch.cql, messages: [frame]),
                                 receiver: Collect(promise))
        }
        return try XCTUnwrap(CQLWireFrame(try promise.futureResult.wait(timeout: .seconds(10))))
    }

    private func query(_ text: String, _ session: ChainSession, stream: Int16 = 1, sink: Int = 0) throws -> CQLWireFrame {
        try send(CQLFrameBuilder.query(version: .v5, stream: stream, query: text), session, sink: sink)
    }

    /// Repeats `text` until it succeeds (the sink backs off for a while after a failed connect),
    /// for 10 s at most; the last reply.
    private func queryUntilAnswered(_ text: String, _ session: ChainSession) throws -> CQLWireFrame {
        let deadline = Date().addingTimeInterval(10)
        var reply = try query(text, session)
        while reply.errorCode != nil, Date() < deadline {
            Thread.sleep(forTimeInterval: 0.1)
            reply = try query(text, session)
        }
        return reply
    }

    private static let createKeyspace = "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"

    // MARK: tests

    /// Two clients share the connection of keyspace ks. The backend goes away and one client's USE
    /// gets an ERROR (connect refused, then the back-off): that is not a refused handshake, so the
    /// shared connection is not closed under the other client, which keeps working once the
    /// backend is back. (It got "connection closed" for good when any ERROR to a USE discarded it.)
    func testAnErrorToAUseDoesNotCloseTheSharedConnection() throws {
        let (port, process) = try startBackend()
        let runtime = runtime(port: port)
        let a = try session(runtime), b = try session(runtime), admin = try session(runtime)
        XCTAssertNil(try query(Self.createKeyspace, admin).errorCode)
        XCTAssertNil(try query("CREATE TABLE ks.t (k int PRIMARY KEY, v text)", admin).errorCode)
        XCTAssertEqual(try query("USE ks", a).resultKind, .setKeyspace)
        XCTAssertEqual(try query("USE ks", b).resultKind, .setKeyspace)
        XCTAssertEqual(try query("SELECT v FROM t", b).resultKind, .rows)

        process.terminate()
        process.waitUntilExit()
        let use = try query("USE ks", a, stream: 5)
        XCTAssertNotNil(use.errorCode, "the backend is gone")
        XCTAssertEqual(use.stream, 5)

        // The same port again; this backend keeps nothing, so the schema is made again.
        _ = try startBackend(port: port)
        XCTAssertNil(try queryUntilAnswered(Self.createKeyspace, admin).errorCode)
        XCTAssertNil(try query("CREATE TABLE ks.t (k int PRIMARY KEY, v text)", admin).errorCode)
        let after = try queryUntilAnswered("SELECT v FROM t", b)
        XCTAssertEqual(after.resultKind, .rows, CQLBackend.errorText(after))
        XCTAssertEqual(try query("SELECT v FROM t", a).resultKind, .rows)
        // A USE refused by the handshake still leaves no connection behind.
        let before = runtime.sharedConnections.cql.connectionCount
        XCTAssertEqual(try query("USE nosuch", a).errorCode, .invalid)
        XCTAssertEqual(runtime.sharedConnections.cql.connectionCount, before)
        XCTAssertEqual(try query("SELECT v FROM t", a).resultKind, .rows, "a keeps ks")
    }

    private func prepare(_ text: String, _ session: ChainSession) throws -> ByteBuffer {
        let frame = CQLFrameBuilder.frame(version: .v4, isResponse: false, stream: 3, opcode: .prepare) {
            $0.writeCQLLongString(text)
        }
        let reply = try send(frame, session)
        guard case .prepared(let prepared)? = try? CQLResult(message: reply.message()!, version: .v4) else {
            throw NSError(domain: "not prepared: \(CQLBackend.errorText(reply))", code: 1)
        }
        return prepared.id
    }

    private func execute(_ id: ByteBuffer, _ session: ChainSession) throws -> CQLWireFrame {
        try send(CQLFrameBuilder.frame(version: .v4, isResponse: false, stream: 12, opcode: .execute) { body in
            body.writeCQLShortBytes(id)
            body.writeInteger(CQLConsistency.one.rawValue)
            CQLQueryFlags().write(to: &body, version: .v4)
        }, session)
    }

    /// A reload keeps the sink: its connections move to the new generation's table, and the old
    /// generation ends. An UNPREPARED on a connection carried over re-prepares through the new
    /// table (it trapped on the old one, gone: `unowned`), and a new connection re-prepares a
    /// statement recorded before the reload (the new sink's registry learnt it).
    func testRepreparingAfterAReloadKeptTheSink() throws {
        let (port, _) = try startBackend()
        var old: RuntimePlan? = runtime(port: port)
        weak let oldTable = old!.sharedConnections
        var before: ChainSession? = try session(old!)
        XCTAssertNil(try query(Self.createKeyspace, before!).errorCode)
        XCTAssertNil(try query("CREATE TABLE ks.t (k int PRIMARY KEY, v text)", before!).errorCode)
        XCTAssertNil(try query("INSERT INTO ks.t (k, v) VALUES (1, 'one')", before!).errorCode)
        let qualified = try prepare("SELECT v FROM ks.t WHERE k = 1", before!)
        XCTAssertEqual(try query("USE ks", before!).resultKind, .setKeyspace)
        let unqualified = try prepare("SELECT v FROM t WHERE k = 1", before!)

        let next = runtime(port: port)
        old!.sharedConnections.carryOver(to: next.sharedConnections, sinkIndices: [0: 0], nextSinks: next.sinks)
        old!.sharedConnections.closeAll(except: next.sharedConnections.identities)
        let loop = before!.eventLoop
        try loop.submit { before = nil }.wait()
        old = nil
        XCTAssertNil(oldTable, "the old generation's table is gone")

        let after = try session(next)
        XCTAssertEqual(try query("TESTBACKEND FORGET PREPARED", after).resultKind, .void)
        // The carried-over keyspace-less connection; the unqualified statement re-prepares on the
        // connection of ks (looked up in the new table).
        for id in [qualified, unqualified] {
            let rows = try execute(id, after)
            XCTAssertEqual(rows.resultKind, .rows, CQLBackend.errorText(rows))
        }
        // A connection the new generation opened (keyspace ks2): a statement recorded before the reload.
        XCTAssertNil(try query(Self.createKeyspace.replacingOccurrences(of: "ks", with: "ks2"), after).errorCode)
        XCTAssertEqual(try send(CQLFrameBuilder.query(version: .v4, stream: 1, query: "USE ks2"), after).resultKind, .setKeyspace)
        XCTAssertEqual(try query("TESTBACKEND FORGET PREPARED", after).resultKind, .void)
        let rows = try execute(qualified, after)
        XCTAssertEqual(rows.resultKind, .rows, CQLBackend.errorText(rows))
    }

    /// Pass-through authentication: the credentials the client signed in with are the session's,
    /// so every cassandra route of it uses them (a transform's target such as redirect's, a route
    /// made after a reload), never its sink's own (a privilege the client was not given). Sink 1
    /// has no credentials here: before, its route asked the backend without any and was refused.
    func testPassThroughCredentialsAreTheSessions() throws {
        let (port, _) = try startBackend(["--user", "alice:wonder"])
        let runtime = runtime(port: port, sinks: 2)
        let alice = try session(runtime)
        let signIn = CQLFrameBuilder.frame(version: .v5, isResponse: false, stream: 2, opcode: .authResponse) {
            $0.writeCQLBytes([0] + Array("alice".utf8) + [0] + Array("wonder".utf8))
        }
        XCTAssertEqual(try send(signIn, alice).opcodeByte, CQLOpcode.authSuccess.rawValue)
        XCTAssertEqual(try query("SELECT release_version FROM system.local", alice).resultKind, .rows)
        let other = try query("SELECT release_version FROM system.local", alice, sink: 1)
        XCTAssertEqual(other.resultKind, .rows, CQLBackend.errorText(other))
    }

    /// The event types a client registered are its session's: a route to another sink (a
    /// transform's target, such as redirect's), made after the REGISTER, delivers that sink's
    /// events of those types too, registering them on its event connection itself. Sink 1 is
    /// another backend; before, the client got none of its events.
    func testRegisteredEventsFollowTheSessionToAnotherSink() throws {
        let (first, _) = try startBackend()
        let (second, _) = try startBackend()
        let plans = [first, second].enumerated().map { i, port in
            var plan = SinkPlan(name: "cass\(i)", host: "127.0.0.1", port: port, connectTimeoutMilliseconds: 1000,
                                replyTimeoutMilliseconds: 5000, maxFrameBytes: 1 << 28, tls: nil)
            plan.protocolKind = .cql
            return plan
        }
        let runtime = RuntimePlan(chains: [ChainPlan(name: "c", steps: [.sink(0)])], sinks: plans)
        let client = try session(runtime)
        var pushes: [ByteBuffer] = []
        let lock = NSLock()
        try client.eventLoop.submit {
            client.onPush = { bytes, _ in lock.lock(); pushes.append(bytes); lock.unlock() }
        }.wait()
        let register = CQLFrameBuilder.frame(version: .v5, isResponse: false, stream: 5, opcode: .register) {
            $0.writeCQLStringList(["SCHEMA_CHANGE"])
        }
        XCTAssertEqual(try send(register, client).opcodeByte, CQLOpcode.ready.rawValue)
        // The route to sink 1 is made by this request, after the REGISTER; the keyspace is created
        // on the second backend only, so only its event connection can tell.
        XCTAssertNil(try query(Self.createKeyspace, client, sink: 1).errorCode)
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            lock.lock(); let count = pushes.count; lock.unlock()
            if count > 0 { break }
            Thread.sleep(forTimeInterval: 0.02)
        }
        Thread.sleep(forTimeInterval: 0.2)  // no second copy either
        lock.lock(); defer { lock.unlock() }
        XCTAssertEqual(pushes.compactMap { CQLEventFanOut.eventType($0) }, ["SCHEMA_CHANGE"])
        XCTAssertEqual(pushes.first.flatMap { CQLWireFrame($0)?.stream }, -1)
    }

    /// Every pass-through sign-in is checked by the backend with a SASL exchange of its own, even
    /// while a connection signed in with the same credentials is open: a password changed at the
    /// backend stops working for new sign-ins (it was accepted on the open connection).
    func testPassThroughSignInIsCheckedEachTime() throws {
        let (port, _) = try startBackend(["--user", "alice:wonder"])
        let runtime = runtime(port: port)
        func signIn(_ password: String) throws -> CQLWireFrame {
            try send(CQLFrameBuilder.frame(version: .v5, isResponse: false, stream: 2, opcode: .authResponse) {
                $0.writeCQLBytes([0] + Array("alice".utf8) + [0] + Array(password.utf8))
            }, try session(runtime))
        }
        let first = try session(runtime)
        XCTAssertEqual(try send(CQLFrameBuilder.frame(version: .v5, isResponse: false, stream: 2, opcode: .authResponse) {
            $0.writeCQLBytes([0] + Array("alice".utf8) + [0] + Array("wonder".utf8))
        }, first).opcodeByte, CQLOpcode.authSuccess.rawValue)
        XCTAssertEqual(try query("TESTBACKEND PASSWORD 'alice' 'rotated'", first).resultKind, .void)
        let stale = try signIn("wonder")
        XCTAssertEqual(stale.errorCode, .badCredentials, "the old password: \(CQLBackend.errorText(stale))")
        XCTAssertEqual(try signIn("rotated").opcodeByte, CQLOpcode.authSuccess.rawValue)
        // A client signed in before keeps its session, as on a direct connection.
        XCTAssertEqual(try query("SELECT release_version FROM system.local", first).resultKind, .rows)
    }
}
