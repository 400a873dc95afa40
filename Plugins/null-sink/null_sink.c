/*
 * null-sink: a terminal step that answers every request with +OK (or a configured reply) and sends
 * nothing on: a black hole for load tests of the proxy itself, for shadow targets nobody reads,
 * for chains that are being built. Put it last before the chain's `- sink:` step, which the host
 * requires; that sink is then never contacted (sink connections are opened on first use).
 *
 *   - null-sink: {}                      # +OK to everything
 *   - null-sink: { reply: ":0" }         # or any simple reply
 *
 * Plain C99 against sluice_plugin.h; config helpers from Plugins/c-common/plugin_util.h.
 */
#include "sluice_plugin.h"

static const sluice_host_api *host;

#include "plugin_util.h"

typedef struct null_sink_config {
  pu_reply reply;
  sluice_metric *requests;
} null_sink_config;

static void null_sink_config_free(void *p) {
  null_sink_config *c = p;
  if (c == NULL) return;
  pu_reply_clear(&c->reply);
  free(c);
}

static int32_t null_sink_config_new(sluice_config_env *env, const sluice_config_node *node, void **out) {
  static const char *const allowed[] = {"reply", NULL};
  if (!pu_check_keys(env, node, allowed)) return SLUICE_ERROR;
  null_sink_config *c = calloc(1, sizeof *c);
  if (c == NULL) return SLUICE_ERROR;
  const sluice_config_node *reply = pu_get(node, "reply");
  int ok = reply != NULL ? pu_read_reply(env, reply, "reply", &c->reply)
                         : pu_set_reply_bytes(&c->reply, SLUICE_REDIS_SIMPLE_STRING, (const uint8_t *)"OK", 2);
  if (!ok || host->metric_counter(env, "null_sink_requests", 18, &c->requests) != SLUICE_OK) {
    null_sink_config_free(c);
    return SLUICE_ERROR;
  }
  *out = c;
  return SLUICE_OK;
}

/* Per connection: the shared config and the RESP version the client chose with HELLO. */
typedef struct null_sink_instance {
  const null_sink_config *config;
  int proto;
} null_sink_instance;

static int32_t null_sink_instance_new(void *config, sluice_instance_env *env, void **out) {
  (void)env;
  null_sink_instance *instance = calloc(1, sizeof *instance);
  if (instance == NULL) return SLUICE_ERROR;
  instance->config = config;
  instance->proto = 2;
  *out = instance;
  return SLUICE_OK;
}

static void null_sink_instance_free(void *instance) { free(instance); }

static int32_t null_sink_on_requests(void *p, sluice_call *call, sluice_batch *requests) {
  null_sink_instance *instance = p;
  const null_sink_config *c = instance->config;
  size_t count = host->batch_count(requests);
  sluice_batch *responses = host->batch_new(SLUICE_BATCH_RESPONSES, SLUICE_PROTOCOL_REDIS);
  if (responses == NULL) return host->call_fail(call, "out of memory", 13);
  for (size_t i = 0; i < count; i++) {
    int32_t status = SLUICE_OK;
    /* HELLO is answered as a server would, so client libraries can connect (redis-py 8: HELLO 3). */
    if (!pu_answer_hello(responses, i, requests, i, &instance->proto, "sluice-null-sink", &status)) {
      status = pu_put_reply(responses, i, &c->reply, instance->proto);
    }
    if (status != SLUICE_OK) {
      host->batch_free(responses);
      return host->call_fail(call, "cannot build the reply", 22);
    }
  }
  host->metric_add(c->requests, count);
  return host->call_respond(call, responses);
}

static const sluice_transform_descriptor transforms[] = {
    {
        .struct_size = sizeof(sluice_transform_descriptor),
        .protocols = SLUICE_PROTOCOL_REDIS,
        .name = "null-sink",
        .description = "terminal step: answers every request with +OK or a configured reply, sends nothing on",
        .config_new = null_sink_config_new,
        .config_free = null_sink_config_free,
        .instance_new = null_sink_instance_new,
        .instance_free = null_sink_instance_free,
        .on_requests = null_sink_on_requests,
    },
};

static const sluice_plugin_descriptor descriptor = {
    .magic = SLUICE_PLUGIN_MAGIC,
    .struct_size = sizeof(sluice_plugin_descriptor),
    .abi_major = SLUICE_ABI_VERSION_MAJOR,
    .abi_minor = SLUICE_ABI_VERSION_MINOR,
    .flags = 0,
    .transform_count = sizeof transforms / sizeof transforms[0],
    .name = "null-sink",
    .version = "1.0.0",
    .transforms = transforms,
};

SLUICE_PLUGIN_EXPORT const sluice_plugin_descriptor *sluice_plugin_init(const sluice_host_api *h) {
  if (h == NULL || h->abi_major != SLUICE_ABI_VERSION_MAJOR) return NULL;
  host = h;
  return &descriptor;
}
