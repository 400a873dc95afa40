"""What a driver learns about the cluster through Sluice (issue 13): one node, the proxy.

The test backend runs two nodes (`--nodes 2`: 127.0.0.1 and 127.0.0.2 on one port). DIRECT, the
DataStax driver reads 127.0.0.2 from system.peers(_v2) and connects to it too: two hosts, connections
to both (this proves the test). THROUGH Sluice, Sluice answers SELECTs on system.peers and
system.peers_v2 with the backend's columns and no rows, so the driver knows one host, Sluice, and
every connection it holds goes to Sluice's port: nothing reaches the backend around Sluice.
"""
import json
import os
import subprocess

import pytest
from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import RoundRobinPolicy
from cassandra.query import SimpleStatement
from conftest import CQLRawConnection
from test_cql_drivers import SCYLLA_PYTHON, driver_connections, start_target


@pytest.fixture(params=["direct", "sluice"])
def two_nodes(request, workdir):
    """The test backend with two nodes, and (route 'sluice') Sluice in front of its first node."""
    target = start_target(request.param, workdir, backend_args=["--nodes", "2"])
    yield target
    target.shutdown_clusters()
    if target.sluice is not None:
        target.sluice.stop()
    target.backend.stop()


def connect(target, version):
    cluster = Cluster(["127.0.0.1"], port=target.port, protocol_version=version, connect_timeout=3,
                      control_connection_timeout=3, execution_profiles={
                          EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=RoundRobinPolicy())})
    target.clusters.append(cluster)
    return cluster, cluster.connect()


def open_tcp_peers():
    """(address, port) of every established TCP connection this test process holds (`ss`)."""
    out = subprocess.run(["ss", "-tnpH", "state", "established"], capture_output=True, text=True,
                         check=True).stdout
    peers = set()
    for line in out.splitlines():
        if f"pid={os.getpid()}," not in line:
            continue
        peer = line.split()[3]  # Recv-Q Send-Q Local Peer Process
        address, port = peer.rsplit(":", 1)
        peers.add((address.strip("[]"), int(port)))
    return peers


@pytest.mark.parametrize("version", [4, 5])
def test_the_driver_sees_one_host_and_stays_on_sluice(two_nodes, version):
    cluster, session = connect(two_nodes, version)
    for _ in range(8):  # round robin over every host the driver knows
        assert session.execute("SELECT release_version FROM system.local").one().release_version
    hosts = {(h.endpoint.address, h.endpoint.port) for h in cluster.metadata.all_hosts()}
    in_use = {(c.endpoint.address, c.endpoint.port) for c in driver_connections(cluster, session)}
    tcp = open_tcp_peers()
    backend = two_nodes.backend.port
    if two_nodes.route == "direct":
        assert hosts == {("127.0.0.1", backend), ("127.0.0.2", backend)}
        assert in_use == hosts
        assert ("127.0.0.2", backend) in tcp, tcp
    else:
        sluice = ("127.0.0.1", two_nodes.sluice.port)
        assert hosts == {sluice}
        assert in_use == {sluice}
        assert tcp == {sluice}, f"connections around Sluice: {tcp - {sluice}}"
        two_nodes.assert_sluice_alive()


SCYLLA_HOSTS = """
import json, sys
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import RoundRobinPolicy
cluster = Cluster(["127.0.0.1"], port=int(sys.argv[1]), connect_timeout=5, control_connection_timeout=5,
                  execution_profiles={EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=RoundRobinPolicy())})
session = cluster.connect()
for _ in range(8):
    session.execute("SELECT release_version FROM system.local")
conns = [cluster.control_connection._connection]
for pool in session._pools.values():
    conns.extend(pool.get_connections())
print(json.dumps({"hosts": sorted([h.endpoint.address, h.endpoint.port] for h in cluster.metadata.all_hosts()),
                  "connections": sorted({(c.endpoint.address, c.endpoint.port) for c in conns})}))
cluster.shutdown()
"""


def test_scylla_driver_sees_one_host(two_nodes):
    """scylla-driver (its own venv, as in test_cql_drivers.py) reads the peers tables the same way."""
    assert os.path.exists(SCYLLA_PYTHON), f"no scylla-driver venv at {SCYLLA_PYTHON} (scripts/install-deps.sh makes it)"
    out = subprocess.run([SCYLLA_PYTHON, "-c", SCYLLA_HOSTS, str(two_nodes.port)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    if two_nodes.route == "direct":
        expected = [["127.0.0.1", two_nodes.backend.port], ["127.0.0.2", two_nodes.backend.port]]
    else:
        expected = [["127.0.0.1", two_nodes.sluice.port]]
    assert seen == {"hosts": expected, "connections": expected}


@pytest.mark.parametrize("table", ["peers", "peers_v2"])
def test_peers_tables_answer_no_rows_with_the_backends_columns(two_nodes, table):
    """By QUERY and by EXECUTE of a prepared statement (also one the driver pages): the backend's
    column names in its order, no rows through Sluice, one row (127.0.0.2) direct."""
    with CQLRawConnection(two_nodes.backend.port) as direct:
        direct.startup()
        expected = direct.query(f"SELECT * FROM system.{table}")
        assert len(expected.parsed_rows) == 1
    rows = 1 if two_nodes.route == "direct" else 0
    cluster, session = connect(two_nodes, 4)
    result = session.execute(f"SELECT * FROM system.{table}")
    assert result.column_names == expected.column_names and len(list(result)) == rows
    prepared = session.prepare(f"SELECT * FROM system.{table}")
    prepared.fetch_size = 1
    result = session.execute(prepared)
    assert len(list(result)) == rows and result.column_names == expected.column_names
    # The same through another client, with USE system and an unqualified name.
    with CQLRawConnection(two_nodes.port) as raw:
        raw.startup()
        raw.query("USE system")
        reply = raw.query(f"select PEER from {table}")
        assert reply.column_names == ["peer"] and len(reply.parsed_rows) == rows
        # Other system tables are untouched.
        assert len(raw.query("SELECT * FROM system.local").parsed_rows) == 1
    assert session.execute(f"SELECT * FROM system.{table}", timeout=5).column_names == expected.column_names
    # v5: the keyspace of the unqualified name in the QUERY's parameters.
    _, session5 = connect(two_nodes, 5)
    result = session5.execute(SimpleStatement(f"SELECT * FROM {table}", keyspace="system"))
    assert result.column_names == expected.column_names and len(list(result)) == rows
