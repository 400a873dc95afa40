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
