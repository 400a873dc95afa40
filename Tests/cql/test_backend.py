"""The CQL test backend checked directly with real drivers (no Sluice involved): the DataStax python
driver on protocol v4 and v5, with LZ4 and Snappy, prepared statements and a forced re-prepare,
paging, BATCH, USE, schema change events, SASL, TLS, tracing/warnings/custom payloads, several nodes;
raw sockets for version negotiation and v5 segment checks (the segments are made with the driver's
own segment codec, not the backend's); cqlsh in a scripted session; scylla-driver in its own venv.
"""
import os
import socket
import ssl
import struct
import subprocess
import sys
import time
import uuid

import pytest
from backend_fixtures import backend, clusters, make_backend, tls_files  # noqa: F401 (fixtures)
from cassandra import (AlreadyExists, AuthenticationFailed, InvalidRequest, OperationTimedOut,
                       ReadTimeout, Unauthorized)
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import NoHostAvailable
from cassandra.protocol import OverloadedErrorMessage, SyntaxException
from cassandra.query import BatchStatement, BatchType, SimpleStatement

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))

KS = "CREATE KEYSPACE IF NOT EXISTS ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"

PROTOCOL_COMPRESSION = [(4, False), (4, "lz4"), (4, "snappy"), (5, False), (5, "lz4")]


def stats(backend):
    return dict(backend.backend.stats)


def setup_table(session):
    session.execute(KS)
    session.execute("CREATE TABLE IF NOT EXISTS ks.kv (k int, c int, v text, b blob, "
                    "PRIMARY KEY (k, c))")


# --- protocol versions and compression -----------------------------------------------------------

def test_driver_downgrades_from_dse_versions_to_v5(backend, clusters):
    cluster = clusters(backend)  # no protocol_version: the driver opens with DSE v66, then v65
    session = cluster.connect()
    assert cluster.protocol_version == 5
    assert stats(backend)["rejected_versions"] >= 2
    row = session.execute("SELECT release_version, cql_version FROM system.local").one()
    assert row.release_version and row.cql_version.startswith("3.")


def test_a_v4_only_backend_makes_the_driver_downgrade_from_v5(make_backend, clusters):
    backend = make_backend(versions=(4,))  # like Cassandra 3.x
    cluster = clusters(backend)  # no version fixed: DSE v66, v65, v5 are refused, v4 taken
    session = cluster.connect()
    assert cluster.protocol_version == 4
    assert stats(backend)["rejected_versions"] >= 3
    assert session.execute("SELECT release_version FROM system.local").one().release_version
    # A raw v5 STARTUP gets PROTOCOL_ERROR, in v4, naming the version.
    with socket.create_connection(("127.0.0.1", backend.backend.nodes[0].info.port), timeout=5) as s:
        body = struct.pack(">H", 1) + struct.pack(">H", 11) + b"CQL_VERSION" + struct.pack(">H", 5) + b"3.0.0"
        s.sendall(struct.pack(">BBhBi", 5, 0, 7, 0x01, len(body)) + body)
        header = s.recv(9, socket.MSG_WAITALL)
        version, _, stream, opcode, length = struct.unpack(">BBhBi", header)
        payload = s.recv(length, socket.MSG_WAITALL)
    assert (version, stream, opcode) == (0x84, 7, 0x00)
    code, text_length = struct.unpack(">iH", payload[:6])
    assert code == 0x000A
    assert "Invalid or unsupported protocol version (5)" in payload[6:6 + text_length].decode()


