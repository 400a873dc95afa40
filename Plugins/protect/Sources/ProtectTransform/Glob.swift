/// (The same matcher as Plugins/redirect/Glob.swift: this package builds on its own.)
/// Redis-style glob matching (as KEYS and SCAN MATCH): `*`, `?`, `[abc]`, `[^a]`, `[a-z]`, `\x`.
/// Binary-safe; iterative with backtracking on the last `*`, so it never recurses.
func globMatches(_ pattern: UnsafeRawBufferPointer, _ text: UnsafeRawBufferPointer) -> Bool {
    var p = 0, t = 0
    var starP = -1, starT = 0
    while t < text.count {
        if p < pattern.count {
            let c = pattern[p]
            if c == UInt8(ascii: "*") {
                starP = p
                starT = t
                p += 1
                continue
            }
            if c == UInt8(ascii: "?") {
                p += 1
                t += 1
                continue
            }
            if c == UInt8(ascii: "[") {
                let (matched, next) = matchClass(pattern, p, text[t])
                if matched {
                    p = next
                    t += 1
                    continue
                }
            } else {
                var literal = c
                var next = p + 1
                if c == UInt8(ascii: "\\"), p + 1 < pattern.count {
                    literal = pattern[p + 1]
                    next = p + 2
                }
                if literal == text[t] {
                    p = next
                    t += 1
                    continue
                }
            }
        }
        guard starP >= 0 else { return false }
        p = starP + 1
        starT += 1
        t = starT
    }
    while p < pattern.count, pattern[p] == UInt8(ascii: "*") { p += 1 }
    return p == pattern.count
}

/// Matches the class `[...]` starting at pattern[start] against one byte, exactly as Redis's
/// stringmatchlen does: `]` right after `[` or `[^` closes an empty class, `a-]` is a range ending at
/// `]`, and an unterminated class runs to the end of the pattern. Returns whether the byte matched
/// and the index after the class.
private func matchClass(_ pattern: UnsafeRawBufferPointer, _ start: Int, _ byte: UInt8) -> (Bool, Int) {
    var i = start + 1
    let negate = i < pattern.count && pattern[i] == UInt8(ascii: "^")
    if negate { i += 1 }
    var matched = false
    while i < pattern.count {
        let c = pattern[i]
        if c == UInt8(ascii: "\\"), pattern.count - i >= 2 {
            i += 1
            if pattern[i] == byte { matched = true }
        } else if c == UInt8(ascii: "]") {
            return (matched != negate, i + 1)
        } else if pattern.count - i >= 3, pattern[i + 1] == UInt8(ascii: "-") {
            var lo = c, hi = pattern[i + 2]
            if lo > hi { swap(&lo, &hi) }
            if byte >= lo && byte <= hi { matched = true }
            i += 2
        } else if c == byte {
            matched = true
        }
        i += 1
    }
    return (matched != negate, pattern.count)
}
