"""The C catalogue transforms of issue 15 (debug-returner, null-sink, query-counter, throttle,
query-type-filter), each loaded from its own .so through the C ABI as a third party's plugin would be,
driven by real clients (redis-py, redis-cli, redis-benchmark) against real redis-server processes."""
import os
import re
import socket
import subprocess
import time
import urllib.request

import pytest
import redis

from conftest import PLUGINS, SLUICE, free_port, plain_config, wait_for_port


def metrics_text(proxy):
    wait_for_port(proxy.metrics_port, process=proxy.proc)  # the metrics listener may start after the source's
    return urllib.request.urlopen(f"http://127.0.0.1:{proxy.metrics_port}/metrics", timeout=5).read().decode()


def metric(proxy, name, label_filter=""):
    """Sum of the samples of `name` whose line also contains `label_filter`."""
    return sum(float(l.split()[-1]) for l in metrics_text(proxy).splitlines()
               if l.startswith(name) and l[len(name):len(name) + 1] in ("{", " ") and label_filter in l)


def redis_cli(port, *args, stdin=None):
    out = subprocess.run(["redis-cli", "-p", str(port), *args], input=stdin, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def check_config(workdir, steps):
    """Runs `sluice check` on a config whose chain has `steps`; returns (path, returncode, stderr)."""
    path = os.path.join(workdir, "catalogue.yaml")
    with open(path, "w") as f:
        f.write(f"""plugins:
  directory: {PLUGINS}
sinks:
  primary: {{ redis: {{ address: 127.0.0.1:1 }} }}
chains:
  main:
{steps}    - sink: primary
sources:
  - redis: {{ listen: 127.0.0.1:{free_port()}, chain: main }}
""")
    out = subprocess.run([SLUICE, "check", "--config", path], capture_output=True, text=True, timeout=60)
    return path, out.returncode, out.stderr + out.stdout


# ---- debug-returner --------------------------------------------------------------------------------

RETURNER = ('    - debug-returner: { reply: "+FINE", replies: { GET: "$hello", incrby: ":42", DEL: "-ERR nope", '
            'EXISTS: { integer: -7 }, HGET: nil, ECHO: { bulk: "" } } }\n')


def test_debug_returner_answers_every_request_itself(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, RETURNER))
    r = proxy.client()
    assert r.get("anything") == b"hello"
    assert r.incr("counter") == 42
    assert r.exists("k") == -7
    assert r.hget("h", "f") is None
    assert r.echo("ignored") == b""
    with pytest.raises(redis.ResponseError, match="^nope$"):
        r.delete("k")
    assert r.execute_command("MADE-UP", "k") == b"FINE"  # every other command: the fallback reply
    # A pipelined batch: every request its own reply, in order.
    pipe = r.pipeline(transaction=False)
    pipe.get("a").incr("b").execute_command("MADE-UP", "c").get("d").hget("h", "f")
    assert pipe.execute(raise_on_error=False) == [b"hello", 42, b"FINE", b"hello", None]
    assert redis_cli(proxy.port, "GET", "x").strip() == "hello"
    assert redis_cli(proxy.port, "SET", "x", "y").strip() == "FINE"
    assert redis_cli(proxy.port, "INCRBY", "x", "1").strip() == "42"
    # Nothing reached redis-server.
    assert backend.client().dbsize() == 0
    assert backend.client().info("commandstats").get("cmdstat_set") is None
    assert metric(proxy, "sluice_plugin_debug_returner_replies_total") >= 14


def test_debug_returner_default_reply_is_ok(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, "    - debug-returner: {}\n"))
    assert proxy.client().execute_command("GET", "x") == b"OK"
    assert redis_cli(proxy.port, "DBSIZE").strip() == "OK"


