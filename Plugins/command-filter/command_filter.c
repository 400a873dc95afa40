/*
 * command-filter: two Redis transforms written in plain C99 against sluice_plugin.h, no Swift.
 *
 *   deny:  requests whose command is in a configured list are answered by the plugin with an error;
 *          the others go on down the chain. A command denied inside MULTI dooms the transaction, as
 *          a command that fails to queue does in Redis: its EXEC is sent as DISCARD and answered
 *          with EXECABORT, so nothing of the transaction runs.
 *   count: counts requests into a metric and forwards everything.
 *
 * Both handle Redis and CQL (ABI 1.3). On a CQL connection a request's "command" is the first word
 * of each of its statements (select, insert, truncate, grant…: QUERY, PREPARE, EXECUTE of a statement
 * the host saw prepared, and every child of a BATCH), and `statements:` lists statement kinds
 * (select, insert, update, delete, batch, use, ddl, other). A denied CQL request is answered with an
 * ERROR frame whose code `code:` chooses (default unauthorized); count with `commands:` or
 * `statements:` counts only the requests that match them. An EXECUTE or BATCH child of a prepared
 * id the host never saw prepared cannot be read, so deny answers it with ERROR UNPREPARED (the id,
 * read from the frame): the driver prepares it again through Sluice and retries, and the retry is
 * classified like any statement. deny never lets a statement it could not read through.
 *
 * deny declares control functions (ABI 1.2): deny.add, deny.remove and deny.list change or show the
 * command list of one chain step while Sluice runs (`sluice ctl call command-filter.add --step
 * main[0] GET`). Each connection keeps its own copy of the list, so the hooks read it without locks;
 * a change is published to every live connection with host->control_publish.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_plugin.h"

static const sluice_host_api *host;

#define MAX_COMMAND_LEN 64

/* ---- deny ------------------------------------------------------------------------------------ */

/* A list of command names, lowercase and NUL-terminated. */
typedef struct command_list {
  size_t count;
  char (*commands)[MAX_COMMAND_LEN + 1];
  /* CQL: the statement kinds (bit per SLUICE_CQL_STATEMENT_*) whose first word is listed
   * (command_list_word_kinds); set wherever a list is made. */
  uint32_t word_kinds;
} command_list;

/* The statement kind a CQL statement whose first word is `word` has, as cql_statement classifies
 * it, when that word fixes it; SLUICE_CQL_STATEMENT_OTHER for any other word. Conversely every kind
 * but OTHER fixes the first word: a SELECT starts with select, a BATCH with begin or apply, a DDL
 * with create, alter or drop (the host lower-cases a word beyond ASCII as Unicode, which turns no
 * such byte into one of these letters), so a statement of such a kind can only match a listed word
 * of its own kind. An OTHER statement may start with any word (even "select" followed by a byte
 * beyond ASCII, which the host reads as one word and first_word cuts), so its text is always read. */
static int32_t word_statement_kind(const char *word) {
  static const struct {
    const char *word;
    int32_t kind;
  } fixed[] = {
      {"select", SLUICE_CQL_STATEMENT_SELECT}, {"insert", SLUICE_CQL_STATEMENT_INSERT},
      {"update", SLUICE_CQL_STATEMENT_UPDATE}, {"delete", SLUICE_CQL_STATEMENT_DELETE},
      {"begin", SLUICE_CQL_STATEMENT_BATCH},   {"apply", SLUICE_CQL_STATEMENT_BATCH},
      {"use", SLUICE_CQL_STATEMENT_USE},       {"create", SLUICE_CQL_STATEMENT_DDL},
      {"alter", SLUICE_CQL_STATEMENT_DDL},     {"drop", SLUICE_CQL_STATEMENT_DDL},
  };
  for (size_t k = 0; k < sizeof fixed / sizeof fixed[0]; k++) {
    if (strcmp(word, fixed[k].word) == 0) return fixed[k].kind;
  }
  return SLUICE_CQL_STATEMENT_OTHER;
}

/* Sets list->word_kinds from its commands. */
static void command_list_word_kinds(command_list *list) {
  list->word_kinds = 0;
  for (size_t i = 0; i < list->count; i++) list->word_kinds |= 1u << word_statement_kind(list->commands[i]);
}

static void command_list_free(command_list *list) {
  if (list == NULL) return;
  free(list->commands);
  free(list);
}

/* A copy of list, with one more (extra, already lowercase) or one fewer (index drop) entry;
 * NULL when out of memory. drop: (size_t)-1 for none. */
