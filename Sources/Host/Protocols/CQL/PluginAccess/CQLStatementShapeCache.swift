#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import PluginABI

/// Statement texts already classified, by their exact bytes, so that a text a client sends again
/// (real workloads send the same few texts over and over) is lexed once, not once per request.
///
/// **Where it lives: one per thread** (`current`), that is one per event loop, as every
/// `cql_statement` call runs on the event loop that owns the batch (handles of another thread are
/// refused). Only its own thread ever touches it, so lookups take no lock and no atomic, and all the
/// client connections of a loop share what any of them taught it (a pool of connections sending the
/// same statements fills it once, not once per connection, as a cache in `SessionFacts` would).
/// Memory is bounded per thread, not per connection: at most `capacity` texts of at most
/// `maxTextBytes` bytes each (256 x 1 KiB by default); a longer text is classified directly and
/// never stored. The cache is released when its thread exits.
///
/// A lookup hashes the text (eight bytes a step), looks at the two entries of the text's set and
/// compares the text byte for byte with an entry whose hash and length match: a hash alone never
/// decides. A hit lends the stored `CQLClassifiedText` by pointer (`withClassified`: no allocation,
/// no copy; its names are ranges relative to the text, plus the bytes made for names that needed
/// lower-casing or unquoting, which every identical text shares and a borrower that hands out views
/// of them must retain). A miss classifies as before into the set's less recently used entry and
/// copies the text there (reusing that entry's buffer when it is large enough).
///
/// Prepared statements do not come here: a `CQLPreparedStatements.Entry` keeps its own
/// classification, made once when the statement was recorded.
final class CQLStatementShapeCache {
    static let defaultCapacity = 256
    static let defaultMaxTextBytes = 1024

    /// The most texts kept (a power of two, at least 2).
    let capacity: Int
    /// Texts longer than this are classified without the cache.
    let maxTextBytes: Int
    /// What a lookup found since the cache was made (for tests and curiosity; one add each).
    private(set) var hits = 0
    private(set) var misses = 0
    /// Texts too long to keep (or without storage: the empty text may have no address).
    private(set) var bypasses = 0

    private struct Entry {
        /// The text's bytes (nil: the entry is empty): `bufferCapacity` allocated, `length` used.
        var text: UnsafeMutableRawPointer?
        var bufferCapacity = 0
        var length = 0
        var hash: UInt64 = 0
    }

    /// Two entries per set (2-way set-associative): `entries[2 * set]` and `entries[2 * set + 1]`.
    private let entries: UnsafeMutablePointer<Entry>
    /// Entry i's classification (an empty one while the entry is empty), kept apart from the
    /// entries so that a hit lends it by pointer (`withClassified`), without a copy.
    private let classifications: UnsafeMutablePointer<CQLClassifiedText>
    /// Per set, the way (0 or 1) found or filled last; a miss replaces the other one.
    private let recentWay: UnsafeMutablePointer<UInt8>
    private let setMask: Int
    /// The set is the hash's top bits (64 - log2(sets); 64 when there is one set, where the mask is 0).
    private let setShift: UInt64
    /// ANDed into every hash. All ones but in tests, where 0 gives every text the same hash (and
    /// set), to show that equal hashes never stand in for equal bytes.
    private let hashMask: UInt64

    init(capacity: Int = defaultCapacity, maxTextBytes: Int = defaultMaxTextBytes, hashMask: UInt64 = .max) {
        precondition(capacity >= 2 && capacity & (capacity - 1) == 0, "capacity must be a power of two, at least 2")
        self.capacity = capacity
        self.maxTextBytes = maxTextBytes
        self.hashMask = hashMask
        setMask = capacity / 2 - 1
        setShift = UInt64(64 - (capacity / 2).trailingZeroBitCount)
        entries = .allocate(capacity: capacity)
        entries.initialize(repeating: Entry(), count: capacity)
        classifications = .allocate(capacity: capacity)
        classifications.initialize(repeating: CQLClassifiedText(), count: capacity)
        recentWay = .allocate(capacity: capacity / 2)
        recentWay.initialize(repeating: 0, count: capacity / 2)
    }

    deinit {
        for i in 0..<capacity { entries[i].text?.deallocate() }
        entries.deinitialize(count: capacity)
        entries.deallocate()
        classifications.deinitialize(count: capacity)
        classifications.deallocate()
        recentWay.deallocate()
    }

    /// How many texts the cache holds now.
    var count: Int {
        (0..<capacity).reduce(0) { $0 + (entries[$1].text == nil ? 0 : 1) }
    }

