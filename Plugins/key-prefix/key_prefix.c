/*
 * key-prefix: gives each tenant its own namespace on a shared Redis. A prefix is put in front of
 * every key of every command that has keys (positions from the host's key table, redis_keys) and
 * taken off the keys that come back (KEYS, SCAN, BLPOP/BZPOPMIN/LMPOP/ZMPOP replies, XREAD);
 * commands that would reach other tenants' data are refused, one request at a time.
 *
 *   - key-prefix: { prefix: "t1:" }
 *   - key-prefix: { from_user: true }          # the authenticated user name + ":"
 *
 * Plain C99 against sluice_plugin.h; helpers in Plugins/c-common. docs/transforms/key-prefix.md
 * lists what is refused and why.
 */
#include "sluice_plugin.h"

static const sluice_host_api *host;

#include "plugin_util.h"
#include "partial.h"
#include "redis_commands.h"
#include "reply_rewrite.h"

#define KP_MAX_PREFIX 256

typedef struct kp_config {
  char *prefix; /* fixed prefix, or NULL with from_user */
  size_t prefix_len;
  int from_user;
  int allow_scripts;
  sluice_metric *requests, *keys, *refused, *replies;
  /* Decided once per table entry at config time (see classify): no string compares per request. */
  uint8_t kinds[RCT_COMMAND_COUNT], shapes[RCT_COMMAND_COUNT];
  const char *whys[RCT_COMMAND_COUNT];
} kp_config;

static void kp_config_free(void *p) {
  kp_config *c = p;
  if (c == NULL) return;
  free(c->prefix);
  free(c);
}

static int read_bool(sluice_config_env *env, const sluice_config_node *node, const char *key, int *out) {
  const sluice_config_node *value = pu_get(node, key);
  if (value == NULL) return 1;
  sluice_host_view text = {0};
  if (host->node_scalar(value, &text) == SLUICE_OK) {
    if (pu_view_is(text, "true")) { *out = 1; return 1; }
    if (pu_view_is(text, "false")) { *out = 0; return 1; }
  }
  pu_fail(env, value, "%s: expected true or false", key);
  return 0;
}

static void classify_table(kp_config *c);

static int32_t kp_config_new(sluice_config_env *env, const sluice_config_node *node, void **out) {
  static const char *const allowed[] = {"prefix", "from_user", "allow_scripts", NULL};
  if (!pu_check_keys(env, node, allowed)) return SLUICE_ERROR;
  kp_config *c = calloc(1, sizeof *c);
  if (c == NULL) return SLUICE_ERROR;
  const sluice_config_node *prefix = pu_get(node, "prefix");
  int ok = read_bool(env, node, "from_user", &c->from_user) && read_bool(env, node, "allow_scripts", &c->allow_scripts);
  if (ok && prefix != NULL && c->from_user) {
    pu_fail(env, prefix, "give either prefix: or from_user: true, not both");
    ok = 0;
  } else if (ok && prefix == NULL && !c->from_user) {
    pu_fail(env, node, "give prefix: \"tenant:\" or from_user: true");
    ok = 0;
  } else if (ok && prefix != NULL) {
    sluice_host_view text = {0};
    if (host->node_scalar(prefix, &text) != SLUICE_OK || text.len == 0 || text.len > KP_MAX_PREFIX) {
      pu_fail(env, prefix, "prefix: expected a non-empty string of at most %d bytes", KP_MAX_PREFIX);
      ok = 0;
    } else if ((c->prefix = malloc(text.len)) == NULL) {
      ok = 0;
    } else {
      memcpy(c->prefix, text.ptr, text.len);
      c->prefix_len = text.len;
    }
  }
  if (!ok || host->metric_counter(env, "key_prefix_requests", 19, &c->requests) != SLUICE_OK ||
      host->metric_counter(env, "key_prefix_keys", 15, &c->keys) != SLUICE_OK ||
      host->metric_counter(env, "key_prefix_refused", 18, &c->refused) != SLUICE_OK ||
      host->metric_counter(env, "key_prefix_replies_rewritten", 28, &c->replies) != SLUICE_OK) {
    kp_config_free(c);
    return SLUICE_ERROR;
  }
  classify_table(c);
  *out = c;
  return SLUICE_OK;
}

/* ---- per-call state: which replies carry keys ------------------------------------------------- */

