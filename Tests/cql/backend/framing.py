"""Envelopes (the 9-byte-header frames of v4, called envelopes in v5), their v4 body compression
(LZ4 with a 4-byte big-endian length in front, or Snappy), and the v5 segment layer that carries
envelopes once STARTUP has been answered: a little-endian header with a CRC24, a payload of at most
128 KiB - 1 bytes (LZ4-compressed as a whole when LZ4 was negotiated) and a CRC32 of the payload.
A self-contained segment holds one or more whole envelopes; a larger envelope is cut across
segments that are not self-contained.

Written for this test backend from the protocol specification; it shares no code with Sluice.
"""
import struct
import zlib

from .wire import ProtocolViolation

HEADER = struct.Struct(">BBhBi")
HEADER_SIZE = HEADER.size  # 9
MAX_BODY = 256 * 1024 * 1024

FLAG_COMPRESSION = 0x01
FLAG_TRACING = 0x02
FLAG_CUSTOM_PAYLOAD = 0x04
FLAG_WARNING = 0x08
FLAG_BETA = 0x10

OP_ERROR = 0x00
OP_STARTUP = 0x01
OP_READY = 0x02
OP_AUTHENTICATE = 0x03
OP_OPTIONS = 0x05
OP_SUPPORTED = 0x06
OP_QUERY = 0x07
OP_RESULT = 0x08
OP_PREPARE = 0x09
OP_EXECUTE = 0x0A
OP_REGISTER = 0x0B
OP_EVENT = 0x0C
OP_BATCH = 0x0D
OP_AUTH_CHALLENGE = 0x0E
OP_AUTH_RESPONSE = 0x0F
OP_AUTH_SUCCESS = 0x10

OPCODE_NAMES = {
    0x00: "ERROR", 0x01: "STARTUP", 0x02: "READY", 0x03: "AUTHENTICATE", 0x05: "OPTIONS",
    0x06: "SUPPORTED", 0x07: "QUERY", 0x08: "RESULT", 0x09: "PREPARE", 0x0A: "EXECUTE",
    0x0B: "REGISTER", 0x0C: "EVENT", 0x0D: "BATCH", 0x0E: "AUTH_CHALLENGE", 0x0F: "AUTH_RESPONSE",
    0x10: "AUTH_SUCCESS",
}


class Envelope:
    """One request or response: header fields and the (uncompressed) body."""

    __slots__ = ("version", "flags", "stream", "opcode", "body")

    def __init__(self, version, flags, stream, opcode, body):
        self.version = version
        self.flags = flags
        self.stream = stream
        self.opcode = opcode
        self.body = body

    def encode(self, compressor=None):
        """The envelope's bytes; `compressor` compresses the body (v4 only) and sets the flag."""
        body = self.body
        flags = self.flags & ~FLAG_COMPRESSION
        if compressor is not None and body:
            body = compressor.compress(body)
            flags |= FLAG_COMPRESSION
        return HEADER.pack(self.version, flags, self.stream, self.opcode, len(body)) + body


def peek_envelope(buf):
    """(header tuple, total length) of the envelope at the front of buf, or None if the header is
    not complete. The length is checked against MAX_BODY."""
    if len(buf) < HEADER_SIZE:
        return None
    version, flags, stream, opcode, length = HEADER.unpack_from(buf, 0)
    if length < 0 or length > MAX_BODY:
        raise ProtocolViolation(f"invalid frame body length {length}")
    return (version, flags, stream, opcode, length), HEADER_SIZE + length


# --- v4 body compression -------------------------------------------------------------------------

class LZ4BodyCompressor:
    """v4 LZ4: the uncompressed length as a big-endian [int], then one LZ4 block."""

    name = "lz4"

    def __init__(self):
        import lz4.block
        self._block = lz4.block

    def compress(self, data):
        return struct.pack(">i", len(data)) + self._block.compress(data, store_size=False)

    def decompress(self, data):
        if len(data) < 4:
            raise ProtocolViolation("LZ4 body shorter than its length prefix")
        n = struct.unpack(">i", data[:4])[0]
        if n < 0 or n > MAX_BODY:
            raise ProtocolViolation(f"invalid LZ4 uncompressed length {n}")
        if n == 0:
            return b""
        try:
            out = self._block.decompress(data[4:], uncompressed_size=n)
        except Exception as e:
            raise ProtocolViolation(f"LZ4 decompression failed: {e}") from None
        return out