    /// `text` classified: the stored classification of an identical text, else a new one (kept
    /// when the text is at most `maxTextBytes` long).
    func classified(_ text: UnsafeRawBufferPointer) -> CQLClassifiedText {
        withClassified(text) { $0.pointee }
    }

    /// `body` with `text`'s classification, lent: the cache's own on a hit or after a miss (valid
    /// only during `body`; a later lookup may replace it), a temporary for a text too long to keep.
    @inline(__always)
    func withClassified<R>(_ text: UnsafeRawBufferPointer, _ body: (UnsafePointer<CQLClassifiedText>) -> R) -> R {
        let length = text.count
        guard length <= maxTextBytes, let base = text.baseAddress else {
            bypasses &+= 1
            return withUnsafePointer(to: CQLClassifiedText(text)) { body($0) }
        }
        let hash = Self.hash(base, length) & hashMask
        let set = Int(truncatingIfNeeded: hash &>> setShift) & setMask
        let first = 2 &* set
        let index: Int
        if Self.holds(entries + first, hash, base, length) {
            recentWay[set] = 0
            hits &+= 1
            index = first
        } else if Self.holds(entries + (first &+ 1), hash, base, length) {
            recentWay[set] = 1
            hits &+= 1
            index = first &+ 1
        } else {
            index = fill(text, base, hash, set)
        }
        return body(classifications + index)
    }

    /// A miss: classifies `text` into the set's empty or less recently used entry.
    @inline(never)
    private func fill(_ text: UnsafeRawBufferPointer, _ base: UnsafeRawPointer, _ hash: UInt64, _ set: Int) -> Int {
        misses &+= 1
        let first = 2 &* set
        let way = entries[first].text == nil ? 0 : entries[first &+ 1].text == nil ? 1 : 1 &- Int(recentWay[set])
        let index = first &+ way
        Self.store(text: base, text.count, hash, in: entries + index)
        classifications[index] = CQLClassifiedText(text)
        recentWay[set] = UInt8(way)
        return index
    }

    /// Whether `entry` holds exactly the text `base`/`length` (hash and length first: cheap refusals).
    @inline(__always)
    private static func holds(_ entry: UnsafeMutablePointer<Entry>, _ hash: UInt64, _ base: UnsafeRawPointer,
                              _ length: Int) -> Bool {
        guard let stored = entry.pointee.text, entry.pointee.hash == hash, entry.pointee.length == length else { return false }
        return memcmp(stored, base, length) == 0
    }

    private static func store(text base: UnsafeRawPointer, _ length: Int, _ hash: UInt64, in entry: UnsafeMutablePointer<Entry>) {
        if entry.pointee.text == nil || entry.pointee.bufferCapacity < length {
            entry.pointee.text?.deallocate()
            // Powers of two from 64: an entry that changes texts mostly keeps its buffer.
            var size = 64
            while size < length { size &*= 2 }
            entry.pointee.text = .allocate(byteCount: size, alignment: 8)
            entry.pointee.bufferCapacity = size
        }
        entry.pointee.text!.copyMemory(from: base, byteCount: length)
        entry.pointee.length = length
        entry.pointee.hash = hash
    }