typedef struct kp_rewrite {
  size_t index;
  enum rr_shape shape;
} kp_rewrite;

/* The state of a forwarded call whose replies need work; linked into the instance so instance_free
 * can release the states of abandoned calls. */
typedef struct kp_call {
  struct kp_call *next, *prev;
  partial_aborts *aborts;
  kp_rewrite *rewrites;
  size_t rewrite_count, rewrite_capacity;
  uint8_t prefix[KP_MAX_PREFIX + 1];
  size_t prefix_len;
} kp_call;

typedef struct kp_instance {
  const kp_config *config;
  sluice_instance_env *env;
  enum partial_transaction transaction;
  kp_call *calls;
} kp_instance;

static int32_t kp_instance_new(void *config, sluice_instance_env *env, void **out) {
  kp_instance *instance = calloc(1, sizeof *instance);
  if (instance == NULL) return SLUICE_ERROR;
  instance->config = config;
  instance->env = env;
  *out = instance;
  return SLUICE_OK;
}

static void kp_call_free(kp_call *state) {
  if (state == NULL) return;
  partial_aborts_free(state->aborts);
  free(state->rewrites);
  free(state);
}

static void kp_unlink(kp_instance *instance, kp_call *state) {
  if (state->prev != NULL) state->prev->next = state->next; else instance->calls = state->next;
  if (state->next != NULL) state->next->prev = state->prev;
  state->next = state->prev = NULL;
}

static void kp_instance_free(void *p) {
  kp_instance *instance = p;
  while (instance->calls != NULL) {
    kp_call *state = instance->calls;
    kp_unlink(instance, state);
    kp_call_free(state);
  }
  free(instance);
}

static int kp_add_rewrite(kp_call *state, size_t index, enum rr_shape shape) {
  if (state->rewrite_count == state->rewrite_capacity) {
    size_t capacity = state->rewrite_capacity ? state->rewrite_capacity * 2 : 4;
    kp_rewrite *bigger = realloc(state->rewrites, capacity * sizeof *bigger);
    if (bigger == NULL) return 0;
    state->rewrites = bigger;
    state->rewrite_capacity = capacity;
  }
  state->rewrites[state->rewrite_count++] = (kp_rewrite){index, shape};
  return 1;
}

/* ---- what a command is to a tenant ------------------------------------------------------------ */

/* How one request is treated. */
enum kp_kind {
  KP_KEYS = 0,       /* its keys (redis_keys) get the prefix */
  KP_PATTERN = 1,    /* KEYS pattern: the pattern gets the (escaped) prefix; the reply's keys lose it */
  KP_SCAN = 2,       /* SCAN: MATCH gets the prefix (added when absent); the reply's keys lose it */
  KP_SORT = 3,       /* keys as KP_KEYS plus the BY and GET patterns */
  KP_REFUSED = 4,    /* answered here with an error */
  KP_UNTOUCHED = 5,  /* has no keys by nature (CLIENT SETNAME …): passes as it is */
  KP_DYNAMIC = 6,    /* decided per request (CLIENT with a subcommand newer than the table) */
};

/* The shape of the reply of a command whose reply names keys (RR_NONE for the rest). */
static enum rr_shape reply_shape(const char *name) {
  static const char *const first[] = {"blpop", "brpop", "bzpopmin", "bzpopmax", "lmpop", "blmpop", "zmpop", "bzmpop", NULL};
  for (const char *const *f = first; *f != NULL; f++) {
    if (strcmp(name, *f) == 0) return RR_FIRST;
  }
  if (strcmp(name, "xread") == 0 || strcmp(name, "xreadgroup") == 0) return RR_STREAMS;
  if (strcmp(name, "keys") == 0) return RR_LIST;
  if (strcmp(name, "scan") == 0) return RR_SCAN;
  return RR_NONE;
}

static int name_in(const char *name, const char *const *list) {
  for (; *list != NULL; list++) {
    if (strcmp(name, *list) == 0) return 1;
  }
  return 0;
}

/*
 * Decides what request i is; for a refusal, *why gets the explanation (a static text naming no
 * argument). entry: the table entry (its subcommand's where it has one), NULL when unknown.
 */
