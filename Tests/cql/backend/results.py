"""The bodies of RESULT and ERROR responses and EVENT pushes (sections 4.2.1, 4.2.5, 4.2.6 and 9
of the spec), for protocol v4 and v5.

Written for this test backend from the protocol specification; it shares no code with Sluice.
"""
import hashlib

from . import wire

# Error codes (section 9).
SERVER_ERROR = 0x0000
PROTOCOL_ERROR = 0x000A
BAD_CREDENTIALS = 0x0100
UNAVAILABLE = 0x1000
OVERLOADED = 0x1001
IS_BOOTSTRAPPING = 0x1002
TRUNCATE_ERROR = 0x1003
WRITE_TIMEOUT = 0x1100
READ_TIMEOUT = 0x1200
READ_FAILURE = 0x1300
FUNCTION_FAILURE = 0x1400
WRITE_FAILURE = 0x1500
CDC_WRITE_FAILURE = 0x1600
CAS_WRITE_UNKNOWN = 0x1700
SYNTAX_ERROR = 0x2000
UNAUTHORIZED = 0x2100
INVALID = 0x2200
CONFIG_ERROR = 0x2300
ALREADY_EXISTS = 0x2400
UNPREPARED = 0x2500

ERROR_NAMES = {
    "SERVER_ERROR": SERVER_ERROR, "PROTOCOL_ERROR": PROTOCOL_ERROR,
    "BAD_CREDENTIALS": BAD_CREDENTIALS, "UNAVAILABLE": UNAVAILABLE, "OVERLOADED": OVERLOADED,
    "IS_BOOTSTRAPPING": IS_BOOTSTRAPPING, "TRUNCATE_ERROR": TRUNCATE_ERROR,
    "WRITE_TIMEOUT": WRITE_TIMEOUT, "READ_TIMEOUT": READ_TIMEOUT, "READ_FAILURE": READ_FAILURE,
    "FUNCTION_FAILURE": FUNCTION_FAILURE, "WRITE_FAILURE": WRITE_FAILURE,
    "CDC_WRITE_FAILURE": CDC_WRITE_FAILURE, "CAS_WRITE_UNKNOWN": CAS_WRITE_UNKNOWN,
    "SYNTAX_ERROR": SYNTAX_ERROR, "UNAUTHORIZED": UNAUTHORIZED, "INVALID": INVALID,
    "CONFIG_ERROR": CONFIG_ERROR, "ALREADY_EXISTS": ALREADY_EXISTS, "UNPREPARED": UNPREPARED,
}

CONSISTENCY_ONE = 0x0001


class CqlError(Exception):
    """An ERROR response: a code, a message and the code's extra fields (`extra`, already
    encoded for the connection's protocol version by `body`)."""

    def __init__(self, code, message, **fields):
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields

    def body(self, version):
        f = self.fields
        out = wire.int32(self.code) + wire.string(self.message)
        code = self.code
        if code == UNAVAILABLE:
            out += wire.short(f.get("consistency", CONSISTENCY_ONE)) + wire.int32(
                f.get("required", 1)) + wire.int32(f.get("alive", 0))
        elif code == WRITE_TIMEOUT:
            out += wire.short(f.get("consistency", CONSISTENCY_ONE)) + wire.int32(
                f.get("received", 0)) + wire.int32(f.get("block_for", 1)) + wire.string(
                f.get("write_type", "SIMPLE"))
            if version >= 5 and f.get("write_type") == "CAS":
                out += wire.short(f.get("contentions", 0))
        elif code == READ_TIMEOUT:
            out += wire.short(f.get("consistency", CONSISTENCY_ONE)) + wire.int32(
                f.get("received", 0)) + wire.int32(f.get("block_for", 1)) + bytes(
                [1 if f.get("data_present") else 0])
        elif code in (READ_FAILURE, WRITE_FAILURE):
            out += wire.short(f.get("consistency", CONSISTENCY_ONE)) + wire.int32(
                f.get("received", 0)) + wire.int32(f.get("block_for", 1))
            reasons = f.get("reasons", {"127.0.0.1": 0})
            if version >= 5:
                out += wire.int32(len(reasons)) + b"".join(
                    wire.inetaddr(a) + wire.short(c) for a, c in reasons.items())
            else:
                out += wire.int32(len(reasons))
            if code == READ_FAILURE:
                out += bytes([1 if f.get("data_present") else 0])
            else:
                out += wire.string(f.get("write_type", "SIMPLE"))
        elif code == FUNCTION_FAILURE:
            out += wire.string(f.get("keyspace", "ks")) + wire.string(
                f.get("function", "f")) + wire.string_list(f.get("arg_types", []))
        elif code == CAS_WRITE_UNKNOWN:
            out += wire.short(f.get("consistency", CONSISTENCY_ONE)) + wire.int32(
                f.get("received", 0)) + wire.int32(f.get("block_for", 1))
        elif code == ALREADY_EXISTS:
            out += wire.string(f.get("keyspace", "")) + wire.string(f.get("table", ""))
        elif code == UNPREPARED:
            out += wire.short_bytes(f.get("id", b""))
        return out


