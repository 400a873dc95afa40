/*
 * debug-returner: answers every request itself with a fixed reply, for testing chains (what does
 * a client do with this error? does the step before me merge replies correctly?). Nothing is
 * forwarded. A reply can be set for all commands and per command name:
 *
 *   - debug-returner: { reply: "+OK", replies: { GET: "$hello", INCR: ":42", DEL: "-ERR nope" } }
 *
 * Plain C99 against sluice_plugin.h; config helpers from Plugins/c-common/plugin_util.h.
 */
#include "sluice_plugin.h"

static const sluice_host_api *host;

#include "plugin_util.h"

#define MAX_COMMAND_LEN 64

typedef struct command_reply {
  char name[MAX_COMMAND_LEN + 1]; /* lowercase */
  pu_reply reply;
} command_reply;

typedef struct returner_config {
  pu_reply fallback; /* for commands without their own reply */
  command_reply *commands;
  size_t command_count;
  sluice_metric *replies;
} returner_config;

static void returner_config_free(void *p) {
  returner_config *c = p;
  if (c == NULL) return;
  pu_reply_clear(&c->fallback);
  for (size_t i = 0; i < c->command_count; i++) pu_reply_clear(&c->commands[i].reply);
  free(c->commands);
  free(c);
}

static int32_t returner_config_new(sluice_config_env *env, const sluice_config_node *node, void **out) {
  static const char *const allowed[] = {"reply", "replies", NULL};
  if (!pu_check_keys(env, node, allowed)) return SLUICE_ERROR;
  returner_config *c = calloc(1, sizeof *c);
  if (c == NULL) return SLUICE_ERROR;
  const sluice_config_node *reply = pu_get(node, "reply");
  if (reply != NULL) {
    if (!pu_read_reply(env, reply, "reply", &c->fallback)) goto fail;
  } else {
    c->fallback.type = SLUICE_REDIS_SIMPLE_STRING;
    if (!pu_set_reply_bytes(&c->fallback, SLUICE_REDIS_SIMPLE_STRING, (const uint8_t *)"OK", 2)) goto fail;
  }
  const sluice_config_node *replies = pu_get(node, "replies");
  if (replies != NULL) {
    if (host->node_kind(replies) != SLUICE_NODE_MAP || host->node_count(replies) == 0) {
      pu_fail(env, replies, "replies: expected a map of COMMAND: reply, e.g. { GET: \"$value\", DEL: \":1\" }");
      goto fail;
    }
    c->command_count = host->node_count(replies);
    c->commands = calloc(c->command_count, sizeof *c->commands);
    if (c->commands == NULL) goto fail;
    for (size_t i = 0; i < c->command_count; i++) {
      const sluice_config_node *key = NULL, *value = NULL;
      sluice_host_view name = {0};
      host->node_at(replies, i, &key, &value);
      if (host->node_scalar(key, &name) != SLUICE_OK || name.len == 0 ||
          !pu_lower_name(name.ptr, name.len, c->commands[i].name, sizeof c->commands[i].name)) {
        pu_fail(env, key, "replies: each key must be a command name of 1 to %d characters", MAX_COMMAND_LEN);
        goto fail;
      }
      for (size_t j = 0; j < i; j++) {
        if (strcmp(c->commands[j].name, c->commands[i].name) == 0) {
          pu_fail(env, key, "replies: command '%s' is given twice", c->commands[i].name);
          goto fail;
        }
      }
      char what[96];
      snprintf(what, sizeof what, "replies.%s", c->commands[i].name);
      if (!pu_read_reply(env, value, what, &c->commands[i].reply)) goto fail;
    }
  }
  if (host->metric_counter(env, "debug_returner_replies", 22, &c->replies) != SLUICE_OK) goto fail;
  *out = c;
  return SLUICE_OK;
fail:
  returner_config_free(c);
  return SLUICE_ERROR;
}

/* Per connection: the shared config and the RESP version the client chose with HELLO. */
typedef struct returner_instance {
  const returner_config *config;
  int proto;
} returner_instance;

static int32_t returner_instance_new(void *config, sluice_instance_env *env, void **out) {
  (void)env;
  returner_instance *instance = calloc(1, sizeof *instance);
  if (instance == NULL) return SLUICE_ERROR;
  instance->config = config;
  instance->proto = 2;
  *out = instance;
  return SLUICE_OK;
}

static void returner_instance_free(void *instance) { free(instance); }

/* The reply for request i: its command's own, or the fallback. */
static const pu_reply *reply_for(const returner_config *c, const sluice_batch *requests, size_t i) {
  if (c->command_count == 0) return &c->fallback;
  sluice_host_view name = {0};
  size_t argc = 0;
  if (host->redis_args(requests, i, &name, 1, &argc) != SLUICE_OK || argc == 0) return &c->fallback;
  for (size_t k = 0; k < c->command_count; k++) {
    if (pu_equals_ignoring_case(name.ptr, name.len, c->commands[k].name)) return &c->commands[k].reply;
  }
  return &c->fallback;
}

static int32_t returner_on_requests(void *p, sluice_call *call, sluice_batch *requests) {
  returner_instance *instance = p;
  const returner_config *c = instance->config;
  size_t count = host->batch_count(requests);
  sluice_batch *responses = host->batch_new(SLUICE_BATCH_RESPONSES, SLUICE_PROTOCOL_REDIS);
  if (responses == NULL) return host->call_fail(call, "out of memory", 13);
  for (size_t i = 0; i < count; i++) {
    const pu_reply *reply = reply_for(c, requests, i);
    int32_t status = SLUICE_OK;
    if (reply == &c->fallback && pu_answer_hello(responses, i, requests, i, &instance->proto, "sluice-debug-returner", &status)) {
      /* HELLO without a reply of its own: answered as a server would, so clients can connect */
    } else {
      status = pu_put_reply(responses, i, reply, instance->proto);
    }
    if (status != SLUICE_OK) {
      host->batch_free(responses);
      return host->call_fail(call, "cannot build the reply", 22);
    }
  }
  host->metric_add(c->replies, count);
  return host->call_respond(call, responses);
}

static const sluice_transform_descriptor transforms[] = {
    {
        .struct_size = sizeof(sluice_transform_descriptor),
        .protocols = SLUICE_PROTOCOL_REDIS,
        .name = "debug-returner",
        .description = "answers every request itself with a fixed reply (per command if configured), for testing chains",
        .config_new = returner_config_new,
        .config_free = returner_config_free,
        .instance_new = returner_instance_new,
        .instance_free = returner_instance_free,
        .on_requests = returner_on_requests,
    },
};

static const sluice_plugin_descriptor descriptor = {
    .magic = SLUICE_PLUGIN_MAGIC,
    .struct_size = sizeof(sluice_plugin_descriptor),
    .abi_major = SLUICE_ABI_VERSION_MAJOR,
    .abi_minor = SLUICE_ABI_VERSION_MINOR,
    .flags = 0,
    .transform_count = sizeof transforms / sizeof transforms[0],
    .name = "debug-returner",
    .version = "1.0.0",
    .transforms = transforms,
};

SLUICE_PLUGIN_EXPORT const sluice_plugin_descriptor *sluice_plugin_init(const sluice_host_api *h) {
  if (h == NULL || h->abi_major != SLUICE_ABI_VERSION_MAJOR) return NULL;
  host = h;
  return &descriptor;
}
