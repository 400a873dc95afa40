"""A parser for the small CQL subset the test backend runs (see docs/testing.md for the list).

Statements come out as plain objects; bind markers (`?` and `:name`) are numbered in the order they
appear and remember which column (or LIMIT) they bind to, which is what PREPARE's variable metadata
and EXECUTE's values need.

Written for this test backend from the CQL documentation; it shares no code with Sluice.
"""
import re
import uuid


class CqlSyntaxError(Exception):
    """Text that does not parse; answered with a SYNTAX_ERROR (0x2000)."""


_TOKEN = re.compile(r"""
    (?P<ws>\s+|--[^\n]*|//[^\n]*|/\*.*?\*/)
  | (?P<uuid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})
  | (?P<blob>0[xX][0-9a-fA-F]*)
  | (?P<float>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)|-?\d+\.\d*|-?\.\d+|-?NaN\b|-?Infinity\b)
  | (?P<int>-?\d+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<dollar>\$\$.*?\$\$)
  | (?P<qident>"(?:[^"]|"")+")
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|!=|[-+(),;.*=<>?:\[\]{}])
""", re.VERBOSE | re.DOTALL)


class Token:
    __slots__ = ("kind", "text", "value", "pos")

    def __init__(self, kind, text, value, pos):
        self.kind, self.text, self.value, self.pos = kind, text, value, pos

    def __repr__(self):
        return f"{self.kind}:{self.text}"


def tokenize(text):
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise CqlSyntaxError(f"line 1:{pos} unexpected character {text[pos]!r}")
        kind = m.lastgroup
        raw = m.group(kind)
        if kind != "ws":
            if kind == "string":
                value = raw[1:-1].replace("''", "'")
            elif kind == "dollar":
                kind, value = "string", raw[2:-2]
            elif kind == "qident":
                kind, value = "ident", raw[1:-1].replace('""', '"')
                out.append(Token(kind, raw, value, pos))
                out[-1].kind = "qident"
                pos = m.end()
                continue
            elif kind == "ident":
                value = raw.lower()
            else:
                value = raw
            out.append(Token(kind, raw, value, pos))
        pos = m.end()
    out.append(Token("eof", "<EOF>", None, len(text)))
    return out


# --- AST -----------------------------------------------------------------------------------------

class Marker:
    """A bind marker; `column` is what it binds to ('[limit]' for LIMIT ?), `in_list` for IN ?."""

    def __init__(self, index, name=None):
        self.index = index
        self.name = name
        self.column = None
        self.in_list = False


class Literal:
    def __init__(self, kind, value):
        self.kind = kind  # string int float bool null blob uuid list set map tuple
        self.value = value


class FunctionCall:
    def __init__(self, name, args):
        self.name = name
        self.args = args


class Relation:
    def __init__(self, column, op, term):
        self.column, self.op, self.term = column, op, term


class Statement:
    keyspace = None
    table = None
    markers = ()

    def __init__(self, **kw):
        self.__dict__.update(kw)


class Use(Statement): kind = "USE"
class CreateKeyspace(Statement): kind = "DDL"
class DropKeyspace(Statement): kind = "DDL"
class CreateTable(Statement): kind = "DDL"
class DropTable(Statement): kind = "DDL"
class Truncate(Statement): kind = "DDL"
class Insert(Statement): kind = "INSERT"
class Update(Statement): kind = "UPDATE"
class Delete(Statement): kind = "DELETE"
class Select(Statement): kind = "SELECT"
class Batch(Statement): kind = "BATCH"
class Control(Statement): kind = "CONTROL"
class Describe(Statement): kind = "OTHER"
class AlterTable(Statement): kind = "DDL"


# --- parser --------------------------------------------------------------------------------------

