"""CQL end to end with real drivers (issue 13 §5): the DataStax python driver, scylla-driver and cqlsh
against the CQL test backend (Tests/cql/backend: Python, written independently of Sluice's codec, not
Cassandra), each test once DIRECT against the backend and once THROUGH Sluice (a `cassandra` source
and sink). The direct run proves the test itself; a failure through Sluice is Sluice's.

What does not work through Sluice yet is listed in NOT_YET: those tests' Sluice runs are strict
xfails (they must fail; the day one passes, its entry must go), so the gap stays visible and checked.
"""
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time

import pytest
from cassandra import (AlreadyExists, AuthenticationFailed, ConsistencyLevel, InvalidRequest,
                       OperationTimedOut, ReadTimeout)
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.policies import RoundRobinPolicy
from cassandra.protocol import (EventMessage, ExecuteMessage, InvalidRequestException,
                                PrepareMessage, PreparedQueryNotFound, QueryMessage, ReadyMessage,
                                RegisterMessage, ResultMessage, SyntaxException)
from cassandra.query import BatchStatement, BatchType, SimpleStatement
from conftest import ROOT, CQLBackend, CQLRawConnection, Sluice, cql_config

HERE = os.path.dirname(os.path.abspath(__file__))
SCYLLA_PYTHON = os.environ.get("SCYLLA_DRIVER_PYTHON",
                               os.path.join(ROOT, "build", "venv-scylla", "bin", "python"))

# What does not work through Sluice on main yet, by feature (None once it works). Each test names
# the features it needs; its Sluice run is a strict xfail while one of them is missing here.
NOT_YET = {
    "proxy": None,
    "shared_connections": None,
    "reprepare_hidden": None,
    "events": None,
    "sasl": None,
    "tls": None,
    "backend_failures": None,
}


def routes(*features, extra=()):
    """The routes a test runs on: 'direct', then 'sluice' (and any `extra` Sluice variants), those
    marked strict xfail while one of `features` (plus the basic 'proxy') is missing."""
    gaps = [NOT_YET[f] for f in ("proxy", *features) if NOT_YET.get(f)]
    marks = [pytest.mark.xfail(strict=True, reason="; ".join(gaps))] if gaps else []
    return ["direct"] + [pytest.param(r, marks=marks, id=r) for r in ("sluice", *extra)]


KS = ("CREATE KEYSPACE IF NOT EXISTS {} WITH replication = "
      "{{'class': 'SimpleStrategy', 'replication_factor': 1}}")


class Target:
    """Where the clients connect: the test backend itself (direct) or Sluice in front of it."""

    def __init__(self, route, backend, sluice=None):
        self.route, self.backend, self.sluice = route, backend, sluice
        self.port = sluice.port if sluice else backend.port
        self.clusters = []

    def cluster(self, **kwargs):
        """A DataStax driver cluster with one contact point, shut down after the test."""
        kwargs.setdefault("execution_profiles", {
            EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=RoundRobinPolicy())})
        kwargs.setdefault("connect_timeout", 3)
        kwargs.setdefault("control_connection_timeout", 3)
        cluster = Cluster(["127.0.0.1"], port=self.port, **kwargs)
        self.clusters.append(cluster)
        return cluster

    def raw(self, **kwargs):
        return CQLRawConnection(self.port, **kwargs)

    def assert_sluice_alive(self):
        if self.sluice is not None:
            assert self.sluice.alive(), self.sluice.output()

    def shutdown_clusters(self):
        for c in self.clusters:
            c.shutdown()
        self.clusters = []


def start_target(route, workdir, backend_args=(), source="", sink="", backend=None):
    """The backend (unless given) and, for a Sluice route, Sluice in front of it. A Sluice that does
    not start stops the backend made here (no backend process outlives a refused config)."""
    own_backend = backend is None
    backend = backend or CQLBackend(workdir, backend_args)
    sluice = None
    if route != "direct":
        try:
            sluice = Sluice(workdir, cql_config(backend.port, source=source, sink=sink))
        except BaseException:
            if own_backend:
                backend.stop()
            raise
    return Target(route, backend, sluice)


@pytest.fixture(scope="module")
def route(request):
    return request.param


@pytest.fixture(scope="module")
def shared(route):
    """One backend (and Sluice in front of it for route 'sluice') for the tests of this module that
    only add data; each uses tables of its own."""
    workdir = tempfile.mkdtemp(prefix="sluice-cql-e2e-")
    backend = CQLBackend(workdir)
    target = None
    try:
        target = start_target(route, workdir, backend=backend)
        yield target
    finally:
        if target is not None and target.sluice is not None:
            target.sluice.stop()
        backend.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def target(shared):
    yield shared
    shared.shutdown_clusters()


@pytest.fixture
def own(route, workdir):
    """Makes a backend of its own (with `backend_args`) and, through Sluice, Sluice in front of it."""
    made = []

    def make(backend_args=(), source="", sink="", route_name=None):
        t = start_target(route_name or route, workdir, backend_args, source, sink)
        made.append(t)
        return t

    yield make
    for t in made:
        t.shutdown_clusters()
        if t.sluice is not None:
            t.sluice.stop()
        t.backend.stop()


