import CZlib

/// The two checksums of v5 segments (native protocol v5, section 2.2).
///
/// CRC24 covers the segment header (its 3 or 5 bytes taken as a little-endian integer, least
/// significant byte first): initial value 0x875060, polynomial 0x1974F0B, not reflected, no final
/// xor. CRC32 covers the payload: the ordinary CRC-32 (reflected, polynomial 0xEDB88320, as zlib
/// computes it) of the four bytes FA 2D 55 CA followed by the payload.
public enum CQLChecksums {
    private static let crc24Initial: UInt32 = 0x875060
    private static let crc24Polynomial: UInt32 = 0x1974F0B

    /// The CRC24 of the `byteCount` low bytes of `header`, least significant first.
    public static func crc24(_ header: UInt64, byteCount: Int) -> UInt32 {
        var crc = crc24Initial
        var value = header
        for _ in 0..<byteCount {
            crc ^= UInt32(value & 0xFF) << 16
            value >>= 8
            for _ in 0..<8 {
                crc <<= 1
                if crc & 0x100_0000 != 0 { crc ^= crc24Polynomial }
            }
        }
        return crc & 0xFF_FFFF
    }

    /// zlib's CRC-32 of the four seed bytes FA 2D 55 CA, continued over each payload.
    private static let crc32Seeded: UInt = [UInt8]([0xFA, 0x2D, 0x55, 0xCA]).withUnsafeBufferPointer {
        CZlib.crc32(0, $0.baseAddress, 4)
    }

    /// The segment payload CRC32 of `payload` (zlib's crc32 reads several bytes per step, where a
    /// table lookup per byte cost v5 framing about 4 % of its instructions per request). On x86-64
    /// CPUs with PCLMULQDQ the payload's whole 16-byte blocks are folded with carry-less multiplies
    /// (`sluice_crc32_fold` in CZlib's shim.h, about ten instructions per 16 bytes where zlib needs
    /// about 50) and zlib takes the rest; the result is the same CRC (`CQLSegmentTests` compare
    /// both at every length).
    public static func crc32(_ payload: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = payload.baseAddress else { return UInt32(truncatingIfNeeded: crc32Seeded) }
        var crc = crc32Seeded
        var done = 0
        #if arch(x86_64)
        if payload.count >= foldFrom, hasPCLMUL {
            done = payload.count & ~15
            crc = UInt(sluice_crc32_fold(UInt32(truncatingIfNeeded: crc), base.assumingMemoryBound(to: UInt8.self), done))
            if done == payload.count { return UInt32(truncatingIfNeeded: crc) }
        }
        #endif
        return UInt32(truncatingIfNeeded: CZlib.crc32(crc, (base + done).assumingMemoryBound(to: Bytef.self),
                                                      uInt(payload.count - done)))
    }

    /// zlib's CRC-32 alone, for comparison in tests.
    static func crc32ByZlib(_ payload: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = payload.baseAddress else { return UInt32(truncatingIfNeeded: crc32Seeded) }
        return UInt32(truncatingIfNeeded: CZlib.crc32(crc32Seeded, base.assumingMemoryBound(to: Bytef.self), uInt(payload.count)))
    }

    /// Payloads from this size on are folded (below it zlib's few steps cost less than the fold's
    /// final reduction).
    static let foldFrom = 32

    #if arch(x86_64)
    static let hasPCLMUL = sluice_cpu_has_pclmul() != 0
    #endif
}