@pytest.mark.parametrize("steps,needle", [
    ('    - debug-returner: { reply: "hello" }\n', r":7:\d+: main\[0\] debug-returner: reply: expected a reply as"),
    ('    - debug-returner: { reply: ":12x" }\n', r":7:\d+: main\[0\] debug-returner: reply: expected a 64-bit integer, found '12x'"),
    ('    - debug-returner: { reply: "-" }\n', r":7:\d+: main\[0\] debug-returner: reply: an error needs a message"),
    ('    - debug-returner: { replies: { GET: { float: 1 } } }\n', r":7:\d+: main\[0\] debug-returner: replies.get: unknown reply type 'float'"),
    ('    - debug-returner: { replies: { GET: "+a", get: "+b" } }\n', r":7:\d+: main\[0\] debug-returner: replies: command 'get' is given twice"),
    ('    - debug-returner: { replys: {} }\n', r":7:\d+: main\[0\] debug-returner: unknown option 'replys' \(expected one of: reply, replies\)"),
    ('    - null-sink: { reply: [1] }\n', r":7:\d+: main\[0\] null-sink: reply: expected a reply as"),
    ('    - null-sink: { replies: {} }\n', r":7:\d+: main\[0\] null-sink: unknown option 'replies' \(expected one of: reply\)"),
])
def test_returner_and_null_sink_config_errors_point_into_the_file(workdir, steps, needle):
    path, code, out = check_config(workdir, steps)
    assert code != 0
    assert re.search(re.escape(path) + needle, out), out


# ---- null-sink -------------------------------------------------------------------------------------

