"""Real system.peers / system.peers_v2 / system.local replies for Sluice's cluster-view rewrite
(Tests/SluiceHostTests/CQLClusterViewRewriteTests.swift), made by the test backend with two nodes
(127.0.0.1 and 127.0.0.2; three for the page with more to come), and read back by the DataStax python driver:

    python3 Tests/cql/cluster_view_vectors.py emit          # {"name": "hex", ...}
    python3 Tests/cql/cluster_view_vectors.py check < in    # {"name": "hex"} -> what the driver decodes
"""
import io
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from cassandra.protocol import ProtocolHandler  # noqa: E402

from Tests.cql.backend import framing as F  # noqa: E402
from Tests.cql.backend import parser as P  # noqa: E402
from Tests.cql.backend.executor import Session  # noqa: E402
from Tests.cql.backend.server import Backend  # noqa: E402

QUERIES = {
    "peers": "SELECT * FROM system.peers",
    "peers_v2": "SELECT * FROM system.peers_v2",
    "peers_columns": "SELECT peer, data_center, rack, rpc_address, host_id, tokens FROM system.peers",
    "local": "SELECT * FROM system.local WHERE key='local'",
}


def emit():
    backend = Backend(port=19999, nodes=2)
    executor = backend.nodes[0].executor
    out = {}
    for name, text in QUERIES.items():
        for version in (4, 5):
            result = executor.execute(P.parse(text), [], Session())
            out[f"{name}_v{version}"] = F.Envelope(0x80 | version, 0, 11, F.OP_RESULT,
                                                   result.body(version)).encode().hex()
            if name == "peers_v2":
                # A page of one row with more to come, and an EXECUTE's reply without metadata.
                paged = Backend(port=19999, nodes=3).nodes[0].executor.execute(P.parse(text), [], Session(),
                                                                                page_size=1)
                out[f"{name}_paged_v{version}"] = F.Envelope(0x80 | version, 0, 11, F.OP_RESULT,
                                                             paged.body(version)).encode().hex()
                out[f"{name}_no_metadata_v{version}"] = F.Envelope(
                    0x80 | version, 0, 11, F.OP_RESULT, result.body(version, skip_metadata=True)).encode().hex()
    json.dump(out, sys.stdout)


def check():
    out = {}
    for name, data in json.load(sys.stdin).items():
        raw = bytes.fromhex(data)
        version, flags, stream, opcode = raw[0] & 0x7F, raw[1], int.from_bytes(raw[2:4], "big", signed=True), raw[4]
        if "no_metadata" in name:
            continue  # the driver reads those with the prepared statement's metadata only
        msg = ProtocolHandler.decode_message(version, {}, stream, flags, opcode, raw[9:], None, None)
        out[name] = {"stream": stream, "columns": list(msg.column_names or []), "rows": len(msg.parsed_rows or []),
                     "paging_state": msg.paging_state.hex() if msg.paging_state else None}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    {"emit": emit, "check": check}[sys.argv[1]]()
