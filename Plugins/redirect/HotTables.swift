import SluiceSDK

/// CQL: the keyspaces and tables redirect sends elsewhere. A keyspace listed sends every table of
/// it; a table is `keyspace.table`, or a bare `table` that matches in any keyspace. Names compare
/// as CQL stores them: unquoted names lower-cased (write them lower-case here), quoted ones as written.
/// A class: every CQL request reads it, and a reference is one retain where the struct's three sets
/// and arrays were several.
final class HotTables {
    let keyspaces: HotNames
    /// "keyspace.table"
    let qualified: HotNames
    let bare: HotNames

    init(keyspaces: [String], tables: [String]) throws {
        self.keyspaces = HotNames(Set(keyspaces.map { Array($0.utf8) }))
        var qualified: Set<[UInt8]> = [], bare: Set<[UInt8]> = []
        for table in tables {
            let parts = table.split(separator: ".", omittingEmptySubsequences: false)
            guard !table.isEmpty, parts.count <= 2, parts.allSatisfy({ !$0.isEmpty }) else {
                throw SluiceError("tables: '\(table)' is not TABLE or KEYSPACE.TABLE")
            }
            if parts.count == 2 { qualified.insert(Array(table.utf8)) } else { bare.insert(Array(table.utf8)) }
        }
        self.qualified = HotNames(qualified)
        self.bare = HotNames(bare)
    }

    var isEmpty: Bool { keyspaces.isEmpty && qualified.isEmpty && bare.isEmpty }

    /// Whether a statement touching `table` in `keyspace` (either may be empty) goes to the target.
    func isHot(keyspace: UnsafeRawBufferPointer, table: UnsafeRawBufferPointer) -> Bool {
        if !keyspace.isEmpty, keyspaces.contains(keyspace) { return true }
        guard !table.isEmpty else { return false }
        if bare.contains(table) { return true }
        guard !keyspace.isEmpty, !qualified.isEmpty else { return false }
        return qualified.contains(keyspace, UInt8(ascii: "."), table)
    }
}

/// A set of names looked up by a borrowed view, without allocating (this runs for every statement
/// of every CQL request): a view whose length no member has is refused at once, a few members are
/// compared in place, and only a large set hashes a copy of the view.
struct HotNames {
    private let names: Set<[UInt8]>
    /// The members, when they are few enough to compare one by one.
    private let few: [[UInt8]]?
    /// Bit n set when a member is n bytes long (bit 63: 63 or more).
    private let lengths: UInt64

    init(_ names: Set<[UInt8]>) {
        self.names = names
        few = names.count <= 8 ? Array(names) : nil
        lengths = names.reduce(0) { $0 | Self.bit($1.count) }
    }

    private static func bit(_ length: Int) -> UInt64 { 1 << UInt64(min(length, 63)) }

    var isEmpty: Bool { names.isEmpty }

    func contains(_ name: UnsafeRawBufferPointer) -> Bool {
        guard lengths & Self.bit(name.count) != 0 else { return false }
        guard let few else { return names.contains(Array(name)) }
        return few.contains { $0.elementsEqual(name) }
    }

    /// Whether `first`, `separator` and `second` back to back are a member.
    func contains(_ first: UnsafeRawBufferPointer, _ separator: UInt8, _ second: UnsafeRawBufferPointer) -> Bool {
        let length = first.count + 1 + second.count
        guard lengths & Self.bit(length) != 0 else { return false }
        guard let few else { return names.contains(Array(first) + [separator] + Array(second)) }
        return few.contains { member in
            member.count == length && member[first.count] == separator
                && member[..<first.count].elementsEqual(first) && member[(first.count + 1)...].elementsEqual(second)
        }
    }
}