def test_null_sink_swallows_a_benchmark_without_touching_the_sink(sluice_factory):
    """redis-benchmark through a chain ending in null-sink: every request is answered +OK and the
    chain's sink (a port nobody listens on) is never contacted."""
    proxy = sluice_factory(plain_config(free_port(), "    - null-sink: {}\n"))
    out = subprocess.run(["redis-benchmark", "-p", str(proxy.port), "-t", "set,get,lpush", "-n", "20000",
                          "-P", "16", "-c", "8", "-q"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert re.search(r"SET: [0-9.]+ requests per second", out.stdout), out.stdout
    assert "error" not in out.stdout.lower() + out.stderr.lower().replace("could not fetch server config", "")
    assert metric(proxy, "sluice_plugin_null_sink_requests_total") >= 60000
    assert "connect failed" not in proxy.output()


def test_null_sink_configured_reply(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, '    - null-sink: { reply: ":0" }\n'))
    r = proxy.client()
    assert r.execute_command("SET", "k", "v") == 0
    assert r.execute_command("GET", "k") == 0
    assert redis_cli(proxy.port, "SET", "a", "b").strip() == "0"
    assert backend.client().dbsize() == 0


# ---- query-counter ---------------------------------------------------------------------------------

def test_query_counter_counts_a_benchmark_by_command_and_key_pattern(redis_factory, sluice_factory):
    backend = redis_factory()
    steps = '    - query-counter: { commands: [GET, set], key_patterns: { bench: "key:*", other_keys: "nomatch:*" } }\n'
    proxy = sluice_factory(plain_config(backend.port, steps))
    out = subprocess.run(["redis-benchmark", "-p", str(proxy.port), "-t", "set,get", "-n", "3000", "-P", "10",
                          "-c", "4", "-q"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert metric(proxy, "sluice_plugin_query_counter_command_get_total") == 3000
    assert metric(proxy, "sluice_plugin_query_counter_command_set_total") == 3000
    assert metric(proxy, "sluice_plugin_query_counter_key_bench_total") == 6000
    assert metric(proxy, "sluice_plugin_query_counter_key_other_keys_total") == 0
    total = metric(proxy, "sluice_plugin_query_counter_requests_total")
    other = metric(proxy, "sluice_plugin_query_counter_other_total")  # redis-benchmark's CONFIG GET, PING…
    assert total == 6000 + other and other >= 1
    # Everything reached the server unchanged.
    assert backend.client().get("key:__rand_int__") is not None


def test_query_counter_series_are_bounded_whatever_clients_send(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, '    - query-counter: { key_patterns: { users: "user:*" } }\n'))
    r = proxy.client()
    series_before = sum(1 for l in metrics_text(proxy).splitlines() if l.startswith("sluice_plugin_query_counter_"))
    r.set("user:1", "a")
    r.mset({"user:2": "b", "x": "c"})
    assert r.mget("user:1", "x") == [b"a", b"c"]
    r.hset("user:h", "f", "v")
    r.execute_command("EVAL", "return 1", 1, "user:1")  # numkeys: found by the host's key table
    r.execute_command("XADD", "user:s", "*", "f", "v")
    r.execute_command("XREAD", "COUNT", "1", "STREAMS", "user:s", "0")  # keys after STREAMS
    for i in range(300):  # 300 distinct unknown commands: all "other", no new series
        with pytest.raises(redis.ResponseError):
            r.execute_command(f"MADEUP{i}", "user:9")
    assert metric(proxy, "sluice_plugin_query_counter_command_set_total") == 1
    assert metric(proxy, "sluice_plugin_query_counter_command_mset_total") == 1
    assert metric(proxy, "sluice_plugin_query_counter_command_mget_total") == 1
    assert metric(proxy, "sluice_plugin_query_counter_command_hset_total") == 1
    assert metric(proxy, "sluice_plugin_query_counter_command_eval_total") == 1
    assert metric(proxy, "sluice_plugin_query_counter_other_total") == 300
    assert metric(proxy, "sluice_plugin_query_counter_key_users_total") == 7  # SET MSET MGET HSET EVAL XADD XREAD
    series_after = sum(1 for l in metrics_text(proxy).splitlines() if l.startswith("sluice_plugin_query_counter_"))
    assert series_after == series_before


GLOB_KEYS = ["hot:1", "hot:", "hat:9", "h]t", "a-", "a]", "b", "]", "-", "[", "key[", "keya", "keyb", "keyc",
             "x*y", "xzy", "x", "abc", "z", "^", "m", "", "[x", "\\a"]
GLOB_PATTERNS = ["h?t:*", "[]abc]", "[^]]", "key[ab", "[a-]*", "x\\*y", "[z-a]", "[\\]]*", "*[^a-z]", "?",
                 "\\[*", "a*", "\\", "*", "\\\\*"]


def test_query_counter_globs_match_what_redis_keys_matches(redis_factory, sluice_factory):
    """redis-server's KEYS is the oracle for the C glob matcher (Plugins/c-common/glob.h): for each
    pattern, the requests counted under it are exactly the keys KEYS PATTERN returns."""
    backend = redis_factory()
    entries = ", ".join(f'p{i}: "{p.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                        for i, p in enumerate(GLOB_PATTERNS))
    proxy = sluice_factory(plain_config(backend.port, f"    - query-counter: {{ commands: [SET], key_patterns: {{ {entries} }} }}\n"))
    r = proxy.client()
    for key in GLOB_KEYS:
        assert r.set(key, "v")
    for i, pattern in enumerate(GLOB_PATTERNS):
        expected = len(backend.client().keys(pattern))
        assert metric(proxy, f"sluice_plugin_query_counter_key_p{i}_total") == expected, pattern


@pytest.mark.parametrize("steps,needle", [
    ('    - query-counter: { commands: [] }\n', r":7:\d+: main\[0\] query-counter: commands: expected a list of 1 to 256"),
    ('    - query-counter: { commands: [GET, get] }\n', r":7:\d+: main\[0\] query-counter: commands: 'get' is listed twice"),
    ('    - query-counter: { key_patterns: { Bad-Name: "x*" } }\n', r":7:\d+: main\[0\] query-counter: key_patterns: 'Bad-Name' is not a metric name"),
    ('    - query-counter: { key_patterns: [x] }\n', r":7:\d+: main\[0\] query-counter: key_patterns: expected a map"),
    ('    - query-counter: { comands: [GET] }\n', r":7:\d+: main\[0\] query-counter: unknown option 'comands'"),
])
def test_query_counter_config_errors_point_into_the_file(workdir, steps, needle):
    path, code, out = check_config(workdir, steps)
    assert code != 0
    assert re.search(re.escape(path) + needle, out), out


# ---- throttle ----------------------------------------------------------------------------------------

THROTTLED = re.compile(r"^THROTTLED rate limit of (\d+) requests/s exceeded \(burst (\d+)\); retry in (\d+) ms$")


def test_throttle_answers_over_limit_requests_at_once_and_passes_the_rest(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, "    - throttle: { rate: 2, burst: 5 }\n"))
    r = proxy.client()
    r.ping()  # the handshake (HELLO, CLIENT SETINFO) and this take tokens too; let the bucket refill
    time.sleep(2.6)
    pipe = r.pipeline(transaction=False)
    for i in range(20):
        pipe.set(f"t{i}", i)
    results = pipe.execute(raise_on_error=False)
    assert results[:5] == [True] * 5
    for error in results[5:]:
        assert isinstance(error, redis.ResponseError)
        m = THROTTLED.match(str(error))
        assert m and m.group(1) == "2" and m.group(2) == "5" and 1 <= int(m.group(3)) <= 500, str(error)
    assert sorted(backend.client().keys("t*")) == sorted(f"t{i}".encode() for i in range(5))
    assert metric(proxy, "sluice_plugin_throttle_rejected_total") >= 15
    assert metric(proxy, "sluice_plugin_throttle_passed_total") >= 5


def test_throttle_inside_multi_aborts_the_transaction(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, "    - throttle: { rate: 1, burst: 3 }\n"))
    from test_transform_promises import EXECABORT, RawClient
    raw = RawClient(proxy.port)
    raw.send(b"MULTI\r\nSET m1 1\r\nSET m2 2\r\nSET m3 3\r\nEXEC\r\n")
    replies = [raw.reply() for _ in range(5)]
    raw.close()
    assert replies[:3] == [b"+OK\r\n", b"+QUEUED\r\n", b"+QUEUED\r\n"]
    assert replies[3].startswith(b"-THROTTLED")
    assert replies[4] == EXECABORT  # EXEC is never refused: the doomed transaction is discarded
    assert backend.client().keys("m*") == []
    raw = RawClient(proxy.port)
    time.sleep(3.2)
    raw.send(b"MULTI\r\nSET m4 4\r\nEXEC\r\n")  # the bucket refilled: the next transaction commits
    assert [raw.reply() for _ in range(3)] == [b"+OK\r\n", b"+QUEUED\r\n", b"*1\r\n+OK\r\n"]
    raw.close()


def test_throttle_delays_within_max_wait_instead_of_failing(redis_factory, sluice_factory):
    """redis-benchmark at full speed against 400 requests/s: with max_wait_ms every request is
    held until its token is due (host timers), none fails, and the rate seen is the limit."""
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, "    - throttle: { rate: 400, burst: 40, max_wait_ms: 2000 }\n"))
    out = subprocess.run(["redis-benchmark", "-p", str(proxy.port), "-t", "set", "-n", "800", "-c", "4", "-q"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rps = float(re.search(r"SET: ([0-9.]+) requests per second", out.stdout).group(1))
    assert rps < 400 * 1.25, out.stdout  # 800 requests with a burst of 40 take at least 1.9 s
    assert metric(proxy, "sluice_plugin_throttle_rejected_total") == 0
    assert metric(proxy, "sluice_plugin_throttle_delayed_total") > 0
    assert backend.client().info("commandstats")["cmdstat_set"]["calls"] == 800


def test_throttle_per_client_gives_each_address_its_own_bucket(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, "    - throttle: { rate: 1, burst: 3, per: client }\n"))
    from test_transform_promises import RawClient

    def client_from(source):
        c = RawClient.__new__(RawClient)
        c.sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10, source_address=(source, 0))
        c.buffer = b""
        return c

    a, b = client_from("127.0.0.1"), client_from("127.0.0.2")
    a.send(b"PING\r\n" * 5)
    replies = [a.reply() for _ in range(5)]
    assert replies[:3] == [b"+PONG\r\n"] * 3
    assert all(r.startswith(b"-THROTTLED") for r in replies[3:]), replies
    b.send(b"PING\r\n" * 3)
    assert [b.reply() for _ in range(3)] == [b"+PONG\r\n"] * 3  # b's bucket is its own
    a.send(b"PING\r\n")
    assert a.reply().startswith(b"-THROTTLED")
    a.close()
    b.close()