static enum kp_kind classify(const kp_config *c, const sluice_batch *requests, size_t i, const rct_command *entry,
                             const char **why) {
  /* Subcommands that are safe although their category says otherwise, or that leak by design. */
  static const char *const client_safe[] = {"client|id", "client|info", "client|getname", "client|setname",
                                            "client|help", "client|reply", NULL};
  static const char *const scripts[] = {"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro",
                                        "script|load", "script|exists", NULL};
  if (entry == NULL) {
    *why = "the command is unknown to the key table, so its keys cannot be prefixed";
    return KP_REFUSED;
  }
  const char *name = entry->name;
  if (strcmp(name, "keys") == 0) return KP_PATTERN;
  if (strcmp(name, "scan") == 0) return KP_SCAN;
  if (strcmp(name, "sort") == 0 || strcmp(name, "sort_ro") == 0) return KP_SORT;
  if (strcmp(name, "restore") == 0) return KP_KEYS; /* @dangerous for its payload, not for other tenants */
  if (strcmp(name, "randomkey") == 0) {
    *why = "RANDOMKEY picks among every tenant's keys";
    return KP_REFUSED;
  }
  if (strcmp(name, "dbsize") == 0) {
    *why = "DBSIZE counts every tenant's keys";
    return KP_REFUSED;
  }
  if (strncmp(name, "client", 6) == 0 && (name[6] == '\0' || name[6] == '|')) {
    if (name_in(name, client_safe)) return KP_UNTOUCHED;
    if (strcmp(name, "client") == 0) { /* a subcommand newer than the table: SETINFO (Redis 7.2) is harmless */
      if (requests == NULL) return KP_DYNAMIC;
      sluice_host_view args[2];
      size_t argc = 0;
      if (host->redis_args(requests, i, args, 2, &argc) == SLUICE_OK && argc >= 2 &&
          (pu_equals_ignoring_case(args[1].ptr, args[1].len, "setinfo") ||
           pu_equals_ignoring_case(args[1].ptr, args[1].len, "no-touch"))) {
        return KP_UNTOUCHED;
      }
    }
    *why = "this CLIENT subcommand sees or affects other tenants' connections or keys";
    return KP_REFUSED;
  }
  if (entry->categories & RCT_CAT_SCRIPTING) {
    if (!c->allow_scripts) {
      *why = "scripts can reach keys they do not declare (allow_scripts: true permits EVAL/FCALL with declared keys)";
      return KP_REFUSED;
    }
    if (name_in(name, scripts)) return KP_KEYS;
    *why = "this script or function command affects every tenant";
    return KP_REFUSED;
  }
  if (entry->categories & RCT_CAT_PUBSUB) {
    *why = "channels are shared by every tenant and messages cannot be taken back out of a namespace";
    return KP_REFUSED;
  }
  if (entry->categories & (RCT_CAT_ADMIN | RCT_CAT_DANGEROUS)) {
    *why = "it works on the whole server or every tenant's keys";
    return KP_REFUSED;
  }
  return KP_KEYS;
}

/* Classifies every command of the table once (at config time). */
static void classify_table(kp_config *c) {
  for (size_t e = 0; e < RCT_COMMAND_COUNT; e++) {
    const char *why = NULL;
    c->kinds[e] = (uint8_t)classify(c, NULL, 0, &rct_commands[e], &why);
    c->whys[e] = why;
    c->shapes[e] = (uint8_t)reply_shape(rct_commands[e].name);
  }
}

/* ---- request rewriting ------------------------------------------------------------------------ */

/* Writes prefix with the glob specials (* ? [ ] \) escaped into out (capacity 2*len); returns its length. */
static size_t escape_glob(const uint8_t *prefix, size_t len, uint8_t *out) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    if (strchr("*?[]\\", prefix[i]) != NULL && prefix[i] != '\0') out[n++] = '\\';
    out[n++] = prefix[i];
  }
  return n;
}

/* Prefixes the arguments at positions[0..count-1] of command i. */
static int32_t prefix_args(sluice_batch *requests, size_t i, const size_t *positions, size_t count,
                           const uint8_t *prefix, size_t prefix_len) {
  int32_t status = SLUICE_OK;
  for (size_t k = 0; k < count && status == SLUICE_OK; k++) {
    status = host->redis_splice_arg(requests, i, positions[k], 0, 0, prefix, prefix_len);
  }
  return status;
}

/*
 * Rebuilds command i with every argument at positions prefixed and extra arguments appended (one
 * copy of the command instead of one per key, for commands with many keys, and to add SCAN's MATCH).
 */
