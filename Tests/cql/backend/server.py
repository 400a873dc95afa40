"""The network side of the test backend: one asyncio server per node (127.0.0.x addresses), and a
connection state machine per client that speaks native protocol v4 and v5.

A connection goes through explicit states:

    AWAIT_STARTUP --STARTUP--> READY                       (no authentication)
    AWAIT_STARTUP --STARTUP--> AWAIT_AUTH --AUTH_RESPONSE--> READY   (PasswordAuthenticator)
    AWAIT_STARTUP --STARTUP--> AWAIT_MECHANISM --AUTH_RESPONSE "PLAIN"--> (AUTH_CHALLENGE)
        AWAIT_AUTH --AUTH_RESPONSE--> READY                          (DSE-style authenticator)
    any state --protocol violation--> CLOSED (after a PROTOCOL_ERROR when one can be sent)

The first byte fixes the protocol version; a version other than 4 or 5 gets the PROTOCOL_ERROR
"Invalid or unsupported protocol version (N); supported versions are (4/v4, 5/v5)" (in a frame of
version 5 when N is higher, so drivers that open with v6 or DSE v65/v66 can read it and downgrade)
and the connection is closed. On v5, everything after the answer to STARTUP (READY or
AUTHENTICATE) travels in segments, both ways.

Written for this test backend from the protocol specification; it shares no code with Sluice.
"""
import asyncio
import enum
import hashlib
import ipaddress
import logging
import ssl
import struct
import time
import uuid

from . import framing as F
from . import parser as P
from . import wire
from .executor import Executor, Session, invalid
from .results import (BAD_CREDENTIALS, ERROR_NAMES, PROTOCOL_ERROR, SERVER_ERROR, SYNTAX_ERROR,
                      UNPREPARED, ColumnSpec, CqlError, Prepared, Rows, Void, metadata_id)
from .datatypes import NATIVE
from .schema import CQL_VERSION, Cluster, NodeInfo

log = logging.getLogger("cql-test-backend")

SUPPORTED_VERSIONS = (4, 5)
AUTHENTICATORS = {
    # name: (class sent in AUTHENTICATE, SASL mechanism expected first or None)
    "password": ("org.apache.cassandra.auth.PasswordAuthenticator", None),
    # DSE's authenticator: the client names the mechanism (PLAIN), the server answers with an
    # AUTH_CHALLENGE "PLAIN-START", then the client sends the PLAIN token.
    "dse": ("com.datastax.bdp.cassandra.auth.DseAuthenticator", b"PLAIN"),
}
EVENT_TYPES = ("TOPOLOGY_CHANGE", "STATUS_CHANGE", "SCHEMA_CHANGE")


class State(enum.Enum):
    AWAIT_STARTUP = "awaiting STARTUP"
    AWAIT_MECHANISM = "awaiting the SASL mechanism"
    AWAIT_AUTH = "awaiting AUTH_RESPONSE"
    READY = "ready"
    CLOSED = "closed"


class FatalProtocolError(Exception):
    """A violation after which the connection is closed (bad header, bad CRC, wrong version)."""


class PreparedEntry:
    def __init__(self, text, statement, keyspace, prepared):
        self.text = text
        self.statement = statement
        self.keyspace = keyspace
        self.prepared = prepared


class Node:
    """One listening address of the backend, with its own prepared statement cache."""

    def __init__(self, backend, info):
        self.backend = backend
        self.info = info
        self.prepared = {}
        self.executor = Executor(backend.cluster, info, backend.broadcast_schema_change)
        self.server = None
        self.connections = set()

    async def start(self):
        self.server = await asyncio.start_server(
            lambda r, w: Connection(self, r, w).run(), self.info.address, self.info.port,
            ssl=self.backend.ssl_context, reuse_address=True)

    async def stop(self):
        if self.server is not None:
            self.server.close()
            for c in list(self.connections):
                c.close()
            await self.server.wait_closed()
            self.server = None


