"""Issue 14 "Transforms keep their promises": deny inside MULTI, debug-printer's credential redaction
and tee's warning rate limit, each with real redis-server processes and real clients."""
import hashlib
import re
import socket
import time
import urllib.request

import pytest
import redis

from conftest import free_port, plain_config, wait_for_port

EXECABORT = b"-EXECABORT Transaction discarded because of previous errors.\r\n"


def metric(proxy, name):
    wait_for_port(proxy.metrics_port, process=proxy.proc)  # the metrics listener may start after the source's
    body = urllib.request.urlopen(f"http://127.0.0.1:{proxy.metrics_port}/metrics", timeout=5).read().decode()
    return sum(float(l.split()[-1]) for l in body.splitlines() if l.startswith(name))


class RawClient:
    """A plain socket speaking RESP, so each command travels in its own write (its own batch)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def send(self, *commands):
        self.sock.sendall(b"".join(commands))

    def read_line(self):
        while b"\r\n" not in self.buffer:
            part = self.sock.recv(4096)
            assert part, self.buffer
            self.buffer += part
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line + b"\r\n"

    def reply(self):
        """One complete reply, as raw bytes (flat: arrays of simple values, enough here)."""
        line = self.read_line()
        if line[:1] == b"*":
            return line + b"".join(self.reply() for _ in range(max(0, int(line[1:-2]))))
        if line[:1] == b"$" and int(line[1:-2]) >= 0:
            while len(self.buffer) < int(line[1:-2]) + 2:
                self.buffer += self.sock.recv(4096)
            n = int(line[1:-2]) + 2
            body, self.buffer = self.buffer[:n], self.buffer[n:]
            return line + body
        return line

    def call(self, command):
        self.send(command)
        return self.reply()

    def close(self):
        self.sock.close()


# ---- item 5: deny inside MULTI ------------------------------------------------------------------

DENY = "    - deny: { commands: [FLUSHALL, KEYS] }\n"


def test_deny_inside_multi_aborts_the_whole_transaction(redis_factory, sluice_factory):
    """redis-py's transactional pipeline: MULTI, SET, a denied KEYS, SET, EXEC in one write. Redis
    would refuse to queue the bad command and abort EXEC; so must the proxy, and nothing runs."""
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, DENY))
    r = proxy.client()
    pipe = r.pipeline(transaction=True)
    pipe.set("tx:a", "1").keys("*").set("tx:b", "2")
    with pytest.raises(redis.ResponseError, match="command 'keys' is denied"):
        pipe.execute()
    assert backend.client().keys("*") == []
    # The connection is usable and the next transaction is not doomed.
    pipe = r.pipeline(transaction=True)
    pipe.set("tx:c", "3").get("tx:c")
    assert pipe.execute() == [True, b"3"]
    assert backend.client().keys("*") == [b"tx:c"]


def test_deny_inside_multi_spread_over_many_reads_matches_redis(redis_factory, sluice_factory):
    """Each command in its own write: the transaction state carries from batch to batch. The replies
    are byte for byte what redis-server gives for a command it refuses to queue."""
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, DENY))
    through = RawClient(proxy.port)
    direct = RawClient(backend.port)
    try:
        assert through.call(b"MULTI\r\n") == b"+OK\r\n"
        assert through.call(b"SET spread:a 1\r\n") == b"+QUEUED\r\n"
        assert through.call(b"FLUSHALL\r\n").startswith(b"-ERR command-filter: command 'flushall' is denied")
        assert through.call(b"SET spread:b 2\r\n") == b"+QUEUED\r\n"
        got = through.call(b"EXEC\r\n")
        # redis-server itself, with a command it cannot queue:
        assert direct.call(b"MULTI\r\n") == b"+OK\r\n"
        assert direct.call(b"NOSUCHCOMMAND\r\n").startswith(b"-ERR unknown command")
        assert direct.call(b"SET direct:a 1\r\n") == b"+QUEUED\r\n"
        assert direct.call(b"EXEC\r\n") == EXECABORT
        assert got == EXECABORT
        assert backend.client().keys("spread:*") == []
        # DISCARD after a denied command, and a transaction where the denial and EXEC share a write.
        assert through.call(b"MULTI\r\n") == b"+OK\r\n"
        assert through.call(b"KEYS *\r\n").startswith(b"-ERR command-filter")
        assert through.call(b"DISCARD\r\n") == b"+OK\r\n"
        through.send(b"MULTI\r\nSET spread:c 1\r\n", b"KEYS *\r\nEXEC\r\nSET spread:after 1\r\n")
        replies = [through.reply() for _ in range(5)]
        assert replies[0] == b"+OK\r\n" and replies[1] == b"+QUEUED\r\n"
        assert replies[2].startswith(b"-ERR command-filter")
        assert replies[3] == EXECABORT
        assert replies[4] == b"+OK\r\n"
        assert sorted(backend.client().keys("spread:*")) == [b"spread:after"]
        # Outside a transaction a denial dooms nothing, and a clean transaction still commits.
        assert through.call(b"KEYS *\r\n").startswith(b"-ERR command-filter")
        through.send(b"MULTI\r\nSET spread:d 4\r\nEXEC\r\n")
        assert [through.reply() for _ in range(3)] == [b"+OK\r\n", b"+QUEUED\r\n", b"*1\r\n+OK\r\n"]
        assert backend.client().get("spread:d") == b"4"
    finally:
        through.close()
        direct.close()


# ---- item 6: debug-printer never logs credentials ------------------------------------------------

def test_debug_printer_redacts_every_credential(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, "    - debug-printer: { prefix: DBG, max_bytes: 400 }\n"))
    r = proxy.client()
    secrets = {
        "masterauth": "Sekret-masterauth-1",
        "requirepass": "Sekret-requirepass-2",
        "migrate-auth": "Sekret-migrate-auth-3",
        "migrate-auth2": "Sekret-migrate-auth2-4",
        "acl-add": "Sekret-acl-add-5",
        "acl-remove": "Sekret-acl-remove-6",
        "auth": "Sekret-auth-7",
        "hello": "Sekret-hello-8",
        "genpass": None,
    }
    acl_hash = hashlib.sha256(b"Sekret-hash-9").hexdigest()
    assert r.execute_command("CONFIG", "SET", "masterauth", secrets["masterauth"])
    assert r.execute_command("CONFIG", "SET", "maxmemory-policy", "noeviction", "requirepass", secrets["requirepass"])
    assert r.config_get("masterauth") == {"masterauth": secrets["masterauth"]} or \
        r.config_get("masterauth") == {b"masterauth": secrets["masterauth"].encode()}
    assert r.execute_command("CONFIG", "SET", "requirepass", "") == b"OK"
    dead = free_port()
    for auth in (["AUTH", secrets["migrate-auth"]], ["AUTH2", "someone", secrets["migrate-auth2"]]):
        # No such keys: redis-server answers NOKEY without connecting; the request is logged all the same.
        assert r.execute_command("MIGRATE", "127.0.0.1", dead, "", 0, 500, "COPY", *auth, "KEYS", "auth", "k2") == b"NOKEY"
    assert r.execute_command("ACL", "SETUSER", "alice", "on", ">" + secrets["acl-add"], ">" + secrets["acl-remove"],
                             "<" + secrets["acl-remove"],
                             "#" + acl_hash, "~*", "+get")
    user = r.execute_command("ACL", "GETUSER", "alice")
    assert acl_hash.encode() in repr(user).encode()
    secrets["genpass"] = r.execute_command("ACL", "GENPASS").decode()
    with pytest.raises((redis.ResponseError, redis.AuthenticationError)):
        r.execute_command("AUTH", "alice", secrets["auth"])
    with pytest.raises((redis.ResponseError, redis.AuthenticationError)):
        r.execute_command("HELLO", "2", "AUTH", "alice", secrets["hello"])
    r.set("marker", "end")
    assert proxy.wait_for_output("response: +OK") and proxy.wait_for_output("SET marker end")
    time.sleep(0.3)
    out = proxy.output()
    # The requests are logged, with their secrets replaced.
    assert "request: CONFIG SET masterauth (redacted)" in out
    assert "request: CONFIG SET maxmemory-policy noeviction requirepass (redacted)" in out
    assert "request: MIGRATE 127.0.0.1" in out and "AUTH (redacted) KEYS auth k2" in out
    assert "AUTH2 someone (redacted) KEYS" in out
    assert "request: ACL SETUSER alice on (redacted) (redacted) (redacted) (redacted) ~* +get" in out
    assert "request: HELLO 2 AUTH (redacted) (redacted)" in out
    for name, secret in secrets.items():
        assert secret not in out, f"{name} secret logged"
    assert acl_hash not in out


# ---- item 7: tee's warnings about a failing shadow are rate-limited ------------------------------

TEE_LOG = "    - tee: {{ target: shadow, on_mismatch: log{extra} }}\n"


def tee_config(primary_port, shadow_port, extra=""):
    return f"""
