import SluiceSDK

/// The hot keys of a redirect step: listed keys and glob patterns, with the lookups that make most
/// keys cheap to reject. A value: a connection keeps its own copy, replaced by published changes.
struct HotKeys {
    let keys: Set<[UInt8]>
    /// Lengths of the listed keys, so most keys are rejected without building an array.
    let keyLengths: Set<Int>
    let patterns: [[UInt8]]
    /// The bytes a hot key can start with, so most keys are rejected without hashing or globbing.
    let firstBytes: ByteSet
    let emptyKeyIsHot: Bool

    init(keys: Set<[UInt8]>, patterns: [[UInt8]]) {
        self.keys = keys
        self.patterns = patterns
        keyLengths = Set(keys.map(\.count))
        var first = ByteSet()
        for key in keys { if let b = key.first { first.insert(b) } }
        for pattern in patterns { first.formUnion(ByteSet.firstBytes(ofGlob: pattern)) }
        firstBytes = first
        emptyKeyIsHot = keys.contains([]) || patterns.contains { $0.withUnsafeBytes { globMatches($0, UnsafeRawBufferPointer(start: nil, count: 0)) } }
    }

    /// False when `argument` cannot be a hot key (its first byte starts no listed key or pattern):
    /// the cheap test that spares most requests any lookup.
    @inline(__always)
    func mayBeHot(_ argument: UnsafeRawBufferPointer) -> Bool {
        guard let first = argument.first else { return emptyKeyIsHot }
        return firstBytes.contains(first)
    }

    func isHot(_ key: UnsafeRawBufferPointer) -> Bool {
        guard mayBeHot(key) else { return false }
        guard !key.isEmpty else { return true }
        if keyLengths.contains(key.count), keys.contains(Array(key)) { return true }
        for pattern in patterns where pattern.withUnsafeBytes({ globMatches($0, key) }) { return true }
        return false
    }

    /// "keys: a, b; patterns: user:*" for the operator.
    var summary: String {
        let k = keys.map { String(decoding: $0, as: UTF8.self) }.sorted().joined(separator: ", ")
        let p = patterns.map { String(decoding: $0, as: UTF8.self) }.joined(separator: ", ")
        return "keys: \(k.isEmpty ? "(none)" : k); patterns: \(p.isEmpty ? "(none)" : p)"
    }
}
