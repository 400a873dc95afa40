"""The notations of the CQL native protocol (section 3 of the v4/v5 specs): [short], [int], [string],
[bytes], [string map] and so on, read from and written to byte strings.

Written for this test backend from the protocol specification; it shares no code with Sluice.
"""
import ipaddress
import struct
import uuid


class ProtocolViolation(Exception):
    """Input that does not follow the protocol; answered with a PROTOCOL_ERROR."""


class Reader:
    """Reads protocol notations from a byte string, front to back."""

    def __init__(self, data, pos=0):
        self.data = bytes(data)
        self.pos = pos

    def remaining(self):
        return len(self.data) - self.pos

    def take(self, n):
        if n < 0 or self.pos + n > len(self.data):
            raise ProtocolViolation(f"truncated message: wanted {n} bytes at offset {self.pos}, "
                                    f"{len(self.data) - self.pos} left")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def byte(self):
        return self.take(1)[0]

    def short(self):
        return struct.unpack(">H", self.take(2))[0]

    def int(self):
        return struct.unpack(">i", self.take(4))[0]

    def long(self):
        return struct.unpack(">q", self.take(8))[0]

    def string(self):
        return self._text(self.take(self.short()))

    def long_string(self):
        n = self.int()
        if n < 0:
            raise ProtocolViolation("negative [long string] length")
        return self._text(self.take(n))

    @staticmethod
    def _text(raw):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolViolation(f"invalid UTF-8 in a [string]: {e}") from None

    def uuid(self):
        return uuid.UUID(bytes=self.take(16))

    def string_list(self):
        return [self.string() for _ in range(self.short())]

    def bytes(self):
        n = self.int()
        return None if n < 0 else self.take(n)

    def value(self):
        """A [value]: bytes, None for null (-1), or UNSET (-2)."""
        n = self.int()
        if n == -1:
            return None
        if n == -2:
            return UNSET
        if n < -2:
            raise ProtocolViolation(f"invalid [value] length {n}")
        return self.take(n)

    def short_bytes(self):
        return self.take(self.short())

    def string_map(self):
        return {self.string(): self.string() for _ in range(self.short())}

    def bytes_map(self):
        out = {}
        for _ in range(self.short()):
            k = self.string()
            out[k] = self.bytes()
        return out


class _Unset:
    """The 'not set' [value] (length -2): leaves the column as it is."""

    def __repr__(self):
        return "UNSET"


UNSET = _Unset()


def short(n):
    return struct.pack(">H", n)


def int32(n):
    return struct.pack(">i", n)


def long(n):
    return struct.pack(">q", n)


def string(s):
    raw = s.encode("utf-8")
    return short(len(raw)) + raw


def long_string(s):
    raw = s.encode("utf-8")
    return int32(len(raw)) + raw


def bytes_(b):
    return int32(-1) if b is None else int32(len(b)) + bytes(b)


def short_bytes(b):
    return short(len(b)) + bytes(b)


def string_list(items):
    return short(len(items)) + b"".join(string(s) for s in items)


def string_map(m):
    return short(len(m)) + b"".join(string(k) + string(v) for k, v in m.items())


def string_multimap(m):
    return short(len(m)) + b"".join(string(k) + string_list(v) for k, v in m.items())


def bytes_map(m):
    return short(len(m)) + b"".join(string(k) + bytes_(v) for k, v in m.items())


def inet(address, port):
    packed = ipaddress.ip_address(address).packed
    return bytes([len(packed)]) + packed + int32(port)


def inetaddr(address):
    packed = ipaddress.ip_address(address).packed
    return bytes([len(packed)]) + packed
