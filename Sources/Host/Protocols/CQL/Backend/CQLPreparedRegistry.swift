import NIOConcurrencyHelpers
import NIOCore

/// The statements prepared through one sink: the backend's prepared id → the query text and the
/// keyspace it was prepared in, recorded from the PREPARE requests and their RESULT Prepared
/// replies. A client may EXECUTE an id another client prepared (on another event loop too); when
/// the backend answers UNPREPARED (it restarted, or evicted the statement), Sluice prepares the
/// recorded text again and retries, and the client never sees it.
/// Touched on PREPARE replies and UNPREPARED errors only, never on a plain EXECUTE.
final class CQLPreparedRegistry: @unchecked Sendable {
    struct Statement: Equatable {
        let query: String
        /// The keyspace unqualified names in the text resolve in (the client's USE, or a v5 PREPARE's keyspace).
        let keyspace: String?
    }

    /// Statements beyond this many evict arbitrary older ones (a client preparing unbounded
    /// distinct texts must not grow memory without end).
    static let limit = 100_000

    private let lock = NIOLock()
    private var statements: [[UInt8]: Statement] = [:]
    /// The ids of SELECTs on the peers tables (`CQLClusterView`), whose replies Sluice empties.
    private var peersStatements: [[UInt8]] = []

    func record(id: [UInt8], _ statement: Statement) {
        lock.withLock {
            if statements.count >= Self.limit, statements[id] == nil, let victim = statements.keys.first {
                statements[victim] = nil
            }
            statements[id] = statement
        }
        if CQLClusterView.selectsPeers(ByteBuffer(string: statement.query), keyspace: statement.keyspace) {
            lock.withLock {
                guard !peersStatements.contains(id) else { return }
                if peersStatements.count >= 1_000 { peersStatements.removeFirst() }
                peersStatements.append(id)
            }
        }
    }

    /// Whether `id` is a statement `CQLClusterView` answers (no allocation: one lock, and a
    /// comparison only when such a statement was prepared).
    func isPeersStatement(id: ByteBuffer) -> Bool {
        lock.withLock { !peersStatements.isEmpty && peersStatements.contains { $0.elementsEqual(id.readableBytesView) } }
    }

    /// Learns the statements `other` recorded that this one does not know (a reload's new
    /// generation of a sink it kept, so statements prepared before the reload re-prepare after it).
    func absorb(_ other: CQLPreparedRegistry) {
        guard other !== self else { return }
        let (theirs, theirPeers) = other.lock.withLock { (other.statements, other.peersStatements) }
        lock.withLock {
            for (id, statement) in theirs where statements[id] == nil && statements.count < Self.limit {
                statements[id] = statement
            }
            for id in theirPeers where !peersStatements.contains(id) && peersStatements.count < 1_000 {
                peersStatements.append(id)
            }
        }
    }

    func statement(id: [UInt8]) -> Statement? {
        lock.withLock { statements[id] }
    }

    var count: Int { lock.withLock { statements.count } }
}
