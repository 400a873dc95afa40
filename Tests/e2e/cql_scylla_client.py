"""Run by test_cql_drivers.py with the Python of the scylla-driver venv (build/venv-scylla): scylla-driver
and cassandra-driver both install the `cassandra` module, so they cannot share one environment.

usage: cql_scylla_client.py PORT PROTOCOL_VERSION COMPRESSION(lz4|snappy|None) KEYSPACE
Connects to one node at 127.0.0.1:PORT (the test backend, or Sluice in front of it), checks the
negotiated version and compression on its connections, then runs DDL, USE, prepared statements, a
forced re-prepare, paging across pages, a BATCH of prepared and simple statements, and prints
"scylla-driver OK".
"""
import os
import sys

import cassandra
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import RoundRobinPolicy
from cassandra.query import BatchStatement, BatchType, SimpleStatement

port, version, compression, keyspace = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
compression = False if compression == "None" else compression

cluster = Cluster(["127.0.0.1"], port=port, protocol_version=version, compression=compression,
                  execution_profiles={EXEC_PROFILE_DEFAULT: ExecutionProfile(
                      load_balancing_policy=RoundRobinPolicy())},
                  connect_timeout=5, control_connection_timeout=5)
session = cluster.connect()
assert cluster.protocol_version == version, cluster.protocol_version
connection = cluster.control_connection._connection
assert (connection.compressor is not None) == bool(compression), connection.compressor
assert connection._is_checksumming_enabled == (version >= 5)
session.execute(f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = "
                "{'class': 'SimpleStrategy', 'replication_factor': 1}")
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
cluster.shutdown()
print(f"scylla-driver OK ({cassandra.__version__}, protocol v{version}, compression {compression})",
      flush=True)
# Skip the interpreter's exit handlers: scylla-driver's libev thread sometimes takes 5 s to join.
os._exit(0)
