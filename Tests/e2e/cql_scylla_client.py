"""Run by test_cql_drivers.py with the Python of the scylla-driver venv (build/venv-scylla): scylla-driver
and cassandra-driver both install the `cassandra` module, so they cannot share one environment.

usage: cql_scylla_client.py PORT PROTOCOL_VERSION COMPRESSION(lz4|snappy|None) KEYSPACE
                            [--scenario statements|events|sasl|tls|clients]
                            [--user USER --password PASSWORD] [--ca CERT_FILE]

Connects to one node at 127.0.0.1:PORT (the test backend, or Sluice in front of it), checks the
negotiated version and compression on its connections, runs the scenario, and prints
"scylla-driver OK <scenario>" (any failed check exits with status 1 and a traceback):

- statements (the default): DDL, USE, prepared statements, a forced re-prepare, paging across pages,
  a BATCH of prepared and simple statements.
- events: a watcher cluster (its control connection REGISTERs for SCHEMA_CHANGE) and a driver
  connection that REGISTERs itself; another cluster's CREATE KEYSPACE, CREATE TABLE and DROP TABLE
  must arrive as SCHEMA_CHANGE events (keyspace and table named) on both and reach the watcher's
  metadata.
- sasl: PlainTextAuthProvider(--user, --password) is served; the same user with a wrong password and
  a client without credentials are refused with AuthenticationFailed.
- tls: TLS with a context that trusts only --ca and checks the host name: the peer certificate is the
  test one; a context trusting only the system CAs fails verification; a client without TLS is
  refused.
- clients: 200 driver connections (made by the cluster's own connection factory, so with its
  handshake, compression and v5 framing) open at once, each writing its own row and then having five
  SELECTs in flight at the same time; then 1,000 prepared INSERTs and 200 prepared SELECTs with 200
  in flight from one session (execute_concurrent_with_args); every result checked.
"""
import argparse
import os
import ssl
import sys
import threading
import time
import traceback

import cassandra
from cassandra import AuthenticationFailed, ConsistencyLevel
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.policies import RoundRobinPolicy
from cassandra.protocol import QueryMessage, ResultMessage
from cassandra.query import BatchStatement, BatchType, SimpleStatement

parser = argparse.ArgumentParser()
parser.add_argument("port", type=int)
parser.add_argument("version", type=int)
parser.add_argument("compression")
parser.add_argument("keyspace")
parser.add_argument("--scenario", default="statements",
                    choices=["statements", "events", "sasl", "tls", "clients"])
parser.add_argument("--user")
parser.add_argument("--password")
parser.add_argument("--ca")
args = parser.parse_args()
port, version, keyspace = args.port, args.version, args.keyspace
compression = False if args.compression == "None" else args.compression
KS = ("CREATE KEYSPACE IF NOT EXISTS {} WITH replication = "
      "{{'class': 'SimpleStrategy', 'replication_factor': 1}}")
clusters = []


def make_cluster(**kwargs):
    """A cluster with the one contact point, the version and compression asked for."""
    kwargs.setdefault("connect_timeout", 5)
    kwargs.setdefault("control_connection_timeout", 5)
    cluster = Cluster(["127.0.0.1"], port=port, protocol_version=version, compression=compression,
                      execution_profiles={EXEC_PROFILE_DEFAULT: ExecutionProfile(
                          load_balancing_policy=RoundRobinPolicy())}, **kwargs)
    clusters.append(cluster)
    return cluster


def connect(**kwargs):
    """A session, after checking the version and compression its control connection negotiated."""
    cluster = make_cluster(**kwargs)
    session = cluster.connect()
    assert cluster.protocol_version == version, cluster.protocol_version
    check_connection(cluster.control_connection._connection)
    return cluster, session


def check_connection(connection):
    assert (connection.compressor is not None) == bool(compression), connection.compressor
    assert connection._is_checksumming_enabled == (version >= 5)


def refused(**kwargs):
    """The errors of a connect that must fail (NoHostAvailable), by host."""
    try:
        make_cluster(**kwargs).connect()
    except NoHostAvailable as e:
        assert e.errors, e
        return list(e.errors.values())
    raise AssertionError(f"connected with {kwargs}")


