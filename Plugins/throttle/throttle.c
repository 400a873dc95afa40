/*
 * throttle: a token-bucket rate limit, per chain position (`per: source`, one bucket shared by every
 * client) or per client IP address (`per: client`, one bucket per address, shared by that address's
 * connections). Each request costs one token; tokens refill at `rate` per second up to `burst`.
 *
 *   - throttle: { rate: 1000, burst: 200, per: client, max_wait_ms: 50 }
 *
 * A batch the bucket covers passes untouched (call_pass). Otherwise, with max_wait_ms > 0 and a
 * wait for the tokens no longer than that, the batch is held on a host timer and forwarded when its
 * tokens are due (nothing blocks; the connection's later batches queue behind it, so its commands
 * reach the backend in order). Else the requests the bucket covers go on and the others are
 * answered at once with
 *     -THROTTLED rate limit of R requests/s exceeded (burst B); retry in N ms
 * Inside MULTI a throttled command dooms the transaction as in Redis (EXEC -> DISCARD + EXECABORT).
 *
 * Plain C99 + POSIX (a mutex per bucket table, CLOCK_MONOTONIC) against sluice_plugin.h.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <time.h>

#include "sluice_plugin.h"

static const sluice_host_api *host;

#include "plugin_util.h"
#include "partial.h"

/* ---- buckets ------------------------------------------------------------------------------------ */

typedef struct bucket {
  double tokens;  /* may go negative: tokens reserved by held batches */
  uint64_t stamp; /* monotonic ns of the last refill */
} bucket;

/* One bucket per client address: open addressing, linear probing. Entries whose bucket is full
 * again carry no information and are dropped when the table fills, so its size follows the number
 * of addresses active within burst/rate seconds (bounded by max_clients; beyond that the addresses
 * share one overflow bucket). */
typedef struct address_entry {
  uint8_t used;
  uint8_t len;
  uint8_t address[64]; /* the bucket's key: an IP address, or a user name (see bucket_key) */
  bucket b;
} address_entry;

typedef enum { PER_SOURCE = 0, PER_CLIENT = 1, PER_USER = 2 } throttle_scope;

typedef struct throttle_config {
  double rate;  /* tokens per second */
  double burst; /* bucket size */
  uint64_t max_wait_ms;
  throttle_scope per;
  uint64_t max_clients;
  pthread_mutex_t lock; /* guards shared, table, overflow */
  bucket shared;        /* per: source */
  address_entry *table; /* per: client */
  size_t capacity, used;
  uint64_t last_sweep; /* monotonic ns of the last sweep of full buckets */
  bucket overflow;
  sluice_metric *requests, *passed, *rejected, *delayed;
} throttle_config;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void refill(const throttle_config *c, bucket *b, uint64_t now) {
  if (now > b->stamp) {
    b->tokens += (double)(now - b->stamp) / 1e9 * c->rate;
    if (b->tokens > c->burst) b->tokens = c->burst;
  }
  b->stamp = now;
}

static uint64_t hash_bytes(const uint8_t *p, size_t n) {
  uint64_t h = 1469598103934665603u; /* FNV-1a */
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211u;
  return h;
}

/* Rebuilds the table at new_capacity, keeping only buckets not yet full again. Lock held. */
static int rebuild(throttle_config *c, size_t new_capacity, uint64_t now) {
  address_entry *fresh = calloc(new_capacity, sizeof *fresh);
  if (fresh == NULL) return 0;
  size_t used = 0;
  for (size_t i = 0; i < c->capacity; i++) {
    address_entry *e = &c->table[i];
    if (!e->used) continue;
    refill(c, &e->b, now);
    if (e->b.tokens >= c->burst) continue;
    size_t j = hash_bytes(e->address, e->len) & (new_capacity - 1);
    while (fresh[j].used) j = (j + 1) & (new_capacity - 1);
    fresh[j] = *e;
    used++;
  }
  free(c->table);
  c->table = fresh;
  c->capacity = new_capacity;
  c->used = used;
  return 1;
}

/* The entry of an address, or the empty slot where it would go. Lock held. */
static address_entry *address_slot(throttle_config *c, const uint8_t *address, size_t len) {
  size_t j = hash_bytes(address, len) & (c->capacity - 1);
  while (c->table[j].used) {
    address_entry *e = &c->table[j];
    if (e->len == len && memcmp(e->address, address, len) == 0) return e;
    j = (j + 1) & (c->capacity - 1);
  }
  return &c->table[j];
}

