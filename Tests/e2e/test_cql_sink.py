"""The cassandra sink end to end: the DataStax python driver through Sluice (a cassandra source and
sink) against the CQL test backend (Tests/cql/backend, a test backend, not Cassandra): USE, prepared
statements re-prepared after the backend forgot them (SIGUSR1), schema events, and dead, hanging and
garbage-sending backends answered with CQL errors while Sluice stays up. The broad driver suite is
in the other test_cql_*.py files.
"""
import logging
import signal
import subprocess
import sys
import time

import pytest
from cassandra import OperationTimedOut
from cassandra.cluster import Cluster, NoHostAvailable
from cassandra.policies import RoundRobinPolicy

from conftest import ROOT, free_port, wait_for_port


class CQLBackend:
    """The CQL test backend as a process on a free loopback port."""

    def __init__(self, *extra):
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "Tests.cql.backend", "--port", str(self.port), *extra],
                                     cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, process=self.proc)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


@pytest.fixture
def cql_backend_factory():
    started = []

    def make(*extra):
        backend = CQLBackend(*extra)
        started.append(backend)
        return backend

    yield make
    for b in started:
        b.stop()


def cql_config(backend_port, reply_timeout_ms=10000):
    return f"""
sinks:
  cass: {{ cassandra: {{ address: 127.0.0.1:{backend_port}, connect_timeout_ms: 1000, reply_timeout_ms: {reply_timeout_ms} }} }}
chains:
  cql_main: [ {{ sink: cass }} ]
sources:
  - cassandra: {{ listen: 127.0.0.1:{{PORT}}, chain: cql_main }}
"""


def connect(port, **kw):
    cluster = Cluster(["127.0.0.1"], port=port, load_balancing_policy=RoundRobinPolicy(), connect_timeout=5,
                      control_connection_timeout=5, **kw)
    return cluster, cluster.connect()


def stats(port):
    """The test backend's counters, read directly (not through Sluice)."""
    cluster, session = connect(port)
    try:
        return {row.name: row.value for row in session.execute("TESTBACKEND STATS")}
    finally:
        cluster.shutdown()


KEYSPACE = "CREATE KEYSPACE {} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"


def test_use_keyspace_is_per_client(cql_backend_factory, sluice_factory):
    backend = cql_backend_factory()
    proxy = sluice_factory(cql_config(backend.port))
    cluster, session = connect(proxy.port)
    other_cluster, other = connect(proxy.port)
    try:
        session.execute(KEYSPACE.format("shop"))
        session.execute("USE shop")
        session.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
        session.execute("INSERT INTO items (id, name) VALUES (1, 'lamp')")
        assert [r.name for r in session.execute("SELECT name FROM items WHERE id = 1")] == ["lamp"]
        # Another client that did not USE shop has no keyspace for the unqualified name...
        with pytest.raises(Exception) as refused:
            other.execute("SELECT name FROM items WHERE id = 1")
        assert "keyspace" in str(refused.value).lower()
        # ...and qualified names work for it.
        assert [r.name for r in other.execute("SELECT name FROM shop.items WHERE id = 1")] == ["lamp"]
        with pytest.raises(Exception) as missing:
            other.execute("USE nosuch")
        assert "nosuch" in str(missing.value)
    finally:
        cluster.shutdown()
        other_cluster.shutdown()
    assert proxy.alive()


@pytest.mark.parametrize("version", [4, 5])
def test_prepared_statements_survive_the_backend_forgetting_them(cql_backend_factory, sluice_factory, version, caplog):
    caplog.set_level(logging.DEBUG, logger="cassandra.cluster")
    backend = cql_backend_factory()
    proxy = sluice_factory(cql_config(backend.port))
    cluster, session = connect(proxy.port, protocol_version=version)
    try:
        session.execute(KEYSPACE.format("ks"))
        session.execute("CREATE TABLE ks.kv (k int PRIMARY KEY, v text)")
        insert = session.prepare("INSERT INTO ks.kv (k, v) VALUES (?, ?)")
        select = session.prepare("SELECT v FROM ks.kv WHERE k = ?")
        session.execute(insert, (1, "one"))
        backend.proc.send_signal(signal.SIGUSR1)  # the backend forgets every prepared statement
        time.sleep(0.2)
        session.execute(insert, (2, "two"))
        assert [r.v for r in session.execute(select, (2,))] == ["two"]
        assert [r.v for r in session.execute(select, (1,))] == ["one"]
    finally:
        cluster.shutdown()
    # The backend did answer UNPREPARED, to Sluice, which prepared again: the driver never saw it
    # (it would have re-prepared itself, and said so).
    assert not [r for r in caplog.records if "Re-preparing" in r.getMessage()]
    assert stats(backend.port)["unprepared"] >= 1
    assert proxy.alive()