static command_list *command_list_copy(const command_list *list, const char *extra, size_t drop) {
  command_list *copy = calloc(1, sizeof *copy);
  if (copy == NULL) return NULL;
  size_t capacity = list->count + (extra != NULL ? 1 : 0);
  copy->commands = calloc(capacity > 0 ? capacity : 1, sizeof *copy->commands);
  if (copy->commands == NULL) {
    free(copy);
    return NULL;
  }
  for (size_t i = 0; i < list->count; i++) {
    if (i != drop) memcpy(copy->commands[copy->count++], list->commands[i], sizeof list->commands[i]);
  }
  if (extra != NULL) {
    strncpy(copy->commands[copy->count], extra, MAX_COMMAND_LEN);
    copy->commands[copy->count++][MAX_COMMAND_LEN] = '\0';
  }
  command_list_word_kinds(copy);
  return copy;
}

static int name_is(sluice_host_view name, const char *word);

/* ---- CQL statements (ABI 1.3) ------------------------------------------------------------------ */

static const char *statement_kinds[] = {"other", "select", "insert", "update", "delete", "batch", "use", "ddl"};
#define STATEMENT_KIND_COUNT 8

/* Reads a sequence of statement kinds into a bit mask (bit SLUICE_CQL_STATEMENT_*); 0 and a config
 * error when an item is not one. */
static uint32_t read_statement_kinds(sluice_config_env *env, const sluice_config_node *list) {
  uint32_t mask = 0;
  if (host->node_kind(list) != SLUICE_NODE_SEQUENCE || host->node_count(list) == 0) {
    host->config_error(env, list, "statements: expected a non-empty sequence of statement kinds", 61);
    return 0;
  }
  for (size_t i = 0; i < host->node_count(list); i++) {
    const sluice_config_node *item = NULL;
    sluice_host_view text;
    host->node_at(list, i, NULL, &item);
    int found = -1;
    if (host->node_scalar(item, &text) == SLUICE_OK) {
      for (int k = 0; k < STATEMENT_KIND_COUNT; k++) {
        size_t n = strlen(statement_kinds[k]);
        size_t j = 0;
        while (j < n && j < text.len && tolower(text.ptr[j]) == statement_kinds[k][j]) j++;
        if (j == n && n == text.len) found = k;
      }
    }
    if (found < 0) {
      const char *m = "statements: each item must be one of select, insert, update, delete, batch, use, ddl, other";
      host->config_error(env, item, m, strlen(m));
      return 0;
    }
    mask |= 1u << found;
  }
  return mask;
}

/* The first word of CQL text, lowercased into out (comments and spaces skipped); 0 if none fits. */
static size_t first_word(sluice_host_view text, char out[MAX_COMMAND_LEN + 1]) {
  size_t i = 0, n = 0;
  while (i < text.len) {
    uint8_t c = text.ptr[i];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      i++;
    } else if (i + 1 < text.len && ((c == '-' && text.ptr[i + 1] == '-') || (c == '/' && text.ptr[i + 1] == '/'))) {
      while (i < text.len && text.ptr[i] != '\n') i++;
    } else if (i + 1 < text.len && c == '/' && text.ptr[i + 1] == '*') {
      i += 2;
      while (i + 1 < text.len && !(text.ptr[i] == '*' && text.ptr[i + 1] == '/')) i++;
      i += 2;
    } else {
      break;
    }
  }
  while (i < text.len && n < MAX_COMMAND_LEN && (isalnum(text.ptr[i]) || text.ptr[i] == '_')) {
    out[n++] = (char)tolower(text.ptr[i++]);
  }
  out[n] = '\0';
  return n;
}

/* Whether statement s of CQL request i matches: of a kind in kinds (st: the statement as cql_statement
 * gave it, NULL when it did not), or whose first word is in list (either may be empty). why receives
 * what matched ("select statements", "'truncate'"). */
static int cql_statement_matches(const command_list *list, uint32_t kinds, const sluice_batch *batch, size_t i,
                                 size_t s, const sluice_cql_statement *st, char *why, size_t why_len) {
  if (kinds != 0 && st != NULL && st->kind >= 0 && st->kind < STATEMENT_KIND_COUNT && (kinds & (1u << st->kind))) {
    snprintf(why, why_len, "%s statements are", statement_kinds[st->kind]);
    return 1;
  }
  /* The text only when its first word may be listed (word_statement_kind): a known kind other than
   * OTHER fixes that word, so a list without it needs no cql_query for the statement. */
  int may_be_listed = list != NULL && list->count > 0 &&
                      (st == NULL || st->kind <= SLUICE_CQL_STATEMENT_OTHER || st->kind >= STATEMENT_KIND_COUNT ||
                       (list->word_kinds & (1u << st->kind)));
  sluice_host_view text;
  char word[MAX_COMMAND_LEN + 1];
  if (may_be_listed && host->cql_query(batch, i, s, &text) == SLUICE_OK && first_word(text, word) > 0) {
    for (size_t k = 0; k < list->count; k++) {
      if (strcmp(list->commands[k], word) == 0) {
        snprintf(why, why_len, "'%s' is", word);
        return 1;
      }
    }
  }
  return 0;
}

