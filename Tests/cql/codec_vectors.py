"""Test vectors for Sluice's CQL codec, made and checked by code that is not Sluice's.

Requests and v5 segments are encoded by the DataStax python driver's own code (cassandra.protocol,
cassandra.segment, the driver's lz4/snappy compressors); responses by the Python test backend
(Tests/cql/backend: results.py, framing.py, wire.py). Run by Tests/SluiceHostTests/CQLDriverVectorTests.swift:

    python3 Tests/cql/codec_vectors.py emit          # prints {"name": "hex", ...}
    python3 Tests/cql/codec_vectors.py check < in    # decodes Sluice-made bytes, prints what it saw

`check` reads {"name": {"kind": ..., "hex": ...}} and answers {"name": {...fields...}} using the
driver's decoders for responses and segments and the test backend's reader for requests.
"""
import io
import json
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from cassandra import ConsistencyLevel  # noqa: E402
from cassandra.connection import locally_supported_compressions  # noqa: E402
from cassandra.protocol import (  # noqa: E402
    AuthResponseMessage, BatchMessage, ExecuteMessage, OptionsMessage, PrepareMessage,
    ProtocolHandler, QueryMessage, RegisterMessage, StartupMessage)
from cassandra.query import BatchType  # noqa: E402
from cassandra.segment import SegmentCodec  # noqa: E402

from Tests.cql.backend import framing as F  # noqa: E402
from Tests.cql.backend import results as R  # noqa: E402
from Tests.cql.backend import wire  # noqa: E402
from Tests.cql.backend.datatypes import parse_type  # noqa: E402


def request(msg, version, stream, compression=None, tracing=False, custom_payload=None):
    msg.tracing = tracing
    msg.custom_payload = custom_payload
    compressor = locally_supported_compressions[compression][0] if compression else None
    return ProtocolHandler.encode_message(msg, stream, version, compressor, False)


def response(version, stream, opcode, body, flags=0):
    return F.Envelope(0x80 | version, flags, stream, opcode, body).encode()


