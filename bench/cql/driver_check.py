"""Checks that a real driver (the DataStax python driver) works against a CQL endpoint: the
benchmark's responder, directly or through Sluice. bench/cql.sh runs it before measuring, so the
figures are of a path a driver really uses. Not a test of Sluice (Tests/e2e has those).

Usage: python3 bench/cql/driver_check.py PORT [PROTOCOL_VERSION]
Without a version the driver negotiates (it opens with DSE v2 and steps down to v5 on the
responder's PROTOCOL_ERROR). Prints one line and exits 0 if every step gave the expected result.
"""
import logging
import sys

from cassandra.cluster import Cluster, EXEC_PROFILE_DEFAULT, ExecutionProfile
from cassandra.policies import WhiteListRoundRobinPolicy


def main():
    port = int(sys.argv[1])
    version = int(sys.argv[2]) if len(sys.argv) > 2 else None
    logging.getLogger("cassandra").setLevel(logging.ERROR)  # the downgrade warnings are expected
    options = dict(port=port, schema_metadata_enabled=False, token_metadata_enabled=False,
                   connect_timeout=5,
                   execution_profiles={EXEC_PROFILE_DEFAULT: ExecutionProfile(
                       load_balancing_policy=WhiteListRoundRobinPolicy(["127.0.0.1"]), request_timeout=10)})
    if version:
        options["protocol_version"] = version
    cluster = Cluster(["127.0.0.1"], **options)
    try:
        session = cluster.connect()
        select = "SELECT k, v FROM bench.kv WHERE k = 'k'"
        assert [tuple(r) for r in session.execute(select)] == [("k", 42)], "SELECT"
        assert session.execute("INSERT INTO bench.kv (k, v) VALUES ('a', 1)").all() == [], "INSERT"
        prepared = session.prepare(select)
        assert [tuple(r) for r in session.execute(prepared)] == [("k", 42)], "EXECUTE"
        session.set_keyspace("bench")
        futures = [session.execute_async(select) for _ in range(500)]
        assert sum(len(f.result().all()) for f in futures) == 500, "500 concurrent SELECTs"
        long_key = "x" * 300_000  # a frame larger than a v5 segment (split across several)
        assert session.execute("SELECT k, v FROM bench.kv WHERE k = %s", [long_key]).one() is not None, "large frame"
        print(f"driver check on port {port}: protocol v{cluster.protocol_version}: SELECT, INSERT, "
              "PREPARE+EXECUTE, USE, 500 concurrent SELECTs, a 300 kB request: ok")
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
