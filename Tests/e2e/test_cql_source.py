"""The client side of a `cassandra` source (issue 13 §2/§3): the rules Sluice applies to the bytes a
CQL client sends, whatever is behind it. Version negotiation and the downgrade reply, the
compressions offered per version, malformed, oversize and wrong-version input answered with an ERROR
frame (PROTOCOL_ERROR) and a close, max_clients, Sluice-side authentication, TLS.

Frames are written and read with the DataStax driver's own protocol and segment code, not Sluice's;
the backend is the CQL test backend (Tests/cql/backend, not Cassandra). The broad driver suite
(statements, paging, events, …) is test_cql_drivers.py.
"""
import io
import socket
import ssl
import struct
import subprocess
import time

import pytest
from cassandra import AuthenticationFailed, ConsistencyLevel
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.connection import locally_supported_compressions
from cassandra.policies import RoundRobinPolicy
from cassandra.protocol import (AuthResponseMessage, OptionsMessage, ProtocolHandler, QueryMessage,
                                StartupMessage)
from cassandra.segment import SegmentCodec
from conftest import Sluice, cql_config


OP_ERROR, OP_READY, OP_AUTHENTICATE, OP_SUPPORTED, OP_RESULT, OP_AUTH_SUCCESS = 0x00, 0x02, 0x03, 0x06, 0x08, 0x10
PROTOCOL_ERROR, BAD_CREDENTIALS, OVERLOADED = 0x000A, 0x0100, 0x1001


class Wire:
    """One raw client connection: frames encoded by the driver's ProtocolHandler, written bare or in
    v5 segments (the driver's SegmentCodec), and frames read back the same ways."""

    def __init__(self, port, ssl_context=None, timeout=5):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if ssl_context is not None:
            self.sock = ssl_context.wrap_socket(self.sock, server_hostname="127.0.0.1")
        self.pending = b""
        self.segments = None
        self.segment_frames = []

    def close(self):
        self.sock.close()

    def send_bytes(self, data):
        self.sock.sendall(data)

    def send(self, message, version, stream=1):
        frame = ProtocolHandler.encode_message(message, stream, version, None, False)
        if self.segments is not None:
            out = io.BytesIO()
            self.segments.encode(out, frame)
            frame = out.getvalue()
        self.sock.sendall(frame)

    def use_segments(self, lz4=False):
        self.segments = SegmentCodec(*locally_supported_compressions["lz4"]) if lz4 else SegmentCodec()

    def _fill(self, n):
        while len(self.pending) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            self.pending += chunk
        return True

    def _take(self, n):
        if not self._fill(n):
            return None
        data, self.pending = self.pending[:n], self.pending[n:]
        return data

    def frame(self):
        """(version byte, flags, stream, opcode, body) of the next frame, or None once closed."""
        if self.segments is not None:
            return self._segment_frame()
        head = self._take(9)
        if head is None:
            return None
        version, flags, stream, opcode, length = struct.unpack(">BBhBi", head)
        return version, flags, stream, opcode, self._take(length)

    def _segment_frame(self):
        if self.segment_frames:
            return self.segment_frames.pop(0)
        codec = self.segments
        if not self._fill(codec.header_length_with_crc):
            return None
        buf = io.BytesIO(self.pending)
        header = codec.decode_header(buf)
        if not self._fill(codec.header_length_with_crc + header.payload_length + 4):
            return None
        buf = io.BytesIO(self.pending)
        header = codec.decode_header(buf)
        segment = codec.decode(buf, header)
        self.pending = self.pending[buf.tell():]
        assert segment.is_self_contained
        payload = segment.payload
        # A self-contained segment holds one or more whole frames (replies that came back in the
        # same event-loop turn share one); the ones after the first wait for the next call.
        while payload:
            version, flags, stream, opcode, length = struct.unpack(">BBhBi", payload[:9])
            assert len(payload) >= 9 + length, "whole frames only in a self-contained segment"
            self.segment_frames.append((version, flags, stream, opcode, payload[9:9 + length]))
            payload = payload[9 + length:]
        return self.segment_frames.pop(0)

    def closed(self, timeout=5):
        """True once the peer closed the connection (everything sent before read and dropped)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False


def error_of(frame):
    """(code, message) of an ERROR frame's body."""
    assert frame is not None, "connection closed instead of an ERROR frame"
    assert frame[3] == OP_ERROR, f"opcode {frame[3]:#x}, not ERROR"
    body = frame[4]
    code, length = struct.unpack(">iH", body[:6])
    return code, body[6:6 + length].decode()


