/*
 * coalesce: holds a client's request batches until max_requests requests are waiting or the oldest
 * has waited max_wait_ms (a host timer), then sends them to the target as one batch and answers
 * each held call with its own slice of the replies, in the order the calls arrived.
 *
 *   - coalesce: { target: primary, max_requests: 64, max_wait_ms: 2 }
 *
 * Coalescing is per client connection: one batch carries one client's requests only, on that
 * client's own route to the target (its SELECT, AUTH and HELLO apply). Plain C99 against
 * sluice_plugin.h.
 */
#include "sluice_plugin.h"

static const sluice_host_api *host;

#include "plugin_util.h"

typedef struct co_config {
  sluice_target *target;
  uint64_t max_requests, max_wait_ms;
  sluice_metric *requests, *batches, *full_flushes, *timer_flushes, *failures;
} co_config;

static void co_config_free(void *p) { free(p); }

static int32_t co_config_new(sluice_config_env *env, const sluice_config_node *node, void **out) {
  static const char *const allowed[] = {"target", "max_requests", "max_wait_ms", NULL};
  if (!pu_check_keys(env, node, allowed)) return SLUICE_ERROR;
  const sluice_config_node *target = pu_get(node, "target");
  sluice_host_view name = {0};
  if (target == NULL || host->node_scalar(target, &name) != SLUICE_OK || name.len == 0) {
    pu_fail(env, target != NULL ? target : node, "target: required, the sink or chain the batches go to");
    return SLUICE_ERROR;
  }
  co_config *c = calloc(1, sizeof *c);
  if (c == NULL) return SLUICE_ERROR;
  c->max_requests = 64;
  c->max_wait_ms = 1;
  if (host->target_resolve(env, (const char *)name.ptr, name.len, &c->target) != SLUICE_OK) {
    pu_fail(env, target, "target: no sink or chain named '%.*s'", (int)name.len, (const char *)name.ptr);
    goto fail;
  }
  if (!pu_read_u64(env, node, "max_requests", 1, 1000000, &c->max_requests) ||
      !pu_read_u64(env, node, "max_wait_ms", 0, 60000, &c->max_wait_ms) ||
      host->metric_counter(env, "coalesce_requests", 17, &c->requests) != SLUICE_OK ||
      host->metric_counter(env, "coalesce_batches", 16, &c->batches) != SLUICE_OK ||
      host->metric_counter(env, "coalesce_full_flushes", 21, &c->full_flushes) != SLUICE_OK ||
      host->metric_counter(env, "coalesce_timer_flushes", 22, &c->timer_flushes) != SLUICE_OK ||
      host->metric_counter(env, "coalesce_failures", 17, &c->failures) != SLUICE_OK) {
    goto fail;
  }
  *out = c;
  return SLUICE_OK;
fail:
  free(c);
  return SLUICE_ERROR;
}

/* A call held until its batch goes (its lent request batch stays valid until it is completed). */
typedef struct co_held {
  struct co_held *next;
  sluice_call *call;
  sluice_batch *requests;
  size_t count;
} co_held;

/* One batch sent: its calls in arrival order, answered when the replies are in and every earlier
 * flight was answered (flights are answered strictly in the order they were sent). */
typedef struct co_flight {
  struct co_flight *next;
  struct co_instance *instance;
  co_held *calls;
  size_t count;
  int done;
  int32_t status;
  sluice_batch *responses; /* OWNED once done with SLUICE_OK */
  char error[200];
} co_flight;

typedef struct co_instance {
  const co_config *config;
  sluice_instance_env *env;
  co_held *held_head, *held_tail;
  size_t held_requests;
  sluice_timer *timer;
  co_flight *flights_head, *flights_tail;
} co_instance;

static int32_t co_instance_new(void *config, sluice_instance_env *env, void **out) {
  co_instance *instance = calloc(1, sizeof *instance);
  if (instance == NULL) return SLUICE_ERROR;
  instance->config = config;
  instance->env = env;
  *out = instance;
  return SLUICE_OK;
}

static void free_held(co_held *h) {
  while (h != NULL) {
    co_held *next = h->next;
    free(h);
    h = next;
  }
}

/* Abandoned calls need nothing from us but their memory (the host invalidates them). */
static void co_instance_free(void *p) {
  co_instance *instance = p;
  if (instance->timer != NULL) host->timer_cancel(instance->timer);
  free_held(instance->held_head);
  while (instance->flights_head != NULL) {
    co_flight *f = instance->flights_head;
    instance->flights_head = f->next;
    free_held(f->calls);
    host->batch_free(f->responses);
    free(f);
  }
  free(instance);
}

/* Answers every finished flight at the head of the queue, in order. */
static void answer_flights(co_instance *instance) {
  const co_config *c = instance->config;
  while (instance->flights_head != NULL && instance->flights_head->done) {
    co_flight *f = instance->flights_head;
    instance->flights_head = f->next;
    if (instance->flights_head == NULL) instance->flights_tail = NULL;
    size_t at = 0;
    for (co_held *h = f->calls; h != NULL; h = h->next) {
      if (f->status != SLUICE_OK) {
        host->call_fail(h->call, f->error, strlen(f->error));
        continue;
      }
      sluice_batch *mine = host->batch_new(SLUICE_BATCH_RESPONSES, SLUICE_PROTOCOL_REDIS);
      int ok = mine != NULL;
      for (size_t k = 0; k < h->count && ok; k++) ok = host->batch_insert_from(mine, k, f->responses, at + k) == SLUICE_OK;
      at += h->count;
      if (!ok) {
        host->batch_free(mine);
        host->call_fail(h->call, "cannot split the replies", 24);
      } else if (host->call_respond(h->call, mine) != SLUICE_OK) {
        host->metric_add(c->failures, 1);
      }
    }
    free_held(f->calls);
    host->batch_free(f->responses);
    free(f);
  }
}

