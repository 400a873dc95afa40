/*
 * reply_rewrite.h — re-encodes one Redis reply value by value (RESP2 or RESP3, from the host's
 * reply cursor) while taking a prefix off the bulk strings that are keys: the keys KEYS and SCAN
 * list, the key element of BLPOP/BZPOPMIN/LMPOP/ZMPOP replies and the stream names of XREAD.
 * Which strings are keys is decided by the reply's shape (rr_shape) and the value's place in it.
 * Include after plugin_util.h. THREAD: instance's.
 */
#ifndef KEY_PREFIX_REPLY_REWRITE_H
#define KEY_PREFIX_REPLY_REWRITE_H

#include "plugin_util.h"

/* Where the keys are in a reply. */
enum rr_shape {
  RR_NONE = 0,
  RR_LIST = 1,       /* KEYS: every element of the top array */
  RR_SCAN = 2,       /* SCAN: [cursor, [keys…]] */
  RR_FIRST = 3,      /* BLPOP, BRPOP, BZPOPMIN/MAX, LMPOP, BLMPOP, ZMPOP, BZMPOP: element 0 of the top array */
  RR_STREAMS = 4,    /* XREAD, XREADGROUP: RESP2 [[key, entries]…], RESP3 {key: entries} */
};

/* A growing output buffer (malloc'd). */
typedef struct rr_buffer {
  uint8_t *bytes;
  size_t len, capacity;
  int failed;
} rr_buffer;

static inline void rr_append(rr_buffer *b, const void *p, size_t n) {
  if (b->failed) return;
  if (b->len + n > b->capacity) {
    size_t capacity = b->capacity ? b->capacity : 256;
    while (capacity < b->len + n) capacity *= 2;
    uint8_t *bigger = realloc(b->bytes, capacity);
    if (bigger == NULL) {
      b->failed = 1;
      return;
    }
    b->bytes = bigger;
    b->capacity = capacity;
  }
  memcpy(b->bytes + b->len, p, n);
  b->len += n;
}

/* Appends "<marker><number>\r\n". */
static inline void rr_header(rr_buffer *b, char marker, long long number) {
  char text[32];
  int n = snprintf(text, sizeof text, "%c%lld\r\n", marker, number);
  rr_append(b, text, (size_t)n);
}

/* Appends "<marker><len>\r\n<bytes>\r\n" (bulk, blob error, verbatim). */
static inline void rr_blob(rr_buffer *b, char marker, const uint8_t *p, size_t len) {
  rr_header(b, marker, (long long)len);
  rr_append(b, p, len);
  rr_append(b, "\r\n", 2);
}

/* Appends "<marker><text>\r\n" (simple string, error, double, big number). */
static inline void rr_line(rr_buffer *b, char marker, const uint8_t *p, size_t len) {
  rr_append(b, &marker, 1);
  rr_append(b, p, len);
  rr_append(b, "\r\n", 2);
}

/* Whether the value at path (indices from the top; depth 0 is the reply itself) is a key. */
static inline int rr_is_key(enum rr_shape shape, int top_is_map, const size_t *path, int depth) {
  switch (shape) {
  case RR_LIST: return depth == 1;
  case RR_SCAN: return depth == 2 && path[1] == 1;
  case RR_FIRST: return depth == 1 && path[1] == 0;
  case RR_STREAMS: return top_is_map ? depth == 1 && path[1] % 2 == 0 : depth == 2 && path[2] == 0;
  default: return 0;
  }
}

#define RR_MAX_DEPTH 32

/*
 * Rewrites response index of responses in place, taking prefix off the keys of a reply of the
 * given shape. Replies that are not aggregates (errors, nil on a timeout) stay untouched.
 * resp3: the client's protocol is RESP3 (a nested nil is written "_" rather than "$-1").
 * Returns SLUICE_OK, or an error status (the caller fails the reply then).
 */
