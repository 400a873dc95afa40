import CSnappy
import NIOCore

/// Raw Snappy blocks through libsnappy's C API: what a v4 frame body compressed with "snappy" is.
/// The uncompressed length the block announces is checked against the caller's limit before any
/// memory is reserved, and the block is validated while it is decoded.
public enum CQLSnappy {
    public static func compress(_ input: ByteBuffer, into output: inout ByteBuffer) {
        let bound = snappy_max_compressed_length(input.readableBytes)
        input.withUnsafeReadableBytes { source in
            _ = output.writeWithUnsafeMutableBytes(minimumWritableBytes: max(bound, 1)) { target in
                var length = target.count
                let status = withCChars(source) {
                    snappy_compress($0, source.count, target.baseAddress!.assumingMemoryBound(to: CChar.self), &length)
                }
                precondition(status == SNAPPY_OK, "snappy_compress failed with a bound-sized buffer")
                return length
            }
        }
    }

    /// Decompresses `input` and appends the result to `output`; throws when the block is corrupt or
    /// announces more than `maxBytes`.
    public static func decompress(_ input: ByteBuffer, maxBytes: Int,
                                  into output: inout ByteBuffer) throws(CQLProtocolViolation) {
        var failure: CQLProtocolViolation?
        input.withUnsafeReadableBytes { source in withCChars(source) { base in
            var length = 0
            guard snappy_uncompressed_length(base, source.count, &length) == SNAPPY_OK else {
                failure = CQLProtocolViolation(.compression, "Snappy: corrupt compressed data")
                return
            }
            guard length <= maxBytes else {
                failure = CQLProtocolViolation(
                    .oversize, "Snappy: body decompresses to \(length) bytes, over the \(maxBytes)-byte limit")
                return
            }
            guard length > 0 else { return }
            output.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { target in
                var produced = length
                let status = snappy_uncompress(base, source.count,
                                               target.baseAddress!.assumingMemoryBound(to: CChar.self), &produced)
                guard status == SNAPPY_OK, produced == length else {
                    failure = CQLProtocolViolation(.compression, "Snappy: corrupt compressed data")
                    return 0
                }
                return produced
            }
        } }
        if let failure { throw failure }
    }

    /// `bytes` as the C API's `const char *` (a valid pointer even when empty).
    private static func withCChars<R>(_ bytes: UnsafeRawBufferPointer, _ body: (UnsafePointer<CChar>) -> R) -> R {
        if let base = bytes.baseAddress { return body(base.assumingMemoryBound(to: CChar.self)) }
        var empty: CChar = 0
        return withUnsafePointer(to: &empty) { body($0) }
    }
}