def driver_connections(cluster, session):
    """The driver's own connections: the control connection and each pool's."""
    conns = [cluster.control_connection._connection]
    for pool in session._pools.values():
        conns.extend(pool.get_connections())
    return conns


def make_table(session, ks, table, columns="k int, c int, v text, b blob, PRIMARY KEY (k, c)"):
    session.execute(KS.format(ks))
    session.execute(f"CREATE TABLE IF NOT EXISTS {ks}.{table} ({columns})")


# --- protocol versions and compression; statements -----------------------------------------------

PROTOCOL_COMPRESSION = [(4, False), (4, "lz4"), (4, "snappy"), (5, False), (5, "lz4")]


@pytest.mark.parametrize("route", routes(), indirect=True)
@pytest.mark.parametrize("version,compression", PROTOCOL_COMPRESSION)
def test_statements_on_each_version_and_compression(target, version, compression):
    """Simple and prepared statements, = / IN / LIMIT, UPDATE, DELETE, COUNT and a 3 MiB value
    (several v5 segments) on v4 and v5, uncompressed, LZ4 and Snappy (v4), as the driver negotiated
    them with whoever it connected to."""
    cluster = target.cluster(protocol_version=version, compression=compression)
    session = cluster.connect()
    assert cluster.protocol_version == version
    for conn in driver_connections(cluster, session):
        assert (conn.compressor is not None) == bool(compression), conn
        assert conn._is_checksumming_enabled == (version >= 5), conn
    table = f"stmt_v{version}_{compression or 'none'}"
    make_table(session, "e2e", table)
    insert = session.prepare(f"INSERT INTO e2e.{table} (k, c, v, b) VALUES (?, ?, ?, ?)")
    for c in range(20):
        session.execute(insert, (1, c, f"v{c}", bytes([c]) * 100))
    session.execute(f"INSERT INTO e2e.{table} (k, c, v) VALUES (%s, %s, %s)", (2, 0, "two"))
    rows = session.execute(f"SELECT c, v FROM e2e.{table} WHERE k = 1 AND c IN (3, 4, 99)")
    assert [(r.c, r.v) for r in rows] == [(3, "v3"), (4, "v4")]
    assert [r.c for r in session.execute(f"SELECT c FROM e2e.{table} WHERE k = 1 LIMIT 3")] == [0, 1, 2]
    select = session.prepare(f"SELECT k, c, v, b FROM e2e.{table} WHERE k IN ? AND c = ?")
    rows = list(session.execute(select, ([1, 2], 0)))
    assert [(r.k, r.v) for r in rows] == [(1, "v0"), (2, "two")] and rows[0].b == b"\x00" * 100
    session.execute(f"UPDATE e2e.{table} SET v = 'changed' WHERE k = 1 AND c = 5")
    session.execute(f"DELETE FROM e2e.{table} WHERE k = 1 AND c = 6")
    assert session.execute(f"SELECT v FROM e2e.{table} WHERE k = 1 AND c = 5").one().v == "changed"
    assert session.execute(f"SELECT COUNT(*) FROM e2e.{table} WHERE k = 1").one().count == 19
    big = os.urandom(3 * 1024 * 1024)
    session.execute(insert, (3, 0, "big", big))
    assert session.execute(select, ([3], 0)).one().b == big
    target.assert_sluice_alive()


@pytest.mark.parametrize("route", routes(), indirect=True)
def test_driver_negotiates_the_version(target):
    """No version fixed: the driver opens with DSE v66 and v65, gets the PROTOCOL_ERROR it
    downgrades on, and settles on v5."""
    cluster = target.cluster()
    session = cluster.connect()
    assert cluster.protocol_version == 5
    assert session.execute("SELECT key FROM system.local").one().key == "local"


@pytest.mark.parametrize("route", routes(), indirect=True)
@pytest.mark.parametrize("version", [4, 5])
def test_paging_across_pages(target, version):
    """fetch_size smaller than the result: pages one by one with paging_state, a page continued by
    another client from the first one's paging_state, and every page in order, for a simple and a
    prepared statement."""
    session = target.cluster(protocol_version=version).connect()
    table = f"paging_v{version}"
    make_table(session, "e2e", table)
    insert = session.prepare(f"INSERT INTO e2e.{table} (k, c, v) VALUES (?, ?, ?)")
    assert all(ok for ok, _ in execute_concurrent_with_args(
        session, insert, [(1, c, f"v{c}") for c in range(25)], concurrency=25))
    stmt = SimpleStatement(f"SELECT c FROM e2e.{table} WHERE k = 1", fetch_size=7)
    first = session.execute(stmt)
    assert [r.c for r in first.current_rows] == list(range(7)) and first.paging_state
    second = session.execute(stmt, paging_state=first.paging_state)
    assert [r.c for r in second.current_rows] == list(range(7, 14))
    other = target.cluster(protocol_version=version).connect()
    assert [r.c for r in other.execute(stmt, paging_state=second.paging_state).current_rows] == \
        list(range(14, 21))
    assert [r.c for r in session.execute(stmt)] == list(range(25))
    prepared = session.prepare(f"SELECT c FROM e2e.{table} WHERE k = ?")
    prepared.fetch_size = 10
    pages, state = [], None
    while True:
        result = session.execute(prepared, (1,), paging_state=state)
        pages.append([r.c for r in result.current_rows])
        state = result.paging_state
        if not state:
            break
    assert pages == [list(range(10)), list(range(10, 20)), list(range(20, 25))]
    target.assert_sluice_alive()


