/*
 * query-type-filter: allows or denies requests by Redis ACL category (@read, @write, @admin,
 * @dangerous, @pubsub, @scripting, @slow …, as COMMAND reports them) and by command name. A denied
 * request is answered here with -NOPERM while the rest of its pipelined batch goes on; inside MULTI
 * a denial aborts the transaction as Redis does.
 *
 *   - query-type-filter: { deny: ["@dangerous", "@admin", KEYS] }            # deny-list
 *   - query-type-filter: { allow: ["@read", "@connection", PING, "config|get"] } # allow-list
 *
 * Resolution for one request: its command (or "command|subcommand") named in deny -> denied; named
 * in allow -> allowed; one of its categories in deny -> denied; allow given -> allowed only if one
 * of its categories is in allow; otherwise allowed. The categories come from the command table
 * generated from redis-server's COMMAND INFO (Plugins/c-common/redis_command_table.h).
 *
 * Plain C99 against sluice_plugin.h; helpers in Plugins/c-common.
 */
#include "sluice_plugin.h"

static const sluice_host_api *host;

#include "plugin_util.h"
#include "partial.h"
#include "redis_commands.h"

enum refusal_reason { REASON_NAMED = 1, REASON_CATEGORY = 2, REASON_NOT_ALLOWED = 3 };

typedef struct filter_config {
  uint64_t deny_categories, allow_categories;
  int has_allow;
  unsigned char deny_commands[RCT_COMMAND_COUNT];  /* 1: named in deny (a parent covers its subcommands) */
  unsigned char allow_commands[RCT_COMMAND_COUNT]; /* 1: named in allow */
  char *message;
  sluice_metric *requests, *denied;
} filter_config;

static void filter_config_free(void *p) {
  filter_config *c = p;
  if (c == NULL) return;
  free(c->message);
  free(c);
}

/* Reads deny: or allow: into a category mask and a command set. Returns 1 when fine. */
static int read_list(sluice_config_env *env, const sluice_config_node *node, const char *key, uint64_t *categories,
                     unsigned char *commands) {
  const sluice_config_node *list = pu_get(node, key);
  if (list == NULL) return 1;
  if (host->node_kind(list) != SLUICE_NODE_SEQUENCE || host->node_count(list) == 0) {
    pu_fail(env, list, "%s: expected a non-empty list of \"@category\" and command names", key);
    return 0;
  }
  for (size_t i = 0; i < host->node_count(list); i++) {
    const sluice_config_node *item = NULL;
    sluice_host_view text = {0};
    host->node_at(list, i, NULL, &item);
    if (host->node_scalar(item, &text) != SLUICE_OK || text.len == 0 || text.len > 64) {
      pu_fail(env, item, "%s: each item must be \"@category\" or a command name", key);
      return 0;
    }
    if (text.ptr[0] == '@') {
      uint64_t bit = rc_category(text.ptr + 1, text.len - 1);
      if (bit == 0) {
        char known[400] = "";
        size_t used = 0;
        for (int k = 0; k < RCT_CATEGORY_COUNT; k++) {
          int n = snprintf(known + used, sizeof known - used, "%s@%s", k ? " " : "", rct_category_names[k]);
          if (n < 0 || (size_t)n >= sizeof known - used) break;
          used += (size_t)n;
        }
        pu_fail(env, item, "%s: unknown category '%.*s' (redis %s has: %s)", key, (int)text.len, (const char *)text.ptr,
                RCT_REDIS_VERSION, known);
        return 0;
      }
      *categories |= bit;
      continue;
    }
    const rct_command *command = rc_find(text.ptr, text.len);
    if (command == NULL) {
      pu_fail(env, item, "%s: unknown command '%.*s' (not in redis %s's COMMAND table; a subcommand is written "
              "\"config|get\")", key, (int)text.len, (const char *)text.ptr, RCT_REDIS_VERSION);
      return 0;
    }
    commands[command - rct_commands] = 1;
  }
  return 1;
}

static int32_t filter_config_new(sluice_config_env *env, const sluice_config_node *node, void **out) {
  static const char *const allowed[] = {"allow", "deny", "message", NULL};
  if (!pu_check_keys(env, node, allowed)) return SLUICE_ERROR;
  if (pu_get(node, "allow") == NULL && pu_get(node, "deny") == NULL) {
    pu_fail(env, node, "give allow: [...] or deny: [...] (or both), e.g. { deny: [\"@dangerous\", KEYS] }");
    return SLUICE_ERROR;
  }
  filter_config *c = calloc(1, sizeof *c);
  if (c == NULL) return SLUICE_ERROR;
  c->has_allow = pu_get(node, "allow") != NULL;
  if (!read_list(env, node, "deny", &c->deny_categories, c->deny_commands) ||
      !read_list(env, node, "allow", &c->allow_categories, c->allow_commands) ||
      !pu_read_line(env, node, "message", &c->message) ||
      host->metric_counter(env, "query_type_filter_requests", 26, &c->requests) != SLUICE_OK ||
      host->metric_counter(env, "query_type_filter_denied", 24, &c->denied) != SLUICE_OK) {
    filter_config_free(c);
    return SLUICE_ERROR;
  }
  *out = c;
  return SLUICE_OK;
}

