/*
 * sluice_plugin.h — the whole contract between the Sluice host and a transform plugin.
 *
 * A plugin is a shared object (.so) that exports exactly one well-known symbol,
 * SLUICE_PLUGIN_INIT_SYMBOL ("sluice_plugin_init"), of type sluice_plugin_init_fn. The host opens
 * every *.so in its plugin directory with dlopen(path, RTLD_NOW | RTLD_LOCAL), looks that symbol up,
 * and calls it once with a table of host functions (sluice_host_api). The plugin answers with a
 * descriptor (sluice_plugin_descriptor) naming itself and the transforms it offers. A plugin never
 * links against host symbols: everything it needs from the host is reached through the table, so a
 * plugin has no undefined host symbols and does not depend on the host binary.
 *
 * This header is C99 with fixed-width integers, pointers and size_t only. Enumerations cross the
 * boundary as int32_t. Nothing specific to Swift, C++ or Rust crosses it: Swift errors, C++
 * exceptions and Rust panics must be caught inside the plugin.
 *
 * ---------------------------------------------------------------------------------------------
 * COMPATIBILITY POLICY
 * ---------------------------------------------------------------------------------------------
 * - The ABI has a major and a minor version (SLUICE_ABI_VERSION_MAJOR / _MINOR).
 * - A minor version only ADDS: new host functions appended at the end of sluice_host_api, new
 *   fields appended at the end of sluice_plugin_descriptor / sluice_transform_descriptor, new
 *   enumeration values, new hooks appended at the end of sluice_transform_descriptor. Existing
 *   functions keep their signature and meaning.
 * - Only a major version may remove, reorder or change anything. The host refuses a plugin built
 *   for another major version, with a message naming both versions.
 * - Every versioned struct starts with (or carries) struct_size. A reader never touches a field that
 *   lies beyond the struct_size the writer declared:
 *     * The host accepts a plugin built against an older minor of the same major: fields the plugin's
 *       descriptor does not have (beyond its struct_size) read as NULL / zero, and every function
 *       of the older minor keeps working as it did.
 *     * A plugin built against a newer minor than the host: sluice_plugin_descriptor.abi_minor is
 *       the minor of the header the plugin was built with. If the plugin sets
 *       SLUICE_PLUGIN_FLAG_REQUIRES_MINOR it NEEDS that minor (it calls the newer functions without
 *       checking), and a host with an older minor refuses it with a message naming both versions
 *       ("plugin requires ABI 1.2, host speaks ABI 1.1"). Without the flag the plugin promises to
 *       check host->abi_minor before calling any function marked "since 1.x" with x newer than the
 *       host's minor, and it loads. SluiceSDK and the plugin templates set the flag.
 * - Every header change bumps the minor (or the major). A unit test records the SHA-256 of this file
 *   per version (Sources/PluginABI/abi-versions.txt) and fails when the header changes without it;
 *   while a minor is unreleased (on main only), its recorded hash is updated instead.
 * - Every host function, hook and field added after 1.0 says "since 1.x" in its doc block.
 *
 * VERSION PLAN
 *   1.0  the first ABI (Redis).
 *   1.1  call_pass (it was appended to 1.0 without a bump and is formally part of 1.1); handles
 *        (call, batch, timer, send) that are safe to misuse: a stale or foreign one is refused with
 *        SLUICE_ERROR_STATE and never dereferenced; send with a timeout and a cancel; a deadline for
 *        calls a plugin never completes; replies encoded for the client's protocol (RESP2/RESP3);
 *        in-place argument edits, key positions, a session property getter, partial answers.
 *   1.2  control functions: a transform declares functions an operator calls at run time through
 *        the admin endpoint (sluice ctl call), with the config of one chain step; the host calls them
 *        through libffi by their declared C signature; control_reply and control_publish (see
 *        CONTROL FUNCTIONS below).
 *   1.3  CQL (Cassandra native protocol v4/v5) accessors and builders for batches whose protocol is
 *        SLUICE_PROTOCOL_CQL. Redis functions never change for it. Host behaviour (no signature):
 *        a CQL answer a transform gives (call_answer, call_respond) goes out with its request's
 *        stream id; one of another protocol version is replaced with an ERROR (see CQL below).
 *
 * ---------------------------------------------------------------------------------------------
 * NAMING
 * ---------------------------------------------------------------------------------------------
 * - Hooks are implemented by the plugin and called by the host: fields named on_* / *_new / *_free in
 *   sluice_transform_descriptor, plus sluice_plugin_init.
 * - Host functions are implemented by the host and called by the plugin through sluice_host_api;
 *   their typedefs are named sluice_host_*_fn.
 * - sluice_host_view: bytes the host owns and lends; never free or write through it.
 *
 * ---------------------------------------------------------------------------------------------
 * LIFECYCLE AND THREADS
 * ---------------------------------------------------------------------------------------------
 * 1. sluice_plugin_init: once per loaded copy of the plugin file, before any other hook of that copy:
 *    at start-up on the host's main thread; when a reload (sluice ctl reload, SIGHUP) finds a plugin
 *    file whose contents changed, the new copy's init runs on the host's reload thread.
 * 2. config_new: once per position in a chain where the transform is used, with the YAML subtree
 *    the user wrote for it: at start-up on the main thread, and again for every position of the
 *    new configuration at each reload, on the reload thread (one reload at a time). The config
 *    object is then shared by every connection on every event-loop thread: after config_new
 *    returns it must be treated as read-only (or be internally synchronised).
 * 3. instance_new: once per client connection that uses the chain, on that connection's event-loop
 *    thread. An instance is only ever touched from that one thread, so transform code needs no locks.
 *    on_requests, on_responses, send completions, timer callbacks and instance_free for an instance
 *    all run on that same thread.
 * 4. instance_free: when the client connection closes, after every call of the instance completed or
 *    was abandoned. Pending send completions and timers of the instance are cancelled first (their
 *    callbacks are not called after instance_free). A call the plugin had not completed is abandoned:
 *    no hook runs for it again, its handle is invalid once instance_free returns, and whatever the
 *    plugin attached to it (call_set_data) or still holds for it (owned batches) is the plugin's to
 *    release in instance_free. Timer handles stay valid during instance_free (timer_cancel on them is
 *    harmless). instance_free never runs while a hook, completion or timer callback of the same
 *    instance is on the stack: a close that an answer causes (QUIT, stopping) happens on a later
 *    turn of the event loop.
 * 5. config_free: at shutdown on the main thread, or, after a reload replaced the configuration, on
 *    the reload thread once the last instance made from that config was freed (never while a
 *    control function runs on it). Configs of one process may thus be alive in several generations
 *    at once. The host never dlclose()s a plugin (Swift code cannot be unloaded and
 *    code may still be on a stack).
 * 6. control functions (since 1.2): when an operator calls one, on the host's admin thread, with
 *    the config of one chain step; see CONTROL FUNCTIONS.
 * A hook must never block its thread (no sleeping, no blocking I/O, no waiting on locks held across
 * I/O). Host functions may only be called from the thread that runs the current hook, unless the
 * function's doc says THREAD: any.
 *
 * ---------------------------------------------------------------------------------------------
 * THE CONTINUATION MODEL
 * ---------------------------------------------------------------------------------------------
 * The host delivers requests in batches (everything one network read produced, in order).
 * on_requests(instance, call, requests) must end — during the hook or later — in exactly one of:
 *   - host->call_forward(call): pass the (possibly modified) request batch to the next step of the
 *     chain. The responses come back through on_responses (or straight up the chain if the
 *     transform has no on_responses hook). host->call_pass(call) does the same but lets this
 *     call's responses bypass on_responses.
 *   - host->call_respond(call, responses): answer the requests here (cache hit, filter, throttle).
 *   - host->call_fail(call, message): every request of the batch is answered with an error in its
 *     protocol (Redis: "-ERR <transform>: <message>"; CQL, since 1.3: an ERROR frame SERVER_ERROR
 *     "<transform>: <message>" on the request's stream; host->call_fail_code chooses the code).
 * on_responses(instance, call, requests, responses) must likewise end in call_respond or call_fail.
 * A transform may also send a batch of its own to another named chain or sink (host->send) and
 * finish the call when the completion arrives (tee, redirect).
 * on_responses is never called from inside call_forward, and a send completion never from inside
 * send: they always arrive in a later turn of the event loop, so a hook may set up its state after
 * forwarding or sending.
 * Completing a call twice is refused with SLUICE_ERROR_STATE. A hook that returns a status other than
 * SLUICE_OK without having completed its call makes the host fail the call with a generic message.
 * Every request gets exactly one response, in order: a response batch passed to call_respond must
 * hold as many messages as the request batch of that call.
 * CALL DEADLINE (since 1.1): a call the plugin keeps past its hook must be completed within the
 * host's call deadline (config plugins.call_deadline_ms, default 60000 ms; 0 disables it), counted
 * while it is the plugin's turn (before forwarding, and from on_responses on; not while the rest of
 * the chain works on a forwarded batch, nor while the instance waits for a send of its own: then
 * the clock starts again). When it expires the host answers every request of the call
 * with "-ERR <transform>: the transform did not answer within N ms (sluice call deadline)" (CQL: an
 * ERROR frame SERVER_ERROR with that text, since 1.3), logs it,
 * and the call's handle becomes stale: the plugin's late completion is refused with
 * SLUICE_ERROR_STATE (free your per-call state then, or in instance_free). host->call_set_deadline
 * changes it for one call (e.g. 0 while a blocking command waits at another target).
 *
 * ---------------------------------------------------------------------------------------------
 * HANDLES (since 1.1)
 * ---------------------------------------------------------------------------------------------
 * sluice_call, sluice_batch, sluice_timer and sluice_send pointers are handles, not addresses: the
 * host packs a slot index, a per-thread table id and the slot's generation into the pointer's bits
 * and checks all three (and the handle's kind) on every use. A handle that is stale (its call was
 * completed or expired, its batch freed or given away, or its lending call completed; its timer
 * fired or was cancelled; its send completed, timed out or was cancelled), that belongs to another
 * thread, or that is of another kind is never dereferenced: functions that return a status return
 * SLUICE_ERROR_STATE, the others do nothing (void), return 0 (counts), -1 (kinds) or NULL, and the
 * host logs a warning (at most one line a second per thread). Storage is reused, handles are not:
 * a kept handle of a completed call never reaches a later call, even of the same transform.
 * Handles are still only valid on the thread that issued them (the instance's event loop).
 *
 * ---------------------------------------------------------------------------------------------
 * CONTROL FUNCTIONS (since 1.2)
 * ---------------------------------------------------------------------------------------------
 * A transform may declare functions that an operator calls while Sluice runs (the admin endpoint,
 * `sluice ctl call PLUGIN.FUNCTION --step CHAIN[N] ARGS...`): change a policy, a list, a rate.
 * Each is declared in sluice_transform_descriptor.control_functions with a name, its parameters as
 * C text and a help line (sluice_control_function). The host parses the parameters at load (a
 * declaration it cannot parse refuses the plugin, by name), converts the operator's text arguments
 * by them, refuses a wrong count or a value of the wrong type BEFORE any call, and then calls the
 * function through libffi as
 *     int32_t fn(void *config, sluice_control_call *ctl, <the declared parameters>)
 * config: the config object config_new made for the chain step the operator named (may be NULL if
 * config_new stored NULL). ctl: the handle of this call, for control_reply and control_publish.
 * The parameter types (the whole set; anything else is refused at load):
 *     int64_t NAME            a decimal integer ("-12"; no spaces, no other bases)
 *     double NAME             a finite decimal number ("0.25", "1e3")
 *     bool NAME               C99 bool (stdbool.h): true/false, 1/0, yes/no, on/off
 *     const char *NAME        NUL-terminated UTF-8 text (an argument holding a NUL byte is refused)
 *     const uint8_t *NAME, size_t NAME_len
 *                             a byte buffer and its length: always this pair, in this order
 * written as in a C prototype, separated by commas; "" or "void" declares no parameter; at most 8
 * parameters (a byte buffer counts once). Example: .params = "const char *policy, int64_t limit".
 * RETURN: a status. SLUICE_OK: success; the reply text (control_reply), if any, is the value shown
 * to the operator. Any other status: failure; the reply text, if any, is the error message shown
 * (with the status), the operator's command exits non-zero, and the host goes on as before (a
 * plugin's error return never harms the host). The function must leave its config consistent in
 * either case.
 * OWNERSHIP: every argument is the host's and lent for the duration of the call only (copy what
 * you keep). LIFETIME: strings and buffers until the function returns; ctl is stale afterwards.
 * THREAD: the host's admin thread, never an event loop. One control call runs at a time per
 * process. A control function never runs concurrently with config_new, config_free or instance_new
 * of the same config (the host serialises them), but it DOES run concurrently with on_requests,
 * on_responses, completions, timers and instance_free of that config's instances on the event
 * loops. Hence:
 *   - a control function must not touch instances directly, nor call host functions other than
 *     log, metric_add, control_reply and control_publish;
 *   - it may change the config object freely with respect to config_new/instance_new (which see
 *     either the old or the new settings, whole), but whatever hooks on the event loops read from
 *     the config while it changes must be read atomically by the plugin; the usual way is that
 *     instances keep their own copy of the settings (taken in instance_new) and receive new ones
 *     through control_publish, which runs a callback on each live instance on its own event loop,
 *     so no instance needs a lock.
 * A function must not block for long (it holds the admin thread, and a connection opening on a step
 * of its config waits for it, since instance_new never overlaps it) and must not throw (C++) or
 * unwind (Rust panics, Swift errors) across the boundary.
 */