/* Whether a CQL request matches: one of its statements does (cql_statement_matches). */
static int cql_request_matches(const command_list *list, uint32_t kinds, const sluice_batch *batch, size_t i,
                               char *why, size_t why_len) {
  size_t statements = host->cql_statement_count(batch, i);
  for (size_t s = 0; s < statements; s++) {
    sluice_cql_statement st;
    const sluice_cql_statement *known = kinds != 0 && host->cql_statement(batch, i, s, &st) == SLUICE_OK ? &st : NULL;
    if (cql_statement_matches(list, kinds, batch, i, s, known, why, why_len)) return 1;
  }
  return 0;
}

/* Big-endian readers over a CQL frame; each returns 0 past the end. */
static int cql_read_u16(sluice_host_view b, size_t *at, uint16_t *out) {
  if (*at > b.len || b.len - *at < 2) return 0;
  *out = (uint16_t)((b.ptr[*at] << 8) | b.ptr[*at + 1]);
  *at += 2;
  return 1;
}

static int cql_read_i32(sluice_host_view b, size_t *at, int32_t *out) {
  if (*at > b.len || b.len - *at < 4) return 0;
  *out = (int32_t)(((uint32_t)b.ptr[*at] << 24) | ((uint32_t)b.ptr[*at + 1] << 16) | ((uint32_t)b.ptr[*at + 2] << 8) |
                   (uint32_t)b.ptr[*at + 3]);
  *at += 4;
  return 1;
}

static int cql_skip(sluice_host_view b, size_t *at, size_t n) {
  if (*at > b.len || b.len - *at < n) return 0;
  *at += n;
  return 1;
}

/* The prepared id of statement s of CQL request i (an EXECUTE, or a prepared child of a BATCH), read
 * from the frame itself; 0 when the frame holds none there. */
static int cql_prepared_id(const sluice_batch *batch, size_t i, size_t s, sluice_host_view *id) {
  sluice_host_view b;
  if (host->batch_message_bytes(batch, i, &b) != SLUICE_OK || b.len < 9) return 0;
  uint8_t flags = b.ptr[1], opcode = b.ptr[4];
  size_t at = 9;
  uint16_t n, len;
  if (flags & 0x04) { /* custom payload: [bytes map] before the message */
    if (!cql_read_u16(b, &at, &n)) return 0;
    for (uint16_t k = 0; k < n; k++) {
      int32_t value;
      if (!cql_read_u16(b, &at, &len) || !cql_skip(b, &at, len) || !cql_read_i32(b, &at, &value)) return 0;
      if (value > 0 && !cql_skip(b, &at, (size_t)value)) return 0;
    }
  }
  if (opcode == SLUICE_CQL_OP_EXECUTE) {
    if (s != 0 || !cql_read_u16(b, &at, &len) || !cql_skip(b, &at, len)) return 0;
    *id = (sluice_host_view){b.ptr + at - len, len};
    return 1;
  }
  if (opcode != SLUICE_CQL_OP_BATCH || !cql_skip(b, &at, 1) || !cql_read_u16(b, &at, &n)) return 0;
  for (uint16_t k = 0; k < n && k <= s; k++) {
    if (at >= b.len) return 0;
    uint8_t kind = b.ptr[at++];
    if (kind == 0) {
      int32_t text;
      if (!cql_read_i32(b, &at, &text) || text < 0 || !cql_skip(b, &at, (size_t)text)) return 0;
    } else if (kind == 1) {
      if (!cql_read_u16(b, &at, &len) || !cql_skip(b, &at, len)) return 0;
      if (k == s) {
        *id = (sluice_host_view){b.ptr + at - len, len};
        return 1;
      }
    } else {
      return 0;
    }
    uint16_t values;
    if (!cql_read_u16(b, &at, &values)) return 0;
    for (uint16_t v = 0; v < values; v++) {
      int32_t value;
      if (!cql_read_i32(b, &at, &value) || (value > 0 && !cql_skip(b, &at, (size_t)value))) return 0;
    }
  }
  return 0;
}

/* What deny makes of CQL request i, reading each statement once: CQL_UNSEEN when a statement is a
 * prepared id the host never saw prepared (prepared around Sluice, before it started, or evicted
 * from its registry), whose text deny cannot read (*id receives the id when the frame names one,
 * id->len 0 otherwise), whatever the others are; else CQL_MATCHES when a statement matches
 * (cql_statement_matches; why says what the first one matched), else CQL_PASSES. */
enum cql_verdict { CQL_PASSES, CQL_MATCHES, CQL_UNSEEN };

