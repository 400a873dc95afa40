"""End-to-end fixtures: real redis-server processes on loopback and a real sluice process.

Nothing here imitates Redis or Sluice: each test starts the processes it talks to and drives them
with clients nobody here wrote (redis-cli, redis-benchmark, redis-py).
"""
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

import pytest
import redis

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SLUICE = os.environ.get("SLUICE_BIN", os.path.join(ROOT, ".build", "release", "sluice"))
PLUGINS = os.environ.get("SLUICE_PLUGINS", os.path.join(ROOT, "build", "plugins"))
FIXTURES = os.environ.get("SLUICE_FIXTURES", os.path.join(ROOT, "build", "fixtures"))


sys.path.insert(0, os.path.join(ROOT, "Tests"))
from ports import free_port  # noqa: E402  (re-exported: tests import it from here)


def wait_for_port(port, timeout=10.0, process=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


class RedisServer:
    """A real redis-server on a free loopback port, without persistence."""

    def __init__(self, workdir, extra=(), port=None):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(dir=workdir, prefix=f"redis-{self.port}-")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, process=self.proc)

    def client(self, **kw):
        return redis.Redis(host="127.0.0.1", port=self.port, **kw)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Sluice:
    """A sluice process started with a config written from text (PORT placeholders filled)."""

    def __init__(self, workdir, config_text, extra_args=(), expect_start=True, env=None):
        self.port = free_port()
        self.metrics_port = free_port()
        self.workdir = workdir
        self.config_path = os.path.join(workdir, f"sluice-{self.port}.yaml")
        text = (config_text.replace("{PORT}", str(self.port))
                .replace("{METRICS_PORT}", str(self.metrics_port))
                .replace("{PLUGINS}", PLUGINS))
        with open(self.config_path, "w") as f:
            f.write(text)
        self.log_path = self.config_path + ".log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([SLUICE, "run", "--config", self.config_path, "--threads", "2", *extra_args],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})
        if expect_start:
            wait_for_port(self.port, process=self.proc)

    def client(self, **kw):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10, **kw)

    def output(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def wait_for_output(self, needle, timeout=5.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if needle in self.output():
                return True
            time.sleep(0.05)
        return False

    def alive(self):
        """Sluice runs and no worker died (under supervision a crash is survived, but still a crash)."""
        return self.proc.poll() is None and not self.worker_died()

    def worker_died(self):
        """Whether the supervisor reported a worker that died (Supervision/Supervisor.swift)."""
        out = self.output()
        return ") killed by signal " in out or ") exited with status " in out

    def workers(self):
        """The pids of the supervised worker processes (none with --single-process)."""
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []

    def serving_pid(self):
        """The process that serves clients: the first worker under supervision, else sluice itself."""
        workers = self.workers()
        return workers[0] if workers else self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="sluice-e2e-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def redis_factory(workdir):
    servers = []

    def make(*extra):
        server = RedisServer(workdir, extra)
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def sluice_factory(workdir):
    started = []

    def make(config_text, **kw):
        proc = Sluice(workdir, config_text, **kw)
        started.append(proc)
        return proc

    yield make
    for s in started:
        s.stop()


def plain_config(backend_port, chain_steps="", plugins=True):
    """A config with one sink 'primary' and a chain 'main' of the given steps before the sink."""
    plugin_block = "plugins:\n  directory: {PLUGINS}\n" if plugins else ""
    return plugin_block + f"""
sinks:
  primary: {{ redis: {{ address: 127.0.0.1:{backend_port} }} }}
chains:
  main:
{chain_steps}    - sink: primary
sources:
  - redis: {{ listen: 127.0.0.1:{{PORT}}, chain: main }}
observability:
  metrics: 127.0.0.1:{{METRICS_PORT}}
"""


# --- CQL: the test backend and Sluice configs with a `cassandra` source and sink -----------------
#
# Tests/cql/backend is a CQL *test backend* written in Python (asyncio) for these tests, independently
# of Sluice's CQL codec; it is not Cassandra. The tests run it as a process (so it can be killed,
# stopped with SIGSTOP and told to forget its prepared statements with SIGUSR1) and drive it with the
# real drivers (cassandra-driver, scylla-driver, cqlsh).

class CQLBackend:
    """`python3 -m Tests.cql.backend --port PORT ARGS…` on a free loopback port (nodes on 127.0.0.1…)."""

    def __init__(self, workdir, args=(), port=None):
        self.port = port or free_port()
        self.args = list(args)
        self.log_path = os.path.join(workdir, f"cql-backend-{self.port}.log")
        self.proc = None
        self.start()

    def start(self):
        """Starts the process (again, on the same port, after stop() or kill())."""
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "Tests.cql.backend", "--port", str(self.port), *self.args],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 15
        while "listening on" not in self.output():
            if self.proc.poll() is not None or time.time() > deadline:
                self.kill()
                raise RuntimeError(f"CQL test backend did not start: {self.output()}")
            time.sleep(0.05)

    def output(self):
        with open(self.log_path) as f:
            return f.read()

    def signal(self, sig):
        self.proc.send_signal(sig)

    def forget_prepared(self):
        """SIGUSR1 (every node forgets its prepared statements); returns once the backend did."""
        self.signal(signal.SIGUSR1)
        deadline = time.time() + 5
        while self.stats().get("prepared", 0) != 0:
            assert time.time() < deadline, "the backend did not forget its prepared statements"
            time.sleep(0.02)

    def stats(self):
        """TESTBACKEND STATS asked directly (never through Sluice), as {name: value}."""
        with CQLRawConnection(self.port) as c:
            c.startup()
            return {name: value for name, value in c.query("TESTBACKEND STATS").parsed_rows}

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # in case a test left it stopped
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


class CQLRawConnection:
    """One client connection that writes and reads frames one at a time, encoded and decoded by the
    DataStax driver's own protocol code (cassandra.protocol), not by Sluice's. For tests that need
    many connections, or to see exactly which frames arrive (EVENTs, ERROR codes). Protocol v4
    without compression only (v5 and compression are the drivers' tests' business)."""

    def __init__(self, port, host="127.0.0.1", ssl_context=None, timeout=10):
        self.version = 4
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if ssl_context is not None:
            self.sock = ssl_context.wrap_socket(self.sock, server_hostname=host)
        self.next_stream = 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    def send(self, message, stream=None):
        from cassandra.protocol import ProtocolHandler
        if stream is None:
            stream, self.next_stream = self.next_stream, self.next_stream + 1
        self.sock.sendall(ProtocolHandler.encode_message(message, stream, self.version, None, False))
        return stream

    def receive(self):
        """The next frame as the driver decodes it (with .stream_id), or None when the connection closed."""
        from cassandra.protocol import ProtocolHandler
        head = self._read(9)
        if head is None:
            return None
        _, flags, stream, opcode, length = struct.unpack(">BBhBi", head)
        body = self._read(length) if length else b""
        return ProtocolHandler.decode_message(self.version, {}, stream, flags, opcode, body, None, [])

    def _read(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def request(self, message):
        stream = self.send(message)
        reply = self.receive()
        assert reply is not None, "connection closed instead of a reply"
        assert reply.stream_id == stream, (reply.stream_id, stream)
        return reply

    def startup(self, **options):
        from cassandra.protocol import ReadyMessage, StartupMessage
        reply = self.request(StartupMessage(cqlversion="3.0.0", options=options))
        assert isinstance(reply, ReadyMessage), reply
        return reply

    def query(self, text):
        from cassandra import ConsistencyLevel
        from cassandra.protocol import QueryMessage
        return self.request(QueryMessage(text, ConsistencyLevel.ONE))


def cql_config(backend_port, source="", sink="", chain_steps="", plugins=False):
    """A config with one `cassandra` sink 'cass', a chain 'cql_main' of the given steps before it and a
    `cassandra` source on {PORT}; `source` and `sink` are extra YAML lines (indented 6 spaces) in
    the source's and the sink's maps, e.g. tls, auth, username/password."""
    plugin_block = "plugins:\n  directory: {PLUGINS}\n" if plugins else ""
    return plugin_block + f"""
sinks:
  cass:
    cassandra:
      address: 127.0.0.1:{backend_port}
      connect_timeout_ms: 1000
      reply_timeout_ms: 2000
{sink}chains:
  cql_main:
{chain_steps}    - sink: cass
sources:
  - cassandra:
      listen: 127.0.0.1:{{PORT}}
      chain: cql_main
{source}observability:
  metrics: 127.0.0.1:{{METRICS_PORT}}
"""


@pytest.fixture
def cql_backend_factory(workdir):
    started = []

    def make(*args, port=None):
        backend = CQLBackend(workdir, args, port=port)
        started.append(backend)
        return backend

    yield make
    for b in started:
        b.stop()