def test_throttle_per_user_shares_a_bucket_between_a_users_connections(redis_factory, sluice_factory):
    """per: user keys the bucket by the user the client authenticated as (the host's session
    property): alice's two connections share one bucket, bob has his own."""
    backend = redis_factory()
    config = plain_config(backend.port, "    - throttle: { rate: 1, burst: 3, per: user }\n").replace(
        "chain: main }", "chain: main, auth: [{ username: alice, password: a-pw }, { username: bob, password: b-pw }] }")
    proxy = sluice_factory(config)
    from test_transform_promises import RawClient
    alice1, alice2, bob = RawClient(proxy.port), RawClient(proxy.port), RawClient(proxy.port)
    try:
        assert alice1.call(b"AUTH alice a-pw\r\n") == b"+OK\r\n"  # answered by the host: no token
        assert alice2.call(b"AUTH alice a-pw\r\n") == b"+OK\r\n"
        assert bob.call(b"AUTH bob b-pw\r\n") == b"+OK\r\n"
        alice1.send(b"PING\r\n" * 3)
        assert [alice1.reply() for _ in range(3)] == [b"+PONG\r\n"] * 3
        assert alice2.call(b"PING\r\n").startswith(b"-THROTTLED")  # the same user: the same bucket
        bob.send(b"PING\r\n" * 3)
        assert [bob.reply() for _ in range(3)] == [b"+PONG\r\n"] * 3
    finally:
        for c in (alice1, alice2, bob):
            c.close()