@pytest.mark.parametrize("version,compression", PROTOCOL_COMPRESSION)
def test_crud_prepared_paging_batch_use(backend, clusters, version, compression):
    cluster = clusters(backend, protocol_version=version, compression=compression)
    session = cluster.connect()
    assert cluster.protocol_version == version
    assert stats(backend).get(f"startup_v{version}_{compression or 'none'}", 0) >= 1
    setup_table(session)
    session.execute("USE ks")
    insert = session.prepare("INSERT INTO kv (k, c, v, b) VALUES (?, ?, ?, ?)")
    for c in range(25):
        session.execute(insert, (1, c, f"v{c}", bytes([c]) * 100))
    session.execute("INSERT INTO kv (k, c, v) VALUES (%s, %s, %s)", (2, 0, "two"))
    # WHERE on key columns with = and IN, LIMIT, bound and literal values.
    rows = list(session.execute("SELECT c, v FROM kv WHERE k = 1 AND c IN (3, 4, 99)"))
    assert [(r.c, r.v) for r in rows] == [(3, "v3"), (4, "v4")]
    assert [r.c for r in session.execute("SELECT c FROM kv WHERE k = 1 LIMIT 3")] == [0, 1, 2]
    select = session.prepare("SELECT k, c, v, b FROM kv WHERE k IN ? AND c = ?")
    rows = list(session.execute(select, ([1, 2], 0)))
    assert [(r.k, r.v) for r in rows] == [(1, "v0"), (2, "two")]
    assert rows[0].b == b"\x00" * 100
    # Paging across pages with paging_state, for a simple and a prepared statement.
    stmt = SimpleStatement("SELECT c FROM kv WHERE k = 1", fetch_size=7)
    result = session.execute(stmt)
    assert result.has_more_pages and result.paging_state
    assert [r.c for r in result] == list(range(25))  # iterating fetches the other pages
    page = session.execute(stmt, paging_state=session.execute(stmt).paging_state)
    assert [r.c for r in page.current_rows] == list(range(7, 14))
    prepared_all = session.prepare("SELECT c FROM kv WHERE k = ?")
    prepared_all.fetch_size = 10
    assert [r.c for r in session.execute(prepared_all, (1,))] == list(range(25))
    # BATCH of prepared and simple statements.
    batch = BatchStatement(batch_type=BatchType.LOGGED)
    batch.add(insert, (3, 0, "batched", None))
    batch.add(SimpleStatement("UPDATE kv SET v = %s WHERE k = %s AND c = %s"), ("updated", 1, 0))
    batch.add(SimpleStatement("DELETE FROM kv WHERE k = 2 AND c = 0"))
    session.execute(batch)
    assert session.execute("SELECT v FROM kv WHERE k = 3 AND c = 0").one().v == "batched"
    assert session.execute("SELECT v FROM kv WHERE k = 1 AND c = 0").one().v == "updated"
    assert session.execute("SELECT v FROM kv WHERE k = 2").one() is None
    assert session.execute("SELECT COUNT(*) FROM kv WHERE k = 1").one().count == 25


@pytest.mark.parametrize("version,compression", [(5, False), (5, "lz4"), (4, "lz4")])
def test_values_larger_than_a_segment(backend, clusters, version, compression):
    """Envelopes of several MiB (over 128 KiB: across v5 segments that are not self-contained)."""
    cluster = clusters(backend, protocol_version=version, compression=compression)
    session = cluster.connect()
    setup_table(session)
    insert = session.prepare("INSERT INTO ks.kv (k, c, b) VALUES (?, ?, ?)")
    for c, big in enumerate([os.urandom(300_000) + b"a" * 200_000,
                             os.urandom(3 * 1024 * 1024) + bytes(1024 * 1024)]):
        session.execute(insert, (7, c, big))
        assert session.execute("SELECT b FROM ks.kv WHERE k = 7 AND c = %s", (c,)).one().b == big


