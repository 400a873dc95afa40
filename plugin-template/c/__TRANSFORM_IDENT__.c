/*
 * __TRANSFORM_NAME__: a Sluice transform in plain C99, started with `sluice new-transform`.
 *
 *     chains:
 *       main:
 *         - __TRANSFORM_NAME__: { deny: [FLUSHALL, KEYS], report_every_ms: 10000 }
 *         - sink: primary
 *
 * As generated it
 *   - answers the commands listed under deny: with an error, request by request: in a pipelined
 *     batch only the denied commands are answered here (call_answer) and the others go on down the
 *     chain (call_pass); the host puts the errors back in their places, so the client gets every
 *     reply in order;
 *   - counts requests and denials in the metrics sluice_plugin___TRANSFORM_IDENT___requests_total and
 *     sluice_plugin___TRANSFORM_IDENT___denied_total;
 *   - with report_every_ms: N, logs each connection's count every N ms while it changes (a timer
 *     per connection, cancelled when the connection closes).
 *
 * include/sluice_plugin.h documents every host function: ownership, lifetime and thread rules.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_plugin.h"

/* The host's function table, kept by sluice_plugin_init for the life of the process. */
static const sluice_host_api *host;

#define MAX_COMMAND_LEN 64

/* ---- configuration: made once per chain position, then shared read-only ----------------------- */

typedef struct config {
  size_t deny_count;
  char (*deny)[MAX_COMMAND_LEN + 1]; /* lowercase, NUL-terminated */
  uint64_t report_every_ms;          /* 0: no report */
  sluice_metric *requests;
  sluice_metric *denied;
} config;

/* Reports a problem at the node that has it: the user sees
 * "sluice.yaml:LINE:COLUMN: main[0] __TRANSFORM_NAME__: message" and Sluice does not start. */
static int32_t config_error(sluice_config_env *env, const sluice_config_node *node, const char *message) {
  host->config_error(env, node, message, strlen(message));
  return SLUICE_ERROR;
}

static int view_is(sluice_host_view view, const char *word) {
  return view.len == strlen(word) && memcmp(view.ptr, word, view.len) == 0;
}

static char lowercase(uint8_t c) { return (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c); }

static void config_free(void *p) {
  config *c = p;
  if (c == NULL) return;
  free(c->deny);
  free(c);
}

/* deny: a sequence of command names. */
static int32_t read_deny(sluice_config_env *env, const sluice_config_node *list, config *c) {
  if (host->node_kind(list) != SLUICE_NODE_SEQUENCE) return config_error(env, list, "deny: expected a sequence");
  c->deny_count = host->node_count(list);
  c->deny = calloc(c->deny_count ? c->deny_count : 1, sizeof *c->deny);
  if (c->deny == NULL) return config_error(env, list, "deny: out of memory");
  for (size_t i = 0; i < c->deny_count; i++) {
    const sluice_config_node *item = NULL;
    sluice_host_view name = {0};
    host->node_at(list, i, NULL, &item);
    if (host->node_scalar(item, &name) != SLUICE_OK || name.len == 0 || name.len > MAX_COMMAND_LEN) {
      return config_error(env, item, "deny: every item must be a command name of 1 to 64 characters");
    }
    for (size_t j = 0; j < name.len; j++) c->deny[i][j] = lowercase(name.ptr[j]);
  }
  return SLUICE_OK;
}

/* report_every_ms: a whole number of milliseconds. */
static int32_t read_report_every(sluice_config_env *env, const sluice_config_node *node, config *c) {
  sluice_host_view text = {0};
  if (host->node_kind(node) == SLUICE_NODE_NULL) return SLUICE_OK;
  int number = host->node_scalar(node, &text) == SLUICE_OK && text.len > 0 && text.len < 12;
  c->report_every_ms = 0;
  for (size_t j = 0; number && j < text.len; j++) {
    number = text.ptr[j] >= '0' && text.ptr[j] <= '9';
    c->report_every_ms = c->report_every_ms * 10 + (uint64_t)(text.ptr[j] - '0');
  }
  if (!number) return config_error(env, node, "report_every_ms: expected a whole number of milliseconds");
  return SLUICE_OK;
}

