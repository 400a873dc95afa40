"""End-to-end fixtures: real redis-server processes on loopback and a real sluice process.

Nothing here imitates Redis or Sluice: each test starts the processes it talks to and drives them
with clients nobody here wrote (redis-cli, redis-benchmark, redis-py).
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import redis

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SLUICE = os.environ.get("SLUICE_BIN", os.path.join(ROOT, ".build", "release", "sluice"))
PLUGINS = os.environ.get("SLUICE_PLUGINS", os.path.join(ROOT, "build", "plugins"))
FIXTURES = os.environ.get("SLUICE_FIXTURES", os.path.join(ROOT, "build", "fixtures"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
