import CLZ4
import NIOCore

/// Raw LZ4 blocks through liblz4: what v4 frame bodies (after a length prefix) and compressed v5
/// segments carry. Decompression is bounded by the caller's limit and reports corrupt input as a
/// violation; liblz4's `LZ4_decompress_safe` never reads or writes outside the buffers it is given.
public enum CQLLZ4 {
    /// Compresses `input`'s readable bytes into one raw block appended to `output`.
    public static func compressBlock(_ input: ByteBuffer, into output: inout ByteBuffer) {
        let bound = Int(LZ4_compressBound(Int32(input.readableBytes)))
        input.withUnsafeReadableBytes { source in
            _ = output.writeWithUnsafeMutableBytes(minimumWritableBytes: max(bound, 1)) { target in
                guard source.count > 0 else { return 0 }
                let written = LZ4_compress_default(
                    source.baseAddress!.assumingMemoryBound(to: CChar.self),
                    target.baseAddress!.assumingMemoryBound(to: CChar.self),
                    Int32(source.count), Int32(target.count))
                precondition(written > 0, "LZ4_compress_default failed with a bound-sized buffer")
                return Int(written)
            }
        }
    }

    /// Decompresses the raw block `input` into exactly `uncompressedLength` bytes appended to
    /// `output`. Corrupt input, or a block that does not decode to exactly that length, throws.
    public static func decompressBlock(_ input: ByteBuffer, uncompressedLength: Int,
                                       into output: inout ByteBuffer) throws(CQLProtocolViolation) {
        guard uncompressedLength > 0 else {
            if input.readableBytes == 0 || uncompressedLength == 0 { return }
            throw CQLProtocolViolation(.compression, "LZ4: invalid uncompressed length \(uncompressedLength)")
        }
        let result = input.withUnsafeReadableBytes { source -> Int32 in
            var produced: Int32 = -1
            output.writeWithUnsafeMutableBytes(minimumWritableBytes: uncompressedLength) { target in
                guard let sourceBase = source.baseAddress else { return 0 }
                produced = LZ4_decompress_safe(
                    sourceBase.assumingMemoryBound(to: CChar.self),
                    target.baseAddress!.assumingMemoryBound(to: CChar.self),
                    Int32(source.count), Int32(uncompressedLength))
                return produced == Int32(uncompressedLength) ? Int(produced) : 0
            }
            return produced
        }
        guard result == Int32(uncompressedLength) else {
            throw CQLProtocolViolation(
                .compression, result < 0 ? "LZ4: corrupt compressed data"
                    : "LZ4: block decompressed to \(result) bytes, \(uncompressedLength) announced")
        }
    }
}
