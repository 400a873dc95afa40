"""Runs parsed statements against the in-memory cluster and returns RESULT objects (or raises
CqlError): DDL, USE, INSERT/UPDATE/DELETE (with IF [NOT] EXISTS), SELECT with WHERE on any column
(non-key columns need ALLOW FILTERING), IN, LIMIT, COUNT(*), and paging.

Written for this test backend; it shares no code with Sluice.
"""
import datetime
import decimal
import hashlib
import ipaddress
import itertools
import struct
import time
import uuid

from . import parser as P
from .datatypes import InvalidValue, ListType, MapType, NATIVE, SetType, TupleType, hashable, \
    parse_type, sort_key, sort_values
from .results import (ALREADY_EXISTS, CONFIG_ERROR, INVALID, SYNTAX_ERROR, UNAUTHORIZED, CqlError,
                      ColumnSpec, Rows, SchemaChange, SetKeyspace, Void)
from .schema import SYSTEM_KEYSPACES, Keyspace, Table
from .wire import UNSET

_BOOL = NATIVE["boolean"]


def invalid(msg):
    return CqlError(INVALID, msg)


# --- values --------------------------------------------------------------------------------------

def literal_value(term, t, bound):
    """The Python value of a term for a column of type t; `bound` holds the values of markers."""
    if isinstance(term, P.Marker):
        raw = bound[term.index]
        if raw is None or raw is UNSET:
            return raw
        target = ListType(t) if term.in_list else t
        try:
            return target.deserialize(raw)
        except InvalidValue as e:
            raise invalid(f"Invalid value for {term.column}: {e}")
    if isinstance(term, P.FunctionCall):
        return _function_value(term, t, bound)
    kind, v = term.kind, term.value
    name = t.cql()
    if kind == "null":
        return None
    try:
        if isinstance(t, MapType):
            if kind != "map":
                raise ValueError
            return dict(sorted(((literal_value(k, t.key, bound), literal_value(x, t.value, bound))
                                for k, x in v), key=lambda kv: sort_key(kv[0])))
        if isinstance(t, SetType):
            if kind not in ("set", "map") or (kind == "map" and v):
                raise ValueError
            return sort_values(literal_value(x, t.elem, bound) for x in v)
        if isinstance(t, ListType):
            if kind != "list":
                raise ValueError
            return [literal_value(x, t.elem, bound) for x in v]
        if isinstance(t, TupleType):
            if kind != "tuple" or len(v) != len(t.elems):
                raise ValueError
            return tuple(literal_value(x, e, bound) for x, e in zip(v, t.elems))
        if name in ("text", "varchar", "ascii"):
            if kind != "string":
                raise ValueError
            return v
        if name in ("int", "bigint", "smallint", "tinyint", "varint", "counter"):
            if kind != "int":
                raise ValueError
            limits = {"int": 31, "bigint": 63, "smallint": 15, "tinyint": 7, "counter": 63}
            if name in limits and not -(2 ** limits[name]) <= v < 2 ** limits[name]:
                raise invalid(f"Invalid {name} literal {v}: out of range")
            return v
        if name in ("double", "float"):
            if kind not in ("int", "float"):
                raise ValueError
            return float(v)
        if name == "decimal":
            if kind not in ("int", "float"):
                raise ValueError
            return decimal.Decimal(str(v))
        if name == "boolean":
            if kind != "bool":
                raise ValueError
            return v
        if name == "blob":
            if kind != "blob":
                raise ValueError
            return v
        if name in ("uuid", "timeuuid"):
            if kind == "uuid":
                return v
            if kind == "string":
                return uuid.UUID(v)
            raise ValueError
        if name == "inet":
            if kind != "string":
                raise ValueError
            return ipaddress.ip_address(v)
        if name == "timestamp":
            if kind == "int":
                return v
            if kind == "string":
                return _parse_timestamp(v)
            raise ValueError
        if name == "date":
            if kind == "string":
                return (datetime.date.fromisoformat(v) - datetime.date(1970, 1, 1)).days
            raise ValueError
        if name == "time":
            if kind == "int":
                return v
            if kind == "string":
                hh, mm, rest = v.split(":")
                sec, _, frac = rest.partition(".")
                return ((int(hh) * 60 + int(mm)) * 60 + int(sec)) * 10 ** 9 + int(
                    (frac + "000000000")[:9])
            raise ValueError
    except CqlError:
        raise
    except (ValueError, TypeError):
        pass
    raise invalid(f"Invalid {kind} constant ({_show(term)}) for a column of type {name}")


