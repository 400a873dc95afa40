"""Issue 15's key-prefix, consistent-scatter and coalesce transforms, each loaded from its own .so
through the C ABI as a third party's plugin would be, driven by real clients (redis-py, redis-cli,
redis-benchmark) against real redis-server processes."""
import os
import re
import socket
import subprocess
import urllib.request

import pytest
import redis

from conftest import PLUGINS, SLUICE, free_port, plain_config


def metrics_text(proxy):
    return urllib.request.urlopen(f"http://127.0.0.1:{proxy.metrics_port}/metrics", timeout=5).read().decode()


def metric(proxy, name, label_filter=""):
    """Sum of the samples of `name` whose line also contains `label_filter`."""
    return sum(float(l.split()[-1]) for l in metrics_text(proxy).splitlines()
               if l.startswith(name) and l[len(name):len(name) + 1] in ("{", " ") and label_filter in l)


def redis_cli(port, *args, stdin=None):
    out = subprocess.run(["redis-cli", "-p", str(port), *args], input=stdin, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def check_config(workdir, steps, sinks=None):
    """Runs `sluice check` on a config whose chain has `steps`; returns (path, returncode, output)."""
    path = os.path.join(workdir, "catalogue2.yaml")
    sinks = sinks or "  primary: { redis: { address: 127.0.0.1:1 } }\n"
    with open(path, "w") as f:
        f.write(f"""plugins:
  directory: {PLUGINS}
sinks:
{sinks}chains:
  main:
{steps}    - sink: primary
sources:
  - redis: {{ listen: 127.0.0.1:{free_port()}, chain: main }}
""")
    out = subprocess.run([SLUICE, "check", "--config", path], capture_output=True, text=True, timeout=60)
    return path, out.returncode, out.stderr + out.stdout


# ---- key-prefix ------------------------------------------------------------------------------------

def two_tenants_config(backend_port):
    """Two sources on one redis-server: tenant A's chain prefixes "a:", tenant B's "b:"."""
    return f"""plugins:
  directory: {{PLUGINS}}
sinks:
  primary: {{ redis: {{ address: 127.0.0.1:{backend_port} }} }}
chains:
  tenant_a:
    - key-prefix: {{ prefix: "a:", allow_scripts: true }}
    - sink: primary
  tenant_b:
    - key-prefix: {{ prefix: "b:" }}
    - sink: primary
sources:
  - redis: {{ listen: 127.0.0.1:{{PORT}}, chain: tenant_a }}
  - redis: {{ listen: 127.0.0.1:{{PORT_B}}, chain: tenant_b }}
observability:
  metrics: 127.0.0.1:{{METRICS_PORT}}
"""


@pytest.fixture
def tenants(redis_factory, sluice_factory):
    backend = redis_factory()
    port_b = free_port()
    proxy = sluice_factory(two_tenants_config(backend.port).replace("{PORT_B}", str(port_b)))
    from conftest import wait_for_port
    wait_for_port(port_b, process=proxy.proc)
    a = proxy.client()
    b = redis.Redis(host="127.0.0.1", port=port_b, socket_timeout=10)
    return backend, proxy, a, b, port_b


def test_key_prefix_tenants_cannot_read_or_list_each_other(tenants):
    backend, proxy, a, b, port_b = tenants
    direct = backend.client()
    a.set("secret", "of-a")
    b.set("secret", "of-b")
    b.set("only-b", "x")
    a.mset({"m1": "1", "m2": "2"})
    b.hset("h", mapping={"f": "v"})
    # Each tenant sees its own value under the same name.
    assert a.get("secret") == b"of-a"
    assert b.get("secret") == b"of-b"
    assert a.get("only-b") is None and a.exists("only-b") == 0
    assert a.mget("m1", "m2", "secret") == [b"1", b"2", b"of-a"]
    assert a.hgetall("h") == {}
    # Listing: KEYS and SCAN show the tenant's own keys, without the prefix.
    assert sorted(a.keys("*")) == [b"m1", b"m2", b"secret"]
    assert sorted(b.keys("*")) == [b"h", b"only-b", b"secret"]
    assert a.keys("only*") == []
    assert sorted(a.scan_iter()) == [b"m1", b"m2", b"secret"]
    assert sorted(b.scan_iter(match="*n*")) == [b"only-b"]
    assert sorted(b.scan_iter(_type="hash")) == [b"h"]
    # Directly on redis-server the keys carry their tenant's prefix.
    assert sorted(direct.keys("*")) == [b"a:m1", b"a:m2", b"a:secret", b"b:h", b"b:only-b", b"b:secret"]
    assert redis_cli(backend.port, "GET", "b:secret").strip() == "of-b"
    # A tenant cannot escape with a key that looks like another tenant's prefix.
    assert a.get("b:secret") is None
    assert direct.get("a:b:secret") is None
    assert metric(proxy, "sluice_plugin_key_prefix_keys_total") >= 10
    assert metric(proxy, "sluice_plugin_key_prefix_replies_rewritten_total") >= 4


def test_key_prefix_multi_key_commands_scripts_streams_and_sort(tenants):
    backend, proxy, a, b, port_b = tenants
    direct = backend.client()
    # EVAL: the declared keys get the prefix (tenant A has allow_scripts: true).
    assert a.eval("redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[2])", 2, "k1", "k2", "v") is None
    assert direct.get("a:k1") == b"v"
    # Blocking pops: the key in the reply loses its prefix.
    a.rpush("queue", "job")
    assert a.blpop(["empty", "queue"], timeout=1) == (b"queue", b"job")
    a.zadd("z", {"m": 1.5})
    assert a.bzpopmin(["z"], timeout=1) == (b"z", b"m", 1.5)
    a.rpush("l2", "x", "y")
    assert a.lmpop(1, "l2", direction="LEFT") == [b"l2", [b"x"]]
    # XREAD: the stream names come back without the prefix (RESP2).
    xid = a.xadd("stream", {"f": "v"})
    assert a.xread({"stream": "0"}) == [[b"stream", [(xid, {b"f": b"v"})]]]
    assert direct.xlen("a:stream") == 1
    # SORT with BY/GET patterns and STORE: every key named stays inside the namespace.
    a.rpush("ids", "2", "1")
    a.mset({"w_1": "10", "w_2": "5", "obj_1": "one", "obj_2": "two"})
    assert a.sort("ids", by="w_*", get=["#", "obj_*"]) == [b"2", b"two", b"1", b"one"]
    assert a.sort("ids", by="w_*", get="obj_*", store="sorted") == 2
    assert direct.lrange("a:sorted", 0, -1) == [b"two", b"one"]
    # MSET with many keys (rebuilt in one copy) and DEL of many.
    many = {f"k{i}": str(i) for i in range(40)}
    a.mset(many)
    assert direct.get("a:k39") == b"39"
    assert a.delete(*many) == 40
    # RENAME / COPY keep both keys inside the namespace.
    a.set("src", "1")
    a.copy("src", "dst")
    a.rename("src", "moved")
    assert sorted(k for k in direct.keys("a:*") if k in (b"a:dst", b"a:moved")) == [b"a:dst", b"a:moved"]
    # RESP3 client: XREAD's map and BLPOP's array come back without the prefix too.
    r3 = redis.Redis(host="127.0.0.1", port=proxy.port, protocol=3, socket_timeout=10)
    assert r3.xread({"stream": "0"}) == {b"stream": [[(xid, {b"f": b"v"})]]}
    r3.rpush("queue", "again")
    assert r3.blpop(["queue"], timeout=1) == [b"queue", b"again"]
    assert r3.keys("mov*") == [b"moved"]
    assert metric(proxy, "sluice_transform_abi_misuse_total") == 0
    assert metric(proxy, "sluice_transform_error_returns_total") == 0


def test_key_prefix_refuses_what_spans_tenants_and_the_rest_of_the_pipeline_goes_through(tenants):
    backend, proxy, a, b, port_b = tenants
    direct = backend.client()
    direct.set("b:keep", "1")
    refused = ["FLUSHALL", "FLUSHDB", "RANDOMKEY", "DBSIZE", "SWAPDB 0 1", "CONFIG GET maxmemory",
               "CLIENT LIST", "CLIENT KILL ID 1", "DEBUG SLEEP 0", "SCRIPT FLUSH", "PUBLISH ch x",
               "MIGRATE 127.0.0.1 1 k 0 1", "OBJECT.MADEUP k", "INFO keyspace"]
    for command in refused:
        with pytest.raises(redis.ResponseError, match="key-prefix"):
            b.execute_command(*command.split())
    # Tenant B has no allow_scripts: EVAL is refused with the reason.
    with pytest.raises(redis.ResponseError, match="allow_scripts"):
        b.eval("return 1", 0)
    assert direct.get("b:keep") == b"1"
    # In a pipeline only the refused requests get the error, in their places.
    pipe = b.pipeline(transaction=False)
    pipe.set("p1", "1").execute_command("FLUSHALL").get("p1").execute_command("RANDOMKEY").incr("n")
    out = pipe.execute(raise_on_error=False)
    assert out[0] is True and out[2] == b"1" and out[4] == 1
    assert isinstance(out[1], redis.exceptions.NoPermissionError) and "key-prefix: 'flushall' is refused" in str(out[1])
    assert isinstance(out[3], redis.ResponseError) and "RANDOMKEY picks among every tenant" in str(out[3])
    # redis-cli shows the message as a client sees it.
    assert "NOPERM key-prefix: 'flushall' is refused for a tenant" in redis_cli(port_b, "FLUSHALL")
    # Inside MULTI a refused command aborts the transaction, as Redis does for a command it refuses.
    tx = b.pipeline(transaction=True)
    tx.set("t1", "1").execute_command("FLUSHDB")
    with pytest.raises(redis.ResponseError, match="'flushdb' is refused"):
        tx.execute()
    assert direct.get("b:t1") is None
    # KEYS inside MULTI is refused too (EXEC's reply could not be rewritten).
    tx = b.pipeline(transaction=True)
    tx.set("t1", "1").keys("*")
    with pytest.raises(redis.ResponseError, match="cannot be taken out of the namespace inside MULTI"):
        tx.execute()
    assert direct.get("b:t1") is None
    # A plain transaction works, with prefixed keys.
    tx = b.pipeline(transaction=True)
    tx.set("t2", "2").get("t2")
    assert tx.execute() == [True, b"2"]
    assert direct.get("b:t2") == b"2"
    assert metric(proxy, "sluice_plugin_key_prefix_refused_total") >= len(refused) + 4


def test_key_prefix_from_user_namespaces_each_authenticated_user(redis_factory, sluice_factory):
    backend = redis_factory()
    direct = backend.client()
    for user in ("alice", "bob"):
        direct.execute_command("ACL", "SETUSER", user, "on", f">{user}-pw", "~*", "+@all")
    proxy = sluice_factory(plain_config(backend.port, "    - key-prefix: { from_user: true }\n"))
    anonymous = proxy.client()
    assert anonymous.ping() is True  # commands without keys still work
    with pytest.raises(redis.exceptions.AuthenticationError, match="key-prefix: the key prefix is the user name"):
        anonymous.get("k")
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.keys("*")
    alice = proxy.client(username="alice", password="alice-pw")
    bob = proxy.client(username="bob", password="bob-pw")
    alice.set("k", "from-alice")
    bob.set("k", "from-bob")
    assert alice.get("k") == b"from-alice" and bob.get("k") == b"from-bob"
    assert alice.keys("*") == [b"k"] and list(bob.scan_iter()) == [b"k"]
    assert sorted(direct.keys("*")) == [b"alice:k", b"bob:k"]
    # Re-authenticating switches the namespace for the following requests.
    alice.execute_command("AUTH", "bob", "bob-pw")
    assert alice.get("k") == b"from-bob"
    # A key command pipelined behind AUTH in the same write waits for AUTH's reply: refused.
    # (redis-cli waits for each reply, so one write of two commands goes through a raw socket.)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(b"AUTH alice alice-pw\r\nGET k\r\n")
        got = b""
        while got.count(b"\r\n") < 2:
            chunk = s.recv(4096)
            assert chunk, got
            got += chunk
    assert got.startswith(b"+OK\r\n-NOAUTH key-prefix: the key prefix is the user name"), got
    # Sent after AUTH's reply, the same GET gets alice's key.
    assert redis_cli(proxy.port, "--user", "alice", "--pass", "alice-pw", "--no-auth-warning", "GET", "k").strip() == "from-alice"


@pytest.mark.parametrize("steps,needle", [
    ('    - key-prefix: {}\n', r":7:\d+: main\[0\] key-prefix: give prefix: \"tenant:\" or from_user: true"),
    ('    - key-prefix: { prefix: "a:", from_user: true }\n', r":7:\d+: main\[0\] key-prefix: give either prefix: or from_user: true, not both"),
    ('    - key-prefix: { prefix: "" }\n', r":7:\d+: main\[0\] key-prefix: prefix: expected a non-empty string"),
    ('    - key-prefix: { from_user: yes please }\n', r":7:\d+: main\[0\] key-prefix: from_user: expected true or false"),
    ('    - key-prefix: { prefx: "a:" }\n', r":7:\d+: main\[0\] key-prefix: unknown option 'prefx' \(expected one of: prefix, from_user, allow_scripts\)"),
])
def test_key_prefix_config_errors_point_into_the_file(workdir, steps, needle):
    path, code, out = check_config(workdir, steps)
    assert code != 0
    assert re.search(re.escape(path) + needle, out), out


def test_key_prefix_glob_characters_in_the_prefix_are_escaped(redis_factory, sluice_factory):
    backend = redis_factory()
    direct = backend.client()
    direct.set("t*x", "other")  # would match an unescaped pattern "t*" + "*"
    direct.set("t*:mine", "1")
    proxy = sluice_factory(plain_config(backend.port, '    - key-prefix: { prefix: "t*:" }\n'))
    r = proxy.client()
    assert r.keys("*") == [b"mine"]
    assert list(r.scan_iter()) == [b"mine"]
    assert r.get("mine") == b"1"
    # SORT patterns have no escape: with a '*' in the prefix, BY/GET patterns are refused, plain SORT works.
    r.rpush("ids", "2", "1")
    assert r.sort("ids") == [b"1", b"2"]
    with pytest.raises(redis.ResponseError, match="BY and GET patterns cannot hold a prefix with"):
        r.sort("ids", by="w_*")


def test_key_prefix_under_redis_benchmark(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, '    - key-prefix: { prefix: "bench:" }\n'))
    out = subprocess.run(["redis-benchmark", "-p", str(proxy.port), "-t", "set,get,lpush,mset", "-n", "5000",
                          "-P", "8", "-c", "4", "-q"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert re.search(r"MSET \(10 keys\): [0-9.]+ requests per second", out.stdout), out.stdout
    keys = backend.client().keys("*")
    assert keys and all(k.startswith(b"bench:") for k in keys), keys


# ---- consistent-scatter ----------------------------------------------------------------------------

def scatter_config(ports, options="write_consistency: 2, read_consistency: 2, timeout_ms: 500"):
    sinks = "".join(f"  r{i + 1}: {{ redis: {{ address: 127.0.0.1:{p} }} }}\n" for i, p in enumerate(ports))
    return f"""plugins:
  directory: {{PLUGINS}}
sinks:
{sinks}chains:
  main:
    - consistent-scatter: {{ targets: [r1, r2, r3], {options} }}
    - sink: r1
sources:
  - redis: {{ listen: 127.0.0.1:{{PORT}}, chain: main }}
observability:
  metrics: 127.0.0.1:{{METRICS_PORT}}
"""


STAMPED = re.compile(rb"^sc1:[0-9a-f]{16}:")


def test_consistent_scatter_writes_everywhere_and_reads_the_newest(redis_factory, sluice_factory):
    servers = [redis_factory() for _ in range(3)]
    proxy = sluice_factory(scatter_config([s.port for s in servers]))
    r = proxy.client()
    assert r.set("k", "v1") is True
    # Every replica holds the value behind its timestamp header (what direct readers see).
    stored = [s.client().get("k") for s in servers]
    assert all(STAMPED.match(v) and v.endswith(b":v1") for v in stored), stored
    assert len(set(stored)) == 1  # one timestamp per write, the same on every replica
    for _ in range(6):  # reads rotate over the replicas; each sees the value without the header
        assert r.get("k") == b"v1"
    # A replica that missed a write (an older stamp) loses against the newer value on any 2 of 3.
    servers[1].client().set("k", b"sc1:0000000000000001:stale")
    for _ in range(6):
        assert r.get("k") == b"v1"
    # A newer stamp written on all replicas read quorum can reach wins over the older.
    for s in servers:
        s.client().set("n", b"sc1:0000000000000005:old")
    servers[2].client().set("n", b"sc1:7fffffffffffffff:newest")
    seen = {r.get("n") for _ in range(6)}
    assert b"newest" in seen and seen <= {b"newest", b"old"}
    # MSET / MGET / EXISTS / DEL / SET … GET, pipelined.
    pipe = r.pipeline(transaction=False)
    pipe.mset({"a": "1", "b": "2"}).mget("a", "missing", "b").exists("a", "b", "missing")
    pipe.set("a", "3", get=True).get("a").delete("a", "b").get("b")
    assert pipe.execute() == [True, [b"1", None, b"2"], 2, b"1", b"3", 2, None]
    assert all(s.client().get("a") is None for s in servers)
    # Connection commands reach every replica; other commands are refused per request.
    assert r.ping() is True
    with pytest.raises(redis.ResponseError, match="consistent-scatter: 'INCRBY' is not supported"):
        r.incr("counter")
    assert redis_cli(proxy.port, "GET", "k").strip() == "v1"
    assert metric(proxy, "sluice_plugin_consistent_scatter_writes_total") >= 4
    assert metric(proxy, "sluice_plugin_consistent_scatter_refused_total") == 1
    # RESP3 clients get RESP3 replies (nil in MGET as '_').
    r3 = redis.Redis(host="127.0.0.1", port=proxy.port, protocol=3, socket_timeout=10)
    assert r3.mget("k", "nothing") == [b"v1", None]
    assert metric(proxy, "sluice_transform_abi_misuse_total") == 0
    assert metric(proxy, "sluice_transform_error_returns_total") == 0


def test_consistent_scatter_survives_a_killed_replica_and_reports_a_lost_quorum(redis_factory, sluice_factory):
    servers = [redis_factory() for _ in range(3)]
    proxy = sluice_factory(scatter_config([s.port for s in servers]))
    r = proxy.client()
    assert r.set("before", "x") is True
    servers[2].stop()  # killed
    # W=2 of 3: writes are still acknowledged; R=2: reads fail over to the live replicas.
    for i in range(10):
        assert r.set(f"k{i}", str(i)) is True
    for i in range(10):
        assert r.get(f"k{i}") == str(i).encode()
        assert r.get("before") == b"x"
    assert servers[0].client().get("k3").endswith(b":3") and servers[1].client().get("k3").endswith(b":3")
    assert metric(proxy, "sluice_plugin_consistent_scatter_r3_errors_total") >= 10
    assert metric(proxy, "sluice_plugin_consistent_scatter_quorum_failures_total") == 0
    # A second replica gone: one acknowledgement is not enough, and the client is told why.
    servers[1].stop()
    with pytest.raises(redis.ResponseError, match=r"consistent-scatter: 1 of 3 targets acknowledged the write, 2 required \(r[23]: "):
        r.set("k", "v")
    with pytest.raises(redis.ResponseError, match=r"consistent-scatter: 1 of 3 targets answered, 2 required"):
        r.get("k0")
    assert metric(proxy, "sluice_plugin_consistent_scatter_quorum_failures_total") == 2


def test_consistent_scatter_counts_a_replica_that_answers_late_or_not_at_all(redis_factory, sluice_factory):
    import signal
    import time
    servers = [redis_factory() for _ in range(3)]
    proxy = sluice_factory(scatter_config([s.port for s in servers], "timeout_ms: 300"))  # majorities by default
    r = proxy.client()
    assert r.set("warm", "1") is True
    servers[2].proc.send_signal(signal.SIGSTOP)
    try:
        start = time.time()
        assert r.set("k", "v") is True  # two acknowledgements: answered without waiting for r3
        assert time.time() - start < 0.3
        for _ in range(4):
            assert r.get("k") == b"v"  # a read sent to r3 fails over to another replica at the deadline
        time.sleep(0.4)
        assert metric(proxy, "sluice_plugin_consistent_scatter_r3_timeouts_total") >= 1
        assert metric(proxy, "sluice_plugin_consistent_scatter_r1_timeouts_total") == 0
    finally:
        servers[2].proc.send_signal(signal.SIGCONT)
    deadline = time.time() + 5
    while time.time() < deadline and metric(proxy, "sluice_plugin_consistent_scatter_r3_late_total") < 1:
        time.sleep(0.05)
    assert metric(proxy, "sluice_plugin_consistent_scatter_r3_late_total") >= 1
    assert servers[2].client().get("k").endswith(b":v")  # the late replica applied the write


@pytest.mark.parametrize("options,needle", [
    ("write_consistency: 4", r"write_consistency: expected an integer from 1 to 3, found 4"),
    ("read_consistency: 0", r"read_consistency: expected an integer from 1 to 3, found 0"),
    ("targets: [r1, nope]", r"targets: no sink or chain named 'nope'"),
    ("targets: [r1, r1]", r"targets: 'r1' is listed twice"),
    ("timeout: 3", r"unknown option 'timeout'"),
])
def test_consistent_scatter_config_errors_point_into_the_file(workdir, options, needle):
    sinks = "".join(f"  r{i}: {{ redis: {{ address: 127.0.0.1:1 }} }}\n" for i in (1, 2, 3))
    if "targets" not in options:
        options = "targets: [r1, r2, r3], " + options
    path, code, out = check_config(workdir, f"    - consistent-scatter: {{ {options} }}\n",
                                   sinks=sinks.replace("r1:", "primary:").replace("  r2", "  r1: { redis: { address: 127.0.0.1:1 } }\n  r2"))
    assert code != 0
    assert re.search(re.escape(path) + r":\d+:\d+: main\[0\] consistent-scatter: " + needle, out), out


# ---- coalesce --------------------------------------------------------------------------------------

def coalesce_config(backend_port, options):
    return plain_config(backend_port, f"    - coalesce: {{ target: primary, {options} }}\n")


def read_replies(sock, count):
    """Reads until `count` simple replies (one line each) arrived; returns the lines."""
    got = b""
    while got.count(b"\r\n") < count:
        chunk = sock.recv(65536)
        assert chunk, got
        got += chunk
    return got.split(b"\r\n")[:count]


def test_coalesce_merges_a_clients_writes_into_one_batch_by_time_and_by_count(redis_factory, sluice_factory):
    import time
    backend = redis_factory()
    proxy = sluice_factory(coalesce_config(backend.port, "max_requests: 1000, max_wait_ms: 400"))
    # Five separate writes 20 ms apart, within one max_wait_ms: one batch of five, replies in order.
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        start = time.time()
        for i in range(5):
            s.sendall(f"INCRBY n {10 ** i}\r\n".encode())
            time.sleep(0.02)
        assert read_replies(s, 5) == [b":1", b":11", b":111", b":1111", b":11111"]
        assert time.time() - start >= 0.35  # held until the timer
    assert metric(proxy, "sluice_plugin_coalesce_batches_total") == 1
    assert metric(proxy, "sluice_plugin_coalesce_timer_flushes_total") == 1
    assert metric(proxy, "sluice_plugin_coalesce_requests_total") == 5
    # By count: max_requests 3, six single-command writes: two full batches, no timer needed.
    proxy2 = sluice_factory(coalesce_config(backend.port, "max_requests: 3, max_wait_ms: 60000"))
    with socket.create_connection(("127.0.0.1", proxy2.port), timeout=10) as s:
        for i in range(6):
            s.sendall(f"RPUSH order {i}\r\n".encode())
            time.sleep(0.01)
        assert read_replies(s, 6) == [b":1", b":2", b":3", b":4", b":5", b":6"]
    assert metric(proxy2, "sluice_plugin_coalesce_full_flushes_total") == 2
    assert metric(proxy2, "sluice_plugin_coalesce_batches_total") == 2
    assert backend.client().lrange("order", 0, -1) == [str(i).encode() for i in range(6)]


def test_coalesce_keeps_every_reply_in_place_for_redis_py_pipelines_and_benchmark(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(coalesce_config(backend.port, "max_requests: 50, max_wait_ms: 2"))
    r = proxy.client()
    pipe = r.pipeline(transaction=False)
    for i in range(500):
        pipe.set(f"k{i}", i).get(f"k{i}").incr("counter")
    out = pipe.execute()
    assert out == [x for i in range(500) for x in (True, str(i).encode(), i + 1)]
    # A transaction and a blocking pop through the held batches.
    tx = r.pipeline(transaction=True)
    tx.set("t", "1").incr("t").get("t")
    assert tx.execute() == [True, 2, b"2"]
    r.rpush("q", "job")
    assert r.blpop(["q"], timeout=1) == (b"q", b"job")
    # RESP3 through the coalesced route.
    r3 = redis.Redis(host="127.0.0.1", port=proxy.port, protocol=3, socket_timeout=10)
    assert r3.hgetall("none") == {} and r3.get("k7") == b"7"
    out = subprocess.run(["redis-benchmark", "-p", str(proxy.port), "-t", "set,get,incr,lpush", "-n", "20000",
                          "-P", "16", "-c", "8", "-q"], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert re.search(r"INCR: [0-9.]+ requests per second", out.stdout), out.stdout
    assert backend.client().get("counter:__rand_int__") == b"20000"  # every INCR reached the server once
    batches = metric(proxy, "sluice_plugin_coalesce_batches_total")
    requests = metric(proxy, "sluice_plugin_coalesce_requests_total")
    print(f"coalesce: {requests:.0f} requests in {batches:.0f} batches")
    assert requests >= 80000 + 1500 and batches < requests / 4, (batches, requests)
    assert metric(proxy, "sluice_plugin_coalesce_failures_total") == 0
    # max_wait_ms: 0 sends at the end of the event-loop turn.
    proxy0 = sluice_factory(coalesce_config(backend.port, "max_wait_ms: 0"))
    pipe = proxy0.client().pipeline(transaction=False)
    for i in range(300):
        pipe.incr("zero")
    assert pipe.execute() == list(range(1, 301))
    assert metric(proxy0, "sluice_plugin_coalesce_requests_total") >= 300


def test_coalesce_failing_target_fails_the_held_requests_with_a_clear_error(sluice_factory):
    proxy = sluice_factory(coalesce_config(free_port(), "max_requests: 10, max_wait_ms: 5"))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(b"GET k\r\nPING\r\n")
        lines = read_replies(s, 2)
    assert all(l.startswith(b"-ERR coalesce: the target failed: ") and b"unavailable" in l for l in lines), lines
    assert proxy.alive()
    assert metric(proxy, "sluice_plugin_coalesce_failures_total") >= 1


@pytest.mark.parametrize("step,needle", [
    ("    - coalesce: { max_requests: 5 }\n", r"target: required"),
    ("    - coalesce: { target: nope }\n", r"target: no sink or chain named 'nope'"),
    ("    - coalesce: { target: primary, max_requests: 0 }\n", r"max_requests: expected an integer from 1 to 1000000, found 0"),
    ("    - coalesce: { target: primary, max_wait_ms: soon }\n", r"max_wait_ms: expected an integer from 0 to 60000, found 'soon'"),
    ("    - coalesce: { target: primary, wait: 1 }\n", r"unknown option 'wait'"),
])
def test_coalesce_config_errors_point_into_the_file(workdir, step, needle):
    path, code, out = check_config(workdir, step)
    assert code != 0
    assert re.search(re.escape(path) + r":7:\d+: main\[0\] coalesce: " + needle, out), out