@pytest.mark.parametrize("route", routes(), indirect=True)
@pytest.mark.parametrize("version", [4, 5])
def test_batches(target, version):
    """LOGGED (prepared children and simple ones with values), UNLOGGED and COUNTER batches."""
    session = target.cluster(protocol_version=version).connect()
    table = f"batch_v{version}"
    make_table(session, "e2e", table)
    make_table(session, "e2e", f"{table}_n", "k text PRIMARY KEY, n counter")
    insert = session.prepare(f"INSERT INTO e2e.{table} (k, c, v) VALUES (?, ?, ?)")
    session.execute(insert, (9, 9, "to delete"))
    logged = BatchStatement(batch_type=BatchType.LOGGED)
    logged.add(insert, (1, 0, "a"))
    logged.add(insert, (1, 1, "b"))
    logged.add(SimpleStatement(f"UPDATE e2e.{table} SET v = %s WHERE k = %s AND c = %s"), ("u", 1, 2))
    logged.add(SimpleStatement(f"DELETE FROM e2e.{table} WHERE k = 9 AND c = 9"))
    session.execute(logged)
    unlogged = BatchStatement(batch_type=BatchType.UNLOGGED)
    for c in range(5):
        unlogged.add(insert, (2, c, f"u{c}"))
    session.execute(unlogged)
    bump = session.prepare(f"UPDATE e2e.{table}_n SET n = n + ? WHERE k = ?")
    counter = BatchStatement(batch_type=BatchType.COUNTER)
    counter.add(bump, (2, "x"))
    counter.add(bump, (3, "x"))
    session.execute(counter)
    assert [(r.c, r.v) for r in session.execute(f"SELECT c, v FROM e2e.{table} WHERE k = 1")] == \
        [(0, "a"), (1, "b"), (2, "u")]
    assert [r.v for r in session.execute(f"SELECT v FROM e2e.{table} WHERE k = 2")] == \
        [f"u{c}" for c in range(5)]
    assert session.execute(f"SELECT v FROM e2e.{table} WHERE k = 9").one() is None
    assert session.execute(f"SELECT n FROM e2e.{table}_n WHERE k = 'x'").one().n == 5
    target.assert_sluice_alive()


@pytest.mark.parametrize("route", routes(), indirect=True)
def test_use_is_per_client_and_qualified_names_work(target):
    """Two clients in two keyspaces with a table of the same name, interleaved: each unqualified
    statement (simple and prepared) reaches its own client's keyspace, qualified ones the named
    one; a raw connection's USE changes only that connection."""
    setup = target.cluster(protocol_version=4).connect()
    for ks in ("e2e_use_a", "e2e_use_b"):
        make_table(setup, ks, "kv", "k int PRIMARY KEY, v text")
        setup.execute(f"INSERT INTO {ks}.kv (k, v) VALUES (1, 'in {ks[-1]}')")
    a = target.cluster(protocol_version=5).connect("e2e_use_a")
    b = target.cluster(protocol_version=4).connect("e2e_use_b")
    futures = [(want, s.execute_async("SELECT v FROM kv WHERE k = 1"))
               for _ in range(20) for want, s in (("in a", a), ("in b", b))]
    assert [f.result().one().v for _, f in futures] == [want for want, _ in futures]
    pa, pb = a.prepare("SELECT v FROM kv WHERE k = ?"), b.prepare("SELECT v FROM kv WHERE k = ?")
    assert pa.query_id != pb.query_id  # the backend's ids include the keyspace, as Cassandra's do
    assert (a.execute(pa, (1,)).one().v, b.execute(pb, (1,)).one().v) == ("in a", "in b")
    assert a.execute("SELECT v FROM e2e_use_b.kv WHERE k = 1").one().v == "in b"
    with target.raw() as r1, target.raw() as r2:
        r1.startup()
        r2.startup()
        assert r1.query("USE e2e_use_a").new_keyspace == "e2e_use_a"
        refused = r2.query("SELECT v FROM kv WHERE k = 1")  # no keyspace on this connection yet
        assert isinstance(refused, InvalidRequestException), refused
        assert r2.query("USE e2e_use_b").new_keyspace == "e2e_use_b"
        for _ in range(5):
            assert r1.query("SELECT v FROM kv WHERE k = 1").parsed_rows == [("in a",)]
            assert r2.query("SELECT v FROM kv WHERE k = 1").parsed_rows == [("in b",)]
    target.assert_sluice_alive()