def test_throttle_per_client_table_is_bounded_by_max_clients(redis_factory, sluice_factory):
    """40 client addresses (127.0.0.1 to 127.0.0.40) with max_clients 16: the first 16 get buckets
    of their own, the others share one overflow bucket, so most of them are throttled."""
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, "    - throttle: { rate: 1, burst: 1, per: client, max_clients: 16 }\n"))
    replies = []
    for n in range(1, 41):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10, source_address=(f"127.0.0.{n}", 0)) as s:
            s.sendall(b"PING\r\n")
            replies.append(s.recv(200))
    assert replies[:16] == [b"+PONG\r\n"] * 16
    throttled = sum(r.startswith(b"-THROTTLED") for r in replies[16:])
    assert throttled >= 20, replies[16:]  # the overflow bucket holds one token, refilled once a second


@pytest.mark.parametrize("steps,needle", [
    ('    - throttle: {}\n', r":7:\d+: main\[0\] throttle: rate is required"),
    ('    - throttle: { rate: 0 }\n', r":7:\d+: main\[0\] throttle: rate: expected an integer from 1 to 100000000, found 0"),
    ('    - throttle: { rate: 10, burst: x }\n', r":7:\d+: main\[0\] throttle: burst: expected an integer"),
    ('    - throttle: { rate: 10, per: tenant }\n', r":7:\d+: main\[0\] throttle: per: expected source .*, client .* or user"),
    ('    - throttle: { rate: 10, max_wait_ms: 600000 }\n', r":7:\d+: main\[0\] throttle: max_wait_ms: expected an integer from 0 to 60000"),
])
def test_throttle_config_errors_point_into_the_file(workdir, steps, needle):
    path, code, out = check_config(workdir, steps)
    assert code != 0
    assert re.search(re.escape(path) + needle, out), out


# ---- query-type-filter -----------------------------------------------------------------------------

def test_query_type_filter_denies_by_category_and_name_in_a_pipeline(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, '    - query-type-filter: { deny: ["@dangerous", KEYS] }\n'))
    r = proxy.client()
    pipe = r.pipeline(transaction=False)
    pipe.set("a", "1").flushall().get("a").keys("*").execute_command("DEBUG", "SLEEP", "0").incr("n")
    results = pipe.execute(raise_on_error=False)
    assert results[0] is True and results[2] == b"1" and results[5] == 1
    assert str(results[1]) == "query-type-filter: command 'flushall' is denied by this proxy (@dangerous)"
    assert str(results[3]) == "query-type-filter: command 'keys' is denied by this proxy"
    assert "'debug' is denied by this proxy (@dangerous)" in str(results[4])
    with pytest.raises(redis.exceptions.NoPermissionError):  # NOPERM, as Redis's ACL refusals
        r.flushdb()
    assert backend.client().get("a") == b"1" and backend.client().get("n") == b"1"
    assert metric(proxy, "sluice_plugin_query_type_filter_denied_total") == 4
    assert redis_cli(proxy.port, "FLUSHALL").startswith("NOPERM query-type-filter")
    assert backend.client().dbsize() == 2


