/*
 * redis_commands.h — looking Redis commands up in the generated table (redis_command_table.h):
 * by name, by request (with its subcommand), ACL categories by name, and the keys at the fixed
 * positions COMMAND reports. Header-only C99; include after defining `host` (see plugin_util.h).
 */
#ifndef SLUICE_REDIS_COMMANDS_H
#define SLUICE_REDIS_COMMANDS_H

#include <stddef.h>
#include <stdint.h>

#include "redis_command_table.h"
#include "sluice_plugin.h"

/* Compares bytes (any ASCII case) with a lowercase NUL-terminated name, like strcmp. THREAD: any. */
static inline int rc_compare(const uint8_t *p, size_t len, const char *name) {
  size_t i = 0;
  for (; i < len && name[i] != '\0'; i++) {
    unsigned char a = p[i];
    if (a >= 'A' && a <= 'Z') a = (unsigned char)(a + 32);
    unsigned char b = (unsigned char)name[i];
    if (a != b) return a < b ? -1 : 1;
  }
  if (i == len) return name[i] == '\0' ? 0 : -1;
  return 1;
}

/* The table entry of a command or "parent|sub" name (any case), or NULL. THREAD: any. */
static inline const rct_command *rc_find(const uint8_t *p, size_t len) {
  size_t lo = 0, hi = RCT_COMMAND_COUNT;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = rc_compare(p, len, rct_commands[mid].name);
    if (c == 0) return &rct_commands[mid];
    if (c < 0) hi = mid; else lo = mid + 1;
  }
  return NULL;
}

/*
 * The table entry for request i of a request batch: its subcommand's ("config|get") when the command
 * has subcommands and the subcommand is known, else the command's; NULL for an unknown command.
 * THREAD: instance's.
 */
static inline const rct_command *rc_find_request(const sluice_batch *batch, size_t i) {
  sluice_host_view args[2];
  size_t argc = 0;
  if (host->redis_args(batch, i, args, 2, &argc) != SLUICE_OK || argc == 0 || args[0].len > 32) return NULL;
  const rct_command *command = rc_find(args[0].ptr, args[0].len);
  if (command == NULL || !command->has_subcommands || argc < 2 || args[1].len > 32) return command;
  uint8_t full[66];
  memcpy(full, args[0].ptr, args[0].len);
  full[args[0].len] = '|';
  memcpy(full + args[0].len + 1, args[1].ptr, args[1].len);
  const rct_command *sub = rc_find(full, args[0].len + 1 + args[1].len);
  return sub != NULL ? sub : command;
}

/* The bit of an ACL category name (without '@', any case), or 0 when unknown. */
static inline uint64_t rc_category(const uint8_t *p, size_t len) {
  for (int i = 0; i < RCT_CATEGORY_COUNT; i++) {
    if (rc_compare(p, len, rct_category_names[i]) == 0) return UINT64_C(1) << i;
  }
  return 0;
}

/*
 * Calls visit(key_index) for each argument of a command with argc arguments that COMMAND's
 * first/last/step name as a key; stops early when visit returns nonzero and returns that value.
 * Commands whose keys are found only through key specs (EVAL's numkeys, XREAD's STREAMS…) have
 * first 0 here and visit nothing.
 */
static inline int rc_for_each_key(const rct_command *command, size_t argc, int (*visit)(void *ctx, size_t index), void *ctx) {
  if (command == NULL || command->first_key <= 0 || command->step <= 0) return 0;
  long last = command->last_key < 0 ? (long)argc + command->last_key : command->last_key;
  if (last >= (long)argc) last = (long)argc - 1;
  for (long k = command->first_key; k <= last; k += command->step) {
    int r = visit(ctx, (size_t)k);
    if (r != 0) return r;
  }
  return 0;
}

#endif /* SLUICE_REDIS_COMMANDS_H */
