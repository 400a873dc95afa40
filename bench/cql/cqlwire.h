/*
 * CQL native protocol wire helpers shared by the benchmark's responder and load generator:
 * a growable byte buffer, big-endian readers and writers, the v3+ frame header, and v5 segment
 * framing (uncompressed segments only: a 3-byte little-endian header holding the payload length
 * (17 bits) and the self-contained flag (bit 17), a CRC24 of that header, the payload, a CRC32 of
 * the payload). Written for the benchmark from the protocol specification; independent of
 * Sluice's own codec on purpose, so a bug there cannot hide behind the same bug here.
 */
#ifndef CQLWIRE_H
#define CQLWIRE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    CQL_HEADER_BYTES = 9,
    CQL_OP_ERROR = 0x00, CQL_OP_STARTUP = 0x01, CQL_OP_READY = 0x02, CQL_OP_AUTHENTICATE = 0x03,
    CQL_OP_OPTIONS = 0x05, CQL_OP_SUPPORTED = 0x06, CQL_OP_QUERY = 0x07, CQL_OP_RESULT = 0x08,
    CQL_OP_PREPARE = 0x09, CQL_OP_EXECUTE = 0x0A, CQL_OP_REGISTER = 0x0B, CQL_OP_EVENT = 0x0C,
    CQL_OP_BATCH = 0x0D, CQL_OP_AUTH_CHALLENGE = 0x0E, CQL_OP_AUTH_RESPONSE = 0x0F,
    CQL_OP_AUTH_SUCCESS = 0x10,
    CQL_ERR_PROTOCOL = 0x000A,
    SEG_HEADER_BYTES = 6,          /* 3 bytes header + 3 bytes CRC24 */
    SEG_TRAILER_BYTES = 4,         /* CRC32 of the payload */
    SEG_MAX_PAYLOAD = 131071,      /* 2^17 - 1 */
};

/* ---- growable buffer: bytes [off, len) are unread ---- */
typedef struct { uint8_t *p; size_t off, len, cap; } buf_t;

static inline void buf_reserve(buf_t *b, size_t extra) {
    if (b->len + extra <= b->cap) return;
    if (b->off > 0) {                         /* slide unread bytes to the front first */
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off; b->off = 0;
        if (b->len + extra <= b->cap) return;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) { perror("realloc"); exit(1); }
    b->p = p; b->cap = cap;
}
static inline size_t buf_unread(const buf_t *b) { return b->len - b->off; }
static inline uint8_t *buf_head(const buf_t *b) { return b->p + b->off; }
static inline void buf_consume(buf_t *b, size_t n) {
    b->off += n;
    if (b->off == b->len) b->off = b->len = 0;
}
static inline void buf_put(buf_t *b, const void *src, size_t n) {
    buf_reserve(b, n); memcpy(b->p + b->len, src, n); b->len += n;
}
static inline void buf_u8(buf_t *b, uint8_t v) { buf_put(b, &v, 1); }
static inline void buf_u16(buf_t *b, uint16_t v) { uint8_t x[2] = { v >> 8, v }; buf_put(b, x, 2); }
static inline void buf_u32(buf_t *b, uint32_t v) {
    uint8_t x[4] = { v >> 24, v >> 16, v >> 8, v }; buf_put(b, x, 4);
}
static inline void buf_string(buf_t *b, const char *s) { /* [string]: u16 length + bytes */
    size_t n = strlen(s); buf_u16(b, (uint16_t)n); buf_put(b, s, n);
}
static inline void buf_long_string(buf_t *b, const char *s) { /* [long string]: i32 length + bytes */
    size_t n = strlen(s); buf_u32(b, (uint32_t)n); buf_put(b, s, n);
}
static inline uint16_t rd_u16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Appends a frame header; the body length is patched later with frame_end(). Returns its offset. */
static inline size_t frame_begin(buf_t *b, uint8_t version_byte, uint16_t stream, uint8_t opcode) {
    size_t at = b->len;
    uint8_t h[CQL_HEADER_BYTES] = { version_byte, 0, stream >> 8, stream, opcode, 0, 0, 0, 0 };
    buf_put(b, h, sizeof h);
    return at;
}
static inline void frame_end(buf_t *b, size_t at) {
    uint32_t n = (uint32_t)(b->len - at - CQL_HEADER_BYTES);
    uint8_t *p = b->p + at + 5;
    p[0] = n >> 24; p[1] = n >> 16; p[2] = n >> 8; p[3] = n;
}

/* ---- checksums of v5 segments ---- */
/* CRC24 over the header's bytes, least significant first: polynomial 0x1974F0B, initial 0x875060. */
static inline uint32_t crc24(uint32_t data, int nbytes) {
    uint32_t crc = 0x875060;
    for (int i = 0; i < nbytes; i++) {
        crc ^= (data & 0xff) << 16;
        data >>= 8;
        for (int bit = 0; bit < 8; bit++) {
            crc <<= 1;
            if (crc & 0x1000000) crc ^= 0x1974F0B;
        }
    }
    return crc & 0xffffff;
}