static enum cql_verdict cql_deny_verdict(const command_list *list, uint32_t kinds, const sluice_batch *batch, size_t i,
                                         char *why, size_t why_len, sluice_host_view *id) {
  size_t statements = host->cql_statement_count(batch, i);
  int matched = 0;
  for (size_t s = 0; s < statements; s++) {
    sluice_cql_statement st;
    int32_t status = host->cql_statement(batch, i, s, &st);
    if (status == SLUICE_ERROR_NOT_FOUND) {
      *id = (sluice_host_view){NULL, 0};
      cql_prepared_id(batch, i, s, id);
      return CQL_UNSEEN;
    }
    if (!matched) matched = cql_statement_matches(list, kinds, batch, i, s, status == SLUICE_OK ? &st : NULL, why, why_len);
  }
  return matched ? CQL_MATCHES : CQL_PASSES;
}

#define UNPREPARED_MESSAGE "command-filter: prepared statement unknown to this proxy; prepare it again through it"

/* Puts an ERROR UNPREPARED (0x2500) for prepared id `id` at `at` of `errors`, answering a request of
 * header h: what Cassandra answers for an id it does not know, so drivers prepare the statement
 * again (now through Sluice, which then reads its text) and retry. */
static int32_t cql_put_unprepared(sluice_batch *errors, size_t at, const sluice_cql_header *h, sluice_host_view id) {
  size_t message = sizeof UNPREPARED_MESSAGE - 1;
  size_t body = 4 + 2 + message + 2 + id.len;
  uint8_t *frame = malloc(9 + body);
  if (frame == NULL) return SLUICE_ERROR;
  size_t n = 0;
  frame[n++] = (uint8_t)(h->version | 0x80);
  frame[n++] = 0;
  frame[n++] = (uint8_t)((uint16_t)h->stream >> 8);
  frame[n++] = (uint8_t)((uint16_t)h->stream & 0xFF);
  frame[n++] = SLUICE_CQL_OP_ERROR;
  frame[n++] = (uint8_t)(body >> 24);
  frame[n++] = (uint8_t)(body >> 16);
  frame[n++] = (uint8_t)(body >> 8);
  frame[n++] = (uint8_t)body;
  frame[n++] = 0x00;
  frame[n++] = 0x00;
  frame[n++] = 0x25;
  frame[n++] = 0x00;
  frame[n++] = (uint8_t)(message >> 8);
  frame[n++] = (uint8_t)message;
  memcpy(frame + n, UNPREPARED_MESSAGE, message);
  n += message;
  frame[n++] = (uint8_t)(id.len >> 8);
  frame[n++] = (uint8_t)id.len;
  if (id.len > 0) memcpy(frame + n, id.ptr, id.len);
  n += id.len;
  int32_t status = host->batch_put_bytes(errors, at, frame, n);
  free(frame);
  return status;
}

