/*
 * plugin_util.h — small helpers shared by the plain-C catalogue transforms (debug-returner,
 * null-sink, query-counter, throttle, query-type-filter). Header-only, C99, nothing but the ABI
 * header: each plugin stays one translation unit built by its own Makefile with a C compiler.
 *
 * The including file defines the plugin's host table pointer before including this header:
 *     static const sluice_host_api *host;   // set in sluice_plugin_init
 * Everything here runs at config time (main thread) unless its comment says otherwise.
 */
#ifndef SLUICE_PLUGIN_UTIL_H
#define SLUICE_PLUGIN_UTIL_H

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_plugin.h"

/* Reports a config error at node (file:line:column is added by the host), printf-style. */
static inline void pu_fail(sluice_config_env *env, const sluice_config_node *node, const char *format, ...) {
  char text[512];
  va_list args;
  va_start(args, format);
  int n = vsnprintf(text, sizeof text, format, args);
  va_end(args);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof text) n = (int)sizeof text - 1;
  host->config_error(env, node, text, (size_t)n);
}

/* Whether a view holds exactly the NUL-terminated text (case-sensitive). */
static inline int pu_view_is(sluice_host_view v, const char *text) {
  size_t n = strlen(text);
  return v.len == n && memcmp(v.ptr, text, n) == 0;
}

/* Whether bytes equal a lowercase word ignoring ASCII case (command names). THREAD: any. */
static inline int pu_equals_ignoring_case(const uint8_t *bytes, size_t len, const char *lowercase) {
  size_t n = strlen(lowercase);
  if (len != n) return 0;
  for (size_t i = 0; i < n; i++) {
    if (tolower(bytes[i]) != lowercase[i]) return 0;
  }
  return 1;
}

/*
 * Checks that node is a map (or empty: NULL / nothing written) whose keys are all in allowed
 * (a NULL-terminated list). Reports the first unknown key with the list of known ones.
 * Returns 1 when fine.
 */
static inline int pu_check_keys(sluice_config_env *env, const sluice_config_node *node, const char *const *allowed) {
  int32_t kind = host->node_kind(node);
  if (kind == SLUICE_NODE_NULL) return 1;
  if (kind != SLUICE_NODE_MAP) {
    pu_fail(env, node, "expected a map of options");
    return 0;
  }
  for (size_t i = 0; i < host->node_count(node); i++) {
    const sluice_config_node *key = NULL, *value = NULL;
    sluice_host_view text = {0};
    host->node_at(node, i, &key, &value);
    host->node_scalar(key, &text);
    int known = 0;
    for (const char *const *a = allowed; *a != NULL && !known; a++) known = pu_view_is(text, *a);
    if (!known) {
      char list[256] = "";
      size_t used = 0;
      for (const char *const *a = allowed; *a != NULL; a++) {
        int n = snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "", *a);
        if (n < 0 || (size_t)n >= sizeof list - used) break;
        used += (size_t)n;
      }
      pu_fail(env, key, "unknown option '%.*s' (expected one of: %s)", (int)text.len, (const char *)text.ptr, list);
      return 0;
    }
  }
  return 1;
}

/* The value node of key in a map node, or NULL when absent (or node is not a map). */
static inline const sluice_config_node *pu_get(const sluice_config_node *node, const char *key) {
  const sluice_config_node *out = NULL;
  if (host->node_kind(node) != SLUICE_NODE_MAP) return NULL;
  if (host->node_map_get(node, key, strlen(key), &out) != SLUICE_OK) return NULL;
  return out;
}

/*
 * Reads an unsigned integer option key of map node into *out, from min to max; absent keeps
 * *out (the default). Returns 1 when fine, 0 after reporting.
 */
static inline int pu_read_u64(sluice_config_env *env, const sluice_config_node *node, const char *key,
                              uint64_t min, uint64_t max, uint64_t *out) {
  const sluice_config_node *value = pu_get(node, key);
  if (value == NULL) return 1;
  sluice_host_view text = {0};
  if (host->node_scalar(value, &text) != SLUICE_OK || text.len == 0 || text.len > 20) {
    pu_fail(env, value, "%s: expected an integer from %llu to %llu", key, (unsigned long long)min, (unsigned long long)max);
    return 0;
  }
  uint64_t n = 0;
  for (size_t i = 0; i < text.len; i++) {
    if (!isdigit(text.ptr[i]) || n > (UINT64_MAX - 9) / 10) {
      pu_fail(env, value, "%s: expected an integer from %llu to %llu, found '%.*s'", key, (unsigned long long)min,
              (unsigned long long)max, (int)text.len, (const char *)text.ptr);
      return 0;
    }
    n = n * 10 + (uint64_t)(text.ptr[i] - '0');
  }
  if (n < min || n > max) {
    pu_fail(env, value, "%s: expected an integer from %llu to %llu, found %llu", key, (unsigned long long)min,
            (unsigned long long)max, (unsigned long long)n);
    return 0;
  }
  *out = n;
  return 1;
}

/*
 * Reads an optional one-line text option into a malloc'd NUL-terminated string (*out stays NULL
 * when absent). Returns 1 when fine, 0 after reporting (or when out of memory).
 */