def test_query_type_filter_allow_list_with_subcommands(redis_factory, sluice_factory):
    backend = redis_factory()
    backend.client().set("k", "v")
    steps = '    - query-type-filter: { allow: ["@read", "@connection", "config|get"] }\n'
    proxy = sluice_factory(plain_config(backend.port, steps))
    r = proxy.client()  # redis-py's HELLO 3 and CLIENT SETINFO are @connection
    assert r.get("k") == b"v"
    assert r.config_get("maxmemory-policy")
    with pytest.raises(redis.ResponseError, match="command 'config.set' is not in a category this proxy allows"):
        r.config_set("maxmemory-policy", "allkeys-lru")
    with pytest.raises(redis.ResponseError, match="command 'set' is not in a category this proxy allows"):
        r.set("k", "changed")
    with pytest.raises(redis.ResponseError, match="command 'nosuchcommand' is not in a category"):
        r.execute_command("NOSUCHCOMMAND")
    assert backend.client().get("k") == b"v"
    assert backend.client().config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"


@pytest.mark.parametrize("category", ["write", "read", "admin", "pubsub", "scripting", "slow", "keyspace"])
def test_query_type_filter_categories_match_the_running_redis(redis_factory, sluice_factory, category):
    """The committed table against the live server: for 40 commands, a request is refused exactly
    when redis-server's COMMAND INFO puts it in the category."""
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, f'    - query-type-filter: {{ deny: ["@{category}"] }}\n'))
    commands = ["get", "set", "del", "incr", "lpush", "lrange", "hget", "hset", "sadd", "smembers", "zadd", "zrange",
                "expire", "ttl", "type", "exists", "scan", "dbsize", "info", "publish", "eval", "evalsha", "script",
                "bgsave", "lastsave", "time", "echo", "object", "dump", "restore", "sort", "getex", "xadd", "xread",
                "pfadd", "geoadd", "setbit", "bitcount", "append", "strlen"]
    info = backend.client(protocol=2).execute_command("COMMAND", "INFO", *commands)
    categories = {name: set(entry["acl_categories"]) for name, entry in info.items()} if isinstance(info, dict) else None
    assert categories and len(categories) == len(commands)
    raw = __import__("test_transform_promises").RawClient(proxy.port)
    try:
        for name in commands:
            # A request shape redis-server rejects on arity alone is enough: the filter decides first.
            reply = raw.call(f"*1\r\n${len(name)}\r\n{name}\r\n".encode())
            refused = reply.startswith(b"-NOPERM query-type-filter")
            assert refused == (f"@{category}" in categories[name]), (name, categories[name], reply)
    finally:
        raw.close()


def test_query_type_filter_denial_inside_multi_aborts(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, '    - query-type-filter: { deny: ["@admin"] }\n'))
    r = proxy.client()
    pipe = r.pipeline(transaction=True)
    pipe.set("x", "1").config_set("maxmemory", "1").set("y", "2")
    with pytest.raises(redis.ResponseError):
        pipe.execute()
    assert backend.client().keys("*") == []
    assert backend.client().config_get("maxmemory")["maxmemory"] == "0"


