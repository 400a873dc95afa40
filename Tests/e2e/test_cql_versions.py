"""Protocol versions end to end: a backend that speaks v4 only (the CQL test backend with
`--versions 4`, as Cassandra 3.x; a test backend, not Cassandra) behind Sluice, which itself speaks
v4 and v5. Sluice probes the sink's backend (a v5 STARTUP) when it starts, and a client that opens
with v5 gets the PROTOCOL_ERROR drivers downgrade on, so the DataStax python driver settles on v4
and works. Before the probe, Sluice answered the v5 STARTUP itself with READY and every request
then failed with OVERLOADED (the backend refused v5 on the sink's connection).
"""
import socket
import struct
import time

from cassandra.cluster import Cluster
from cassandra.policies import RoundRobinPolicy

from conftest import CQLRawConnection, cql_config, free_port

REFUSED_V5 = "does not speak protocol v5"
KEYSPACE = "CREATE KEYSPACE {} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"


def raw_v5_startup(port, stream=3):
    """A v5 STARTUP (bare, as before the handshake) on a new connection: (version byte, stream,
    opcode, body) of the first reply frame, and whether the connection was closed after it."""
    body = struct.pack(">H", 1) + struct.pack(">H", 11) + b"CQL_VERSION" + struct.pack(">H", 5) + b"3.0.0"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(struct.pack(">BBhBi", 5, 0, stream, 0x01, len(body)) + body)
        header = s.recv(9, socket.MSG_WAITALL)
        version, _, reply_stream, opcode, length = struct.unpack(">BBhBi", header)
        payload = s.recv(length, socket.MSG_WAITALL) if length else b""
        s.settimeout(2)
        try:
            closed = s.recv(1) == b""
        except socket.timeout:
            closed = False
    return version, reply_stream, opcode, payload, closed


def protocol_error_text(payload):
    code, length = struct.unpack(">iH", payload[:6])
    assert code == 0x000A, hex(code)  # PROTOCOL_ERROR
    return payload[6:6 + length].decode()


def test_the_driver_downgrades_to_v4_for_a_v4_only_backend(cql_backend_factory, sluice_factory):
    backend = cql_backend_factory("--versions", "4")
    proxy = sluice_factory(cql_config(backend.port))
    proxy.wait_for_output(REFUSED_V5)  # the probe's answer (asserted below, after the behaviour)
    # No version fixed: the driver opens with DSE v66 and v65 (refused by Sluice), then v5.
    cluster = Cluster(["127.0.0.1"], port=proxy.port, load_balancing_policy=RoundRobinPolicy(),
                      connect_timeout=5, control_connection_timeout=5)
    try:
        session = cluster.connect()
        assert cluster.protocol_version == 4
        session.execute(KEYSPACE.format("shop"))
        session.execute("CREATE TABLE shop.items (id int PRIMARY KEY, name text)")
        insert = session.prepare("INSERT INTO shop.items (id, name) VALUES (?, ?)")
        for i in range(20):
            session.execute(insert, (i, f"item{i}"))
        rows = session.execute("SELECT id, name FROM shop.items WHERE id = 7")
        assert [(r.id, r.name) for r in rows] == [(7, "item7")]
    finally:
        cluster.shutdown()
    assert REFUSED_V5 in proxy.output()
    assert proxy.alive()


def test_a_v5_startup_gets_the_protocol_error_in_v4(cql_backend_factory, sluice_factory):
    backend = cql_backend_factory("--versions", "4")
    proxy = sluice_factory(cql_config(backend.port))
    proxy.wait_for_output(REFUSED_V5)
    version, stream, opcode, payload, closed = raw_v5_startup(proxy.port, stream=3)
    assert (version, stream, opcode) == (0x84, 3, 0x00), (hex(version), stream, hex(opcode))
    text = protocol_error_text(payload)
    assert text.startswith("Invalid or unsupported protocol version (5)"), text
    assert "4/v4" in text and "5/v5" not in text, text
    assert closed
    # v4 works on the same proxy.
    with CQLRawConnection(proxy.port) as c:
        c.startup()
        assert c.query("SELECT release_version FROM system.local").parsed_rows
    # A backend that speaks v5 is not refused: its clients keep v5.
    both = cql_backend_factory()
    other = sluice_factory(cql_config(both.port))
    assert other.wait_for_output("listening")
    time.sleep(0.3)  # the probe's answer (accepted: logged at debug only)
    version, stream, opcode, _, closed = raw_v5_startup(other.port)
    assert (version, opcode, closed) == (0x85, 0x02, False)  # READY in v5
    assert proxy.alive() and other.alive()


def test_a_backend_unreachable_at_start_up_is_probed_again(cql_backend_factory, sluice_factory):
    port = free_port()
    proxy = sluice_factory(cql_config(port))  # nothing listens there yet: the probe cannot tell
    time.sleep(0.5)
    # Unknown: nothing is refused (Sluice answers the STARTUP itself, as before).
    version, _, opcode, _, _ = raw_v5_startup(proxy.port)
    assert (version, opcode) == (0x85, 0x02)
    backend = cql_backend_factory("--versions", "4", port=port)
    time.sleep(1.1)  # past the retry interval after the failed probe
    raw_v5_startup(proxy.port)  # this client's first frame starts a probe (it does not wait for it)
    assert proxy.wait_for_output(REFUSED_V5), proxy.output()
    version, stream, opcode, payload, closed = raw_v5_startup(proxy.port, stream=9)
    assert (version, stream, opcode, closed) == (0x84, 9, 0x00, True)
    assert "unsupported protocol version" in protocol_error_text(payload)
    assert backend.proc.poll() is None and proxy.alive()