static int32_t rebuild(sluice_batch *requests, size_t i, const size_t *positions, size_t count, const uint8_t *prefix,
                       size_t prefix_len, size_t extra_count, const uint8_t *const *extra, const size_t *extra_len) {
  size_t argc = host->redis_arg_count(requests, i);
  sluice_host_view *args = malloc(argc * sizeof *args);
  const uint8_t **argv = malloc((argc + extra_count) * sizeof *argv);
  size_t *lengths = malloc((argc + extra_count) * sizeof *lengths);
  uint8_t *copies = NULL;
  int32_t status = SLUICE_ERROR;
  if (args == NULL || argv == NULL || lengths == NULL) goto done;
  size_t got = 0;
  if ((status = host->redis_args(requests, i, args, argc, &got)) != SLUICE_OK) goto done;
  size_t total = 0;
  for (size_t a = 0; a < argc; a++) total += args[a].len;
  total += count * prefix_len;
  for (size_t e = 0; e < extra_count; e++) total += extra_len[e];
  copies = malloc(total ? total : 1);
  status = SLUICE_ERROR;
  if (copies == NULL) goto done;
  size_t used = 0;
  /* positions are in key-spec order, not sorted: mark them instead of walking them in step */
  unsigned char *prefixed = calloc(argc, 1);
  if (prefixed == NULL) goto done;
  for (size_t k = 0; k < count; k++) {
    if (positions[k] < argc) prefixed[positions[k]] = 1;
  }
  for (size_t a = 0; a < argc; a++) {
    argv[a] = copies + used;
    if (prefixed[a]) {
      memcpy(copies + used, prefix, prefix_len);
      used += prefix_len;
    }
    memcpy(copies + used, args[a].ptr, args[a].len);
    used += args[a].len;
    lengths[a] = (size_t)(copies + used - argv[a]);
  }
  free(prefixed);
  for (size_t e = 0; e < extra_count; e++) {
    argv[argc + e] = copies + used;
    memcpy(copies + used, extra[e], extra_len[e]);
    used += extra_len[e];
    lengths[argc + e] = extra_len[e];
  }
  status = host->redis_put_command(requests, i, argc + extra_count, argv, lengths);
done:
  free(args);
  free(argv);
  free(lengths);
  free(copies);
  return status;
}

/* KEYS pattern: the pattern gets the escaped prefix. */
static int32_t rewrite_pattern(sluice_batch *requests, size_t i, const uint8_t *escaped, size_t escaped_len) {
  if (host->redis_arg_count(requests, i) != 2) return SLUICE_ERROR_MALFORMED;
  return host->redis_splice_arg(requests, i, 1, 0, 0, escaped, escaped_len);
}

/* SCAN cursor [MATCH p] [COUNT n] [TYPE t]: each MATCH pattern gets the escaped prefix, or
 * MATCH prefix* is added. */
static int32_t rewrite_scan(sluice_batch *requests, size_t i, const uint8_t *escaped, size_t escaped_len) {
  size_t argc = host->redis_arg_count(requests, i);
  if (argc < 2 || argc % 2 != 0 || argc > 64) return SLUICE_ERROR_MALFORMED;
  sluice_host_view args[64];
  size_t got = 0, matches[32], match_count = 0;
  if (host->redis_args(requests, i, args, argc, &got) != SLUICE_OK) return SLUICE_ERROR;
  for (size_t a = 2; a + 1 < argc; a += 2) {
    if (pu_equals_ignoring_case(args[a].ptr, args[a].len, "match")) matches[match_count++] = a + 1;
  }
  if (match_count > 0) {
    int32_t status = SLUICE_OK;
    for (size_t m = 0; m < match_count && status == SLUICE_OK; m++) {
      status = host->redis_splice_arg(requests, i, matches[m], 0, 0, escaped, escaped_len);
    }
    return status;
  }
  uint8_t pattern[2 * KP_MAX_PREFIX + 2];
  memcpy(pattern, escaped, escaped_len);
  pattern[escaped_len] = '*';
  const uint8_t *extra[2] = {(const uint8_t *)"MATCH", pattern};
  size_t extra_len[2] = {5, escaped_len + 1};
  return rebuild(requests, i, NULL, 0, NULL, 0, 2, extra, extra_len);
}