def _show(term):
    if isinstance(term, P.Literal):
        return repr(term.value) if term.kind == "string" else str(term.value)
    return "?"


def _parse_timestamp(s):
    text = s.strip().replace(" ", "T", 1)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    if len(text) >= 5 and text[-5] in "+-" and text[-4:].isdigit() and ":" not in text[-5:]:
        text = text[:-2] + ":" + text[-2:]
    dt = datetime.datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return int(dt.timestamp() * 1000)


def _function_value(call, t, bound):
    name = call.name
    if name == "now":
        return uuid.uuid1()
    if name == "uuid":
        return uuid.uuid4()
    if name in ("totimestamp", "tounixtimestamp") and call.args and \
            isinstance(call.args[0], P.FunctionCall) and call.args[0].name == "now":
        return int(time.time() * 1000)
    if name in ("currenttimestamp",):
        return int(time.time() * 1000)
    if name in ("textasblob", "varcharasblob") and len(call.args) == 1:
        return literal_value(call.args[0], NATIVE["text"], bound).encode()
    raise invalid(f"Unknown function {name} (the test backend knows now(), uuid(), "
                  f"toTimestamp(now()), currentTimestamp(), textAsBlob())")


# --- statements ----------------------------------------------------------------------------------

class Session:
    """What a connection carries between requests: its keyspace."""

    def __init__(self):
        self.keyspace = None