static inline int pu_read_line(sluice_config_env *env, const sluice_config_node *node, const char *key, char **out) {
  const sluice_config_node *value = pu_get(node, key);
  if (value == NULL) return 1;
  sluice_host_view text = {0};
  if (host->node_scalar(value, &text) != SLUICE_OK || memchr(text.ptr, '\n', text.len) || memchr(text.ptr, '\r', text.len)) {
    pu_fail(env, value, "%s: expected one line of text", key);
    return 0;
  }
  *out = malloc(text.len + 1);
  if (*out == NULL) return 0;
  memcpy(*out, text.ptr, text.len);
  (*out)[text.len] = '\0';
  return 1;
}

/* ---- fixed replies ---------------------------------------------------------------------------- */

/* A reply configured by the user: one Redis value of a simple type. */
typedef struct pu_reply {
  int32_t type;   /* SLUICE_REDIS_SIMPLE_STRING, _ERROR, _BULK_STRING, _INTEGER or _NULL */
  uint8_t *bytes; /* malloc'd (string types), may be NULL for an empty string */
  size_t len;
  int64_t integer;
} pu_reply;

static inline void pu_reply_clear(pu_reply *r) {
  free(r->bytes);
  memset(r, 0, sizeof *r);
}

/* Parses a decimal int64 (optional leading '-'). Returns 1 when the whole text is one. */
static inline int pu_parse_i64(const uint8_t *p, size_t len, int64_t *out) {
  if (len == 0 || len > 20) return 0;
  size_t i = 0;
  int negative = p[0] == '-';
  if (negative) i = 1;
  if (i == len) return 0;
  uint64_t n = 0;
  for (; i < len; i++) {
    if (!isdigit(p[i])) return 0;
    uint64_t digit = (uint64_t)(p[i] - '0');
    if (n > (UINT64_MAX - digit) / 10) return 0;
    n = n * 10 + digit;
  }
  if (negative ? n > (uint64_t)INT64_MAX + 1 : n > (uint64_t)INT64_MAX) return 0;
  *out = negative ? (int64_t)(0 - n) : (int64_t)n;
  return 1;
}

#define PU_REPLY_FORMS \
  "a reply as \"+TEXT\" (simple string), \"-ERR TEXT\" (error), \":N\" (integer), \"$TEXT\" (bulk string) or \"nil\"; " \
  "or a map with one of simple, error, bulk, integer, nil"

static inline int pu_set_reply_bytes(pu_reply *r, int32_t type, const uint8_t *p, size_t len) {
  r->type = type;
  r->len = len;
  r->bytes = NULL;
  if (len > 0) {
    r->bytes = malloc(len);
    if (r->bytes == NULL) return 0;
    memcpy(r->bytes, p, len);
  }
  return 1;
}

/*
 * Reads a reply written as a scalar shorthand ("+OK", "-ERR boom", ":42", "$text", "nil") or as a
 * map with one key ({ simple: OK }, { error: "ERR boom" }, { bulk: text }, { integer: 42 },
 * { nil: true }). Simple strings and errors must be one line; an error must not be empty.
 * Returns 1 when fine, 0 after reporting.
 */
static inline int pu_read_reply(sluice_config_env *env, const sluice_config_node *node, const char *what, pu_reply *out) {
  memset(out, 0, sizeof *out);
  sluice_host_view text = {0};
  int32_t type = 0;
  const uint8_t *p = NULL;
  size_t len = 0;
  const sluice_config_node *at = node;
  if (host->node_kind(node) == SLUICE_NODE_SCALAR) {
    host->node_scalar(node, &text);
    if (pu_view_is(text, "nil")) {
      out->type = SLUICE_REDIS_NULL;
      return 1;
    }
    if (text.len == 0 || strchr("+-:$", text.ptr[0]) == NULL) {
      pu_fail(env, node, "%s: expected " PU_REPLY_FORMS, what);
      return 0;
    }
    type = text.ptr[0] == '+' ? SLUICE_REDIS_SIMPLE_STRING
         : text.ptr[0] == '-' ? SLUICE_REDIS_ERROR
         : text.ptr[0] == ':' ? SLUICE_REDIS_INTEGER : SLUICE_REDIS_BULK_STRING;
    p = text.ptr + 1;
    len = text.len - 1;
  } else if (host->node_kind(node) == SLUICE_NODE_MAP && host->node_count(node) == 1) {
    const sluice_config_node *key = NULL, *value = NULL;
    sluice_host_view name = {0};
    host->node_at(node, 0, &key, &value);
    host->node_scalar(key, &name);
    at = value;
    if (pu_view_is(name, "nil")) {
      out->type = SLUICE_REDIS_NULL;
      return 1;
    }
    type = pu_view_is(name, "simple") ? SLUICE_REDIS_SIMPLE_STRING
         : pu_view_is(name, "error") ? SLUICE_REDIS_ERROR
         : pu_view_is(name, "integer") ? SLUICE_REDIS_INTEGER
         : pu_view_is(name, "bulk") ? SLUICE_REDIS_BULK_STRING : 0;
    if (type == 0) {
      pu_fail(env, key, "%s: unknown reply type '%.*s' (expected simple, error, bulk, integer or nil)", what,
              (int)name.len, (const char *)name.ptr);
      return 0;
    }
    if (host->node_kind(value) == SLUICE_NODE_NULL) {
      p = (const uint8_t *)"";
      len = 0;
    } else if (host->node_scalar(value, &text) != SLUICE_OK) {
      pu_fail(env, value, "%s: expected a scalar value", what);
      return 0;
    } else {
      p = text.ptr;
      len = text.len;
    }
  } else {
    pu_fail(env, node, "%s: expected " PU_REPLY_FORMS, what);
    return 0;
  }
  if ((type == SLUICE_REDIS_SIMPLE_STRING || type == SLUICE_REDIS_ERROR) &&
      (memchr(p, '\r', len) != NULL || memchr(p, '\n', len) != NULL)) {
    pu_fail(env, at, "%s: a simple string or error must be one line", what);
    return 0;
  }
  if (type == SLUICE_REDIS_ERROR && len == 0) {
    pu_fail(env, at, "%s: an error needs a message, e.g. \"-ERR something failed\"", what);
    return 0;
  }
  if (type == SLUICE_REDIS_INTEGER) {
    if (!pu_parse_i64(p, len, &out->integer)) {
      pu_fail(env, at, "%s: expected a 64-bit integer, found '%.*s'", what, (int)len, (const char *)p);
      return 0;
    }
    out->type = type;
    return 1;
  }
  if (!pu_set_reply_bytes(out, type, p, len)) {
    pu_fail(env, at, "%s: out of memory", what);
    return 0;
  }
  return 1;
}

