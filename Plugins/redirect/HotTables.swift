import SluiceSDK

/// CQL: the keyspaces and tables redirect sends elsewhere. A keyspace listed sends every table of
/// it; a table is `keyspace.table`, or a bare `table` that matches in any keyspace. Names compare
/// as CQL stores them: unquoted names lower-cased (write them lower-case here), quoted ones as written.
struct HotTables {
    let keyspaces: Set<[UInt8]>
    /// "keyspace.table"
    let qualified: Set<[UInt8]>
    let bare: Set<[UInt8]>

    init(keyspaces: [String], tables: [String]) throws {
        self.keyspaces = Set(keyspaces.map { Array($0.utf8) })
        var qualified: Set<[UInt8]> = [], bare: Set<[UInt8]> = []
        for table in tables {
            let parts = table.split(separator: ".", omittingEmptySubsequences: false)
            guard !table.isEmpty, parts.count <= 2, parts.allSatisfy({ !$0.isEmpty }) else {
                throw SluiceError("tables: '\(table)' is not TABLE or KEYSPACE.TABLE")
            }
            if parts.count == 2 { qualified.insert(Array(table.utf8)) } else { bare.insert(Array(table.utf8)) }
        }
        self.qualified = qualified
        self.bare = bare
    }

    var isEmpty: Bool { keyspaces.isEmpty && qualified.isEmpty && bare.isEmpty }

    /// Whether a statement touching `table` in `keyspace` (either may be empty) goes to the target.
    func isHot(keyspace: UnsafeRawBufferPointer, table: UnsafeRawBufferPointer) -> Bool {
        if !keyspace.isEmpty, keyspaces.contains(Array(keyspace)) { return true }
        guard !table.isEmpty else { return false }
        if bare.contains(Array(table)) { return true }
        guard !keyspace.isEmpty, !qualified.isEmpty else { return false }
        return qualified.contains(Array(keyspace) + [UInt8(ascii: ".")] + Array(table))
    }
}