class Executor:
    def __init__(self, cluster, node, on_schema_change):
        self.cluster = cluster
        self.node = node
        self.on_schema_change = on_schema_change

    # lookups
    def keyspace_name(self, stmt, session, default_keyspace=None):
        ks = stmt.keyspace or default_keyspace or session.keyspace
        if ks is None:
            raise invalid("No keyspace has been specified. USE a keyspace, or explicitly specify "
                          "keyspace.tablename")
        return ks

    def table(self, stmt, session, default_keyspace=None):
        ks = self.keyspace_name(stmt, session, default_keyspace)
        keyspace = self.cluster.keyspaces.get(ks)
        if keyspace is None:
            raise invalid(f"Keyspace {ks} does not exist")
        t = keyspace.tables.get(stmt.table)
        if t is None:
            raise invalid(f"unconfigured table {stmt.table}")
        return t

    @staticmethod
    def column(table, name):
        c = table.columns.get(name)
        if c is None:
            raise invalid(f"Undefined column name {name} in table {table.keyspace}.{table.name}")
        return c

    def check_modifiable(self, table):
        if table.keyspace in SYSTEM_KEYSPACES or table.provider is not None:
            raise CqlError(UNAUTHORIZED, f"{table.keyspace} keyspace is not user-modifiable.")

    # prepared metadata
    def bind_specs(self, stmt, session, default_keyspace=None):
        """(ColumnSpec per marker, partition key marker indexes)."""
        if isinstance(stmt, P.Batch):
            specs = []
            for s in stmt.statements:
                specs.extend(self.bind_specs(s, session, default_keyspace)[0])
            return specs, []
        if not stmt.markers:
            return [], []
        t = self.table(stmt, session, default_keyspace)
        specs, by_column = [], {}
        for m in stmt.markers:
            if m.column == "[limit]":
                specs.append(ColumnSpec(t.keyspace, t.name, "[limit]", NATIVE["int"]))
                continue
            c = self.column(t, m.column)
            ctype = ListType(c.type) if m.in_list else c.type
            name = m.name or (f"in({c.name})" if m.in_list else c.name)
            specs.append(ColumnSpec(t.keyspace, t.name, name, ctype))
            if not m.in_list:
                by_column.setdefault(c.name, m.index)
        pk = [by_column.get(k) for k in t.partition_key]
        return specs, (pk if all(i is not None for i in pk) else [])

    def result_specs(self, stmt, session, default_keyspace=None):
        if not isinstance(stmt, P.Select):
            return []
        t = self.table(stmt, session, default_keyspace)
        return [spec for spec, _ in self._selection(t, stmt)]

    # execution
    def execute(self, stmt, bound, session, page_size=-1, paging_state=None, default_keyspace=None,
                query_id=b""):
        if isinstance(stmt, P.Use):
            if stmt.keyspace not in self.cluster.keyspaces:
                raise invalid(f"Keyspace '{stmt.keyspace}' does not exist")
            session.keyspace = stmt.keyspace
            return SetKeyspace(stmt.keyspace)
        if isinstance(stmt, P.CreateKeyspace):
            return self.create_keyspace(stmt)
        if isinstance(stmt, P.DropKeyspace):
            return self.drop_keyspace(stmt, session)
        if isinstance(stmt, P.CreateTable):
            return self.create_table(stmt, session, default_keyspace)
        if isinstance(stmt, P.DropTable):
            return self.drop_table(stmt, session, default_keyspace)
        if isinstance(stmt, P.AlterTable):
            return self.alter_table(stmt, session, default_keyspace)
        if isinstance(stmt, P.Truncate):
            t = self.table(stmt, session, default_keyspace)
            self.check_modifiable(t)
            t.partitions.clear()
            return Void()
        if isinstance(stmt, P.Insert):
            return self.insert(stmt, bound, session, default_keyspace)
        if isinstance(stmt, P.Update):
            return self.update(stmt, bound, session, default_keyspace)
        if isinstance(stmt, P.Delete):
            return self.delete(stmt, bound, session, default_keyspace)
        if isinstance(stmt, P.Select):
            return self.select(stmt, bound, session, page_size, paging_state, default_keyspace,
                               query_id)
        if isinstance(stmt, P.Batch):
            return self.batch([(s, bound) for s in stmt.statements], session, default_keyspace)
        if isinstance(stmt, P.Describe):
            return self.describe(stmt, session, default_keyspace)
        raise CqlError(SYNTAX_ERROR, "unsupported statement")

    def batch(self, items, session, default_keyspace=None):
        """items: (statement, bound values). All are checked before any is applied."""
        for s, _ in items:
            if not isinstance(s, (P.Insert, P.Update, P.Delete)):
                raise invalid("Only INSERT, UPDATE and DELETE statements are allowed in BATCH")
            if getattr(s, "if_not_exists", False) or getattr(s, "if_exists", False):
                raise invalid("Conditional statements in BATCH are not supported by the test backend")
            self.check_modifiable(self.table(s, session, default_keyspace))
        for s, b in items:
            self.execute(s, b, session, default_keyspace=default_keyspace)
        return Void()

    # DDL
    def create_keyspace(self, stmt):
        if stmt.keyspace in self.cluster.keyspaces:
            if stmt.if_not_exists:
                return Void()
            raise CqlError(ALREADY_EXISTS, f"Keyspace {stmt.keyspace} already exists",
                           keyspace=stmt.keyspace, table="")
        replication = stmt.options.get("replication")
        if not isinstance(replication, dict) or "class" not in replication:
            raise CqlError(CONFIG_ERROR, "Missing mandatory option 'replication' with a 'class'")
        cls = str(replication["class"])
        if "." not in cls:
            cls = "org.apache.cassandra.locator." + cls
        replication = {str(k): str(v) for k, v in replication.items()}
        replication["class"] = cls
        durable = stmt.options.get("durable_writes", True)
        self.cluster.keyspaces[stmt.keyspace] = Keyspace(stmt.keyspace, replication,
                                                         durable in (True, "true"))
        return self._schema_changed(SchemaChange("CREATED", "KEYSPACE", stmt.keyspace))

    def drop_keyspace(self, stmt, session):
        if stmt.keyspace in SYSTEM_KEYSPACES:
            raise CqlError(UNAUTHORIZED, f"{stmt.keyspace} keyspace is not user-modifiable.")
        if stmt.keyspace not in self.cluster.keyspaces:
            if stmt.if_exists:
                return Void()
            raise CqlError(CONFIG_ERROR, f"Cannot drop non existing keyspace '{stmt.keyspace}'.")
        del self.cluster.keyspaces[stmt.keyspace]
        return self._schema_changed(SchemaChange("DROPPED", "KEYSPACE", stmt.keyspace))

    def create_table(self, stmt, session, default_keyspace):
        ks = self.keyspace_name(stmt, session, default_keyspace)
        keyspace = self.cluster.keyspaces.get(ks)
        if keyspace is None:
            raise invalid(f"Keyspace '{ks}' doesn't exist")
        if ks in SYSTEM_KEYSPACES:
            raise CqlError(UNAUTHORIZED, f"{ks} keyspace is not user-modifiable.")
        if stmt.table in keyspace.tables:
            if stmt.if_not_exists:
                return Void()
            raise CqlError(ALREADY_EXISTS, f"Object {ks}.{stmt.table} already exists",
                           keyspace=ks, table=stmt.table)
        columns, seen = [], set()
        for name, typ, static in stmt.columns:
            if name in seen:
                raise invalid(f"Duplicate column '{name}' declaration for table {ks}.{stmt.table}")
            seen.add(name)
            try:
                columns.append((name, parse_type(typ), static))
            except InvalidValue as e:
                raise invalid(f"Unknown type {typ}: {e}")
        for k in stmt.partition_key + stmt.clustering:
            if k not in seen:
                raise invalid(f"Unknown definition {k} referenced in PRIMARY KEY")
        for k in stmt.clustering_order:
            if k not in stmt.clustering:
                raise invalid(f"Only clustering key columns can be defined in CLUSTERING ORDER "
                              f"directive: {k}")
        keyspace.tables[stmt.table] = Table(ks, stmt.table, columns, stmt.partition_key,
                                            stmt.clustering, stmt.clustering_order, stmt.options)
        return self._schema_changed(SchemaChange("CREATED", "TABLE", ks, stmt.table))

    def drop_table(self, stmt, session, default_keyspace):
        ks = self.keyspace_name(stmt, session, default_keyspace)
        keyspace = self.cluster.keyspaces.get(ks)
        if ks in SYSTEM_KEYSPACES:
            raise CqlError(UNAUTHORIZED, f"{ks} keyspace is not user-modifiable.")
        if keyspace is None or stmt.table not in keyspace.tables:
            if stmt.if_exists:
                return Void()
            raise invalid(f"Table '{ks}.{stmt.table}' doesn't exist")
        del keyspace.tables[stmt.table]
        return self._schema_changed(SchemaChange("DROPPED", "TABLE", ks, stmt.table))

    def alter_table(self, stmt, session, default_keyspace):
        t = self.table(stmt, session, default_keyspace)
        self.check_modifiable(t)
        if stmt.action == "ADD":
            for name, typ in stmt.columns:
                if name in t.columns:
                    raise invalid(f"Column with name '{name}' already exists")
                try:
                    cql_type = parse_type(typ)
                except InvalidValue as e:
                    raise invalid(f"Unknown type {typ}: {e}")
                t.add_column(name, cql_type)
        elif stmt.action == "DROP":
            for name in stmt.columns:
                c = self.column(t, name)
                if c.kind != "regular":
                    raise invalid(f"Cannot drop PRIMARY KEY column {name}")
                t.drop_column(name)
        else:
            t.options.update(stmt.options)
        return self._schema_changed(SchemaChange("UPDATED", "TABLE", t.keyspace, t.name))

    def _schema_changed(self, change):
        self.cluster.bump_schema_version()
        self.on_schema_change(change)
        return change

    # server-side DESCRIBE (what cqlsh 6 sends to a Cassandra 4 server)
    def describe(self, stmt, session, default_keyspace):
        text = NATIVE["text"]
        what = stmt.what
        if what == "CLUSTER":
            specs = [ColumnSpec("system", "describe", n, text)
                     for n in ("cluster", "partitioner", "snitch")]
            from .schema import CLUSTER_NAME, PARTITIONER
            return Rows(specs, [[CLUSTER_NAME, PARTITIONER,
                                 "org.apache.cassandra.locator.SimpleSnitch"]])
        specs = [ColumnSpec("system", "describe", n, text)
                 for n in ("keyspace_name", "type", "name", "create_statement")]
        keyspaces = [ks for ks in self.cluster.keyspaces.values() if not ks.virtual]
        current = stmt.keyspace or default_keyspace or session.keyspace
        if what == "KEYSPACES":
            return Rows(specs, [[ks.name, "keyspace", ks.name, None] for ks in keyspaces])
        if what == "TABLES":
            chosen = [ks for ks in keyspaces if current is None or ks.name == current]
            return Rows(specs, [[ks.name, "table", t, None] for ks in chosen for t in ks.tables])
        if what in ("TYPES", "FUNCTIONS", "AGGREGATES"):
            return Rows(specs, [])
        if what == "OBJECT" and stmt.keyspace is None and stmt.table in self.cluster.keyspaces:
            what, current = "KEYSPACE", stmt.table
        if what == "KEYSPACE":
            if current is None:
                raise invalid("No keyspace specified and no current keyspace")
            ks = self.cluster.keyspaces.get(current)
            if ks is None:
                raise invalid(f"'{current}' not found in keyspaces")
            rows = [[ks.name, "keyspace", ks.name, _create_keyspace(ks)]]
            rows += [[ks.name, "table", t.name, _create_table(t)] for t in ks.tables.values()]
            return Rows(specs, rows)
        t = self.table(stmt, session, default_keyspace)
        return Rows(specs, [[t.keyspace, "table", t.name, _create_table(t)]])

    # keys and restrictions
    def _restrictions(self, t, where, bound):
        """{column: [(op, value)]}, values converted to the column's type."""
        out = {}
        for rel in where:
            c = self.column(t, rel.column)
            if rel.op == "IN":
                if isinstance(rel.term, P.Marker):
                    values = literal_value(rel.term, c.type, bound)
                    if values is None or values is UNSET:
                        raise invalid(f"Invalid null value for IN restriction on {c.name}")
                else:
                    values = [literal_value(x, c.type, bound) for x in rel.term]
                value = values
            elif rel.op in ("CONTAINS", "CONTAINS KEY"):
                if rel.op == "CONTAINS KEY" and not isinstance(c.type, MapType):
                    raise invalid(f"Cannot use CONTAINS KEY on non-map column {c.name}")
                if not isinstance(c.type, (MapType, ListType)):
                    raise invalid(f"Cannot use CONTAINS on non-collection column {c.name}")
                if rel.op == "CONTAINS KEY":
                    elem = c.type.key
                else:
                    elem = c.type.value if isinstance(c.type, MapType) else c.type.elem
                value = literal_value(rel.term, elem, bound)
            else:
                value = literal_value(rel.term, c.type, bound)
                if value is UNSET:
                    raise invalid(f"Invalid unset value for column {c.name}")
                if value is None:
                    raise invalid(f"Invalid null value in condition for column {c.name}")
            out.setdefault(c.name, []).append((rel.op, value))
        return out

    @staticmethod
    def _matches(row, restrictions):
        for col, conds in restrictions.items():
            v = row.get(col)
            for op, want in conds:
                if op == "=":
                    if v is None or hashable(v) != hashable(want):
                        return False
                elif op == "IN":
                    if v is None or hashable(v) not in {hashable(w) for w in want}:
                        return False
                elif op == "CONTAINS":
                    if v is None or hashable(want) not in {hashable(x) for x in v}:
                        return False
                elif op == "CONTAINS KEY":
                    if v is None or want not in v:
                        return False
                else:
                    if v is None:
                        return False
                    a, b = sort_key(v), sort_key(want)
                    if not {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b,
                            "!=": a != b}[op]:
                        return False
        return True

    def _key_values(self, t, restrictions, columns, what):
        """Every combination of values for `columns`, each restricted by = or IN."""
        choices = []
        for k in columns:
            conds = restrictions.get(k)
            if not conds or conds[0][0] not in ("=", "IN"):
                raise invalid(f"Some {what} are missing: {k}")
            op, v = conds[0]
            choices.append([v] if op == "=" else list(v))
        return [tuple(hashable(x) for x in combo) for combo in itertools.product(*choices)]

    # writes
    def insert(self, stmt, bound, session, default_keyspace):
        t = self.table(stmt, session, default_keyspace)
        self.check_modifiable(t)
        if t.is_counter:
            raise invalid("INSERT statements are not allowed on counter tables, use UPDATE instead")
        values = {}
        for col, term in zip(stmt.columns, stmt.values):
            c = self.column(t, col)
            if col in values:
                raise invalid("The column names contains duplicates")
            values[col] = literal_value(term, c.type, bound)
        for k in t.partition_key + t.clustering:
            v = values.get(k)
            if k not in values:
                raise invalid(f"Some {'partition key parts' if k in t.partition_key else 'clustering keys'} "
                              f"are missing: {k}")
            if v is None:
                raise invalid(f"Invalid null value in condition for column {k}")
            if v is UNSET:
                raise invalid(f"Invalid unset value for column {k}")
        pk = tuple(hashable(values[k]) for k in t.partition_key)
        ck = tuple(hashable(values[k]) for k in t.clustering)
        partition = t.partitions.get(pk, {})
        existing = partition.get(ck)
        if stmt.if_not_exists and existing is not None:
            return self._applied(t, False, existing)
        row = dict(existing) if existing else {c: None for c in t.columns}
        for col, v in values.items():
            if v is not UNSET:
                row[col] = v
        t.partitions.setdefault(pk, {})[ck] = row
        return self._applied(t, True) if stmt.if_not_exists else Void()

    def _applied(self, t, applied, existing=None):
        specs = [ColumnSpec(t.keyspace, t.name, "[applied]", _BOOL)]
        row = [applied]
        if existing is not None:
            for c in t.columns.values():
                specs.append(ColumnSpec(t.keyspace, t.name, c.name, c.type))
                row.append(existing.get(c.name))
        return Rows(specs, [row])

    def _full_keys(self, t, stmt, bound):
        restrictions = self._restrictions(t, stmt.where, bound)
        for col in restrictions:
            if col not in t.partition_key and col not in t.clustering:
                raise invalid(f"Non PRIMARY KEY columns found in where clause: {col}")
        pks = self._key_values(t, restrictions, t.partition_key, "partition key parts")
        return restrictions, pks

    def update(self, stmt, bound, session, default_keyspace):
        t = self.table(stmt, session, default_keyspace)
        self.check_modifiable(t)
        restrictions, pks = self._full_keys(t, stmt, bound)
        cks = self._key_values(t, restrictions, t.clustering, "clustering keys")
        changes = []
        for col, op, term in stmt.assignments:
            c = self.column(t, col)
            if c.kind in ("partition_key", "clustering"):
                raise invalid(f"PRIMARY KEY part {col} found in SET part")
            if op == "setkey":
                key_term, value_term = term
                if isinstance(c.type, MapType):
                    changes.append((col, op, (literal_value(key_term, c.type.key, bound),
                                              literal_value(value_term, c.type.value, bound))))
                elif isinstance(c.type, ListType) and not isinstance(c.type, SetType):
                    changes.append((col, op, (literal_value(key_term, NATIVE["int"], bound),
                                              literal_value(value_term, c.type.elem, bound))))
                else:
                    raise invalid(f"Invalid operation for non-map/list column {col}")
                continue
            value = literal_value(term, c.type if c.type.cql() != "counter" else NATIVE["bigint"],
                                  bound)
            if c.type.cql() == "counter" and op == "=":
                raise invalid(f"Cannot set the value of counter column {col} (counters can only "
                              f"be incremented/decremented, not set)")
            changes.append((col, op, value))
        for pk in pks:
            for ck in cks:
                partition = t.partitions.get(pk, {})
                existing = partition.get(ck)
                if stmt.if_exists and existing is None:
                    return self._applied(t, False)
                row = dict(existing) if existing else {c: None for c in t.columns}
                for k, v in zip(t.partition_key, pk):
                    row[k] = _unhash(v, t.columns[k].type)
                for k, v in zip(t.clustering, ck):
                    row[k] = _unhash(v, t.columns[k].type)
                for col, op, value in changes:
                    if value is UNSET:
                        continue
                    row[col] = _apply(row.get(col), op, value, t.columns[col].type)
                t.partitions.setdefault(pk, {})[ck] = row
        return self._applied(t, True) if stmt.if_exists else Void()

    def delete(self, stmt, bound, session, default_keyspace):
        t = self.table(stmt, session, default_keyspace)
        self.check_modifiable(t)
        restrictions, pks = self._full_keys(t, stmt, bound)
        for col in stmt.columns:
            c = self.column(t, col)
            if c.kind in ("partition_key", "clustering"):
                raise invalid(f"Invalid identifier {col} for deletion (should not be a PRIMARY KEY part)")
        found = False
        for pk in pks:
            partition = t.partitions.get(pk)
            if not partition:
                continue
            for ck, row in list(partition.items()):
                if not self._matches(row, {k: v for k, v in restrictions.items()
                                           if k in t.clustering}):
                    continue
                found = True
                if stmt.columns:
                    for col in stmt.columns:
                        row[col] = None
                else:
                    del partition[ck]
            if not partition:
                del t.partitions[pk]
        if stmt.if_exists:
            return self._applied(t, found)
        return Void()

    # reads
    def _selection(self, t, stmt):
        """[(ColumnSpec, how to compute the value from the rows)]."""
        if stmt.selectors is None:
            return [(ColumnSpec(t.keyspace, t.name, c.name, c.type), ("column", c.name))
                    for c in t.columns.values()]
        out = []
        for expr, alias in stmt.selectors:
            if expr[0] == "column":
                c = self.column(t, expr[1])
                out.append((ColumnSpec(t.keyspace, t.name, alias or c.name, c.type),
                            ("column", c.name)))
            elif expr[1] == "count":
                out.append((ColumnSpec(t.keyspace, t.name, alias or "count", NATIVE["bigint"]),
                            ("count", expr[2])))
            else:
                raise invalid(f"Unknown function '{expr[1]}' (the test backend's selectors are "
                              f"columns and COUNT)")
        return out

    def select(self, stmt, bound, session, page_size, paging_state, default_keyspace, query_id):
        t = self.table(stmt, session, default_keyspace)
        selection = self._selection(t, stmt)
        restrictions = self._restrictions(t, stmt.where, bound)
        keys = set(t.partition_key) | set(t.clustering)
        if t.provider is None and not stmt.allow_filtering and any(
                col not in keys for col in restrictions):
            raise invalid("Cannot execute this query as it might involve data filtering and thus "
                          "may have unpredictable performance. If you want to execute this query "
                          "despite the performance unpredictability, use ALLOW FILTERING")
        pk_direct = t.provider is None and all(
            restrictions.get(k) and restrictions[k][0][0] in ("=", "IN") for k in t.partition_key)
        if pk_direct:
            rows = []
            for pk in self._key_values(t, restrictions, t.partition_key, "partition key parts"):
                rows.extend(t.partition_rows(pk))
        else:
            rows = t.rows(self.node)
        rows = [r for r in rows if self._matches(r, restrictions)]
        if stmt.order:
            col, direction = stmt.order[0]
            c = self.column(t, col)
            if c.kind != "clustering":
                raise invalid("Order by is currently only supported on the clustered columns of "
                              "the PRIMARY KEY")
            if direction != t.clustering_order[col]:
                rows.reverse()
        if stmt.limit is not None:
            limit = literal_value(stmt.limit, NATIVE["int"], bound)
            if limit is None or limit is UNSET or limit <= 0:
                raise invalid("LIMIT must be strictly positive")
            rows = rows[:limit]
        specs = [s for s, _ in selection]
        if any(how[0] == "count" for _, how in selection):
            out = []
            for spec, how in selection:
                if how[0] == "count":
                    arg = how[1][0] if how[1] else "*"
                    if arg in ("*", "1"):
                        out.append(len(rows))
                    else:
                        out.append(sum(1 for r in rows if r.get(arg) is not None))
                else:
                    out.append(rows[0].get(how[1]) if rows else None)
            result = Rows(specs, [out])
            if not pk_direct and t.provider is None:
                result.warnings = ["Aggregation query used without partition key"]
            return result
        values = [[r.get(how[1]) for _, how in selection] for r in rows]
        if stmt.distinct:
            seen, unique = set(), []
            for v in values:
                h = hashable(v)
                if h not in seen:
                    seen.add(h)
                    unique.append(v)
            values = unique
        return _page(values, specs, page_size, paging_state, query_id, bound)


