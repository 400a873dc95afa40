// zlib's crc32, for the payload checksum of CQL v5 segments (CQLChecksums), and a carry-less
// multiply version of the same CRC-32 for x86-64 CPUs that have PCLMULQDQ.
#include <zlib.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

/// Whether the CPU has PCLMULQDQ and SSE4.1 (what sluice_crc32_fold needs).
static inline int sluice_cpu_has_pclmul(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c & (1u << 1)) != 0 && (c & (1u << 19)) != 0;
}

/// zlib's crc32(crc, buf, len) for len a multiple of 16, at least 16: the running remainder is
/// kept as 128 bits and folded forward 16 bytes at a time with two carry-less multiplies by
/// x^(128+32) and x^(128-32) modulo the CRC-32 polynomial (bit-reflected), then reduced to 32 bits
/// (128 -> 64 -> 32 bits, then Barrett reduction with the polynomial and its quotient x^64 / P).
__attribute__((target("pclmul,sse4.1")))
static inline uint32_t sluice_crc32_fold(uint32_t crc, const unsigned char *buf, size_t len) {
    const __m128i fold = _mm_set_epi64x(0x00ccaa009eLL, 0x01751997d0LL);     // hi: x^(128-32), lo: x^(128+32)
    const __m128i fold32 = _mm_set_epi64x(0, 0x0163cd6124LL);                 // x^64 mod P
    const __m128i barrett = _mm_set_epi64x(0x01f7011641LL, 0x01db710641LL);   // hi: x^64 / P, lo: P
    const __m128i mask32 = _mm_set_epi32(0, 0, 0, -1);
    __m128i x = _mm_xor_si128(_mm_loadu_si128((const __m128i *)buf), _mm_cvtsi32_si128((int)~crc));
    for (size_t at = 16; at < len; at += 16) {
        __m128i lo = _mm_clmulepi64_si128(x, fold, 0x00);
        __m128i hi = _mm_clmulepi64_si128(x, fold, 0x11);
        x = _mm_xor_si128(_mm_xor_si128(lo, hi), _mm_loadu_si128((const __m128i *)(buf + at)));
    }
    // 128 -> 64 bits.
    x = _mm_xor_si128(_mm_clmulepi64_si128(x, fold, 0x10), _mm_srli_si128(x, 8));
    // 64 -> 32 bits (kept in the high part).
    __m128i low = _mm_and_si128(x, mask32);
    x = _mm_xor_si128(_mm_srli_si128(x, 4), _mm_clmulepi64_si128(low, fold32, 0x00));
    // Barrett reduction.
    __m128i t = _mm_and_si128(x, mask32);
    t = _mm_clmulepi64_si128(t, barrett, 0x10);
    t = _mm_and_si128(t, mask32);
    t = _mm_clmulepi64_si128(t, barrett, 0x00);
    x = _mm_xor_si128(x, t);
    return ~(uint32_t)_mm_extract_epi32(x, 1);
}
#endif