def test_schema_events_reach_the_driver(cql_backend_factory, sluice_factory):
    backend = cql_backend_factory()
    proxy = sluice_factory(cql_config(backend.port))
    cluster, session = connect(proxy.port, schema_event_refresh_window=0)
    direct, direct_session = connect(backend.port)
    try:
        # The change is made directly at the backend: only its SCHEMA_CHANGE event, through Sluice,
        # tells the proxied driver about it.
        direct_session.execute(KEYSPACE.format("evks"))
        deadline = time.time() + 10
        while "evks" not in cluster.metadata.keyspaces and time.time() < deadline:
            time.sleep(0.1)
        assert "evks" in cluster.metadata.keyspaces
    finally:
        cluster.shutdown()
        direct.shutdown()
    assert stats(backend.port)["events"] >= 1
    assert proxy.alive()


def test_dead_backend_gets_cql_errors(sluice_factory):
    proxy = sluice_factory(cql_config(free_port()))
    started = time.time()
    with pytest.raises(NoHostAvailable):
        connect(proxy.port)
    assert time.time() - started < 10
    assert proxy.alive()


def test_hanging_backend_gets_cql_errors(cql_backend_factory, sluice_factory):
    backend = cql_backend_factory("--stall-startup")
    proxy = sluice_factory(cql_config(backend.port, reply_timeout_ms=500))
    with pytest.raises((NoHostAvailable, OperationTimedOut)):
        connect(proxy.port)
    assert proxy.alive()


def test_garbage_from_backend_fails_the_request_not_sluice(cql_backend_factory, sluice_factory):
    backend = cql_backend_factory()
    proxy = sluice_factory(cql_config(backend.port))
    cluster, session = connect(proxy.port)
    try:
        with pytest.raises(Exception) as failed:
            session.execute("TESTBACKEND GARBAGE")
        assert "SERVER_ERROR" in str(failed.value) or "Server error" in str(failed.value) or "sluice" in str(failed.value)
        # The next request gets a new backend connection.
        assert list(session.execute("SELECT release_version FROM system.local"))
    finally:
        cluster.shutdown()
    assert proxy.alive()


# --- one client's statements must not change what the others share --------------------------------

# One event loop: every client shares the same backend connections.
ONE_LOOP = ("--threads", "1")


def test_prepare_of_use_is_refused(cql_backend_factory, sluice_factory):
    """A prepared USE, executed, would switch the keyspace of the connection every client of that
    keyspace shares: Sluice refuses the PREPARE with INVALID and the client's keyspace is unchanged."""
    from cassandra.protocol import InvalidRequestException, PrepareMessage, ResultMessage
    from conftest import CQLRawConnection
    backend = cql_backend_factory()
    proxy = sluice_factory(cql_config(backend.port), extra_args=ONE_LOOP)
    with CQLRawConnection(proxy.port) as a:
        a.startup()
        a.query(KEYSPACE.format("ks"))
        a.query(KEYSPACE.format("other"))
        a.query("CREATE TABLE ks.t (k int PRIMARY KEY)")
        assert a.query("USE ks").new_keyspace == "ks"
        refused = a.request(PrepareMessage("USE other"))
        assert isinstance(refused, InvalidRequestException), refused
        assert "USE cannot be prepared through this proxy" in str(refused.message), refused
        assert isinstance(a.query("SELECT k FROM t"), ResultMessage), "still in ks"
    assert proxy.alive()