#ifndef SLUICE_PLUGIN_H
#define SLUICE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ============================================================================================= */
/* Versions, magic, entry symbol                                                                  */
/* ============================================================================================= */

/** Major version: a plugin built for another major is refused. */
#define SLUICE_ABI_VERSION_MAJOR 1
/** Minor version: additions only (see COMPATIBILITY POLICY). */
#define SLUICE_ABI_VERSION_MINOR 3
/** First field of sluice_plugin_descriptor: "SLCE" in ASCII. A mismatch means "not a Sluice plugin". */
#define SLUICE_PLUGIN_MAGIC 0x534C4345u
/** The one symbol a plugin exports. */
#define SLUICE_PLUGIN_INIT_SYMBOL "sluice_plugin_init"

/* ============================================================================================= */
/* Basic types                                                                                    */
/* ============================================================================================= */

/** Status codes (int32_t). Every fallible host function returns one; hooks return one. */
#define SLUICE_OK 0
/** Generic failure; see the log or the function's doc. */
#define SLUICE_ERROR 1
/** An argument is NULL, out of range or of the wrong kind (e.g. a CQL batch to a Redis function). */
#define SLUICE_ERROR_INVALID_ARGUMENT 2
/** The operation is not allowed now (e.g. a call completed twice, a lent batch given away). */
#define SLUICE_ERROR_STATE 3
/** A message is not well-formed for its protocol. */
#define SLUICE_ERROR_MALFORMED 4
/** A cursor reached its end (not an error). */
#define SLUICE_END 5
/** A named target (chain or sink) does not exist. */
#define SLUICE_ERROR_NOT_FOUND 6
/** A send did not complete within its timeout (send_ex). SINCE 1.1 */
#define SLUICE_ERROR_TIMEOUT 7

/** Log levels (int32_t). */
#define SLUICE_LOG_TRACE 0
#define SLUICE_LOG_DEBUG 1
#define SLUICE_LOG_INFO 2
#define SLUICE_LOG_WARNING 3
#define SLUICE_LOG_ERROR 4

/** Protocols (bit flags in sluice_transform_descriptor.protocols; one value per batch). */
#define SLUICE_PROTOCOL_REDIS 1
/** Cassandra native protocol v4/v5 (since 1.3; see CQL). */
#define SLUICE_PROTOCOL_CQL 2

/** Batch kinds (int32_t). */
#define SLUICE_BATCH_REQUESTS 0
#define SLUICE_BATCH_RESPONSES 1

/**
 * A borrowed view of bytes owned by the host. Not NUL-terminated unless stated.
 * OWNERSHIP: host. LIFETIME: stated by the function that produced it. Never write through ptr.
 */
typedef struct sluice_host_view {
  const uint8_t *ptr;
  size_t len;
} sluice_host_view;

/* Opaque handles. Their layout is the host's; a plugin only holds and passes pointers. */

/** A YAML node of the user's config. LIFETIME: valid during config_new only. */
typedef struct sluice_config_node sluice_config_node;
/** Start-up context given to config_new (error reporting, target and metric lookup). */
typedef struct sluice_config_env sluice_config_env;
/** A named chain or sink, resolved at config time. LIFETIME: the whole process. */
typedef struct sluice_target sluice_target;
/** A metric handle. LIFETIME: the whole process. THREAD: any (updates are atomic). */
typedef struct sluice_metric sluice_metric;
/** Per-connection context given to instance_new (send, timers, client info). LIFETIME: until instance_free returns. */
typedef struct sluice_instance_env sluice_instance_env;
/** One pending on_requests call: the continuation. LIFETIME: until it is completed (forward without
 * on_responses, pass, respond, fail), expires (CALL DEADLINE) or is abandoned (instance_free), then
 * stale: every later use is refused (see HANDLES); a new call never gets a handle equal to a stale one
 * it could be confused with. */
typedef struct sluice_call sluice_call;
/** An ordered batch of messages (requests or responses) of one protocol. LIFETIME: a lent batch until
 * its call completes, an owned one until batch_free, send or call_respond takes it; then stale (see
 * HANDLES). */
typedef struct sluice_batch sluice_batch;
/** A pending timer. LIFETIME: until its callback returned or it was cancelled, then stale (see
 * HANDLES); during instance_free the handles of the instance's timers stay valid (cancel is harmless). */
typedef struct sluice_timer sluice_timer;
/** A send made with send_ex. LIFETIME: until its completion is called (it is stale inside the
 * completion), it times out, or it is cancelled; then stale (see HANDLES). SINCE 1.1 */
typedef struct sluice_send sluice_send;
/** One control function call in progress (see CONTROL FUNCTIONS). LIFETIME: until the control
 * function returns, then stale (control_reply and control_publish refuse it). SINCE 1.2 */
typedef struct sluice_control_call sluice_control_call;

/* ============================================================================================= */
/* Redis values (responses)                                                                        */
/* ============================================================================================= */

/** RESP2/RESP3 value types (int32_t), named after their wire type. */
#define SLUICE_REDIS_SIMPLE_STRING 1 /* '+'  bytes = the string */
#define SLUICE_REDIS_ERROR 2 /* '-'  bytes = the message, e.g. "ERR unknown command" */
#define SLUICE_REDIS_INTEGER 3 /* ':'  integer */
#define SLUICE_REDIS_BULK_STRING 4 /* '$'  bytes */
#define SLUICE_REDIS_ARRAY 5 /* '*'  count = elements that follow */
#define SLUICE_REDIS_NULL 6 /* '_', '$-1', '*-1' */
#define SLUICE_REDIS_BOOLEAN 7 /* '#'  integer = 0 or 1 */
#define SLUICE_REDIS_DOUBLE 8 /* ','  bytes = the textual double */
#define SLUICE_REDIS_BIG_NUMBER 9 /* '('  bytes = the digits */
#define SLUICE_REDIS_BLOB_ERROR 10 /* '!'  bytes */
#define SLUICE_REDIS_VERBATIM 11 /* '='  bytes = "txt:..." as on the wire */
#define SLUICE_REDIS_MAP 12 /* '%'  count = pairs; 2*count values follow */
#define SLUICE_REDIS_SET 13 /* '~'  count = elements */
#define SLUICE_REDIS_ATTRIBUTE 14 /* '|'  count = pairs; then the value it annotates */
#define SLUICE_REDIS_PUSH 15 /* '>'  count = elements */

/**
 * One value visited by a reply cursor (pre-order: an aggregate is visited before its elements, and
 * its count elements — 2*count for MAP and ATTRIBUTE — are the values visited next, recursively).
 * An attribute is visited before the value it annotates.
 * bytes: LIFETIME as the batch message it was read from (until that message is replaced or the
 * batch released). OWNERSHIP: host.
 */
typedef struct sluice_redis_value {
  int32_t type;           /* SLUICE_REDIS_* */
  uint32_t reserved;      /* 0. Nesting is derived from count: an aggregate's elements follow it */
  int64_t integer;        /* INTEGER and BOOLEAN */
  int64_t count;          /* aggregates: elements (ARRAY, SET, PUSH) or pairs (MAP, ATTRIBUTE) */
  sluice_host_view bytes; /* string-like types; empty otherwise */
} sluice_redis_value;

/**
 * Cursor state; the plugin owns the storage (usually on its stack), the host fills it.
 * Its contents are private to the host.
 */
typedef struct sluice_redis_cursor {
  uint64_t opaque[8];
} sluice_redis_cursor;

/* ============================================================================================= */
/* Callback types the plugin passes to the host                                                    */
/* ============================================================================================= */

/**
 * Completion of host->send.
 * user_data: as given to send. status: SLUICE_OK, or an error with error_message set (dead backend,
 * unknown target, a transform of the target chain failed the whole batch).
 * responses: on SLUICE_OK a response batch with one response per sent request; OWNERSHIP passes to
 * the plugin, which must either give it to call_respond or release it with batch_free. NULL on error.
 * error_message: LIFETIME during this callback only.
 * THREAD: the instance's event-loop thread; never called synchronously from inside send, never after
 * instance_free.
 */
typedef void (*sluice_send_completion_fn)(void *user_data, int32_t status, sluice_batch *responses,
                                          sluice_host_view error_message);

/** A timer firing. THREAD: the instance's event-loop thread; never after instance_free or cancel. */
typedef void (*sluice_timer_fn)(void *user_data);

/**
 * Applies published settings to one instance (control_publish). instance: an instance of the
 * config the control call was made with, as instance_new made it. data: as given to
 * control_publish; shared by every instance, so read it, do not change it.
 * THREAD: that instance's event-loop thread, between its hooks (never while one of its hooks,
 * completions or timers runs, never after its instance_free). SINCE 1.2
 */
typedef void (*sluice_on_publish_fn)(void *instance, void *data);

/**
 * Called once, after the apply callback of a control_publish ran on every instance it was
 * scheduled for (or that instance closed before its turn): free data here.
 * THREAD: any (the event loop of the last instance, or the admin thread). SINCE 1.2
 */