static int32_t config_new(sluice_config_env *env, const sluice_config_node *node, void **out) {
  int32_t kind = host->node_kind(node);
  if (kind != SLUICE_NODE_NULL && kind != SLUICE_NODE_MAP) {
    return config_error(env, node, "expected a map: { deny: [NAME, ...], report_every_ms: N }");
  }
  config *c = calloc(1, sizeof *c);
  if (c == NULL) return config_error(env, node, "out of memory");
  int32_t status = SLUICE_OK;
  for (size_t i = 0; i < host->node_count(node) && status == SLUICE_OK; i++) {
    const sluice_config_node *key = NULL, *value = NULL;
    sluice_host_view name = {(const uint8_t *)"", 0};
    host->node_at(node, i, &key, &value);
    host->node_scalar(key, &name);
    if (view_is(name, "deny")) {
      status = read_deny(env, value, c);
    } else if (view_is(name, "report_every_ms")) {
      status = read_report_every(env, value, c);
    } else {
      char message[160];
      snprintf(message, sizeof message, "unknown key '%.*s' (expected one of: deny, report_every_ms)",
               (int)(name.len > 64 ? 64 : name.len), (const char *)name.ptr);
      status = config_error(env, key, message);
    }
  }
  if (status == SLUICE_OK &&
      (host->metric_counter(env, "__TRANSFORM_IDENT___requests", strlen("__TRANSFORM_IDENT___requests"), &c->requests) != SLUICE_OK ||
       host->metric_counter(env, "__TRANSFORM_IDENT___denied", strlen("__TRANSFORM_IDENT___denied"), &c->denied) != SLUICE_OK)) {
    status = config_error(env, node, "cannot create the metrics");
  }
  if (status != SLUICE_OK) {
    config_free(c);
    return status;
  }
  *out = c;
  return SLUICE_OK;
}

/* ---- one instance per client connection, used from its thread only (no locks) ----------------- */

typedef struct instance {
  const config *config;
  sluice_instance_env *env;
  sluice_timer *report_timer; /* the pending report, or NULL */
  uint64_t requests, denied;  /* this connection's counts */
  uint64_t reported_requests; /* requests at the last report */
} instance;

static void report(void *p);

static void schedule_report(instance *in) {
  if (host->timer_start(in->env, in->config->report_every_ms, report, in, &in->report_timer) != SLUICE_OK) {
    in->report_timer = NULL;
  }
}