/* The bucket of an address (created full). A known address is one probe sequence; a new one may
 * first sweep the table of buckets that are full again (at most every 100 ms once the table is at
 * max_clients, so a flood of new addresses cannot make every request pay for a sweep). Lock held. */
static bucket *address_bucket(throttle_config *c, const uint8_t *address, size_t len, uint64_t now) {
  if (len > sizeof c->table[0].address) len = sizeof c->table[0].address;
  address_entry *e = address_slot(c, address, len);
  if (e->used) return &e->b;
  if (c->used + 1 > c->capacity / 2) {
    int at_cap = c->capacity >= 2 * c->max_clients;
    if (at_cap && now - c->last_sweep < 100000000u) return &c->overflow;
    c->last_sweep = now;
    if (!rebuild(c, c->capacity, now)) return &c->overflow;
    if (c->used + 1 > c->capacity / 4 && !at_cap && !rebuild(c, c->capacity * 2, now)) return &c->overflow;
    if (c->used + 1 > c->capacity / 2) return &c->overflow; /* at max_clients: new addresses share one bucket */
    e = address_slot(c, address, len);
  }
  e->used = 1;
  e->len = (uint8_t)len;
  memcpy(e->address, address, len);
  e->b.tokens = c->burst;
  e->b.stamp = now;
  c->used++;
  return &e->b;
}

/* ---- config ---------------------------------------------------------------------------------------- */

static void throttle_config_free(void *p) {
  throttle_config *c = p;
  if (c == NULL) return;
  pthread_mutex_destroy(&c->lock);
  free(c->table);
  free(c);
}

static int32_t throttle_config_new(sluice_config_env *env, const sluice_config_node *node, void **out) {
  static const char *const allowed[] = {"rate", "burst", "per", "max_wait_ms", "max_clients", NULL};
  if (!pu_check_keys(env, node, allowed)) return SLUICE_ERROR;
  if (pu_get(node, "rate") == NULL) {
    pu_fail(env, node, "rate is required: requests per second, e.g. { rate: 1000, burst: 100 }");
    return SLUICE_ERROR;
  }
  uint64_t rate = 0, burst = 0, max_wait = 0, max_clients = 65536;
  if (!pu_read_u64(env, node, "rate", 1, 100000000, &rate)) return SLUICE_ERROR;
  burst = rate;
  if (!pu_read_u64(env, node, "burst", 1, 100000000, &burst) ||
      !pu_read_u64(env, node, "max_wait_ms", 0, 60000, &max_wait) ||
      !pu_read_u64(env, node, "max_clients", 16, 1u << 22, &max_clients)) {
    return SLUICE_ERROR;
  }
  throttle_scope per = PER_SOURCE;
  const sluice_config_node *per_node = pu_get(node, "per");
  if (per_node != NULL) {
    sluice_host_view text = {0};
    host->node_scalar(per_node, &text);
    if (pu_view_is(text, "client")) {
      per = PER_CLIENT;
    } else if (pu_view_is(text, "user")) {
      per = PER_USER;
    } else if (!pu_view_is(text, "source")) {
      pu_fail(env, per_node, "per: expected source (one bucket for every client), client (one per client address) "
              "or user (one per authenticated user)");
      return SLUICE_ERROR;
    }
  }
  throttle_config *c = calloc(1, sizeof *c);
  if (c == NULL) return SLUICE_ERROR;
  pthread_mutex_init(&c->lock, NULL);
  c->rate = (double)rate;
  c->burst = (double)burst;
  c->max_wait_ms = max_wait;
  c->per = per;
  c->max_clients = 16;
  while (c->max_clients < max_clients) c->max_clients *= 2; /* a power of two, like the table */
  uint64_t now = now_ns();
  c->shared.tokens = c->burst;
  c->shared.stamp = now;
  c->overflow = c->shared;
  if (per != PER_SOURCE) {
    c->capacity = c->max_clients * 2 < 64 ? c->max_clients * 2 : 64;
    c->table = calloc(c->capacity, sizeof *c->table);
    if (c->table == NULL) goto fail;
  }
  if (host->metric_counter(env, "throttle_requests", 17, &c->requests) != SLUICE_OK ||
      host->metric_counter(env, "throttle_passed", 15, &c->passed) != SLUICE_OK ||
      host->metric_counter(env, "throttle_rejected", 17, &c->rejected) != SLUICE_OK ||
      host->metric_counter(env, "throttle_delayed", 16, &c->delayed) != SLUICE_OK) {
    goto fail;
  }
  *out = c;
  return SLUICE_OK;
fail:
  throttle_config_free(c);
  return SLUICE_ERROR;
}