    /// A cheap hash of the bytes: eight at a time (the last eight overlapping for a tail), each
    /// multiplied in and its high half folded down, the length mixed in first, and one more multiply
    /// so that the top bits (the set) depend on every byte. Not for adversaries: a crafted
    /// collision costs a miss, never a wrong answer (entries are compared byte for byte).
    @inline(__always)
    static func hash(_ base: UnsafeRawPointer, _ length: Int) -> UInt64 {
        let multiplier: UInt64 = 0x9E37_79B9_7F4A_7C15
        var hash = UInt64(truncatingIfNeeded: length) &* multiplier
        var i = 0
        while i &+ 8 <= length {
            hash = (hash ^ base.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* multiplier
            hash ^= hash &>> 32
            i &+= 8
        }
        if i < length {
            var tail: UInt64 = 0
            if length >= 8 {
                tail = base.loadUnaligned(fromByteOffset: length &- 8, as: UInt64.self)
            } else {
                while i < length {
                    tail |= UInt64(base.load(fromByteOffset: i, as: UInt8.self)) &<< UInt64(8 &* i)
                    i &+= 1
                }
            }
            hash = (hash ^ tail) &* multiplier
            hash ^= hash &>> 32
        }
        return hash &* multiplier
    }

    // MARK: the calling thread's cache

    /// The calling thread's cache (made on first use, released when the thread exits).
    static var current: CQLStatementShapeCache {
        currentUnmanaged.takeUnretainedValue()
    }

    /// `withClassified` on the calling thread's cache (no reference counting on the cache: the
    /// thread's key holds it until the thread exits).
    @inline(__always)
    static func withClassifiedOnThisThread<R>(_ text: UnsafeRawBufferPointer,
                                              _ body: (UnsafePointer<CQLClassifiedText>) -> R) -> R {
        currentUnmanaged._withUnsafeGuaranteedRef { $0.withClassified(text, body) }
    }

    @inline(__always)
    private static var currentUnmanaged: Unmanaged<CQLStatementShapeCache> {
        if let existing = pthread_getspecific(key) { return Unmanaged.fromOpaque(existing) }
        return makeCurrent()
    }

    @inline(never)
    private static func makeCurrent() -> Unmanaged<CQLStatementShapeCache> {
        let made = Unmanaged.passRetained(CQLStatementShapeCache())
        pthread_setspecific(key, made.toOpaque())
        return made
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { pointer in
            guard let pointer else { return }
            Unmanaged<CQLStatementShapeCache>.fromOpaque(pointer).release()
        }
        return key
    }()
}

/// A statement's classification in a form that holds for any text with the same bytes: the kind,
/// and each name's range in the text with, when CQL reads the name differently from its bytes
/// (lower-cased, or unquoted with `""` as `"`), the bytes made for it. Immutable, so the thread's
/// `CQLStatementShapeCache`, a prepared statement's entry and every `CQLStatementInfo` given it share
/// the made bytes safely. A flat value (no object of its own: a miss allocates nothing more than
/// lexing did, and a copy is at most two retains).
struct CQLClassifiedText {
    let kind: CQLStatement.Kind
    /// The names' ranges in the text (start -1: the text names none).
    private let keyspaceStart: Int
    private let keyspaceEnd: Int
    private let tableStart: Int
    private let tableEnd: Int
    private let keyspaceMade: FactBytes?
    private let tableMade: FactBytes?

    /// The classification of no text (an empty cache entry's).
    init() {
        kind = .other
        (keyspaceStart, keyspaceEnd, tableStart, tableEnd) = (-1, -1, -1, -1)
        keyspaceMade = nil
        tableMade = nil
    }

    /// Classifies `text` (lexes it).
    init(_ text: UnsafeRawBufferPointer) {
        let shape = CQLStatementShape(text)
        kind = shape.kind
        let keyspace = shape.keyspace.map { CQLNameBytes($0, in: text) }
        let table = shape.table.map { CQLNameBytes($0, in: text) }
        (keyspaceStart, keyspaceEnd) = keyspace.map { ($0.range.lowerBound, $0.range.upperBound) } ?? (-1, -1)
        (tableStart, tableEnd) = table.map { ($0.range.lowerBound, $0.range.upperBound) } ?? (-1, -1)
        keyspaceMade = keyspace?.made
        tableMade = table?.made
    }

    /// Whether a name needed bytes of its own (the views then point at them, not at the text).
    var hasMadeNames: Bool { keyspaceMade != nil || tableMade != nil }

    var keyspace: CQLNameBytes? {
        keyspaceStart < 0 ? nil : CQLNameBytes(range: keyspaceStart..<keyspaceEnd, made: keyspaceMade)
    }

    var table: CQLNameBytes? {
        tableStart < 0 ? nil : CQLNameBytes(range: tableStart..<tableEnd, made: tableMade)
    }

    /// The classification as plugins get it, its names as views of `text` (a text with the bytes
    /// this was made from) or of the bytes made for them (which this value holds).
    func classification(in text: UnsafeRawBufferPointer) -> CQLStatementClassification {
        CQLStatementClassification(kind: kind, keyspace: Self.view(keyspaceStart, keyspaceEnd, keyspaceMade, in: text),
                                   table: Self.view(tableStart, tableEnd, tableMade, in: text))
    }

    @inline(__always)
    private static func view(_ start: Int, _ end: Int, _ made: FactBytes?, in text: UnsafeRawBufferPointer) -> sluice_host_view? {
        if start < 0 { return nil }
        if let made { return sluice_host_view(ptr: made.pointer, len: made.count) }
        return sluice_host_view(ptr: text.baseAddress.map { ($0 + start).assumingMemoryBound(to: UInt8.self) }, len: end &- start)
    }
}