/* SORT/SORT_RO: the BY pattern and every GET pattern except "#" get the prefix (they name keys). */
static int32_t rewrite_sort_patterns(sluice_batch *requests, size_t i, const uint8_t *prefix, size_t prefix_len) {
  size_t argc = host->redis_arg_count(requests, i);
  if (argc > 256) return SLUICE_ERROR_MALFORMED;
  sluice_host_view args[256];
  size_t got = 0, patterns[128], count = 0;
  if (host->redis_args(requests, i, args, argc, &got) != SLUICE_OK) return SLUICE_ERROR;
  for (size_t a = 2; a < argc; a++) {
    if (pu_equals_ignoring_case(args[a].ptr, args[a].len, "limit")) {
      a += 2;
    } else if (pu_equals_ignoring_case(args[a].ptr, args[a].len, "store")) {
      a += 1; /* the destination is a key: redis_keys has it */
    } else if ((pu_equals_ignoring_case(args[a].ptr, args[a].len, "by") ||
                pu_equals_ignoring_case(args[a].ptr, args[a].len, "get")) && a + 1 < argc) {
      if (!(args[a + 1].len == 1 && args[a + 1].ptr[0] == '#') && count < 128) patterns[count++] = a + 1;
      a += 1;
    }
  }
  /* Redis puts the element at the pattern's first '*' and knows no escape: a prefix with '*' would
   * take the element's place. */
  if (count > 0 && memchr(prefix, '*', prefix_len) != NULL) return SLUICE_ERROR_STATE;
  return prefix_args(requests, i, patterns, count, prefix, prefix_len);
}

/* The key positions of one command (inline for up to 16 keys). */
typedef struct kp_keys {
  size_t inline_positions[16];
  size_t *positions;
  size_t count;
  int32_t status; /* of redis_keys: SLUICE_OK, _NOT_FOUND, _MALFORMED… */
} kp_keys;

static void find_keys(const sluice_batch *requests, size_t i, kp_keys *k) {
  k->positions = k->inline_positions;
  k->count = 0;
  k->status = host->redis_keys(requests, i, k->positions, 16, &k->count);
  if (k->status == SLUICE_OK && k->count > 16) {
    k->positions = malloc(k->count * sizeof *k->positions);
    k->status = k->positions == NULL ? SLUICE_ERROR
                                     : host->redis_keys(requests, i, k->positions, k->count, &k->count);
    if (k->positions == NULL) k->positions = k->inline_positions;
  }
}

static void release_keys(kp_keys *k) {
  if (k->positions != k->inline_positions) free(k->positions);
  k->positions = k->inline_positions;
}

/* The keys of command i get the prefix. Returns SLUICE_OK, or the status of redis_keys. */
static int32_t rewrite_keys(const kp_config *c, sluice_batch *requests, size_t i, const kp_keys *k, const uint8_t *prefix,
                            size_t prefix_len) {
  if (k->status != SLUICE_OK || k->count == 0) return k->status;
  host->metric_add(c->keys, k->count);
  return k->count <= 8 ? prefix_args(requests, i, k->positions, k->count, prefix, prefix_len)
                       : rebuild(requests, i, k->positions, k->count, prefix, prefix_len, 0, NULL, NULL);
}

/* Whether request i may change who the client is (AUTH, HELLO, RESET): with from_user, later
 * requests of the same batch would otherwise get the previous user's prefix. */
static int changes_user(const rct_command *entry) {
  return entry != NULL && (strcmp(entry->name, "auth") == 0 || strcmp(entry->name, "hello") == 0 ||
                           strcmp(entry->name, "reset") == 0);
}

/* ---- hooks ------------------------------------------------------------------------------------- */