def test_types_round_trip(backend, clusters):
    cluster = clusters(backend, protocol_version=5)
    session = cluster.connect()
    session.execute(KS)
    session.execute("CREATE TABLE ks.types (id uuid PRIMARY KEY, i int, bi bigint, t text, "
                    "bo boolean, d double, ts timestamp, l list<int>, s set<text>, "
                    "m map<text, int>, ip inet)")
    import datetime
    u = uuid.uuid4()
    ts = datetime.datetime(2024, 5, 6, 7, 8, 9, 123000)
    p = session.prepare("INSERT INTO ks.types (id, i, bi, t, bo, d, ts, l, s, m, ip) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
    session.execute(p, (u, -5, 2 ** 40, "é", True, 1.5, ts, [3, 1], {"b", "a"}, {"x": 1},
                        "127.0.0.9"))
    r = session.execute("SELECT * FROM ks.types WHERE id = %s", (u,)).one()
    assert (r.i, r.bi, r.t, r.bo, r.d, r.ts, r.l, sorted(r.s), dict(r.m), str(r.ip)) == \
           (-5, 2 ** 40, "é", True, 1.5, ts, [3, 1], ["a", "b"], {"x": 1}, "127.0.0.9")
    session.execute(f"UPDATE ks.types SET l = l + [9], m['y'] = 2 WHERE id = {u}")
    r = session.execute(f"SELECT l, m FROM ks.types WHERE id = {u}").one()
    assert r.l == [3, 1, 9] and dict(r.m) == {"x": 1, "y": 2}
    session.execute("CREATE TABLE ks.counts (k text PRIMARY KEY, n counter)")
    for _ in range(3):
        session.execute("UPDATE ks.counts SET n = n + 2 WHERE k = 'a'")
    assert session.execute("SELECT n FROM ks.counts WHERE k = 'a'").one().n == 6


# --- prepared statements -------------------------------------------------------------------------

@pytest.mark.parametrize("version", [4, 5])
def test_forced_reprepare_after_unprepared(backend, clusters, version):
    cluster = clusters(backend, protocol_version=version)
    session = cluster.connect()
    setup_table(session)
    insert = session.prepare("INSERT INTO ks.kv (k, c, v) VALUES (?, ?, ?)")
    session.execute(insert, (10, 1, "before"))
    before = stats(backend)
    backend.forget_prepared()
    session.execute(insert, (10, 2, "after"))  # UNPREPARED, the driver re-prepares and retries
    after = stats(backend)
    assert after["unprepared"] == before["unprepared"] + 1
    assert after["prepares"] > before["prepares"]
    assert [r.v for r in session.execute("SELECT v FROM ks.kv WHERE k = 10")] == ["before", "after"]


@pytest.mark.parametrize("version", [4, 5])
def test_alter_table_changes_prepared_result_metadata(backend, clusters, version):
    """ALTER TABLE ADD after PREPARE: on v5 the EXECUTE (sent with the old result metadata id)
    answers with Metadata_changed, the new id and the full metadata; on v4 the full metadata comes
    back although the driver asked to skip it. Either way the driver sees the new column."""
    session = clusters(backend, protocol_version=version).connect()
    session.execute(KS)
    session.execute("CREATE TABLE ks.alt (k int PRIMARY KEY, a text)")
    session.execute("INSERT INTO ks.alt (k, a) VALUES (1, 'x')")
    select = session.prepare("SELECT * FROM ks.alt WHERE k = ?")
    assert session.execute(select, (1,)).one()._fields == ("k", "a")
    session.execute("ALTER TABLE ks.alt ADD extra int")
    session.execute("UPDATE ks.alt SET extra = 7 WHERE k = 1")
    row = session.execute(select, (1,)).one()
    assert row._fields == ("k", "a", "extra") and row.extra == 7
    assert stats(backend).get("metadata_changed", 0) == (1 if version >= 5 else 0)


def test_drop_table_forgets_its_prepared_statements(backend, clusters):
    session = clusters(backend, protocol_version=5).connect()
    setup_table(session)
    select = session.prepare("SELECT v FROM ks.kv WHERE k = ?")
    other = session.prepare("SELECT key FROM system.local")
    session.execute("DROP TABLE ks.kv")
    setup_table(session)
    session.execute("INSERT INTO ks.kv (k, c, v) VALUES (1, 1, 'new table')")
    before = stats(backend)["unprepared"]
    assert session.execute(select, (1,)).one().v == "new table"  # re-prepared by the driver
    session.execute(other)
    assert stats(backend)["unprepared"] == before + 1


def test_forget_prepared_through_cql(backend, clusters):
    """TESTBACKEND FORGET PREPARED does the same from any client, e.g. through a proxy."""
    cluster = clusters(backend, protocol_version=4)
    session = cluster.connect()
    setup_table(session)
    select = session.prepare("SELECT v FROM ks.kv WHERE k = ?")
    session.execute(select, (1,))
    before = stats(backend)["unprepared"]
    session.execute("TESTBACKEND FORGET PREPARED")
    session.execute(select, (1,))
    assert stats(backend)["unprepared"] == before + 1


# --- events --------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [4, 5])
def test_schema_change_events_reach_the_driver(backend, clusters, version):
    watcher = clusters(backend, protocol_version=version, schema_event_refresh_window=0)
    watcher.connect()
    assert "ks" not in watcher.metadata.keyspaces
    actor = clusters(backend, protocol_version=version).connect()
    before = stats(backend)["events"]
    actor.execute(KS)
    actor.execute("CREATE TABLE ks.evt (k int PRIMARY KEY, v int)")
    deadline = time.time() + 10
    while time.time() < deadline:
        ks = watcher.metadata.keyspaces.get("ks")
        if ks is not None and "evt" in ks.tables:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the watcher's metadata never saw ks.evt")
    assert stats(backend)["events"] >= before + 2
    actor.execute("DROP TABLE ks.evt")
    deadline = time.time() + 10
    while "evt" in watcher.metadata.keyspaces["ks"].tables and time.time() < deadline:
        time.sleep(0.05)
    assert "evt" not in watcher.metadata.keyspaces["ks"].tables


def test_topology_and_status_events_reach_the_driver(make_backend, clusters):
    """TESTBACKEND EVENT sends TOPOLOGY_CHANGE / STATUS_CHANGE to the connections registered for
    them (here the driver's control connection), which decodes them and hands them to its
    handlers (wrapped here to record what arrives)."""
    backend = make_backend(nodes=2)
    cluster = clusters(backend, protocol_version=5)
    session = cluster.connect()
    port = backend.backend.nodes[0].info.port
    seen = []
    control = cluster.control_connection
    for name in ("_handle_topology_change", "_handle_status_change"):
        original = getattr(control, name)
        setattr(control, name, lambda event, original=original, name=name: (
            seen.append((name, event["change_type"], tuple(event["address"]))), original(event)))
    before = stats(backend)["events"]
    session.execute("TESTBACKEND EVENT TOPOLOGY_CHANGE NEW_NODE '127.0.0.9'")
    session.execute("TESTBACKEND EVENT STATUS_CHANGE UP '127.0.0.2'")
    deadline = time.time() + 10
    while len(seen) < 2 and time.time() < deadline:
        time.sleep(0.02)
    assert seen == [("_handle_topology_change", "NEW_NODE", ("127.0.0.9", port)),
                    ("_handle_status_change", "UP", ("127.0.0.2", port))]
    assert stats(backend)["events"] == before + 2  # only the control connection registered


# --- errors, warnings, tracing, custom payloads --------------------------------------------------

def test_error_codes(backend, clusters):
    cluster = clusters(backend, protocol_version=5)
    session = cluster.connect()
    setup_table(session)
    with pytest.raises(SyntaxException):
        session.execute("SELEKT * FROM ks.kv")
    with pytest.raises(InvalidRequest, match="unconfigured table"):
        session.execute("SELECT * FROM ks.nope")
    with pytest.raises(InvalidRequest, match="No keyspace has been specified"):
        session.execute("SELECT * FROM kv")
    with pytest.raises(InvalidRequest, match="ALLOW FILTERING"):
        session.execute("SELECT * FROM ks.kv WHERE v = 'x'")
    with pytest.raises(Unauthorized):
        session.execute("INSERT INTO system.local (key) VALUES ('x')")
    with pytest.raises(AlreadyExists):
        session.execute("CREATE TABLE ks.kv (k int PRIMARY KEY)")
    with pytest.raises(InvalidRequest, match="missing"):
        session.execute("INSERT INTO ks.kv (k, v) VALUES (1, 'no clustering key')")
    with pytest.raises(NoHostAvailable) as e:  # the driver tries the next host, there is none
        session.execute("TESTBACKEND ERROR OVERLOADED busy")
    assert any(isinstance(x, OverloadedErrorMessage) for x in e.value.errors.values())
    with pytest.raises(ReadTimeout):
        session.execute(SimpleStatement("TESTBACKEND ERROR READ_TIMEOUT"))
    assert session.execute("SELECT v FROM ks.kv WHERE k = -1").one() is None  # still fine


def test_lwt_applied(backend, clusters):
    session = clusters(backend, protocol_version=4).connect()
    setup_table(session)
    assert session.execute("INSERT INTO ks.kv (k, c, v) VALUES (5, 5, 'a') IF NOT EXISTS").was_applied
    r = session.execute("INSERT INTO ks.kv (k, c, v) VALUES (5, 5, 'b') IF NOT EXISTS")
    assert not r.was_applied and r.one().v == "a"


def test_warnings_tracing_custom_payload(backend, clusters):
    cluster = clusters(backend, protocol_version=5)
    session = cluster.connect()
    setup_table(session)
    future = session.execute_async("TESTBACKEND WARN careful")
    future.result()
    assert future.warnings == ["careful"]
    future = session.execute_async("SELECT COUNT(*) FROM ks.kv")
    future.result()
    assert future.warnings and "Aggregation query used without partition key" in future.warnings[0]
    future = session.execute_async("SELECT * FROM ks.kv WHERE k = 1", custom_payload={"tag": b"\x01\x02"})
    future.result()
    assert future.custom_payload == {"tag": b"\x01\x02"}
    result = session.execute("SELECT * FROM ks.kv WHERE k = 1", trace=True)
    trace = result.get_query_trace(max_wait_sec=5)
    assert trace.trace_id and trace.coordinator == "127.0.0.1" and trace.events


def test_slow_request_does_not_hold_back_others(backend, clusters):
    session = clusters(backend, protocol_version=5).connect()
    finished = []
    slow = session.execute_async("TESTBACKEND SLEEP 1500")
    slow.add_callback(lambda _: finished.append("slow"))
    session.execute("SELECT key FROM system.local")  # same connection, another stream
    finished.append("fast")
    slow.result()
    assert finished == ["fast", "slow"]


# --- authentication and TLS ----------------------------------------------------------------------

@pytest.mark.parametrize("authenticator,version", [("password", 4), ("password", 5), ("dse", 4),
                                                   ("dse", 5)])
def test_password_authenticator(make_backend, clusters, authenticator, version):
    """PasswordAuthenticator, and DSE's authenticator whose AUTH_CHALLENGE the driver answers."""
    backend = make_backend(credentials={"alice": "s3cret"}, authenticator=authenticator)
    ok = clusters(backend, protocol_version=version,
                  auth_provider=PlainTextAuthProvider("alice", "s3cret"))
    assert ok.connect().execute("SELECT key FROM system.local").one().key == "local"
    assert (stats(backend)["auth_challenges"] > 0) == (authenticator == "dse")
    bad = clusters(backend, protocol_version=version,
                   auth_provider=PlainTextAuthProvider("alice", "wrong"))
    with pytest.raises(NoHostAvailable) as e:
        bad.connect()
    assert any(isinstance(x, AuthenticationFailed) for x in e.value.errors.values())
    none = clusters(backend, protocol_version=version)
    with pytest.raises(NoHostAvailable):
        none.connect()


@pytest.mark.parametrize("version,compression", [(4, "snappy"), (5, "lz4")])
def test_tls(make_backend, clusters, tls_files, version, compression):
    cert, key = tls_files
    backend = make_backend(certfile=cert, keyfile=key, credentials={"u": "p"})
    ctx = ssl.create_default_context(cafile=cert)
    cluster = clusters(backend, protocol_version=version, compression=compression,
                       ssl_context=ctx, auth_provider=PlainTextAuthProvider("u", "p"))
    session = cluster.connect()
    setup_table(session)
    session.execute("INSERT INTO ks.kv (k, c, v) VALUES (1, 1, 'tls')")
    assert session.execute("SELECT v FROM ks.kv WHERE k = 1").one().v == "tls"
    plain = clusters(backend, protocol_version=version, connect_timeout=2,
                     control_connection_timeout=2)
    with pytest.raises(NoHostAvailable):
        plain.connect()


# --- several nodes -------------------------------------------------------------------------------

def test_three_nodes_on_loopback_addresses(make_backend, clusters):
    backend = make_backend(nodes=3)
    cluster = clusters(backend, protocol_version=5)
    session = cluster.connect()
    hosts = sorted(h.address for h in cluster.metadata.all_hosts())
    assert hosts == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    assert all(h.is_up for h in cluster.metadata.all_hosts())
    setup_table(session)
    coordinators = set()
    for i in range(9):
        f = session.execute_async("INSERT INTO ks.kv (k, c, v) VALUES (%s, 0, 'x')", (i,))
        f.result()
        coordinators.add(f.coordinator_host)
    assert len(coordinators) == 3
    assert len(list(session.execute("SELECT k FROM ks.kv"))) == 9  # one shared data set
    peers = {str(r.peer) for r in session.execute("SELECT peer FROM system.peers")}
    assert len(peers) == 2


def test_many_clients_and_streams(backend, clusters):
    """200 client connections at once (raw v4 frames), and 1,000 requests with 200 in flight on
    the driver's connections."""
    from cassandra.concurrent import execute_concurrent_with_args
    port = backend.backend.nodes[0].info.port
    startup = struct.pack(">H", 1) + struct.pack(">H", 11) + b"CQL_VERSION" + struct.pack(">H", 5) + b"3.0.0"
    text = b"SELECT key FROM system.local"
    query = struct.pack(">i", len(text)) + text + struct.pack(">HB", 1, 0)
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(200)]
    try:
        for i, s in enumerate(socks):
            s.sendall(_raw_frame(4, 0x01, startup, stream=i) + _raw_frame(4, 0x07, query, stream=i + 1))
        for i, s in enumerate(socks):
            assert _read_frame(s)[2:4] == (i, 0x02)  # READY
            _, _, stream, opcode, body = _read_frame(s)
            assert (stream, opcode) == (i + 1, 0x08) and b"local" in body
    finally:
        for s in socks:
            s.close()
    session = clusters(backend, protocol_version=5).connect()
    setup_table(session)
    insert = session.prepare("INSERT INTO ks.kv (k, c, v) VALUES (?, ?, ?)")
    results = execute_concurrent_with_args(session, insert, [(20, i, str(i)) for i in range(1000)],
                                           concurrency=200)
    assert all(ok for ok, _ in results)
    assert session.execute("SELECT COUNT(*) FROM ks.kv WHERE k = 20").one().count == 1000