static void on_sent(void *user_data, int32_t status, sluice_batch *responses, sluice_host_view error) {
  co_flight *f = user_data;
  f->done = 1;
  f->status = status;
  if (status == SLUICE_OK && (responses == NULL || host->batch_count(responses) != f->count)) {
    f->status = SLUICE_ERROR;
    snprintf(f->error, sizeof f->error, "the target answered %zu of %zu requests",
             responses ? host->batch_count(responses) : (size_t)0, f->count);
    host->batch_free(responses);
    responses = NULL;
  } else if (status != SLUICE_OK) {
    snprintf(f->error, sizeof f->error, "the target failed: %.*s", (int)(error.len > 150 ? 150 : error.len),
             error.len ? (const char *)error.ptr : "");
  }
  if (f->status != SLUICE_OK) host->metric_add(f->instance->config->failures, 1);
  f->responses = responses;
  answer_flights(f->instance);
}

/* Sends every held call as one batch. */
static void flush(co_instance *instance) {
  const co_config *c = instance->config;
  if (instance->timer != NULL) host->timer_cancel(instance->timer);
  instance->timer = NULL;
  if (instance->held_head == NULL) return;
  co_flight *f = calloc(1, sizeof *f);
  sluice_batch *batch = host->batch_new(SLUICE_BATCH_REQUESTS, SLUICE_PROTOCOL_REDIS);
  int ok = f != NULL && batch != NULL;
  size_t n = 0;
  for (co_held *h = instance->held_head; h != NULL && ok; h = h->next) {
    for (size_t k = 0; k < h->count && ok; k++) ok = host->batch_insert_from(batch, n++, h->requests, k) == SLUICE_OK;
  }
  co_held *calls = instance->held_head;
  instance->held_head = instance->held_tail = NULL;
  instance->held_requests = 0;
  if (f == NULL) { /* out of memory: fail the held calls */
    for (co_held *h = calls; h != NULL; h = h->next) host->call_fail(h->call, "out of memory", 13);
    free_held(calls);
    host->batch_free(batch);
    return;
  }
  f->instance = instance;
  f->calls = calls;
  f->count = n;
  if (instance->flights_tail != NULL) instance->flights_tail->next = f; else instance->flights_head = f;
  instance->flights_tail = f;
  if (!ok) {
    host->batch_free(batch);
    f->done = 1;
    f->status = SLUICE_ERROR;
    snprintf(f->error, sizeof f->error, "cannot build the batch");
    answer_flights(instance);
    return;
  }
  host->metric_add(c->batches, 1);
  if (host->send(instance->env, c->target, batch, on_sent, f) != SLUICE_OK) {
    f->done = 1;
    f->status = SLUICE_ERROR;
    snprintf(f->error, sizeof f->error, "cannot send to the target");
    answer_flights(instance);
  }
}

static void on_timer(void *user_data) {
  co_instance *instance = user_data;
  instance->timer = NULL;
  host->metric_add(instance->config->timer_flushes, 1);
  flush(instance);
}

static int32_t co_on_requests(void *p, sluice_call *call, sluice_batch *requests) {
  co_instance *instance = p;
  const co_config *c = instance->config;
  size_t count = host->batch_count(requests);
  host->metric_add(c->requests, count);
  co_held *h = calloc(1, sizeof *h);
  if (h == NULL) return host->call_fail(call, "out of memory", 13);
  h->call = call;
  h->requests = requests;
  h->count = count;
  if (instance->held_tail != NULL) instance->held_tail->next = h; else instance->held_head = h;
  instance->held_tail = h;
  instance->held_requests += count;
  if (instance->held_requests >= c->max_requests) {
    host->metric_add(c->full_flushes, 1);
    flush(instance);
  } else if (instance->timer == NULL &&
             host->timer_start(instance->env, c->max_wait_ms, on_timer, instance, &instance->timer) != SLUICE_OK) {
    instance->timer = NULL;
    flush(instance);
  }
  return SLUICE_OK;
}

static const sluice_transform_descriptor transforms[] = {
    {
        .struct_size = sizeof(sluice_transform_descriptor),
        .protocols = SLUICE_PROTOCOL_REDIS,
        .name = "coalesce",
        .description = "holds a client's requests up to a count or a time and sends them to the target as one batch",
        .config_new = co_config_new,
        .config_free = co_config_free,
        .instance_new = co_instance_new,
        .instance_free = co_instance_free,
        .on_requests = co_on_requests,
    },
};

static const sluice_plugin_descriptor descriptor = {
    .magic = SLUICE_PLUGIN_MAGIC,
    .struct_size = sizeof(sluice_plugin_descriptor),
    .abi_major = SLUICE_ABI_VERSION_MAJOR,
    .abi_minor = SLUICE_ABI_VERSION_MINOR,
    .flags = 0, /* nothing newer than 1.0 is called */
    .transform_count = sizeof transforms / sizeof transforms[0],
    .name = "coalesce",
    .version = "1.0.0",
    .transforms = transforms,
};

SLUICE_PLUGIN_EXPORT const sluice_plugin_descriptor *sluice_plugin_init(const sluice_host_api *h) {
  if (h == NULL || h->abi_major != SLUICE_ABI_VERSION_MAJOR) return NULL;
  host = h;
  return &descriptor;
}