typedef void (*sluice_on_publish_done_fn)(void *data);

/* ============================================================================================= */
/* Host functions (the plugin calls them through sluice_host_api)                                  */
/* ============================================================================================= */

/* ---- logging and metrics -------------------------------------------------------------------- */

/**
 * Writes a log line through the host's logger (prefixed with nothing; name your plugin in message).
 * level: SLUICE_LOG_*. message: OWNERSHIP caller, copied before return; need not be NUL-terminated.
 * THREAD: any.
 */
typedef void (*sluice_host_log_fn)(int32_t level, const char *message, size_t message_len);

/**
 * Creates (or finds) a counter exported as sluice_plugin_<name>_total in the host's metrics, labelled
 * with the plugin and the chain position. Call from config_new only.
 * name: [a-z0-9_]+, OWNERSHIP caller. out_metric: receives a handle valid for the whole process.
 * Returns SLUICE_OK or SLUICE_ERROR_INVALID_ARGUMENT (bad name). THREAD: main (during config_new).
 */
typedef int32_t (*sluice_host_metric_counter_fn)(sluice_config_env *env, const char *name,
                                                 size_t name_len, sluice_metric **out_metric);

/** Adds delta to a counter. Cannot fail. THREAD: any. */
typedef void (*sluice_host_metric_add_fn)(sluice_metric *metric, uint64_t delta);

/* ---- configuration (only during config_new) ------------------------------------------------ */

/** YAML node kinds (int32_t). */
#define SLUICE_NODE_NULL 0 /* an absent or empty value ('~', 'null', nothing) */
#define SLUICE_NODE_SCALAR 1
#define SLUICE_NODE_SEQUENCE 2
#define SLUICE_NODE_MAP 3

/** Kind of a node: SLUICE_NODE_*. A NULL node pointer reads as SLUICE_NODE_NULL. THREAD: main. */
typedef int32_t (*sluice_host_node_kind_fn)(const sluice_config_node *node);

/**
 * Text of a scalar node. out: a view valid during config_new (NUL-terminated for convenience; the
 * NUL is not counted in len). Returns SLUICE_ERROR_INVALID_ARGUMENT if the node is not a scalar.
 * THREAD: main.
 */
typedef int32_t (*sluice_host_node_scalar_fn)(const sluice_config_node *node, sluice_host_view *out);

/**
 * Looks a key up in a map node. out: the value node, or NULL when the key is absent (then returns
 * SLUICE_ERROR_NOT_FOUND). Returns SLUICE_ERROR_INVALID_ARGUMENT if node is not a map. THREAD: main.
 */
typedef int32_t (*sluice_host_node_map_get_fn)(const sluice_config_node *node, const char *key,
                                               size_t key_len, const sluice_config_node **out);

/** Number of items of a sequence, or of key/value pairs of a map; 0 for other kinds. THREAD: main. */
typedef size_t (*sluice_host_node_count_fn)(const sluice_config_node *node);

/**
 * Item index of a sequence (out_key set to NULL), or pair index of a map (out_key gets the key node).
 * Returns SLUICE_ERROR_INVALID_ARGUMENT when out of range or for a scalar. THREAD: main.
 */
typedef int32_t (*sluice_host_node_at_fn)(const sluice_config_node *node, size_t index,
                                          const sluice_config_node **out_key,
                                          const sluice_config_node **out_value);

/** 1-based line and column of a node in the user's file (0 if unknown). THREAD: main. */
typedef void (*sluice_host_node_position_fn)(const sluice_config_node *node, uint32_t *out_line,
                                             uint32_t *out_column);

/**
 * Records a configuration error at a node; the host prints "file:line:column: <plugin>: message" and
 * refuses to start. config_new should then return SLUICE_ERROR. node may be NULL (then the transform's
 * own position is used). message: OWNERSHIP caller, copied. THREAD: main.
 */
typedef void (*sluice_host_config_error_fn)(sluice_config_env *env, const sluice_config_node *node,
                                            const char *message, size_t message_len);

/**
 * Resolves a named chain or sink of the config ("chains:" and "sinks:" share one namespace; a chain
 * and a sink may not have the same name). out: handle valid for the whole process.
 * Returns SLUICE_ERROR_NOT_FOUND when no such chain or sink exists. A target that would make a chain
 * send into itself is refused by the host when the config is loaded. THREAD: that of config_new.
 */
typedef int32_t (*sluice_host_target_resolve_fn)(sluice_config_env *env, const char *name,
                                                 size_t name_len, sluice_target **out);

/**
 * Name of the transform being configured (as written in the chain), so one config_new function can
 * serve several transforms. out: valid during config_new. THREAD: main.
 */
typedef void (*sluice_host_config_transform_name_fn)(const sluice_config_env *env, sluice_host_view *out);

/* ---- calls (continuations) ------------------------------------------------------------------- */

/**
 * Passes the call's request batch (as the plugin may have modified it in place) to the next step.
 * Afterwards the call's responses arrive in on_responses (same call handle) — or go straight up the
 * chain if the transform has no on_responses hook, in which case the call handle is invalid after
 * this returns. A request batch that is empty is answered at once with an empty response batch.
 * Returns SLUICE_ERROR_STATE if the call was already forwarded or completed. THREAD: instance's.
 */
typedef int32_t (*sluice_host_call_forward_fn)(sluice_call *call);

/**
 * Completes the call with a response batch.
 * responses: a batch the plugin owns (from batch_new, batch_clone or a send completion) — OWNERSHIP
 * moves to the host on SLUICE_OK — or NULL inside on_responses to answer with the lent response
 * batch as the plugin modified it in place. Its count must equal the call's request count, else the
 * call fails with an error reply and SLUICE_ERROR_INVALID_ARGUMENT is returned (the host then owns and
 * releases the batch anyway). Returns SLUICE_ERROR_STATE if the call was already completed (ownership
 * stays with the plugin). After SLUICE_OK the call handle is invalid. THREAD: instance's.
 * CQL: response i goes out on request i's stream id and in its version (see CQL below: a frame of
 * another version is answered with an ERROR SERVER_ERROR instead).
 */
typedef int32_t (*sluice_host_call_respond_fn)(sluice_call *call, sluice_batch *responses);

/**
 * Completes the call by answering every request of its batch with an error naming the transform,
 * in the batch's protocol: Redis "-ERR <transform>: <message>"; CQL (since 1.3) an ERROR frame
 * SERVER_ERROR "<transform>: <message>" in each request's version and stream id (call_fail_code
 * chooses another code). The host's own errors for a request (a dead backend, a call deadline, a
 * quarantined chain) take the same form.
 * message: OWNERSHIP caller, copied. After SLUICE_OK the call handle is invalid.
 * Returns SLUICE_ERROR_STATE if the call was already completed. THREAD: instance's.
 */
typedef int32_t (*sluice_host_call_fail_fn)(sluice_call *call, const char *message, size_t message_len);

/**
 * Attaches a plugin pointer to a call, e.g. the per-batch state on_responses needs (positions of
 * requests the plugin removed). OWNERSHIP: plugin — the host never reads or frees it; free it before
 * or when completing the call. THREAD: instance's.
 */
typedef void (*sluice_host_call_set_data_fn)(sluice_call *call, void *data);

/** The pointer given to call_set_data, or NULL. THREAD: instance's. */
typedef void *(*sluice_host_call_data_fn)(const sluice_call *call);

/**
 * Like call_forward, but this call's responses skip the plugin's on_responses hook and go straight
 * up the chain, untouched: for a transform that only sometimes needs the responses (a deny-list with
 * nothing denied in this batch, redirect with nothing hot, tee that ignores mismatches). Cheaper than
 * forwarding and answering call_respond(NULL) from on_responses: the host keeps no state for the call.
 * The request count must be unchanged (nobody will answer removed requests): otherwise the call fails
 * with an error reply and SLUICE_ERROR_INVALID_ARGUMENT is returned. Free any call data first (the
 * host never frees it). After SLUICE_OK the call handle is invalid.
 * Returns SLUICE_ERROR_STATE if the call was already forwarded or completed. THREAD: instance's.
 * SINCE 1.1 (it was appended to 1.0 without a minor bump: check host->abi_minor >= 1 before using it).
 */
typedef int32_t (*sluice_host_call_pass_fn)(sluice_call *call);

/* ---- sending elsewhere, timers ----------------------------------------------------------------- */

/**
 * Sends a request batch to a named chain or sink, on this client connection's own connections to it.
 * The client's connection settings (HELLO protocol version, SELECT database, AUTH) are carried to
 * every sink the client reaches, so a RESP3 client gets RESP3 replies and a SELECT applies to a tee
 * shadow or a redirect target as it does to the primary. batch: OWNERSHIP moves to the host, even
 * on error. completion: called exactly once, later, on this thread (see sluice_send_completion_fn),
 * unless the instance is freed first. Returns SLUICE_ERROR_INVALID_ARGUMENT for a NULL argument or a
 * lent batch, and SLUICE_ERROR_STATE from instance_free (the connection is closing); then completion
 * is never called. THREAD: instance's.
 */
typedef int32_t (*sluice_host_send_fn)(sluice_instance_env *env, sluice_target *target,
                                       sluice_batch *batch, sluice_send_completion_fn completion,
                                       void *user_data);

/**
 * Starts a one-shot timer on the instance's event loop. out_timer (may be NULL) receives a handle
 * valid until the callback returns or timer_cancel. Returns SLUICE_ERROR_STATE from instance_free
 * (no timer is started). THREAD: instance's.
 */
typedef int32_t (*sluice_host_timer_start_fn)(sluice_instance_env *env, uint64_t delay_ms,
                                              sluice_timer_fn callback, void *user_data,
                                              sluice_timer **out_timer);

/**
 * Cancels a pending timer; its callback will not run. A stale or foreign handle (the timer fired or
 * was cancelled already) is ignored and logged (since 1.1; before, it was undefined). THREAD: instance's.
 */
typedef void (*sluice_host_timer_cancel_fn)(sluice_timer *timer);

/**
 * Client information: remote address "ip:port" of the client connection. out: valid until
 * instance_free; an empty view when called from instance_free. THREAD: instance's.
 */
typedef void (*sluice_host_client_address_fn)(const sluice_instance_env *env, sluice_host_view *out);

/* ---- batches ----------------------------------------------------------------------------------- */

/*
 * Batches come in two flavours of ownership:
 *   - LENT batches: the request batch given to on_requests and the response batch given to
 *     on_responses. The plugin may read and modify them in place until the call completes, must not
 *     free them, and may not give them to send or call_respond (except NULL-respond, see above).
 *   - OWNED batches: made by batch_new / batch_clone or received from a send completion. The plugin
 *     must either give them away (send, call_respond) or release them with batch_free.
 * Messages are addressed by index (0 .. count-1). Messages are immutable byte strings; "modifying"
 * replaces a message with a new one. Views into a message stay valid until that message is replaced
 * or removed or the batch is released, whichever comes first.
 * A Redis response may be empty (0 bytes): the replies of the SUBSCRIBE family travel out of band,
 * straight to the client like RESP3 pushes, and the request's slot in the batch holds nothing.
 * An untouched request batch is written to the backend as the exact bytes the client sent, and an
 * untouched response batch as the exact bytes the backend sent (no re-encoding).
 */