def test_named_values(backend, clusters):
    """`:name` markers prepared by the driver and bound from a dict, and a raw QUERY with the
    names-for-values flag (0x40), which the driver does not send for simple statements."""
    session = clusters(backend, protocol_version=4).connect()
    setup_table(session)
    named = session.prepare("INSERT INTO ks.kv (k, c, v) VALUES (:key, :col, :val)")
    assert [m.name for m in named.column_metadata] == ["key", "col", "val"]
    session.execute(named, {"val": "by name", "key": 30, "col": 1})
    port = backend.backend.nodes[0].info.port
    startup = struct.pack(">H", 1) + struct.pack(">H", 11) + b"CQL_VERSION" + struct.pack(">H", 5) + b"3.0.0"
    text = b"INSERT INTO ks.kv (k, c, v) VALUES (:k, :c, :v)"
    values = [("v", b"raw named"), ("c", struct.pack(">i", 2)), ("k", struct.pack(">i", 30))]
    query = struct.pack(">i", len(text)) + text + struct.pack(">HBH", 1, 0x01 | 0x40, len(values))
    for name, raw in values:
        query += struct.pack(">H", len(name)) + name.encode() + struct.pack(">i", len(raw)) + raw
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(_raw_frame(4, 0x01, startup, stream=0) + _raw_frame(4, 0x07, query, stream=1))
        assert _read_frame(s)[3] == 0x02
        _, _, stream, opcode, body = _read_frame(s)
        assert (stream, opcode, body) == (1, 0x08, struct.pack(">i", 1))  # RESULT Void
    assert [r.v for r in session.execute("SELECT v FROM ks.kv WHERE k = 30")] == ["by name", "raw named"]