def test_a_use_prepared_elsewhere_does_not_switch_other_clients(cql_backend_factory, sluice_factory):
    """A USE prepared directly at the backend and executed through Sluice: its client gets the
    backend's SET_KEYSPACE, and the shared connection it ran on is retired, so another client of ks
    keeps running in ks (it ran in 'other' when the switched connection stayed shared)."""
    from cassandra import ConsistencyLevel
    from cassandra.protocol import ExecuteMessage, PrepareMessage, ResultMessage
    from conftest import CQLRawConnection
    backend = cql_backend_factory()
    proxy = sluice_factory(cql_config(backend.port), extra_args=ONE_LOOP)
    with CQLRawConnection(backend.port) as direct:
        direct.startup()
        direct.query(KEYSPACE.format("ks"))
        direct.query(KEYSPACE.format("other"))
        direct.query("CREATE TABLE ks.t (k int PRIMARY KEY)")
        use_other = direct.request(PrepareMessage("USE other")).query_id
    with CQLRawConnection(proxy.port) as a, CQLRawConnection(proxy.port) as b:
        a.startup()
        b.startup()
        assert a.query("USE ks").new_keyspace == "ks"
        assert b.query("USE ks").new_keyspace == "ks"
        switched = a.request(ExecuteMessage(use_other, [], ConsistencyLevel.ONE))
        assert isinstance(switched, ResultMessage) and switched.new_keyspace == "other", switched
        for _ in range(3):
            rows = b.query("SELECT k FROM t")
            assert isinstance(rows, ResultMessage), rows
    assert proxy.alive()


# --- the session's registered event types (a session fact) ------------------------------------------

def next_event(connection, timeout=5):
    """The next EVENT frame on a raw connection, or None when none arrives within `timeout`."""
    import socket as sockets
    from cassandra.protocol import EventMessage
    connection.sock.settimeout(timeout)
    try:
        frame = connection.receive()
    except sockets.timeout:
        return None
    finally:
        connection.sock.settimeout(10)
    assert isinstance(frame, EventMessage) and frame.stream_id == -1, frame
    return frame


def schema_events_until(connection, keyspace):
    """The SCHEMA_CHANGE events up to the one that created `keyspace` (None: it never came)."""
    while True:
        event = next_event(connection)
        if event is None:
            return None
        if event.event_args.get("keyspace") == keyspace:
            return event.event_args


def test_registered_events_reach_the_client_after_a_reload_that_changes_its_sink(cql_backend_factory, sluice_factory):
    """A client REGISTERs for SCHEMA_CHANGE, then a reload changes its sink (reply_timeout_ms), so
    the client's route to it is made anew on the new generation. The registered types are a session
    fact that route follows: the client still gets the backend's events, whether it sent a request
    after the reload (its route made by that request) or stayed idle (the route made when it moved).
    Before the fact, both got nothing after the reload."""
    from cassandra.protocol import ReadyMessage, RegisterMessage, ResultMessage
    from conftest import CQLRawConnection
    from test_reload import Reloads
    backend = cql_backend_factory()
    proxy = sluice_factory(cql_config(backend.port))
    reloads = Reloads(proxy)
    with CQLRawConnection(proxy.port) as active, CQLRawConnection(proxy.port) as idle, \
            CQLRawConnection(backend.port) as direct:
        for c in (active, idle, direct):
            c.startup()
        for c in (active, idle):
            assert isinstance(c.request(RegisterMessage(["SCHEMA_CHANGE"])), ReadyMessage)
        direct.query(KEYSPACE.format("before_reload"))
        for c in (active, idle):
            assert schema_events_until(c, "before_reload") == {
                "change_type": "CREATED", "target_type": "KEYSPACE", "keyspace": "before_reload"}
        reloads.reload(cql_config(backend.port, reply_timeout_ms=9000))
        # Its reply means the active client runs on the new generation; the idle one moves when told.
        assert isinstance(active.query("SELECT key FROM system.local"), ResultMessage)
        time.sleep(0.5)
        direct.query(KEYSPACE.format("after_reload"))
        for name, c in (("active", active), ("idle", idle)):
            assert schema_events_until(c, "after_reload") == {
                "change_type": "CREATED", "target_type": "KEYSPACE", "keyspace": "after_reload"}, \
                f"the {name} client got no event after the reload"
    assert proxy.alive()


