"""The in-memory cluster: keyspaces, tables and their rows, shared by every node of one backend,
plus the system tables drivers and cqlsh read (system.local, system.peers, system.peers_v2,
system_schema.*, system_virtual_schema.*, system_traces.*), most of them computed from the live
schema when they are read.
"""
import ipaddress
import time
import uuid

from .datatypes import hashable, parse_type, sort_key

RELEASE_VERSION = "5.0.0"
CQL_VERSION = "3.4.7"
CLUSTER_NAME = "Sluice CQL test backend"
DATA_CENTER = "datacenter1"
RACK = "rack1"
PARTITIONER = "org.apache.cassandra.dht.Murmur3Partitioner"
SYSTEM_KEYSPACES = ("system", "system_schema", "system_auth", "system_distributed",
                    "system_traces", "system_virtual_schema")


class Column:
    def __init__(self, name, cql_type, kind, position):
        self.name = name
        self.type = cql_type
        self.kind = kind  # partition_key, clustering, regular, static
        self.position = position


class Table:
    """A table's schema and, unless it is computed (`provider`), its rows:
    partitions[partition key tuple][clustering key tuple] = {column: value}."""

    def __init__(self, keyspace, name, columns, partition_key, clustering, clustering_order=None,
                 options=None, provider=None, virtual=False):
        self.keyspace = keyspace
        self.name = name
        self.id = uuid.uuid4()
        self.options = options or {}
        self.provider = provider
        self.virtual = virtual
        types = dict((c[0], c[1]) for c in columns)
        order = clustering_order or {}
        self.columns = {}
        for i, k in enumerate(partition_key):
            self.columns[k] = Column(k, types[k], "partition_key", i)
        for i, k in enumerate(clustering):
            self.columns[k] = Column(k, types[k], "clustering", i)
        self.clustering_order = {k: order.get(k, "ASC") for k in clustering}
        statics = {c[0] for c in columns if len(c) > 2 and c[2]}
        for name_ in sorted(types):
            if name_ not in self.columns:
                self.columns[name_] = Column(name_, types[name_],
                                             "static" if name_ in statics else "regular", -1)
        self.partition_key = list(partition_key)
        self.clustering = list(clustering)
        self.partitions = {}
        self.is_counter = any(c.type.cql() == "counter" for c in self.columns.values())

    def column_names(self):
        return list(self.columns)

    def add_column(self, name, cql_type):
        """Adds a regular column (ALTER TABLE ADD); existing rows have it null."""
        self.columns[name] = Column(name, cql_type, "regular", -1)
        keys = [c for c in self.columns.values() if c.kind in ("partition_key", "clustering")]
        others = sorted((c for c in self.columns.values() if c not in keys), key=lambda c: c.name)
        self.columns = {c.name: c for c in keys + others}
        for rows in self.partitions.values():
            for row in rows.values():
                row.setdefault(name, None)

    def drop_column(self, name):
        del self.columns[name]
        for rows in self.partitions.values():
            for row in rows.values():
                row.pop(name, None)

    def primary_key_of(self, row):
        return (tuple(hashable(row[k]) for k in self.partition_key),
                tuple(hashable(row[k]) for k in self.clustering))

    def clustering_sort_key(self, ck_tuple):
        parts = []
        for name, value in zip(self.clustering, ck_tuple):
            k = sort_key(value)
            parts.append(_Desc(k) if self.clustering_order[name] == "DESC" else k)
        return tuple(parts)

    def rows(self, node):
        """Every row, partition by partition, clustering order within a partition."""
        if self.provider is not None:
            return self.provider(node)
        out = []
        for rows in self.partitions.values():
            for ck in sorted(rows, key=self.clustering_sort_key):
                out.append(rows[ck])
        return out

    def partition_rows(self, pk_tuple):
        rows = self.partitions.get(pk_tuple, {})
        return [rows[ck] for ck in sorted(rows, key=self.clustering_sort_key)]


class _Desc:
    """Reverses the order of a sort key (for DESC clustering columns)."""

    __slots__ = ("k",)

    def __init__(self, k):
        self.k = k

    def __lt__(self, other):
        return other.k < self.k

    def __eq__(self, other):
        return self.k == other.k