static int32_t kp_on_requests(void *p, sluice_call *call, sluice_batch *requests) {
  kp_instance *instance = p;
  const kp_config *c = instance->config;
  size_t count = host->batch_count(requests);
  host->metric_add(c->requests, count);

  uint8_t prefix[KP_MAX_PREFIX + 1];
  size_t prefix_len = 0;
  int authenticated = 1;
  if (c->from_user) {
    sluice_host_view user = {0};
    if (host->get_property(instance->env, SLUICE_PROPERTY_USER, &user, NULL) == SLUICE_OK && user.len > 0 &&
        user.len < KP_MAX_PREFIX) {
      memcpy(prefix, user.ptr, user.len);
      prefix[user.len] = ':';
      prefix_len = user.len + 1;
    } else {
      authenticated = 0;
    }
  } else {
    memcpy(prefix, c->prefix, c->prefix_len);
    prefix_len = c->prefix_len;
  }
  uint8_t escaped[2 * KP_MAX_PREFIX + 2];
  size_t escaped_len = escape_glob(prefix, prefix_len, escaped);

  sluice_batch *errors = NULL;
  kp_call *state = NULL;
  size_t refused = 0;
  int32_t status = SLUICE_OK;
  for (size_t i = 0; i < count && status == SLUICE_OK; i++) {
    const rct_command *entry = rc_find_request(requests, i);
    const char *why = NULL;
    enum kp_kind kind = KP_REFUSED;
    enum rr_shape shape = RR_NONE;
    if (entry == NULL) {
      kind = classify(c, requests, i, entry, &why);
    } else {
      size_t e = (size_t)(entry - rct_commands);
      kind = (enum kp_kind)c->kinds[e];
      why = c->whys[e];
      shape = (enum rr_shape)c->shapes[e];
      if (kind == KP_DYNAMIC) kind = classify(c, requests, i, entry, &why);
    }
    if (kind != KP_REFUSED && shape != RR_NONE && instance->transaction != PARTIAL_TX_NONE) {
      kind = KP_REFUSED;
      why = "its reply names keys, which cannot be taken out of the namespace inside MULTI";
    }
    /* Requests without a tenant (not signed in, or behind a sign-in of the same batch) keep only
     * the commands that touch no keys. */
    kp_keys keys = {.count = 0, .status = SLUICE_OK};
    keys.positions = keys.inline_positions;
    if (kind == KP_KEYS || kind == KP_SORT) find_keys(requests, i, &keys);
    int needs_prefix = kind == KP_PATTERN || kind == KP_SCAN || kind == KP_SORT ||
                       (kind == KP_KEYS && keys.status == SLUICE_OK && keys.count > 0);
    int noauth = 0;
    if (kind != KP_REFUSED && needs_prefix && !authenticated) {
      kind = KP_REFUSED;
      noauth = 1;
    }
    enum partial_route route = partial_route_of(&instance->transaction, requests, i, kind == KP_REFUSED);
    if (route == PARTIAL_REFUSED) {
      char text[400];
      int n;
      if (noauth) {
        n = snprintf(text, sizeof text, "NOAUTH key-prefix: the key prefix is the user name: authenticate first%s",
                     c->from_user && prefix_len > 0 ? " (a command pipelined behind AUTH/HELLO/RESET must wait for its reply)" : "");
      } else {
        n = snprintf(text, sizeof text, "NOPERM key-prefix: '%s' is refused for a tenant: %s",
                     entry != NULL ? entry->name : "this command", why);
      }
      if (n < 0) n = 0;
      if ((size_t)n >= sizeof text) n = (int)sizeof text - 1;
      status = partial_refuse(call, i, &errors, text, (size_t)n);
      refused++;
      release_keys(&keys);
      continue;
    }
    if (route == PARTIAL_EXEC_ABORT) {
      if (state == NULL && (state = calloc(1, sizeof *state)) == NULL) status = SLUICE_ERROR;
      if (status == SLUICE_OK) status = partial_abort_exec(requests, i, &state->aborts);
      release_keys(&keys);
      continue;
    }
    switch (kind) {
    case KP_PATTERN: status = rewrite_pattern(requests, i, escaped, escaped_len); break;
    case KP_SCAN: status = rewrite_scan(requests, i, escaped, escaped_len); break;
    case KP_SORT:
      status = rewrite_sort_patterns(requests, i, prefix, prefix_len);
      if (status == SLUICE_OK) status = rewrite_keys(c, requests, i, &keys, prefix, prefix_len);
      break;
    case KP_UNTOUCHED: break;
    default: status = rewrite_keys(c, requests, i, &keys, prefix, prefix_len); break;
    }
    release_keys(&keys);
    if (status == SLUICE_ERROR_NOT_FOUND || status == SLUICE_ERROR_MALFORMED || status == SLUICE_ERROR_STATE) {
      /* No trustworthy key positions: the server would see unprefixed keys, so refuse it. The
       * request is unchanged (nothing was spliced before the keys were known). */
      char text[300];
      int n = snprintf(text, sizeof text, "NOPERM key-prefix: '%s' is refused for a tenant: %s",
                       entry != NULL ? entry->name : "this command",
                       status == SLUICE_ERROR_NOT_FOUND ? "its keys are not in the key table"
                       : status == SLUICE_ERROR_STATE   ? "BY and GET patterns cannot hold a prefix with '*'"
                                                        : "its arguments do not match its key positions");
      status = partial_refuse(call, i, &errors, text, (size_t)n);
      refused++;
      continue;
    }
    if (status == SLUICE_OK && shape != RR_NONE) {
      if (state == NULL && (state = calloc(1, sizeof *state)) == NULL) status = SLUICE_ERROR;
      if (status == SLUICE_OK && !kp_add_rewrite(state, i, shape)) status = SLUICE_ERROR;
    }
    if (c->from_user && changes_user(entry)) authenticated = 0; /* the rest of the batch waits for its reply */
  }
  host->batch_free(errors);
  if (refused > 0) host->metric_add(c->refused, refused);
  if (status != SLUICE_OK) {
    kp_call_free(state);
    return host->call_fail(call, "key-prefix could not rewrite the batch", 38);
  }
  if (state == NULL) return host->call_pass(call);
  memcpy(state->prefix, prefix, prefix_len);
  state->prefix_len = prefix_len;
  state->next = instance->calls;
  if (instance->calls != NULL) instance->calls->prev = state;
  instance->calls = state;
  host->call_set_data(call, state);
  return host->call_forward(call);
}

