/*
 * consistent-scatter: one logical Redis on N replicas with tunable consistency. Writes go to every
 * target and are acknowledged once write_consistency of them succeeded; reads go to
 * read_consistency of them (another target takes over from one that fails) and the newest value
 * wins, by a timestamp this transform stores in front of every value it writes.
 *
 *   - consistent-scatter: { targets: [a, b, c], write_consistency: 2, read_consistency: 2 }
 *
 * Scope: the string family (SET, GET, MGET, MSET, DEL, EXISTS) and connection commands; everything
 * else is refused per request. The storage format and the rules are in
 * docs/transforms/consistent-scatter.md. Plain C99 against sluice_plugin.h.
 */
#define _POSIX_C_SOURCE 200809L
#include "sluice_plugin.h"

static const sluice_host_api *host;

#include <time.h>

#include "plugin_util.h"

#define CS_MAX_TARGETS 16
/* Stored values: "sc1:" + 16 lowercase hex digits (microseconds since the epoch) + ":" + value. */
#define CS_MAGIC "sc1:"
#define CS_HEADER_LEN 21

typedef struct cs_target {
  sluice_target *target;
  char name[64];
  sluice_metric *errors, *timeouts, *late;
} cs_target;

typedef struct cs_config {
  cs_target targets[CS_MAX_TARGETS];
  size_t target_count;
  uint64_t write_consistency, read_consistency, timeout_ms;
  sluice_metric *requests, *refused, *quorum_failures, *reads, *writes;
} cs_config;

static void cs_config_free(void *p) { free(p); }

/* Counter names are [a-z0-9_]: a target name's other characters become '_'. */
static int target_metric(sluice_config_env *env, const char *target, const char *what, sluice_metric **out) {
  char name[128];
  int n = snprintf(name, sizeof name, "consistent_scatter_%s_%s", target, what);
  if (n < 0 || (size_t)n >= sizeof name) return 0;
  for (int i = 0; i < n; i++) {
    char ch = (char)tolower((unsigned char)name[i]);
    name[i] = (isalnum((unsigned char)ch) || ch == '_') ? ch : '_';
  }
  return host->metric_counter(env, name, (size_t)n, out) == SLUICE_OK;
}

static int32_t cs_config_new(sluice_config_env *env, const sluice_config_node *node, void **out) {
  static const char *const allowed[] = {"targets", "write_consistency", "read_consistency", "timeout_ms", NULL};
  if (!pu_check_keys(env, node, allowed)) return SLUICE_ERROR;
  const sluice_config_node *targets = pu_get(node, "targets");
  if (targets == NULL || host->node_kind(targets) != SLUICE_NODE_SEQUENCE || host->node_count(targets) == 0 ||
      host->node_count(targets) > CS_MAX_TARGETS) {
    pu_fail(env, targets != NULL ? targets : node, "targets: expected a list of 1 to %d sink or chain names", CS_MAX_TARGETS);
    return SLUICE_ERROR;
  }
  cs_config *c = calloc(1, sizeof *c);
  if (c == NULL) return SLUICE_ERROR;
  c->target_count = host->node_count(targets);
  for (size_t i = 0; i < c->target_count; i++) {
    const sluice_config_node *item = NULL;
    sluice_host_view text = {0};
    host->node_at(targets, i, NULL, &item);
    if (host->node_scalar(item, &text) != SLUICE_OK || text.len == 0 || text.len >= sizeof c->targets[i].name) {
      pu_fail(env, item, "targets: each item must be the name of a sink or chain");
      goto fail;
    }
    for (size_t k = 0; k < i; k++) {
      if (strlen(c->targets[k].name) == text.len && memcmp(c->targets[k].name, text.ptr, text.len) == 0) {
        pu_fail(env, item, "targets: '%.*s' is listed twice", (int)text.len, (const char *)text.ptr);
        goto fail;
      }
    }
    if (host->target_resolve(env, (const char *)text.ptr, text.len, &c->targets[i].target) != SLUICE_OK) {
      pu_fail(env, item, "targets: no sink or chain named '%.*s'", (int)text.len, (const char *)text.ptr);
      goto fail;
    }
    memcpy(c->targets[i].name, text.ptr, text.len);
    c->targets[i].name[text.len] = '\0';
    if (!target_metric(env, c->targets[i].name, "errors", &c->targets[i].errors) ||
        !target_metric(env, c->targets[i].name, "timeouts", &c->targets[i].timeouts) ||
        !target_metric(env, c->targets[i].name, "late", &c->targets[i].late)) {
      goto fail;
    }
  }
  uint64_t majority = c->target_count / 2 + 1;
  c->write_consistency = majority;
  c->read_consistency = majority;
  c->timeout_ms = 1000;
  if (!pu_read_u64(env, node, "write_consistency", 1, c->target_count, &c->write_consistency) ||
      !pu_read_u64(env, node, "read_consistency", 1, c->target_count, &c->read_consistency) ||
      !pu_read_u64(env, node, "timeout_ms", 1, 600000, &c->timeout_ms) ||
      host->metric_counter(env, "consistent_scatter_requests", 27, &c->requests) != SLUICE_OK ||
      host->metric_counter(env, "consistent_scatter_refused", 26, &c->refused) != SLUICE_OK ||
      host->metric_counter(env, "consistent_scatter_quorum_failures", 34, &c->quorum_failures) != SLUICE_OK ||
      host->metric_counter(env, "consistent_scatter_reads", 24, &c->reads) != SLUICE_OK ||
      host->metric_counter(env, "consistent_scatter_writes", 25, &c->writes) != SLUICE_OK) {
    goto fail;
  }
  *out = c;
  return SLUICE_OK;
fail:
  free(c);
  return SLUICE_ERROR;
}

