/*
 * command-filter: two Redis transforms written in plain C99 against sluice_plugin.h, no Swift.
 *
 *   deny:  requests whose command is in a configured list are answered by the plugin with an error;
 *          the others go on down the chain. A command denied inside MULTI dooms the transaction, as
 *          a command that fails to queue does in Redis: its EXEC is sent as DISCARD and answered
 *          with EXECABORT, so nothing of the transaction runs.
 *   count: counts requests into a metric and forwards everything.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_plugin.h"

static const sluice_host_api *host;

#define MAX_COMMAND_LEN 64

/* ---- deny ------------------------------------------------------------------------------------ */

typedef struct deny_config {
  size_t count;
  char (*commands)[MAX_COMMAND_LEN + 1]; /* lowercase, NUL-terminated */
  char *message;                         /* custom error text, or NULL */
  sluice_metric *denied;
  sluice_metric *requests;
} deny_config;

/* What deny does with one request of a batch. */
enum deny_route {
  ROUTE_PASS = 0,       /* goes down the chain unchanged */
  ROUTE_DENIED = 1,     /* answered here with an error (call_answer); the host sends the rest */
  ROUTE_EXEC_ABORT = 2, /* EXEC of a doomed transaction: sent as DISCARD, answered with EXECABORT */
};

#define EXECABORT_MESSAGE "EXECABORT Transaction discarded because of previous errors."

/* The EXECs of one call that were sent as DISCARD, whose +OK becomes EXECABORT in on_responses.
 * Linked into its instance until then, so instance_free frees those of abandoned calls. */
typedef struct exec_aborts {
  struct exec_aborts *next, *prev;
  size_t count;
  size_t indices[]; /* request indices */
} exec_aborts;

static void config_fail(sluice_config_env *env, const sluice_config_node *node, const char *message) {
  host->config_error(env, node, message, strlen(message));
}

static void deny_config_free(void *p) {
  deny_config *c = p;
  if (c == NULL) return;
  free(c->commands);
  free(c->message);
  free(c);
}

static int32_t deny_config_new(sluice_config_env *env, const sluice_config_node *node, void **out) {
  if (host->node_kind(node) != SLUICE_NODE_MAP) {
    config_fail(env, node, "expected a map: { commands: [NAME, ...], message: TEXT }");
    return SLUICE_ERROR;
  }
  for (size_t i = 0; i < host->node_count(node); i++) {
    const sluice_config_node *key = NULL, *value = NULL;
    sluice_host_view text;
    host->node_at(node, i, &key, &value);
    if (host->node_scalar(key, &text) != SLUICE_OK ||
        !((text.len == 8 && memcmp(text.ptr, "commands", 8) == 0) ||
          (text.len == 7 && memcmp(text.ptr, "message", 7) == 0))) {
      config_fail(env, key, "unknown key (expected: commands, message)");
      return SLUICE_ERROR;
    }
  }
  const sluice_config_node *list = NULL;
  if (host->node_map_get(node, "commands", 8, &list) != SLUICE_OK ||
      host->node_kind(list) != SLUICE_NODE_SEQUENCE || host->node_count(list) == 0) {
    config_fail(env, list ? list : node, "commands: expected a non-empty sequence of command names");
    return SLUICE_ERROR;
  }
  deny_config *c = calloc(1, sizeof *c);
  if (c == NULL) return SLUICE_ERROR;
  c->count = host->node_count(list);
  c->commands = calloc(c->count, sizeof *c->commands);
  if (c->commands == NULL) {
    deny_config_free(c);
    return SLUICE_ERROR;
  }
  for (size_t i = 0; i < c->count; i++) {
    const sluice_config_node *item = NULL;
    sluice_host_view name;
    host->node_at(list, i, NULL, &item);
    if (host->node_scalar(item, &name) != SLUICE_OK || name.len == 0 || name.len > MAX_COMMAND_LEN) {
      config_fail(env, item, "commands: each item must be a command name of 1 to 64 characters");
      deny_config_free(c);
      return SLUICE_ERROR;
    }
    for (size_t j = 0; j < name.len; j++) c->commands[i][j] = (char)tolower(name.ptr[j]);
    c->commands[i][name.len] = '\0';
  }
  const sluice_config_node *message = NULL;
  if (host->node_map_get(node, "message", 7, &message) == SLUICE_OK) {
    sluice_host_view text;
    if (host->node_scalar(message, &text) != SLUICE_OK || memchr(text.ptr, '\n', text.len) ||
        memchr(text.ptr, '\r', text.len)) {
      config_fail(env, message, "message: expected one line of text");
      deny_config_free(c);
      return SLUICE_ERROR;
    }
    c->message = malloc(text.len + 1);
    if (c->message == NULL) {
      deny_config_free(c);
      return SLUICE_ERROR;
    }
    memcpy(c->message, text.ptr, text.len);
    c->message[text.len] = '\0';
  }
  if (host->metric_counter(env, "command_filter_denied", 21, &c->denied) != SLUICE_OK ||
      host->metric_counter(env, "command_filter_requests", 23, &c->requests) != SLUICE_OK) {
    deny_config_free(c);
    return SLUICE_ERROR;
  }
  *out = c;
  return SLUICE_OK;
}