# --- prepared statements forgotten by the backend ------------------------------------------------

@pytest.mark.parametrize("route", routes(), indirect=True)
@pytest.mark.parametrize("version", [4, 5])
def test_reprepare_after_the_backend_forgets(target, version):
    """SIGUSR1: the backend forgets every prepared statement. The next EXECUTE (plain, and as BATCH
    children) meets UNPREPARED at the backend and still succeeds for the client, in each client's
    keyspace (the statement ids depend on it)."""
    setup = target.cluster(protocol_version=version).connect()
    for ks in (f"e2e_rp{version}_a", f"e2e_rp{version}_b"):
        make_table(setup, ks, "kv")
    a = target.cluster(protocol_version=version).connect(f"e2e_rp{version}_a")
    b = target.cluster(protocol_version=version).connect(f"e2e_rp{version}_b")
    inserts = {s: s.prepare("INSERT INTO kv (k, c, v) VALUES (?, ?, ?)") for s in (a, b)}
    selects = {s: s.prepare("SELECT v FROM kv WHERE k = ?") for s in (a, b)}
    for s, name in ((a, "a"), (b, "b")):
        s.execute(inserts[s], (1, 0, f"{name} before"))
    before = target.backend.stats()
    target.backend.forget_prepared()
    for s, name in ((a, "a"), (b, "b")):
        s.execute(inserts[s], (1, 1, f"{name} after"))
        batch = BatchStatement()
        batch.add(inserts[s], (1, 2, f"{name} batched"))
        batch.add(inserts[s], (1, 3, f"{name} batched"))
        s.execute(batch)
    target.backend.forget_prepared()
    for s, name in ((a, "a"), (b, "b")):
        assert [r.v for r in s.execute(selects[s], (1,))] == \
            [f"{name} before", f"{name} after", f"{name} batched", f"{name} batched"]
    after = target.backend.stats()
    assert after["unprepared"] >= before["unprepared"] + 4, (before, after)
    assert after["prepares"] > before["prepares"]
    target.assert_sluice_alive()


@pytest.mark.parametrize("route", routes("reprepare_hidden"), indirect=True)
def test_unprepared_reaches_the_client_only_direct(target):
    """An EXECUTE the backend no longer knows, on a raw v4 connection: directly the client gets
    UNPREPARED; through Sluice, which saw the PREPARE, Sluice re-prepares and retries and the client
    gets its rows (issue 13 §3: never surfaced to the client)."""
    setup = target.cluster(protocol_version=4).connect()
    make_table(setup, "e2e", "unprep", "k int PRIMARY KEY, v text")
    setup.execute("INSERT INTO e2e.unprep (k, v) VALUES (1, 'one')")
    with target.raw() as r:
        r.startup()
        prepared = r.request(PrepareMessage("SELECT v FROM e2e.unprep WHERE k = 1"))
        execute = ExecuteMessage(prepared.query_id, [], ConsistencyLevel.ONE)
        assert r.request(execute).parsed_rows == [("one",)]
        target.backend.forget_prepared()
        reply = r.request(execute)
        if target.sluice is None:
            assert isinstance(reply, PreparedQueryNotFound) and reply.info == prepared.query_id, reply
        else:
            assert isinstance(reply, ResultMessage) and reply.parsed_rows == [("one",)], reply
    target.assert_sluice_alive()


# --- events ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("route", routes("events"), indirect=True)
@pytest.mark.parametrize("version", [4, 5])
def test_schema_change_events_reach_a_driver_that_registered(target, version):
    """The driver's control connection REGISTERs for schema changes; another client's CREATE and
    DROP TABLE reach its metadata through SCHEMA_CHANGE events."""
    watcher = target.cluster(protocol_version=version, schema_event_refresh_window=0)
    watcher.connect()
    ks = f"e2e_evt{version}"
    assert ks not in watcher.metadata.keyspaces
    actor = target.cluster(protocol_version=version).connect()
    actor.execute(KS.format(ks))
    actor.execute(f"CREATE TABLE {ks}.evt (k int PRIMARY KEY, v int)")
    deadline = time.time() + 10
    while not (ks in watcher.metadata.keyspaces and "evt" in watcher.metadata.keyspaces[ks].tables):
        assert time.time() < deadline, "the watcher's metadata never saw the new table"
        time.sleep(0.05)
    actor.execute(f"DROP TABLE {ks}.evt")
    while "evt" in watcher.metadata.keyspaces[ks].tables:
        assert time.time() < deadline, "the watcher's metadata never saw the table dropped"
        time.sleep(0.05)
    target.assert_sluice_alive()


