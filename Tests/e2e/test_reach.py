"""ABI 1.1 reach functions end to end, through the transforms of Tests/fixtures/plugins/reach.c
against real redis-servers: redis_keys + redis_splice_arg (namespace), redis_set_arg's aliasing
rule (key-is-value), get_property (whoami) and call_answer with call_pass / call_forward (whoami,
answer-odd)."""
import socket

import pytest
import redis

from conftest import FIXTURES, PLUGINS


def reach_config(backend_port, steps, source_options=""):
    return f"""
plugins:
  directory: {FIXTURES}
sinks:
  primary: {{ redis: {{ address: 127.0.0.1:{backend_port} }} }}
chains:
  main:
{steps}    - sink: primary
sources:
  - redis: {{ listen: 127.0.0.1:{{PORT}}, chain: main{source_options} }}
"""


def read_reply(f):
    """One RESP2 reply from a socket file: simple strings, errors, integers, bulk strings."""
    line = f.readline()
    assert line.endswith(b"\r\n"), line
    if line[:1] == b"$":
        n = int(line[1:-2])
        return None if n < 0 else f.read(n + 2)[:-2]
    return line[:-2].decode()


def raw_pipeline(port, commands):
    """Sends `commands` in one write on a new connection and reads their replies."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        return raw_send(s, s.makefile("rb"), commands)


@pytest.mark.parametrize("transform", ["namespace", "namespace-swift"])  # C, and Swift through the SDK
def test_namespace_prefixes_every_key_found_by_the_host(redis_factory, sluice_factory, transform):
    backend = redis_factory()
    proxy = sluice_factory(reach_config(backend.port, f"    - {transform}: {{}}\n"))
    r = proxy.client()
    assert r.set("k", "v")
    assert r.mset({"a": "1", "b": "2"})
    assert r.mget("a", "b", "k") == [b"1", b"2", b"v"]
    assert r.eval("return redis.call('GET', KEYS[1])", 1, "k") == b"v"
    r.xadd("s", {"f": "v"})
    assert r.xread({"s": 0})[0][0] == b"ns:s"  # the server's reply names the key it saw
    r.rpush("list", 2, 1)
    assert r.sort("list", store="sorted") == 2
    assert r.ping()  # no keys: untouched
    if transform == "namespace-swift":
        assert r.echo("hi") == b"swift:hi"  # Batch.setArgument
    big = b"x" * (8 * 1024 * 1024)
    assert r.set("big", big)
    assert backend.client().get("ns:big") == big
    assert sorted(backend.client().keys("*")) == [b"ns:a", b"ns:b", b"ns:big", b"ns:k", b"ns:list", b"ns:s",
                                                   b"ns:sorted"]


def test_set_arg_may_take_its_bytes_from_the_message_it_replaces(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(reach_config(backend.port, "    - key-is-value: {}\n"))
    r = proxy.client()
    assert r.set("foo", "bar")
    value = "v" * 100_000
    assert r.set("other", value)
    b = backend.client()
    assert b.get("bar") == b"bar" and b.get(value) == value.encode()
    assert b.exists("foo", "other") == 0


class RawClient:
    """One RESP2 connection that sends each command as written and reads its reply (no client
    library in between to retry, reconnect or interpret errors)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.file = self.sock.makefile("rb")

    def call(self, *args):
        return raw_send(self.sock, self.file, [list(args)])[0]

    def close(self):
        self.sock.close()


def raw_send(sock, f, commands):
    sock.sendall(b"".join(
        b"*%d\r\n" % len(c) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in (x.encode() for x in c))
        for c in commands))
    return [read_reply(f) for _ in commands]


def whoami(client):
    text = client.call("SLUICE.WHOAMI") if isinstance(client, RawClient) else client.execute_command("SLUICE.WHOAMI")
    return dict(item.split("=", 1) for item in text.decode().split(" "))