/* ---- per connection ------------------------------------------------------------------------------ */


struct throttle_instance;

/* A call that is held (waiting for its tokens) or forwarded with some requests removed. */
typedef struct held_call {
  struct held_call *next, *prev; /* in the instance's list of calls it holds state for */
  struct held_call *queue_next;  /* in the instance's queue of calls waiting for their tokens */
  sluice_call *call;
  uint64_t due_ns;         /* when a held call may go */
  partial_aborts *aborts;  /* doomed EXECs sent as DISCARD, or NULL */
} held_call;

typedef struct throttle_instance {
  throttle_config *config;
  sluice_instance_env *env;
  uint8_t address[64];
  size_t address_len;
  enum partial_transaction transaction;
  held_call *calls;                   /* every call this instance holds state for */
  held_call *queue_head, *queue_tail; /* held calls, in arrival order */
  sluice_timer *timer;                /* armed for queue_head, or NULL */
} throttle_instance;

static int32_t throttle_instance_new(void *config, sluice_instance_env *env, void **out) {
  throttle_instance *instance = calloc(1, sizeof *instance);
  if (instance == NULL) return SLUICE_ERROR;
  instance->config = config;
  instance->env = env;
  sluice_host_view address = {0};
  host->client_address(env, &address);
  /* "ip:port" (IPv6 as "[v6]:port"): the bucket key is the address without the port. */
  size_t len = address.len;
  while (len > 0 && address.ptr[len - 1] != ':') len--;
  if (len > 0) len--;
  if (len > sizeof instance->address) len = sizeof instance->address;
  if (len > 0) memcpy(instance->address, address.ptr, len);
  instance->address_len = len;
  *out = instance;
  return SLUICE_OK;
}

static void held_link(throttle_instance *instance, held_call *h) {
  h->prev = NULL;
  h->next = instance->calls;
  if (instance->calls != NULL) instance->calls->prev = h;
  instance->calls = h;
}

static void held_unlink(throttle_instance *instance, held_call *h) {
  if (h->prev != NULL) h->prev->next = h->next; else instance->calls = h->next;
  if (h->next != NULL) h->next->prev = h->prev;
  h->next = h->prev = NULL;
}

static void held_free(held_call *h) {
  if (h == NULL) return;
  partial_aborts_free(h->aborts);
  free(h);
}

/* The connection closed: the host cancelled the timer and abandoned the calls; free their state. */
static void throttle_instance_free(void *p) {
  throttle_instance *instance = p;
  while (instance->calls != NULL) {
    held_call *h = instance->calls;
    held_unlink(instance, h);
    held_free(h);
  }
  free(instance);
}

/*
 * Takes tokens for a batch of n requests from the client's bucket. Returns how many may go (the
 * first ones of the batch). When the bucket covers all n now, *wait_ns is 0; when a wait of at most
 * max_wait_ms covers them, all n are reserved and *wait_ns says how long; otherwise the whole
 * tokens there are given and *retry_ms says when the next one is due.
 */
/* The key of a bucket: the bytes, or for more than 64 their first 56 and a 64-bit hash of all. */
static size_t bucket_key(const uint8_t *p, size_t len, uint8_t out[64]) {
  if (len <= 64) {
    if (len > 0) memcpy(out, p, len);
    return len;
  }
  uint64_t h = hash_bytes(p, len);
  memcpy(out, p, 56);
  memcpy(out + 56, &h, 8);
  return 64;
}