class Backend:
    """The whole test backend: the shared in-memory cluster and its nodes.

    nodes: how many nodes, on 127.0.0.1, 127.0.0.2, ... (same port) unless `addresses` is given.
    credentials: {user: password} to require authentication, or None.
    authenticator: "password" (Cassandra's PasswordAuthenticator) or "dse" (DSE's, which sends an
    AUTH_CHALLENGE before the credentials).
    certfile/keyfile: serve TLS.
    stall_startup: never answer STARTUP (a backend that accepts connections and then hangs).
    versions: the protocol versions spoken (default SUPPORTED_VERSIONS; (4,) is a backend without v5,
    such as Cassandra 3.x: a v5 client gets the PROTOCOL_ERROR drivers downgrade on).
    echo_custom_payload: answer a request's custom payload with the same payload (Cassandra's default
    query handler ignores it; echoing lets tests see payloads travel both ways).
    """

    def __init__(self, host="127.0.0.1", port=9042, nodes=1, addresses=None, credentials=None,
                 certfile=None, keyfile=None, echo_custom_payload=True, authenticator="password",
                 stall_startup=False, versions=SUPPORTED_VERSIONS):
        if addresses is None:
            base = ipaddress.ip_address(host)
            addresses = [str(base + i) for i in range(nodes)]
        infos = [NodeInfo(a, port, i) for i, a in enumerate(addresses)]
        self.cluster = Cluster(infos)
        self.credentials = credentials
        if authenticator not in AUTHENTICATORS:
            raise ValueError(f"unknown authenticator {authenticator}")
        self.authenticator = authenticator
        self.stall_startup = stall_startup
        self.versions = tuple(sorted(versions))
        if not self.versions or not set(self.versions) <= set(SUPPORTED_VERSIONS):
            raise ValueError(f"versions must be among {SUPPORTED_VERSIONS}")
        self.echo_custom_payload = echo_custom_payload
        self.ssl_context = None
        if certfile:
            self.ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ssl_context.load_cert_chain(certfile, keyfile)
        self.nodes = [Node(self, info) for info in infos]
        self.stats = {"connections": 0, "requests": 0, "prepares": 0, "unprepared": 0,
                      "events": 0, "rejected_versions": 0, "auth_challenges": 0}

    async def start(self):
        for n in self.nodes:
            await n.start()

    async def stop(self):
        for n in self.nodes:
            await n.stop()

    def forget_prepared(self):
        for n in self.nodes:
            n.prepared.clear()

    def broadcast_event(self, event_type, body):
        """Sends an EVENT to every connection, on every node, that registered for event_type."""
        for n in self.nodes:
            for c in list(n.connections):
                if event_type in c.registered:
                    self.stats["events"] += 1
                    c.send_event(body)

    def broadcast_schema_change(self, change):
        if change.change == "DROPPED":
            # As Cassandra does, statements prepared on a dropped table or keyspace are forgotten.
            for n in self.nodes:
                for sid, entry in list(n.prepared.items()):
                    stmt = entry.statement
                    ks = getattr(stmt, "keyspace", None) or entry.keyspace
                    if ks == change.keyspace and (change.target == "KEYSPACE"
                                                  or getattr(stmt, "table", None) == change.name):
                        del n.prepared[sid]
        body = change.event_body()
        for n in self.nodes:
            for c in list(n.connections):
                if "SCHEMA_CHANGE" in c.registered:
                    self.stats["events"] += 1
                    c.send_event(body)