def test_close_and_garbage_hooks(backend, clusters):
    """TESTBACKEND CLOSE drops the connection without an answer, TESTBACKEND GARBAGE answers with
    bytes that are not a frame: the driver reports a connection error, and the backend goes on."""
    for hook in ("CLOSE", "GARBAGE"):
        session = clusters(backend, protocol_version=4).connect()
        with pytest.raises(Exception) as e:
            session.execute(f"TESTBACKEND {hook}", timeout=5)
        assert not isinstance(e.value, OperationTimedOut), hook
        assert stats(backend)[f"testbackend_{hook.lower()}"] == 1
    fresh = clusters(backend, protocol_version=5).connect()
    assert fresh.execute("SELECT key FROM system.local").one().key == "local"


def test_stalled_startup_hangs_the_driver_connect(make_backend, clusters):
    """stall_startup: connections are accepted but STARTUP is never answered, so the driver's
    connect times out (a hung backend, for tests of what sits in front of it)."""
    backend = make_backend(stall_startup=True)
    cluster = clusters(backend, protocol_version=4, connect_timeout=1, control_connection_timeout=1)
    start = time.time()
    with pytest.raises(NoHostAvailable):
        cluster.connect()
    assert time.time() - start >= 0.9
    assert stats(backend)["stalled_startups"] >= 1