static size_t take_tokens(throttle_instance *instance, size_t n, uint64_t *wait_ns, uint64_t *retry_ms) {
  throttle_config *c = instance->config;
  uint64_t now = now_ns();
  size_t granted = n;
  *wait_ns = 0;
  *retry_ms = 0;
  uint8_t key[64];
  size_t key_len = 0;
  if (c->per == PER_USER) {
    /* The user the client is authenticated as now (it may change with AUTH); "default" before. */
    sluice_host_view user = {0};
    if (host->get_property(instance->env, SLUICE_PROPERTY_USER, &user, NULL) == SLUICE_OK) {
      key_len = bucket_key(user.ptr, user.len, key);
    } else {
      key_len = bucket_key((const uint8_t *)"default", 7, key);
    }
  }
  pthread_mutex_lock(&c->lock);
  bucket *b = c->per == PER_CLIENT ? address_bucket(c, instance->address, instance->address_len, now)
            : c->per == PER_USER   ? address_bucket(c, key, key_len, now)
                                   : &c->shared;
  refill(c, b, now);
  if (b->tokens >= (double)n) {
    b->tokens -= (double)n;
  } else {
    double wait_s = ((double)n - b->tokens) / c->rate;
    if (c->max_wait_ms > 0 && wait_s * 1000.0 <= (double)c->max_wait_ms) {
      b->tokens -= (double)n; /* reserved: the batch goes when they are due */
      *wait_ns = (uint64_t)ceil(wait_s * 1e9);
    } else {
      granted = b->tokens >= 1.0 ? (size_t)floor(b->tokens) : 0;
      if (granted > n) granted = n;
      b->tokens -= (double)granted;
      *retry_ms = (uint64_t)ceil((1.0 - b->tokens) / c->rate * 1000.0);
      if (*retry_ms == 0) *retry_ms = 1;
    }
  }
  pthread_mutex_unlock(&c->lock);
  return granted;
}

/* The THROTTLED error text; returns its length. */
static size_t throttled_text(const throttle_config *c, uint64_t retry_ms, char *text, size_t cap) {
  int n = snprintf(text, cap, "THROTTLED rate limit of %.0f requests/s exceeded (burst %.0f); retry in %llu ms",
                   c->rate, c->burst, (unsigned long long)retry_ms);
  if (n < 0) return 0;
  return (size_t)n >= cap ? cap - 1 : (size_t)n;
}

/* Sends a call on: untouched (call_pass) unless an EXEC of it was sent as DISCARD. */
static void forward(throttle_instance *instance, held_call *h) {
  if (h->aborts == NULL) {
    sluice_call *call = h->call;
    held_unlink(instance, h);
    held_free(h);
    host->call_pass(call);
    return;
  }
  host->call_set_data(h->call, h);
  host->call_forward(h->call);
}

static void on_timer(void *p);

static void arm_timer(throttle_instance *instance) {
  if (instance->timer != NULL || instance->queue_head == NULL) return;
  uint64_t now = now_ns();
  uint64_t due = instance->queue_head->due_ns;
  uint64_t delay_ms = due > now ? (due - now + 999999) / 1000000 : 0;
  if (host->timer_start(instance->env, delay_ms, on_timer, instance, &instance->timer) != SLUICE_OK) {
    instance->timer = NULL; /* the connection is closing: the held calls are abandoned */
  }
}

/* The timer fired: the held calls that are due go, in arrival order; the timer is armed again for
 * the next one. */
static void on_timer(void *p) {
  throttle_instance *instance = p;
  instance->timer = NULL;
  uint64_t now = now_ns();
  while (instance->queue_head != NULL && instance->queue_head->due_ns <= now + 500000) {
    held_call *h = instance->queue_head;
    instance->queue_head = h->queue_next;
    if (instance->queue_head == NULL) instance->queue_tail = NULL;
    h->queue_next = NULL;
    forward(instance, h);
  }
  arm_timer(instance);
}