/* Why request i is refused (0: it is not), and the command entry that decided it. */
static int refusal_of(const filter_config *c, const sluice_batch *batch, size_t i, const rct_command **entry,
                      const rct_command **parent) {
  sluice_host_view name = {0};
  size_t argc = 0;
  *entry = *parent = NULL;
  if (host->redis_args(batch, i, &name, 1, &argc) != SLUICE_OK || argc == 0) return 0;
  *parent = name.len <= 32 ? rc_find(name.ptr, name.len) : NULL;
  *entry = *parent != NULL && (*parent)->has_subcommands ? rc_find_request(batch, i) : *parent;
  size_t e = *entry ? (size_t)(*entry - rct_commands) : 0, p = *parent ? (size_t)(*parent - rct_commands) : 0;
  if ((*entry && c->deny_commands[e]) || (*parent && c->deny_commands[p])) return REASON_NAMED;
  if ((*entry && c->allow_commands[e]) || (*parent && c->allow_commands[p])) return 0;
  uint64_t categories = *entry ? (*entry)->categories : 0;
  if (categories & c->deny_categories) return REASON_CATEGORY;
  if (c->has_allow && !(categories & c->allow_categories)) return REASON_NOT_ALLOWED;
  return 0;
}

/* A call with doomed EXECs sent as DISCARD, until on_responses turns their +OK into EXECABORT.
 * Linked into the instance so instance_free can free the states of abandoned calls. */
typedef struct filter_call {
  struct filter_call *next, *prev;
  partial_aborts *aborts;
} filter_call;

typedef struct filter_instance {
  const filter_config *config;
  enum partial_transaction transaction;
  filter_call *calls;
} filter_instance;

static int32_t filter_instance_new(void *config, sluice_instance_env *env, void **out) {
  (void)env;
  filter_instance *instance = calloc(1, sizeof *instance);
  if (instance == NULL) return SLUICE_ERROR;
  instance->config = config;
  *out = instance;
  return SLUICE_OK;
}

static void filter_call_free(filter_call *state) {
  if (state == NULL) return;
  partial_aborts_free(state->aborts);
  free(state);
}

static void filter_unlink(filter_instance *instance, filter_call *state) {
  if (state->prev != NULL) state->prev->next = state->next; else instance->calls = state->next;
  if (state->next != NULL) state->next->prev = state->prev;
  state->next = state->prev = NULL;
}

static void filter_instance_free(void *p) {
  filter_instance *instance = p;
  while (instance->calls != NULL) {
    filter_call *state = instance->calls;
    filter_unlink(instance, state);
    filter_call_free(state);
  }
  free(instance);
}

/* The text of the -NOPERM error for request i (refused for reason, decided by entry). */
static size_t refusal_text(const filter_config *c, const sluice_batch *requests, size_t i, int reason,
                           const rct_command *entry, char *text, size_t cap) {
  char unknown[33];
  const char *name = entry ? entry->name : unknown;
  if (entry == NULL) { /* the command as sent, lowercased, cut, printable */
    sluice_host_view view = {0};
    size_t argc = 0;
    host->redis_args(requests, i, &view, 1, &argc);
    size_t len = view.len < sizeof unknown - 1 ? view.len : sizeof unknown - 1;
    pu_lower_name(view.ptr, len, unknown, sizeof unknown);
    for (size_t k = 0; k < len; k++) {
      if (unknown[k] < 32 || unknown[k] > 126 || unknown[k] == '\'') unknown[k] = '?';
    }
  }
  int n;
  if (c->message != NULL) {
    n = snprintf(text, cap, "NOPERM query-type-filter: %s", c->message);
  } else if (reason == REASON_CATEGORY) {
    char categories[300] = "";
    size_t used = 0;
    uint64_t matched = entry->categories & c->deny_categories;
    for (int k = 0; k < RCT_CATEGORY_COUNT; k++) {
      if (!(matched & (UINT64_C(1) << k))) continue;
      int m = snprintf(categories + used, sizeof categories - used, "%s@%s", used ? " " : "", rct_category_names[k]);
      if (m < 0 || (size_t)m >= sizeof categories - used) break;
      used += (size_t)m;
    }
    n = snprintf(text, cap, "NOPERM query-type-filter: command '%s' is denied by this proxy (%s)", name, categories);
  } else if (reason == REASON_NOT_ALLOWED) {
    n = snprintf(text, cap, "NOPERM query-type-filter: command '%s' is not in a category this proxy allows", name);
  } else {
    n = snprintf(text, cap, "NOPERM query-type-filter: command '%s' is denied by this proxy", name);
  }
  if (n < 0) return 0;
  return (size_t)n >= cap ? cap - 1 : (size_t)n;
}

