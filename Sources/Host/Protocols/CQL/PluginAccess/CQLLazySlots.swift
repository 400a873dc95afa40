/// Per-index slots filled on first use (what the cql_* accessors parsed of a message, or of a
/// statement), without an array for the most common case: a message holds one statement, and many
/// CQL request batches one message, so slot 0 is a stored property and only slots past it live in
/// an array. A batch of several frames fills its slots in order, one append each, and the array
/// keeps its capacity when emptied (the batch object is reused for the next read). An empty slot is nil.
///
/// `recycleAll` empties the slots for the next use without freeing their objects: each object that
/// nothing else references stays in its slot, emptied by its owner (`CQLParsedMessage.recycle`,
/// `CQLStatementInfo.recycle`), and is filled again on the slot's next use instead of a new one
/// being allocated (two objects per proxied request otherwise). Its owner tells a recycled object
/// from a filled one (`isLoaded`).
struct CQLLazySlots<Element: AnyObject> {
    /// At most this many objects are kept by `recycleAll` (the slots past it are dropped), so that
    /// one read of thousands of tiny frames does not keep as many objects for the connection's life.
    static var maxRecycled: Int { 64 }

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

    /// Slot `index`'s object, not retained (nil when empty): for a caller that changes no slot
    /// while it uses the object (each accessor call would otherwise retain and release it).
    @inline(__always)
    func unretained(_ index: Int) -> Unmanaged<Element>? {
        if index == 0 {
            guard let first else { return nil }
            return Unmanaged.passUnretained(first)
        }
        guard index - 1 < rest.count, let element = rest[index - 1] else { return nil }
        return Unmanaged.passUnretained(element)
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

    /// Empties every slot for the next use: an object nothing else references stays, handed to
    /// `recycle` (which must let go of everything it holds); any other is dropped, as are the slots
    /// past `maxRecycled`.
    mutating func recycleAll(_ recycle: (Element) -> Void) {
        if first != nil {
            if isKnownUniquelyReferenced(&first) { recycle(first.unsafelyUnwrapped) } else { first = nil }
        }
        guard !rest.isEmpty else { return }
        if rest.count >= Self.maxRecycled { rest.removeSubrange((Self.maxRecycled - 1)...) }
        // One uniqueness check of the array, not one per element.
        rest.withUnsafeMutableBufferPointer { slots in
            for i in slots.indices where slots[i] != nil {
                if isKnownUniquelyReferenced(&slots[i]) { recycle(slots[i].unsafelyUnwrapped) } else { slots[i] = nil }
            }
        }
    }
}