static int32_t throttle_on_requests(void *p, sluice_call *call, sluice_batch *requests) {
  throttle_instance *instance = p;
  throttle_config *c = instance->config;
  size_t count = host->batch_count(requests);
  host->metric_add(c->requests, count);
  uint64_t wait_ns = 0, retry_ms = 0;
  size_t granted = take_tokens(instance, count, &wait_ns, &retry_ms);

  /* The first `granted` requests go; the rest are answered THROTTLED here (call_answer). */
  sluice_batch *errors = NULL;
  partial_aborts *aborts = NULL;
  size_t rejected = 0;
  int32_t status = SLUICE_OK;
  for (size_t i = 0; i < count && status == SLUICE_OK; i++) {
    enum partial_route r = partial_route_of(&instance->transaction, requests, i, i >= granted);
    if (r == PARTIAL_REFUSED) {
      char text[200];
      status = partial_refuse(call, i, &errors, text, throttled_text(c, retry_ms, text, sizeof text));
      rejected++;
    } else if (r == PARTIAL_EXEC_ABORT) {
      status = partial_abort_exec(requests, i, &aborts);
    }
  }
  host->batch_free(errors);
  if (status != SLUICE_OK) {
    partial_aborts_free(aborts);
    return host->call_fail(call, "cannot answer the throttled requests", 36);
  }
  host->metric_add(c->passed, count - rejected);
  if (rejected > 0) host->metric_add(c->rejected, rejected);
  /* Later batches queue behind held ones, so the connection's commands keep their order; a batch
   * answered entirely here sends nothing and need not wait. */
  int must_wait = (wait_ns > 0 || instance->queue_head != NULL) && rejected < count;
  if (!must_wait && aborts == NULL) return host->call_pass(call); /* the fast path */
  held_call *h = calloc(1, sizeof *h);
  if (h == NULL) {
    partial_aborts_free(aborts);
    return host->call_fail(call, "out of memory", 13);
  }
  h->call = call;
  h->aborts = aborts;
  held_link(instance, h);
  if (!must_wait) {
    forward(instance, h);
    return SLUICE_OK;
  }
  host->metric_add(c->delayed, count - rejected);
  h->due_ns = now_ns() + wait_ns;
  if (instance->queue_tail != NULL && instance->queue_tail->due_ns > h->due_ns) h->due_ns = instance->queue_tail->due_ns;
  if (instance->queue_tail != NULL) instance->queue_tail->queue_next = h; else instance->queue_head = h;
  instance->queue_tail = h;
  arm_timer(instance);
  return SLUICE_OK;
}

/* Answers the DISCARDs that stood for doomed EXECs with EXECABORT. */
static int32_t throttle_on_responses(void *p, sluice_call *call, const sluice_batch *requests, sluice_batch *responses) {
  (void)requests;
  throttle_instance *instance = p;
  held_call *h = host->call_data(call);
  if (h == NULL) return host->call_respond(call, NULL);
  host->call_set_data(call, NULL);
  held_unlink(instance, h);
  int32_t status = partial_answer_aborts(h->aborts, responses);
  held_free(h);
  if (status != SLUICE_OK) return host->call_fail(call, "cannot answer an aborted EXEC", 29);
  return host->call_respond(call, NULL);
}

static const sluice_transform_descriptor transforms[] = {
    {
        .struct_size = sizeof(sluice_transform_descriptor),
        .protocols = SLUICE_PROTOCOL_REDIS,
        .name = "throttle",
        .description = "token-bucket rate limit per source or per client address; over-limit requests wait (max_wait_ms) or get THROTTLED",
        .config_new = throttle_config_new,
        .config_free = throttle_config_free,
        .instance_new = throttle_instance_new,
        .instance_free = throttle_instance_free,
        .on_requests = throttle_on_requests,
        .on_responses = throttle_on_responses,
    },
};

static const sluice_plugin_descriptor descriptor = {
    .magic = SLUICE_PLUGIN_MAGIC,
    .struct_size = sizeof(sluice_plugin_descriptor),
    .abi_major = SLUICE_ABI_VERSION_MAJOR,
    .abi_minor = SLUICE_ABI_VERSION_MINOR,
    .flags = SLUICE_PLUGIN_FLAG_REQUIRES_MINOR, /* call_pass, call_answer, redis_set_arg, get_property: since 1.1 */
    .transform_count = sizeof transforms / sizeof transforms[0],
    .name = "throttle",
    .version = "1.0.0",
    .transforms = transforms,
};

SLUICE_PLUGIN_EXPORT const sluice_plugin_descriptor *sluice_plugin_init(const sluice_host_api *h) {
  if (h == NULL || h->abi_major != SLUICE_ABI_VERSION_MAJOR || h->abi_minor < 1) return NULL;
  host = h;
  return &descriptor;
}