def statements():
    cluster, session = connect()
    session.execute(KS.format(keyspace))
    session.execute(f"USE {keyspace}")
    session.execute("CREATE TABLE IF NOT EXISTS t (k int, c int, v text, PRIMARY KEY (k, c))")
    insert = session.prepare("INSERT INTO t (k, c, v) VALUES (?, ?, ?)")
    for c in range(30):
        session.execute(insert, (1, c, f"v{c}"))
    session.execute("TESTBACKEND FORGET PREPARED")
    session.execute(insert, (1, 30, "v30"))  # UNPREPARED at the backend; re-prepared by someone
    batch = BatchStatement(batch_type=BatchType.LOGGED)
    batch.add(insert, (2, 0, "b0"))
    batch.add(SimpleStatement("INSERT INTO t (k, c, v) VALUES (2, 1, 'b1')"))
    session.execute(batch)
    paged = SimpleStatement("SELECT c FROM t WHERE k = 1", fetch_size=8)
    first = session.execute(paged)
    assert first.has_more_pages and [r.c for r in first.current_rows] == list(range(8))
    second = session.execute(paged, paging_state=first.paging_state)
    assert [r.c for r in second.current_rows] == list(range(8, 16))
    assert [r.c for r in session.execute(paged)] == list(range(31))
    assert [r.v for r in session.execute(f"SELECT v FROM {keyspace}.t WHERE k = 2")] == ["b0", "b1"]


def wait_for(condition, what, timeout=10):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"never: {what}"
        time.sleep(0.05)


def events():
    watcher, _ = connect(schema_event_refresh_window=0)
    assert keyspace not in watcher.metadata.keyspaces
    # What the watcher's control connection is handed (SCHEMA_CHANGE events, by the driver's own
    # REGISTER), recorded before the driver refreshes its metadata from them.
    control = watcher.control_connection
    seen_by_control = []
    handle = control._handle_schema_change

    def record(event):
        seen_by_control.append(dict(event))
        handle(event)
    control._handle_schema_change = record
    # A connection of the driver's own that REGISTERs for SCHEMA_CHANGE itself.
    listener = watcher.connection_factory(control._connection.endpoint)
    check_connection(listener)
    seen_by_listener = []
    listener.register_watchers({"SCHEMA_CHANGE": lambda event: seen_by_listener.append(dict(event))},
                               register_timeout=5)

    _, actor = connect()  # another client: its DDL must reach the watcher
    actor.execute(KS.format(keyspace))
    actor.execute(f"CREATE TABLE {keyspace}.evt (k int PRIMARY KEY, v int)")
    wait_for(lambda: keyspace in watcher.metadata.keyspaces
             and "evt" in watcher.metadata.keyspaces[keyspace].tables,
             "the watcher's metadata saw the new table")
    actor.execute(f"DROP TABLE {keyspace}.evt")
    wait_for(lambda: "evt" not in watcher.metadata.keyspaces[keyspace].tables,
             "the watcher's metadata saw the table dropped")
    want = [{"change_type": "CREATED", "target_type": "KEYSPACE", "keyspace": keyspace},
            {"change_type": "CREATED", "target_type": "TABLE", "keyspace": keyspace, "table": "evt"},
            {"change_type": "DROPPED", "target_type": "TABLE", "keyspace": keyspace, "table": "evt"}]
    for name, seen in (("control connection", seen_by_control), ("listener", seen_by_listener)):
        wait_for(lambda: len(seen) >= 3, f"three events on the {name}: {seen}")
        assert seen == want, (name, seen)
    listener.close()


def sasl():
    _, session = connect(auth_provider=PlainTextAuthProvider(args.user, args.password))
    assert session.execute("SELECT key FROM system.local").one().key == "local"
    session.execute(KS.format(keyspace))
    session.execute(f"CREATE TABLE IF NOT EXISTS {keyspace}.t (k int PRIMARY KEY, v text)")
    session.execute(f"INSERT INTO {keyspace}.t (k, v) VALUES (1, 'authenticated')")
    assert session.execute(f"SELECT v FROM {keyspace}.t WHERE k = 1").one().v == "authenticated"
    errors = refused(auth_provider=PlainTextAuthProvider(args.user, args.password + "-wrong"))
    assert any(isinstance(e, AuthenticationFailed) for e in errors), errors
    errors = refused()  # no credentials at all
    assert any(isinstance(e, AuthenticationFailed) for e in errors), errors


