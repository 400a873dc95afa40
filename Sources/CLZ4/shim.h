// liblz4 (apt: liblz4-dev): the LZ4 block format, used by the CQL codec for v4 frame bodies and
// v5 segments (Sources/Host/Protocols/CQL/Codec/CQLLZ4.swift).
#include <lz4.h>