/* CRC32 (the reflected 0xEDB88320 polynomial, as zlib's), slice-by-4 tables, built on first use.
 * The protocol seeds it by first running the four bytes FA 2D 55 CA through it. */
static uint32_t crc32_table[4][256];
static uint32_t crc32_seed;
static inline uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n) {
    crc = ~crc;
    while (n >= 4) {
        crc ^= (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        crc = crc32_table[3][crc & 0xff] ^ crc32_table[2][(crc >> 8) & 0xff] ^
              crc32_table[1][(crc >> 16) & 0xff] ^ crc32_table[0][crc >> 24];
        p += 4; n -= 4;
    }
    while (n--) crc = crc32_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}
static inline void crc32_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc32_table[0][i] = c;
    }
    for (int t = 1; t < 4; t++)
        for (int i = 0; i < 256; i++)
            crc32_table[t][i] = crc32_table[0][crc32_table[t - 1][i] & 0xff] ^ (crc32_table[t - 1][i] >> 8);
    static const uint8_t seed[4] = { 0xFA, 0x2D, 0x55, 0xCA };
    crc32_seed = crc32_update(0, seed, 4);
}
static inline uint32_t segment_crc32(const uint8_t *p, size_t n) { return crc32_update(crc32_seed, p, n); }

/* Appends one uncompressed segment holding payload[0, n), n <= SEG_MAX_PAYLOAD. */
static inline void segment_put(buf_t *out, const uint8_t *payload, size_t n, int self_contained) {
    uint32_t h = (uint32_t)n | (self_contained ? 1u << 17 : 0);
    uint32_t c = crc24(h, 3);
    uint8_t hdr[SEG_HEADER_BYTES] = { h, h >> 8, h >> 16, c, c >> 8, c >> 16 };
    buf_put(out, hdr, sizeof hdr);
    buf_put(out, payload, n);
    uint32_t k = segment_crc32(payload, n);
    uint8_t t[SEG_TRAILER_BYTES] = { k, k >> 8, k >> 16, k >> 24 };
    buf_put(out, t, sizeof t);
}

/* Wraps whole frames (frames[0, n), back to back) in segments: as many whole frames per
 * self-contained segment as fit; a frame larger than a segment goes alone into a run of
 * non-self-contained ones. */
static inline void segments_wrap(buf_t *out, const uint8_t *frames, size_t n) {
    size_t start = 0, at = 0;
    while (at < n) {
        size_t flen = CQL_HEADER_BYTES + rd_u32(frames + at + 5);
        if (at + flen - start > SEG_MAX_PAYLOAD) {
            if (at > start) segment_put(out, frames + start, at - start, 1);
            start = at;
            if (flen > SEG_MAX_PAYLOAD) {
                for (size_t o = 0; o < flen; o += SEG_MAX_PAYLOAD) {
                    size_t k = flen - o < SEG_MAX_PAYLOAD ? flen - o : SEG_MAX_PAYLOAD;
                    segment_put(out, frames + at + o, k, 0);
                }
                at += flen; start = at;
                continue;
            }
        }
        at += flen;
    }
    if (at > start) segment_put(out, frames + start, at - start, 1);
}

/* Takes the complete segments at the head of `in` and appends their payloads to `frames`.
 * Returns 0, or -1 with a message in err on a checksum mismatch. */
static inline int segments_unwrap(buf_t *in, buf_t *frames, char *err, size_t errlen) {
    while (buf_unread(in) >= SEG_HEADER_BYTES) {
        const uint8_t *p = buf_head(in);
        uint32_t h = p[0] | p[1] << 8 | (uint32_t)p[2] << 16;
        uint32_t c = p[3] | p[4] << 8 | (uint32_t)p[5] << 16;
        if (crc24(h, 3) != c) { snprintf(err, errlen, "segment header CRC24 mismatch"); return -1; }
        size_t n = h & SEG_MAX_PAYLOAD;
        if (buf_unread(in) < SEG_HEADER_BYTES + n + SEG_TRAILER_BYTES) break;
        const uint8_t *t = p + SEG_HEADER_BYTES + n;
        uint32_t k = t[0] | t[1] << 8 | (uint32_t)t[2] << 16 | (uint32_t)t[3] << 24;
        if (segment_crc32(p + SEG_HEADER_BYTES, n) != k) {
            snprintf(err, errlen, "segment payload CRC32 mismatch"); return -1;
        }
        buf_put(frames, p + SEG_HEADER_BYTES, n);
        buf_consume(in, SEG_HEADER_BYTES + n + SEG_TRAILER_BYTES);
    }
    return 0;
}

#endif