/* Where the client's connection stands with respect to MULTI / EXEC, as the backend sees it (the
 * requests this transform let through). Requests of one connection arrive in order, across batches,
 * so the state carries from one batch to the next. */
enum transaction_state {
  TRANSACTION_NONE = 0,   /* no MULTI open */
  TRANSACTION_OPEN = 1,   /* MULTI passed; commands are being queued */
  TRANSACTION_DOOMED = 2, /* MULTI passed and a command of it was denied here: its EXEC must abort */
};

/* Per connection: the shared read-only config, the transaction state and the calls waiting for
 * their EXECABORTs. */
typedef struct deny_instance {
  deny_config *config;
  enum transaction_state transaction;
  exec_aborts *pending;
} deny_instance;

static int32_t deny_instance_new(void *config, sluice_instance_env *env, void **out) {
  (void)env;
  deny_instance *instance = calloc(1, sizeof *instance);
  if (instance == NULL) return SLUICE_ERROR;
  instance->config = config;
  *out = instance;
  return SLUICE_OK;
}

static void unlink_aborts(deny_instance *instance, exec_aborts *aborts) {
  if (aborts->prev != NULL) aborts->prev->next = aborts->next; else instance->pending = aborts->next;
  if (aborts->next != NULL) aborts->next->prev = aborts->prev;
}

/* The connection closed: the states of calls that never got their responses are freed here. */
static void deny_instance_free(void *p) {
  deny_instance *instance = p;
  while (instance->pending != NULL) {
    exec_aborts *aborts = instance->pending;
    unlink_aborts(instance, aborts);
    free(aborts);
  }
  free(instance);
}

/* Index into config->commands of request i's command, or -1. */
static int denied_command(const deny_config *c, const sluice_batch *batch, size_t i) {
  sluice_host_view name;
  size_t argc = 0;
  if (host->redis_args(batch, i, &name, 1, &argc) != SLUICE_OK || argc == 0) return -1;
  if (name.len == 0 || name.len > MAX_COMMAND_LEN) return -1;
  for (size_t k = 0; k < c->count; k++) {
    const char *candidate = c->commands[k];
    size_t j = 0;
    while (j < name.len && candidate[j] != '\0' && tolower(name.ptr[j]) == candidate[j]) j++;
    if (j == name.len && candidate[j] == '\0') return (int)k;
  }
  return -1;
}

static int32_t put_denied_error(const deny_config *c, sluice_batch *responses, size_t index, const char *command) {
  char text[256];
  int n = c->message ? snprintf(text, sizeof text, "ERR command-filter: %s", c->message)
                     : snprintf(text, sizeof text, "ERR command-filter: command '%s' is denied by this proxy", command);
  if (n < 0) return SLUICE_ERROR;
  if ((size_t)n >= sizeof text) n = (int)sizeof text - 1;
  return host->redis_put_reply(responses, index, SLUICE_REDIS_ERROR, (const uint8_t *)text, (size_t)n, 0);
}