def _quote(name):
    return name if name.isidentifier() and name.islower() else '"' + name.replace('"', '""') + '"'


def _create_keyspace(ks):
    replication = ", ".join(f"'{k}': '{v}'" for k, v in ks.replication.items())
    return (f"CREATE KEYSPACE {_quote(ks.name)} WITH replication = {{{replication}}}  AND "
            f"durable_writes = {'true' if ks.durable_writes else 'false'};")


def _create_table(t):
    lines = [f"    {_quote(c.name)} {c.type.cql()}{' static' if c.kind == 'static' else ''},"
             for c in t.columns.values()]
    pk = ", ".join(map(_quote, t.partition_key))
    if len(t.partition_key) > 1:
        pk = f"({pk})"
    key = ", ".join([pk] + [_quote(c) for c in t.clustering])
    lines.append(f"    PRIMARY KEY ({key})")
    out = f"CREATE TABLE {_quote(t.keyspace)}.{_quote(t.name)} (\n" + "\n".join(lines) + "\n)"
    if t.clustering:
        order = ", ".join(f"{_quote(c)} {t.clustering_order[c]}" for c in t.clustering)
        out += f" WITH CLUSTERING ORDER BY ({order})"
    return out + ";"


def _page(values, specs, page_size, paging_state, query_id, bound):
    digest = hashlib.md5(query_id + repr([b if isinstance(b, (bytes, type(None))) else 'u'
                                           for b in bound]).encode()).digest()[:8]
    offset = 0
    if paging_state is not None:
        if len(paging_state) != 16 or paging_state[8:] != digest:
            raise CqlError(INVALID, "Invalid paging state (not one this backend issued for "
                           "this query)")
        offset = struct.unpack(">q", paging_state[:8])[0]
    if page_size is None or page_size <= 0:
        return Rows(specs, values[offset:])
    end = offset + page_size
    state = struct.pack(">q", end) + digest if end < len(values) else None
    return Rows(specs, values[offset:end], state)


