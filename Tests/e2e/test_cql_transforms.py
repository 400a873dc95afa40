"""Transforms on CQL chains (issue 13 §4, ABI 1.3), end to end: the DataStax python driver through
Sluice to the CQL test backend (Tests/cql/backend, not Cassandra).

deny answers a statement kind with an ERROR of the code it is configured with (the driver raises
the matching exception), count counts by statement kind, tee writes to a second backend, redirect
sends a table to another backend, debug-printer logs statements. Each backend is also read
directly (never through Sluice), so where a row landed is seen by the test, not by Sluice.
"""
import os
import subprocess
import time

import pytest
from cassandra import InvalidRequest, Unauthorized
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.query import BatchStatement
from cassandra.policies import RoundRobinPolicy
from conftest import PLUGINS, SLUICE, CQLRawConnection, Sluice, free_port

SCHEMA = [
    "CREATE KEYSPACE IF NOT EXISTS ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
    "CREATE TABLE IF NOT EXISTS ks.cold (k int PRIMARY KEY, v text)",
    "CREATE TABLE IF NOT EXISTS ks.hot (k int PRIMARY KEY, v text)",
]


def config(primary, chain_steps, extra_sinks=""):
    return f"""
plugins:
  directory: {{PLUGINS}}
sinks:
  cass:
    cassandra: {{ address: 127.0.0.1:{primary}, connect_timeout_ms: 1000, reply_timeout_ms: 5000 }}
{extra_sinks}chains:
  cql_main:
{chain_steps}    - sink: cass
sources:
  - cassandra:
      listen: 127.0.0.1:{{PORT}}
      chain: cql_main
observability:
  metrics: 127.0.0.1:{{METRICS_PORT}}
"""


def sink(name, port):
    return f"  {name}:\n    cassandra: {{ address: 127.0.0.1:{port}, connect_timeout_ms: 1000, reply_timeout_ms: 5000 }}\n"


def session_to(port, protocol_version=None):
    kwargs = {"protocol_version": protocol_version} if protocol_version else {}
    cluster = Cluster(["127.0.0.1"], port=port, connect_timeout=5, control_connection_timeout=5,
                      execution_profiles={EXEC_PROFILE_DEFAULT: ExecutionProfile(
                          load_balancing_policy=RoundRobinPolicy(), request_timeout=10)}, **kwargs)
    return cluster, cluster.connect()


def create_schema(*backends):
    """The schema on each backend, made directly (so both have the tables, whatever Sluice does)."""
    for backend in backends:
        with CQLRawConnection(backend.port) as c:
            c.startup()
            for statement in SCHEMA:
                c.query(statement)


def rows_on(backend, table):
    """The rows of ks.TABLE read directly from a backend, as {k: v}."""
    with CQLRawConnection(backend.port) as c:
        c.startup()
        return {k: v for k, v in c.query(f"SELECT k, v FROM ks.{table}").parsed_rows}


