/*
 * partial.h — answering some requests of a batch here while the rest go down the chain, for C
 * transforms that refuse requests one by one (query-type-filter, throttle): which requests are
 * refused, the MULTI/EXEC bookkeeping that makes a refusal inside a transaction abort it as Redis
 * does (EXEC sent as DISCARD, answered EXECABORT), taking the refused requests out of the batch and
 * putting their errors back among the backend's replies. Include after plugin_util.h.
 */
#ifndef SLUICE_PARTIAL_H
#define SLUICE_PARTIAL_H

#include "plugin_util.h"

/* What happens to one request of a batch. */
enum partial_route {
  PARTIAL_PASS = 0,       /* goes down the chain */
  PARTIAL_REFUSED = 1,    /* answered here with an error (call_answer) */
  PARTIAL_EXEC_ABORT = 2, /* EXEC of a doomed transaction: sent as DISCARD, answered EXECABORT */
};

#define PARTIAL_EXECABORT "EXECABORT Transaction discarded because of previous errors."

/* A connection's MULTI state as the backend sees it (the requests that reached it). */
enum partial_transaction {
  PARTIAL_TX_NONE = 0,
  PARTIAL_TX_OPEN = 1,
  PARTIAL_TX_DOOMED = 2, /* a command of the open transaction was refused here */
};

/*
 * The route of request i given whether the transform wants to refuse it; advances *tx. EXEC,
 * DISCARD and RESET are never refused (refusing them would leave a transaction open on the
 * backend). A refused MULTI opens nothing. THREAD: instance's.
 */
static inline enum partial_route partial_route_of(enum partial_transaction *tx, const sluice_batch *batch, size_t i,
                                                  int refuse) {
  sluice_host_view name = {0};
  size_t argc = 0;
  int multi = 0, exec = 0, closes = 0;
  if (host->redis_args(batch, i, &name, 1, &argc) == SLUICE_OK && argc > 0 && name.len >= 4 && name.len <= 7) {
    multi = pu_equals_ignoring_case(name.ptr, name.len, "multi");
    exec = pu_equals_ignoring_case(name.ptr, name.len, "exec");
    closes = exec || pu_equals_ignoring_case(name.ptr, name.len, "discard") ||
             pu_equals_ignoring_case(name.ptr, name.len, "reset");
  }
  if (refuse && !closes) {
    if (*tx == PARTIAL_TX_OPEN) *tx = PARTIAL_TX_DOOMED;
    return PARTIAL_REFUSED;
  }
  if (multi) {
    if (*tx == PARTIAL_TX_NONE) *tx = PARTIAL_TX_OPEN; /* a nested MULTI is an error that changes nothing */
  } else if (closes) {
    enum partial_transaction was = *tx;
    *tx = PARTIAL_TX_NONE;
    if (exec && was == PARTIAL_TX_DOOMED) return PARTIAL_EXEC_ABORT;
  }
  return PARTIAL_PASS;
}

/*
 * The EXECs of one call that were sent as DISCARD: their +OK becomes EXECABORT in on_responses.
 * OWNERSHIP: the transform's (call data until on_responses, or freed in instance_free).
 */
typedef struct partial_aborts {
  size_t count, capacity;
  size_t *indices;
} partial_aborts;

static inline void partial_aborts_free(partial_aborts *a) {
  if (a == NULL) return;
  free(a->indices);
  free(a);
}

/* Sends request i (a doomed EXEC) as DISCARD and records it in *aborts (made on first use). */
static inline int32_t partial_abort_exec(sluice_batch *requests, size_t i, partial_aborts **aborts) {
  if (*aborts == NULL) *aborts = calloc(1, sizeof **aborts);
  partial_aborts *a = *aborts;
  if (a == NULL) return SLUICE_ERROR;
  if (a->count == a->capacity) {
    size_t capacity = a->capacity ? a->capacity * 2 : 2;
    size_t *bigger = realloc(a->indices, capacity * sizeof *bigger);
    if (bigger == NULL) return SLUICE_ERROR;
    a->indices = bigger;
    a->capacity = capacity;
  }
  a->indices[a->count++] = i;
  return host->redis_set_arg(requests, i, 0, (const uint8_t *)"DISCARD", 7);
}

/* In on_responses: answers each DISCARD that stood for a doomed EXEC with EXECABORT. */
static inline int32_t partial_answer_aborts(const partial_aborts *a, sluice_batch *responses) {
  int32_t status = SLUICE_OK;
  for (size_t k = 0; k < a->count && status == SLUICE_OK; k++) {
    status = host->redis_put_reply(responses, a->indices[k], SLUICE_REDIS_ERROR, (const uint8_t *)PARTIAL_EXECABORT,
                                   sizeof PARTIAL_EXECABORT - 1, 0);
  }
  return status;
}

/*
 * Answers request i of a call here with an error (call_answer, since 1.1): the host sends the rest
 * of the batch and puts the answer back in its place. errors: a response batch the transform made
 * for these answers (made on first use; free it after the loop: the answers share its bytes).
 */
static inline int32_t partial_refuse(sluice_call *call, size_t i, sluice_batch **errors, const char *text, size_t len) {
  if (*errors == NULL) *errors = host->batch_new(SLUICE_BATCH_RESPONSES, SLUICE_PROTOCOL_REDIS);
  if (*errors == NULL) return SLUICE_ERROR;
  size_t at = host->batch_count(*errors);
  int32_t status = host->redis_put_reply(*errors, at, SLUICE_REDIS_ERROR, (const uint8_t *)text, len, 0);
  if (status == SLUICE_OK) status = host->call_answer(call, i, *errors, at);
  return status;
}

#endif /* SLUICE_PARTIAL_H */