@pytest.mark.parametrize("route", routes("events"), indirect=True)
def test_events_go_only_to_connections_that_registered(target):
    """Raw connections: the one that REGISTERed for SCHEMA_CHANGE gets the EVENT (stream -1) of
    another client's CREATE TABLE; the one that did not gets nothing but its own replies."""
    with target.raw() as listener, target.raw() as bystander, target.raw() as actor:
        for c in (listener, bystander, actor):
            c.startup()
        assert isinstance(listener.request(RegisterMessage(["SCHEMA_CHANGE"])), ReadyMessage)
        actor.query(KS.format("e2e_reg"))
        actor.query("CREATE TABLE IF NOT EXISTS e2e_reg.t1 (k int PRIMARY KEY)")
        events = []
        while True:
            event = listener.receive()
            assert isinstance(event, EventMessage) and event.stream_id == -1, event
            events.append(event.event_args)
            if event.event_args.get("target_type") == "TABLE":
                break
        assert events[-1] == {"change_type": "CREATED", "target_type": "TABLE",
                              "keyspace": "e2e_reg", "table": "t1"}
        reply = bystander.query("SELECT key FROM system.local")  # its next frame is this reply
        assert isinstance(reply, ResultMessage) and reply.parsed_rows == [("local",)]
    target.assert_sluice_alive()


# --- many clients, slow requests, errors ----------------------------------------------------------

@pytest.mark.parametrize("route", routes(), indirect=True)
def test_200_clients_at_once(target):
    """200 client connections open at once, each writing and reading back its own row and then
    sending five requests before reading their replies; and 1,000 prepared INSERTs with 200 in
    flight from the driver on v5."""
    setup = target.cluster(protocol_version=5).connect()
    make_table(setup, "e2e", "many", "k int PRIMARY KEY, v text")
    clients = [target.raw() for _ in range(200)]
    try:
        for c in clients:
            c.startup()
        for i, c in enumerate(clients):
            assert isinstance(c.query(f"INSERT INTO e2e.many (k, v) VALUES ({i}, 'client {i}')"),
                              ResultMessage)
        sent = {}
        for i, c in enumerate(clients):
            sent[i] = {c.send(QueryMessage(f"SELECT v FROM e2e.many WHERE k = {(i + j) % 200}",
                                           ConsistencyLevel.ONE)): (i + j) % 200 for j in range(5)}
        for i, c in enumerate(clients):
            for _ in range(5):
                reply = c.receive()
                assert reply.parsed_rows == [(f"client {sent[i].pop(reply.stream_id)}",)]
    finally:
        for c in clients:
            c.close()
    insert = setup.prepare("INSERT INTO e2e.many (k, v) VALUES (?, ?)")
    results = execute_concurrent_with_args(setup, insert, [(1000 + i, str(i)) for i in range(1000)],
                                           concurrency=200)
    assert all(ok for ok, _ in results)
    assert setup.execute("SELECT COUNT(*) FROM e2e.many").one().count == 1200
    target.assert_sluice_alive()


@pytest.mark.parametrize("route", routes(), indirect=True)
def test_a_slow_request_does_not_hold_back_other_streams(target):
    """A request the backend answers after 1 s; meanwhile another stream of the same client and a
    request of another client (through Sluice: very likely on the same backend connection) are
    answered."""
    session = target.cluster(protocol_version=5).connect()
    other = target.cluster(protocol_version=5).connect()
    finished = []
    slow = session.execute_async("TESTBACKEND SLEEP 1000")
    slow.add_callback(lambda _: finished.append("slow"))
    session.execute("SELECT key FROM system.local")  # same connection, another stream
    finished.append("fast")
    other.execute("SELECT key FROM system.local")
    finished.append("other client")
    slow.result()
    assert finished == ["fast", "other client", "slow"]


@pytest.mark.parametrize("route", routes("shared_connections"), indirect=True)
def test_clients_share_backend_connections(own):
    """50 clients, each with a request in flight, in front of a fresh backend: directly each is a
    connection of the backend's; through Sluice they share a few backend connections (issue 13 §3:
    one per event loop, protocol version and keyspace)."""
    target = own()
    before = target.backend.stats()["connections"]
    clients = [target.raw() for _ in range(50)]
    try:
        for c in clients:
            c.startup()
        streams = [c.send(QueryMessage("TESTBACKEND SLEEP 300", ConsistencyLevel.ONE))
                   for c in clients]
        for c, stream in zip(clients, streams):
            reply = c.receive()
            assert isinstance(reply, ResultMessage) and reply.stream_id == stream
    finally:
        for c in clients:
            c.close()
    opened = target.backend.stats()["connections"] - before - 1  # - 1: the stats() connection
    if target.sluice is None:
        assert opened == 50
    else:
        assert 1 <= opened <= 8, opened
    target.assert_sluice_alive()