/* ---- timestamps ------------------------------------------------------------------------------ */

/* Microseconds since the epoch, strictly increasing within the process (two writes of one batch
 * or of two connections never share a timestamp). THREAD: any. */
static uint64_t next_timestamp(void) {
  static uint64_t last;
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  uint64_t t = (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
  uint64_t seen = __atomic_load_n(&last, __ATOMIC_RELAXED);
  for (;;) {
    uint64_t next = t > seen ? t : seen + 1;
    if (__atomic_compare_exchange_n(&last, &seen, next, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return next;
  }
}

static void write_header(uint8_t *out, uint64_t ts) {
  static const char hex[] = "0123456789abcdef";
  memcpy(out, CS_MAGIC, 4);
  for (int i = 0; i < 16; i++) out[4 + i] = (uint8_t)hex[(ts >> (60 - 4 * i)) & 15];
  out[20] = ':';
}

/* The timestamp of a stored value (0 for a value written without this transform). */
static uint64_t value_timestamp(const uint8_t *p, size_t len, int *wrapped) {
  *wrapped = 0;
  if (len < CS_HEADER_LEN || memcmp(p, CS_MAGIC, 4) != 0 || p[20] != ':') return 0;
  uint64_t ts = 0;
  for (int i = 4; i < 20; i++) {
    int d = p[i] >= '0' && p[i] <= '9' ? p[i] - '0' : p[i] >= 'a' && p[i] <= 'f' ? p[i] - 'a' + 10 : -1;
    if (d < 0) return 0;
    ts = ts << 4 | (uint64_t)d;
  }
  *wrapped = 1;
  return ts;
}

/* ---- what a request is ----------------------------------------------------------------------- */

enum cs_op {
  OP_REFUSED = 0,
  OP_QUIT,   /* answered +OK here */
  OP_ALL,    /* connection commands: to every target, the first success answers */
  OP_SET,    /* writes: to every target, write_consistency successes */
  OP_SET_GET,
  OP_MSET,
  OP_DEL,
  OP_GET,    /* reads: to read_consistency targets, newest wins */
  OP_MGET,
  OP_EXISTS,
};

static int is_read(int op) { return op == OP_GET || op == OP_MGET || op == OP_EXISTS; }
static int is_write(int op) { return op == OP_SET || op == OP_SET_GET || op == OP_MSET || op == OP_DEL; }

static int classify(const sluice_batch *requests, size_t i) {
  sluice_host_view args[1];
  size_t argc = 0;
  if (host->redis_args(requests, i, args, 1, &argc) != SLUICE_OK || argc == 0) return OP_REFUSED;
  const uint8_t *n = args[0].ptr;
  size_t len = args[0].len;
  if (pu_equals_ignoring_case(n, len, "get")) return argc == 2 ? OP_GET : OP_REFUSED;
  if (pu_equals_ignoring_case(n, len, "mget")) return argc >= 2 ? OP_MGET : OP_REFUSED;
  if (pu_equals_ignoring_case(n, len, "exists")) return argc >= 2 ? OP_EXISTS : OP_REFUSED;
  if (pu_equals_ignoring_case(n, len, "set")) {
    if (argc < 3) return OP_REFUSED;
    sluice_host_view all[16];
    size_t count = 0;
    if (argc > 16 || host->redis_args(requests, i, all, 16, &count) != SLUICE_OK) return OP_REFUSED;
    for (size_t a = 3; a < argc; a++) {
      if (pu_equals_ignoring_case(all[a].ptr, all[a].len, "get")) return OP_SET_GET;
    }
    return OP_SET;
  }
  if (pu_equals_ignoring_case(n, len, "mset")) return argc >= 3 && argc % 2 == 1 ? OP_MSET : OP_REFUSED;
  if (pu_equals_ignoring_case(n, len, "del")) return argc >= 2 ? OP_DEL : OP_REFUSED;
  if (pu_equals_ignoring_case(n, len, "quit")) return OP_QUIT;
  static const char *const connection[] = {"ping", "echo", "hello", "auth", "select", "client", "reset", "command", NULL};
  for (const char *const *c = connection; *c != NULL; c++) {
    if (pu_equals_ignoring_case(n, len, *c)) return OP_ALL;
  }
  return OP_REFUSED;
}

/* Puts the timestamp header in front of every value a write stores (one timestamp per command). */
/* MSET: every value gets the header. One redis_splice_arg per value would copy the whole command once
 * per pair (quadratic: an MSET of 16,000 pairs stalled the event loop for a minute), so the command is
 * rebuilt once: its arguments are copied into one buffer, headers in front of the values, and put back
 * with a single redis_put_command. */
static int32_t wrap_mset_values(sluice_batch *requests, size_t i, const uint8_t *header) {
  size_t argc = host->redis_arg_count(requests, i);
  if (argc < 3) return SLUICE_OK;
  sluice_host_view *args = malloc(argc * sizeof *args);
  const uint8_t **argv = malloc(argc * sizeof *argv);
  size_t *lens = malloc(argc * sizeof *lens);
  uint8_t *buffer = NULL;
  int32_t status = SLUICE_ERROR;
  size_t count = 0;
  if (args == NULL || argv == NULL || lens == NULL) goto done;
  if ((status = host->redis_args(requests, i, args, argc, &count)) != SLUICE_OK) goto done;
  size_t total = 0;
  for (size_t a = 0; a < count; a++) total += args[a].len + ((a >= 2 && a % 2 == 0) ? CS_HEADER_LEN : 0);
  status = SLUICE_ERROR;
  if ((buffer = malloc(total ? total : 1)) == NULL) goto done;
  uint8_t *at = buffer;
  for (size_t a = 0; a < count; a++) {
    argv[a] = at;
    if (a >= 2 && a % 2 == 0) { memcpy(at, header, CS_HEADER_LEN); at += CS_HEADER_LEN; }
    if (args[a].len) memcpy(at, args[a].ptr, args[a].len);
    at += args[a].len;
    lens[a] = (size_t)(at - argv[a]);
  }
  status = host->redis_put_command(requests, i, count, argv, lens);
done:
  free(args); free(argv); free(lens); free(buffer);
  return status;
}

static int32_t wrap_values(sluice_batch *requests, size_t i, int op) {
  uint8_t header[CS_HEADER_LEN];
  write_header(header, next_timestamp());
  if (op == OP_SET || op == OP_SET_GET) return host->redis_splice_arg(requests, i, 2, 0, 0, header, CS_HEADER_LEN);
  if (op == OP_MSET) return wrap_mset_values(requests, i, header);
  return SLUICE_OK;
}

/* ---- per-call state ---------------------------------------------------------------------------- */

enum cs_slot { SLOT_EMPTY = 0, SLOT_SERVER_ERROR = 1, SLOT_SUCCESS = 2 };

typedef struct cs_request {
  uint8_t op, needed, successes, failures, decided, slot;
  uint32_t tried, pending; /* target bits */
  uint64_t best; /* reads: the timestamp of the value in the slot (GET) */
  char first_failure[120];
} cs_request;

struct cs_instance;

typedef struct cs_call {
  struct cs_call *next, *prev;
  struct cs_instance *instance;
  sluice_call *call;      /* NULL once answered (late replies may still arrive) */
  sluice_batch *requests; /* OWNED clone of the call's (wrapped) requests, for failover sends */
  sluice_batch *answers;  /* OWNED: one response per request, handed to call_respond */
  cs_request *reqs;
  size_t count, undecided;
  int outstanding;        /* sends whose completion has not arrived */
  int timed_out;          /* the deadline passed: replies from now on are late */
  int deadlines;          /* how many times the timer fired */
  sluice_timer *timer;
} cs_call;

typedef struct cs_send {
  cs_call *state;
  size_t target, count;
  size_t indices[];
} cs_send;

typedef struct cs_instance {
  const cs_config *config;
  sluice_instance_env *env;
  size_t next_read; /* rotates the first read target */
  cs_call *calls;
} cs_instance;

static int32_t cs_instance_new(void *config, sluice_instance_env *env, void **out) {
  cs_instance *instance = calloc(1, sizeof *instance);
  if (instance == NULL) return SLUICE_ERROR;
  instance->config = config;
  instance->env = env;
  *out = instance;
  return SLUICE_OK;
}

static void call_unlink_free(cs_call *state) {
  cs_instance *instance = state->instance;
  if (state->prev != NULL) state->prev->next = state->next; else instance->calls = state->next;
  if (state->next != NULL) state->next->prev = state->prev;
  host->batch_free(state->requests);
  host->batch_free(state->answers);
  free(state->reqs);
  free(state);
}

/* Sends in flight still point at their call state: it lives until the last completion (or
 * instance_free, after which no completion runs). */
static void cs_instance_free(void *p) {
  cs_instance *instance = p;
  while (instance->calls != NULL) {
    cs_call *state = instance->calls;
    if (state->timer != NULL) host->timer_cancel(state->timer);
    state->timer = NULL;
    call_unlink_free(state);
  }
  free(instance);
}

static int resp3(const cs_instance *instance) {
  int64_t version = 2;
  host->get_property(instance->env, SLUICE_PROPERTY_PROTOCOL_VERSION, NULL, &version);
  return version == 3;
}

/* Replaces answer i with a copy of message j of batch (bytes shared). */
static int32_t set_answer(cs_call *state, size_t i, const sluice_batch *batch, size_t j) {
  int32_t status = host->batch_insert_from(state->answers, i, batch, j);
  if (status == SLUICE_OK) status = host->batch_remove(state->answers, i + 1);
  return status;
}

static int32_t set_error(cs_call *state, size_t i, const char *text, size_t len) {
  return host->redis_put_reply(state->answers, i, SLUICE_REDIS_ERROR, (const uint8_t *)text, len, 0);
}

/* ---- replies ---------------------------------------------------------------------------------- */

/* The first value of response j (type and view). */
static int first_value(const sluice_batch *batch, size_t j, sluice_redis_value *value) {
  sluice_redis_cursor cursor;
  return host->redis_cursor_init(batch, j, &cursor) == SLUICE_OK && host->redis_cursor_next(&cursor, value) == SLUICE_OK;
}

static int is_error_reply(const sluice_batch *batch, size_t j) {
  sluice_redis_value v;
  if (!first_value(batch, j, &v)) return 1;
  return v.type == SLUICE_REDIS_ERROR || v.type == SLUICE_REDIS_BLOB_ERROR;
}

/* A growing byte buffer for rebuilt replies. */
typedef struct cs_buffer {
  uint8_t *bytes;
  size_t len, capacity;
  int failed;
} cs_buffer;

static void buf_append(cs_buffer *b, const void *p, size_t n) {
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

static void buf_bulk(cs_buffer *b, const uint8_t *p, size_t len) {
  char head[32];
  int n = snprintf(head, sizeof head, "$%zu\r\n", len);
  buf_append(b, head, (size_t)n);
  buf_append(b, p, len);
  buf_append(b, "\r\n", 2);
}

/* MGET: answer i becomes, element by element, the newer of itself and reply j of batch. */
static int32_t merge_mget(cs_call *state, size_t i, const sluice_batch *batch, size_t j, int proto3) {
  sluice_redis_cursor a, b;
  sluice_redis_value va, vb;
  if (host->redis_cursor_init(state->answers, i, &a) != SLUICE_OK || host->redis_cursor_init(batch, j, &b) != SLUICE_OK ||
      host->redis_cursor_next(&a, &va) != SLUICE_OK || host->redis_cursor_next(&b, &vb) != SLUICE_OK) {
    return SLUICE_ERROR;
  }
  if (va.type != SLUICE_REDIS_ARRAY || vb.type != SLUICE_REDIS_ARRAY || va.count != vb.count) return SLUICE_ERROR_MALFORMED;
  cs_buffer out = {0};
  char head[32];
  int n = snprintf(head, sizeof head, "*%lld\r\n", (long long)va.count);
  buf_append(&out, head, (size_t)n);
  for (int64_t k = 0; k < va.count; k++) {
    sluice_redis_value ea, eb;
    if (host->redis_cursor_next(&a, &ea) != SLUICE_OK || host->redis_cursor_next(&b, &eb) != SLUICE_OK) {
      free(out.bytes);
      return SLUICE_ERROR_MALFORMED;
    }
    int wa = 0, wb = 0;
    int64_t ta = ea.type == SLUICE_REDIS_BULK_STRING ? (int64_t)value_timestamp(ea.bytes.ptr, ea.bytes.len, &wa) : -1;
    int64_t tb = eb.type == SLUICE_REDIS_BULK_STRING ? (int64_t)value_timestamp(eb.bytes.ptr, eb.bytes.len, &wb) : -1;
    const sluice_redis_value *pick = tb > ta ? &eb : &ea;
    if (pick->type == SLUICE_REDIS_BULK_STRING) buf_bulk(&out, pick->bytes.ptr, pick->bytes.len);
    else buf_append(&out, proto3 ? "_\r\n" : "$-1\r\n", proto3 ? 3 : 5);
  }
  int32_t status = out.failed ? SLUICE_ERROR : host->batch_put_bytes(state->answers, i, out.bytes, out.len);
  free(out.bytes);
  return status;
}

/* Takes the timestamp header off the value(s) of answer i (GET, SET … GET, MGET). */
static int32_t unwrap_answer(cs_call *state, size_t i, int proto3) {
  sluice_redis_cursor cursor;
  sluice_redis_value v;
  if (host->redis_cursor_init(state->answers, i, &cursor) != SLUICE_OK || host->redis_cursor_next(&cursor, &v) != SLUICE_OK) {
    return SLUICE_OK;
  }
  int wrapped = 0;
  if (v.type == SLUICE_REDIS_BULK_STRING) {
    value_timestamp(v.bytes.ptr, v.bytes.len, &wrapped);
    if (!wrapped) return SLUICE_OK;
    return host->redis_put_reply(state->answers, i, SLUICE_REDIS_BULK_STRING, v.bytes.ptr + CS_HEADER_LEN,
                                 v.bytes.len - CS_HEADER_LEN, 0);
  }
  if (v.type != SLUICE_REDIS_ARRAY) return SLUICE_OK;
  cs_buffer out = {0};
  char head[32];
  int n = snprintf(head, sizeof head, "*%lld\r\n", (long long)v.count);
  buf_append(&out, head, (size_t)n);
  for (int64_t k = 0; k < v.count; k++) {
    sluice_redis_value e;
    if (host->redis_cursor_next(&cursor, &e) != SLUICE_OK) {
      free(out.bytes);
      return SLUICE_ERROR_MALFORMED;
    }
    if (e.type == SLUICE_REDIS_BULK_STRING) {
      value_timestamp(e.bytes.ptr, e.bytes.len, &wrapped);
      size_t skip = wrapped ? CS_HEADER_LEN : 0;
      buf_bulk(&out, e.bytes.ptr + skip, e.bytes.len - skip);
    } else {
      buf_append(&out, proto3 ? "_\r\n" : "$-1\r\n", proto3 ? 3 : 5);
    }
  }
  int32_t status = out.failed ? SLUICE_ERROR : host->batch_put_bytes(state->answers, i, out.bytes, out.len);
  free(out.bytes);
  return status;
}

/* ---- deciding ---------------------------------------------------------------------------------- */

static void record_failure(cs_request *r, const cs_config *c, size_t t, const char *what, size_t what_len) {
  r->failures++;
  if (r->first_failure[0] == '\0') {
    snprintf(r->first_failure, sizeof r->first_failure, "%s: %.*s", c->targets[t].name, (int)(what_len > 80 ? 80 : what_len), what);
  }
}

/* Decides request i once enough answered, or (final) when nothing more can come. */
static void maybe_decide(cs_call *state, size_t i, int final) {
  cs_request *r = &state->reqs[i];
  if (r->decided) return;
  const cs_config *c = state->instance->config;
  int done = r->successes >= r->needed;
  if (!done && !final && r->pending != 0) return;
  if (!done && !final && is_read(r->op)) {
    /* a read target failed: is there one left to try? (the caller sends the failover) */
    uint32_t all = (uint32_t)((1u << c->target_count) - 1);
    if ((r->tried & all) != all) return;
  }
  r->decided = 1;
  state->undecided--;
  int32_t status = SLUICE_OK;
  if (done) {
    if (r->op == OP_GET || r->op == OP_MGET || r->op == OP_SET_GET) status = unwrap_answer(state, i, resp3(state->instance));
  } else if (r->slot == SLOT_SERVER_ERROR && r->successes == 0) {
    /* every target that answered refused it the same way (WRONGTYPE…): that is the answer */
  } else {
    host->metric_add(c->quorum_failures, 1);
    char text[300];
    int n = snprintf(text, sizeof text, "ERR consistent-scatter: %u of %zu targets %s, %u required%s%s%s",
                     (unsigned)r->successes, c->target_count, is_write(r->op) ? "acknowledged the write" : "answered",
                     (unsigned)r->needed, r->first_failure[0] ? " (" : "", r->first_failure, r->first_failure[0] ? ")" : "");
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof text) n = (int)sizeof text - 1;
    status = set_error(state, i, text, (size_t)n);
  }
  if (status != SLUICE_OK) set_error(state, i, "ERR consistent-scatter: cannot build the reply", 46);
}

/* Frees the call state once the client is answered and no send is in flight. */
static void maybe_release(cs_call *state) {
  if (state->call != NULL || state->outstanding > 0) return;
  if (state->timer != NULL) host->timer_cancel(state->timer);
  state->timer = NULL;
  call_unlink_free(state);
}

/* Answers the client once every request is decided. The timer keeps running while sends are in
 * flight, so a target that never answers is still counted at the deadline. */
static void maybe_finish(cs_call *state) {
  if (state->call == NULL || state->undecided > 0) return;
  sluice_batch *answers = state->answers;
  state->answers = NULL;
  sluice_call *call = state->call;
  state->call = NULL;
  if (host->call_respond(call, answers) != SLUICE_OK) host->call_fail(call, "cannot answer", 13);
  maybe_release(state);
}

static void send_failovers(cs_call *state, const size_t *indices, size_t count);

/* A reply of target t for request i arrived. */
static void apply_reply(cs_call *state, size_t i, size_t t, const sluice_batch *batch, size_t j, int proto3) {
  cs_request *r = &state->reqs[i];
  const cs_config *c = state->instance->config;
  r->pending &= ~(1u << t);
  if (r->decided) {
    if (state->timed_out) host->metric_add(c->targets[t].late, 1);
    return;
  }
  if (is_error_reply(batch, j)) {
    sluice_redis_value v;
    first_value(batch, j, &v);
    record_failure(r, c, t, (const char *)v.bytes.ptr, v.bytes.len);
    if (r->slot == SLOT_EMPTY && set_answer(state, i, batch, j) == SLUICE_OK) r->slot = SLOT_SERVER_ERROR;
    host->metric_add(c->targets[t].errors, 1);
    if (is_read(r->op)) send_failovers(state, &i, 1); /* another target may have the value */
    maybe_decide(state, i, 0);
    return;
  }
  r->successes++;
  if (r->slot != SLOT_SUCCESS) {
    if (set_answer(state, i, batch, j) == SLUICE_OK) r->slot = SLOT_SUCCESS;
    if (r->op == OP_GET) {
      sluice_redis_value v;
      int wrapped = 0;
      r->best = first_value(batch, j, &v) && v.type == SLUICE_REDIS_BULK_STRING
                    ? value_timestamp(v.bytes.ptr, v.bytes.len, &wrapped) + 1 : 0;
    }
  } else if (r->op == OP_GET) {
    sluice_redis_value v;
    int wrapped = 0;
    uint64_t ts = first_value(batch, j, &v) && v.type == SLUICE_REDIS_BULK_STRING
                      ? value_timestamp(v.bytes.ptr, v.bytes.len, &wrapped) + 1 : 0; /* nil is older than any value */
    if (ts > r->best && set_answer(state, i, batch, j) == SLUICE_OK) r->best = ts;
  } else if (r->op == OP_MGET) {
    merge_mget(state, i, batch, j, proto3);
  } else if (r->op == OP_EXISTS) {
    sluice_redis_value a, b;
    if (first_value(state->answers, i, &a) && first_value(batch, j, &b) && b.integer > a.integer) set_answer(state, i, batch, j);
  }
  maybe_decide(state, i, 0);
}


static void on_sent(void *user_data, int32_t status, sluice_batch *responses, sluice_host_view error);

/* Sends the listed requests of the call to target t. Returns 1 when sent (a completion will come). */
static int send_to(cs_call *state, size_t t, const size_t *indices, size_t count) {
  const cs_config *c = state->instance->config;
  cs_send *send = malloc(sizeof *send + count * sizeof(size_t));
  sluice_batch *batch = host->batch_new(SLUICE_BATCH_REQUESTS, SLUICE_PROTOCOL_REDIS);
  int ok = send != NULL && batch != NULL;
  for (size_t k = 0; k < count && ok; k++) ok = host->batch_insert_from(batch, k, state->requests, indices[k]) == SLUICE_OK;
  if (!ok) {
    free(send);
    host->batch_free(batch);
    return 0;
  }
  send->state = state;
  send->target = t;
  send->count = count;
  memcpy(send->indices, indices, count * sizeof(size_t));
  for (size_t k = 0; k < count; k++) {
    state->reqs[indices[k]].pending |= 1u << t;
    state->reqs[indices[k]].tried |= 1u << t;
  }
  if (host->send(state->instance->env, c->targets[t].target, batch, on_sent, send) != SLUICE_OK) {
    for (size_t k = 0; k < count; k++) state->reqs[indices[k]].pending &= ~(1u << t);
    free(send);
    return 0;
  }
  state->outstanding++;
  return 1;
}

/* Reads whose target failed go to a target not tried yet, one batch per target. */
static void send_failovers(cs_call *state, const size_t *indices, size_t count) {
  const cs_config *c = state->instance->config;
  size_t *list = malloc((count ? count : 1) * sizeof *list);
  if (list == NULL) return;
  for (size_t t = 0; t < c->target_count; t++) {
    size_t n = 0;
    for (size_t k = 0; k < count; k++) {
      cs_request *r = &state->reqs[indices[k]];
      if (r->decided || !is_read(r->op) || r->successes + (size_t)__builtin_popcount(r->pending) >= r->needed) continue;
      if (r->tried & (1u << t)) continue;
      list[n++] = indices[k];
      r->tried |= 1u << t; /* claimed: a later t does not take it too */
    }
    if (n == 0) continue;
    for (size_t k = 0; k < n; k++) state->reqs[list[k]].tried &= ~(1u << t);
    if (!send_to(state, t, list, n)) {
      for (size_t k = 0; k < n; k++) record_failure(&state->reqs[list[k]], c, t, "send failed", 11);
    }
  }
  free(list);
}

static void on_sent(void *user_data, int32_t status, sluice_batch *responses, sluice_host_view error) {
  cs_send *send = user_data;
  cs_call *state = send->state;
  const cs_config *c = state->instance->config;
  state->outstanding--;
  if (state->call == NULL) { /* answered already: after the deadline these replies are late */
    if (state->timed_out) host->metric_add(c->targets[send->target].late, send->count);
    host->batch_free(responses);
    free(send);
    maybe_release(state);
    return;
  }
  if (status != SLUICE_OK || responses == NULL || host->batch_count(responses) != send->count) {
    host->metric_add(c->targets[send->target].errors, send->count);
    const char *what = error.len ? (const char *)error.ptr : "no reply";
    size_t what_len = error.len ? error.len : 8;
    for (size_t k = 0; k < send->count; k++) {
      cs_request *r = &state->reqs[send->indices[k]];
      r->pending &= ~(1u << send->target);
      if (!r->decided) record_failure(r, c, send->target, what, what_len);
    }
    send_failovers(state, send->indices, send->count);
    for (size_t k = 0; k < send->count; k++) maybe_decide(state, send->indices[k], 0);
  } else {
    int proto3 = resp3(state->instance);
    for (size_t k = 0; k < send->count; k++) apply_reply(state, send->indices[k], send->target, responses, k, proto3);
  }
  host->batch_free(responses);
  free(send);
  maybe_finish(state);
}

/*
 * The deadline: targets still silent are counted (timeouts) and their later replies will count as
 * late. Reads still short get one more chance on targets not tried yet (and one more deadline);
 * everything else undecided is decided with what arrived.
 */
static void on_timeout(void *user_data) {
  cs_call *state = user_data;
  state->timer = NULL;
  state->timed_out = 1;
  const cs_config *c = state->instance->config;
  int retried = 0;
  for (size_t i = 0; i < state->count; i++) {
    cs_request *r = &state->reqs[i];
    for (size_t t = 0; t < c->target_count; t++) {
      if (!(r->pending & (1u << t))) continue;
      host->metric_add(c->targets[t].timeouts, 1);
      if (r->decided) continue;
      char text[48];
      int n = snprintf(text, sizeof text, "no answer within %llu ms", (unsigned long long)c->timeout_ms);
      record_failure(r, c, t, text, (size_t)n);
    }
    if (r->decided) continue;
    if (is_read(r->op) && state->deadlines == 0) {
      uint32_t pending = r->pending;
      r->pending = 0; /* a silent target no longer holds the read back: try another */
      int before = state->outstanding;
      send_failovers(state, &i, 1);
      r->pending |= pending;
      if (state->outstanding > before) {
        retried = 1;
        continue;
      }
    }
    maybe_decide(state, i, 1);
  }
  state->deadlines++;
  if (state->call != NULL && retried &&
      host->timer_start(state->instance->env, c->timeout_ms, on_timeout, state, &state->timer) != SLUICE_OK) {
    state->timer = NULL;
  }
  if (state->call != NULL && state->timer == NULL) {
    for (size_t i = 0; i < state->count; i++) maybe_decide(state, i, 1);
  }
  if (state->call != NULL) maybe_finish(state); /* frees the state when nothing is in flight */
  else maybe_release(state);
}

/* ---- the hook ---------------------------------------------------------------------------------- */

static int32_t cs_on_requests(void *p, sluice_call *call, sluice_batch *requests) {
  cs_instance *instance = p;
  const cs_config *c = instance->config;
  size_t count = host->batch_count(requests);
  host->metric_add(c->requests, count);
  cs_call *state = calloc(1, sizeof *state);
  size_t *list = malloc((count ? count : 1) * sizeof *list);
  if (state == NULL || list == NULL) goto oom;
  state->instance = instance;
  state->count = state->undecided = count;
  state->reqs = calloc(count ? count : 1, sizeof *state->reqs);
  state->answers = host->batch_new(SLUICE_BATCH_RESPONSES, SLUICE_PROTOCOL_REDIS);
  if (state->reqs == NULL || state->answers == NULL) goto oom;
  size_t refused = 0;
  for (size_t i = 0; i < count; i++) {
    cs_request *r = &state->reqs[i];
    r->op = (uint8_t)classify(requests, i);
    r->needed = (uint8_t)(is_write(r->op) ? c->write_consistency : is_read(r->op) ? c->read_consistency : 1);
    if (host->redis_put_reply(state->answers, i, SLUICE_REDIS_SIMPLE_STRING, (const uint8_t *)"OK", 2, 0) != SLUICE_OK) goto oom;
    if (r->op == OP_REFUSED || r->op == OP_QUIT) {
      if (r->op == OP_REFUSED) {
        sluice_host_view name = {0};
        size_t argc = 0;
        host->redis_args(requests, i, &name, 1, &argc);
        char text[200];
        int n = snprintf(text, sizeof text, "ERR consistent-scatter: '%.*s' is not supported (SET, GET, MGET, MSET, DEL, "
                         "EXISTS and connection commands only)", (int)(name.len > 32 ? 32 : name.len), (const char *)name.ptr);
        for (int k = 0; k < n; k++) {
          if (text[k] == '\r' || text[k] == '\n') text[k] = ' ';
        }
        set_error(state, i, text, (size_t)n);
        refused++;
      }
      r->decided = 1;
      state->undecided--;
      continue;
    }
    if (is_write(r->op)) {
      host->metric_add(c->writes, 1);
      if (wrap_values(requests, i, r->op) != SLUICE_OK) goto oom;
    } else if (is_read(r->op)) {
      host->metric_add(c->reads, 1);
    }
  }
  if (refused) host->metric_add(c->refused, refused);
  state->requests = host->batch_clone(requests);
  if (state->requests == NULL) goto oom;
  state->call = call;
  state->next = instance->calls;
  if (instance->calls != NULL) instance->calls->prev = state;
  instance->calls = state;
  /* reads start at a rotating target so the load spreads; writes and connection commands go to all */
  size_t first_read = instance->next_read++ % c->target_count;
  for (size_t t = 0; t < c->target_count; t++) {
    size_t n = 0;
    size_t rank = (t + c->target_count - first_read) % c->target_count; /* t's place in this batch's read order */
    for (size_t i = 0; i < count; i++) {
      cs_request *r = &state->reqs[i];
      if (r->decided) continue;
      if (is_read(r->op) && rank >= r->needed) continue;
      list[n++] = i;
    }
    if (n > 0 && !send_to(state, t, list, n)) {
      for (size_t k = 0; k < n; k++) record_failure(&state->reqs[list[k]], c, t, "send failed", 11);
    }
  }
  for (size_t i = 0; i < count; i++) list[i] = i;
  send_failovers(state, list, count); /* reads whose first targets could not even be sent to */
  for (size_t i = 0; i < count; i++) maybe_decide(state, i, state->outstanding == 0);
  free(list);
  if (state->undecided > 0 &&
      host->timer_start(instance->env, c->timeout_ms, on_timeout, state, &state->timer) != SLUICE_OK) {
    state->timer = NULL;
  }
  maybe_finish(state);
  return SLUICE_OK;
oom:
  free(list);
  if (state != NULL) {
    host->batch_free(state->answers);
    free(state->reqs);
    free(state);
  }
  return host->call_fail(call, "out of memory", 13);
}

static const sluice_transform_descriptor transforms[] = {
    {
        .struct_size = sizeof(sluice_transform_descriptor),
        .protocols = SLUICE_PROTOCOL_REDIS,
        .name = "consistent-scatter",
        .description = "writes to N targets acknowledged by W, reads from R with the newest value winning (timestamped values)",
        .config_new = cs_config_new,
        .config_free = cs_config_free,
        .instance_new = cs_instance_new,
        .instance_free = cs_instance_free,
        .on_requests = cs_on_requests,
    },
};

static const sluice_plugin_descriptor descriptor = {
    .magic = SLUICE_PLUGIN_MAGIC,
    .struct_size = sizeof(sluice_plugin_descriptor),
    .abi_major = SLUICE_ABI_VERSION_MAJOR,
    .abi_minor = SLUICE_ABI_VERSION_MINOR,
    .flags = SLUICE_PLUGIN_FLAG_REQUIRES_MINOR, /* redis_splice_arg, get_property: since 1.1 */
    .transform_count = sizeof transforms / sizeof transforms[0],
    .name = "consistent-scatter",
    .version = "1.0.0",
    .transforms = transforms,
};

SLUICE_PLUGIN_EXPORT const sluice_plugin_descriptor *sluice_plugin_init(const sluice_host_api *h) {
  if (h == NULL || h->abi_major != SLUICE_ABI_VERSION_MAJOR || h->abi_minor < 1) return NULL;
  host = h;
  return &descriptor;
}