/* The timer fired (its handle is spent): log the count if it changed, then start the next one. */
static void report(void *p) {
  instance *in = p;
  in->report_timer = NULL;
  if (in->requests != in->reported_requests) {
    sluice_host_view client = {0};
    char line[200];
    host->client_address(in->env, &client);
    int n = snprintf(line, sizeof line, "__TRANSFORM_NAME__: client %.*s: %" PRIu64 " requests, %" PRIu64 " denied",
                     (int)(client.len > 64 ? 64 : client.len), client.len ? (const char *)client.ptr : "",
                     in->requests, in->denied);
    if (n > 0) host->log(SLUICE_LOG_INFO, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    in->reported_requests = in->requests;
  }
  schedule_report(in);
}

static int32_t instance_new(void *c, sluice_instance_env *env, void **out) {
  instance *in = calloc(1, sizeof *in);
  if (in == NULL) return SLUICE_ERROR;
  in->config = c;
  in->env = env;
  if (in->config->report_every_ms > 0) schedule_report(in);
  *out = in;
  return SLUICE_OK;
}

/* The connection closed. Its timer is cancelled here, before the instance it points at is freed. */
static void instance_free(void *p) {
  instance *in = p;
  if (in->report_timer != NULL) host->timer_cancel(in->report_timer);
  free(in);
}

/* The configured name request i's command matches (lowercase), or NULL. */
static const char *denied_command(const config *c, const sluice_batch *requests, size_t i) {
  sluice_host_view name;
  size_t argc = 0;
  if (host->redis_args(requests, i, &name, 1, &argc) != SLUICE_OK || argc == 0) return NULL;
  for (size_t k = 0; k < c->deny_count; k++) {
    size_t j = 0;
    while (j < name.len && c->deny[k][j] != '\0' && lowercase(name.ptr[j]) == c->deny[k][j]) j++;
    if (j == name.len && c->deny[k][j] == '\0') return c->deny[k];
  }
  return NULL;
}

/* Every batch must end in exactly one of call_forward, call_pass, call_respond or call_fail. The
 * decision is made request by request: a denied command is answered here, the rest go on.
 * (Inside MULTI a denial should doom the transaction: see Plugins/command-filter in Sluice.) */
static int32_t on_requests(void *p, sluice_call *call, sluice_batch *requests) {
  instance *in = p;
  const config *c = in->config;
  size_t count = host->batch_count(requests);
  host->metric_add(c->requests, count);
  in->requests += count;
  sluice_batch *errors = NULL; /* the error replies; made at the first denied command */
  for (size_t i = 0; i < count; i++) {
    const char *command = denied_command(c, requests, i);
    if (command == NULL) continue;
    if (errors == NULL) errors = host->batch_new(SLUICE_BATCH_RESPONSES, SLUICE_PROTOCOL_REDIS);
    char text[128];
    int n = snprintf(text, sizeof text, "ERR __TRANSFORM_NAME__: '%s' is denied", command);
    size_t at = errors != NULL ? host->batch_count(errors) : 0;
    int32_t status = errors == NULL || n < 0 ? SLUICE_ERROR
                     : host->redis_put_reply(errors, at, SLUICE_REDIS_ERROR, (const uint8_t *)text,
                                             (size_t)n < sizeof text ? (size_t)n : sizeof text - 1, 0);
    if (status == SLUICE_OK) status = host->call_answer(call, i, errors, at);
    if (status != SLUICE_OK) {
      host->batch_free(errors);
      return host->call_fail(call, "cannot answer a denied command", strlen("cannot answer a denied command"));
    }
    host->metric_add(c->denied, 1);
    in->denied++;
  }
  host->batch_free(errors); /* the answers share its bytes; NULL is ignored */
  return host->call_pass(call);   /* the responses need nothing from us on the way back */
}

/* ---- what the plugin offers ------------------------------------------------------------------- */

static const sluice_transform_descriptor transforms[] = {{
    .struct_size = sizeof(sluice_transform_descriptor),
    /* What it handles; a chain that a source of another protocol runs may not hold it. A CQL
     * transform adds SLUICE_PROTOCOL_CQL and reads CQL batches with the cql_* functions (ABI 1.3). */
    .protocols = SLUICE_PROTOCOL_REDIS,
    .name = "__TRANSFORM_NAME__",
    .description = "answers denied commands with an error; counts requests",
    .config_new = config_new,
    .config_free = config_free,
    .instance_new = instance_new,
    .instance_free = instance_free,
    .on_requests = on_requests,
}};

static const sluice_plugin_descriptor descriptor = {
    .magic = SLUICE_PLUGIN_MAGIC,
    .struct_size = sizeof(sluice_plugin_descriptor),
    .abi_major = SLUICE_ABI_VERSION_MAJOR,
    .abi_minor = SLUICE_ABI_VERSION_MINOR,
    /* call_pass and call_answer are ABI 1.1: a host older than this header's minor refuses the
     * plugin by name instead of letting it call past the end of its table. */
    .flags = SLUICE_PLUGIN_FLAG_REQUIRES_MINOR,
    .transform_count = sizeof transforms / sizeof transforms[0],
    .name = "__TRANSFORM_NAME__",
    .version = "0.1.0",
    .transforms = transforms,
};

SLUICE_PLUGIN_EXPORT const sluice_plugin_descriptor *sluice_plugin_init(const sluice_host_api *h) {
  if (h == NULL || h->abi_major != SLUICE_ABI_VERSION_MAJOR) return NULL;
  host = h;
  return &descriptor;
}