@pytest.mark.parametrize("step", [
    "tee: { target: shadow, on_mismatch: log }",  # the REGISTER goes to both sinks
    "redirect: { target: shadow, tables: [ks.hot] }",  # the second route is made by a redirected query
])
def test_each_event_reaches_the_client_once_when_two_sinks_name_one_backend(cql_backend_factory, sluice_factory, step):
    """Two sinks of the client's chain name the same backend (a tee or a redirect whose target is the
    main sink's backend under another name): the session has two routes to it, each on the event
    connection of its sink, and the backend sends each event on both. The client gets it once.
    Before: every SCHEMA_CHANGE reached the client twice."""
    from cassandra.protocol import ReadyMessage, RegisterMessage, ResultMessage
    from conftest import CQLRawConnection, PLUGINS
    backend = cql_backend_factory()
    sink = "{{ cassandra: {{ address: 127.0.0.1:{}, connect_timeout_ms: 1000, reply_timeout_ms: 5000 }} }}".format(backend.port)
    proxy = sluice_factory(f"""
plugins:
  directory: {PLUGINS}
sinks:
  cass: {sink}
  shadow: {sink}
chains:
  cql_main: [ {{ {step} }}, {{ sink: cass }} ]
sources:
  - cassandra: {{ listen: 127.0.0.1:{{PORT}}, chain: cql_main }}
""")
    with CQLRawConnection(proxy.port) as client, CQLRawConnection(backend.port) as direct:
        client.startup()
        direct.startup()
        direct.query(KEYSPACE.format("ks"))
        direct.query("CREATE TABLE ks.hot (k int PRIMARY KEY, v text)")
        assert isinstance(client.request(RegisterMessage(["SCHEMA_CHANGE"])), ReadyMessage)
        # Both routes exist: the tee's got the REGISTER; redirect's is made by a query on ks.hot.
        assert isinstance(client.query("SELECT k FROM ks.hot"), ResultMessage)
        time.sleep(0.3)  # a route made by the query registers on its event connection by itself
        direct.query(KEYSPACE.format("once"))
        direct.query(KEYSPACE.format("marker"))
        seen = []
        while True:
            event = next_event(client)
            assert event is not None, f"no event for keyspace 'marker' (got {seen})"
            seen.append(event.event_args.get("keyspace"))
            if seen[-1] == "marker":
                break
        while (late := next_event(client, timeout=1)) is not None:  # duplicates come late too
            seen.append(late.event_args.get("keyspace"))
        assert seen.count("once") == 1 and seen.count("marker") == 1, seen
    assert proxy.alive()


# --- the session's user on a passed-through sign-in -------------------------------------------------

@pytest.mark.parametrize("auth,credentials,user", [
    ("passthrough", ("alice", "s3cret"), "alice"),  # the backend accepted the client's own credentials
    ("{ username: app, password: app-pw }", ("app", "app-pw"), "app"),  # Sluice checked them
])
def test_transforms_see_the_user_the_client_signed_in_as(cql_backend_factory, sluice_factory, auth, credentials, user):
    """SLUICE_PROPERTY_USER on CQL: cql-probe (Tests/fixtures/plugins) answers a QUERY WHOAMI with
    the property it reads. Whether the backend accepted the client's credentials (auth: passthrough)
    or Sluice checked them itself, the transform sees the user name (before: '-' on passthrough)."""
    from cassandra.auth import PlainTextAuthProvider
    from conftest import FIXTURES
    backend = cql_backend_factory("--user", "alice:s3cret")
    proxy = sluice_factory(f"""
plugins:
  directory: {FIXTURES}
sinks:
  cass: {{ cassandra: {{ address: 127.0.0.1:{backend.port}, username: alice, password: s3cret }} }}
chains:
  cql_main: [ {{ cql-probe: {{ whoami: true }} }}, {{ sink: cass }} ]
sources:
  - cassandra: {{ listen: 127.0.0.1:{{PORT}}, chain: cql_main, auth: {auth} }}
""")
    cluster, session = connect(proxy.port, auth_provider=PlainTextAuthProvider(*credentials))
    try:
        assert [row.user for row in session.execute("WHOAMI")] == [user]
        assert session.execute("SELECT key FROM system.local").one().key == "local"
    finally:
        cluster.shutdown()
    assert proxy.alive()


# --- the sink's own credentials refused ---------------------------------------------------------------