@pytest.mark.parametrize("route", routes(), indirect=True)
def test_errors_warnings_tracing_and_custom_payloads(target):
    """The backend's ERRORs (with their codes' fields), warnings, tracing ids and custom payloads
    reach the driver as they do directly."""
    session = target.cluster(protocol_version=5).connect()
    make_table(session, "e2e", "errs", "k int PRIMARY KEY, v text")
    with pytest.raises(SyntaxException):
        session.execute("SELEKT * FROM e2e.errs")
    with pytest.raises(InvalidRequest, match="unconfigured table"):
        session.execute("SELECT * FROM e2e.nope")
    with pytest.raises(AlreadyExists):
        session.execute("CREATE TABLE e2e.errs (k int PRIMARY KEY)")
    with pytest.raises(ReadTimeout):
        session.execute("TESTBACKEND ERROR READ_TIMEOUT")
    future = session.execute_async("TESTBACKEND WARN careful")
    future.result()
    assert future.warnings == ["careful"]
    future = session.execute_async("SELECT * FROM e2e.errs WHERE k = 1", custom_payload={"tag": b"\x01"})
    future.result()
    assert future.custom_payload == {"tag": b"\x01"}
    trace = session.execute("SELECT * FROM e2e.errs WHERE k = 1", trace=True).get_query_trace(
        max_wait_sec=5)
    assert trace.trace_id and trace.events
    target.assert_sluice_alive()


# --- authentication and TLS -----------------------------------------------------------------------

AUTH_ROUTES = {
    # route: (source lines, sink lines, the credentials the client uses)
    "direct": ("", "", ("alice", "s3cret")),
    "sluice": ("      auth: passthrough\n", "", ("alice", "s3cret")),
    "sluice-own-auth": ("      auth: { username: app, password: app-pw }\n",
                        "      username: alice\n      password: s3cret\n", ("app", "app-pw")),
}


def sasl_target(own, route, authenticator):
    """A backend with user alice:s3cret and the given authenticator ('password' or 'dse'), with Sluice
    in front as the route says; and the credentials a client uses on that route."""
    source, sink, (user, password) = AUTH_ROUTES[route]
    target = own(("--user", "alice:s3cret", "--authenticator", authenticator), source, sink)
    return target, user, password


@pytest.mark.parametrize("route", routes("sasl", extra=("sluice-own-auth",)), indirect=True)
@pytest.mark.parametrize("authenticator,version", [("password", 4), ("password", 5), ("dse", 5)])
def test_sasl_password_authenticator(own, route, authenticator, version):
    """A backend with PasswordAuthenticator (or DSE's, which sends an AUTH_CHALLENGE first). Through
    Sluice either the client's SASL exchange passes through (auth: passthrough), or Sluice checks
    the client's credentials itself and logs in to the backend with the sink's."""
    target, user, password = sasl_target(own, route, authenticator)
    ok = target.cluster(protocol_version=version, auth_provider=PlainTextAuthProvider(user, password))
    assert ok.connect().execute("SELECT key FROM system.local").one().key == "local"
    bad = target.cluster(protocol_version=version, auth_provider=PlainTextAuthProvider(user, "wrong"))
    with pytest.raises(NoHostAvailable) as e:
        bad.connect()
    assert any(isinstance(x, AuthenticationFailed) for x in e.value.errors.values()), e.value.errors
    with pytest.raises(NoHostAvailable):
        target.cluster(protocol_version=version).connect()
    target.assert_sluice_alive()


@pytest.fixture(scope="module")
def tls_files():
    """A self-signed certificate for 127.0.0.1 made with openssl."""
    d = tempfile.mkdtemp(prefix="sluice-cql-tls-")
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    yield cert, key
    shutil.rmtree(d, ignore_errors=True)


def tls_target(own, route, tls_files):
    """Where TLS clients connect: directly a TLS backend; through Sluice its TLS source, with a plain
    backend behind it ('sluice') or a TLS backend too ('sluice-tls-both-ends', sink tls with the CA)."""
    cert, key = tls_files
    tls_source = f"      tls: {{ cert_file: {cert}, key_file: {key} }}\n"
    if route == "direct":
        return own(("--tls-cert", cert, "--tls-key", key))
    if route == "sluice":
        return own((), tls_source)
    return own(("--tls-cert", cert, "--tls-key", key), tls_source, f"      tls: {{ ca_file: {cert} }}\n")


@pytest.mark.parametrize("route", routes("tls", extra=("sluice-tls-both-ends",)), indirect=True)
@pytest.mark.parametrize("version,compression", [(4, "snappy"), (5, "lz4")])
def test_tls(own, route, tls_files, version, compression):
    """Clients connect with TLS: directly to a TLS backend; through Sluice to its TLS source, with a
    plain backend behind it, or a TLS backend too (sink tls with the CA). A client without TLS is
    refused."""
    cert, _ = tls_files
    target = tls_target(own, route, tls_files)
    ctx = ssl.create_default_context(cafile=cert)
    cluster = target.cluster(protocol_version=version, compression=compression, ssl_context=ctx)
    session = cluster.connect()
    make_table(session, "e2e", "tls", "k int PRIMARY KEY, v text")
    session.execute("INSERT INTO e2e.tls (k, v) VALUES (1, 'over tls')")
    assert session.execute("SELECT v FROM e2e.tls WHERE k = 1").one().v == "over tls"
    with pytest.raises(NoHostAvailable):
        target.cluster(protocol_version=version, connect_timeout=2,
                       control_connection_timeout=2).connect()
    target.assert_sluice_alive()


