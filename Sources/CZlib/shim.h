// zlib's crc32, for the payload checksum of CQL v5 segments (CQLChecksums).
#include <zlib.h>