def test_query_type_filter_under_redis_benchmark(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, '    - query-type-filter: { deny: ["@dangerous", "@admin"] }\n'))
    out = subprocess.run(["redis-benchmark", "-p", str(proxy.port), "-t", "set,get,incr", "-n", "5000", "-P", "8",
                          "-c", "4", "-q"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    stats = backend.client().info("commandstats")
    assert stats["cmdstat_set"]["calls"] == 5000 and stats["cmdstat_get"]["calls"] == 5000
    assert "cmdstat_config" not in stats  # redis-benchmark's CONFIG GET (@admin @dangerous) was answered NOPERM


@pytest.mark.parametrize("steps,needle", [
    ('    - query-type-filter: {}\n', r":7:\d+: main\[0\] query-type-filter: give allow: \[...\] or deny"),
    ('    - query-type-filter: { deny: ["@danger"] }\n', r":7:\d+: main\[0\] query-type-filter: deny: unknown category '@danger' \(redis 7\.0\.15 has: @admin"),
    ('    - query-type-filter: { allow: [GETT] }\n', r":7:\d+: main\[0\] query-type-filter: allow: unknown command 'GETT'"),
    ('    - query-type-filter: { deny: [] }\n', r":7:\d+: main\[0\] query-type-filter: deny: expected a non-empty list"),
])
def test_query_type_filter_config_errors_point_into_the_file(workdir, steps, needle):
    path, code, out = check_config(workdir, steps)
    assert code != 0
    assert re.search(re.escape(path) + needle, out), out


def test_the_committed_command_table_is_what_the_generator_makes(workdir):
    """scripts/gen-redis-command-table.py run against the installed redis-server reproduces the
    committed Plugins/c-common/redis_command_table.h byte for byte (when the server is the version
    the table was made from; another version means: run the script and rebuild)."""
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    committed = open(os.path.join(root, "Plugins", "c-common", "redis_command_table.h")).read()
    table_version = re.search(r'#define RCT_REDIS_VERSION "([^"]+)"', committed).group(1)
    installed = re.search(r"v=(\S+)", subprocess.run(["redis-server", "--version"], capture_output=True,
                                                      text=True).stdout).group(1)
    if installed != table_version:
        pytest.skip(f"redis-server {installed} installed, table made from {table_version}: regenerate it")
    out = os.path.join(workdir, "table.h")
    subprocess.run(["python3", os.path.join(root, "scripts", "gen-redis-command-table.py"), "--out", out],
                   check=True, capture_output=True, timeout=60)
    assert open(out).read() == committed


# ---- all of them at once, under hostile input -----------------------------------------------------

def test_mutated_requests_through_the_catalogue_never_bring_the_host_down(redis_factory, sluice_factory):
    """The seeded request mutations of test_plugins.py, from hundreds of clients, through
    query-counter + query-type-filter + throttle (delaying and refusing) in front of redis-server,
    and through a debug-returner chain: every client gets answers or a close, the host survives, and
    well-formed clients are served after every round."""
    from test_plugins import FUZZ_SEEDS, fuzz_mutate
    import random
    backend = redis_factory()
    steps = ('    - query-counter: { key_patterns: { hot: "hot:*" } }\n'
             '    - query-type-filter: { deny: ["@dangerous", "@admin", KEYS] }\n'
             '    - throttle: { rate: 2000, burst: 200, per: client, max_wait_ms: 20 }\n')
    returner_port = free_port()
    config = plain_config(backend.port, steps).replace(
        "chain: main }\n", f"chain: main }}\n  - redis: {{ listen: 127.0.0.1:{returner_port}, chain: canned }}\n").replace(
        "chains:\n", 'chains:\n  canned:\n    - debug-returner: { replies: { GET: "$x", DEL: "-ERR no" } }\n    - null-sink: {}\n'
        "    - sink: primary\n", 1)
    proxy = sluice_factory(config)
    wait_for_port(returner_port, process=proxy.proc)
    rnd = random.Random(20261203)
    for round_ in range(6):
        sockets = []
        for _ in range(40):
            s = socket.create_connection(("127.0.0.1", rnd.choice([proxy.port, returner_port])), timeout=5)
            s.setblocking(False)
            data = b"".join(fuzz_mutate(rnd, rnd.choice(FUZZ_SEEDS)) if rnd.random() < 0.7 else rnd.choice(FUZZ_SEEDS)
                            for _ in range(rnd.randint(1, 6)))
            cut = rnd.randrange(len(data) + 1)
            try:
                s.sendall(data[:cut])
                s.sendall(data[cut:])
            except (BlockingIOError, ConnectionError):
                pass
            sockets.append(s)
        time.sleep(0.3)
        for s in sockets:
            try:
                while s.recv(65536):
                    pass
            except (BlockingIOError, ConnectionError):
                pass
            s.close()
        assert proxy.alive(), f"round {round_}: {proxy.output()[-2000:]}"
        c = proxy.client()
        assert c.set("fuzz-ok", round_) and int(c.get("fuzz-ok")) == round_
        assert redis.Redis(port=returner_port, socket_timeout=10).get("anything") == b"x"
    assert "Fatal error" not in proxy.output()