class Keyspace:
    def __init__(self, name, replication, durable_writes=True, virtual=False):
        self.name = name
        self.replication = replication
        self.durable_writes = durable_writes
        self.tables = {}
        self.virtual = virtual


def _cols(spec):
    """[(name, CqlType)] from 'name type, name type' (types may contain commas inside <>)."""
    out, depth, cur = [], 0, ""
    for ch in spec + ",":
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        if ch == "," and depth == 0:
            name, typ = cur.strip().split(" ", 1)
            out.append((name, parse_type(typ)))
            cur = ""
        else:
            cur += ch
    return out


class NodeInfo:
    """One node of the backend: its address, port and identity."""

    def __init__(self, address, port, index):
        self.address = address
        self.port = port
        self.host_id = uuid.UUID(int=(0x5C0E << 112) | (index + 1))
        # Evenly spread Murmur3 tokens, one per node.
        self.token = str(-(2 ** 63) + (index * (2 ** 64) // 16) + 1)


class Cluster:
    """The data every node serves, and the nodes' identities."""

    def __init__(self, nodes):
        self.nodes = nodes
        self.keyspaces = {}
        self.schema_version = uuid.uuid4()
        self.trace_sessions = []
        self._make_system_keyspaces()

    def bump_schema_version(self):
        self.schema_version = uuid.uuid4()

    def add_table(self, ks, name, spec, pk, ck=(), provider=None, order=None, virtual=False):
        cols = _cols(spec)
        t = Table(ks, name, cols, pk, list(ck), order, provider=provider, virtual=virtual)
        self.keyspaces[ks].tables[name] = t
        return t

    def _make_system_keyspaces(self):
        local = {"class": "org.apache.cassandra.locator.LocalStrategy"}
        for name in SYSTEM_KEYSPACES:
            self.keyspaces[name] = Keyspace(name, dict(local), virtual=(name == "system_virtual_schema"))
        self.keyspaces["system_auth"].replication = {
            "class": "org.apache.cassandra.locator.SimpleStrategy", "replication_factor": "1"}
        self.keyspaces["system_traces"].replication = dict(self.keyspaces["system_auth"].replication)
        self.keyspaces["system_distributed"].replication = dict(self.keyspaces["system_auth"].replication)

        self.add_table("system", "local", (
            "key text, bootstrapped text, broadcast_address inet, broadcast_port int, "
            "cluster_name text, cql_version text, data_center text, gossip_generation int, "
            "host_id uuid, listen_address inet, listen_port int, native_protocol_version text, "
            "partitioner text, rack text, release_version text, rpc_address inet, rpc_port int, "
            "schema_version uuid, tokens set<text>, truncated_at map<uuid, blob>"),
            ["key"], provider=self._local_rows)
        self.add_table("system", "peers", (
            "peer inet, data_center text, host_id uuid, preferred_ip inet, rack text, "
            "release_version text, rpc_address inet, schema_version uuid, tokens set<text>"),
            ["peer"], provider=self._peers_rows)
        self.add_table("system", "peers_v2", (
            "peer inet, peer_port int, data_center text, host_id uuid, native_address inet, "
            "native_port int, preferred_ip inet, preferred_port int, rack text, "
            "release_version text, schema_version uuid, tokens set<text>"),
            ["peer"], ["peer_port"], provider=self._peers_v2_rows)

        s = "system_schema"
        self.add_table(s, "keyspaces", "keyspace_name text, durable_writes boolean, "
                       "replication frozen<map<text, text>>", ["keyspace_name"],
                       provider=lambda node: self._schema_keyspaces())
        self.add_table(s, "tables", (
            "keyspace_name text, table_name text, additional_write_policy text, "
            "bloom_filter_fp_chance double, caching frozen<map<text, text>>, cdc boolean, "
            "comment text, compaction frozen<map<text, text>>, compression frozen<map<text, text>>, "
            "crc_check_chance double, dclocal_read_repair_chance double, default_time_to_live int, "
            "extensions frozen<map<text, blob>>, flags frozen<set<text>>, gc_grace_seconds int, "
            "id uuid, max_index_interval int, memtable_flush_period_in_ms int, "
            "min_index_interval int, read_repair text, read_repair_chance double, "
            "speculative_retry text"),
            ["keyspace_name"], ["table_name"], provider=lambda node: self._schema_tables())
        self.add_table(s, "columns", (
            "keyspace_name text, table_name text, column_name text, clustering_order text, "
            "column_name_bytes blob, kind text, position int, type text"),
            ["keyspace_name"], ["table_name", "column_name"],
            provider=lambda node: self._schema_columns(virtual=False))
        self.add_table(s, "types", "keyspace_name text, type_name text, "
                       "field_names frozen<list<text>>, field_types frozen<list<text>>",
                       ["keyspace_name"], ["type_name"], provider=lambda node: [])
        self.add_table(s, "functions", (
            "keyspace_name text, function_name text, argument_types frozen<list<text>>, "
            "argument_names frozen<list<text>>, body text, called_on_null_input boolean, "
            "language text, return_type text"),
            ["keyspace_name"], ["function_name", "argument_types"], provider=lambda node: [])
        self.add_table(s, "aggregates", (
            "keyspace_name text, aggregate_name text, argument_types frozen<list<text>>, "
            "final_func text, initcond text, return_type text, state_func text, state_type text"),
            ["keyspace_name"], ["aggregate_name", "argument_types"], provider=lambda node: [])
        self.add_table(s, "views", (
            "keyspace_name text, view_name text, base_table_id uuid, base_table_name text, "
            "bloom_filter_fp_chance double, caching frozen<map<text, text>>, cdc boolean, "
            "comment text, compaction frozen<map<text, text>>, compression frozen<map<text, text>>, "
            "crc_check_chance double, dclocal_read_repair_chance double, default_time_to_live int, "
            "extensions frozen<map<text, blob>>, gc_grace_seconds int, id uuid, "
            "include_all_columns boolean, max_index_interval int, memtable_flush_period_in_ms int, "
            "min_index_interval int, read_repair_chance double, speculative_retry text, "
            "where_clause text"),
            ["keyspace_name"], ["view_name"], provider=lambda node: [])
        self.add_table(s, "indexes", "keyspace_name text, table_name text, index_name text, "
                       "kind text, options frozen<map<text, text>>",
                       ["keyspace_name"], ["table_name", "index_name"], provider=lambda node: [])
        self.add_table(s, "triggers", "keyspace_name text, table_name text, trigger_name text, "
                       "options frozen<map<text, text>>",
                       ["keyspace_name"], ["table_name", "trigger_name"], provider=lambda node: [])
        self.add_table(s, "dropped_columns", "keyspace_name text, table_name text, "
                       "column_name text, dropped_time timestamp, kind text, type text",
                       ["keyspace_name"], ["table_name", "column_name"], provider=lambda node: [])

        v = "system_virtual_schema"
        self.add_table(v, "keyspaces", "keyspace_name text", ["keyspace_name"], virtual=True,
                       provider=lambda node: [{"keyspace_name": v}])
        self.add_table(v, "tables", "keyspace_name text, table_name text, comment text",
                       ["keyspace_name"], ["table_name"], virtual=True,
                       provider=lambda node: [{"keyspace_name": v, "table_name": t, "comment": ""}
                                              for t in self.keyspaces[v].tables])
        self.add_table(v, "columns", (
            "keyspace_name text, table_name text, column_name text, clustering_order text, "
            "column_name_bytes blob, kind text, position int, type text"),
            ["keyspace_name"], ["table_name", "column_name"], virtual=True,
            provider=lambda node: self._schema_columns(virtual=True))

        self.add_table("system_traces", "sessions", (
            "session_id uuid, client inet, command text, coordinator inet, coordinator_port int, "
            "duration int, parameters map<text, text>, request text, started_at timestamp"),
            ["session_id"])
        self.add_table("system_traces", "events", (
            "session_id uuid, event_id timeuuid, activity text, source inet, source_elapsed int, "
            "source_port int, thread text"),
            ["session_id"], ["event_id"])

    # computed system tables
    def _local_rows(self, node):
        return [{
            "key": "local", "bootstrapped": "COMPLETED",
            "broadcast_address": ipaddress.ip_address(node.address), "broadcast_port": 7000,
            "cluster_name": CLUSTER_NAME, "cql_version": CQL_VERSION, "data_center": DATA_CENTER,
            "gossip_generation": int(time.time()), "host_id": node.host_id,
            "listen_address": ipaddress.ip_address(node.address), "listen_port": 7000,
            "native_protocol_version": "5", "partitioner": PARTITIONER, "rack": RACK,
            "release_version": RELEASE_VERSION, "rpc_address": ipaddress.ip_address(node.address),
            "rpc_port": node.port, "schema_version": self.schema_version, "tokens": [node.token],
            "truncated_at": None,
        }]

    def _peers_rows(self, node):
        return [{
            "peer": ipaddress.ip_address(p.address), "data_center": DATA_CENTER, "host_id": p.host_id,
            "preferred_ip": None, "rack": RACK, "release_version": RELEASE_VERSION,
            "rpc_address": ipaddress.ip_address(p.address), "schema_version": self.schema_version,
            "tokens": [p.token],
        } for p in self.nodes if p is not node]

    def _peers_v2_rows(self, node):
        return [{
            "peer": ipaddress.ip_address(p.address), "peer_port": 7000, "data_center": DATA_CENTER,
            "host_id": p.host_id, "native_address": ipaddress.ip_address(p.address),
            "native_port": p.port, "preferred_ip": None, "preferred_port": None, "rack": RACK,
            "release_version": RELEASE_VERSION, "schema_version": self.schema_version,
            "tokens": [p.token],
        } for p in self.nodes if p is not node]

    def _schema_keyspaces(self):
        return [{"keyspace_name": ks.name, "durable_writes": ks.durable_writes,
                 "replication": dict(ks.replication)}
                for ks in self.keyspaces.values() if not ks.virtual]

    def _schema_tables(self):
        rows = []
        for ks in self.keyspaces.values():
            if ks.virtual:
                continue
            for t in ks.tables.values():
                rows.append({
                    "keyspace_name": ks.name, "table_name": t.name,
                    "additional_write_policy": "99p", "bloom_filter_fp_chance": 0.01,
                    "caching": {"keys": "ALL", "rows_per_partition": "NONE"}, "cdc": None,
                    "comment": str(t.options.get("comment", "")),
                    "compaction": {"class": "org.apache.cassandra.db.compaction."
                                   "SizeTieredCompactionStrategy",
                                   "max_threshold": "32", "min_threshold": "4"},
                    "compression": {"chunk_length_in_kb": "16",
                                    "class": "org.apache.cassandra.io.compress.LZ4Compressor"},
                    "crc_check_chance": 1.0, "dclocal_read_repair_chance": 0.0,
                    "default_time_to_live": int(t.options.get("default_time_to_live", 0)),
                    "extensions": {}, "flags": ["compound"] if not t.is_counter
                    else ["compound", "counter"],
                    "gc_grace_seconds": int(t.options.get("gc_grace_seconds", 864000)),
                    "id": t.id, "max_index_interval": 2048, "memtable_flush_period_in_ms": 0,
                    "min_index_interval": 128, "read_repair": "BLOCKING",
                    "read_repair_chance": 0.0, "speculative_retry": "99p",
                })
        return rows

    def _schema_columns(self, virtual):
        rows = []
        for ks in self.keyspaces.values():
            if ks.virtual != virtual:
                continue
            for t in ks.tables.values():
                for c in t.columns.values():
                    order = "none"
                    if c.kind == "clustering":
                        order = t.clustering_order[c.name].lower()
                    rows.append({
                        "keyspace_name": ks.name, "table_name": t.name, "column_name": c.name,
                        "clustering_order": order, "column_name_bytes": c.name.encode(),
                        "kind": c.kind, "position": c.position, "type": c.type.cql(),
                    })
        return rows