/** Number of messages. THREAD: instance's (or the thread that owns the batch). */
typedef size_t (*sluice_host_batch_count_fn)(const sluice_batch *batch);

/** SLUICE_BATCH_REQUESTS or SLUICE_BATCH_RESPONSES. */
typedef int32_t (*sluice_host_batch_kind_fn)(const sluice_batch *batch);

/** SLUICE_PROTOCOL_REDIS or SLUICE_PROTOCOL_CQL. */
typedef int32_t (*sluice_host_batch_protocol_fn)(const sluice_batch *batch);

/**
 * Makes a new empty OWNED batch of the given kind and protocol (SLUICE_PROTOCOL_CQL since 1.3).
 * Returns NULL only for invalid arguments. THREAD: instance's.
 */
typedef sluice_batch *(*sluice_host_batch_new_fn)(int32_t kind, int32_t protocol);

/**
 * Makes an OWNED copy of a batch. Message bytes are shared, not copied (the copy is O(count)).
 * THREAD: instance's.
 */
typedef sluice_batch *(*sluice_host_batch_clone_fn)(const sluice_batch *batch);

/** Releases an OWNED batch. NULL is ignored; a LENT batch is ignored (and logged). THREAD: instance's. */
typedef void (*sluice_host_batch_free_fn)(sluice_batch *batch);

/**
 * Copies message src_index of src into dst at position dst_index (0..count; count appends).
 * Bytes are shared, not copied. Both batches must have the same kind and protocol.
 * THREAD: instance's.
 */
typedef int32_t (*sluice_host_batch_insert_from_fn)(sluice_batch *dst, size_t dst_index,
                                                    const sluice_batch *src, size_t src_index);

/** Removes message index. THREAD: instance's. */
typedef int32_t (*sluice_host_batch_remove_fn)(sluice_batch *batch, size_t index);

/**
 * The complete wire bytes of message index (a RESP value for Redis). out: borrowed view, LIFETIME as
 * described for batches. THREAD: instance's.
 */
typedef int32_t (*sluice_host_batch_message_bytes_fn)(const sluice_batch *batch, size_t index,
                                                      sluice_host_view *out);

/**
 * Replaces (index < count) or appends (index == count) a message given as complete wire bytes.
 * The host validates that bytes hold exactly one well-formed message of the batch's protocol and
 * kind (SLUICE_ERROR_MALFORMED otherwise; for CQL see CQL: one uncompressed frame whose message reads)
 * and copies them. THREAD: instance's.
 */
typedef int32_t (*sluice_host_batch_put_bytes_fn)(sluice_batch *batch, size_t index,
                                                  const uint8_t *bytes, size_t len);

/* ---- Redis requests (commands) ---------------------------------------------------------------- */

/**
 * Number of arguments of Redis command index (the command name counts as argument 0).
 * Returns 0 for a non-command message or a non-Redis batch. THREAD: instance's.
 */
typedef size_t (*sluice_host_redis_arg_count_fn)(const sluice_batch *batch, size_t index);

/**
 * Fills out[0 .. min(capacity, argc)-1] with zero-copy views of the arguments of command index and
 * sets *out_count to argc (which may exceed capacity: then only the first capacity are filled).
 * Views: LIFETIME as described for batches, binary-safe, not NUL-terminated.
 * Returns SLUICE_ERROR_INVALID_ARGUMENT for a response batch or an index out of range.
 * THREAD: instance's.
 */
typedef int32_t (*sluice_host_redis_args_fn)(const sluice_batch *batch, size_t index,
                                             sluice_host_view *out, size_t capacity,
                                             size_t *out_count);

/**
 * Builds a Redis command from argc binary-safe arguments and puts it at index (index < count
 * replaces, index == count appends) of a request batch. argv/argv_len: OWNERSHIP caller, copied.
 * THREAD: instance's.
 */
typedef int32_t (*sluice_host_redis_put_command_fn)(sluice_batch *batch, size_t index, size_t argc,
                                                    const uint8_t *const *argv,
                                                    const size_t *argv_len);

/* ---- Redis responses (values) ----------------------------------------------------------------- */

/**
 * Starts a pre-order cursor over the response at index of a response batch. cursor: storage owned by
 * the caller. Returns SLUICE_ERROR_INVALID_ARGUMENT for a request batch or a bad index.
 * THREAD: instance's.
 */
typedef int32_t (*sluice_host_redis_cursor_init_fn)(const sluice_batch *batch, size_t index,
                                                    sluice_redis_cursor *cursor);

/**
 * Visits the next value: SLUICE_OK with *out filled, SLUICE_END after the last value of the
 * response, SLUICE_ERROR_STATE if the batch message changed since cursor_init. THREAD: instance's.
 */
typedef int32_t (*sluice_host_redis_cursor_next_fn)(sluice_redis_cursor *cursor,
                                                    sluice_redis_value *out);

/**
 * Puts a simple reply at index (index < count replaces, == count appends) of a response batch.
 * type: SLUICE_REDIS_SIMPLE_STRING, _ERROR (bytes is the whole message, e.g. "ERR denied"),
 * _BULK_STRING, _INTEGER (uses integer, ignores bytes) or _NULL. Bytes must not contain CR or LF
 * for SIMPLE_STRING and ERROR (SLUICE_ERROR_INVALID_ARGUMENT). bytes: OWNERSHIP caller, copied.
 * Since 1.1 the reply is encoded for the protocol of the client whose hook is running: _NULL is
 * "_\r\n" once the client switched to RESP3 (HELLO 3) and "$-1\r\n" for RESP2 (1.0 always wrote
 * "$-1"); the other types encode the same in both. For arrays and RESP3 types, use batch_put_bytes
 * with the encoded value. THREAD: instance's.
 */
typedef int32_t (*sluice_host_redis_put_reply_fn)(sluice_batch *batch, size_t index, int32_t type,
                                                  const uint8_t *bytes, size_t len, int64_t integer);

/* ---- since 1.1: sends with a timeout and a cancel, call deadlines --------------------------------- */

/**
 * Like send, with a timeout and a handle to cancel the send.
 * timeout_ms: 0 for none; otherwise, if the responses have not arrived after timeout_ms, completion
 * is called with SLUICE_ERROR_TIMEOUT, no batch and a message naming the target and the timeout.
 * The requests were sent and may still run at the target; their responses, when they arrive, are
 * dropped by the host (and later requests to the target stay correctly matched).
 * out_send: may be NULL; receives a handle for send_cancel, or NULL on an error return.
 * Returns what send returns; on an error return completion is never called.
 * OWNERSHIP: batch moves to the host, even on error; the responses given to completion are the
 * plugin's (as for send). LIFETIME: *out_send until the completion is called (it is already stale
 * inside the completion), the send times out or it is cancelled, or the instance is freed.
 * THREAD: instance's. SINCE 1.1
 */
typedef int32_t (*sluice_host_send_ex_fn)(sluice_instance_env *env, sluice_target *target,
                                          sluice_batch *batch, uint64_t timeout_ms,
                                          sluice_send_completion_fn completion, void *user_data,
                                          sluice_send **out_send);

/**
 * Cancels a pending send_ex: its completion is never called; its responses, when they arrive, are
 * dropped. Returns SLUICE_OK, or SLUICE_ERROR_STATE (logged) when the send already completed, timed
 * out or was cancelled, or for a stale or foreign handle. OWNERSHIP: nothing changes hands (the
 * host had the batch already). LIFETIME: send is stale after SLUICE_OK. THREAD: instance's. SINCE 1.1
 */
typedef int32_t (*sluice_host_send_cancel_fn)(sluice_send *send);

/**
 * Sets the deadline of one call (see CALL DEADLINE): from now, the plugin has deadline_ms to complete
 * it while it is the plugin's turn; 0 means no deadline for this call (for instance while a blocking
 * command waits at another target). The setting holds for the rest of the call; each turn of the
 * plugin (on_requests, on_responses) restarts the clock. Returns SLUICE_OK, or SLUICE_ERROR_STATE for
 * a stale handle. OWNERSHIP: nothing changes hands. LIFETIME: the call's handle as before (it
 * becomes stale when the deadline expires). THREAD: instance's. SINCE 1.1
 */
typedef int32_t (*sluice_host_call_set_deadline_fn)(sluice_call *call, uint64_t deadline_ms);

/* ============================================================================================= */
/* Reach (SINCE 1.1): in-place argument edits, key positions, session properties, partial answers */
/* ============================================================================================= */

/**
 * Replaces argument arg (0 is the command name) of Redis command index with len bytes, leaving the
 * other arguments as they are. The host builds the new message in one buffer of its final size:
 * every other byte of the command is copied once, the new bytes once, nothing is re-encoded and
 * nothing is allocated per argument. (A key rewrite of a command with a 512 MiB value copies the
 * value once; rebuilding the command with redis_put_command copies it at least twice.)
 * ALIASING: bytes may point anywhere, including into the message being replaced (another argument
 * of the same command, from redis_args) or another message of any batch: the host reads all of them
 * before it lets the old message go. Afterwards every view into the old message is invalid (views
 * into other messages stay valid).
 * OWNERSHIP: bytes stay the caller's (copied). LIFETIME: the new message lives as any message.
 * Returns SLUICE_ERROR_INVALID_ARGUMENT for a response or non-Redis batch, index >= count,
 * arg >= argc, or bytes NULL with len > 0. THREAD: instance's. SINCE 1.1.
 */
typedef int32_t (*sluice_host_redis_set_arg_fn)(sluice_batch *batch, size_t index, size_t arg,
                                                const uint8_t *bytes, size_t len);

/**
 * Replaces the bytes [offset, offset + remove_len) of argument arg of Redis command index with len
 * bytes: a prefix is (offset 0, remove_len 0), a suffix (offset = the argument's length,
 * remove_len 0), a key namespace swap (0, old prefix length). Copies as redis_set_arg does, with the
 * same ALIASING rule. OWNERSHIP: bytes stay the caller's (copied). LIFETIME: views into the old
 * message are invalid afterwards; the new message lives as any message.
 * Returns SLUICE_ERROR_INVALID_ARGUMENT as redis_set_arg, and when offset + remove_len exceeds the
 * argument's length. THREAD: instance's. SINCE 1.1.
 */
typedef int32_t (*sluice_host_redis_splice_arg_fn)(sluice_batch *batch, size_t index, size_t arg,
                                                   size_t offset, size_t remove_len,
                                                   const uint8_t *bytes, size_t len);

