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

    private static let crc32Table: [UInt32] = (0..<256).map { index -> UInt32 in
        var crc = UInt32(index)
        for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        return crc
    }

    /// The running CRC-32 register after the four seed bytes FA 2D 55 CA.
    private static let crc32Seeded: UInt32 = update(0xFFFF_FFFF, [0xFA, 0x2D, 0x55, 0xCA])

    private static func update<Bytes: Sequence>(_ register: UInt32, _ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
        var crc = register
        crc32Table.withUnsafeBufferPointer { table in
            for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        }
        return crc
    }

    /// The segment payload CRC32 of `payload`.
    public static func crc32(_ payload: UnsafeRawBufferPointer) -> UInt32 {
        update(crc32Seeded, payload) ^ 0xFFFF_FFFF
    }
}