def test_v5_refuses_snappy(backend):
    port = backend.backend.nodes[0].info.port
    body = struct.pack(">H", 2) + struct.pack(">H", 11) + b"CQL_VERSION" + struct.pack(">H", 5) + \
        b"3.0.0" + struct.pack(">H", 11) + b"COMPRESSION" + struct.pack(">H", 6) + b"snappy"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(_raw_frame(5, 0x01, body, stream=0))
        _, _, _, opcode, reply = _read_frame(s)
        assert opcode == 0x00 and struct.unpack(">i", reply[:4])[0] == 0x000A
        assert b"snappy" in reply


# --- raw sockets: version negotiation and segment checks -----------------------------------------

def _raw_frame(version, opcode, body=b"", stream=1, flags=0):
    return struct.pack(">BBhBi", version, flags, stream, opcode, len(body)) + body


def _read_frame(sock):
    head = b""
    while len(head) < 9:
        chunk = sock.recv(9 - len(head))
        if not chunk:
            return None
        head += chunk
    version, flags, stream, opcode, length = struct.unpack(">BBhBi", head)
    body = b""
    while len(body) < length:
        body += sock.recv(length - len(body))
    return version, flags, stream, opcode, body


def _closed(sock):
    sock.settimeout(2)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("opening,reply_version", [(0x42, 0x85), (0x41, 0x85), (6, 0x85), (3, 0x83)])
def test_unsupported_version_gets_protocol_error_and_close(backend, opening, reply_version):
    port = backend.backend.nodes[0].info.port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(_raw_frame(opening, 0x05, stream=7))
        version, _, stream, opcode, body = _read_frame(s)
        assert (version, stream, opcode) == (reply_version, 7, 0x00)
        code, = struct.unpack(">i", body[:4])
        assert code == 0x000A
        assert f"Invalid or unsupported protocol version ({opening})" in body[6:].decode()
        assert _closed(s)


def test_v4_queries_before_startup_are_refused(backend):
    port = backend.backend.nodes[0].info.port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        query = struct.pack(">i", 8) + b"SELECT 1" + struct.pack(">HB", 1, 0)
        s.sendall(_raw_frame(4, 0x07, query))
        _, _, _, opcode, body = _read_frame(s)
        assert opcode == 0x00 and struct.unpack(">i", body[:4])[0] == 0x000A


@pytest.mark.parametrize("lz4", [False, True])
def test_v5_segments_made_by_the_driver_codec(backend, lz4):
    """Segments encoded by the DataStax driver's own codec: a query that passes, then one whose
    payload CRC32 is damaged, which closes the connection."""
    import io
    from cassandra.connection import segment_codec_lz4, segment_codec_no_compression
    codec = segment_codec_lz4 if lz4 else segment_codec_no_compression
    port = backend.backend.nodes[0].info.port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        startup = {"CQL_VERSION": "3.0.0"}
        if lz4:
            startup["COMPRESSION"] = "lz4"
        body = struct.pack(">H", len(startup)) + b"".join(
            struct.pack(">H", len(k)) + k.encode() + struct.pack(">H", len(v)) + v.encode()
            for k, v in startup.items())
        s.sendall(_raw_frame(5, 0x01, body, stream=0))
        assert _read_frame(s)[3] == 0x02  # READY, unframed
        text = b"SELECT key FROM system.local"
        query = struct.pack(">i", len(text)) + text + struct.pack(">Hi", 1, 0)
        buf = io.BytesIO()
        codec.encode(buf, _raw_frame(5, 0x07, query, stream=3))
        good = buf.getvalue()
        s.sendall(good)
        # The answer is a segment; its header length says how much to read.
        head = s.recv(8 if lz4 else 6, socket.MSG_WAITALL)
        header = int.from_bytes(head[:5 if lz4 else 3], "little")
        rest = (header & 0x1FFFF) + 4
        data = b""
        while len(data) < rest:
            data += s.recv(rest - len(data))
        assert len(data) == rest
        bad = bytearray(good)
        bad[-1] ^= 0xFF  # payload CRC32
        s.sendall(bytes(bad))
        assert _closed(s)


