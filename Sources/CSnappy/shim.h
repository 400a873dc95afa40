// libsnappy (apt: libsnappy-dev) through its C API, used by the CQL codec for v4 frame bodies
// (Sources/Host/Protocols/CQL/Codec/CQLSnappy.swift).
#include <snappy-c.h>