def supported_of(frame):
    body, options = frame[4], {}
    (count,), pos = struct.unpack(">H", body[:2]), 2
    for _ in range(count):
        (n,) = struct.unpack(">H", body[pos:pos + 2])
        key, pos = body[pos + 2:pos + 2 + n].decode(), pos + 2 + n
        (items,), pos = struct.unpack(">H", body[pos:pos + 2]), pos + 2
        values = []
        for _ in range(items):
            (n,) = struct.unpack(">H", body[pos:pos + 2])
            values.append(body[pos + 2:pos + 2 + n].decode())
            pos += 2 + n
        options[key] = values
    return options


def startup(wire, version, compression=None):
    options = {"COMPRESSION": compression} if compression else {}
    wire.send(StartupMessage(cqlversion="3.0.0", options=options), version)
    return wire.frame()


def cluster(port, **kwargs):
    kwargs.setdefault("execution_profiles", {
        EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=RoundRobinPolicy())})
    kwargs.setdefault("connect_timeout", 3)
    kwargs.setdefault("control_connection_timeout", 3)
    return Cluster(["127.0.0.1"], port=port, **kwargs)


def metric(sluice, name):
    """The sum of a counter's samples on Sluice's metrics endpoint."""
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{sluice.metrics_port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


@pytest.fixture
def proxy(workdir, cql_backend_factory):
    """Makes the test backend and Sluice in front of it with extra source lines."""
    started = []

    def make(source="", backend_args=()):
        backend = cql_backend_factory(*backend_args)
        sluice = Sluice(workdir, cql_config(backend.port, source=source))
        started.append(sluice)
        return sluice, backend

    yield make
    for s in started:
        s.stop()


# --- version negotiation --------------------------------------------------------------------------

def test_the_driver_downgrades_from_dse_versions_to_v5(proxy):
    """No version fixed: the python driver opens with 0x42 (DSE v2), then 0x41, each answered with
    the PROTOCOL_ERROR it downgrades on, and settles on v5; with protocol_version=4 it opens with v4."""
    sluice, _ = proxy()
    for fixed, expected in [(None, 5), (4, 4)]:
        kwargs = {} if fixed is None else {"protocol_version": fixed}
        c = cluster(sluice.port, **kwargs)
        try:
            session = c.connect()
            assert c.protocol_version == expected
            assert session.execute("SELECT key FROM system.local").one().key == "local"
        finally:
            c.shutdown()
    # A probe is no protocol error of the client's.
    assert metric(sluice, "sluice_protocol_errors_total") == 0
    assert sluice.alive()


@pytest.mark.parametrize("raw,reply_version", [(0x42, 5), (0x41, 5), (6, 5), (3, 3), (1, 1)])
def test_an_unsupported_version_gets_the_rejection_on_its_stream_then_a_close(proxy, raw, reply_version):
    sluice, _ = proxy()
    wire = Wire(sluice.port)
    if raw >= 3:
        wire.send_bytes(struct.pack(">BBhBi", raw, 0, 17, 0x05, 0))
    else:
        wire.send_bytes(struct.pack(">BBbBi", raw, 0, 17, 0x05, 0))
    head = wire._take(1)
    assert head[0] == 0x80 | reply_version
    if raw >= 3:
        rest = wire._take(8)
        _, stream, opcode, length = struct.unpack(">BhBi", rest)
    else:
        rest = wire._take(7)
        _, stream, opcode, length = struct.unpack(">BbBi", rest)
    assert (stream, opcode) == (17, OP_ERROR)
    body = wire._take(length)
    code, n = struct.unpack(">iH", body[:6])
    assert code == PROTOCOL_ERROR
    assert "unsupported protocol version" in body[6:6 + n].decode()
    assert "(4/v4, 5/v5)" in body[6:6 + n].decode()
    assert wire.closed()


def test_a_frame_in_another_version_than_the_first_is_refused(proxy):
    sluice, _ = proxy()
    wire = Wire(sluice.port)
    assert startup(wire, 4)[3] == OP_READY
    wire.send(QueryMessage("SELECT key FROM system.local", ConsistencyLevel.ONE), 5, stream=9)
    frame = wire.frame()
    code, message = error_of(frame)
    assert (frame[0], frame[2], code) == (0x84, 9, PROTOCOL_ERROR)
    assert "Invalid message version" in message
    assert wire.closed()


# --- what STARTUP may choose ----------------------------------------------------------------------

def test_options_offers_the_compressions_of_the_connections_version(proxy):
    sluice, _ = proxy()
    for version, compressions in [(4, ["lz4", "snappy"]), (5, ["lz4"])]:
        wire = Wire(sluice.port)
        wire.send(OptionsMessage(), version, stream=3)
        frame = wire.frame()
        assert (frame[0], frame[2], frame[3]) == (0x80 | version, 3, OP_SUPPORTED)
        options = supported_of(frame)
        assert options["COMPRESSION"] == compressions
        assert options["PROTOCOL_VERSIONS"] == ["4/v4", "5/v5"]
        assert options["CQL_VERSION"][0].startswith("3.")
        wire.close()
    # Snappy cannot be chosen on v5; an unknown algorithm on any version. The connection stays open.
    for version, name in [(5, "snappy"), (4, "zstd")]:
        wire = Wire(sluice.port)
        code, message = error_of(startup(wire, version, name))
        assert code == PROTOCOL_ERROR, message
        assert startup(wire, version)[3] == OP_READY
        wire.close()


@pytest.mark.parametrize("version,compression", [(4, "lz4"), (4, "snappy"), (5, "lz4"), (5, None)])
def test_compressed_and_segmented_traffic_both_ways(proxy, version, compression):
    """The driver with each compression its version allows: a 2 MiB value written and read back
    (compressed frames; several v5 segments), and the driver's connections really use it."""
    sluice, _ = proxy()
    c = cluster(sluice.port, protocol_version=version, compression=compression or False)
    try:
        session = c.connect()
        conn = c.control_connection._connection
        assert (conn.compressor is not None) == bool(compression)
        assert conn._is_checksumming_enabled == (version >= 5)
        session.execute("CREATE KEYSPACE IF NOT EXISTS src WITH replication = "
                        "{'class': 'SimpleStrategy', 'replication_factor': 1}")
        table = f"src.big_v{version}_{compression or 'none'}"
        session.execute(f"CREATE TABLE IF NOT EXISTS {table} (k int PRIMARY KEY, b blob)")
        value = bytes(range(256)) * 8192
        insert = session.prepare(f"INSERT INTO {table} (k, b) VALUES (?, ?)")
        session.execute(insert, (1, value))
        assert session.execute(f"SELECT b FROM {table} WHERE k = 1").one().b == value
    finally:
        c.shutdown()
    assert sluice.alive()


@pytest.mark.parametrize("lz4", [False, True])
def test_several_requests_in_one_segment_are_all_answered(proxy, lz4):
    """Drivers that coalesce put several request frames in one self-contained segment: each is run
    and answered (as it comes back, on its own stream)."""
    sluice, _ = proxy()
    wire = Wire(sluice.port)
    assert startup(wire, 5, "lz4" if lz4 else None)[3] == OP_READY
    wire.use_segments(lz4)
    frames = b"".join(ProtocolHandler.encode_message(
        QueryMessage("SELECT key FROM system.local", ConsistencyLevel.ONE), stream, 5, None, False)
        for stream in (11, 12, 13))
    out = io.BytesIO()
    wire.segments.encode(out, frames)
    wire.send_bytes(out.getvalue())
    replies = [wire.frame() for _ in range(3)]
    assert sorted((r[2], r[3]) for r in replies) == [(11, OP_RESULT), (12, OP_RESULT), (13, OP_RESULT)]
    assert sluice.alive()


def test_an_idle_client_is_closed(proxy):
    sluice, _ = proxy("      idle_timeout_ms: 300\n")
    wire = Wire(sluice.port)
    assert startup(wire, 4)[3] == OP_READY
    started = time.time()
    assert wire.closed(timeout=5)
    assert time.time() - started >= 0.25


# --- violations: an ERROR frame, then the connection closes ----------------------------------------

def test_malformed_frames_get_a_protocol_error_and_a_close(proxy):
    sluice, _ = proxy()
    cases = {
        "unknown opcode": struct.pack(">BBhBi", 4, 0, 5, 0x33, 0),
        "a response frame": struct.pack(">BBhBi", 0x84, 0, 5, OP_RESULT, 4) + struct.pack(">i", 1),
        "negative length": struct.pack(">BBhBi", 4, 0, 5, 0x07, -3),
        "a STARTUP body that ends early": struct.pack(">BBhBi", 4, 0, 5, 0x01, 2) + struct.pack(">H", 9),
        "compressed before STARTUP": struct.pack(">BBhBi", 4, 0x01, 5, 0x05, 4) + b"\x00\x00\x00\x10",
    }
    for name, data in cases.items():
        wire = Wire(sluice.port)
        wire.send_bytes(data)
        code, message = error_of(wire.frame())
        assert code == PROTOCOL_ERROR, (name, message)
        assert wire.closed(), name
    # A v5 segment with a damaged payload after the switch: the ERROR comes in a segment.
    wire = Wire(sluice.port)
    assert startup(wire, 5)[3] == OP_READY
    wire.use_segments()
    out = io.BytesIO()
    wire.segments.encode(out, ProtocolHandler.encode_message(OptionsMessage(), 4, 5, None, False))
    damaged = bytearray(out.getvalue())
    damaged[8] ^= 0xFF
    wire.send_bytes(bytes(damaged))
    code, message = error_of(wire.frame())
    assert code == PROTOCOL_ERROR and "CRC32" in message, message
    assert wire.closed()
    # None of it hurt anyone else.
    c = cluster(sluice.port)
    try:
        assert c.connect().execute("SELECT key FROM system.local").one().key == "local"
    finally:
        c.shutdown()
    assert metric(sluice, "sluice_protocol_errors_total") == len(cases) + 1
    assert sluice.alive()


def test_an_oversize_frame_is_refused_from_its_header(proxy):
    """max_frame_bytes: a frame announcing more is answered before its body arrives (nothing of it
    is buffered), on v4 bare and on v5 inside a segment; one within the limit passes."""
    sluice, _ = proxy("      max_frame_bytes: 65536\n")
    wire = Wire(sluice.port)
    assert startup(wire, 4)[3] == OP_READY
    wire.send_bytes(struct.pack(">BBhBi", 4, 0, 21, 0x07, 64 * 1024 * 1024))
    frame = wire.frame()
    code, message = error_of(frame)
    assert (frame[2], code) == (21, PROTOCOL_ERROR)
    assert "65536" in message, message
    assert wire.closed()
    assert sluice.wait_for_output("max_frame_bytes")

    wire = Wire(sluice.port)
    assert startup(wire, 5)[3] == OP_READY
    wire.use_segments()
    wire.send(QueryMessage("SELECT key FROM system.local WHERE key = '" + "x" * 70000 + "'",
                           ConsistencyLevel.ONE), 5, stream=22)
    frame = wire.frame()
    assert (frame[2], error_of(frame)[0]) == (22, PROTOCOL_ERROR)
    assert wire.closed()

    c = cluster(sluice.port, protocol_version=5)
    try:
        session = c.connect()
        assert session.execute("SELECT key FROM system.local WHERE key = '" + "x" * 30000 + "'").one() is None
    finally:
        c.shutdown()
    assert sluice.alive()


def test_requests_before_startup_or_before_signing_in_are_refused_and_the_connection_stays(proxy):
    sluice, _ = proxy("      auth: { username: app, password: app-pw }\n")
    wire = Wire(sluice.port)
    wire.send(QueryMessage("SELECT key FROM system.local", ConsistencyLevel.ONE), 4, stream=2)
    code, message = error_of(wire.frame())
    assert code == PROTOCOL_ERROR and "expecting STARTUP or OPTIONS" in message
    assert startup(wire, 4)[3] == OP_AUTHENTICATE
    wire.send(QueryMessage("SELECT key FROM system.local", ConsistencyLevel.ONE), 4, stream=3)
    code, message = error_of(wire.frame())
    assert code == PROTOCOL_ERROR and "expecting SASL response" in message
    wire.send(AuthResponseMessage(b"\x00app\x00app-pw"), 4, stream=4)
    assert wire.frame()[3] == OP_AUTH_SUCCESS
    wire.send(QueryMessage("SELECT key FROM system.local", ConsistencyLevel.ONE), 4, stream=5)
    frame = wire.frame()
    assert (frame[2], frame[3]) == (5, OP_RESULT)


# --- max_clients ----------------------------------------------------------------------------------

def wait_for_no_clients(sluice):
    """The start-up probe's connection (conftest's wait_for_port) has been closed on Sluice's side."""
    import urllib.error
    deadline = time.time() + 5
    while True:
        try:
            if metric(sluice, "sluice_client_connections") == 0:
                return
        except urllib.error.URLError:
            pass  # the metrics endpoint may start listening just after the source
        assert time.time() < deadline, "a client connection is still open"
        time.sleep(0.05)


def test_max_clients(proxy):
    sluice, _ = proxy("      max_clients: 2\n")
    wait_for_no_clients(sluice)
    first, second = Wire(sluice.port), Wire(sluice.port)
    assert startup(first, 4)[3] == OP_READY
    assert startup(second, 4)[3] == OP_READY
    third = Wire(sluice.port)
    code, message = error_of(third.frame())
    assert code == OVERLOADED and "max_clients (2)" in message, message
    assert third.closed()
    c = cluster(sluice.port)
    try:
        with pytest.raises(NoHostAvailable):
            c.connect()
    finally:
        c.shutdown()
    first.close()
    second.close()
    time.sleep(0.3)
    again = Wire(sluice.port)
    assert startup(again, 5)[3] == OP_READY
    assert metric(sluice, "sluice_refused_connections_total") >= 2
    assert sluice.alive()


# --- Sluice-side authentication -------------------------------------------------------------------

@pytest.mark.parametrize("version", [4, 5])
def test_sluice_checks_the_clients_password_itself(proxy, version):
    """auth with users: the driver's PlainTextAuthProvider signs in to Sluice (the backend needs
    no password here); a wrong password is AuthenticationFailed, counted, never logged; no
    credentials at all cannot connect."""
    sluice, _ = proxy("      auth:\n        - { username: app, password: app-pw }\n"
                      "        - { username: ops, password: ops-pw }\n")
    for user in ["app", "ops"]:
        c = cluster(sluice.port, protocol_version=version,
                    auth_provider=PlainTextAuthProvider(user, f"{user}-pw"))
        try:
            assert c.connect().execute("SELECT key FROM system.local").one().key == "local"
        finally:
            c.shutdown()
    bad = cluster(sluice.port, protocol_version=version,
                  auth_provider=PlainTextAuthProvider("app", "ops-pw"))
    try:
        with pytest.raises(NoHostAvailable) as e:
            bad.connect()
        assert any(isinstance(x, AuthenticationFailed) for x in e.value.errors.values()), e.value.errors
    finally:
        bad.shutdown()
    nothing = cluster(sluice.port, protocol_version=version)
    try:
        with pytest.raises(NoHostAvailable):
            nothing.connect()
    finally:
        nothing.shutdown()
    assert metric(sluice, "sluice_client_auth_failures_total") >= 1
    assert "app-pw" not in sluice.output() and "ops-pw" not in sluice.output()
    # The raw exchange: BAD_CREDENTIALS, then the client may try again on the same connection.
    wire = Wire(sluice.port)
    assert startup(wire, 4)[3] == OP_AUTHENTICATE
    wire.send(AuthResponseMessage(b"\x00app\x00nope"), 4, stream=2)
    code, message = error_of(wire.frame())
    assert code == BAD_CREDENTIALS and "nope" not in message
    wire.send(AuthResponseMessage(b"\x00app\x00app-pw"), 4, stream=3)
    assert wire.frame()[3] == OP_AUTH_SUCCESS
    assert sluice.alive()


# --- TLS ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    d = tmp_path_factory.mktemp("cql-source-tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


def test_tls_source(proxy, certificate):
    """A TLS source: the driver over TLS with v5 and LZ4 (segments inside TLS records); a client in
    the clear gets no CQL answer and is closed."""
    cert, key = certificate
    sluice, _ = proxy(f"      tls: {{ cert_file: {cert}, key_file: {key} }}\n")
    ctx = ssl.create_default_context(cafile=cert)
    c = cluster(sluice.port, protocol_version=5, compression="lz4", ssl_context=ctx)
    try:
        assert c.connect().execute("SELECT key FROM system.local").one().key == "local"
    finally:
        c.shutdown()
    wire = Wire(sluice.port, ssl_context=ctx)
    assert startup(wire, 4)[3] == OP_READY
    plain = Wire(sluice.port)
    plain.send(OptionsMessage(), 4)
    assert plain.closed()
    assert sluice.alive()
