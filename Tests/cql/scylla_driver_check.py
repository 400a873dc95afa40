"""Run by test_backend.py with the Python of the scylla-driver venv (scylla-driver and
cassandra-driver both install the `cassandra` module, so they cannot share one environment).

usage: scylla_driver_check.py PORT PROTOCOL_VERSION COMPRESSION(lz4|snappy|None)
Connects to a two-node test backend on 127.0.0.1/127.0.0.2, then runs DDL, prepared statements, a
forced re-prepare, paging, a BATCH and USE, and prints "scylla-driver OK".
"""
import os
import sys

import cassandra
from cassandra.cluster import Cluster
from cassandra.policies import RoundRobinPolicy
from cassandra.query import BatchStatement, SimpleStatement

port, version, compression = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
compression = False if compression == "None" else compression
assert "scylla" in cassandra.__file__ or hasattr(cassandra, "__version__")

cluster = Cluster(["127.0.0.1"], port=port, protocol_version=version, compression=compression,
                  load_balancing_policy=RoundRobinPolicy(), connect_timeout=5)
session = cluster.connect()
assert cluster.protocol_version == version
assert sorted(h.address for h in cluster.metadata.all_hosts()) == ["127.0.0.1", "127.0.0.2"]
session.execute("CREATE KEYSPACE IF NOT EXISTS sd WITH replication = "
                "{'class': 'SimpleStrategy', 'replication_factor': 1}")
session.execute("USE sd")
session.execute("CREATE TABLE IF NOT EXISTS t (k int, c int, v text, PRIMARY KEY (k, c))")
insert = session.prepare("INSERT INTO t (k, c, v) VALUES (?, ?, ?)")
for c in range(30):
    session.execute(insert, (1, c, f"v{c}"))
session.execute("TESTBACKEND FORGET PREPARED")
session.execute(insert, (1, 30, "v30"))  # UNPREPARED, re-prepared by the driver
batch = BatchStatement()
batch.add(insert, (2, 0, "b0"))
batch.add(SimpleStatement("INSERT INTO t (k, c, v) VALUES (2, 1, 'b1')"))
session.execute(batch)
paged = SimpleStatement("SELECT c FROM t WHERE k = 1", fetch_size=8)
first = session.execute(paged)
assert first.has_more_pages
assert [r.c for r in first] == list(range(31))
assert [r.v for r in session.execute("SELECT v FROM t WHERE k = 2")] == ["b0", "b1"]
cluster.shutdown()
print(f"scylla-driver OK ({cassandra.__version__}, protocol v{version}, compression {compression})",
      flush=True)
# The check is over. Skip the interpreter's exit handlers: scylla-driver's libev event loop thread
# sometimes fails to join at exit and its handler then waits 5 s, after the work above is done.
os._exit(0)