def tls():
    trusted = ssl.create_default_context(cafile=args.ca)  # CERT_REQUIRED, checks the host name
    cluster, session = connect(ssl_context=trusted)
    connections = [cluster.control_connection._connection]
    for pool in session._pools.values():
        connections.extend(pool.get_connections())
    with open(args.ca) as f:
        want = ssl.PEM_cert_to_DER_cert(f.read())
    for connection in connections:
        sock = connection._socket
        assert isinstance(sock, ssl.SSLSocket) and sock.version().startswith("TLS"), sock
        assert sock.getpeercert(binary_form=True) == want, "not the test certificate"
    session.execute(KS.format(keyspace))
    session.execute(f"CREATE TABLE IF NOT EXISTS {keyspace}.t (k int PRIMARY KEY, v text)")
    session.execute(f"INSERT INTO {keyspace}.t (k, v) VALUES (1, 'over tls')")
    assert session.execute(f"SELECT v FROM {keyspace}.t WHERE k = 1").one().v == "over tls"
    errors = refused(ssl_context=ssl.create_default_context())  # the system CAs only
    assert any("CERTIFICATE_VERIFY_FAILED" in str(e) for e in errors), errors
    refused(connect_timeout=2, control_connection_timeout=2)  # no TLS


def clients():
    cluster, session = connect()
    session.execute(KS.format(keyspace))
    session.execute(f"CREATE TABLE IF NOT EXISTS {keyspace}.many (k int PRIMARY KEY, v text)")
    endpoint = cluster.control_connection._connection.endpoint
    connections = [cluster.connection_factory(endpoint) for _ in range(200)]
    try:
        for c in connections:
            check_connection(c)
        ok = ConsistencyLevel.ONE
        for i, c in enumerate(connections):
            reply = c.wait_for_response(
                QueryMessage(f"INSERT INTO {keyspace}.many (k, v) VALUES ({i}, 'client {i}')", ok),
                timeout=10)
            assert isinstance(reply, ResultMessage), reply
        # Every connection sends its five SELECTs at the same moment, then waits for their replies.
        start, replies = threading.Barrier(len(connections)), [None] * len(connections)

        def five(i):
            start.wait(timeout=30)
            replies[i] = connections[i].wait_for_responses(
                *[QueryMessage(f"SELECT v FROM {keyspace}.many WHERE k = {(i + j) % 200}", ok)
                  for j in range(5)], timeout=30)
        threads = [threading.Thread(target=five, args=(i,)) for i in range(len(connections))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for i, got in enumerate(replies):
            assert got is not None, f"client {i} got no replies"
            assert [r.parsed_rows for r in got] == \
                [[(f"client {(i + j) % 200}",)] for j in range(5)], (i, got)
    finally:
        for c in connections:
            c.close()
    insert = session.prepare(f"INSERT INTO {keyspace}.many (k, v) VALUES (?, ?)")
    results = execute_concurrent_with_args(session, insert, [(1000 + i, str(i)) for i in range(1000)],
                                           concurrency=200)
    assert len(results) == 1000 and all(ok for ok, _ in results), [r for r in results if not r[0]][:3]
    select = session.prepare(f"SELECT v FROM {keyspace}.many WHERE k = ?")
    results = execute_concurrent_with_args(session, select, [(1000 + i,) for i in range(200)],
                                           concurrency=200)
    assert [[r.v for r in rows] for _, rows in results] == [[str(i)] for i in range(200)]
    assert session.execute(f"SELECT COUNT(*) FROM {keyspace}.many").one().count == 1200


try:
    {"statements": statements, "events": events, "sasl": sasl, "tls": tls,
     "clients": clients}[args.scenario]()
    for c in clusters:
        c.shutdown()
except BaseException:
    traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)
print(f"scylla-driver OK {args.scenario} ({cassandra.__version__}, protocol v{version}, "
      f"compression {compression})", flush=True)
# Skip the interpreter's exit handlers: scylla-driver's libev thread sometimes takes 5 s to join.
os._exit(0)
