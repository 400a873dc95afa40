import NIOConcurrencyHelpers
import NIOCore

/// The statements the host saw prepared, by prepared id, for every client connection of the process
/// (a driver prepares on one connection and executes on any): the text, where it runs and its bound
/// variables, so plugins can read an EXECUTE's statement and its values by name.
///
/// Filled by `CQLSessionObserver` when a RESULT Prepared comes back for a PREPARE. Bounded: past
/// `capacity` entries the oldest half is forgotten (its EXECUTEs then read as "not seen prepared").
final class CQLPreparedStatements: @unchecked Sendable {
    /// One prepared statement. Immutable; plugins get views into it, so it lives as long as a
    /// parsed message refers to it.
    final class Entry: @unchecked Sendable {
        let text: ByteBuffer
        /// The keyspace the statement runs in, as the prepared metadata names it (or the PREPARE's).
        let keyspace: FactBytes?
        /// The bound variables in order: name (as a view) and type.
        let variables: [(name: FactBytes, type: CQLDataType)]
        /// The text's classification, made here once: every EXECUTE of the statement reads it
        /// without lexing (its name ranges are relative to `text`, which EXECUTEs hand out).
        let classified: CQLClassifiedText

        init(text: ByteBuffer, keyspace: String?, variables: [CQLColumnSpec]) {
            self.text = text
            classified = text.withUnsafeReadableBytes { CQLClassifiedText($0) }
            self.keyspace = keyspace.map { FactBytes(Array($0.utf8)) }
            self.variables = variables.map { (FactBytes(Array($0.name.utf8)), $0.type) }
        }

        /// The position of the variable named `name`, or nil.
        func position(of name: UnsafeRawBufferPointer) -> Int? {
            variables.firstIndex { UnsafeRawBufferPointer(start: $0.name.pointer, count: $0.name.count).elementsEqual(name) }
        }
    }

    static let shared = CQLPreparedStatements()

    let capacity: Int
    private let lock = NIOLock()
    private var entries: [[UInt8]: (entry: Entry, added: UInt64)] = [:]
    private var counter: UInt64 = 0

    init(capacity: Int = 100_000) {
        self.capacity = capacity
    }

    func record(id: ByteBuffer, _ entry: Entry) {
        let key = Array(id.readableBytesView)
        lock.withLock {
            if entries.count >= capacity, entries[key] == nil {
                let cut = counter - UInt64(capacity / 2)
                entries = entries.filter { $0.value.added > cut }
            }
            counter += 1
            entries[key] = (entry, counter)
        }
    }

    func entry(id: ByteBuffer) -> Entry? {
        let key = Array(id.readableBytesView)
        return lock.withLock { entries[key]?.entry }
    }

    var count: Int { lock.withLock { entries.count } }
}