def metric(sluice, name):
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{sluice.metrics_port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


@pytest.fixture
def sluices():
    started = []
    yield started
    for s in started:
        s.stop()


@pytest.mark.parametrize("version", [4, 5])
def test_deny_by_statement_kind_answers_the_chosen_error_code(workdir, cql_backend_factory, sluices, version):
    backend = cql_backend_factory()
    create_schema(backend)
    sluice = Sluice(workdir, config(backend.port, "    - deny: { statements: [ddl, delete], code: invalid }\n"
                                                  "    - deny: { commands: [truncate], code: unauthorized }\n"))
    sluices.append(sluice)
    cluster, session = session_to(sluice.port, version)
    try:
        session.execute("INSERT INTO ks.cold (k, v) VALUES (1, 'a')")
        assert session.execute("SELECT v FROM ks.cold WHERE k = 1").one().v == "a"
        with pytest.raises(InvalidRequest, match="command-filter: ddl statements are denied by this proxy"):
            session.execute("CREATE TABLE ks.more (k int PRIMARY KEY)")
        with pytest.raises(InvalidRequest, match="delete statements are denied"):
            session.execute("DELETE FROM ks.cold WHERE k = 1")
        # A prepared DELETE is refused at PREPARE (the statement never gets prepared).
        with pytest.raises(InvalidRequest, match="delete statements are denied"):
            session.prepare("DELETE FROM ks.cold WHERE k = ?")
        with pytest.raises(Unauthorized, match="'truncate' is denied"):
            session.execute("TRUNCATE ks.cold")
        # Nothing denied reached the backend; the row is still there, read directly.
        assert rows_on(backend, "cold") == {1: "a"}
        # The connection goes on after the errors (each on its own stream).
        prepared = session.prepare("SELECT v FROM ks.cold WHERE k = ?")
        assert session.execute(prepared, [1]).one().v == "a"
        assert metric(sluice, "sluice_plugin_command_filter_denied_total") == 4
    finally:
        cluster.shutdown()
    assert sluice.alive()


def prepare_directly(backend, text):
    """TEXT prepared at the backend itself, around Sluice (as before a Sluice restart, or by a client
    of another proxy): the backend keeps the id, Sluice never saw it. Returns the id."""
    from cassandra.protocol import PrepareMessage
    with CQLRawConnection(backend.port) as c:
        c.startup()
        return c.request(PrepareMessage(text)).query_id


def execute_raw(connection, query_id, *ints):
    from cassandra import ConsistencyLevel
    from cassandra.protocol import ExecuteMessage
    params = [k.to_bytes(4, "big", signed=True) for k in ints]
    return connection.request(ExecuteMessage(query_id, params, ConsistencyLevel.ONE))


def test_deny_answers_unprepared_for_an_id_it_never_saw(workdir, cql_backend_factory, sluices):
    """An EXECUTE of an id prepared around Sluice cannot be classified (its text is unknown here):
    deny must not let it through. It answers ERROR UNPREPARED with the id, so the client prepares it
    again through Sluice, and then the text is seen and denied (or passed)."""
    from cassandra.protocol import ErrorMessage, PrepareMessage, PreparedQueryNotFound, ResultMessage
    backend = cql_backend_factory()
    create_schema(backend)
    with CQLRawConnection(backend.port) as c:
        c.startup()
        c.query("INSERT INTO ks.cold (k, v) VALUES (1, 'a')")
        c.query("INSERT INTO ks.cold (k, v) VALUES (2, 'b')")
    delete_id = prepare_directly(backend, "DELETE FROM ks.cold WHERE k = ?")
    select_id = prepare_directly(backend, "SELECT v FROM ks.cold WHERE k = ?")
    sluice = Sluice(workdir, config(backend.port, "    - deny: { statements: [delete, ddl], code: unauthorized }\n"))
    sluices.append(sluice)
    with CQLRawConnection(sluice.port) as c:
        c.startup()
        reply = execute_raw(c, delete_id, 1)
        assert isinstance(reply, PreparedQueryNotFound), reply
        assert reply.info == delete_id
        # The backend never ran it: the row is still there (read directly).
        assert rows_on(backend, "cold") == {1: "a", 2: "b"}
        # A client re-prepares through Sluice: now the text is known and the DELETE refused.
        reply = c.request(PrepareMessage("DELETE FROM ks.cold WHERE k = ?"))
        assert isinstance(reply, ErrorMessage) and "delete statements are denied" in reply.summary_msg(), reply
        # A SELECT prepared around Sluice: UNPREPARED, then prepared through Sluice, then it runs.
        assert isinstance(execute_raw(c, select_id, 2), PreparedQueryNotFound)
        prepared = c.request(PrepareMessage("SELECT v FROM ks.cold WHERE k = ?"))
        assert isinstance(prepared, ResultMessage) and prepared.query_id == select_id
        assert [tuple(r) for r in execute_raw(c, select_id, 2).parsed_rows] == [("b",)]
    assert rows_on(backend, "cold") == {1: "a", 2: "b"}
    assert metric(sluice, "sluice_plugin_command_filter_unprepared_total") == 2

    # The driver path: statements the driver prepared elsewhere (directly at the backend) and then
    # executes through Sluice: the driver re-prepares on UNPREPARED by itself; the DELETE is then
    # denied, the SELECT runs, and a BATCH holding the DELETE's id is refused too.
    direct_cluster, direct = session_to(backend.port)
    cluster, session = session_to(sluice.port)
    try:
        delete = direct.prepare("DELETE FROM ks.cold WHERE k = ?")
        select = direct.prepare("SELECT v FROM ks.cold WHERE k = ?")
        assert session.execute(select, [1]).one().v == "a"
        with pytest.raises(Unauthorized, match="delete statements are denied"):
            session.execute(delete, [1])
        # In a BATCH the driver finds the id to prepare again in its cluster's cache (as after a
        # restart of Sluice); the child is UNPREPARED, then prepared through Sluice and denied.
        in_batch = direct.prepare("DELETE FROM ks.hot WHERE k = ?")
        cluster.add_prepared(in_batch.query_id, in_batch)
        batch = BatchStatement()
        batch.add(in_batch, [1])
        with pytest.raises(Unauthorized, match="delete statements are denied"):
            session.execute(batch)
    finally:
        cluster.shutdown()
        direct_cluster.shutdown()
    assert rows_on(backend, "cold") == {1: "a", 2: "b"}
    assert sluice.alive()


def test_count_by_statement_kind(workdir, cql_backend_factory, sluices):
    backend = cql_backend_factory()
    create_schema(backend)
    sluice = Sluice(workdir, config(backend.port, "    - count: { statements: [insert] }\n"))
    sluices.append(sluice)
    cluster, session = session_to(sluice.port)
    try:
        for k in range(5):
            session.execute("INSERT INTO ks.cold (k, v) VALUES (%s, 'x')", [k])
        insert = session.prepare("INSERT INTO ks.cold (k, v) VALUES (?, ?)")  # a PREPARE of an INSERT: 1
        for k in range(5, 8):
            session.execute(insert, [k, "y"])  # EXECUTEs of the INSERT the host saw prepared: 3
        for k in range(8):
            session.execute("SELECT v FROM ks.cold WHERE k = %s", [k])  # not counted
        assert metric(sluice, "sluice_plugin_command_filter_counted_total") == 5 + 1 + 3
        assert len(rows_on(backend, "cold")) == 8
    finally:
        cluster.shutdown()


def test_tee_writes_to_a_second_backend(workdir, cql_backend_factory, sluices):
    primary, shadow = cql_backend_factory(), cql_backend_factory()
    create_schema(primary, shadow)
    sluice = Sluice(workdir, config(primary.port, "    - tee: { target: shadow, on_mismatch: log }\n",
                                    extra_sinks=sink("shadow", shadow.port)))
    sluices.append(sluice)
    cluster, session = session_to(sluice.port)
    try:
        for k in range(10):
            session.execute("INSERT INTO ks.cold (k, v) VALUES (%s, %s)", [k, f"v{k}"])
        insert = session.prepare("INSERT INTO ks.hot (k, v) VALUES (?, ?)")
        session.execute(insert, [42, "prepared"])
        expected = {k: f"v{k}" for k in range(10)}
        deadline = time.time() + 5
        while rows_on(shadow, "cold") != expected and time.time() < deadline:
            time.sleep(0.05)
        assert rows_on(primary, "cold") == expected
        assert rows_on(shadow, "cold") == expected
        assert rows_on(shadow, "hot") == {42: "prepared"} == rows_on(primary, "hot")
        assert metric(sluice, "sluice_plugin_tee_shadow_errors_total") == 0
    finally:
        cluster.shutdown()


@pytest.mark.parametrize("policy", ["log", "fail"])
def test_tee_when_the_shadow_answers_differently(workdir, cql_backend_factory, sluices, policy):
    """The shadow's table holds another value: `log` answers from the primary and logs the
    statement; `fail` answers that request with SERVER_ERROR naming tee. A read both answer alike
    passes either way, and the driver connects (its reads of system tables, which differ between
    two servers, are not compared)."""
    primary, shadow = cql_backend_factory(), cql_backend_factory()
    create_schema(primary, shadow)
    for backend, value in ((primary, "on primary"), (shadow, "on shadow")):
        with CQLRawConnection(backend.port) as c:
            c.startup()
            c.query(f"INSERT INTO ks.cold (k, v) VALUES (1, '{value}')")
            c.query("INSERT INTO ks.cold (k, v) VALUES (2, 'alike')")
    sluice = Sluice(workdir, config(primary.port, f"    - tee: {{ target: shadow, on_mismatch: {policy} }}\n",
                                    extra_sinks=sink("shadow", shadow.port)))
    sluices.append(sluice)
    cluster, session = session_to(sluice.port)
    try:
        assert session.execute("SELECT v FROM ks.cold WHERE k = 2").one().v == "alike"
        assert metric(sluice, "sluice_plugin_tee_mismatches_total") == 0
        if policy == "log":
            assert session.execute("SELECT v FROM ks.cold WHERE k = 1").one().v == "on primary"
            assert sluice.wait_for_output("tee: mismatch for SELECT v FROM ks.cold WHERE k = 1")
        else:
            with pytest.raises(NoHostAvailable, match="tee: responses differ between primary and shadow"):
                session.execute("SELECT v FROM ks.cold WHERE k = 1")
        assert metric(sluice, "sluice_plugin_tee_mismatches_total") == 1
        assert rows_on(primary, "cold")[1] == "on primary" and rows_on(shadow, "cold")[1] == "on shadow"
    finally:
        cluster.shutdown()


def test_redirect_by_table_sends_it_to_another_backend(workdir, cql_backend_factory, sluices):
    primary, other = cql_backend_factory(), cql_backend_factory()
    create_schema(primary, other)
    sluice = Sluice(workdir, config(primary.port, "    - redirect: { target: other, tables: [ks.hot] }\n",
                                    extra_sinks=sink("other", other.port)))
    sluices.append(sluice)
    cluster, session = session_to(sluice.port)
    try:
        session.execute("INSERT INTO ks.cold (k, v) VALUES (1, 'cold')")
        session.execute("INSERT INTO ks.hot (k, v) VALUES (2, 'hot')")
        prepared = session.prepare("INSERT INTO ks.hot (k, v) VALUES (?, ?)")
        session.execute(prepared, [4, "hot prepared"])
        batch = BatchStatement()
        batch.add("INSERT INTO ks.hot (k, v) VALUES (5, 'hot batch')")
        batch.add(prepared, [6, "hot batch prepared"])
        session.execute(batch)
        mixed = BatchStatement()
        mixed.add("INSERT INTO ks.hot (k, v) VALUES (7, 'x')")
        mixed.add("INSERT INTO ks.cold (k, v) VALUES (7, 'x')")
        with pytest.raises(InvalidRequest, match="redirect: a BATCH mixes hot and regular tables"):
            session.execute(mixed)
        assert rows_on(primary, "cold") == {1: "cold"}
        assert rows_on(primary, "hot") == {}
        assert rows_on(other, "hot") == {2: "hot", 4: "hot prepared", 5: "hot batch", 6: "hot batch prepared"}
        assert rows_on(other, "cold") == {}
        # Reads follow the same way.
        assert session.execute("SELECT v FROM ks.hot WHERE k = 2").one().v == "hot"
        assert session.execute("SELECT v FROM ks.cold WHERE k = 1").one().v == "cold"
        assert metric(sluice, "sluice_plugin_redirect_redirected_total") >= 4
    finally:
        cluster.shutdown()


def test_redirect_follows_the_connections_use(workdir, cql_backend_factory, sluices):
    """A bare table name after USE: redirect finds ks.hot through the connection's keyspace, and the
    target must run the statement in that keyspace too."""
    primary, other = cql_backend_factory(), cql_backend_factory()
    create_schema(primary, other)
    sluice = Sluice(workdir, config(primary.port, "    - redirect: { target: other, tables: [ks.hot] }\n",
                                    extra_sinks=sink("other", other.port)))
    sluices.append(sluice)
    cluster, session = session_to(sluice.port)
    try:
        session.execute("USE ks")
        session.execute("INSERT INTO hot (k, v) VALUES (3, 'hot via use')")
        assert rows_on(other, "hot") == {3: "hot via use"}
    finally:
        cluster.shutdown()


def test_redirect_by_keyspace_and_by_bare_table_name(workdir, cql_backend_factory, sluices):
    """keyspaces: every table of a listed keyspace goes to the target; a bare table name goes from
    any keyspace; other names stay, whether or not they are as long as a hot one (redirect compares
    the views cql_statement gives without copying them)."""
    primary, other = cql_backend_factory(), cql_backend_factory()
    create_schema(primary, other)
    for backend in (primary, other):
        with CQLRawConnection(backend.port) as c:
            c.startup()
            c.query("CREATE KEYSPACE IF NOT EXISTS hk WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
            c.query("CREATE TABLE IF NOT EXISTS hk.cold (k int PRIMARY KEY, v text)")
    sluice = Sluice(workdir, config(primary.port, "    - redirect: { target: other, keyspaces: [hk], tables: [hot] }\n",
                                    extra_sinks=sink("other", other.port)))
    sluices.append(sluice)
    cluster, session = session_to(sluice.port)
    try:
        session.execute("INSERT INTO hk.cold (k, v) VALUES (1, 'hot keyspace')")
        session.execute('INSERT INTO "hk".cold (k, v) VALUES (2, \'quoted hot keyspace\')')
        session.execute("INSERT INTO ks.hot (k, v) VALUES (3, 'bare hot table')")
        session.execute("INSERT INTO KS.HOT (k, v) VALUES (4, 'upper case')")
        session.execute("INSERT INTO ks.cold (k, v) VALUES (5, 'stays')")
        session.execute("USE hk")
        session.execute("INSERT INTO cold (k, v) VALUES (6, 'hot keyspace by USE')")
        assert rows_on(other, "hot") == {3: "bare hot table", 4: "upper case"}
        assert rows_on(other, "cold") == {}
        assert rows_on(primary, "cold") == {5: "stays"}
        assert rows_on(primary, "hot") == {}
        with CQLRawConnection(other.port) as c:
            c.startup()
            assert {k: v for k, v in c.query("SELECT k, v FROM hk.cold").parsed_rows} == {
                1: "hot keyspace", 2: "quoted hot keyspace", 6: "hot keyspace by USE"}
        with CQLRawConnection(primary.port) as c:
            c.startup()
            assert c.query("SELECT k, v FROM hk.cold").parsed_rows == []
    finally:
        cluster.shutdown()


def test_debug_printer_logs_statements_not_values(workdir, cql_backend_factory, sluices):
    backend = cql_backend_factory()
    create_schema(backend)
    sluice = Sluice(workdir, config(backend.port, "    - debug-printer: { prefix: audit }\n"))
    sluices.append(sluice)
    cluster, session = session_to(sluice.port)
    try:
        insert = session.prepare("INSERT INTO ks.cold (k, v) VALUES (?, ?)")
        session.execute(insert, [7, "secret-value"])
        assert session.execute("SELECT v FROM ks.cold WHERE k = 7").one().v == "secret-value"
    finally:
        cluster.shutdown()
    sluice.wait_for_output("SELECT v FROM ks.cold WHERE k = 7")
    out = sluice.output()
    assert "EXECUTE v5 stream" in out and "INSERT INTO ks.cold (k, v) VALUES (?, ?) [2 values]" in out
    assert "RESULT v5 stream" in out and "Rows 1 x 1 (v)" in out
    assert "secret-value" not in out


def test_a_redis_only_transform_on_a_cql_chain_is_refused_with_its_position(workdir):
    """sluice check (and start-up): throttle handles only Redis; at step 1 of a chain a cassandra
    source runs it is refused there, naming the step, at the step's line."""
    path = os.path.join(workdir, "refused.yaml")
    with open(path, "w") as f:
        f.write(f"""plugins:
  directory: {PLUGINS}
sinks:
  cass: {{ cassandra: {{ address: 127.0.0.1:1 }} }}
chains:
  cql_main:
    - count: {{}}
    - throttle: {{ rate: 10 }}
    - sink: cass
sources:
  - cassandra: {{ listen: 127.0.0.1:{free_port()}, chain: cql_main }}
""")
    out = subprocess.run([SLUICE, "check", "--config", path], capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    assert f"{path}:8:" in text, text
    assert "chain 'cql_main' step 1: transform 'throttle' does not handle CQL (it handles: redis)" in text, text
    assert "count" not in text.split("does not handle")[0].splitlines()[-1], "count handles CQL: not refused"


# --- a QUERY a plugin builds (cql_put_query) and sends to a sink ---------------------------------------

@pytest.mark.parametrize("version", [4, 5])
def test_a_query_a_plugin_builds_runs_on_the_target_and_its_result_comes_back(workdir, cql_backend_factory, sluices,
                                                                               version):
    """cql-probe { record: side } (Tests/fixtures/plugins/cql-probe.c) answers a QUERY "RECORD k v"
    by building a QUERY of its own with batch_new + cql_put_query (an INSERT into ks.side with k and
    v bound) and sending it to the sink 'side' (host->send); it answers the client with what came
    back. The row is read from the side backend directly: the backend ran the plugin's frame; and
    the reply the plugin got was a RESULT Void (not an ERROR, not a failed send)."""
    from conftest import FIXTURES
    primary, side = cql_backend_factory(), cql_backend_factory()
    create_schema(primary, side)
    with CQLRawConnection(side.port) as c:
        c.startup()
        c.query("CREATE TABLE IF NOT EXISTS ks.side (k int PRIMARY KEY, v text)")
    text = config(primary.port, "    - cql-probe: { record: side }\n", extra_sinks=sink("side", side.port))
    sluice = Sluice(workdir, text.replace("directory: {PLUGINS}", f"directory: {FIXTURES}"))
    sluices.append(sluice)
    cluster, session = session_to(sluice.port, version)
    try:
        assert [row.reply for row in session.execute("RECORD 7 seven")] == ["RESULT Void"]
        assert [row.reply for row in session.execute("RECORD 8 eight")] == ["RESULT Void"]
        # Executed by the side backend, not by the primary (which has no such table).
        assert rows_on(side, "side") == {7: "seven", 8: "eight"}
        # Other requests go on to the primary as before.
        session.execute("INSERT INTO ks.cold (k, v) VALUES (1, 'a')")
        assert rows_on(primary, "cold") == {1: "a"}
        assert rows_on(side, "cold") == {}
    finally:
        cluster.shutdown()
    assert sluice.alive()


# --- an answer a plugin built on the wrong stream or in the wrong version ----------------------------

@pytest.mark.parametrize("version", [4, 5])
def test_a_plugins_answer_goes_out_on_the_requests_stream_and_another_version_is_refused(
        workdir, cql_backend_factory, sluices, version):
    """cql-probe's WHOAMI answer (call_respond) built on the stream after the request's (skew:
    stream) reaches the driver on the request's own stream: the host stamps it (before, the driver
    got a reply on a stream it was not waiting on and timed out). Built in the other protocol
    version (skew: version), it is answered with an ERROR SERVER_ERROR in the request's version
    instead, and logged."""
    from conftest import FIXTURES
    backend = cql_backend_factory()
    create_schema(backend)
    for skew in ("stream", "version"):
        text = config(backend.port, f"    - cql-probe: {{ whoami: true, skew: {skew} }}\n")
        sluice = Sluice(workdir, text.replace("directory: {PLUGINS}", f"directory: {FIXTURES}"))
        sluices.append(sluice)
        cluster, session = session_to(sluice.port, version)
        try:
            if skew == "stream":
                assert [row.user for row in session.execute("WHOAMI", timeout=3)] == ["-"]
            else:
                other = 5 if version == 4 else 4
                # SERVER_ERROR: the driver tries the next host, so it raises NoHostAvailable naming the error.
                with pytest.raises(NoHostAvailable, match=f"sluice: transform .*cql-probe answered a v{version} "
                                                          f"request with a v{other} frame"):
                    session.execute("WHOAMI", timeout=3)
                assert sluice.wait_for_output(f"with a v{other} frame; the request was answered with that ERROR")
            # The connection goes on.
            session.execute("INSERT INTO ks.cold (k, v) VALUES (1, 'a')", timeout=3)
            assert rows_on(backend, "cold") == {1: "a"}
        finally:
            cluster.shutdown()
        assert sluice.alive()