def backend_stats_signed_in(port, user, password):
    """The test backend's counters, read on one raw connection signed in as user (counted too)."""
    from cassandra.protocol import AuthResponseMessage, AuthSuccessMessage, AuthenticateMessage, StartupMessage
    from conftest import CQLRawConnection
    with CQLRawConnection(port) as direct:
        assert isinstance(direct.request(StartupMessage(cqlversion="3.0.0", options={})), AuthenticateMessage)
        token = b"\x00" + user.encode() + b"\x00" + password.encode()
        assert isinstance(direct.request(AuthResponseMessage(token)), AuthSuccessMessage)
        return {name: value for name, value in direct.query("TESTBACKEND STATS").parsed_rows}


@pytest.mark.parametrize("sink_credentials,backend_says", [
    ("username: alice, password: wrong, ", "BAD_CREDENTIALS"),  # refused by the backend
    ("", "requires authentication"),  # the sink has none and the backend asks for them
])
def test_refused_sink_credentials_are_a_clear_error_that_drivers_do_not_retry(cql_backend_factory, sluice_factory,
                                                                              sink_credentials, backend_says):
    """The backend refuses the credentials Sluice signs in with (the sink's, `auth` none on the
    source): every request gets ERROR BAD_CREDENTIALS (drivers raise it to the application; the
    DataStax driver retries OVERLOADED and SERVER_ERROR on the next host) naming the sink and saying
    its configured credentials were refused. Sluice logs the refusal once per connect attempt, not
    per request (the sink backs off between attempts)."""
    from cassandra.protocol import ErrorMessage
    from conftest import CQLRawConnection
    backend = cql_backend_factory("--user", "alice:s3cret")
    proxy = sluice_factory(f"""
sinks:
  cass: {{ cassandra: {{ address: 127.0.0.1:{backend.port}, {sink_credentials}connect_timeout_ms: 1000 }} }}
chains:
  cql_main: [ {{ sink: cass }} ]
sources:
  - cassandra: {{ listen: 127.0.0.1:{{PORT}}, chain: cql_main }}
""")
    requests = 10
    before = backend_stats_signed_in(backend.port, "alice", "s3cret")["connections"]
    with CQLRawConnection(proxy.port) as client:
        client.startup()  # answered by Sluice
        for _ in range(requests):
            refused = client.query("SELECT key FROM system.local")
            assert isinstance(refused, ErrorMessage), refused
            assert refused.code == 0x0100, (hex(refused.code), refused.message)
            assert refused.message.startswith(
                f"sluice: sink 'cass' (127.0.0.1:{backend.port}): the backend refused the credentials "
                "configured for the sink"), refused.message
            assert backend_says in refused.message, refused.message
    attempts = backend_stats_signed_in(backend.port, "alice", "s3cret")["connections"] - before - 1
    logged = proxy.output().count("refused the credentials configured for the sink")
    assert 1 <= attempts < requests, attempts
    assert logged == attempts, (logged, attempts, proxy.output()[-3000:])
    assert proxy.alive()


# --- the reply timeout per request ----------------------------------------------------------------------

def test_a_late_request_times_out_alone_and_the_shared_connection_goes_on(cql_backend_factory, sluice_factory):
    """One event loop, so both clients share one backend connection; reply_timeout_ms 1000. Client A's
    request takes the backend 3 s; meanwhile client B sends requests of 300 ms one after another.
    A alone gets SERVER_ERROR 'no reply to this request within 1000 ms' on its stream; every request
    of B succeeds (before, the timeout closed the shared connection and failed B's request in
    flight too). A's stream id stays reserved until the backend's late reply arrives, which reaches
    no one: A's next request on the same client stream gets its own reply."""
    import threading
    from cassandra.protocol import ErrorMessage, ResultMessage
    from conftest import CQLRawConnection
    backend = cql_backend_factory()
    proxy = sluice_factory(cql_config(backend.port, reply_timeout_ms=1000), extra_args=ONE_LOOP)
    with CQLRawConnection(proxy.port) as a, CQLRawConnection(proxy.port) as b:
        a.startup()
        b.startup()
        assert isinstance(b.query("SELECT key FROM system.local"), ResultMessage)  # the connection is up
        started = time.time()
        b_replies = []

        def client_b():
            while time.time() - started < 2.6:
                b_replies.append(b.query("TESTBACKEND SLEEP 300"))

        runner = threading.Thread(target=client_b)
        runner.start()
        late = a.request(QueryMessageOf("TESTBACKEND SLEEP 3000"))
        waited = time.time() - started
        runner.join()
        assert len(b_replies) >= 6 and all(isinstance(r, ResultMessage) for r in b_replies), b_replies
        assert isinstance(late, ErrorMessage) and late.code == 0x0000, late
        assert "no reply to this request within 1000 ms" in late.message, late.message
        assert 0.9 < waited < 2.0, waited
        time.sleep(max(0, 3.3 - (time.time() - started)))  # the backend's late reply has arrived
        a.next_stream -= 1  # the same client stream as the late request
        again = a.query("SELECT key FROM system.local")
        assert isinstance(again, ResultMessage) and again.parsed_rows == [("local",)], again
    assert "closing the shared connection" not in proxy.output(), proxy.output()[-2000:]
    assert "1 request(s) got no reply within 1000 ms" in proxy.output(), proxy.output()[-2000:]
    assert proxy.alive()