typedef struct deny_config {
  /* The list new connections start with. Replaced (never changed in place) by the control
   * functions, which never run concurrently with instance_new (the host's promise). */
  command_list *list;
  uint32_t statement_kinds;              /* CQL: bit SLUICE_CQL_STATEMENT_* per denied kind */
  int32_t cql_code;                      /* CQL: the ERROR code of a denial */
  char *message;                         /* custom error text, or NULL */
  sluice_metric *denied;
  sluice_metric *unprepared;             /* CQL: unseen prepared ids answered with UNPREPARED */
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
  command_list_free(c->list);
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
          (text.len == 7 && memcmp(text.ptr, "message", 7) == 0) ||
          (text.len == 10 && memcmp(text.ptr, "statements", 10) == 0) ||
          (text.len == 4 && memcmp(text.ptr, "code", 4) == 0))) {
      config_fail(env, key, "unknown key (expected: commands, statements, code, message)");
      return SLUICE_ERROR;
    }
  }
  uint32_t kinds = 0;
  const sluice_config_node *kinds_node = NULL;
  if (host->node_map_get(node, "statements", 10, &kinds_node) == SLUICE_OK &&
      (kinds = read_statement_kinds(env, kinds_node)) == 0) {
    return SLUICE_ERROR;
  }
  int32_t code = SLUICE_CQL_ERROR_UNAUTHORIZED;
  const sluice_config_node *code_node = NULL;
  if (host->node_map_get(node, "code", 4, &code_node) == SLUICE_OK) {
    static const struct { const char *name; int32_t code; } codes[] = {
        {"server_error", SLUICE_CQL_ERROR_SERVER_ERROR}, {"overloaded", SLUICE_CQL_ERROR_OVERLOADED},
        {"unauthorized", SLUICE_CQL_ERROR_UNAUTHORIZED}, {"invalid", SLUICE_CQL_ERROR_INVALID},
        {"syntax_error", SLUICE_CQL_ERROR_SYNTAX_ERROR}, {"config_error", SLUICE_CQL_ERROR_CONFIG_ERROR},
        {"truncate_error", SLUICE_CQL_ERROR_TRUNCATE_ERROR}, {"is_bootstrapping", SLUICE_CQL_ERROR_IS_BOOTSTRAPPING},
    };
    sluice_host_view text;
    int found = 0;
    if (host->node_scalar(code_node, &text) == SLUICE_OK) {
      for (size_t k = 0; k < sizeof codes / sizeof codes[0]; k++) {
        if (name_is(text, codes[k].name)) {
          code = codes[k].code;
          found = 1;
        }
      }
    }
    if (!found) {
      config_fail(env, code_node, "code: expected a CQL error code: unauthorized, invalid, overloaded, server_error, "
                                  "syntax_error, config_error, truncate_error or is_bootstrapping");
      return SLUICE_ERROR;
    }
  }
  const sluice_config_node *list = NULL;
  int has_commands = host->node_map_get(node, "commands", 8, &list) == SLUICE_OK;
  if ((has_commands || kinds == 0) &&
      (!has_commands || host->node_kind(list) != SLUICE_NODE_SEQUENCE || host->node_count(list) == 0)) {
    config_fail(env, list ? list : node, "commands: expected a non-empty sequence of command names"
                                         " (or statements: for CQL)");
    return SLUICE_ERROR;
  }
  deny_config *c = calloc(1, sizeof *c);
  if (c == NULL) return SLUICE_ERROR;
  c->statement_kinds = kinds;
  c->cql_code = code;
  c->list = calloc(1, sizeof *c->list);
  if (c->list == NULL) {
    deny_config_free(c);
    return SLUICE_ERROR;
  }
  c->list->count = has_commands ? host->node_count(list) : 0;
  c->list->commands = calloc(c->list->count > 0 ? c->list->count : 1, sizeof *c->list->commands);
  if (c->list->commands == NULL) {
    deny_config_free(c);
    return SLUICE_ERROR;
  }
  for (size_t i = 0; i < c->list->count; i++) {
    const sluice_config_node *item = NULL;
    sluice_host_view name;
    host->node_at(list, i, NULL, &item);
    if (host->node_scalar(item, &name) != SLUICE_OK || name.len == 0 || name.len > MAX_COMMAND_LEN) {
      config_fail(env, item, "commands: each item must be a command name of 1 to 64 characters");
      deny_config_free(c);
      return SLUICE_ERROR;
    }
    for (size_t j = 0; j < name.len; j++) c->list->commands[i][j] = (char)tolower(name.ptr[j]);
    c->list->commands[i][name.len] = '\0';
  }
  command_list_word_kinds(c->list);
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
      host->metric_counter(env, "command_filter_unprepared", 25, &c->unprepared) != SLUICE_OK ||
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

/* Per connection: the shared config, its own copy of the command list (replaced by published
 * changes), the transaction state and the calls waiting for their EXECABORTs. */
typedef struct deny_instance {
  deny_config *config;
  command_list *list;
  enum transaction_state transaction;
  exec_aborts *pending;
} deny_instance;

static int32_t deny_instance_new(void *config, sluice_instance_env *env, void **out) {
  (void)env;
  deny_instance *instance = calloc(1, sizeof *instance);
  if (instance == NULL) return SLUICE_ERROR;
  instance->config = config;
  instance->list = command_list_copy(instance->config->list, NULL, (size_t)-1);
  if (instance->list == NULL) {
    free(instance);
    return SLUICE_ERROR;
  }
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
  command_list_free(instance->list);
  free(instance);
}

