/// Per-index slots filled on first use (what the cql_* accessors parsed of a message, or of a
/// statement), without an array for the common case: a CQL request batch holds one message, and a
/// message one statement, so slot 0 is a stored property and only slots past it live in an array
/// (made when one of them is first filled). An empty slot is nil.
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
            if index - 1 >= rest.count {
                guard newValue != nil else { return }
                rest.append(contentsOf: repeatElement(nil, count: index - rest.count))
            }
            rest[index - 1] = newValue
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
        if !rest.isEmpty { rest.removeAll() }
    }
}