def QueryMessageOf(text):
    from cassandra import ConsistencyLevel
    from cassandra.protocol import QueryMessage
    return QueryMessage(text, ConsistencyLevel.ONE)


def _error_seen(connection, text):
    """The backend's ERROR for QUERY `text`, as the driver's protocol code decodes it: its class,
    code, message and the code's own fields (consistency, received/required, write type, …)."""
    reply = connection.query(text)
    return type(reply).__name__, reply.code, reply.summary_msg(), getattr(reply, "info", None)


def test_every_error_code_reaches_the_client_as_the_backend_sent_it(cql_backend_factory, sluice_factory):
    """Each ERROR code the protocol defines (UNPREPARED aside: Sluice answers that one by
    re-preparing; PROTOCOL_ERROR and BAD_CREDENTIALS included) comes through on the request's
    stream with its message and its code's fields, as it comes directly."""
    from conftest import CQLRawConnection
    from Tests.cql.backend.results import ERROR_NAMES
    backend = cql_backend_factory()
    proxy = sluice_factory(cql_config(backend.port))
    names = sorted(name for name in ERROR_NAMES if name != "UNPREPARED")
    assert len(names) == 19  # every code of native_protocol_v5.spec §9 but UNPREPARED
    with CQLRawConnection(backend.port) as direct, CQLRawConnection(proxy.port) as through:
        direct.startup()
        through.startup()
        for name in names:
            text = f"TESTBACKEND ERROR {name} the {name.lower()} case"
            seen = _error_seen(through, text)
            assert seen == _error_seen(direct, text), name
            assert seen[0] != "ResultMessage" and f"the {name.lower()} case" in seen[2], seen
        # The connection is still in step after every kind of error.
        assert [tuple(r) for r in through.query("SELECT key FROM system.local").parsed_rows] == [("local",)]
    assert proxy.alive()


def test_thousands_of_streams_in_flight_on_one_connection(cql_backend_factory, sluice_factory):
    """3,000 requests written back to back on one client connection, each on its own stream id,
    before any reply is read: every stream gets exactly its own reply (Sluice remaps them onto its
    backend connection and back)."""
    from cassandra import ConsistencyLevel
    from cassandra.protocol import QueryMessage
    from conftest import CQLRawConnection
    backend = cql_backend_factory()
    proxy = sluice_factory(cql_config(backend.port))
    count = 3000
    with CQLRawConnection(proxy.port, timeout=30) as c:
        c.startup()
        sent = {}
        for stream in range(1, count + 1):
            # Each asks for a warning of its own back: a reply on the wrong stream would show it.
            c.send(QueryMessage(f"TESTBACKEND WARN stream {stream}", ConsistencyLevel.ONE), stream=stream)
            sent[stream] = f"stream {stream}"
        answered = {}
        for _ in range(count):
            reply = c.receive()
            assert reply is not None, f"connection closed after {len(answered)} replies"
            assert reply.stream_id not in answered, reply.stream_id
            answered[reply.stream_id] = reply.warnings
        assert answered == {s: [text] for s, text in sent.items()}
    assert proxy.alive()