class Void:
    def body(self, version, **_):
        return wire.int32(0x0001)


class SetKeyspace:
    def __init__(self, keyspace):
        self.keyspace = keyspace

    def body(self, version, **_):
        return wire.int32(0x0003) + wire.string(self.keyspace)


class SchemaChange:
    """change: CREATED/UPDATED/DROPPED; target: KEYSPACE/TABLE."""

    def __init__(self, change, target, keyspace, name=None):
        self.change, self.target, self.keyspace, self.name = change, target, keyspace, name

    def options(self):
        out = wire.string(self.change) + wire.string(self.target) + wire.string(self.keyspace)
        if self.target != "KEYSPACE":
            out += wire.string(self.name)
        return out

    def body(self, version, **_):
        return wire.int32(0x0005) + self.options()

    def event_body(self):
        return wire.string("SCHEMA_CHANGE") + self.options()


class ColumnSpec:
    def __init__(self, keyspace, table, name, cql_type):
        self.keyspace, self.table, self.name, self.type = keyspace, table, name, cql_type


def column_specs(specs, global_spec=True):
    """(flags contribution, encoded specs) for a list of ColumnSpec."""
    if specs and global_spec and len({(s.keyspace, s.table) for s in specs}) == 1:
        head = wire.string(specs[0].keyspace) + wire.string(specs[0].table)
        return 0x0001, head + b"".join(wire.string(s.name) + s.type.option() for s in specs)
    return 0, b"".join(wire.string(s.keyspace) + wire.string(s.table) + wire.string(s.name)
                       + s.type.option() for s in specs)


def metadata_id(specs):
    """The v5 result metadata id: a digest of the result columns."""
    _, encoded = column_specs(specs)
    return hashlib.md5(b"rm" + encoded).digest()


class Rows:
    def __init__(self, specs, rows, paging_state=None):
        self.specs = specs
        self.rows = rows  # lists of Python values, in the order of specs
        self.paging_state = paging_state

    def body(self, version, skip_metadata=False, metadata_changed_id=None):
        flags = 0
        extra = b""
        if self.paging_state is not None:
            flags |= 0x0002
            extra += wire.bytes_(self.paging_state)
        if metadata_changed_id is not None and version >= 5:
            flags |= 0x0008
            extra += wire.short_bytes(metadata_changed_id)
            skip_metadata = False
        if skip_metadata:
            flags |= 0x0004
            specs = b""
        else:
            gflag, specs = column_specs(self.specs)
            flags |= gflag
        out = [wire.int32(0x0002), wire.int32(flags), wire.int32(len(self.specs)), extra, specs,
               wire.int32(len(self.rows))]
        types = [s.type for s in self.specs]
        for row in self.rows:
            for t, v in zip(types, row):
                out.append(wire.bytes_(None if v is None else t.serialize(v)))
        return b"".join(out)


class Prepared:
    def __init__(self, statement_id, bind_specs, pk_indexes, result_specs, result_metadata_id):
        self.id = statement_id
        self.bind_specs = bind_specs
        self.pk_indexes = pk_indexes
        self.result_specs = result_specs
        self.result_metadata_id = result_metadata_id

    def body(self, version, **_):
        out = wire.int32(0x0004) + wire.short_bytes(self.id)
        if version >= 5:
            out += wire.short_bytes(self.result_metadata_id)
        gflag, specs = column_specs(self.bind_specs)
        out += wire.int32(gflag) + wire.int32(len(self.bind_specs)) + wire.int32(
            len(self.pk_indexes)) + b"".join(wire.short(i) for i in self.pk_indexes) + specs
        if self.result_specs:
            gflag, specs = column_specs(self.result_specs)
            out += wire.int32(gflag) + wire.int32(len(self.result_specs)) + specs
        else:
            out += wire.int32(0x0004) + wire.int32(0)
        return out