/**
 * The argument indices of the keys of Redis command index, as the host's command table says (built
 * from redis-server's COMMAND INFO key specs; regenerate with scripts/gen-redis-key-table.py). Fills
 * out_positions[0 .. min(capacity, n)-1] and sets *out_count to n, which may exceed capacity (then
 * call again with room for n). Positions are in key-spec order, as COMMAND GETKEYS lists them, each
 * between 1 and argc-1. Examples:
 *   GET k → 1.  MSET a 1 b 2 → 1 3 (every other argument).  DEL a b c → 1 2 3.
 *   BLPOP a b 0 → 1 2 (not the timeout).  ZUNIONSTORE d 2 a b → 1 3 4 (the destination first).
 *   EVAL/EVALSHA/FCALL script numkeys k… → the numkeys arguments after numkeys (none for 0).
 *   XREAD [COUNT n] [BLOCK ms] STREAMS a b 0 0 → the first half of what follows STREAMS.
 *   SORT k [BY p] [LIMIT o c] [GET p]… [STORE d] → 1 and STORE's d (BY and GET patterns are no keys).
 *   MIGRATE host port k … → 3; with an empty key, the arguments after KEYS.
 *   OBJECT ENCODING k, XINFO STREAM k, MEMORY USAGE k → 2 (looked up by subcommand).
 *   PING, SELECT, AUTH, HELLO, CLIENT …, PUBLISH, KEYS, SCAN → no keys (SLUICE_OK, *out_count 0).
 * Arity is not checked beyond what placing the keys needs.
 * Returns SLUICE_OK (n may be 0); SLUICE_ERROR_NOT_FOUND for a command (or subcommand) the table does
 * not know, e.g. one newer than the table or a module's (*out_count 0: the plugin decides what an
 * unknown command means to it); SLUICE_ERROR_MALFORMED when the arguments contradict the key spec
 * (numkeys not a number, or keys beyond the last argument, as in GET without a key: the server will
 * refuse the command; *out_count 0); SLUICE_ERROR_INVALID_ARGUMENT for a response or non-Redis batch
 * or index >= count. out_positions may be NULL when capacity is 0.
 * OWNERSHIP: out_positions and out_count are the caller's; the host only writes them. LIFETIME:
 * positions are argument indices, valid for as long as the command is not replaced.
 * THREAD: instance's. SINCE 1.1.
 */
typedef int32_t (*sluice_host_redis_keys_fn)(const sluice_batch *batch, size_t index,
                                             size_t *out_positions, size_t capacity,
                                             size_t *out_count);

/*
 * Session properties (int32_t ids for get_property). Each is either an integer (out_int) or bytes
 * (out_view). New ids are added in minor versions; an id the host does not know gives
 * SLUICE_ERROR_NOT_FOUND, so a plugin can probe for them.
 * The Redis facts follow the replies the client received: a HELLO, SELECT, AUTH, CLIENT SETNAME or
 * RESET counts once its success reply (not an error, not +QUEUED inside MULTI) came back through the
 * chain. Commands queued inside MULTI…EXEC are not followed.
 */
/** int: the client's protocol, SLUICE_PROTOCOL_REDIS or (since 1.3) SLUICE_PROTOCOL_CQL. */
#define SLUICE_PROPERTY_PROTOCOL 1
/** int: the protocol version the client speaks: Redis 2 (RESP2, the default) or 3 (after HELLO 3);
 * CQL (since 1.3) the native protocol version of its frames, 4 or 5 (0 before its first frame). */
#define SLUICE_PROPERTY_PROTOCOL_VERSION 2
/** bytes: the user name the client authenticated as (AUTH, HELLO … AUTH, or the source's own
 * auth:; CQL: also a sign-in the backend accepted with the source's auth: passthrough);
 * SLUICE_ERROR_NOT_FOUND before it authenticated and after RESET. Never a password. */
#define SLUICE_PROPERTY_USER 3
/** int: the selected database (0 until a SELECT succeeds; 0 again after RESET). */
#define SLUICE_PROPERTY_DATABASE 4
/** bytes: the client's name (CLIENT SETNAME, HELLO … SETNAME); SLUICE_ERROR_NOT_FOUND when none. */
#define SLUICE_PROPERTY_CLIENT_NAME 5
/** bytes: the name of the source the client connected to: its listen address as configured,
 * "host:port" (the same as the source label of the host's metrics). */
#define SLUICE_PROPERTY_SOURCE_NAME 6
/** bytes: the client's address "ip:port" (as client_address). */
#define SLUICE_PROPERTY_CLIENT_ADDRESS 7
/** bytes (since 1.3, CQL): the connection's keyspace, from the last USE whose RESULT Set_keyspace came
 * back through the chain to the client (unquoted names lower-cased, quoted ones as written);
 * SLUICE_ERROR_NOT_FOUND before any USE succeeded. Redis sessions: SLUICE_ERROR_NOT_FOUND. */
#define SLUICE_PROPERTY_KEYSPACE 8

/**
 * Reads one fact of the client's session (SLUICE_PROPERTY_*), after proxy-wasm's get_property: one
 * function for every fact, so new facts need no new functions. Integer properties fill *out_int,
 * byte properties fill *out_view (NUL-terminated for convenience; len excludes the NUL); the other
 * out-pointer may be NULL.
 * OWNERSHIP: the view's bytes are the host's. LIFETIME: until the hook or callback that asked
 * returns (a later reply may change the fact; the bytes stay valid until then even so).
 * Returns SLUICE_OK; SLUICE_ERROR_NOT_FOUND for an unknown id or a fact that is not set (see each
 * id; *out_view is then empty); SLUICE_ERROR_INVALID_ARGUMENT for a NULL env or a NULL out-pointer of
 * the property's kind; SLUICE_ERROR_STATE from instance_free (the session is gone).
 * THREAD: instance's. SINCE 1.1.
 */
typedef int32_t (*sluice_host_get_property_fn)(const sluice_instance_env *env, int32_t property,
                                               sluice_host_view *out_view, int64_t *out_int);

/**
 * Answers request index of a call's request batch here, with a copy of message reply_index of
 * replies (a response batch of the same protocol).
 * OWNERSHIP: replies stays the caller's (lent or owned: free an owned one as usual); the answer
 * shares its bytes, so nothing is copied. LIFETIME: the answer is kept by the call until the host
 * merges it (or the call is completed with call_respond / call_fail, or abandoned). The call then still ends in call_forward or call_pass as usual: the host
 * sends only the requests that were not answered, and puts the local answers back in their places
 * when the responses return, so the client gets every reply in order. Typical use: a deny-list
 * answers the denied commands of a pipelined batch and passes the rest with call_pass.
 * - index refers to the request batch as it is when call_forward / call_pass is called: do not
 *   insert or remove requests after answering (an answered index beyond the batch then fails the
 *   call with SLUICE_ERROR_INVALID_ARGUMENT). Answering the same index again replaces the answer.
 * - on_responses (after call_forward) sees the whole batch in the plugin's own indices: requests
 *   as it forwarded them, answered ones included, and responses with the local answers already in
 *   place (one response per request). After call_pass it is not called, as always.
 * - If every request is answered, nothing is sent; on_responses still runs (on a later turn).
 * - If the rest of the chain fails the batch, the forwarded requests get the error and the local
 *   answers stay.
 * - call_respond and call_fail ignore the answers given so far (they answer everything).
 * - CQL: the answer goes out on request index's stream id, in its version; an answer frame of
 *   another protocol version is replaced with an ERROR SERVER_ERROR (see CQL below).
 * Returns SLUICE_ERROR_STATE unless the call is in on_requests' part (not forwarded or completed);
 * SLUICE_ERROR_INVALID_ARGUMENT for a bad index, reply_index, or a replies batch that is not a
 * response batch of the call's protocol. THREAD: instance's. SINCE 1.1.
 */
typedef int32_t (*sluice_host_call_answer_fn)(sluice_call *call, size_t index,
                                              const sluice_batch *replies, size_t reply_index);

/* ---- control functions (since 1.2; see CONTROL FUNCTIONS) ------------------------------------ */

/**
 * Sets the text the operator sees for this control call: the returned value when the function
 * returns SLUICE_OK, the error message otherwise. Calling it again replaces the text.
 * text: UTF-8, need not be NUL-terminated; at most 65536 bytes are kept. OWNERSHIP caller; the host
 * copies it before returning.
 * Returns SLUICE_OK; SLUICE_ERROR_STATE for a stale ctl (the call returned);
 * SLUICE_ERROR_INVALID_ARGUMENT for a NULL ctl, or a NULL text with a non-zero length.
 * THREAD: the control function's, during the call. SINCE 1.2.
 */
typedef int32_t (*sluice_host_control_reply_fn)(sluice_control_call *ctl, const char *text, size_t text_len);

/**
 * Publishes new settings to every live instance of the config of this control call: after the
 * control function returned, apply(instance, data) runs once for each instance whose instance_new
 * completed before that return, each on its own event loop, between its hooks; then done(data) runs
 * once. Instances created after the call returned do not get apply: they are made by instance_new
 * from the config, which the function has changed by then (instance_new never overlaps a control
 * call). The operator's command returns once every apply ran (or after 5 seconds, saying so).
 * Usual pattern: store the new settings in the config, allocate one immutable copy as data,
 * publish it; apply copies (or references) it into the instance; done frees it.
 * Several publishes in one call run in the order made; the publishes of one call reach an instance
 * before those of a later call.
 * The publish is dispatched whatever status the function returns: publish once the change is
 * certain. OWNERSHIP: data stays the plugin's; the host only passes it on.
 * Returns SLUICE_OK (apply and done will run; with no live instance, done runs right after the
 * function returns); SLUICE_ERROR_STATE for a stale ctl; SLUICE_ERROR_INVALID_ARGUMENT for a NULL ctl
 * or apply. On any status other than SLUICE_OK neither apply nor done is called: free data yourself.
 * THREAD: the control function's, during the call. SINCE 1.2.
 */
typedef int32_t (*sluice_host_control_publish_fn)(sluice_control_call *ctl, sluice_on_publish_fn apply,
                                                  void *data, sluice_on_publish_done_fn done);

/* ============================================================================================= */
/* CQL (SINCE 1.3): Cassandra native protocol v4/v5 messages                                        */
/* ============================================================================================= */
/*
 * A CQL message in a batch (batch_protocol == SLUICE_PROTOCOL_CQL) is exactly one complete frame,
 * UNCOMPRESSED (the COMPRESSION flag is clear): the 9-byte header (version byte with the direction
 * bit 0x80 set on responses, flags, stream id [short], opcode, body length [int]) and the body, as
 * protocol v4 lays it out and v5 lays it out inside its segments. Compression and v5 segments exist
 * only on the wire, in the source's and the sink's own framing: a plugin never sees them.
 * A request carries the client's protocol version and stream id; a response must carry the version
 * and stream id of the request it answers (the builders below take both; read them from the request
 * with cql_header). The host holds answers to that (a host behaviour of 1.3, no signature
 * involved): a frame a transform gives as the answer to a request — with call_answer, or at
 * position i of the batch given to call_respond (or answered with call_respond(NULL) from
 * on_responses) when that batch pairs one by one with the call's requests — goes to the client with
 * the request's stream id and the response direction bit stamped into its header, whatever the
 * plugin wrote there (builders and raw batch_put_bytes frames alike; the body is untouched). A
 * frame of ANOTHER protocol version than its request (whose body may be laid out differently), or
 * fewer than 9 bytes, is not sent: the request is answered with ERROR SERVER_ERROR "sluice:
 * transform <step> answered a v4 request with a v5 frame" in the request's version and stream,
 * the step's ABI misuse counter counts it and the host logs it (at most once a second). Without
 * the stamp, the driver would get a reply on a stream it is not waiting on and time out.
 * After a transform removed requests before call_respond, which answer goes with which request is
 * not known to the host: those answers are not checked.
 * The source runs the complete request frames of one client read as one batch
 * (up to 64), so a CQL request batch may hold several messages, each on its own stream. Their
 * replies go back to the client one by one, as the backend sends them, when every transform the
 * batch passes completes its call with call_pass (or call_forward without an on_responses hook),
 * whether or not it answered some of the requests itself with call_answer (those answers go back at
 * once); a copy sent elsewhere with send (as tee does) changes nothing. When a transform takes the
 * batch's responses (call_forward with an on_responses hook, or a step with only an on_responses
 * hook) or ends the whole call (call_respond, call_fail), the ABI gives its call all the responses
 * at once: the replies of what it forwarded then reach the client together, once the last of them
 * is there. Other batches are not affected.
 * batch_put_bytes on a CQL batch accepts exactly one well-formed uncompressed frame of the batch's
 * direction (a request opcode in a request batch, a response opcode in a response batch) whose
 * message reads as the protocol defines it (SLUICE_ERROR_MALFORMED otherwise).
 * The Redis functions refuse CQL batches (SLUICE_ERROR_INVALID_ARGUMENT) and the cql_* functions
 * refuse Redis batches (SLUICE_ERROR_INVALID_ARGUMENT, or -1 / 0 for the functions that return a
 * value).
 * Views handed out by the cql_* functions live as described for batches: until the message they
 * were read from is replaced or removed or the batch released, and never beyond the current hook;
 * a view of the connection's keyspace (SLUICE_CQL_KEYSPACE_FROM_SESSION) until the hook returns.
 */