def emit():
    v = {}
    ONE, QUORUM, SERIAL, LOCAL_SERIAL = (ConsistencyLevel.ONE, ConsistencyLevel.QUORUM,
                                         ConsistencyLevel.SERIAL, ConsistencyLevel.LOCAL_SERIAL)
    v["startup_v4"] = request(StartupMessage("3.0.0", {"COMPRESSION": "lz4", "DRIVER_NAME": "x"}), 4, 1)
    v["options_v5"] = request(OptionsMessage(), 5, 0)
    for version in (4, 5):
        q = QueryMessage("SELECT v FROM ks.t WHERE k = ?", QUORUM, serial_consistency_level=LOCAL_SERIAL,
                         fetch_size=100, paging_state=b"PS", timestamp=1234567890123,
                         keyspace="ks" if version == 5 else None)
        q.query_params = [struct.pack(">i", 7), None]
        v[f"query_v{version}"] = request(q, version, 7)
        v[f"prepare_v{version}"] = request(
            PrepareMessage("INSERT INTO t (k, v) VALUES (?, ?)", keyspace="ks" if version == 5 else None),
            version, 8)
        e = ExecuteMessage(b"\x01\x02ID", [b"v1", None], ONE, fetch_size=50, skip_meta=True,
                           result_metadata_id=b"RM" if version == 5 else None)
        v[f"execute_v{version}"] = request(e, version, 9)
        b = BatchMessage(BatchType.LOGGED, [(False, "INSERT INTO ks.t (k) VALUES (?)", [struct.pack(">i", 1)]),
                                            (True, b"PID", [b"x", None])], ONE,
                         serial_consistency_level=SERIAL, timestamp=42, keyspace="ks" if version == 5 else None)
        v[f"batch_v{version}"] = request(b, version, 10)
    # Named values, now_in_seconds and unset, which the driver does not send: written with the test
    # backend's notation helpers.
    named_params = (wire.short(1) + bytes([0x01 | 0x40]) + wire.short(2) + wire.string("a")
                    + wire.bytes_(b"\x00\x00\x00\x05") + wire.string("B b") + wire.int32(-2))
    v["query_named_v4"] = F.Envelope(4, 0, 17, F.OP_QUERY, wire.long_string(
        "UPDATE t SET v = :a WHERE k = :\"B b\"") + named_params).encode()
    v5_params = (wire.short(1) + wire.int32(0x01 | 0x80 | 0x100) + wire.short(1) + wire.int32(-1)
                 + wire.string("ks5") + wire.int32(1700000000))
    v["query_now_v5"] = F.Envelope(5, 0, 18, F.OP_QUERY, wire.long_string("SELECT now() FROM t") + v5_params).encode()
    v["register_v4"] = request(RegisterMessage(["SCHEMA_CHANGE", "STATUS_CHANGE"]), 4, 11)
    v["auth_response_v4"] = request(AuthResponseMessage(b"\x00cassandra\x00secret"), 4, 12)
    plain = QueryMessage("SELECT * FROM system.local WHERE key = 'local' " + "AND 1 = 1 " * 40, ONE)
    v["query_plain_v4"] = request(plain, 4, 13)
    v["query_lz4_v4"] = request(plain, 4, 13, compression="lz4")
    v["query_snappy_v4"] = request(plain, 4, 13, compression="snappy")
    v["query_payload_v4"] = request(QueryMessage("SELECT 1", ONE), 4, 14, tracing=True,
                                    custom_payload={"k": b"val"})

    # Responses, by the test backend.
    specs = [R.ColumnSpec("ks", "t", "k", parse_type("int")), R.ColumnSpec("ks", "t", "v", parse_type("text")),
             R.ColumnSpec("ks", "t", "m", parse_type("map<text, frozen<list<int>>>"))]
    rows = R.Rows(specs, [[1, "a", {"x": [1, 2]}], [2, None, None]], paging_state=b"next")
    for version in (4, 5):
        v[f"result_void_v{version}"] = response(version, 3, F.OP_RESULT, R.Void().body(version))
        v[f"result_rows_v{version}"] = response(version, 4, F.OP_RESULT, rows.body(version))
        v[f"result_prepared_v{version}"] = response(version, 5, F.OP_RESULT, R.Prepared(
            b"\xAA\xBB", specs[:2], [0], specs, b"\x11\x22").body(version))
        for name, code, fields in [
            ("unavailable", R.UNAVAILABLE, dict(consistency=4, required=3, alive=1)),
            ("write_timeout", R.WRITE_TIMEOUT, dict(consistency=4, received=1, block_for=2, write_type="CAS",
                                                    contentions=3)),
            ("read_timeout", R.READ_TIMEOUT, dict(consistency=1, received=0, block_for=1, data_present=True)),
            ("read_failure", R.READ_FAILURE, dict(received=1, block_for=2, reasons={"127.0.0.2": 5},
                                                  data_present=False)),
            ("write_failure", R.WRITE_FAILURE, dict(received=0, block_for=1, reasons={"127.0.0.3": 1},
                                                    write_type="BATCH")),
            ("function_failure", R.FUNCTION_FAILURE, dict(keyspace="ks", function="f", arg_types=["int", "text"])),
            ("already_exists", R.ALREADY_EXISTS, dict(keyspace="ks", table="t")),
            ("unprepared", R.UNPREPARED, dict(id=b"\xDE\xAD")),
            ("cas_write_unknown", R.CAS_WRITE_UNKNOWN, dict(consistency=8, received=1, block_for=2)),
            ("syntax", R.SYNTAX_ERROR, {}),
        ]:
            v[f"error_{name}_v{version}"] = response(version, 6, F.OP_ERROR,
                                                     R.CqlError(code, f"{name} message", **fields).body(version))
    v["result_rows_no_metadata_v4"] = response(4, 4, F.OP_RESULT, rows.body(4, skip_metadata=True))
    v["result_rows_changed_v5"] = response(5, 4, F.OP_RESULT, rows.body(5, skip_metadata=True,
                                                                       metadata_changed_id=b"\x0a\x0b"))
    v["result_set_keyspace_v4"] = response(4, 2, F.OP_RESULT, R.SetKeyspace("ks").body(4))
    v["result_schema_change_v4"] = response(4, 2, F.OP_RESULT, R.SchemaChange("CREATED", "TABLE", "ks", "t").body(4))
    v["event_schema_v4"] = response(4, -1, F.OP_EVENT, R.SchemaChange("DROPPED", "KEYSPACE", "ks").event_body())
    v["event_topology_v4"] = response(4, -1, F.OP_EVENT, wire.string("TOPOLOGY_CHANGE") + wire.string("NEW_NODE")
                                      + wire.inet("127.0.0.2", 9042))
    v["event_status_v5"] = response(5, -1, F.OP_EVENT, wire.string("STATUS_CHANGE") + wire.string("DOWN")
                                    + wire.inet("::1", 9043))
    v["authenticate_v4"] = response(4, 0, F.OP_AUTHENTICATE,
                                    wire.string("org.apache.cassandra.auth.PasswordAuthenticator"))
    v["auth_challenge_v4"] = response(4, 0, F.OP_AUTH_CHALLENGE, wire.bytes_(b"challenge"))
    v["auth_success_v4"] = response(4, 0, F.OP_AUTH_SUCCESS, wire.bytes_(None))
    v["supported_v4"] = response(4, 0, F.OP_SUPPORTED, wire.string_multimap(
        {"CQL_VERSION": ["3.4.5"], "COMPRESSION": ["lz4", "snappy"]}))
    v["ready_v4"] = response(4, 1, F.OP_READY, b"")
    v["traced_warning_v4"] = response(4, 15, F.OP_RESULT, bytes(range(16)) + wire.string_list(["w1", "w2"])
                                      + R.Void().body(4), flags=F.FLAG_TRACING | F.FLAG_WARNING)

    # v5 segments, by the driver's SegmentCodec.
    lz4c, lz4d = locally_supported_compressions["lz4"]
    two_frames = v["query_v5"] + v["prepare_v5"]
    out = io.BytesIO()
    SegmentCodec().encode(out, two_frames)
    v["segment_two_frames"] = out.getvalue()
    v["segment_two_frames_payload"] = two_frames
    v["query_plain_v5"] = request(plain, 5, 13)
    compressible = v["query_plain_v5"] + v["query_plain_v5"] + v["query_v5"]
    out = io.BytesIO()
    SegmentCodec(lz4c, lz4d).encode(out, compressible)
    v["segment_three_frames_lz4"] = out.getvalue()
    v["segment_three_frames_payload"] = compressible
    big_query = QueryMessage("SELECT * FROM ks.t WHERE k IN (" + ", ".join(str(i) for i in range(60000)) + ")", ONE)
    big = request(big_query, 5, 16)
    v["big_frame_v5"] = big
    out = io.BytesIO()
    SegmentCodec().encode(out, big)
    v["segment_big"] = out.getvalue()
    out = io.BytesIO()
    SegmentCodec(lz4c, lz4d).encode(out, big)
    v["segment_big_lz4"] = out.getvalue()
    json.dump({k: x.hex() for k, x in v.items()}, sys.stdout)