# --- other clients: cqlsh and scylla-driver -------------------------------------------------------

@pytest.mark.parametrize("route", routes(), indirect=True)
def test_cqlsh_scripted_session(target, workdir):
    cqlsh = shutil.which("cqlsh")
    assert cqlsh, "cqlsh is not installed (scripts/install-deps.sh installs it)"
    script = os.path.join(workdir, "session.cql")
    with open(script, "w") as f:
        f.write("CREATE KEYSPACE shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};\n"
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
    out = subprocess.run([cqlsh, "127.0.0.1", str(target.port), "-f", script],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "lamp" in text and "desk" in text and "(2 rows)" in text
    assert "11" in text and "(1 rows)" in text
    assert "system_schema" in text and "shop" in text
    assert "CREATE TABLE shop.items (" in text and "PRIMARY KEY (id)" in text
    assert "Traceback" not in out.stderr, out.stderr
    out = subprocess.run([cqlsh, "127.0.0.1", str(target.port), "-e", "SELECT * FROM shop.nope"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "unconfigured table nope" in out.stderr, out.stdout + out.stderr
    target.assert_sluice_alive()


def run_scylla_client(target, scenario, version, compression, keyspace, *options, timeout=90):
    """Tests/e2e/cql_scylla_client.py SCENARIO with the scylla-driver venv's Python (its own venv,
    build/venv-scylla, made by scripts/install-deps.sh: scylla-driver installs the same `cassandra`
    module as cassandra-driver). The script checks what it received and exits 1 with a traceback on
    the first check that fails."""
    assert os.path.exists(SCYLLA_PYTHON), \
        f"no scylla-driver venv at {SCYLLA_PYTHON} (scripts/install-deps.sh makes it)"
    out = subprocess.run([SCYLLA_PYTHON, os.path.join(HERE, "cql_scylla_client.py"), str(target.port),
                          str(version), str(compression), keyspace, "--scenario", scenario, *options],
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0 and f"scylla-driver OK {scenario} " in out.stdout, \
        out.stdout + out.stderr
    target.assert_sluice_alive()


@pytest.mark.parametrize("route", routes(), indirect=True)
@pytest.mark.parametrize("version,compression", [(4, "lz4"), (4, "snappy"), (5, "lz4")])
def test_scylla_driver(target, version, compression):
    """scylla-driver: DDL, USE, prepared statements, a forced re-prepare, paging and a BATCH."""
    run_scylla_client(target, "statements", version, compression,
                      f"e2e_scylla_v{version}_{compression}")


@pytest.mark.parametrize("route", routes("events"), indirect=True)
@pytest.mark.parametrize("version,compression", [(4, "snappy"), (5, "lz4")])
def test_scylla_driver_schema_change_events(target, version, compression):
    """scylla-driver: another cluster's CREATE KEYSPACE, CREATE TABLE and DROP TABLE arrive as
    SCHEMA_CHANGE events naming the keyspace and table on the watcher's control connection and on a
    driver connection that REGISTERed itself, and reach the watcher's metadata."""
    run_scylla_client(target, "events", version, compression, f"e2e_scylla_evt{version}")


@pytest.mark.parametrize("route", routes("sasl", extra=("sluice-own-auth",)), indirect=True)
@pytest.mark.parametrize("authenticator,version", [("password", 4), ("password", 5), ("dse", 5)])
def test_scylla_driver_sasl(own, route, authenticator, version):
    """scylla-driver with PlainTextAuthProvider against PasswordAuthenticator (or DSE's, which sends
    an AUTH_CHALLENGE first), on the routes of test_sasl_password_authenticator (through Sluice: the
    client's SASL exchange passed through, or Sluice's own auth with the sink's credentials): the
    right password is served, a wrong one and none are refused with AuthenticationFailed."""
    target, user, password = sasl_target(own, route, authenticator)
    run_scylla_client(target, "sasl", version, "lz4", f"e2e_scylla_sasl{version}",
                      "--user", user, "--password", password)


@pytest.mark.parametrize("route", routes("tls", extra=("sluice-tls-both-ends",)), indirect=True)
@pytest.mark.parametrize("version,compression", [(4, "snappy"), (5, "lz4")])
def test_scylla_driver_tls(own, route, tls_files, version, compression):
    """scylla-driver over TLS on the routes of test_tls: every connection's peer certificate is the
    test one, verified against it as the only CA (and the host name); a context with only the system
    CAs fails verification; a client without TLS is refused."""
    target = tls_target(own, route, tls_files)
    run_scylla_client(target, "tls", version, compression, f"e2e_scylla_tls{version}",
                      "--ca", tls_files[0])


@pytest.mark.parametrize("route", routes(), indirect=True)
@pytest.mark.parametrize("version,compression", [(4, "snappy"), (5, "lz4")])
def test_scylla_driver_200_clients(target, version, compression):
    """scylla-driver: 200 driver connections open at once, each writing its row and then having five
    SELECTs in flight together; 1,000 prepared INSERTs and 200 prepared SELECTs with 200 in flight
    from one session; every result checked."""
    run_scylla_client(target, "clients", version, compression,
                      f"e2e_scylla_many_v{version}_{compression}", timeout=120)


# --- a backend that dies, hangs or answers garbage ------------------------------------------------

def assert_answered_by_sluice(target, error):
    """Through Sluice the failure is a CQL ERROR frame Sluice wrote on the request's stream (OVERLOADED
    or SERVER_ERROR naming the sink), which the driver reports inside NoHostAvailable; not a
    connection Sluice dropped."""
    if target.sluice is not None:
        assert isinstance(error, NoHostAvailable), repr(error)
        assert "sluice: backend 'cass'" in str(error), repr(error)


def wait_until_served(target, deadline_s=10):
    """A new client is served again (Sluice may be backing off from the backend for a while)."""
    deadline = time.time() + deadline_s
    while True:
        cluster = target.cluster(protocol_version=4, connect_timeout=2, control_connection_timeout=2)
        try:
            return cluster.connect().execute("SELECT key FROM system.local").one().key
        except (NoHostAvailable, OperationTimedOut):
            if time.time() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.parametrize("route", routes("backend_failures"), indirect=True)
def test_backend_dies(own):
    """The backend is killed under a connected client: the client's requests fail with CQL errors
    (the driver's NoHostAvailable / OperationTimedOut) within seconds, a new client is refused the
    same way, Sluice stays up, and once the backend is back on its port clients are served again."""
    target = own()
    session = target.cluster(protocol_version=5).connect()
    assert session.execute("SELECT key FROM system.local").one().key == "local"
    target.backend.kill()
    start = time.time()
    with pytest.raises((NoHostAvailable, OperationTimedOut)) as e:
        session.execute("SELECT key FROM system.local", timeout=5)
    assert time.time() - start < 6
    assert_answered_by_sluice(target, e.value)
    with pytest.raises(NoHostAvailable) as e:
        target.cluster(protocol_version=4, connect_timeout=2, control_connection_timeout=2).connect()
    assert_answered_by_sluice(target, e.value)
    target.assert_sluice_alive()
    target.backend.start()
    assert wait_until_served(target) == "local"
    target.assert_sluice_alive()


@pytest.mark.parametrize("route", routes("backend_failures"), indirect=True)
def test_backend_never_answers_startup(own):
    """A backend that accepts connections and never answers STARTUP (--stall-startup): the driver's
    connect fails with NoHostAvailable within its timeouts, and Sluice stays up."""
    target = own(("--stall-startup",))
    start = time.time()
    with pytest.raises(NoHostAvailable) as e:
        target.cluster(protocol_version=4, connect_timeout=3, control_connection_timeout=3).connect()
    assert time.time() - start < 8
    assert_answered_by_sluice(target, e.value)
    target.assert_sluice_alive()


@pytest.mark.parametrize("route", routes("backend_failures"), indirect=True)
def test_backend_stops_answering(own):
    """SIGSTOP the backend under a connected client: its request fails (the driver's timeout, or
    Sluice's reply timeout as a CQL error) instead of hanging, Sluice stays up, and after SIGCONT
    clients are served again."""
    target = own()
    session = target.cluster(protocol_version=4).connect()
    assert session.execute("SELECT key FROM system.local").one().key == "local"
    target.backend.signal(signal.SIGSTOP)
    try:
        start = time.time()
        with pytest.raises((NoHostAvailable, OperationTimedOut)) as e:
            session.execute("SELECT key FROM system.local", timeout=4)
        assert time.time() - start < 6
        assert_answered_by_sluice(target, e.value)
        if target.sluice is not None:  # the connection the first request opened: reply_timeout_ms
            assert "no reply within 2000 ms" in str(e.value), repr(e.value)
        target.assert_sluice_alive()
    finally:
        target.backend.signal(signal.SIGCONT)
    assert wait_until_served(target) == "local"
    target.assert_sluice_alive()


@pytest.mark.parametrize("route", routes("backend_failures"), indirect=True)
@pytest.mark.parametrize("hook", ["GARBAGE", "CLOSE"])
def test_backend_answers_garbage_or_closes(own, hook):
    """TESTBACKEND GARBAGE makes the backend answer with bytes that are not a CQL frame, TESTBACKEND
    CLOSE makes it close the connection without an answer: the client gets an error at once (not
    after a timeout), Sluice stays up, and the next client is served."""
    target = own()
    session = target.cluster(protocol_version=5).connect()
    start = time.time()
    with pytest.raises(Exception) as e:
        session.execute(f"TESTBACKEND {hook}", timeout=5)
    assert not isinstance(e.value, OperationTimedOut) and time.time() - start < 3, repr(e.value)
    assert_answered_by_sluice(target, e.value)
    assert target.backend.stats()[f"testbackend_{hook.lower()}"] == 1
    target.assert_sluice_alive()
    assert wait_until_served(target) == "local"
    target.assert_sluice_alive()