/** Opcodes (the header's fifth byte). */
#define SLUICE_CQL_OP_ERROR 0x00
#define SLUICE_CQL_OP_STARTUP 0x01
#define SLUICE_CQL_OP_READY 0x02
#define SLUICE_CQL_OP_AUTHENTICATE 0x03
#define SLUICE_CQL_OP_OPTIONS 0x05
#define SLUICE_CQL_OP_SUPPORTED 0x06
#define SLUICE_CQL_OP_QUERY 0x07
#define SLUICE_CQL_OP_RESULT 0x08
#define SLUICE_CQL_OP_PREPARE 0x09
#define SLUICE_CQL_OP_EXECUTE 0x0A
#define SLUICE_CQL_OP_REGISTER 0x0B
#define SLUICE_CQL_OP_EVENT 0x0C
#define SLUICE_CQL_OP_BATCH 0x0D
#define SLUICE_CQL_OP_AUTH_CHALLENGE 0x0E
#define SLUICE_CQL_OP_AUTH_RESPONSE 0x0F
#define SLUICE_CQL_OP_AUTH_SUCCESS 0x10

/**
 * ERROR codes a transform may answer with (call_fail_code, cql_put_error): the codes whose ERROR
 * body has no fields after the message. The codes with fields (UNAVAILABLE, WRITE_TIMEOUT,
 * READ_TIMEOUT, READ_FAILURE, FUNCTION_FAILURE, WRITE_FAILURE, ALREADY_EXISTS, UNPREPARED, …) pass
 * through from backends untouched; a plugin can build one with batch_put_bytes.
 */
#define SLUICE_CQL_ERROR_SERVER_ERROR 0x0000
#define SLUICE_CQL_ERROR_PROTOCOL_ERROR 0x000A
#define SLUICE_CQL_ERROR_BAD_CREDENTIALS 0x0100
#define SLUICE_CQL_ERROR_OVERLOADED 0x1001
#define SLUICE_CQL_ERROR_IS_BOOTSTRAPPING 0x1002
#define SLUICE_CQL_ERROR_TRUNCATE_ERROR 0x1003
#define SLUICE_CQL_ERROR_SYNTAX_ERROR 0x2000
#define SLUICE_CQL_ERROR_UNAUTHORIZED 0x2100
#define SLUICE_CQL_ERROR_INVALID 0x2200
#define SLUICE_CQL_ERROR_CONFIG_ERROR 0x2300

/** Statement kinds (cql_statement), from the statement's first keyword. */
#define SLUICE_CQL_STATEMENT_OTHER 0  /* TRUNCATE, GRANT, REVOKE, LIST…, unknown or empty text */
#define SLUICE_CQL_STATEMENT_SELECT 1
#define SLUICE_CQL_STATEMENT_INSERT 2
#define SLUICE_CQL_STATEMENT_UPDATE 3
#define SLUICE_CQL_STATEMENT_DELETE 4
#define SLUICE_CQL_STATEMENT_BATCH 5  /* BEGIN … APPLY BATCH as text */
#define SLUICE_CQL_STATEMENT_USE 6
#define SLUICE_CQL_STATEMENT_DDL 7    /* CREATE, ALTER, DROP of anything */

/** Where sluice_cql_statement.keyspace came from (flags). */
#define SLUICE_CQL_KEYSPACE_FROM_TEXT 1    /* the statement names it: ks.t, USE ks, CREATE KEYSPACE ks */
#define SLUICE_CQL_KEYSPACE_FROM_REQUEST 2 /* v5: the keyspace field of QUERY/BATCH/PREPARE */
#define SLUICE_CQL_KEYSPACE_FROM_SESSION 4 /* the connection's keyspace (the last USE that succeeded) */

/** Value states (sluice_cql_value.state). */
#define SLUICE_CQL_VALUE_SET 0   /* bytes holds the value (possibly empty) */
#define SLUICE_CQL_VALUE_NULL 1  /* length -1 on the wire */
#define SLUICE_CQL_VALUE_UNSET 2 /* length -2 (bound values of v4+ requests only) */

/**
 * Type option ids (sluice_cql_value.type, sluice_cql_column.type), as the protocol numbers them.
 * Collections, UDTs and tuples carry parameters this id does not show: their bytes are passed as
 * they are. SLUICE_CQL_TYPE_UNKNOWN when the host does not know the type (positional values of a
 * QUERY, values of a statement whose PREPARE the host did not see).
 */
#define SLUICE_CQL_TYPE_UNKNOWN (-1)
#define SLUICE_CQL_TYPE_CUSTOM 0x0000
#define SLUICE_CQL_TYPE_ASCII 0x0001
#define SLUICE_CQL_TYPE_BIGINT 0x0002
#define SLUICE_CQL_TYPE_BLOB 0x0003
#define SLUICE_CQL_TYPE_BOOLEAN 0x0004
#define SLUICE_CQL_TYPE_COUNTER 0x0005
#define SLUICE_CQL_TYPE_DECIMAL 0x0006
#define SLUICE_CQL_TYPE_DOUBLE 0x0007
#define SLUICE_CQL_TYPE_FLOAT 0x0008
#define SLUICE_CQL_TYPE_INT 0x0009
#define SLUICE_CQL_TYPE_TIMESTAMP 0x000B
#define SLUICE_CQL_TYPE_UUID 0x000C
#define SLUICE_CQL_TYPE_VARCHAR 0x000D
#define SLUICE_CQL_TYPE_VARINT 0x000E
#define SLUICE_CQL_TYPE_TIMEUUID 0x000F
#define SLUICE_CQL_TYPE_INET 0x0010
#define SLUICE_CQL_TYPE_DATE 0x0011
#define SLUICE_CQL_TYPE_TIME 0x0012
#define SLUICE_CQL_TYPE_SMALLINT 0x0013
#define SLUICE_CQL_TYPE_TINYINT 0x0014
#define SLUICE_CQL_TYPE_DURATION 0x0015
#define SLUICE_CQL_TYPE_LIST 0x0020
#define SLUICE_CQL_TYPE_MAP 0x0021
#define SLUICE_CQL_TYPE_SET 0x0022
#define SLUICE_CQL_TYPE_UDT 0x0030
#define SLUICE_CQL_TYPE_TUPLE 0x0031

/** The header of a CQL message (cql_header). SINCE 1.3 */
typedef struct sluice_cql_header {
  uint8_t version;   /* 4 or 5 (the direction bit removed) */
  uint8_t flags;     /* the header's flags byte (COMPRESSION is always clear in a batch) */
  int16_t stream;    /* the stream id */
  int32_t opcode;    /* SLUICE_CQL_OP_* */
  uint32_t body_length;
  uint32_t reserved; /* 0 */
} sluice_cql_header;

/** What a statement is and what it names (cql_statement). SINCE 1.3 */
typedef struct sluice_cql_statement {
  int32_t kind;              /* SLUICE_CQL_STATEMENT_* */
  uint32_t keyspace_source;  /* one SLUICE_CQL_KEYSPACE_FROM_* flag; 0 when keyspace is empty */
  /* The keyspace: named by the statement, else the request's (v5), else the connection's; empty
   * when none is known. Unquoted names are lower-cased, quoted names keep their case. */
  sluice_host_view keyspace;
  sluice_host_view table;    /* the table (view, type, index) the statement names; empty if none */
} sluice_cql_statement;

/** A bound value or a cell. SINCE 1.3 */
typedef struct sluice_cql_value {
  int32_t state;          /* SLUICE_CQL_VALUE_* */
  int32_t type;           /* SLUICE_CQL_TYPE_*; SLUICE_CQL_TYPE_UNKNOWN when not known */
  sluice_host_view bytes; /* the value's bytes (SET); empty otherwise */
  sluice_host_view name;  /* bound values: the name (named values, or the prepared metadata's
                           * column name); cells: the column's name; empty when not known */
} sluice_cql_value;

/** One column of a RESULT Rows (cql_result_column). SINCE 1.3 */
typedef struct sluice_cql_column {
  sluice_host_view keyspace;
  sluice_host_view table;
  sluice_host_view name;
  int32_t type;      /* SLUICE_CQL_TYPE_* (the outer type of a collection, UDT or tuple) */
  uint32_t reserved; /* 0 */
} sluice_cql_column;

/** A column of a RESULT Rows a plugin builds (cql_put_result_rows). SINCE 1.3 */
typedef struct sluice_cql_column_def {
  const uint8_t *name;
  size_t name_len;
  int32_t type;      /* a SLUICE_CQL_TYPE_* without parameters (ASCII … DURATION) */
  uint32_t reserved; /* 0 */
} sluice_cql_column_def;

/** A value a plugin gives (bound values of cql_put_query, cells of cql_put_result_rows). SINCE 1.3 */
typedef struct sluice_cql_input_value {
  int32_t state;      /* SLUICE_CQL_VALUE_SET or _NULL (_UNSET in a request's values only) */
  uint32_t reserved;  /* 0 */
  const uint8_t *bytes;
  size_t len;
} sluice_cql_input_value;

/** One cell visited by a rows cursor (cql_rows_next). SINCE 1.3 */
typedef struct sluice_cql_cell {
  int64_t row;            /* 0-based */
  int32_t column;         /* 0-based */
  int32_t state;          /* SLUICE_CQL_VALUE_SET or _NULL */
  sluice_host_view bytes; /* the cell's bytes (SET) */
} sluice_cql_cell;

/**
 * Rows cursor state; the plugin owns the storage (usually on its stack), the host fills it.
 * Its contents are private to the host. SINCE 1.3
 */
typedef struct sluice_cql_cursor {
  uint64_t opaque[8];
} sluice_cql_cursor;