/* Whether a command name (binary, any case) equals a lowercase word. */
static int name_is(sluice_host_view name, const char *word) {
  size_t n = strlen(word);
  if (name.len != n) return 0;
  for (size_t j = 0; j < n; j++) {
    if (tolower(name.ptr[j]) != word[j]) return 0;
  }
  return 1;
}

/* The route of request i, given whether it is denied; advances the connection's transaction state
 * over the requests that reach the backend (a denied MULTI or EXEC opens or closes nothing). */
static enum deny_route deny_route_of(deny_instance *instance, const sluice_batch *batch, size_t i, int denied) {
  if (denied) {
    if (instance->transaction == TRANSACTION_OPEN) instance->transaction = TRANSACTION_DOOMED;
    return ROUTE_DENIED;
  }
  sluice_host_view name;
  size_t argc = 0;
  if (host->redis_args(batch, i, &name, 1, &argc) != SLUICE_OK || argc == 0) return ROUTE_PASS;
  if (name.len < 4 || name.len > 7) return ROUTE_PASS; /* exec, multi, reset, discard */
  if (name_is(name, "multi")) {
    /* A nested MULTI is an error in Redis that leaves the open transaction as it was. */
    if (instance->transaction == TRANSACTION_NONE) instance->transaction = TRANSACTION_OPEN;
  } else if (name_is(name, "exec")) {
    enum transaction_state was = instance->transaction;
    instance->transaction = TRANSACTION_NONE;
    if (was == TRANSACTION_DOOMED) return ROUTE_EXEC_ABORT;
  } else if (name_is(name, "discard") || name_is(name, "reset")) {
    instance->transaction = TRANSACTION_NONE;
  }
  return ROUTE_PASS;
}

/* Answers the denied requests here (call_answer) and passes the rest on: the host sends only those
 * and puts the errors back in their places. Only a batch with a doomed EXEC needs on_responses. */
static int32_t deny_on_requests(void *p, sluice_call *call, sluice_batch *requests) {
  deny_instance *instance = p;
  const deny_config *c = instance->config;
  size_t count = host->batch_count(requests);
  host->metric_add(c->requests, count);
  sluice_batch *errors = NULL;  /* made at the first denied request */
  exec_aborts *aborts = NULL;   /* made at the first doomed EXEC */
  int32_t status = SLUICE_OK;
  for (size_t i = 0; i < count && status == SLUICE_OK; i++) {
    int k = denied_command(c, requests, i);
    enum deny_route route = deny_route_of(instance, requests, i, k >= 0);
    if (route == ROUTE_DENIED) {
      if (errors == NULL) errors = host->batch_new(SLUICE_BATCH_RESPONSES, SLUICE_PROTOCOL_REDIS);
      size_t at = errors ? host->batch_count(errors) : 0;
      status = errors ? put_denied_error(c, errors, at, c->commands[k]) : SLUICE_ERROR;
      if (status == SLUICE_OK) status = host->call_answer(call, i, errors, at);
      host->metric_add(c->denied, 1);
    } else if (route == ROUTE_EXEC_ABORT) {
      /* DISCARD ends the transaction at the backend without running it. */
      if (aborts == NULL && (aborts = calloc(1, sizeof *aborts + count * sizeof aborts->indices[0])) == NULL) {
        status = SLUICE_ERROR;
      } else {
        aborts->indices[aborts->count++] = i;
        status = host->redis_set_arg(requests, i, 0, (const uint8_t *)"DISCARD", 7);
      }
    }
  }
  host->batch_free(errors); /* NULL is ignored; the answers share its bytes */
  if (status != SLUICE_OK) {
    free(aborts);
    return host->call_fail(call, "cannot answer a denied command", 30);
  }
  if (aborts == NULL) return host->call_pass(call); /* nothing to change on the way back */
  aborts->next = instance->pending;
  if (instance->pending != NULL) instance->pending->prev = aborts;
  instance->pending = aborts;
  host->call_set_data(call, aborts);
  return host->call_forward(call);
}

