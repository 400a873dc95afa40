"""CQL data types: parsing type names ("frozen<map<text, int>>"), the [option] a type is sent as in
result metadata, and the serialization of values (section 6 of the spec) to and from the Python
values the backend stores (int, str, bytes, bool, float, uuid.UUID, Decimal, ipaddress objects,
lists, sorted lists for sets, dicts for maps, tuples).

Written for this test backend from the protocol specification; it shares no code with Sluice.
"""
import decimal
import ipaddress
import struct
import uuid

from . import wire


class InvalidValue(Exception):
    """A value that does not fit its type; answered with an INVALID error."""


class CqlType:
    code = None
    name = None
    frozen = False

    def option(self):
        return wire.short(self.code)

    def cql(self):
        return self.name

    def __eq__(self, other):
        return isinstance(other, CqlType) and self.cql() == other.cql()

    def __hash__(self):
        return hash(self.cql())

    def __repr__(self):
        return self.cql()


class Native(CqlType):
    def __init__(self, name, code, fmt=None):
        self.name = name
        self.code = code
        self.fmt = fmt

    def serialize(self, v):
        n = self.name
        try:
            if n in ("text", "varchar", "ascii"):
                if not isinstance(v, str):
                    raise InvalidValue(f"expected a string for {n}, got {v!r}")
                return v.encode("utf-8")
            if n == "blob":
                return bytes(v)
            if n == "boolean":
                return b"\x01" if v else b"\x00"
            if self.fmt:
                return struct.pack(self.fmt, v)
            if n == "varint":
                return _varint_bytes(int(v))
            if n == "decimal":
                sign, digits, exp = decimal.Decimal(v).as_tuple()
                unscaled = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
                return struct.pack(">i", -exp) + _varint_bytes(unscaled)
            if n in ("uuid", "timeuuid"):
                return v.bytes
            if n == "inet":
                return ipaddress.ip_address(v).packed
            if n == "date":
                return struct.pack(">I", (int(v) + 2 ** 31) & 0xFFFFFFFF)
        except (struct.error, TypeError, AttributeError, ValueError) as e:
            raise InvalidValue(f"invalid value {v!r} for type {n}: {e}") from None
        raise InvalidValue(f"cannot serialize type {n}")

    def deserialize(self, b):
        n = self.name
        try:
            if n in ("text", "varchar", "ascii"):
                return b.decode("utf-8")
            if n == "blob":
                return bytes(b)
            if n == "boolean":
                if len(b) != 1:
                    raise InvalidValue("boolean must be 1 byte")
                return b != b"\x00"
            if self.fmt:
                return struct.unpack(self.fmt, b)[0]
            if n == "varint":
                if not b:
                    raise InvalidValue("empty varint")
                return int.from_bytes(b, "big", signed=True)
            if n == "decimal":
                scale = struct.unpack(">i", b[:4])[0]
                unscaled = int.from_bytes(b[4:], "big", signed=True)
                return decimal.Decimal(unscaled).scaleb(-scale)
            if n in ("uuid", "timeuuid"):
                return uuid.UUID(bytes=bytes(b))
            if n == "inet":
                if len(b) not in (4, 16):
                    raise InvalidValue("inet must be 4 or 16 bytes")
                return ipaddress.ip_address(bytes(b))
            if n == "date":
                return struct.unpack(">I", b)[0] - 2 ** 31
        except (struct.error, ValueError, UnicodeDecodeError) as e:
            raise InvalidValue(f"invalid {n} value ({len(b)} bytes): {e}") from None
        raise InvalidValue(f"cannot deserialize type {n}")


class ListType(CqlType):
    code = 0x20
    kind = "list"

    def __init__(self, elem, frozen=False):
        self.elem = elem
        self.frozen = frozen

    def cql(self):
        s = f"{self.kind}<{self.elem.cql()}>"
        return f"frozen<{s}>" if self.frozen else s

    def option(self):
        return wire.short(self.code) + self.elem.option()

    def serialize(self, v):
        return _collection(self.elem, list(v))

    def deserialize(self, b):
        return _read_collection(self.elem, b)


class SetType(ListType):
    code = 0x22
    kind = "set"

    def serialize(self, v):
        return _collection(self.elem, sort_values(v))

    def deserialize(self, b):
        return sort_values(_read_collection(self.elem, b))


class MapType(CqlType):
    code = 0x21

    def __init__(self, key, value, frozen=False):
        self.key = key
        self.value = value
        self.frozen = frozen

    def cql(self):
        s = f"map<{self.key.cql()}, {self.value.cql()}>"
        return f"frozen<{s}>" if self.frozen else s

    def option(self):
        return wire.short(self.code) + self.key.option() + self.value.option()

    def serialize(self, v):
        items = sorted(dict(v).items(), key=lambda kv: sort_key(kv[0]))
        out = [struct.pack(">i", len(items))]
        for k, val in items:
            out.append(_cell(self.key, k))
            out.append(_cell(self.value, val))
        return b"".join(out)

    def deserialize(self, b):
        r = wire.Reader(b)
        out = {}
        try:
            for _ in range(r.int()):
                k = _read_cell(self.key, r)
                out[k] = _read_cell(self.value, r)
        except wire.ProtocolViolation as e:
            raise InvalidValue(f"invalid map value: {e}") from None
        return dict(sorted(out.items(), key=lambda kv: sort_key(kv[0])))