/**
 * Completes the call as call_fail does, with an error whose CQL code the plugin chooses: on a CQL
 * batch every request is answered with an ERROR frame (code, "<transform>: <message>", the
 * request's protocol version and stream id); on a Redis batch with "-ERR <transform>: <message>"
 * (code is ignored). call_fail uses SLUICE_CQL_ERROR_SERVER_ERROR.
 * code: a SLUICE_CQL_ERROR_* (SLUICE_ERROR_INVALID_ARGUMENT for another code; the call is then not
 * completed). message: OWNERSHIP caller, copied. After SLUICE_OK the call handle is invalid.
 * Returns SLUICE_ERROR_STATE if the call was already completed. THREAD: instance's. SINCE 1.3
 */
typedef int32_t (*sluice_host_call_fail_code_fn)(sluice_call *call, int32_t code, const char *message,
                                                 size_t message_len);

/**
 * The header of CQL message index. out: OWNERSHIP caller (filled by the host).
 * Returns SLUICE_OK; SLUICE_ERROR_INVALID_ARGUMENT for a non-CQL batch, a bad index or a NULL out.
 * THREAD: instance's. SINCE 1.3
 */
typedef int32_t (*sluice_host_cql_header_fn)(const sluice_batch *batch, size_t index, sluice_cql_header *out);

/**
 * How many statements request index holds: 1 for QUERY, PREPARE and EXECUTE, the number of children
 * for BATCH, 0 for other opcodes, a response batch or a non-CQL batch. THREAD: instance's. SINCE 1.3
 */
typedef size_t (*sluice_host_cql_statement_count_fn)(const sluice_batch *batch, size_t index);

/**
 * The text of statement `statement` (0 .. cql_statement_count - 1) of request index: the query of a
 * QUERY or PREPARE (statement 0), of a BATCH child given as text, and for EXECUTE or a BATCH child
 * given as a prepared id, the text of the PREPARE the host saw for that id (any client's, since the
 * host started). out: a borrowed view (UTF-8, not NUL-terminated). OWNERSHIP host.
 * LIFETIME: as described for batches (see CQL above).
 * Returns SLUICE_OK; SLUICE_ERROR_NOT_FOUND for a prepared id the host has not seen prepared;
 * SLUICE_ERROR_INVALID_ARGUMENT for a non-CQL or response batch, a bad index or statement, or an
 * opcode without statements. THREAD: instance's. SINCE 1.3
 * SECURITY: the host's registry starts empty and is bounded, while backends keep prepared ids
 * across their restarts, so any client can EXECUTE an id the host never saw. A transform that
 * decides by statement (a filter) must not let a NOT_FOUND statement pass: answer it with ERROR
 * UNPREPARED (0x2500) carrying the id (built with batch_put_bytes), as Cassandra does for an id it
 * does not know; the driver then prepares it again through Sluice and retries (command-filter's
 * deny does this).
 */
typedef int32_t (*sluice_host_cql_query_fn)(const sluice_batch *batch, size_t index, size_t statement,
                                            sluice_host_view *out);

/**
 * Classifies statement `statement` of request index (its text as cql_query gives it): the kind and
 * the keyspace and table it touches. The keyspace is the one the statement names, else (v5) the
 * request's keyspace field, else the connection's (the last USE that succeeded on this client
 * connection; also SLUICE_PROPERTY_KEYSPACE). For a statement of a batch sent with host->send
 * the connection is the sending instance's.
 * out: OWNERSHIP caller; its views are the host's. LIFETIME: see CQL above.
 * Returns as cql_query. THREAD: instance's. SINCE 1.3
 */
typedef int32_t (*sluice_host_cql_statement_fn)(const sluice_batch *batch, size_t index, size_t statement,
                                                sluice_cql_statement *out);

/**
 * How many values statement `statement` of request index binds (0 when none). THREAD: instance's.
 * SINCE 1.3
 */
typedef size_t (*sluice_host_cql_value_count_fn)(const sluice_batch *batch, size_t index, size_t statement);

/**
 * Bound value `position` (0-based) of statement `statement` of request index (QUERY, EXECUTE, BATCH
 * children), zero-copy. For EXECUTE (and prepared BATCH children) the name and type come from the
 * bound variables of the PREPARE result the host saw; for a QUERY with named values, the name is
 * the one sent and the type unknown. out: OWNERSHIP caller; views host's, LIFETIME see CQL above.
 * Returns SLUICE_OK; SLUICE_END when position >= the value count; SLUICE_ERROR_INVALID_ARGUMENT as
 * cql_query. THREAD: instance's. SINCE 1.3
 */
typedef int32_t (*sluice_host_cql_value_fn)(const sluice_batch *batch, size_t index, size_t statement,
                                            size_t position, sluice_cql_value *out);

/**
 * Bound value named `name` (compared byte for byte; CQL lower-cases unquoted bind markers): a named
 * value of a QUERY, or for EXECUTE the value at the position the prepared metadata gives that
 * name. out as cql_value. name: OWNERSHIP caller.
 * Returns SLUICE_OK; SLUICE_ERROR_NOT_FOUND when no value has that name (or the names are not
 * known: positional QUERY values, a PREPARE the host did not see); otherwise as cql_value.
 * THREAD: instance's. SINCE 1.3
 */
typedef int32_t (*sluice_host_cql_value_named_fn)(const sluice_batch *batch, size_t index, size_t statement,
                                                  const char *name, size_t name_len, sluice_cql_value *out);

/**
 * The shape of RESULT Rows response index: *out_rows rows of *out_columns columns (either pointer may
 * be NULL). Returns SLUICE_OK; SLUICE_ERROR_NOT_FOUND for a response that is not a RESULT Rows;
 * SLUICE_ERROR_INVALID_ARGUMENT for a non-CQL or request batch or a bad index. THREAD: instance's.
 * SINCE 1.3
 */
typedef int32_t (*sluice_host_cql_result_rows_fn)(const sluice_batch *batch, size_t index, int64_t *out_rows,
                                                  int32_t *out_columns);

/**
 * Column `column` of RESULT Rows response index. out: OWNERSHIP caller; views host's (LIFETIME see
 * CQL above). Returns SLUICE_OK; SLUICE_ERROR_NOT_FOUND when the response is not a RESULT Rows or
 * carries no column metadata (the client asked to skip it: No_metadata); SLUICE_ERROR_INVALID_ARGUMENT
 * as cql_result_rows, or a bad column. THREAD: instance's. SINCE 1.3
 */
typedef int32_t (*sluice_host_cql_result_column_fn)(const sluice_batch *batch, size_t index, int32_t column,
                                                    sluice_cql_column *out);

/**
 * Starts a cursor over the cells of RESULT Rows response index, row by row. cursor: storage owned
 * by the caller. Returns as cql_result_rows. THREAD: instance's. SINCE 1.3
 */
typedef int32_t (*sluice_host_cql_rows_init_fn)(const sluice_batch *batch, size_t index, sluice_cql_cursor *cursor);

/**
 * Visits the next cell: SLUICE_OK with *out filled (views LIFETIME see CQL above), SLUICE_END after
 * the last cell, SLUICE_ERROR_STATE if the batch changed since cql_rows_init (for instance by
 * cql_set_cell: collect the changes, then make them) or was released. THREAD: instance's. SINCE 1.3
 */
typedef int32_t (*sluice_host_cql_rows_next_fn)(sluice_cql_cursor *cursor, sluice_cql_cell *out);

/**
 * Replaces the cell (row, column) of RESULT Rows response index with value (SET or NULL); the rest
 * of the frame is copied once, unchanged. Views into the old message are invalid afterwards.
 * value: OWNERSHIP caller (copied; it may point into the message being replaced).
 * Returns SLUICE_OK; SLUICE_ERROR_NOT_FOUND for a response that is not a RESULT Rows;
 * SLUICE_ERROR_INVALID_ARGUMENT for a bad index, row, column or value. THREAD: instance's. SINCE 1.3
 */
typedef int32_t (*sluice_host_cql_set_cell_fn)(sluice_batch *batch, size_t index, int64_t row, int32_t column,
                                               const sluice_cql_input_value *value);

/**
 * Builders. Each puts a new message at index (index < count replaces, index == count appends) of
 * a CQL batch of the right kind (responses for ERROR and RESULT, requests for QUERY), written in
 * protocol `version` (4 or 5) with stream id `stream` — for a response, those of the request it
 * answers (cql_header; an answer given with call_answer or call_respond is stamped with its request's
 * stream id by the host anyway, and one of another version refused, see CQL above). Inputs are checked and copied (OWNERSHIP caller); the message lives as any
 * message. Returns SLUICE_OK or SLUICE_ERROR_INVALID_ARGUMENT (wrong batch, bad index, version,
 * code, type or value, a NULL pointer with a non-zero length). THREAD: instance's. SINCE 1.3
 */

/** An ERROR response with one of the SLUICE_CQL_ERROR_* codes and a message (UTF-8, at most 65535
 * bytes). See Builders above. SINCE 1.3 */
typedef int32_t (*sluice_host_cql_put_error_fn)(sluice_batch *batch, size_t index, int32_t version,
                                                int16_t stream, int32_t code, const char *message,
                                                size_t message_len);

/** A RESULT Void response (the answer to an INSERT, UPDATE, DELETE or BATCH). See Builders above.
 * SINCE 1.3 */
typedef int32_t (*sluice_host_cql_put_result_void_fn)(sluice_batch *batch, size_t index, int32_t version,
                                                      int16_t stream);

/**
 * A RESULT Rows response with a global table spec (keyspace, table), column_count columns and
 * row_count rows of cells (row-major: cells[row * column_count + column]; SET or NULL). No paging
 * state. A client that asked to skip metadata (EXECUTE) still reads the columns it knows.
 * See Builders above. SINCE 1.3
 */
typedef int32_t (*sluice_host_cql_put_result_rows_fn)(sluice_batch *batch, size_t index, int32_t version,
                                                      int16_t stream, const char *keyspace, size_t keyspace_len,
                                                      const char *table, size_t table_len,
                                                      const sluice_cql_column_def *columns, size_t column_count,
                                                      const sluice_cql_input_value *cells, size_t row_count);

/**
 * A QUERY request: text at consistency (a CQL [consistency]: ONE = 0x0001, QUORUM = 0x0004,
 * LOCAL_QUORUM = 0x0006, …) with value_count positional values (may be 0 / NULL). The stream id of
 * a request the plugin sends (host->send) is the sink's business: any value does.
 * See Builders above. SINCE 1.3
 */
typedef int32_t (*sluice_host_cql_put_query_fn)(sluice_batch *batch, size_t index, int32_t version,
                                                int16_t stream, const char *text, size_t text_len,
                                                uint16_t consistency, const sluice_cql_input_value *values,
                                                size_t value_count);

/* ============================================================================================= */
/* The host function table                                                                        */
/* ============================================================================================= */

/**
 * Given to sluice_plugin_init. OWNERSHIP: host. LIFETIME: the whole process (keep the pointer).
 * Fields are only ever appended (minor versions); check abi_minor or struct_size before using a
 * field that a newer minor added.
 */