/*
 * Puts a configured reply at index of a response batch, for a client speaking RESP version proto
 * (2 or 3: a nil is "$-1" in RESP2 and "_" in RESP3, which RESP3 parsers expect). THREAD: instance's.
 */
static inline int32_t pu_put_reply(sluice_batch *responses, size_t index, const pu_reply *r, int proto) {
  if (r->type == SLUICE_REDIS_NULL && proto == 3) return host->batch_put_bytes(responses, index, (const uint8_t *)"_\r\n", 3);
  return host->redis_put_reply(responses, index, r->type, r->bytes ? r->bytes : (const uint8_t *)"", r->len, r->integer);
}

/*
 * For transforms that answer requests themselves instead of a server (debug-returner, null-sink):
 * if request i is HELLO, answers it at index of responses as Redis would (a description of the
 * server, as a map in RESP3 and a flat array in RESP2; NOPROTO for a version other than 2 or 3),
 * updates *proto (the connection's RESP version, 2 until a HELLO 3) and returns 1. Returns 0 for
 * any other request. A client library's connection handshake (redis-py 8 starts with HELLO 3) then
 * succeeds. Credentials in HELLO's AUTH are not checked here (the host's source auth does that).
 * server: the name reported as "server". THREAD: instance's.
 */
static inline int pu_answer_hello(sluice_batch *responses, size_t index, const sluice_batch *requests, size_t i,
                                  int *proto, const char *server, int32_t *status) {
  sluice_host_view args[2];
  size_t argc = 0;
  *status = SLUICE_OK;
  if (host->redis_args(requests, i, args, 2, &argc) != SLUICE_OK || argc == 0 ||
      !pu_equals_ignoring_case(args[0].ptr, args[0].len, "hello")) {
    return 0;
  }
  int requested = *proto;
  if (argc >= 2) {
    int64_t version = 0;
    if (!pu_parse_i64(args[1].ptr, args[1].len, &version) || (version != 2 && version != 3)) {
      static const char noproto[] = "NOPROTO sorry, this protocol version is not supported.";
      *status = host->redis_put_reply(responses, index, SLUICE_REDIS_ERROR, (const uint8_t *)noproto, sizeof noproto - 1, 0);
      return 1;
    }
    requested = (int)version;
  }
  *proto = requested;
  char reply[512];
  size_t server_len = strlen(server);
  int n = snprintf(reply, sizeof reply,
                   "%s$6\r\nserver\r\n$%zu\r\n%s\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n$5\r\nproto\r\n:%d\r\n"
                   "$2\r\nid\r\n:1\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n"
                   "$7\r\nmodules\r\n*0\r\n",
                   requested == 3 ? "%7\r\n" : "*14\r\n", server_len, server, requested);
  if (n < 0 || (size_t)n >= sizeof reply) {
    *status = SLUICE_ERROR;
    return 1;
  }
  *status = host->batch_put_bytes(responses, index, (const uint8_t *)reply, (size_t)n);
  return 1;
}

/* Lowercases a command name into out (capacity cap incl. NUL); returns 0 when it does not fit. */
static inline int pu_lower_name(const uint8_t *p, size_t len, char *out, size_t cap) {
  if (len + 1 > cap) return 0;
  for (size_t i = 0; i < len; i++) out[i] = (char)tolower(p[i]);
  out[len] = '\0';
  return 1;
}

#endif /* SLUICE_PLUGIN_UTIL_H */
