/// Per-index slots filled on first use (what the cql_* accessors parsed of a message, or of a
/// statement), without an array for the most common case: a message holds one statement, and many
/// CQL request batches one message, so slot 0 is a stored property and only slots past it live in
/// an array. A batch of several frames fills its slots in order, one append each, and the array
/// keeps its capacity when emptied (the batch object is reused for the next read). An empty slot is nil.
struct CQLLazySlots<Element: AnyObject> {
    private var first: Element?
    /// Slot i (i >= 1) is rest[i - 1]; slots past its end are empty.
    private var rest: [Element?] = []

    subscript(index: Int) -> Element? {
        get {
            if index == 0 { return first }
            return index - 1 < rest.count ? rest[index - 1] : nil
        }
        set {
            if index == 0 {
                first = newValue
                return
            }
            let slot = index - 1
            if slot >= rest.count {
                guard newValue != nil else { return }
                // Usually the next slot: one append (a generic append of a repeated nil cost a
                // couple of hundred instructions per message of a multi-frame batch).
                while rest.count < slot { rest.append(nil) }
                rest.append(newValue)
                return
            }
            rest[slot] = newValue
        }
    }

    /// An empty slot enters at `index`; the slots from there on move up one.
    mutating func insertEmpty(at index: Int) {
        if index == 0 {
            if first != nil || !rest.isEmpty { rest.insert(first, at: 0) }
            first = nil
        } else if index - 1 < rest.count {
            rest.insert(nil, at: index - 1)
        }
    }

    /// Slot `index` leaves; the slots after it move down one.
    mutating func remove(at index: Int) {
        if index == 0 {
            first = rest.isEmpty ? nil : rest.removeFirst()
        } else if index - 1 < rest.count {
            rest.remove(at: index - 1)
        }
    }

    mutating func removeAll() {
        first = nil
        if !rest.isEmpty { rest.removeAll(keepingCapacity: true) }
    }
}