typedef struct sluice_host_api {
  uint32_t struct_size; /* sizeof(sluice_host_api) as the host was built */
  uint32_t abi_major;   /* SLUICE_ABI_VERSION_MAJOR of the host */
  uint32_t abi_minor;   /* SLUICE_ABI_VERSION_MINOR of the host */
  uint32_t reserved;
  const char *host_version; /* e.g. "0.1.0", NUL-terminated */

  sluice_host_log_fn log;
  sluice_host_metric_counter_fn metric_counter;
  sluice_host_metric_add_fn metric_add;

  sluice_host_node_kind_fn node_kind;
  sluice_host_node_scalar_fn node_scalar;
  sluice_host_node_map_get_fn node_map_get;
  sluice_host_node_count_fn node_count;
  sluice_host_node_at_fn node_at;
  sluice_host_node_position_fn node_position;
  sluice_host_config_error_fn config_error;
  sluice_host_target_resolve_fn target_resolve;
  sluice_host_config_transform_name_fn config_transform_name;

  sluice_host_call_forward_fn call_forward;
  sluice_host_call_respond_fn call_respond;
  sluice_host_call_fail_fn call_fail;
  sluice_host_call_set_data_fn call_set_data;
  sluice_host_call_data_fn call_data;
  sluice_host_send_fn send;
  sluice_host_timer_start_fn timer_start;
  sluice_host_timer_cancel_fn timer_cancel;
  sluice_host_client_address_fn client_address;

  sluice_host_batch_count_fn batch_count;
  sluice_host_batch_kind_fn batch_kind;
  sluice_host_batch_protocol_fn batch_protocol;
  sluice_host_batch_new_fn batch_new;
  sluice_host_batch_clone_fn batch_clone;
  sluice_host_batch_free_fn batch_free;
  sluice_host_batch_insert_from_fn batch_insert_from;
  sluice_host_batch_remove_fn batch_remove;
  sluice_host_batch_message_bytes_fn batch_message_bytes;
  sluice_host_batch_put_bytes_fn batch_put_bytes;

  sluice_host_redis_arg_count_fn redis_arg_count;
  sluice_host_redis_args_fn redis_args;
  sluice_host_redis_put_command_fn redis_put_command;
  sluice_host_redis_cursor_init_fn redis_cursor_init;
  sluice_host_redis_cursor_next_fn redis_cursor_next;
  sluice_host_redis_put_reply_fn redis_put_reply;

  /* ---- since 1.1 ---------------------------------------------------------------------------- */
  sluice_host_call_pass_fn call_pass;
  /* 1.1: safe handles, send timeout and cancel, call deadlines (abi-core appends here) */
  sluice_host_send_ex_fn send_ex;
  sluice_host_send_cancel_fn send_cancel;
  sluice_host_call_set_deadline_fn call_set_deadline;
  /* 1.1: in-place edits, key positions, session properties, partial answers (abi-reach appends here) */
  sluice_host_redis_set_arg_fn redis_set_arg;
  sluice_host_redis_splice_arg_fn redis_splice_arg;
  sluice_host_redis_keys_fn redis_keys;
  sluice_host_get_property_fn get_property;
  sluice_host_call_answer_fn call_answer;
  /* ---- since 1.2 ---------------------------------------------------------------------------- */
  sluice_host_control_reply_fn control_reply;
  sluice_host_control_publish_fn control_publish;
  /* ---- since 1.3: CQL (see CQL) -------------------------------------------------------------- */
  sluice_host_call_fail_code_fn call_fail_code;
  sluice_host_cql_header_fn cql_header;
  sluice_host_cql_statement_count_fn cql_statement_count;
  sluice_host_cql_query_fn cql_query;
  sluice_host_cql_statement_fn cql_statement;
  sluice_host_cql_value_count_fn cql_value_count;
  sluice_host_cql_value_fn cql_value;
  sluice_host_cql_value_named_fn cql_value_named;
  sluice_host_cql_result_rows_fn cql_result_rows;
  sluice_host_cql_result_column_fn cql_result_column;
  sluice_host_cql_rows_init_fn cql_rows_init;
  sluice_host_cql_rows_next_fn cql_rows_next;
  sluice_host_cql_set_cell_fn cql_set_cell;
  sluice_host_cql_put_error_fn cql_put_error;
  sluice_host_cql_put_result_void_fn cql_put_result_void;
  sluice_host_cql_put_result_rows_fn cql_put_result_rows;
  sluice_host_cql_put_query_fn cql_put_query;
} sluice_host_api;

/* ============================================================================================= */
/* Hooks (the plugin implements them; the host calls them)                                        */
/* ============================================================================================= */

/**
 * Creates the per-chain-position config from the user's YAML (node: the value under the transform's
 * name; may be a NULL node when the user wrote nothing). Validate everything here and report problems
 * with host->config_error (they carry the node's line and column).
 * out_config: receives the plugin's config object (OWNERSHIP plugin; freed in config_free).
 * Returns SLUICE_OK, or SLUICE_ERROR after reporting (the host refuses to start).
 * THREAD: main at start-up, the reload thread on a reload. The result is then shared read-only by
 * all event-loop threads.
 */
typedef int32_t (*sluice_on_config_new_fn)(sluice_config_env *env, const sluice_config_node *node,
                                           void **out_config);

/**
 * Frees a config: at shutdown, or after a reload once no instance made from it is left.
 * THREAD: main at shutdown, the reload thread after a reload (see LIFECYCLE AND THREADS). May be NULL.
 */
typedef void (*sluice_on_config_free_fn)(void *config);

/**
 * Creates the per-connection instance. env: keep it for send/timers; valid until instance_free.
 * out_instance: OWNERSHIP plugin. Returns SLUICE_OK; any other status closes the client connection
 * with an error reply. THREAD: the connection's event loop. May be NULL (instance pointer is NULL).
 */
typedef int32_t (*sluice_on_instance_new_fn)(void *config, sluice_instance_env *env,
                                             void **out_instance);

/** Frees an instance when its connection closes. THREAD: the connection's event loop. May be NULL. */
typedef void (*sluice_on_instance_free_fn)(void *instance);

/**
 * A batch of requests arrived. requests: LENT until the call completes. Must end in exactly one of
 * call_forward / call_respond / call_fail (now or later). Return SLUICE_OK; another status without
 * having completed the call makes the host fail the call. NULL means "forward everything unchanged".
 * THREAD: the connection's event loop.
 */
typedef int32_t (*sluice_on_requests_fn)(void *instance, sluice_call *call, sluice_batch *requests);

/**
 * Responses for a forwarded call arrived. requests: the batch that was forwarded, exactly as this
 * transform forwarded it, one request per response (later transforms work on their own batch, so
 * their changes do not show here; read-only, LENT until the call completes). responses: LENT and
 * modifiable until the call completes. Must end in call_respond (NULL = the lent responses) or
 * call_fail. NULL hook: responses pass up unchanged (and the host does not even keep the call).
 * THREAD: the connection's event loop.
 */
typedef int32_t (*sluice_on_responses_fn)(void *instance, sluice_call *call,
                                          const sluice_batch *requests, sluice_batch *responses);

/**
 * How a control function is stored in its declaration: the host casts it back to
 *     int32_t (*)(void *config, sluice_control_call *ctl, <params>)
 * and calls it through libffi. Declare the function with exactly that C signature and cast it to
 * sluice_control_fn in the declaration; a mismatch between params and the real signature is
 * undefined behaviour the host cannot detect. SINCE 1.2
 */
typedef void (*sluice_control_fn)(void);

/**
 * One control function of a transform (see CONTROL FUNCTIONS). OWNERSHIP plugin; LIFETIME: the whole
 * process (static data). SINCE 1.2
 */
typedef struct sluice_control_function {
  uint32_t struct_size; /* sizeof(sluice_control_function) as the plugin was built */
  uint32_t reserved;    /* 0 */
  const char *name;     /* [a-z0-9_]+, unique within the transform, NUL-terminated */
  const char *params;   /* the parameters after (config, ctl) as C text, e.g. "const char *policy" */
  const char *help;     /* one line for `sluice ctl functions`, NUL-terminated; may be NULL */
  sluice_control_fn fn; /* required */
} sluice_control_function;

/** One transform a plugin offers. OWNERSHIP plugin; LIFETIME: the whole process (static data). */
typedef struct sluice_transform_descriptor {
  uint32_t struct_size;    /* sizeof(sluice_transform_descriptor) as the plugin was built */
  /* SLUICE_PROTOCOL_* flags this transform handles. A chain that a source of a protocol reaches
   * (directly, or as the target of a send) may hold only transforms that declare that protocol:
   * otherwise the host refuses the configuration at start-up (and `sluice check`), naming the chain
   * step ("chain 'main' step 2: transform 'x' does not handle CQL"). Since 1.3 SLUICE_PROTOCOL_CQL
   * may be declared. */
  uint32_t protocols;
  const char *name;        /* the name used in chains, [a-z0-9_-]+, NUL-terminated */
  const char *description; /* one line, NUL-terminated */
  sluice_on_config_new_fn config_new; /* required */
  sluice_on_config_free_fn config_free;
  sluice_on_instance_new_fn instance_new;
  sluice_on_instance_free_fn instance_free;
  sluice_on_requests_fn on_requests;
  sluice_on_responses_fn on_responses;
  /* ---- since 1.2 ---------------------------------------------------------------------------- */
  /* control_function_count entries (may be 0 / NULL). The host steps through the array by
   * control_functions[0].struct_size, as through transforms. */
  const sluice_control_function *control_functions;
  uint32_t control_function_count;
  uint32_t reserved_1_2; /* 0 */
} sluice_transform_descriptor;

/** Descriptor flags. */
/**
 * The plugin needs the minor it declares: a host whose abi_minor is older than the descriptor's
 * abi_minor refuses to load it (naming both versions). Without this flag the plugin must check
 * host->abi_minor before calling functions newer than the host's minor. See COMPATIBILITY POLICY.
 */
#define SLUICE_PLUGIN_FLAG_REQUIRES_MINOR 1

/** What sluice_plugin_init returns. OWNERSHIP plugin; LIFETIME: the whole process (static data). */
typedef struct sluice_plugin_descriptor {
  uint32_t magic;       /* SLUICE_PLUGIN_MAGIC */
  uint32_t struct_size; /* sizeof(sluice_plugin_descriptor) as the plugin was built */
  uint32_t abi_major;   /* SLUICE_ABI_VERSION_MAJOR the plugin was built against */
  uint32_t abi_minor;   /* SLUICE_ABI_VERSION_MINOR the plugin was built against */
  uint32_t flags;       /* SLUICE_PLUGIN_FLAG_* */
  uint32_t transform_count;
  const char *name;     /* plugin name, NUL-terminated */
  const char *version;  /* plugin version, e.g. "1.2.0", NUL-terminated */
  /* transform_count entries. The host steps through the array by transforms[0].struct_size, so a
   * plugin built against an older minor (smaller transform struct) is read correctly. */
  const sluice_transform_descriptor *transforms;
} sluice_plugin_descriptor;

/**
 * The entry point, exported as SLUICE_PLUGIN_INIT_SYMBOL. Called once per loaded copy of the file,
 * before any other hook: on the main thread at start-up, on the reload thread for a file a reload
 * found changed. host: keep it (LIFETIME: process). Return the plugin's descriptor, or NULL to refuse to
 * load (log the reason with host->log first). Must not call host functions other than log.
 */
typedef const sluice_plugin_descriptor *(*sluice_plugin_init_fn)(const sluice_host_api *host);

/** Helper for C plugins: declares the entry point with the right linkage and visibility. */
#define SLUICE_PLUGIN_EXPORT __attribute__((visibility("default")))

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_PLUGIN_H */
