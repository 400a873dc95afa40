/// A set of byte values (256 bits).
struct ByteSet {
    private var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    static var all: ByteSet {
        var set = ByteSet()
        set.words = (.max, .max, .max, .max)
        return set
    }

    @inline(__always)
    func contains(_ byte: UInt8) -> Bool {
        let bit = UInt64(1) << UInt64(byte & 63)
        switch byte >> 6 {
        case 0: return words.0 & bit != 0
        case 1: return words.1 & bit != 0
        case 2: return words.2 & bit != 0
        default: return words.3 & bit != 0
        }
    }

    mutating func insert(_ byte: UInt8) {
        let bit = UInt64(1) << UInt64(byte & 63)
        switch byte >> 6 {
        case 0: words.0 |= bit
        case 1: words.1 |= bit
        case 2: words.2 |= bit
        default: words.3 |= bit
        }
    }

    mutating func formUnion(_ other: ByteSet) {
        words = (words.0 | other.words.0, words.1 | other.words.1, words.2 | other.words.2, words.3 | other.words.3)
    }

    /// The bytes a non-empty text matching `pattern` (see `globMatches`) can start with: the first
    /// literal (or escaped) byte, every byte when the pattern starts with `*`, `?` or `[`, none for
    /// an empty pattern.
    static func firstBytes(ofGlob pattern: [UInt8]) -> ByteSet {
        guard let c = pattern.first else { return ByteSet() }
        var set = ByteSet()
        switch c {
        case UInt8(ascii: "*"), UInt8(ascii: "?"), UInt8(ascii: "["):
            return .all
        case UInt8(ascii: "\\") where pattern.count > 1:
            set.insert(pattern[1])
        default:
            set.insert(c)
        }
        return set
    }
}
