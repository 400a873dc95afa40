/*
 * query-counter: counts requests by command, and by key pattern where configured, into metrics;
 * forwards everything unchanged (call_pass: it never sees the responses).
 *
 *   - query-counter: {}                                          # every known command + other
 *   - query-counter: { commands: [GET, SET, DEL], key_patterns: { sessions: "session:*" } }
 *
 * The ABI's counters have a name and no free labels (metric_counter, config time only), so each
 * counted command is its own counter, sluice_plugin_query_counter_command_<name>_total, created
 * at start-up: the set of series is fixed by the config (at most the commands listed, or the
 * commands of the generated table, plus _other), whatever clients send.
 *
 * Plain C99 against sluice_plugin.h; helpers and the generated command table in Plugins/c-common.
 */
#include "sluice_plugin.h"

static const sluice_host_api *host;

#include "glob.h"
#include "plugin_util.h"
#include "redis_commands.h"

#define MAX_PATTERNS 32
#define MAX_EXTRA_COMMANDS 256
#define MAX_NAME 64

typedef struct key_pattern {
  uint8_t *glob;
  size_t len;
  sluice_metric *matched;
} key_pattern;

/* A listed command the table does not know (a module's command). */
typedef struct extra_command {
  char name[MAX_NAME + 1]; /* lowercase */
  sluice_metric *counter;
} extra_command;

typedef struct counter_config {
  sluice_metric *by_table[RCT_COMMAND_COUNT]; /* counter of each counted table command, NULL if not counted */
  extra_command *extra;
  size_t extra_count;
  sluice_metric *other;    /* everything not counted on its own */
  sluice_metric *requests; /* all requests */
  key_pattern *patterns;
  size_t pattern_count;
} counter_config;

static void counter_config_free(void *p) {
  counter_config *c = p;
  if (c == NULL) return;
  for (size_t i = 0; i < c->pattern_count; i++) free(c->patterns[i].glob);
  free(c->patterns);
  free(c->extra);
  free(c);
}