static int32_t kp_on_responses(void *p, sluice_call *call, const sluice_batch *requests, sluice_batch *responses) {
  (void)requests;
  kp_instance *instance = p;
  kp_call *state = host->call_data(call);
  if (state == NULL) return host->call_respond(call, NULL);
  host->call_set_data(call, NULL);
  kp_unlink(instance, state);
  int64_t version = 2;
  host->get_property(instance->env, SLUICE_PROPERTY_PROTOCOL_VERSION, NULL, &version);
  int32_t status = state->aborts != NULL ? partial_answer_aborts(state->aborts, responses) : SLUICE_OK;
  size_t rewritten = 0;
  for (size_t k = 0; k < state->rewrite_count && status == SLUICE_OK; k++) {
    status = rr_strip_keys(responses, state->rewrites[k].index, state->rewrites[k].shape, state->prefix,
                           state->prefix_len, version == 3);
    rewritten++;
  }
  kp_call_free(state);
  if (rewritten > 0) host->metric_add(instance->config->replies, rewritten);
  if (status != SLUICE_OK) return host->call_fail(call, "cannot take the key prefix off a reply", 38);
  return host->call_respond(call, NULL);
}

static const sluice_transform_descriptor transforms[] = {
    {
        .struct_size = sizeof(sluice_transform_descriptor),
        .protocols = SLUICE_PROTOCOL_REDIS,
        .name = "key-prefix",
        .description = "a namespace per tenant: prefixes every key, strips it from keys in replies, refuses what spans tenants",
        .config_new = kp_config_new,
        .config_free = kp_config_free,
        .instance_new = kp_instance_new,
        .instance_free = kp_instance_free,
        .on_requests = kp_on_requests,
        .on_responses = kp_on_responses,
    },
};

static const sluice_plugin_descriptor descriptor = {
    .magic = SLUICE_PLUGIN_MAGIC,
    .struct_size = sizeof(sluice_plugin_descriptor),
    .abi_major = SLUICE_ABI_VERSION_MAJOR,
    .abi_minor = SLUICE_ABI_VERSION_MINOR,
    .flags = SLUICE_PLUGIN_FLAG_REQUIRES_MINOR, /* redis_keys, redis_splice_arg, get_property, call_answer: since 1.1 */
    .transform_count = sizeof transforms / sizeof transforms[0],
    .name = "key-prefix",
    .version = "1.0.0",
    .transforms = transforms,
};

SLUICE_PLUGIN_EXPORT const sluice_plugin_descriptor *sluice_plugin_init(const sluice_host_api *h) {
  if (h == NULL || h->abi_major != SLUICE_ABI_VERSION_MAJOR || h->abi_minor < 1) return NULL;
  host = h;
  return &descriptor;
}