def check_segments(data, lz4):
    """Decodes all segments in data with the driver's SegmentCodec."""
    lz4c, lz4d = locally_supported_compressions["lz4"]
    codec = SegmentCodec(lz4c, lz4d) if lz4 else SegmentCodec()
    buf = io.BytesIO(data)
    segments = []
    while buf.tell() < len(data):
        header = codec.decode_header(buf)
        segment = codec.decode(buf, header)
        segments.append({"self_contained": segment.is_self_contained, "payload": segment.payload.hex(),
                         "compressed": header.uncompressed_payload_length > 0})
    return segments


def check_response(data):
    version, flags, stream, opcode, length = struct.unpack(">BBhBi", data[:9])
    assert len(data) == 9 + length, "frame length"
    decompressor = None
    if flags & 0x01:
        decompressor = locally_supported_compressions["lz4"][1]
    msg = ProtocolHandler.decode_message(version & 0x7F, {}, stream, flags, opcode, data[9:], decompressor, None)
    out = {"version": version, "stream": stream, "opcode": opcode, "type": type(msg).__name__}
    if opcode == F.OP_ERROR:
        out.update(code=msg.code, message=msg.message, info=_json_safe(msg.info))
    elif opcode == F.OP_RESULT:
        out["kind"] = msg.kind
        if msg.kind == 2:
            out["columns"] = list(msg.column_names)
            out["types"] = [t.typename for t in msg.column_types]
            out["rows"] = [[c.hex() if isinstance(c, bytes) else c for c in row] for row in msg.parsed_rows]
            out["table"] = [[m[0], m[1]] for m in msg.column_metadata]
    return out


def _json_safe(value):
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class _V:
    def __init__(self, version):
        self.version = version


def check_query(data):
    """A QUERY request read by the test backend's reader."""
    from Tests.cql.backend.server import Connection
    version, flags, stream, opcode, length = struct.unpack(">BBhBi", data[:9])
    r = wire.Reader(data[9:])
    query = r.long_string()
    params = Connection.read_params(_V(version), r)
    return {"version": version, "stream": stream, "opcode": opcode, "query": query,
            "consistency": params["consistency"], "page_size": params["page_size"],
            "keyspace": params["keyspace"], "left": r.remaining(),
            "values": [None if x is None else (x.hex() if isinstance(x, bytes) else repr(x))
                       for x in params["values"]]}


def check():
    todo = json.load(sys.stdin)
    out = {}
    for name, item in todo.items():
        data = bytes.fromhex(item["hex"])
        try:
            if item["kind"] == "segments":
                out[name] = check_segments(data, False)
            elif item["kind"] == "segments_lz4":
                out[name] = check_segments(data, True)
            elif item["kind"] == "response":
                out[name] = check_response(data)
            elif item["kind"] == "query":
                out[name] = check_query(data)
        except Exception as e:  # reported to the Swift test, which fails on it
            out[name] = {"exception": f"{type(e).__name__}: {e}"}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    {"emit": emit, "check": check}[sys.argv[1]]()