/* Answers the denied requests here (call_answer) and passes the rest on; only a batch with a doomed
 * EXEC needs on_responses. */
static int32_t filter_on_requests(void *p, sluice_call *call, sluice_batch *requests) {
  filter_instance *instance = p;
  const filter_config *c = instance->config;
  size_t count = host->batch_count(requests);
  host->metric_add(c->requests, count);
  sluice_batch *errors = NULL;
  partial_aborts *aborts = NULL;
  size_t refused = 0;
  int32_t status = SLUICE_OK;
  for (size_t i = 0; i < count && status == SLUICE_OK; i++) {
    const rct_command *entry = NULL, *parent = NULL;
    int reason = refusal_of(c, requests, i, &entry, &parent);
    enum partial_route route = partial_route_of(&instance->transaction, requests, i, reason != 0);
    if (route == PARTIAL_REFUSED) {
      char text[600];
      size_t len = refusal_text(c, requests, i, reason, entry, text, sizeof text);
      status = partial_refuse(call, i, &errors, text, len);
      refused++;
    } else if (route == PARTIAL_EXEC_ABORT) {
      status = partial_abort_exec(requests, i, &aborts);
    }
  }
  host->batch_free(errors);
  if (refused > 0) host->metric_add(c->denied, refused);
  if (status != SLUICE_OK) {
    partial_aborts_free(aborts);
    return host->call_fail(call, "cannot answer the denied requests", 33);
  }
  if (aborts == NULL) return host->call_pass(call);
  filter_call *state = calloc(1, sizeof *state);
  if (state == NULL) {
    partial_aborts_free(aborts);
    return host->call_fail(call, "out of memory", 13);
  }
  state->aborts = aborts;
  state->next = instance->calls;
  if (instance->calls != NULL) instance->calls->prev = state;
  instance->calls = state;
  host->call_set_data(call, state);
  return host->call_forward(call);
}

static int32_t filter_on_responses(void *p, sluice_call *call, const sluice_batch *requests, sluice_batch *responses) {
  (void)requests;
  filter_call *state = host->call_data(call);
  if (state == NULL) return host->call_respond(call, NULL);
  host->call_set_data(call, NULL);
  filter_unlink(p, state);
  int32_t status = partial_answer_aborts(state->aborts, responses);
  filter_call_free(state);
  if (status != SLUICE_OK) return host->call_fail(call, "cannot answer an aborted EXEC", 29);
  return host->call_respond(call, NULL);
}

static const sluice_transform_descriptor transforms[] = {
    {
        .struct_size = sizeof(sluice_transform_descriptor),
        .protocols = SLUICE_PROTOCOL_REDIS,
        .name = "query-type-filter",
        .description = "allows or denies requests by ACL category (@read, @write, @admin, @dangerous…) and command name",
        .config_new = filter_config_new,
        .config_free = filter_config_free,
        .instance_new = filter_instance_new,
        .instance_free = filter_instance_free,
        .on_requests = filter_on_requests,
        .on_responses = filter_on_responses,
    },
};

static const sluice_plugin_descriptor descriptor = {
    .magic = SLUICE_PLUGIN_MAGIC,
    .struct_size = sizeof(sluice_plugin_descriptor),
    .abi_major = SLUICE_ABI_VERSION_MAJOR,
    .abi_minor = SLUICE_ABI_VERSION_MINOR,
    .flags = SLUICE_PLUGIN_FLAG_REQUIRES_MINOR, /* call_pass, call_answer and redis_set_arg are since 1.1 */
    .transform_count = sizeof transforms / sizeof transforms[0],
    .name = "query-type-filter",
    .version = "1.0.0",
    .transforms = transforms,
};

SLUICE_PLUGIN_EXPORT const sluice_plugin_descriptor *sluice_plugin_init(const sluice_host_api *h) {
  if (h == NULL || h->abi_major != SLUICE_ABI_VERSION_MAJOR || h->abi_minor < 1) return NULL;
  host = h;
  return &descriptor;
}