/* Index into c->commands of request i's command, or -1. */
static int denied_command(const command_list *c, const sluice_batch *batch, size_t i) {
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

/* CQL: answers the denied requests with an ERROR frame of the configured code (call_answer) and
 * passes the rest on. */
static int32_t deny_cql_requests(deny_instance *instance, sluice_call *call, sluice_batch *requests, size_t count) {
  const deny_config *c = instance->config;
  sluice_batch *errors = NULL;
  int32_t status = SLUICE_OK;
  int inspects = c->statement_kinds != 0 || (instance->list != NULL && instance->list->count > 0);
  for (size_t i = 0; i < count && status == SLUICE_OK; i++) {
    char why[MAX_COMMAND_LEN + 32];
    sluice_host_view id;
    if (!inspects) continue;  /* nothing to match */
    enum cql_verdict verdict = cql_deny_verdict(instance->list, c->statement_kinds, requests, i, why, sizeof why, &id);
    if (verdict == CQL_UNSEEN) {
      /* Its text is unknown here, so it cannot be let through unread: UNPREPARED makes the driver
       * prepare it again through Sluice; a frame without a readable id is refused outright. */
      sluice_cql_header h;
      if (errors == NULL) errors = host->batch_new(SLUICE_BATCH_RESPONSES, SLUICE_PROTOCOL_CQL);
      size_t at = errors ? host->batch_count(errors) : 0;
      status = errors == NULL ? SLUICE_ERROR : host->cql_header(requests, i, &h);
      if (status == SLUICE_OK && id.len > 0 && id.len <= 0xFFFF) {
        status = cql_put_unprepared(errors, at, &h, id);
      } else if (status == SLUICE_OK) {
        const char *m = "command-filter: a statement unknown to this proxy is denied";
        status = host->cql_put_error(errors, at, h.version, h.stream, c->cql_code, m, strlen(m));
      }
      if (status == SLUICE_OK) status = host->call_answer(call, i, errors, at);
      host->metric_add(c->unprepared, 1);
      continue;
    }
    if (verdict == CQL_PASSES) continue;
    sluice_cql_header h;
    char text[256];
    int n = c->message ? snprintf(text, sizeof text, "command-filter: %s", c->message)
                       : snprintf(text, sizeof text, "command-filter: %s denied by this proxy", why);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof text) n = (int)sizeof text - 1;
    if (errors == NULL) errors = host->batch_new(SLUICE_BATCH_RESPONSES, SLUICE_PROTOCOL_CQL);
    size_t at = errors ? host->batch_count(errors) : 0;
    status = errors == NULL ? SLUICE_ERROR : host->cql_header(requests, i, &h);
    if (status == SLUICE_OK) status = host->cql_put_error(errors, at, h.version, h.stream, c->cql_code, text, (size_t)n);
    if (status == SLUICE_OK) status = host->call_answer(call, i, errors, at);
    host->metric_add(c->denied, 1);
  }
  host->batch_free(errors);
  if (status != SLUICE_OK) return host->call_fail(call, "cannot answer a denied request", 30);
  return host->call_pass(call);
}

/* Answers the denied requests here (call_answer) and passes the rest on: the host sends only those
 * and puts the errors back in their places. Only a batch with a doomed EXEC needs on_responses. */