/* Turns the +OK of each DISCARD that stood for a doomed EXEC into EXECABORT. */
static int32_t deny_on_responses(void *p, sluice_call *call, const sluice_batch *requests,
                                 sluice_batch *responses) {
  (void)requests;
  exec_aborts *aborts = host->call_data(call);
  host->call_set_data(call, NULL);
  unlink_aborts(p, aborts);
  int32_t status = SLUICE_OK;
  for (size_t j = 0; j < aborts->count && status == SLUICE_OK; j++) {
    status = host->redis_put_reply(responses, aborts->indices[j], SLUICE_REDIS_ERROR,
                                   (const uint8_t *)EXECABORT_MESSAGE, sizeof EXECABORT_MESSAGE - 1, 0);
  }
  free(aborts);
  if (status != SLUICE_OK) return host->call_fail(call, "cannot answer an aborted EXEC", 29);
  return host->call_respond(call, NULL);
}

/* ---- count ----------------------------------------------------------------------------------- */

static int32_t count_config_new(sluice_config_env *env, const sluice_config_node *node, void **out) {
  /* Only nothing or an empty map is accepted. */
  int32_t kind = host->node_kind(node);
  if (kind != SLUICE_NODE_NULL && !(kind == SLUICE_NODE_MAP && host->node_count(node) == 0)) {
    config_fail(env, node, "count takes no options (write 'count: {}')");
    return SLUICE_ERROR;
  }
  sluice_metric *counter = NULL;
  if (host->metric_counter(env, "command_filter_counted", 22, &counter) != SLUICE_OK) return SLUICE_ERROR;
  *out = counter;
  return SLUICE_OK;
}

/* The instance is the counter itself. */
static int32_t count_instance_new(void *config, sluice_instance_env *env, void **out) {
  (void)env;
  *out = config;
  return SLUICE_OK;
}

static int32_t count_on_requests(void *instance, sluice_call *call, sluice_batch *requests) {
  host->metric_add((sluice_metric *)instance, host->batch_count(requests));
  return host->call_forward(call);
}

/* ---- descriptor -------------------------------------------------------------------------------- */

static const sluice_transform_descriptor transforms[] = {
    {
        .struct_size = sizeof(sluice_transform_descriptor),
        .protocols = SLUICE_PROTOCOL_REDIS,
        .name = "deny",
        .description = "answers configured commands with an error instead of sending them",
        .config_new = deny_config_new,
        .config_free = deny_config_free,
        .instance_new = deny_instance_new,
        .instance_free = deny_instance_free,
        .on_requests = deny_on_requests,
        .on_responses = deny_on_responses,
    },
    {
        .struct_size = sizeof(sluice_transform_descriptor),
        .protocols = SLUICE_PROTOCOL_REDIS,
        .name = "count",
        .description = "counts requests (metric sluice_plugin_command_filter_counted_total)",
        .config_new = count_config_new,
        .instance_new = count_instance_new,
        .on_requests = count_on_requests,
    },
};

static const sluice_plugin_descriptor descriptor = {
    .magic = SLUICE_PLUGIN_MAGIC,
    .struct_size = sizeof(sluice_plugin_descriptor),
    .abi_major = SLUICE_ABI_VERSION_MAJOR,
    .abi_minor = SLUICE_ABI_VERSION_MINOR,
    .flags = SLUICE_PLUGIN_FLAG_REQUIRES_MINOR,
    .transform_count = sizeof transforms / sizeof transforms[0],
    .name = "command-filter",
    .version = "1.0.0",
    .transforms = transforms,
};

SLUICE_PLUGIN_EXPORT const sluice_plugin_descriptor *sluice_plugin_init(const sluice_host_api *h) {
  /* call_pass, call_answer and redis_set_arg are since 1.1; the descriptor's flag makes an older host
   * refuse this plugin by name. */
  if (h == NULL || h->abi_major != SLUICE_ABI_VERSION_MAJOR || h->abi_minor < 1) {
    return NULL;
  }
  host = h;
  return &descriptor;
}