def _unhash(v, t):
    if isinstance(t, MapType) and isinstance(v, tuple):
        return dict(v)
    if isinstance(t, ListType) and isinstance(v, tuple):
        return list(v)
    return v


def _apply(current, op, value, t):
    name = t.cql()
    if op == "=":
        return value
    if name == "counter":
        if value is None:
            raise invalid("Invalid null value for counter increment")
        return (current or 0) + (value if op == "+" else -value)
    if op == "setkey":
        k, v = value
        if isinstance(t, MapType):
            out = dict(current or {})
            if v is None:
                out.pop(k, None)
            else:
                out[k] = v
            return dict(sorted(out.items(), key=lambda kv: sort_key(kv[0])))
        out = list(current or [])
        if not 0 <= k < len(out):
            raise invalid(f"List index {k} out of bound, list has size {len(out)}")
        out[k] = v
        return out
    if value is None:
        return current
    if isinstance(t, SetType):
        cur = list(current or [])
        if op == "+":
            return sort_values(cur + list(value))
        drop = {hashable(x) for x in value}
        return [x for x in cur if hashable(x) not in drop] or None
    if isinstance(t, MapType):
        cur = dict(current or {})
        if op == "+":
            cur.update(value)
            return dict(sorted(cur.items(), key=lambda kv: sort_key(kv[0])))
        for k in value:
            cur.pop(k, None)
        return cur or None
    if isinstance(t, ListType):
        cur = list(current or [])
        if op == "+":
            return cur + list(value)
        if op == "prepend":
            return list(value) + cur
        drop = {hashable(x) for x in value}
        return [x for x in cur if hashable(x) not in drop] or None
    raise invalid(f"Invalid operation ({op}) for non-collection column of type {name}")
