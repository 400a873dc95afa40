/// The stream ids Sluice gives the requests it sends on one backend connection (0...32767; the
/// negative ones are the server's). Many clients share a connection, each numbering its own
/// streams, so every request gets an id of Sluice's while it is in flight and the client's own
/// back on its reply. Ids are handed out lowest-first the first time, then reused last-freed-first.
/// A plain value.
struct CQLStreamIDs {
    static let capacity = 32768

    /// Ids freed and not handed out again.
    private var free: [Int16] = []
    /// Ids from here on were never handed out.
    private var fresh = 0
    /// Ids in flight.
    private(set) var inUse = 0

    /// A free id, or nil when all 32768 are in flight.
    @inline(__always)
    mutating func allocate() -> Int16? {
        if let id = free.popLast() {
            inUse += 1
            return id
        }
        guard fresh < Self.capacity else { return nil }
        defer { fresh += 1 }
        inUse += 1
        return Int16(fresh)
    }

    /// `id` (handed out by `allocate`) is free again.
    @inline(__always)
    mutating func release(_ id: Int16) {
        free.append(id)
        inUse -= 1
    }

    /// Every id is free (the connection's requests were all settled).
    mutating func reset() {
        free.removeAll(keepingCapacity: true)
        fresh = 0
        inUse = 0
    }
}
