"""Issue 14 "Transforms keep their promises": deny inside MULTI, debug-printer's credential redaction
and tee's warning rate limit, each with real redis-server processes and real clients."""
import hashlib
import re
import socket
import time
import urllib.request

import pytest
import redis

from conftest import free_port, plain_config

EXECABORT = b"-EXECABORT Transaction discarded because of previous errors.\r\n"


def metric(proxy, name):
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