class Parser:
    def __init__(self, text):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.markers = []

    # token helpers
    def peek(self, offset=0):
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def next(self):
        tok = self.tokens[self.i]
        if tok.kind != "eof":
            self.i += 1
        return tok

    def error(self, msg, tok=None):
        tok = tok or self.peek()
        raise CqlSyntaxError(f"line 1:{tok.pos} {msg} (at {tok.text!r})")

    def at_kw(self, *words):
        tok = self.peek()
        return tok.kind == "ident" and tok.value.upper() in words

    def accept_kw(self, *words):
        if self.at_kw(*words):
            return self.next().value.upper()
        return None

    def expect_kw(self, *words):
        got = self.accept_kw(*words)
        if got is None:
            self.error(f"expecting {' or '.join(words)}")
        return got

    def accept(self, op):
        tok = self.peek()
        if tok.kind == "op" and tok.value == op:
            self.next()
            return True
        return False

    def expect(self, op):
        if not self.accept(op):
            self.error(f"expecting '{op}'")

    def ident(self):
        tok = self.next()
        if tok.kind not in ("ident", "qident"):
            self.error("identifier expected", tok)
        return tok.value

    def qualified_name(self):
        first = self.ident()
        if self.accept("."):
            return first, self.ident()
        return None, first

    # entry
    def parse(self):
        stmt = self.statement()
        self.accept(";")
        if self.peek().kind != "eof":
            self.error("unexpected input after statement")
        stmt.markers = self.markers
        return stmt

    def statement(self):
        word = self.accept_kw("SELECT", "INSERT", "UPDATE", "DELETE", "USE", "CREATE", "DROP",
                              "BEGIN", "TRUNCATE", "TESTBACKEND", "DESCRIBE", "DESC",
                              "ALTER")
        if word is None:
            self.error("no viable alternative at input")
        return getattr(self, "parse_" + word.lower())()

    def parse_desc(self):
        return self.parse_describe()

    def parse_describe(self):
        """DESCRIBE [FULL] CLUSTER | KEYSPACES | TABLES | TYPES | FUNCTIONS | AGGREGATES |
        KEYSPACE [name] | TABLE [ks.]name | [ks.]name (server-side DESCRIBE, as Cassandra 4)."""
        self.accept_kw("FULL")
        what = self.accept_kw("CLUSTER", "KEYSPACES", "TABLES", "COLUMNFAMILIES", "TYPES",
                              "FUNCTIONS", "AGGREGATES", "KEYSPACE", "SCHEMA", "TABLE",
                              "COLUMNFAMILY")
        ks = name = None
        if what in ("KEYSPACE", "SCHEMA"):
            what = "KEYSPACE"
            if self.peek().kind in ("ident", "qident"):
                ks = self.ident()
        elif what in ("TABLE", "COLUMNFAMILY"):
            what = "TABLE"
            ks, name = self.qualified_name()
        elif what is None:
            what = "OBJECT"
            ks, name = self.qualified_name()
        elif what == "COLUMNFAMILIES":
            what = "TABLES"
        return Describe(what=what, keyspace=ks, table=name)

    def parse_use(self):
        return Use(keyspace=self.ident())

    def parse_testbackend(self):
        words = []
        while self.peek().kind not in ("eof",) and not (self.peek().kind == "op" and self.peek().value == ";"):
            words.append(self.next())
        if not words:
            self.error("TESTBACKEND command expected")
        return Control(command=words[0].value.upper(), args=[t.value for t in words[1:]])

    def parse_create(self):
        what = self.expect_kw("KEYSPACE", "TABLE", "COLUMNFAMILY", "SCHEMA")
        if_not_exists = self._if_exists("NOT")
        if what in ("KEYSPACE", "SCHEMA"):
            name = self.ident()
            self.expect_kw("WITH")
            options = self.options()
            return CreateKeyspace(keyspace=name, if_not_exists=if_not_exists, options=options)
        ks, name = self.qualified_name()
        self.expect("(")
        columns, pk, ck = [], None, []
        while True:
            if self.accept_kw("PRIMARY"):
                self.expect_kw("KEY")
                pk, ck = self.primary_key()
            else:
                col = self.ident()
                typ = self.type_text()
                static = bool(self.accept_kw("STATIC"))
                columns.append((col, typ, static))
                if self.accept_kw("PRIMARY"):
                    self.expect_kw("KEY")
                    if pk is not None:
                        self.error("multiple PRIMARY KEYs specified")
                    pk, ck = [col], []
            if self.accept(","):
                if self.accept(")"):
                    break
                continue
            self.expect(")")
            break
        if pk is None:
            self.error("no PRIMARY KEY specified")
        options, order = {}, {}
        if self.accept_kw("WITH"):
            while True:
                if self.accept_kw("CLUSTERING"):
                    self.expect_kw("ORDER")
                    self.expect_kw("BY")
                    self.expect("(")
                    while True:
                        col = self.ident()
                        order[col] = self.accept_kw("ASC", "DESC") or "ASC"
                        if not self.accept(","):
                            break
                    self.expect(")")
                elif self.accept_kw("COMPACT"):
                    self.expect_kw("STORAGE")
                    options["compact storage"] = True
                else:
                    key = self.ident()
                    self.expect("=")
                    options[key] = self.term_literal()
                if not self.accept_kw("AND"):
                    break
        return CreateTable(keyspace=ks, table=name, if_not_exists=if_not_exists, columns=columns,
                           partition_key=pk, clustering=ck, clustering_order=order, options=options)

    def primary_key(self):
        self.expect("(")
        if self.accept("("):
            pk = [self.ident()]
            while self.accept(","):
                pk.append(self.ident())
            self.expect(")")
        else:
            pk = [self.ident()]
        ck = []
        while self.accept(","):
            ck.append(self.ident())
        self.expect(")")
        return pk, ck

    def type_text(self):
        parts, depth = [], 0
        while True:
            tok = self.peek()
            if tok.kind in ("ident", "qident"):
                parts.append(self.next().value)
            elif tok.kind == "op" and tok.value == "<":
                depth += 1
                parts.append(self.next().value)
            elif tok.kind == "op" and tok.value == ">" and depth > 0:
                depth -= 1
                parts.append(self.next().value)
            elif tok.kind == "op" and tok.value == "," and depth > 0:
                parts.append(self.next().value + " ")
            else:
                break
            if depth == 0 and parts and parts[-1] not in ("frozen", "list", "set", "map", "tuple"):
                break
        if not parts:
            self.error("type expected")
        return "".join(parts)

    def options(self):
        options = {}
        while True:
            key = self.ident()
            self.expect("=")
            options[key] = self.term_literal()
            if not self.accept_kw("AND"):
                break
        return options

    def term_literal(self):
        term = self.term()
        if not isinstance(term, Literal):
            self.error("literal expected")
        return plain(term)

    def _if_exists(self, negation=None):
        if self.at_kw("IF"):
            self.next()
            if negation:
                self.expect_kw(negation)
            self.expect_kw("EXISTS")
            return True
        return False

    def parse_alter(self):
        """ALTER TABLE [ks.]t ADD col type [, col type] | ADD (col type, ...) | DROP col | DROP (a, b)
        | WITH option = value [AND ...]."""
        self.expect_kw("TABLE", "COLUMNFAMILY")
        ks, name = self.qualified_name()
        action = self.expect_kw("ADD", "DROP", "WITH")
        if action == "WITH":
            return AlterTable(keyspace=ks, table=name, action="WITH", columns=[],
                              options=self.options())
        paren = self.accept("(")
        columns = []
        while True:
            col = self.ident()
            columns.append((col, self.type_text()) if action == "ADD" else col)
            if not self.accept(","):
                break
        if paren:
            self.expect(")")
        return AlterTable(keyspace=ks, table=name, action=action, columns=columns, options={})

    def parse_drop(self):
        what = self.expect_kw("KEYSPACE", "TABLE", "COLUMNFAMILY", "SCHEMA")
        if_exists = self._if_exists()
        if what in ("KEYSPACE", "SCHEMA"):
            return DropKeyspace(keyspace=self.ident(), if_exists=if_exists)
        ks, name = self.qualified_name()
        return DropTable(keyspace=ks, table=name, if_exists=if_exists)

    def parse_truncate(self):
        self.accept_kw("TABLE", "COLUMNFAMILY")
        ks, name = self.qualified_name()
        return Truncate(keyspace=ks, table=name)

    def using(self):
        out = {}
        if self.accept_kw("USING"):
            while True:
                what = self.expect_kw("TTL", "TIMESTAMP")
                out[what.lower()] = self.term()
                if not self.accept_kw("AND"):
                    break
        return out

    def parse_insert(self):
        self.expect_kw("INTO")
        ks, name = self.qualified_name()
        if self.accept_kw("JSON"):
            self.error("INSERT JSON is not supported by the test backend")
        self.expect("(")
        columns = [self.ident()]
        while self.accept(","):
            columns.append(self.ident())
        self.expect(")")
        self.expect_kw("VALUES")
        self.expect("(")
        values = []
        for i, col in enumerate(columns):
            if i:
                self.expect(",")
            values.append(self.term(column=col))
        self.expect(")")
        if_not_exists = self._if_exists("NOT")
        using = self.using()
        if len(values) != len(columns):
            self.error("unmatched column names/values")
        return Insert(keyspace=ks, table=name, columns=columns, values=values,
                      if_not_exists=if_not_exists, using=using)

    def parse_update(self):
        ks, name = self.qualified_name()
        using = self.using()
        self.expect_kw("SET")
        assignments = []
        while True:
            col = self.ident()
            if self.accept("["):
                key = self.term(column=col)
                self.expect("]")
                self.expect("=")
                assignments.append((col, "setkey", (key, self.term(column=col))))
            else:
                self.expect("=")
                if self.peek().kind in ("ident", "qident") and self.peek().value == col and \
                        self.peek(1).kind == "op" and self.peek(1).value in ("+", "-"):
                    self.next()
                    op = self.next().value
                    assignments.append((col, op, self.term(column=col)))
                else:
                    term = self.term(column=col)
                    if self.peek().kind == "op" and self.peek().value == "+" and \
                            self.peek(1).kind in ("ident", "qident") and self.peek(1).value == col:
                        self.next()
                        self.next()
                        assignments.append((col, "prepend", term))
                    else:
                        assignments.append((col, "=", term))
            if not self.accept(","):
                break
        self.expect_kw("WHERE")
        where = self.where()
        if_exists = self._if_exists()
        return Update(keyspace=ks, table=name, assignments=assignments, where=where,
                      if_exists=if_exists, using=using)

    def parse_delete(self):
        columns = []
        if not self.at_kw("FROM"):
            columns.append(self.ident())
            while self.accept(","):
                columns.append(self.ident())
        self.expect_kw("FROM")
        ks, name = self.qualified_name()
        using = self.using()
        self.expect_kw("WHERE")
        where = self.where()
        if_exists = self._if_exists()
        return Delete(keyspace=ks, table=name, columns=columns, where=where, if_exists=if_exists,
                      using=using)

    def parse_select(self):
        if self.accept_kw("JSON"):
            self.error("SELECT JSON is not supported by the test backend")
        distinct = bool(self.accept_kw("DISTINCT"))
        selectors = []
        if self.accept("*"):
            selectors = None
        else:
            while True:
                selectors.append(self.selector())
                if not self.accept(","):
                    break
        self.expect_kw("FROM")
        ks, name = self.qualified_name()
        where = self.where() if self.accept_kw("WHERE") else []
        order = []
        if self.accept_kw("ORDER"):
            self.expect_kw("BY")
            while True:
                order.append((self.ident(), self.accept_kw("ASC", "DESC") or "ASC"))
                if not self.accept(","):
                    break
        limit = None
        if self.accept_kw("PER"):
            self.error("PER PARTITION LIMIT is not supported by the test backend")
        if self.accept_kw("LIMIT"):
            limit = self.term(column="[limit]")
        allow_filtering = False
        if self.accept_kw("ALLOW"):
            self.expect_kw("FILTERING")
            allow_filtering = True
        return Select(keyspace=ks, table=name, selectors=selectors, where=where, order=order,
                      limit=limit, allow_filtering=allow_filtering, distinct=distinct)

    def selector(self):
        tok = self.peek()
        if tok.kind == "ident" and self.peek(1).kind == "op" and self.peek(1).value == "(":
            fname = self.next().value
            self.expect("(")
            args = []
            if self.accept("*"):
                args = ["*"]
            elif not (self.peek().kind == "op" and self.peek().value == ")"):
                while True:
                    t = self.peek()
                    if t.kind == "int":
                        args.append(self.next().value)
                    else:
                        args.append(self.ident())
                    if not self.accept(","):
                        break
            self.expect(")")
            expr = ("call", fname, args)
        else:
            expr = ("column", self.ident())
        alias = self.ident() if self.accept_kw("AS") else None
        return expr, alias

    def where(self):
        rels = []
        while True:
            if self.accept("("):
                self.error("multi-column relations are not supported by the test backend")
            col = self.ident()
            if col == "token" and self.peek().kind == "op" and self.peek().value == "(":
                self.error("token() relations are not supported by the test backend")
            if self.accept_kw("IN"):
                if self.peek().kind == "op" and self.peek().value in ("?", ":"):
                    term = self.term(column=col)
                    term.in_list = True
                else:
                    self.expect("(")
                    term = []
                    if not self.accept(")"):
                        while True:
                            term.append(self.term(column=col))
                            if not self.accept(","):
                                break
                        self.expect(")")
                rels.append(Relation(col, "IN", term))
            elif self.accept_kw("CONTAINS"):
                op = "CONTAINS KEY" if self.accept_kw("KEY") else "CONTAINS"
                rels.append(Relation(col, op, self.term(column=col)))
            else:
                tok = self.next()
                if tok.kind != "op" or tok.value not in ("=", "<", ">", "<=", ">=", "!="):
                    self.error("relation operator expected", tok)
                rels.append(Relation(col, tok.value, self.term(column=col)))
            if not self.accept_kw("AND"):
                break
        return rels

    def parse_begin(self):
        kind = self.accept_kw("UNLOGGED", "COUNTER") or "LOGGED"
        self.expect_kw("BATCH")
        using = self.using()
        statements = []
        while not self.at_kw("APPLY"):
            word = self.expect_kw("INSERT", "UPDATE", "DELETE")
            first_marker = len(self.markers)
            statements.append(getattr(self, "parse_" + word.lower())())
            statements[-1].markers = self.markers[first_marker:]
            self.accept(";")
        self.expect_kw("APPLY")
        self.expect_kw("BATCH")
        return Batch(batch_type=kind, statements=statements, using=using)

    # terms
    def term(self, column=None):
        tok = self.peek()
        if tok.kind == "op" and tok.value == "?":
            self.next()
            return self._marker(None, column)
        if tok.kind == "op" and tok.value == ":":
            self.next()
            return self._marker(self.ident(), column)
        if tok.kind == "string":
            return Literal("string", self.next().value)
        if tok.kind == "int":
            return Literal("int", int(self.next().value))
        if tok.kind == "float":
            return Literal("float", float(self.next().value))
        if tok.kind == "blob":
            return Literal("blob", bytes.fromhex(self.next().value[2:]))
        if tok.kind == "uuid":
            return Literal("uuid", uuid.UUID(self.next().value))
        if tok.kind == "ident":
            word = tok.value
            if word in ("true", "false"):
                self.next()
                return Literal("bool", word == "true")
            if word == "null":
                self.next()
                return Literal("null", None)
            if word in ("nan", "infinity"):
                self.next()
                return Literal("float", float(word))
            if self.peek(1).kind == "op" and self.peek(1).value == "(":
                self.next()
                self.next()
                args = []
                if not self.accept(")"):
                    while True:
                        args.append(self.term())
                        if not self.accept(","):
                            break
                    self.expect(")")
                return FunctionCall(word, args)
        if tok.kind == "op" and tok.value == "[":
            self.next()
            items = []
            if not self.accept("]"):
                while True:
                    items.append(self.term())
                    if not self.accept(","):
                        break
                self.expect("]")
            return Literal("list", items)
        if tok.kind == "op" and tok.value == "{":
            self.next()
            if self.accept("}"):
                return Literal("map", [])  # {} is an empty map or set; the column type decides
            first = self.term()
            if self.accept(":"):
                pairs = [(first, self.term())]
                while self.accept(","):
                    k = self.term()
                    self.expect(":")
                    pairs.append((k, self.term()))
                self.expect("}")
                return Literal("map", pairs)
            items = [first]
            while self.accept(","):
                items.append(self.term())
            self.expect("}")
            return Literal("set", items)
        if tok.kind == "op" and tok.value == "(":
            self.next()
            items = [self.term()]
            while self.accept(","):
                items.append(self.term())
            self.expect(")")
            return Literal("tuple", items)
        self.error("no viable alternative at input")

    def _marker(self, name, column):
        m = Marker(len(self.markers), name)
        m.column = column
        self.markers.append(m)
        return m


def plain(term):
    """A Python value for a literal used in options (replication maps, table options)."""
    if isinstance(term, Literal):
        if term.kind == "map":
            return {plain(k): plain(v) for k, v in term.value}
        if term.kind in ("list", "set", "tuple"):
            return [plain(x) for x in term.value]
        return term.value
    raise CqlSyntaxError("literal expected")


def parse(text):
    return Parser(text).parse()