class Connection:
    def __init__(self, node, reader, writer):
        self.node = node
        self.backend = node.backend
        self.reader = reader
        self.writer = writer
        self.state = State.AWAIT_STARTUP
        self.version = None
        self.compressor = None      # v4 body compression
        self.segments = None        # v5 SegmentCodec once framing is on
        self.segment_buf = bytearray()
        self.envelope_buf = bytearray()
        self.pending = []
        self.flush_scheduled = False
        self.session = Session()
        self.registered = set()
        self.tasks = set()
        peer = writer.get_extra_info("peername")
        self.peer = peer[0] if peer else "127.0.0.1"

    # --- lifecycle -------------------------------------------------------------------------------
    async def run(self):
        self.node.connections.add(self)
        self.backend.stats["connections"] += 1
        try:
            if not await self.negotiate_version():
                return
            while self.state is not State.CLOSED:
                env = await self.read_envelope()
                if env is None:
                    break
                self.dispatch(env)
                await self.writer.drain()
        except FatalProtocolError as e:
            log.info("closing %s: %s", self.peer, e)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except Exception:
            log.exception("connection from %s failed", self.peer)
        finally:
            self.close()
            for t in list(self.tasks):
                t.cancel()

    def close(self):
        if self.state is State.CLOSED and self.writer.is_closing():
            return
        self.flush()
        self.state = State.CLOSED
        self.node.connections.discard(self)
        try:
            self.writer.close()
        except Exception:
            pass

    async def negotiate_version(self):
        first = await self.reader.read(1)
        if not first:
            return False
        raw = first[0]
        version = raw & 0x7F
        if raw & 0x80 or version not in self.backend.versions:
            # Read the rest of the header, if it comes, to answer on the client's stream.
            rest_len = 8 if version >= 3 else 7
            stream = 0
            try:
                rest = await asyncio.wait_for(self.reader.readexactly(rest_len), 2.0)
                stream = struct.unpack(">h", rest[1:3])[0] if version >= 3 else rest[1]
            except (asyncio.TimeoutError, asyncio.IncompleteReadError):
                pass
            self.backend.stats["rejected_versions"] += 1
            reply_version = max(self.backend.versions) if version > max(self.backend.versions) else version
            message = (f"Invalid or unsupported protocol version ({version}); supported versions "
                       f"are ({', '.join(f'{v}/v{v}' for v in self.backend.versions)})")
            body = wire.int32(PROTOCOL_ERROR) + wire.string(message)
            if reply_version >= 3:
                frame = F.HEADER.pack(0x80 | reply_version, 0, stream, F.OP_ERROR, len(body)) + body
            else:
                frame = struct.pack(">BBbBi", 0x80 | reply_version, 0, stream, F.OP_ERROR,
                                    len(body)) + body
            self.writer.write(frame)
            await self.writer.drain()
            return False
        self.version = version
        self.envelope_buf += first
        return True

    # --- reading ---------------------------------------------------------------------------------
    async def read_envelope(self):
        while True:
            env = self._pop_envelope()
            if env is not None:
                return env
            if self.segments is not None:
                seg = self._decode_segment()
                if seg is not None:
                    continue
            data = await self.reader.read(65536)
            if not data:
                return None
            if self.segments is not None:
                self.segment_buf += data
            else:
                self.envelope_buf += data

    def _decode_segment(self):
        try:
            seg = self.segments.decode(self.segment_buf)
        except wire.ProtocolViolation as e:
            raise FatalProtocolError(str(e)) from None
        if seg is None:
            return None
        payload, self_contained, length = seg
        del self.segment_buf[:length]
        self.envelope_buf += payload
        if self_contained:
            # A self-contained segment holds whole envelopes only.
            pos = 0
            while pos < len(self.envelope_buf):
                try:
                    peeked = F.peek_envelope(self.envelope_buf[pos:])
                except wire.ProtocolViolation as e:
                    raise FatalProtocolError(str(e)) from None
                if peeked is None or pos + peeked[1] > len(self.envelope_buf):
                    raise FatalProtocolError("self-contained segment ends inside an envelope")
                pos += peeked[1]
        return seg

    def _pop_envelope(self):
        buf = self.envelope_buf
        try:
            peeked = F.peek_envelope(buf)
        except wire.ProtocolViolation as e:
            self._fatal(0, str(e))
        if peeked is None:
            return None
        (version, flags, stream, opcode, length), total = peeked
        if len(buf) < total:
            return None
        body = bytes(buf[F.HEADER_SIZE:total])
        del buf[:total]
        if version & 0x80:
            self._fatal(stream, "Invalid message direction: a response frame was sent to the server")
        if (version & 0x7F) != self.version:
            self._fatal(stream, f"Invalid message version. Got v{version & 0x7F} but previous "
                                f"messages on this connection had version v{self.version}")
        if flags & F.FLAG_COMPRESSION:
            if self.compressor is None or self.segments is not None:
                self._fatal(stream, "Received a compressed frame but no compression was negotiated"
                            if self.segments is None else
                            "Compressed envelope flag set inside a v5 segment")
            try:
                body = self.compressor.decompress(body)
            except wire.ProtocolViolation as e:
                self._fatal(stream, str(e))
        return F.Envelope(version & 0x7F, flags, stream, opcode, body)

    def _fatal(self, stream, message):
        self.send_error(stream, CqlError(PROTOCOL_ERROR, message))
        raise FatalProtocolError(message)

    # --- writing ---------------------------------------------------------------------------------
    def send(self, flags, stream, opcode, body):
        if self.state is State.CLOSED:
            return
        env = F.Envelope(0x80 | self.version, flags, stream, opcode, body)
        if self.segments is not None:
            self.pending.append(env.encode())
            if not self.flush_scheduled:
                self.flush_scheduled = True
                asyncio.get_running_loop().call_soon(self.flush)
        else:
            self.writer.write(env.encode(self.compressor))

    def flush(self):
        """Writes the pending envelopes as segments: several per self-contained segment, and an
        envelope larger than a segment cut across segments that are not self-contained."""
        self.flush_scheduled = False
        if not self.pending or self.segments is None:
            return
        out, group = [], bytearray()
        for data in self.pending:
            if len(data) > F.MAX_SEGMENT_PAYLOAD:
                if group:
                    out.append(self.segments.encode(bytes(group), True))
                    group = bytearray()
                out.append(self.segments.encode_envelopes(data))
                continue
            if len(group) + len(data) > F.MAX_SEGMENT_PAYLOAD:
                out.append(self.segments.encode(bytes(group), True))
                group = bytearray()
            group += data
        if group:
            out.append(self.segments.encode(bytes(group), True))
        self.pending = []
        if not self.writer.is_closing():
            self.writer.write(b"".join(out))

    def send_error(self, stream, err, flags=0, prefix=b""):
        self.send(flags, stream, F.OP_ERROR, prefix + err.body(self.version))

    def send_event(self, body):
        if self.state is State.READY:
            self.send(0, -1, F.OP_EVENT, body)

    # --- dispatch --------------------------------------------------------------------------------
    def dispatch(self, env):
        self.backend.stats["requests"] += 1
        op = env.opcode
        try:
            if op == F.OP_OPTIONS:
                return self.on_options(env)
            if self.state is State.AWAIT_STARTUP:
                if op != F.OP_STARTUP:
                    raise CqlError(PROTOCOL_ERROR, f"Unexpected message {F.OPCODE_NAMES.get(op, op)}, "
                                                   f"expecting STARTUP or OPTIONS")
                return self.on_startup(env)
            if self.state in (State.AWAIT_AUTH, State.AWAIT_MECHANISM):
                if op != F.OP_AUTH_RESPONSE:
                    raise CqlError(PROTOCOL_ERROR, f"Unexpected message {F.OPCODE_NAMES.get(op, op)}, "
                                                   f"expecting SASL response")
                return self.on_auth_response(env)
            if op == F.OP_STARTUP:
                raise CqlError(PROTOCOL_ERROR, "Unexpected message STARTUP, the connection is "
                                               "already initialised")
            if op == F.OP_REGISTER:
                return self.on_register(env)
            if op in (F.OP_QUERY, F.OP_PREPARE, F.OP_EXECUTE, F.OP_BATCH):
                task = asyncio.get_running_loop().create_task(self.run_request(env))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
                return
            if op == F.OP_AUTH_RESPONSE:
                raise CqlError(PROTOCOL_ERROR, "Unexpected AUTH_RESPONSE: already authenticated")
            raise CqlError(PROTOCOL_ERROR, f"Unknown or unexpected opcode 0x{op:02x}")
        except CqlError as e:
            self.send_error(env.stream, e)
        except wire.ProtocolViolation as e:
            self.send_error(env.stream, CqlError(PROTOCOL_ERROR, str(e)))

    def on_options(self, env):
        options = {"CQL_VERSION": [CQL_VERSION],
                   "COMPRESSION": F.available_compressions(),
                   "PROTOCOL_VERSIONS": [f"{v}/v{v}" for v in self.backend.versions]}
        self.send(0, env.stream, F.OP_SUPPORTED, wire.string_multimap(options))

    def on_startup(self, env):
        if self.backend.stall_startup:
            self.backend.stats["stalled_startups"] = self.backend.stats.get("stalled_startups", 0) + 1
            return
        options = wire.Reader(env.body).string_map()
        if "CQL_VERSION" not in options:
            raise CqlError(PROTOCOL_ERROR, "Missing value CQL_VERSION in STARTUP message")
        if not options["CQL_VERSION"].startswith("3."):
            raise CqlError(PROTOCOL_ERROR, f"Unsupported CQL version {options['CQL_VERSION']}")
        compression = options.get("COMPRESSION")
        compressor = None
        if compression:
            name = compression.lower()
            if name not in F.available_compressions():
                raise CqlError(PROTOCOL_ERROR, f"Unknown compression algorithm: {compression}")
            if self.version >= 5 and name != "lz4":
                raise CqlError(PROTOCOL_ERROR, f"{compression} compression is not supported by "
                                               f"protocol v5 (only lz4)")
            compressor = name
        key = f"startup_v{self.version}_{compressor or 'none'}"
        self.backend.stats[key] = self.backend.stats.get(key, 0) + 1
        if self.backend.credentials is not None:
            cls, mechanism = AUTHENTICATORS[self.backend.authenticator]
            self.send(0, env.stream, F.OP_AUTHENTICATE, wire.string(cls))
            self.state = State.AWAIT_MECHANISM if mechanism else State.AWAIT_AUTH
        else:
            self.send(0, env.stream, F.OP_READY, b"")
            self.state = State.READY
        # The answer to STARTUP went out as it was negotiated before; what follows is compressed
        # (v4 bodies) or segmented (v5).
        if self.version >= 5:
            self.segments = F.SegmentCodec(lz4=(compressor == "lz4"))
            if self.envelope_buf:
                self.segment_buf += self.envelope_buf
                self.envelope_buf = bytearray()
        elif compressor:
            self.compressor = F.body_compressor(compressor)

    def on_auth_response(self, env):
        token = wire.Reader(env.body).bytes() or b""
        if self.state is State.AWAIT_MECHANISM:
            mechanism = AUTHENTICATORS[self.backend.authenticator][1]
            if token != mechanism:
                raise CqlError(BAD_CREDENTIALS, f"Unsupported SASL mechanism {token!r}")
            self.state = State.AWAIT_AUTH
            self.backend.stats["auth_challenges"] += 1
            self.send(0, env.stream, F.OP_AUTH_CHALLENGE, wire.bytes_(b"PLAIN-START"))
            return
        parts = token.split(b"\x00")
        if len(parts) != 3:
            raise CqlError(PROTOCOL_ERROR, "Invalid SASL PLAIN token")
        user, password = parts[1].decode(errors="replace"), parts[2].decode(errors="replace")
        if self.backend.credentials.get(user) != password:
            raise CqlError(BAD_CREDENTIALS, f"Provided username {user} and/or password are incorrect")
        self.state = State.READY
        self.send(0, env.stream, F.OP_AUTH_SUCCESS, wire.bytes_(None))

    def on_register(self, env):
        events = wire.Reader(env.body).string_list()
        for e in events:
            if e not in EVENT_TYPES:
                raise CqlError(PROTOCOL_ERROR, f"Invalid value '{e}' for Type")
        self.registered.update(events)
        self.send(0, env.stream, F.OP_READY, b"")

    # --- QUERY, PREPARE, EXECUTE, BATCH ----------------------------------------------------------
    async def run_request(self, env):
        r = wire.Reader(env.body)
        flags = 0
        prefix = b""
        trace_id = None
        if env.flags & F.FLAG_TRACING:
            trace_id = uuid.uuid1()
            flags |= F.FLAG_TRACING
            prefix += trace_id.bytes
        payload = None
        started = time.time()
        try:
            if env.flags & F.FLAG_CUSTOM_PAYLOAD:
                payload = r.bytes_map()
            handler = {F.OP_QUERY: self.on_query, F.OP_PREPARE: self.on_prepare,
                       F.OP_EXECUTE: self.on_execute, F.OP_BATCH: self.on_batch}[env.opcode]
            result, extra = await handler(r)
            if result is None:  # TESTBACKEND CLOSE / GARBAGE
                return
            warnings = getattr(result, "warnings", None)
            if warnings:
                flags |= F.FLAG_WARNING
                prefix += wire.string_list(warnings)
            if payload is not None and self.backend.echo_custom_payload:
                flags |= F.FLAG_CUSTOM_PAYLOAD
                prefix += wire.bytes_map(payload)
            self.send(flags, env.stream, F.OP_RESULT, prefix + result.body(self.version, **extra))
        except CqlError as e:
            self.send_error(env.stream, e, flags & F.FLAG_TRACING, prefix[:16] if trace_id else b"")
        except wire.ProtocolViolation as e:
            self.send_error(env.stream, CqlError(PROTOCOL_ERROR, str(e)))
        except P.CqlSyntaxError as e:
            self.send_error(env.stream, CqlError(SYNTAX_ERROR, str(e)))
        except Exception as e:
            log.exception("request failed")
            self.send_error(env.stream, CqlError(SERVER_ERROR, f"test backend failure: {e!r}"))
        finally:
            if trace_id is not None:
                self.record_trace(trace_id, env, started)
        try:
            await self.writer.drain()
        except ConnectionError:
            pass

    def record_trace(self, trace_id, env, started):
        """Rows in system_traces so drivers can fetch the trace of a traced request."""
        t = self.backend.cluster.keyspaces["system_traces"].tables
        addr = ipaddress.ip_address(self.node.info.address)
        duration = max(1, int((time.time() - started) * 1_000_000))
        t["sessions"].partitions[(trace_id,)] = {(): {
            "session_id": trace_id, "client": ipaddress.ip_address(self.peer), "command": "QUERY",
            "coordinator": addr, "coordinator_port": 7000, "duration": duration,
            "parameters": {"opcode": F.OPCODE_NAMES.get(env.opcode, "?")},
            "request": f"Execute CQL3 request ({F.OPCODE_NAMES.get(env.opcode)})",
            "started_at": int(started * 1000)}}
        event_id = uuid.uuid1()
        t["events"].partitions[(trace_id,)] = {(event_id,): {
            "session_id": trace_id, "event_id": event_id, "activity": "Handled by the CQL test backend",
            "source": addr, "source_elapsed": duration, "source_port": 7000,
            "thread": "cql-test-backend"}}

    def read_params(self, r):
        """The <query_parameters> of QUERY and EXECUTE."""
        p = {}
        p["consistency"] = r.short()
        flags = r.int() if self.version >= 5 else r.byte()
        values, names = [], None
        if flags & 0x01:
            n = r.short()
            if flags & 0x40:
                names = []
                for _ in range(n):
                    names.append(r.string())
                    values.append(r.value())
            else:
                values = [r.value() for _ in range(n)]
        p["values"], p["names"] = values, names
        p["skip_metadata"] = bool(flags & 0x02)
        p["page_size"] = r.int() if flags & 0x04 else -1
        p["paging_state"] = r.bytes() if flags & 0x08 else None
        if flags & 0x10:
            r.short()
        if flags & 0x20:
            r.long()
        p["keyspace"] = r.string() if self.version >= 5 and flags & 0x80 else None
        if self.version >= 5 and flags & 0x100:
            r.int()
        return p

    def bind(self, stmt, specs, values, names):
        """Values in marker order, from positional or named values."""
        markers = stmt.markers
        if names is not None:
            by_name = dict(zip(names, values))
            out = []
            for m, spec in zip(markers, specs):
                key = m.name or spec.name
                if key not in by_name:
                    raise invalid(f"Invalid name {key}: no value was bound with that name")
                out.append(by_name[key])
            values = out
        if len(values) != len(markers):
            raise invalid(f"There were {len(markers)} markers(?) in CQL but {len(values)} bound "
                          f"variables")
        return values

    async def on_query(self, r):
        text = r.long_string()
        params = self.read_params(r)
        stmt = P.parse(text)
        if isinstance(stmt, P.Control):
            return await self.control(stmt), {}
        keyspace = params["keyspace"]
        specs = self.node.executor.bind_specs(stmt, self.session, keyspace)[0] if (
            params["values"] or stmt.markers) else []
        values = self.bind(stmt, specs, params["values"], params["names"])
        return self.execute(stmt, values, params, keyspace, text.encode()), {}

    def execute(self, stmt, values, params, keyspace, query_id):
        if isinstance(stmt, P.Batch):
            # Markers are numbered across the whole BEGIN BATCH text: every statement sees all values.
            return self.node.executor.batch([(s, values) for s in stmt.statements], self.session,
                                            keyspace)
        return self.node.executor.execute(stmt, values, self.session, params["page_size"],
                                          params["paging_state"], keyspace, query_id)

    async def on_prepare(self, r):
        text = r.long_string()
        keyspace = None
        if self.version >= 5:
            flags = r.int()
            if flags & 0x01:
                keyspace = r.string()
        stmt = P.parse(text)
        keyspace = keyspace or stmt.keyspace or self.session.keyspace
        ex = self.node.executor
        bind_specs, pk_indexes = ex.bind_specs(stmt, self.session, keyspace) if not isinstance(
            stmt, P.Control) else ([], [])
        result_specs = ex.result_specs(stmt, self.session, keyspace)
        statement_id = hashlib.md5(((keyspace or "") + "\x00" + text).encode()).digest()
        prepared = Prepared(statement_id, bind_specs, pk_indexes, result_specs,
                            metadata_id(result_specs))
        self.node.prepared[statement_id] = PreparedEntry(text, stmt, keyspace, prepared)
        self.backend.stats["prepares"] += 1
        return prepared, {}

    def lookup(self, statement_id):
        entry = self.node.prepared.get(statement_id)
        if entry is None:
            self.backend.stats["unprepared"] += 1
            raise CqlError(UNPREPARED, f"Prepared query with ID {statement_id.hex()} not found "
                                       f"(either the query was not prepared on this host (maybe "
                                       f"the host has been restarted?) or you have prepared too "
                                       f"many queries and it has been evicted from the internal "
                                       f"cache)", id=statement_id)
        return entry

    async def on_execute(self, r):
        statement_id = r.short_bytes()
        sent_metadata_id = r.short_bytes() if self.version >= 5 else None
        params = self.read_params(r)
        entry = self.lookup(statement_id)
        stmt = entry.statement
        if isinstance(stmt, P.Control):
            return await self.control(stmt), {}
        prepared = entry.prepared
        values = self.bind(stmt, prepared.bind_specs, params["values"], params["names"])
        result = self.execute(stmt, values, params, entry.keyspace, statement_id)
        extra = {}
        if isinstance(result, Rows) and prepared.result_specs:
            # v5: the client says which result metadata it has; if the table changed since (ALTER),
            # the answer carries Metadata_changed, the new id and the full metadata. v4 has no id:
            # metadata is skipped on request only while the columns are those prepared.
            current = metadata_id(result.specs)
            if self.version >= 5 and sent_metadata_id != current:
                extra["metadata_changed_id"] = current
                self.backend.stats["metadata_changed"] = self.backend.stats.get("metadata_changed", 0) + 1
            elif params["skip_metadata"] and current == prepared.result_metadata_id:
                extra["skip_metadata"] = True
        return result, extra

    async def on_batch(self, r):
        batch_type = r.byte()
        if batch_type not in (0, 1, 2):
            raise CqlError(PROTOCOL_ERROR, f"Invalid BATCH type {batch_type}")
        items = []
        for _ in range(r.short()):
            kind = r.byte()
            if kind == 0:
                text = r.long_string()
                stmt, keyspace_of = P.parse(text), None
            elif kind == 1:
                entry = self.lookup(r.short_bytes())
                stmt, keyspace_of = entry.statement, entry.keyspace
            else:
                raise CqlError(PROTOCOL_ERROR, f"Invalid BATCH query kind {kind}")
            values = [r.value() for _ in range(r.short())]
            if len(values) != len(stmt.markers):
                raise invalid(f"There were {len(stmt.markers)} markers(?) in CQL but "
                              f"{len(values)} bound variables")
            items.append((stmt, values, keyspace_of))
        r.short()  # consistency
        flags = r.int() if self.version >= 5 else r.byte()
        if flags & 0x10:
            r.short()
        if flags & 0x20:
            r.long()
        keyspace = r.string() if self.version >= 5 and flags & 0x80 else None
        if self.version >= 5 and flags & 0x100:
            r.int()
        ex = self.node.executor
        for stmt, values, keyspace_of in items:
            if not isinstance(stmt, (P.Insert, P.Update, P.Delete)):
                raise invalid("Only INSERT, UPDATE and DELETE statements are allowed in BATCH")
        # Check every statement first, then apply them all.
        for stmt, values, keyspace_of in items:
            ex.check_modifiable(ex.table(stmt, self.session, keyspace_of or keyspace))
        for stmt, values, keyspace_of in items:
            ex.execute(stmt, values, self.session, default_keyspace=keyspace_of or keyspace)
        return Void(), {}

    # --- TESTBACKEND statements ------------------------------------------------------------------
    async def control(self, stmt):
        """Hooks for tests, sent as CQL text: TESTBACKEND FORGET PREPARED | SLEEP ms |
        ERROR NAME [message] | WARN text | EVENT TYPE CHANGE 'address' | CLOSE | GARBAGE | STATS |
        PASSWORD 'user' 'password' (later sign-ins of that user need the new password)."""
        cmd, args = stmt.command, stmt.args
        key = f"testbackend_{cmd.lower()}"
        self.backend.stats[key] = self.backend.stats.get(key, 0) + 1
        if cmd == "FORGET":
            self.backend.forget_prepared()
            return Void()
        if cmd == "SLEEP":
            await asyncio.sleep(int(args[0]) / 1000.0 if args else 1.0)
            return Void()
        if cmd == "ERROR":
            name = str(args[0]).upper() if args else "SERVER_ERROR"
            if name not in ERROR_NAMES:
                raise invalid(f"unknown error name {name}")
            message = " ".join(str(a) for a in args[1:]) or f"{name} requested by TESTBACKEND ERROR"
            raise CqlError(ERROR_NAMES[name], message)
        if cmd == "EVENT":
            # TESTBACKEND EVENT TOPOLOGY_CHANGE|STATUS_CHANGE CHANGE 'address'
            if len(args) != 3 or str(args[0]).upper() not in ("TOPOLOGY_CHANGE", "STATUS_CHANGE"):
                raise invalid("usage: TESTBACKEND EVENT TOPOLOGY_CHANGE|STATUS_CHANGE CHANGE 'address'")
            kind, change = str(args[0]).upper(), str(args[1]).upper()
            body = wire.string(kind) + wire.string(change) + wire.inet(str(args[2]),
                                                                        self.node.info.port)
            self.backend.broadcast_event(kind, body)
            return Void()
        if cmd == "WARN":
            v = Void()
            v.warnings = [" ".join(str(a) for a in args) or "warning requested by TESTBACKEND WARN"]
            return v
        if cmd == "CLOSE":
            self.close()
            return None
        if cmd == "GARBAGE":
            self.flush()
            self.writer.write(b"\x07garbage that is not a CQL frame\xff\xfe")
            return None
        if cmd == "PASSWORD":
            if len(args) != 2:
                raise invalid("usage: TESTBACKEND PASSWORD 'user' 'password'")
            self.backend.credentials[str(args[0])] = str(args[1])
            return Void()
        if cmd == "STATS":
            specs = [ColumnSpec("testbackend", "stats", "name", NATIVE["text"]),
                     ColumnSpec("testbackend", "stats", "value", NATIVE["bigint"])]
            rows = [[k, v] for k, v in sorted(self.backend.stats.items())]
            rows.append(["prepared", len(self.node.prepared)])
            return Rows(specs, rows)
        raise CqlError(SYNTAX_ERROR, f"unknown TESTBACKEND command {cmd}")