def supported_protocol_versions(connection):
    """PROTOCOL_VERSIONS of the SUPPORTED answering an OPTIONS on a raw connection."""
    from cassandra.protocol import OptionsMessage, SupportedMessage
    reply = connection.request(OptionsMessage())
    assert isinstance(reply, SupportedMessage), reply
    return reply.options["PROTOCOL_VERSIONS"]


def test_options_lists_only_the_versions_the_backend_speaks_too(cql_backend_factory, sluice_factory):
    """SUPPORTED's PROTOCOL_VERSIONS lists the versions both Sluice and the sink's backend speak,
    once the probe told: 4/v4 alone for a v4-only backend (what the backend itself answers), as a
    client's first frame, after STARTUP, and on the DataStax driver's own connection. Before: 4/v4
    and 5/v5 whatever the backend."""
    from cassandra.protocol import OptionsMessage
    backend = cql_backend_factory("--versions", "4")
    proxy = sluice_factory(cql_config(backend.port))
    assert proxy.wait_for_output(REFUSED_V5)
    with CQLRawConnection(backend.port) as direct:
        assert supported_protocol_versions(direct) == ["4/v4"]  # the backend's own answer
    with CQLRawConnection(proxy.port) as c:
        assert supported_protocol_versions(c) == ["4/v4"]  # the connection's first frame
        c.startup()
        assert supported_protocol_versions(c) == ["4/v4"]
    cluster = Cluster(["127.0.0.1"], port=proxy.port, load_balancing_policy=RoundRobinPolicy(),
                      connect_timeout=5, control_connection_timeout=5)
    try:
        cluster.connect()
        assert cluster.protocol_version == 4
        supported = cluster.control_connection._connection.wait_for_response(OptionsMessage(), timeout=5)
        assert supported.options["PROTOCOL_VERSIONS"] == ["4/v4"], supported.options
    finally:
        cluster.shutdown()
    # A backend that speaks v5 too, and one not known yet (unreachable): both versions are listed.
    both = cql_backend_factory()
    other = sluice_factory(cql_config(both.port))
    time.sleep(0.3)  # the probe's answer (accepted: logged at debug only)
    unknown = sluice_factory(cql_config(free_port()))
    for port in (other.port, unknown.port):
        with CQLRawConnection(port) as c:
            assert supported_protocol_versions(c) == ["4/v4", "5/v5"]
    assert proxy.alive() and other.alive() and unknown.alive()


def test_a_refused_v5_startup_backs_off_only_the_v5_connections(cql_backend_factory, sluice_factory):
    """A v5 client whose requests reach a v4-only backend on a sink that is not its main one (a
    redirect's target: the version check looks at the main sink only) makes Sluice open a v5
    connection there, whose STARTUP the backend refuses. That must not back off the sink for v4:
    a v4 client's redirected requests right after still work. Before: the refused STARTUP was a
    failed connect that backed off the whole sink, and the v4 client got OVERLOADED
    (`…connect failed: STARTUP refused (PROTOCOL_ERROR: Invalid or unsupported protocol version (5)…`)."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, ExecutionProfile
    from cassandra.protocol import ErrorMessage, ResultMessage
    from conftest import PLUGINS
    main, old = cql_backend_factory(), cql_backend_factory("--versions", "4")
    for backend in (main, old):
        with CQLRawConnection(backend.port) as c:
            c.startup()
            c.query(KEYSPACE.format("ks"))
            c.query("CREATE TABLE ks.hot (k int PRIMARY KEY, v text)")
            c.query("INSERT INTO ks.hot (k, v) VALUES (1, 'one')")
    sink = "{{ cassandra: {{ address: 127.0.0.1:{}, connect_timeout_ms: 1000, reply_timeout_ms: 5000 }} }}"
    proxy = sluice_factory(f"""
plugins:
  directory: {PLUGINS}
sinks:
  cass: {sink.format(main.port)}
  old: {sink.format(old.port)}
chains:
  cql_main: [ {{ redirect: {{ target: old, tables: [ks.hot] }} }}, {{ sink: cass }} ]
sources:
  - cassandra: {{ listen: 127.0.0.1:{{PORT}}, chain: cql_main }}
""")
    assert proxy.wait_for_output(REFUSED_V5)  # the probe of 'old' (the client's main sink speaks v5)
    cluster = Cluster(["127.0.0.1"], port=proxy.port, protocol_version=5, connect_timeout=5,
                      control_connection_timeout=5, execution_profiles={EXEC_PROFILE_DEFAULT: ExecutionProfile(
                          load_balancing_policy=RoundRobinPolicy(), request_timeout=5)})
    try:
        session = cluster.connect()
        assert cluster.protocol_version == 5
        failures = []
        deadline = time.time() + 1.0
        while time.time() < deadline:  # v5 requests to 'old', whose STARTUP in v5 is refused
            try:
                session.execute("SELECT v FROM ks.hot WHERE k = 1")
            except Exception as e:  # the driver's error for the v5 request that cannot be served
                failures.append(str(e))
        assert failures and all("protocol version" in f for f in failures), failures[:3]
        with CQLRawConnection(proxy.port) as v4:  # right after: a v4 client of the same sink
            v4.startup()
            reply = v4.query("SELECT v FROM ks.hot WHERE k = 1")
            assert not isinstance(reply, ErrorMessage), reply.summary_msg()
            assert isinstance(reply, ResultMessage) and reply.parsed_rows == [("one",)], reply
    finally:
        cluster.shutdown()
    assert proxy.alive()
