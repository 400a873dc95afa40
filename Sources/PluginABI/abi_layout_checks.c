/* Compile-time checks that the ABI structs keep the layout documented in sluice_plugin.h.
 * A change that trips one of these is an ABI break: it needs a new major version. */
#include "sluice_plugin.h"

_Static_assert(sizeof(sluice_host_view) == 2 * sizeof(void *), "sluice_host_view layout");
_Static_assert(sizeof(sluice_redis_cursor) == 64, "sluice_redis_cursor size is part of ABI 1");
_Static_assert(offsetof(sluice_plugin_descriptor, magic) == 0, "magic must come first");
_Static_assert(offsetof(sluice_host_api, struct_size) == 0, "struct_size must come first");
_Static_assert(offsetof(sluice_transform_descriptor, struct_size) == 0, "struct_size must come first");
_Static_assert(offsetof(sluice_control_function, struct_size) == 0, "struct_size must come first");
/* ABI 1.2 appended the control-function fields after on_responses: a 1.1 plugin's transform
 * descriptor ends exactly where they begin. */
_Static_assert(offsetof(sluice_transform_descriptor, control_functions) ==
                   offsetof(sluice_transform_descriptor, on_responses) + sizeof(void *),
               "control functions are appended right after the 1.1 fields");
/* ABI 1.3 appended the CQL functions after the 1.2 control functions. */
_Static_assert(offsetof(sluice_host_api, call_fail_code) ==
                   offsetof(sluice_host_api, control_publish) + sizeof(void *),
               "the CQL functions are appended right after the 1.2 ones");
_Static_assert(sizeof(sluice_cql_cursor) == 64, "sluice_cql_cursor size is part of ABI 1.3");