plugins:
  directory: {{PLUGINS}}
sinks:
  primary: {{ redis: {{ address: 127.0.0.1:{primary_port} }} }}
  shadow: {{ redis: {{ address: 127.0.0.1:{shadow_port} }} }}
chains:
  main:
{TEE_LOG.format(extra=extra)}    - sink: primary
sources:
  - redis: {{ listen: 127.0.0.1:{{PORT}}, chain: main }}
observability:
  metrics: 127.0.0.1:{{METRICS_PORT}}
"""


def failure_lines(output):
    return [l for l in output.splitlines() if "tee: shadow failed" in l or "failed shadow batches" in l]


def test_tee_shadow_outage_does_not_flood_the_log(redis_factory, sluice_factory):
    """2,000 requests, each its own batch, while the shadow is down: every one is served by the
    primary and counted, but the log gets a line or two, not one per request."""
    primary = redis_factory()
    proxy = sluice_factory(tee_config(primary.port, free_port()))
    clients = [proxy.client() for _ in range(4)]
    for i in range(2000):
        assert clients[i % 4].set(f"k{i}", i)
    assert primary.client().dbsize() == 2000
    # (redis-py's CLIENT SETINFO on connect fails on the shadow too)
    assert metric(proxy, "sluice_plugin_tee_shadow_errors_total") >= 2000
    lines = failure_lines(proxy.output())
    assert 1 <= len(lines) <= 2, lines[:5]


def test_tee_summarises_the_failures_it_did_not_log(redis_factory, sluice_factory):
    primary = redis_factory()
    proxy = sluice_factory(tee_config(primary.port, free_port(), ", warning_interval_ms: 700"))
    r = proxy.client()
    for i in range(300):
        r.set(f"k{i}", i)
    failed = metric(proxy, "sluice_plugin_tee_shadow_errors_total")  # the 300 SETs and redis-py's handshake
    assert failed >= 300
    time.sleep(0.8)
    r.set("after", 1)  # the first failure of the next interval writes the summary
    assert proxy.wait_for_output("more failed shadow batches of 'shadow'")
    lines = failure_lines(proxy.output())
    assert len(lines) == 2, lines
    summary = re.search(r"and (\d+) more failed shadow batches of 'shadow' in the last ([0-9.]+)s", lines[1])
    assert summary and int(summary.group(1)) == failed - 1, lines[1]  # all but the first, which was logged
    assert "the last: tee: shadow failed for 1 request(s)" in lines[1]
    # A client that leaves after an interval ended writes what was held back for it.
    for i in range(50):
        r.set(f"x{i}", i)
    time.sleep(0.8)
    r.close()
    assert proxy.wait_for_output("tee: 50 more failed shadow batches"), failure_lines(proxy.output())


def test_tee_warning_interval_is_validated(workdir):
    import subprocess
    from conftest import PLUGINS, SLUICE
    path = f"{workdir}/bad.yaml"
    with open(path, "w") as f:
        f.write(tee_config(free_port(), free_port(), ", warning_interval_ms: 0").replace("{PLUGINS}", PLUGINS)
                .replace("{PORT}", str(free_port())).replace("{METRICS_PORT}", str(free_port())))
    out = subprocess.run([SLUICE, "check", "--config", path], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert re.search(r"bad\.yaml:9:\d+: .*warning_interval_ms: expected milliseconds from 1 to 86400000",
                     out.stderr + out.stdout), out.stderr + out.stdout