@pytest.mark.parametrize("lz4", [False, True])
@pytest.mark.parametrize("size", [0, 1, 1000, 128 * 1024 - 1, 128 * 1024, 400_000])
def test_segments_agree_with_the_driver_codec(lz4, size):
    """The backend's segment encoder and decoder against the DataStax driver's codec (an
    independent implementation): what one writes, the other reads, at the 128 KiB - 1 boundary
    and across segments, compressed or not."""
    import io
    from cassandra.connection import segment_codec_lz4, segment_codec_no_compression
    from backend.framing import SegmentCodec
    driver = segment_codec_lz4 if lz4 else segment_codec_no_compression
    ours = SegmentCodec(lz4=lz4)
    data = (os.urandom(size // 2) + b"x" * (size - size // 2))

    # backend -> driver
    encoded = ours.encode_envelopes(data)
    buf = io.BytesIO(encoded)
    payload, contained = b"", []
    while buf.tell() < len(encoded):
        header = driver.decode_header(buf)
        segment = driver.decode(buf, header)
        payload += segment.payload
        contained.append(segment.is_self_contained)
    assert payload == data
    assert contained == ([True] if size <= 128 * 1024 - 1 else [False] * len(contained))

    # driver -> backend
    out = io.BytesIO()
    driver.encode(out, data)
    raw = bytearray(out.getvalue())
    payload, contained = b"", []
    while raw:
        body, self_contained, length = ours.decode(raw)
        del raw[:length]
        payload += body
        contained.append(self_contained)
    assert payload == data
    assert contained == ([True] if size <= 128 * 1024 - 1 else [False] * len(contained))


def test_garbage_never_brings_the_backend_down(backend, clusters, caplog):
    """Random bytes, and well-formed headers with random bodies for every opcode, on v4 and v5:
    each connection gets an ERROR or a close, no request fails inside the backend (nothing logged
    at ERROR), and the backend keeps serving drivers."""
    import io
    import logging
    import random
    from cassandra.connection import segment_codec_no_compression
    rng = random.Random(1234)
    port = backend.backend.nodes[0].info.port
    startup = struct.pack(">H", 1) + struct.pack(">H", 11) + b"CQL_VERSION" + struct.pack(">H", 5) + b"3.0.0"
    for i in range(120):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            version = rng.choice([4, 5])
            if i % 3 == 0:
                s.sendall(bytes([version]) + rng.randbytes(rng.randint(1, 300)))
            else:
                s.sendall(_raw_frame(version, 0x01, startup, stream=0))
                assert _read_frame(s)[3] == 0x02
                opcode = rng.choice([0x01, 0x05, 0x07, 0x09, 0x0A, 0x0B, 0x0D, 0x0F, 0x33])
                body = rng.randbytes(rng.randint(0, 64))
                frame = _raw_frame(version, opcode, body, stream=1, flags=rng.choice([0, 2, 4, 8]))
                if version == 5:  # inside a well-formed segment, so the body reaches the parsers
                    out = io.BytesIO()
                    segment_codec_no_compression.encode(out, frame)
                    frame = out.getvalue()
                s.sendall(frame)
            s.settimeout(2)
            try:
                s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                pass
    session = clusters(backend, protocol_version=5).connect()
    assert session.execute("SELECT key FROM system.local").one().key == "local"
    failures = [r.getMessage() for r in caplog.records
                if r.name == "cql-test-backend" and r.levelno >= logging.ERROR]
    assert failures == []


def test_v5_bad_header_crc_closes(backend):
    import io
    from cassandra.connection import segment_codec_no_compression as codec
    port = backend.backend.nodes[0].info.port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        body = struct.pack(">H", 1) + struct.pack(">H", 11) + b"CQL_VERSION" + struct.pack(">H", 5) + b"3.0.0"
        s.sendall(_raw_frame(5, 0x01, body, stream=0))
        assert _read_frame(s)[3] == 0x02
        buf = io.BytesIO()
        codec.encode(buf, _raw_frame(5, 0x05, b"", stream=2))
        bad = bytearray(buf.getvalue())
        bad[3] ^= 0x01  # header CRC24
        s.sendall(bytes(bad))
        assert _closed(s)


# --- cqlsh and the command-line backend ----------------------------------------------------------

def test_cqlsh_scripted_session_against_the_backend_process(tmp_path):
    """cqlsh (which uses the DataStax driver) runs a script against `python3 -m Tests.cql.backend`."""
    import shutil
    cqlsh = shutil.which("cqlsh")
    if cqlsh is None:
        pytest.skip("cqlsh is not installed (scripts/install-deps.sh installs it)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "Tests.cql.backend", "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "listening on 127.0.0.1:" in proc.stdout.readline()
        script = tmp_path / "session.cql"
        script.write_text(
            "CREATE KEYSPACE shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};\n"
            "USE shop;\n"
            "CREATE TABLE items (id int PRIMARY KEY, name text, price double);\n"
            "INSERT INTO items (id, name, price) VALUES (1, 'lamp', 12.5);\n"
            "INSERT INTO items (id, name, price) VALUES (2, 'desk', 99.0);\n"
            "SELECT id, name, price FROM items WHERE id IN (1, 2);\n"
            "UPDATE items SET price = 11.0 WHERE id = 1;\n"
            "SELECT name, price FROM items WHERE id = 1;\n"
            "DELETE FROM items WHERE id = 2;\n"
            "SELECT COUNT(*) FROM items;\n"
            "DESCRIBE KEYSPACES;\n"
            "DESCRIBE TABLE items;\n")
        out = subprocess.run([cqlsh, "127.0.0.1", str(port), "-f", str(script)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        text = out.stdout
        assert "lamp" in text and "desk" in text and "(2 rows)" in text
        assert "11" in text and "(1 rows)" in text
        assert "system_schema" in text and "shop" in text  # DESCRIBE KEYSPACES
        assert "CREATE TABLE shop.items (" in text and "PRIMARY KEY (id)" in text
        assert "WARNING" not in out.stderr and "Traceback" not in out.stderr, out.stderr
        out = subprocess.run([cqlsh, "127.0.0.1", str(port), "-e", "SELECT * FROM shop.nope"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and "unconfigured table nope" in out.stderr
    finally:
        proc.terminate()
        proc.wait(10)


def test_cqlsh_with_credentials_and_tls(tmp_path, tls_files):
    """cqlsh -u/-p against the backend process with --user, over TLS (--ssl, certificate checked)."""
    import shutil
    cqlsh = shutil.which("cqlsh")
    if cqlsh is None:
        pytest.skip("cqlsh is not installed (scripts/install-deps.sh installs it)")
    cert, key = tls_files
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "Tests.cql.backend", "--port", str(port),
                             "--user", "alice:s3cret", "--tls-cert", cert, "--tls-key", key],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "listening on 127.0.0.1:" in proc.stdout.readline()
        env = dict(os.environ, SSL_CERTFILE=cert, SSL_VALIDATE="true")
        ok = subprocess.run([cqlsh, "--ssl", "-u", "alice", "-p", "s3cret", "127.0.0.1", str(port),
                             "-e", "SELECT cluster_name FROM system.local"],
                            capture_output=True, text=True, timeout=60, env=env)
        assert ok.returncode == 0, ok.stderr
        assert "Sluice CQL test backend" in ok.stdout and "(1 rows)" in ok.stdout
        bad = subprocess.run([cqlsh, "--ssl", "-u", "alice", "-p", "wrong", "127.0.0.1", str(port),
                              "-e", "SELECT cluster_name FROM system.local"],
                             capture_output=True, text=True, timeout=60, env=env)
        assert bad.returncode != 0 and "are incorrect" in bad.stderr
    finally:
        proc.terminate()
        proc.wait(10)


SCYLLA_PYTHON = os.environ.get("SCYLLA_DRIVER_PYTHON",
                               os.path.join(ROOT, "build", "venv-scylla", "bin", "python"))


@pytest.mark.parametrize("version,compression", [(4, "lz4"), (4, "snappy"), (5, "lz4"), (5, None)])
def test_scylla_driver(make_backend, version, compression):
    """scylla-driver installs the same `cassandra` module as cassandra-driver, so it lives in its own
    venv (build/venv-scylla, made by scripts/install-deps.sh) and runs as a subprocess."""
    if not os.path.exists(SCYLLA_PYTHON):
        pytest.skip(f"no scylla-driver venv at {SCYLLA_PYTHON} (scripts/install-deps.sh makes it)")
    backend = make_backend(nodes=2)
    out = subprocess.run([SCYLLA_PYTHON, os.path.join(HERE, "scylla_driver_check.py"),
                          str(backend.backend.nodes[0].info.port), str(version), str(compression)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "scylla-driver OK" in out.stdout