def test_session_properties_follow_the_clients_replies(redis_factory, sluice_factory):
    backend = redis_factory()
    backend.client().execute_command("ACL", "SETUSER", "alice", "on", ">pw", "~*", "+@all")
    proxy = sluice_factory(reach_config(backend.port, "    - whoami: {}\n"))
    r = RawClient(proxy.port)
    me = whoami(r)
    assert me["protocol"] == "1" and me["version"] == "2" and me["db"] == "0"
    assert me["user"] == "-" and me["name"] == "-" and me["unknown"] == "-"
    assert me["source"] == f"127.0.0.1:{proxy.port}"
    assert me["client"].startswith("127.0.0.1:") and me["client"] != me["source"]
    assert r.call("SELECT", "3") == "+OK"
    assert r.call("CLIENT", "SETNAME", "app") == "+OK"
    assert r.call("SELECT", "999").startswith("-ERR")  # refused by the server: no change
    assert r.call("AUTH", "alice", "wrong").startswith("-WRONGPASS")
    assert r.call("MULTI") == "+OK" and r.call("SELECT", "5") == "+QUEUED" and r.call("DISCARD") == "+OK"
    me = whoami(r)
    assert (me["db"], me["name"], me["user"]) == ("3", "app", "-")
    assert r.call("AUTH", "alice", "pw") == "+OK"
    assert whoami(r)["user"] == "alice"
    assert r.call("CLIENT", "SETNAME", "") == "+OK"
    assert whoami(r)["name"] == "-"
    assert r.call("RESET") == "+RESET"
    me = whoami(r)
    assert (me["db"], me["name"], me["user"], me["version"]) == ("0", "-", "-", "2")
    r.close()

    r3 = redis.Redis(host="127.0.0.1", port=proxy.port, protocol=3, username="alice", password="pw",
                     client_name="three", single_connection_client=True)
    me = whoami(r3)
    assert (me["version"], me["user"], me["name"]) == ("3", "alice", "three")


def test_user_signed_in_by_the_sources_own_auth(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(reach_config(backend.port, "    - whoami: {}\n",
                                        ", auth: { username: bob, password: secret }"))
    r = proxy.client(username="bob", password="secret", single_connection_client=True)
    assert whoami(r)["user"] == "bob"


def test_local_answers_are_merged_in_order_and_on_responses_sees_the_whole_batch(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(reach_config(backend.port, "    - answer-odd: {}\n"))
    replies = raw_pipeline(proxy.port, [["SET", "a", "1"], ["GET", "x"], ["SET", "b", "2"], ["GET", "y"],
                                        ["SET", "c", "3"], ["GET", "z"], ["GET", "a"]])
    assert replies == ["+OK-seen", "+answered-1", "+OK-seen", "+answered-3", "+OK-seen", "+answered-5", b"1"]
    stats = backend.client().info("commandstats")
    assert stats["cmdstat_get"]["calls"] == 1  # only the GET a that was not answered
    assert stats["cmdstat_set"]["calls"] == 3
    # A batch of one: nothing answered, everything forwarded.
    assert raw_pipeline(proxy.port, [["GET", "b"]]) == [b"2"]
    # Every request but the first answered, the first still forwarded.
    assert raw_pipeline(proxy.port, [["PING"], ["PING"]]) == ["+PONG", "+answered-1"]
    assert proxy.alive()


def test_a_partial_answer_passes_the_rest_and_a_whole_answer_sends_nothing(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(reach_config(backend.port, "    - whoami: {}\n"))
    replies = raw_pipeline(proxy.port, [["SET", "k", "v"], ["SLUICE.WHOAMI"], ["GET", "k"]])
    assert replies[0] == "+OK" and replies[2] == b"v" and replies[1].startswith(b"protocol=1 ")
    b = backend.client(single_connection_client=True)
    before = b.info("stats")["total_commands_processed"]
    replies = raw_pipeline(proxy.port, [["SLUICE.WHOAMI"], ["SLUICE.WHOAMI"]])
    assert all(r.startswith(b"protocol=1 ") for r in replies)
    # Nothing reached the backend since but the first INFO itself.
    assert b.info("stats")["total_commands_processed"] == before + 1


def test_the_sdk_wrappers_answer_and_read_properties(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(reach_config(backend.port, "    - whoami-swift: {}\n"))
    r = RawClient(proxy.port)
    assert r.call("SELECT", "2") == "+OK"
    assert r.call("CLIENT", "SETNAME", "swifty") == "+OK"
    assert r.call("SLUICE.WHOAMI") == f"version=2 user=- db=2 name=swifty source=127.0.0.1:{proxy.port}".encode()
    r.close()
    replies = raw_pipeline(proxy.port, [["SET", "k", "v"], ["SLUICE.DENY"], ["GET", "k"]])
    assert replies == ["+OK", "-ERR whoami-swift: denied", b"v"]