class SnappyBodyCompressor:
    """v4 Snappy: the body is one raw Snappy block."""

    name = "snappy"

    def __init__(self):
        import snappy
        self._snappy = snappy

    def compress(self, data):
        return self._snappy.compress(data)

    def decompress(self, data):
        try:
            return self._snappy.decompress(data)
        except Exception as e:
            raise ProtocolViolation(f"Snappy decompression failed: {e}") from None


def available_compressions():
    """The names of the body compressions whose Python modules are installed."""
    names = []
    for cls in (LZ4BodyCompressor, SnappyBodyCompressor):
        try:
            cls()
            names.append(cls.name)
        except ImportError:
            pass
    return names


def body_compressor(name):
    return {"lz4": LZ4BodyCompressor, "snappy": SnappyBodyCompressor}[name]()


# --- v5 segments ---------------------------------------------------------------------------------

MAX_SEGMENT_PAYLOAD = 128 * 1024 - 1
_CRC24_INIT = 0x875060
_CRC24_POLY = 0x1974F0B
_CRC32_SEED = zlib.crc32(b"\xfa\x2d\x55\xca")


def crc24(value, nbytes):
    """CRC24 of the segment header `value`, taken as `nbytes` little-endian bytes."""
    crc = _CRC24_INIT
    for _ in range(nbytes):
        crc ^= (value & 0xFF) << 16
        value >>= 8
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= _CRC24_POLY
    return crc & 0xFFFFFF


def crc32(payload):
    return zlib.crc32(payload, _CRC32_SEED) & 0xFFFFFFFF


class SegmentCodec:
    """Encodes and decodes v5 segments, compressed with LZ4 or not."""

    def __init__(self, lz4=False):
        self.lz4 = lz4
        self.header_len = 5 if lz4 else 3
        if lz4:
            import lz4.block
            self._block = lz4.block

    def encode(self, payload, self_contained):
        """One segment carrying payload (at most MAX_SEGMENT_PAYLOAD bytes)."""
        assert len(payload) <= MAX_SEGMENT_PAYLOAD
        if self.lz4:
            uncompressed_len = len(payload)
            compressed = self._block.compress(payload, store_size=False) if payload else b""
            if payload and len(compressed) < len(payload):
                body = compressed
            else:
                body, uncompressed_len = payload, 0  # stored as is: uncompressed length 0
            header = len(body) | (uncompressed_len << 17) | ((1 if self_contained else 0) << 34)
        else:
            body = payload
            header = len(body) | ((1 if self_contained else 0) << 17)
        return (header.to_bytes(self.header_len, "little")
                + crc24(header, self.header_len).to_bytes(3, "little")
                + body + crc32(body).to_bytes(4, "little"))

    def encode_envelopes(self, data):
        """Segments carrying `data` (whole envelopes): self-contained ones if it fits, else the
        data cut across segments that are not self-contained."""
        if len(data) <= MAX_SEGMENT_PAYLOAD:
            return self.encode(data, True)
        return b"".join(self.encode(data[i:i + MAX_SEGMENT_PAYLOAD], False)
                        for i in range(0, len(data), MAX_SEGMENT_PAYLOAD))

    def decode(self, buf):
        """(payload, self_contained, segment length) of the segment at the front of buf, or None
        if it is not complete. Raises ProtocolViolation on a CRC mismatch or bad lengths."""
        head = self.header_len + 3
        if len(buf) < head:
            return None
        header = int.from_bytes(buf[:self.header_len], "little")
        expected = int.from_bytes(buf[self.header_len:head], "little")
        actual = crc24(header, self.header_len)
        if expected != actual:
            raise ProtocolViolation(f"segment header CRC24 mismatch (received {expected:06x}, "
                                    f"computed {actual:06x})")
        length = header & 0x1FFFF
        if self.lz4:
            uncompressed_len = (header >> 17) & 0x1FFFF
            self_contained = bool((header >> 34) & 1)
        else:
            uncompressed_len = 0
            self_contained = bool((header >> 17) & 1)
        total = head + length + 4
        if len(buf) < total:
            return None
        body = bytes(buf[head:head + length])
        expected = int.from_bytes(buf[head + length:total], "little")
        if crc32(body) != expected:
            raise ProtocolViolation("segment payload CRC32 mismatch")
        if uncompressed_len:
            try:
                body = self._block.decompress(body, uncompressed_size=uncompressed_len)
            except Exception as e:
                raise ProtocolViolation(f"LZ4 segment decompression failed: {e}") from None
        return body, self_contained, total