class TupleType(CqlType):
    code = 0x31
    frozen = True

    def __init__(self, elems):
        self.elems = elems

    def cql(self):
        return "frozen<tuple<" + ", ".join(e.cql() for e in self.elems) + ">>"

    def option(self):
        return wire.short(self.code) + wire.short(len(self.elems)) + b"".join(
            e.option() for e in self.elems)

    def serialize(self, v):
        if len(v) != len(self.elems):
            raise InvalidValue(f"tuple of {len(self.elems)} expected, got {len(v)}")
        return b"".join(_cell(t, x) for t, x in zip(self.elems, v))

    def deserialize(self, b):
        r = wire.Reader(b)
        out = []
        try:
            for t in self.elems:
                out.append(None if r.remaining() == 0 else _read_cell(t, r))
        except wire.ProtocolViolation as e:
            raise InvalidValue(f"invalid tuple value: {e}") from None
        return tuple(out)


def _cell(t, v):
    return wire.bytes_(None if v is None else t.serialize(v))


def _read_cell(t, r):
    raw = r.bytes()
    return None if raw is None else t.deserialize(raw)


def _collection(elem, items):
    return struct.pack(">i", len(items)) + b"".join(_cell(elem, x) for x in items)


def _read_collection(elem, b):
    r = wire.Reader(b)
    try:
        return [_read_cell(elem, r) for _ in range(r.int())]
    except wire.ProtocolViolation as e:
        raise InvalidValue(f"invalid collection value: {e}") from None


def _varint_bytes(n):
    length = max(1, (n + (n < 0)).bit_length() // 8 + 1)
    return n.to_bytes(length, "big", signed=True)


def sort_key(v):
    """A key that orders values of one CQL type the way the backend returns them."""
    if isinstance(v, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return (v.version, v.packed)
    if isinstance(v, uuid.UUID):
        return v.bytes
    if isinstance(v, (list, tuple)):
        return tuple(sort_key(x) for x in v)
    if isinstance(v, dict):
        return tuple((sort_key(k), sort_key(x)) for k, x in v.items())
    if v is None:
        return b""
    return v


def sort_values(items):
    unique = {}
    for x in items:
        unique[hashable(x)] = x
    return sorted(unique.values(), key=sort_key)


def hashable(v):
    """A hashable form of a value, for use in primary keys and sets."""
    if isinstance(v, list):
        return tuple(hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple((hashable(k), hashable(x)) for k, x in v.items())
    return v


NATIVE = {
    "ascii": Native("ascii", 0x01),
    "bigint": Native("bigint", 0x02, ">q"),
    "blob": Native("blob", 0x03),
    "boolean": Native("boolean", 0x04),
    "counter": Native("counter", 0x05, ">q"),
    "decimal": Native("decimal", 0x06),
    "double": Native("double", 0x07, ">d"),
    "float": Native("float", 0x08, ">f"),
    "int": Native("int", 0x09, ">i"),
    "timestamp": Native("timestamp", 0x0B, ">q"),
    "uuid": Native("uuid", 0x0C),
    "text": Native("text", 0x0D),
    "varint": Native("varint", 0x0E),
    "timeuuid": Native("timeuuid", 0x0F),
    "inet": Native("inet", 0x10),
    "date": Native("date", 0x11),
    "time": Native("time", 0x12, ">q"),
    "smallint": Native("smallint", 0x13, ">h"),
    "tinyint": Native("tinyint", 0x14, ">b"),
}
NATIVE["varchar"] = NATIVE["text"]


def parse_type(text):
    """The CqlType a type name stands for, e.g. 'int', 'frozen<map<text, blob>>'."""
    tokens = _type_tokens(text)
    t, pos = _parse_type_tokens(tokens, 0)
    if pos != len(tokens):
        raise InvalidValue(f"unexpected text after type: {text!r}")
    return t


def _type_tokens(text):
    out, word = [], ""
    for ch in text:
        if ch.isalnum() or ch == "_":
            word += ch
            continue
        if word:
            out.append(word.lower())
            word = ""
        if ch in "<>,":
            out.append(ch)
        elif not ch.isspace():
            raise InvalidValue(f"unexpected character {ch!r} in type {text!r}")
    if word:
        out.append(word.lower())
    return out


def _parse_type_tokens(tokens, pos, frozen=False):
    if pos >= len(tokens):
        raise InvalidValue("type expected")
    name = tokens[pos]
    pos += 1
    if name in NATIVE:
        return NATIVE[name], pos

    def expect(tok):
        nonlocal pos
        if pos >= len(tokens) or tokens[pos] != tok:
            raise InvalidValue(f"'{tok}' expected in type")
        pos += 1

    if name == "frozen":
        expect("<")
        t, pos = _parse_type_tokens(tokens, pos, frozen=True)
        expect(">")
        return t, pos
    if name in ("list", "set"):
        expect("<")
        elem, pos = _parse_type_tokens(tokens, pos)
        expect(">")
        return (ListType if name == "list" else SetType)(elem, frozen), pos
    if name == "map":
        expect("<")
        k, pos = _parse_type_tokens(tokens, pos)
        expect(",")
        v, pos = _parse_type_tokens(tokens, pos)
        expect(">")
        return MapType(k, v, frozen), pos
    if name == "tuple":
        expect("<")
        elems = []
        while True:
            t, pos = _parse_type_tokens(tokens, pos)
            elems.append(t)
            if pos < len(tokens) and tokens[pos] == ",":
                pos += 1
                continue
            break
        expect(">")
        return TupleType(elems), pos
    raise InvalidValue(f"unknown type {name}")