static int32_t deny_on_requests(void *p, sluice_call *call, sluice_batch *requests) {
  deny_instance *instance = p;
  const deny_config *c = instance->config;
  size_t count = host->batch_count(requests);
  host->metric_add(c->requests, count);
  if (host->batch_protocol(requests) == SLUICE_PROTOCOL_CQL) return deny_cql_requests(instance, call, requests, count);
  sluice_batch *errors = NULL;  /* made at the first denied request */
  exec_aborts *aborts = NULL;   /* made at the first doomed EXEC */
  int32_t status = SLUICE_OK;
  for (size_t i = 0; i < count && status == SLUICE_OK; i++) {
    int k = denied_command(instance->list, requests, i);
    enum deny_route route = deny_route_of(instance, requests, i, k >= 0);
    if (route == ROUTE_DENIED) {
      if (errors == NULL) errors = host->batch_new(SLUICE_BATCH_RESPONSES, SLUICE_PROTOCOL_REDIS);
      size_t at = errors ? host->batch_count(errors) : 0;
      status = errors ? put_denied_error(c, errors, at, instance->list->commands[k]) : SLUICE_ERROR;
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

/* ---- deny's control functions (ABI 1.2) ------------------------------------------------------- */

static void control_reply(sluice_control_call *ctl, const char *text) {
  host->control_reply(ctl, text, strlen(text));
}

/* Replies with the list: "denied: get, set". */
static void reply_list(sluice_control_call *ctl, const command_list *list) {
  char text[4096];
  size_t n = (size_t)snprintf(text, sizeof text, "denied:");
  for (size_t i = 0; i < list->count && n < sizeof text; i++) {
    n += (size_t)snprintf(text + n, sizeof text - n, "%s %s", i == 0 ? "" : ",", list->commands[i]);
  }
  if (list->count == 0 && n < sizeof text) snprintf(text + n, sizeof text - n, " (nothing)");
  control_reply(ctl, text);
}

/* Runs on each connection's event loop: the connection takes a copy of the published list. */
static void apply_list(void *p, void *data) {
  deny_instance *instance = p;
  command_list *copy = command_list_copy(data, NULL, (size_t)-1);
  if (copy == NULL) return; /* out of memory: the connection keeps its old list */
  command_list_free(instance->list);
  instance->list = copy;
}

static void free_published_list(void *data) { command_list_free(data); }

/* Makes next the config's list and publishes a copy of it to every live connection. */
static int32_t install_list(deny_config *c, sluice_control_call *ctl, command_list *next) {
  command_list *published = command_list_copy(next, NULL, (size_t)-1);
  if (published == NULL) {
    command_list_free(next);
    control_reply(ctl, "out of memory");
    return SLUICE_ERROR;
  }
  command_list_free(c->list);
  c->list = next;
  if (host->control_publish(ctl, apply_list, published, free_published_list) != SLUICE_OK) {
    command_list_free(published);
    control_reply(ctl, "cannot publish the new list");
    return SLUICE_ERROR;
  }
  reply_list(ctl, next);
  return SLUICE_OK;
}

/* A command name from the operator, lowercased into out; 0 if it is not one. */
static int normalised_command(const char *command, char out[MAX_COMMAND_LEN + 1]) {
  size_t n = strlen(command);
  if (n == 0 || n > MAX_COMMAND_LEN) return 0;
  for (size_t i = 0; i < n; i++) {
    if (isspace((unsigned char)command[i]) || !isprint((unsigned char)command[i])) return 0;
    out[i] = (char)tolower((unsigned char)command[i]);
  }
  out[n] = '\0';
  return 1;
}

static ptrdiff_t list_index(const command_list *list, const char *name) {
  for (size_t i = 0; i < list->count; i++) {
    if (strcmp(list->commands[i], name) == 0) return (ptrdiff_t)i;
  }
  return -1;
}

/* deny.add(command): deny one more command. */
static int32_t deny_control_add(void *config, sluice_control_call *ctl, const char *command) {
  deny_config *c = config;
  char name[MAX_COMMAND_LEN + 1];
  if (!normalised_command(command, name)) {
    control_reply(ctl, "expected a command name of 1 to 64 printable characters");
    return SLUICE_ERROR_INVALID_ARGUMENT;
  }
  if (list_index(c->list, name) >= 0) {
    reply_list(ctl, c->list);
    return SLUICE_OK; /* already denied: nothing changes */
  }
  command_list *next = command_list_copy(c->list, name, (size_t)-1);
  if (next == NULL) {
    control_reply(ctl, "out of memory");
    return SLUICE_ERROR;
  }
  return install_list(c, ctl, next);
}

/* deny.remove(command): stop denying a command. */
static int32_t deny_control_remove(void *config, sluice_control_call *ctl, const char *command) {
  deny_config *c = config;
  char name[MAX_COMMAND_LEN + 1];
  ptrdiff_t at = normalised_command(command, name) ? list_index(c->list, name) : -1;
  if (at < 0) {
    char text[128];
    snprintf(text, sizeof text, "'%.64s' is not in the deny list", command);
    control_reply(ctl, text);
    return SLUICE_ERROR_NOT_FOUND;
  }
  command_list *next = command_list_copy(c->list, NULL, (size_t)at);
  if (next == NULL) {
    control_reply(ctl, "out of memory");
    return SLUICE_ERROR;
  }
  return install_list(c, ctl, next);
}

/* deny.list(): the commands denied now. */
static int32_t deny_control_list(void *config, sluice_control_call *ctl) {
  reply_list(ctl, ((deny_config *)config)->list);
  return SLUICE_OK;
}

static const sluice_control_function deny_controls[] = {
    {
        .struct_size = sizeof(sluice_control_function),
        .name = "add",
        .params = "const char *command",
        .help = "deny one more command on every connection of this step (live connections included)",
        .fn = (sluice_control_fn)deny_control_add,
    },
    {
        .struct_size = sizeof(sluice_control_function),
        .name = "remove",
        .params = "const char *command",
        .help = "stop denying a command (SLUICE_ERROR_NOT_FOUND if it is not denied)",
        .fn = (sluice_control_fn)deny_control_remove,
    },
    {
        .struct_size = sizeof(sluice_control_function),
        .name = "list",
        .params = "",
        .help = "the commands this step denies now",
        .fn = (sluice_control_fn)deny_control_list,
    },
};

/* ---- count ----------------------------------------------------------------------------------- */

/* What count counts: every request, or (with commands / statements) the matching ones. */
typedef struct count_config {
  sluice_metric *counter;
  command_list *list;      /* NULL: no command filter */
  uint32_t statement_kinds; /* 0: no statement filter */
} count_config;

static void count_config_free(void *p) {
  count_config *c = p;
  if (c == NULL) return;
  command_list_free(c->list);
  free(c);
}

static int32_t count_config_new(sluice_config_env *env, const sluice_config_node *node, void **out) {
  int32_t kind = host->node_kind(node);
  if (kind != SLUICE_NODE_NULL && kind != SLUICE_NODE_MAP) {
    config_fail(env, node, "count takes nothing or { commands: [NAME, ...], statements: [KIND, ...] }");
    return SLUICE_ERROR;
  }
  count_config *c = calloc(1, sizeof *c);
  if (c == NULL) return SLUICE_ERROR;
  for (size_t i = 0; kind == SLUICE_NODE_MAP && i < host->node_count(node); i++) {
    const sluice_config_node *key = NULL, *value = NULL;
    sluice_host_view text;
    host->node_at(node, i, &key, &value);
    if (host->node_scalar(key, &text) == SLUICE_OK && text.len == 10 && memcmp(text.ptr, "statements", 10) == 0) {
      if ((c->statement_kinds = read_statement_kinds(env, value)) == 0) {
        count_config_free(c);
        return SLUICE_ERROR;
      }
    } else if (host->node_scalar(key, &text) == SLUICE_OK && text.len == 8 && memcmp(text.ptr, "commands", 8) == 0 &&
               host->node_kind(value) == SLUICE_NODE_SEQUENCE && host->node_count(value) > 0) {
      command_list empty = {0, NULL, 0};
      c->list = command_list_copy(&empty, NULL, (size_t)-1);
      for (size_t j = 0; c->list != NULL && j < host->node_count(value); j++) {
        const sluice_config_node *item = NULL;
        sluice_host_view name;
        char lower[MAX_COMMAND_LEN + 1];
        host->node_at(value, j, NULL, &item);
        if (host->node_scalar(item, &name) != SLUICE_OK || name.len == 0 || name.len > MAX_COMMAND_LEN) {
          config_fail(env, item, "commands: each item must be a command name of 1 to 64 characters");
          count_config_free(c);
          return SLUICE_ERROR;
        }
        for (size_t k = 0; k < name.len; k++) lower[k] = (char)tolower(name.ptr[k]);
        lower[name.len] = '\0';
        command_list *next = command_list_copy(c->list, lower, (size_t)-1);
        command_list_free(c->list);
        c->list = next;
      }
      if (c->list == NULL) {
        count_config_free(c);
        return SLUICE_ERROR;
      }
    } else {
      config_fail(env, key, "unknown key or value (expected: commands: [NAME, ...], statements: [KIND, ...])");
      count_config_free(c);
      return SLUICE_ERROR;
    }
  }
  if (host->metric_counter(env, "command_filter_counted", 22, &c->counter) != SLUICE_OK) {
    count_config_free(c);
    return SLUICE_ERROR;
  }
  *out = c;
  return SLUICE_OK;
}

/* The instance is the config itself. */
static int32_t count_instance_new(void *config, sluice_instance_env *env, void **out) {
  (void)env;
  *out = config;
  return SLUICE_OK;
}

static int32_t count_on_requests(void *instance, sluice_call *call, sluice_batch *requests) {
  const count_config *c = instance;
  size_t count = host->batch_count(requests);
  if (c->list == NULL && c->statement_kinds == 0) {
    host->metric_add(c->counter, count);
    return host->call_pass(call);
  }
  uint64_t matched = 0;
  int cql = host->batch_protocol(requests) == SLUICE_PROTOCOL_CQL;
  for (size_t i = 0; i < count; i++) {
    char why[MAX_COMMAND_LEN + 32];
    if (cql) {
      matched += (uint64_t)cql_request_matches(c->list, c->statement_kinds, requests, i, why, sizeof why);
    } else if (c->list != NULL) {
      sluice_host_view name;
      size_t argc = 0;
      if (host->redis_args(requests, i, &name, 1, &argc) != SLUICE_OK || argc == 0 || name.len > MAX_COMMAND_LEN) continue;
      for (size_t k = 0; k < c->list->count; k++) matched += (uint64_t)name_is(name, c->list->commands[k]);
    }
  }
  if (matched > 0) host->metric_add(c->counter, matched);
  return host->call_pass(call);
}

/* ---- descriptor -------------------------------------------------------------------------------- */

static const sluice_transform_descriptor transforms[] = {
    {
        .struct_size = sizeof(sluice_transform_descriptor),
        .protocols = SLUICE_PROTOCOL_REDIS | SLUICE_PROTOCOL_CQL,
        .name = "deny",
        .description = "answers configured commands with an error instead of sending them",
        .config_new = deny_config_new,
        .config_free = deny_config_free,
        .instance_new = deny_instance_new,
        .instance_free = deny_instance_free,
        .on_requests = deny_on_requests,
        .on_responses = deny_on_responses,
        .control_functions = deny_controls,
        .control_function_count = sizeof deny_controls / sizeof deny_controls[0],
    },
    {
        .struct_size = sizeof(sluice_transform_descriptor),
        .protocols = SLUICE_PROTOCOL_REDIS | SLUICE_PROTOCOL_CQL,
        .name = "count",
        .description = "counts requests (metric sluice_plugin_command_filter_counted_total)",
        .config_new = count_config_new,
        .config_free = count_config_free,
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
  /* call_pass, call_answer and redis_set_arg are since 1.1, control_reply and control_publish since
   * 1.2, the cql_* functions since 1.3; the descriptor's flag makes an older host refuse this plugin
   * by name. */
  if (h == NULL || h->abi_major != SLUICE_ABI_VERSION_MAJOR || h->abi_minor < 3) {
    return NULL;
  }
  host = h;
  return &descriptor;
}