/* Creates the counter query_counter_<prefix><name>, the name made of [a-z0-9_] (other bytes become '_'). */
static int make_counter(sluice_config_env *env, const sluice_config_node *at, const char *prefix, const char *name,
                        sluice_metric **out) {
  char metric[160];
  int n = snprintf(metric, sizeof metric, "query_counter_%s%s", prefix, name);
  if (n < 0 || (size_t)n >= sizeof metric) {
    pu_fail(env, at, "name too long for a metric: '%s'", name);
    return 0;
  }
  for (int i = 0; i < n; i++) {
    char ch = metric[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'))) metric[i] = '_';
  }
  if (host->metric_counter(env, metric, (size_t)n, out) != SLUICE_OK) {
    pu_fail(env, at, "cannot create the metric %s", metric);
    return 0;
  }
  return 1;
}

/* Two names that differ only where the metric name replaces bytes by '_' (a-b and a_b) would share a
 * metric name: refused. */
static int same_metric_name(const char *a, const char *b) {
  for (; *a && *b; a++, b++) {
    int sa = (*a >= 'a' && *a <= 'z') || (*a >= '0' && *a <= '9') ? *a : '_';
    int sb = (*b >= 'a' && *b <= 'z') || (*b >= '0' && *b <= '9') ? *b : '_';
    if (sa != sb) return 0;
  }
  return *a == *b;
}

static int read_commands(sluice_config_env *env, const sluice_config_node *node, counter_config *c) {
  const sluice_config_node *list = pu_get(node, "commands");
  if (list == NULL) { /* default: every command of the table (not subcommands) */
    for (size_t i = 0; i < RCT_COMMAND_COUNT; i++) {
      if (strchr(rct_commands[i].name, '|') != NULL) continue;
      if (!make_counter(env, node, "command_", rct_commands[i].name, &c->by_table[i])) return 0;
    }
    return 1;
  }
  size_t count = host->node_count(list);
  if (host->node_kind(list) != SLUICE_NODE_SEQUENCE || count == 0 || count > MAX_EXTRA_COMMANDS) {
    pu_fail(env, list, "commands: expected a list of 1 to %d command names (leave it out to count every command)",
            MAX_EXTRA_COMMANDS);
    return 0;
  }
  c->extra = calloc(count, sizeof *c->extra);
  if (c->extra == NULL) return 0;
  const char **seen = calloc(count, sizeof *seen);
  if (seen == NULL) return 0;
  int ok = 1;
  for (size_t i = 0; i < count && ok; i++) {
    const sluice_config_node *item = NULL;
    sluice_host_view name = {0};
    char lower[MAX_NAME + 1];
    host->node_at(list, i, NULL, &item);
    if (host->node_scalar(item, &name) != SLUICE_OK || name.len == 0 || memchr(name.ptr, '|', name.len) ||
        !pu_lower_name(name.ptr, name.len, lower, sizeof lower)) {
      pu_fail(env, item, "commands: each item must be a command name of 1 to %d characters", MAX_NAME);
      ok = 0;
      break;
    }
    for (size_t j = 0; j < i && ok; j++) {
      if (same_metric_name(seen[j], lower)) {
        pu_fail(env, item, "commands: '%s' is listed twice (or shares its metric name with '%s')", lower, seen[j]);
        ok = 0;
      }
    }
    if (!ok) break;
    const rct_command *known = rc_find(name.ptr, name.len);
    if (known != NULL) {
      ok = make_counter(env, item, "command_", known->name, &c->by_table[known - rct_commands]);
      seen[i] = known->name;
    } else {
      extra_command *e = &c->extra[c->extra_count++];
      memcpy(e->name, lower, strlen(lower) + 1);
      ok = make_counter(env, item, "command_", e->name, &e->counter);
      seen[i] = e->name;
    }
  }
  free(seen);
  return ok;
}

static int read_patterns(sluice_config_env *env, const sluice_config_node *node, counter_config *c) {
  const sluice_config_node *map = pu_get(node, "key_patterns");
  if (map == NULL) return 1;
  size_t count = host->node_count(map);
  if (host->node_kind(map) != SLUICE_NODE_MAP || count == 0 || count > MAX_PATTERNS) {
    pu_fail(env, map, "key_patterns: expected a map of 1 to %d NAME: GLOB entries, e.g. { sessions: \"session:*\" }",
            MAX_PATTERNS);
    return 0;
  }
  c->patterns = calloc(count, sizeof *c->patterns);
  if (c->patterns == NULL) return 0;
  for (size_t i = 0; i < count; i++) {
    const sluice_config_node *key = NULL, *value = NULL;
    sluice_host_view name = {0}, glob = {0};
    host->node_at(map, i, &key, &value);
    host->node_scalar(key, &name);
    int valid = name.len > 0 && name.len <= MAX_NAME;
    for (size_t j = 0; j < name.len && valid; j++) {
      uint8_t ch = name.ptr[j];
      valid = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_';
    }
    if (!valid) {
      pu_fail(env, key, "key_patterns: '%.*s' is not a metric name (use a-z, 0-9 and _, at most %d)", (int)name.len,
              (const char *)name.ptr, MAX_NAME);
      return 0;
    }
    if (host->node_scalar(value, &glob) != SLUICE_OK) {
      pu_fail(env, value, "key_patterns.%.*s: expected a glob such as \"user:*\"", (int)name.len, (const char *)name.ptr);
      return 0;
    }
    key_pattern *kp = &c->patterns[c->pattern_count++];
    kp->glob = malloc(glob.len + 1);
    if (kp->glob == NULL) return 0;
    memcpy(kp->glob, glob.ptr, glob.len);
    kp->len = glob.len;
    char metric_name[MAX_NAME + 1];
    memcpy(metric_name, name.ptr, name.len);
    metric_name[name.len] = '\0';
    if (!make_counter(env, key, "key_", metric_name, &kp->matched)) return 0;
  }
  return 1;
}

static int32_t counter_config_new(sluice_config_env *env, const sluice_config_node *node, void **out) {
  static const char *const allowed[] = {"commands", "key_patterns", NULL};
  if (!pu_check_keys(env, node, allowed)) return SLUICE_ERROR;
  counter_config *c = calloc(1, sizeof *c);
  if (c == NULL) return SLUICE_ERROR;
  if (!read_commands(env, node, c) || !read_patterns(env, node, c) ||
      !make_counter(env, node, "", "other", &c->other) || !make_counter(env, node, "", "requests", &c->requests)) {
    counter_config_free(c);
    return SLUICE_ERROR;
  }
  *out = c;
  return SLUICE_OK;
}

/* Per connection: the argument views and key positions reused for key patterns (grown to the
 * largest command seen). */
typedef struct counter_instance {
  const counter_config *config;
  sluice_host_view *args;
  size_t capacity;
  size_t *positions;
  size_t position_capacity;
} counter_instance;

static int32_t counter_instance_new(void *config, sluice_instance_env *env, void **out) {
  (void)env;
  counter_instance *instance = calloc(1, sizeof *instance);
  if (instance == NULL) return SLUICE_ERROR;
  instance->config = config;
  *out = instance;
  return SLUICE_OK;
}

static void counter_instance_free(void *p) {
  counter_instance *instance = p;
  if (instance == NULL) return;
  free(instance->args);
  free(instance->positions);
  free(instance);
}

/* Adds request i to every key pattern one of its keys matches (at most once per pattern). The keys
 * are where the host's key table puts them (redis_keys, since 1.1): fixed positions, EVAL/FCALL
 * numkeys, XREAD STREAMS, ZUNIONSTORE's sources, SORT's STORE… */
static void count_keys(counter_instance *instance, const sluice_batch *requests, size_t i) {
  const counter_config *c = instance->config;
  size_t n = 0;
  if (host->redis_keys(requests, i, instance->positions, instance->position_capacity, &n) != SLUICE_OK || n == 0) return;
  if (n > instance->position_capacity) {
    size_t *bigger = realloc(instance->positions, n * sizeof *bigger);
    if (bigger == NULL) return;
    instance->positions = bigger;
    instance->position_capacity = n;
    if (host->redis_keys(requests, i, instance->positions, instance->position_capacity, &n) != SLUICE_OK) return;
  }
  size_t argc = 0;
  if (host->redis_args(requests, i, instance->args, instance->capacity, &argc) != SLUICE_OK) return;
  if (argc > instance->capacity) {
    sluice_host_view *bigger = realloc(instance->args, argc * sizeof *bigger);
    if (bigger == NULL) return;
    instance->args = bigger;
    instance->capacity = argc;
    if (host->redis_args(requests, i, instance->args, instance->capacity, &argc) != SLUICE_OK) return;
  }
  for (size_t p = 0; p < c->pattern_count; p++) {
    const key_pattern *pattern = &c->patterns[p];
    for (size_t k = 0; k < n; k++) {
      if (instance->positions[k] >= argc) continue;
      const sluice_host_view *key = &instance->args[instance->positions[k]];
      if (glob_matches(pattern->glob, pattern->len, key->ptr, key->len)) {
        host->metric_add(pattern->matched, 1);
        break;
      }
    }
  }
}

static int32_t counter_on_requests(void *p, sluice_call *call, sluice_batch *requests) {
  counter_instance *instance = p;
  const counter_config *c = instance->config;
  size_t count = host->batch_count(requests);
  host->metric_add(c->requests, count);
  for (size_t i = 0; i < count; i++) {
    sluice_host_view name = {0};
    size_t argc = 0;
    sluice_metric *counter = c->other;
    const rct_command *command = NULL;
    if (host->redis_args(requests, i, &name, 1, &argc) == SLUICE_OK && argc > 0 && name.len <= MAX_NAME) {
      command = rc_find(name.ptr, name.len);
      if (command != NULL) {
        if (c->by_table[command - rct_commands] != NULL) counter = c->by_table[command - rct_commands];
      } else {
        for (size_t e = 0; e < c->extra_count; e++) {
          if (rc_compare(name.ptr, name.len, c->extra[e].name) == 0) {
            counter = c->extra[e].counter;
            break;
          }
        }
      }
    }
    host->metric_add(counter, 1);
    if (c->pattern_count > 0) count_keys(instance, requests, i);
  }
  return host->call_pass(call);
}

static const sluice_transform_descriptor transforms[] = {
    {
        .struct_size = sizeof(sluice_transform_descriptor),
        .protocols = SLUICE_PROTOCOL_REDIS,
        .name = "query-counter",
        .description = "counts requests by command (and by key pattern) into metrics; forwards everything",
        .config_new = counter_config_new,
        .config_free = counter_config_free,
        .instance_new = counter_instance_new,
        .instance_free = counter_instance_free,
        .on_requests = counter_on_requests,
    },
};

static const sluice_plugin_descriptor descriptor = {
    .magic = SLUICE_PLUGIN_MAGIC,
    .struct_size = sizeof(sluice_plugin_descriptor),
    .abi_major = SLUICE_ABI_VERSION_MAJOR,
    .abi_minor = SLUICE_ABI_VERSION_MINOR,
    .flags = SLUICE_PLUGIN_FLAG_REQUIRES_MINOR, /* call_pass and redis_keys are since 1.1 */
    .transform_count = sizeof transforms / sizeof transforms[0],
    .name = "query-counter",
    .version = "1.0.0",
    .transforms = transforms,
};

SLUICE_PLUGIN_EXPORT const sluice_plugin_descriptor *sluice_plugin_init(const sluice_host_api *h) {
  if (h == NULL || h->abi_major != SLUICE_ABI_VERSION_MAJOR || h->abi_minor < 1) return NULL;
  host = h;
  return &descriptor;
}
