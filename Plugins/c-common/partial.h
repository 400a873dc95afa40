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
  PARTIAL_REFUSED = 1,    /* taken out of the batch, answered here with an error */
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

/* Rewrites aborted EXECs as DISCARD and removes the refused requests (routes has count entries). */
static inline int32_t partial_apply(sluice_batch *requests, const unsigned char *routes, size_t count) {
  static const uint8_t discard[] = "DISCARD";
  const uint8_t *argv[1] = {discard};
  size_t argv_len[1] = {7};
  for (size_t i = 0; i < count; i++) {
    if (routes[i] == PARTIAL_EXEC_ABORT) {
      int32_t status = host->redis_put_command(requests, i, 1, argv, argv_len);
      if (status != SLUICE_OK) return status;
    }
  }
  for (size_t i = count; i-- > 0;) {
    if (routes[i] == PARTIAL_REFUSED) {
      int32_t status = host->batch_remove(requests, i);
      if (status != SLUICE_OK) return status;
    }
  }
  return SLUICE_OK;
}

/* Writes the error of refused request index into a response batch. */
typedef int32_t (*partial_error_fn)(void *ctx, sluice_batch *responses, size_t index);

/*
 * The client's responses: the backend's (for the requests that went) with the refused requests'
 * errors and EXECABORT put back at their positions. Returns an OWNED batch, or NULL (out of memory,
 * or an error from put_error). THREAD: instance's.
 */
static inline sluice_batch *partial_merge(const unsigned char *routes, size_t count, const sluice_batch *backend,
                                          partial_error_fn put_error, void *ctx) {
  sluice_batch *merged = host->batch_new(SLUICE_BATCH_RESPONSES, SLUICE_PROTOCOL_REDIS);
  int32_t status = merged ? SLUICE_OK : SLUICE_ERROR;
  size_t next = 0;
  for (size_t i = 0; i < count && status == SLUICE_OK; i++) {
    if (routes[i] == PARTIAL_REFUSED) {
      status = put_error(ctx, merged, i);
    } else if (routes[i] == PARTIAL_EXEC_ABORT) {
      next++; /* DISCARD's reply */
      status = host->redis_put_reply(merged, i, SLUICE_REDIS_ERROR, (const uint8_t *)PARTIAL_EXECABORT,
                                     sizeof PARTIAL_EXECABORT - 1, 0);
    } else {
      status = host->batch_insert_from(merged, i, backend, next++);
    }
  }
  if (status != SLUICE_OK) {
    host->batch_free(merged);
    return NULL;
  }
  return merged;
}

/* All requests refused: the errors as an OWNED batch, or NULL. */
static inline sluice_batch *partial_all_refused(size_t count, partial_error_fn put_error, void *ctx) {
  sluice_batch *responses = host->batch_new(SLUICE_BATCH_RESPONSES, SLUICE_PROTOCOL_REDIS);
  int32_t status = responses ? SLUICE_OK : SLUICE_ERROR;
  for (size_t i = 0; i < count && status == SLUICE_OK; i++) status = put_error(ctx, responses, i);
  if (status != SLUICE_OK) {
    host->batch_free(responses);
    return NULL;
  }
  return responses;
}

#endif /* SLUICE_PARTIAL_H */