static inline int32_t rr_strip_keys(sluice_batch *responses, size_t index, enum rr_shape shape, const uint8_t *prefix,
                                    size_t prefix_len, int resp3) {
  sluice_redis_cursor cursor;
  sluice_redis_value value;
  if (host->redis_cursor_init(responses, index, &cursor) != SLUICE_OK) return SLUICE_ERROR;
  if (host->redis_cursor_next(&cursor, &value) != SLUICE_OK) return SLUICE_OK; /* empty slot */
  if (value.type != SLUICE_REDIS_ARRAY && value.type != SLUICE_REDIS_MAP && value.type != SLUICE_REDIS_SET) {
    return SLUICE_OK;
  }
  int top_is_map = value.type == SLUICE_REDIS_MAP;
  struct { int64_t remaining; size_t next; int attribute; } stack[RR_MAX_DEPTH];
  size_t path[RR_MAX_DEPTH + 1] = {0};
  int depth = 0, in_attribute = 0, changed = 0;
  rr_buffer out = {0};
  int32_t status = SLUICE_OK;
  for (;;) {
    int is_attribute = value.type == SLUICE_REDIS_ATTRIBUTE;
    if (depth > 0) {
      path[depth] = stack[depth - 1].next;
      if (!is_attribute) {
        stack[depth - 1].next++;
        stack[depth - 1].remaining--;
      }
    }
    switch (value.type) {
    case SLUICE_REDIS_SIMPLE_STRING: rr_line(&out, '+', value.bytes.ptr, value.bytes.len); break;
    case SLUICE_REDIS_ERROR: rr_line(&out, '-', value.bytes.ptr, value.bytes.len); break;
    case SLUICE_REDIS_INTEGER: rr_header(&out, ':', (long long)value.integer); break;
    case SLUICE_REDIS_BULK_STRING: {
      const uint8_t *p = value.bytes.ptr;
      size_t len = value.bytes.len;
      if (!in_attribute && rr_is_key(shape, top_is_map, path, depth) && len >= prefix_len &&
          memcmp(p, prefix, prefix_len) == 0) {
        p += prefix_len;
        len -= prefix_len;
        changed = 1;
      }
      rr_blob(&out, '$', p, len);
      break;
    }
    case SLUICE_REDIS_NULL: rr_append(&out, resp3 ? "_\r\n" : "$-1\r\n", resp3 ? 3 : 5); break;
    case SLUICE_REDIS_BOOLEAN: rr_append(&out, value.integer ? "#t\r\n" : "#f\r\n", 4); break;
    case SLUICE_REDIS_DOUBLE: rr_line(&out, ',', value.bytes.ptr, value.bytes.len); break;
    case SLUICE_REDIS_BIG_NUMBER: rr_line(&out, '(', value.bytes.ptr, value.bytes.len); break;
    case SLUICE_REDIS_BLOB_ERROR: rr_blob(&out, '!', value.bytes.ptr, value.bytes.len); break;
    case SLUICE_REDIS_VERBATIM: rr_blob(&out, '=', value.bytes.ptr, value.bytes.len); break;
    case SLUICE_REDIS_ARRAY: rr_header(&out, '*', (long long)value.count); break;
    case SLUICE_REDIS_SET: rr_header(&out, '~', (long long)value.count); break;
    case SLUICE_REDIS_PUSH: rr_header(&out, '>', (long long)value.count); break;
    case SLUICE_REDIS_MAP: rr_header(&out, '%', (long long)value.count); break;
    case SLUICE_REDIS_ATTRIBUTE: rr_header(&out, '|', (long long)value.count); break;
    default: status = SLUICE_ERROR_MALFORMED; break;
    }
    if (status != SLUICE_OK) break;
    int aggregate = value.type == SLUICE_REDIS_ARRAY || value.type == SLUICE_REDIS_SET ||
                    value.type == SLUICE_REDIS_PUSH || value.type == SLUICE_REDIS_MAP || is_attribute;
    int64_t elements = value.type == SLUICE_REDIS_MAP || is_attribute ? 2 * value.count : value.count;
    if (aggregate && elements > 0) {
      if (depth == RR_MAX_DEPTH) {
        status = SLUICE_ERROR_MALFORMED;
        break;
      }
      stack[depth].remaining = elements;
      stack[depth].next = 0;
      stack[depth].attribute = is_attribute;
      in_attribute += is_attribute;
      depth++;
    }
    while (depth > 0 && stack[depth - 1].remaining == 0) {
      depth--;
      in_attribute -= stack[depth].attribute;
    }
    if (depth == 0 && !(aggregate && elements > 0) && !is_attribute) break; /* the reply is complete */
    int32_t next = host->redis_cursor_next(&cursor, &value);
    if (next == SLUICE_END) break;
    if (next != SLUICE_OK) {
      status = next;
      break;
    }
  }
  if (status == SLUICE_OK && out.failed) status = SLUICE_ERROR;
  if (status == SLUICE_OK && changed) status = host->batch_put_bytes(responses, index, out.bytes, out.len);
  free(out.bytes);
  return status;
}

#endif /* KEY_PREFIX_REPLY_REWRITE_H */
