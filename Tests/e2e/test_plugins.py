"""Transforms loaded from .so files through the C ABI, driven by real clients against real servers."""
import os
import random
import socket
import threading
import re
import subprocess
import time
import urllib.request

import pytest
import redis

from conftest import FIXTURES, PLUGINS, SLUICE, free_port, wait_for_port


def two_sink_config(primary, other, steps, other_name="shadow", plugin_dir=None, extra_chains=""):
    return f"""
plugins:
  directory: {plugin_dir or PLUGINS}
sinks:
  primary: {{ redis: {{ address: 127.0.0.1:{primary} }} }}
  {other_name}: {{ redis: {{ address: 127.0.0.1:{other} }} }}
chains:
  main:
{steps}    - sink: primary
{extra_chains}
sources:
  - redis: {{ listen: 127.0.0.1:{{PORT}}, chain: main }}
observability:
  metrics: 127.0.0.1:{{METRICS_PORT}}
"""


def chains_config(sinks, chains):
    """A config with one Redis sink per server in `sinks` (name -> server) and `chains` (YAML text
    under `chains:`); the source runs chain `main`."""
    sink_lines = "".join(f"  {name}: {{ redis: {{ address: 127.0.0.1:{server.port} }} }}\n"
                         for name, server in sinks.items())
    return f"""
plugins:
  directory: {PLUGINS}
sinks:
{sink_lines}chains:
{chains}sources:
  - redis: {{ listen: 127.0.0.1:{{PORT}}, chain: main }}
"""


def metric(proxy, name):
    body = urllib.request.urlopen(f"http://127.0.0.1:{proxy.metrics_port}/metrics", timeout=5).read().decode()
    return sum(float(l.split()[-1]) for l in body.splitlines() if l.startswith(name))


def redirect_proxy(redis_factory, sluice_factory, options='patterns: ["hot:*"]', server_args=()):
    """A primary and a hot redis-server and a Sluice whose chain redirects to 'hot' with `options`."""
    primary, hot = redis_factory(*server_args), redis_factory(*server_args)
    steps = f"    - redirect: {{ target: hot, {options} }}\n"
    return primary, hot, sluice_factory(two_sink_config(primary.port, hot.port, steps, other_name="hot"))


# ---- tee ---------------------------------------------------------------------------------------

def test_tee_writes_land_on_both_servers(redis_factory, sluice_factory):
    primary, shadow = redis_factory(), redis_factory()
    proxy = sluice_factory(two_sink_config(primary.port, shadow.port, "    - tee: { target: shadow }\n"))
    r = proxy.client()
    pipe = r.pipeline(transaction=False)
    for i in range(500):
        pipe.set(f"k{i}", f"v{i}")
    pipe.execute()
    r.rpush("list", "a", "b")
    time.sleep(0.3)
    for server in (primary, shadow):
        c = server.client()
        assert c.get("k0") == b"v0" and c.get("k499") == b"v499"
        assert c.lrange("list", 0, -1) == [b"a", b"b"]
        assert c.dbsize() == 501


def _send_and_read(sock, command, *needles):
    """Sends one RESP command and reads until one of `needles` has arrived."""
    out = b"*%d\r\n" % len(command) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in command)
    sock.sendall(out)
    data = b""
    while not any(n in data for n in needles):
        part = sock.recv(65536)
        assert part, data
        data += part
    return data


def _calls(server, command):
    """How often `server` ran `command`, asked on a raw RESP2 connection (redis-py 8 opens its
    connections with a HELLO 3 of its own)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        info = _send_and_read(s, [b"INFO", b"commandstats"], b"\r\n\r\n").decode()
    found = re.search(rf"cmdstat_{command}:calls=(\d+)", info)
    return int(found.group(1)) if found else 0


def test_tee_sends_each_state_command_once_to_each_server(redis_factory, sluice_factory):
    """Tee's target records HELLO and SELECT first; the primary's route must not replay them before
    sending the batch's own copy (HELLO 2 twice on a subscribed RESP3 connection is refused)."""
    primary, shadow = redis_factory(), redis_factory()
    proxy = sluice_factory(two_sink_config(primary.port, shadow.port,
                                           "    - tee: { target: shadow, on_mismatch: ignore }\n"))
    end_of_hello = b"$7\r\nmodules\r\n*0\r\n"
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        assert b"unsubscribe" in _send_and_read(s, [b"UNSUBSCRIBE"], b":0\r\n")
        assert b"proto" in _send_and_read(s, [b"HELLO", b"3"], end_of_hello, b"-ERR")
        assert b"subscribe" in _send_and_read(s, [b"SUBSCRIBE", b"ch"], b":1\r\n")
        reply = _send_and_read(s, [b"HELLO", b"2"], end_of_hello, b"-ERR")
        assert not reply.startswith(b"-"), reply
        assert reply.startswith(b"*14\r\n"), reply  # the RESP2 map
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        assert _send_and_read(s, [b"SELECT", b"3"], b"\r\n") == b"+OK\r\n"
        assert _send_and_read(s, [b"SET", b"k", b"v"], b"\r\n") == b"+OK\r\n"
    time.sleep(0.3)
    for server in (primary, shadow):
        assert _calls(server, "hello") == 2, server.port  # HELLO 3 and HELLO 2, once each
        assert _calls(server, "select") == 1, server.port
        assert server.client(db=3).get("k") == b"v"


def test_tee_hello_3_while_the_shadows_unsubscribe_confirmation_is_on_its_way(redis_factory, sluice_factory):
    """The client has the primary's confirmation before the shadow's has arrived, and may send
    HELLO 3 at once: the shadow's RESP2 confirmation is then no reply to it (it was taken for one,
    HELLO's own reply was out of step, and the client was closed). Pipelined, both sinks see it."""
    primary, shadow = redis_factory(), redis_factory()
    proxy = sluice_factory(two_sink_config(primary.port, shadow.port,
                                           "    - tee: { target: shadow, on_mismatch: ignore }\n"))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(b"*1\r\n$11\r\nUNSUBSCRIBE\r\n*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")
        data = _send_and_read(s, [b"PING"], b"+PONG\r\n")
        assert b"proto" in data and b"unsubscribe" in data, data
    assert "out of step" not in proxy.output(), proxy.output()
    for server in (primary, shadow):
        assert _calls(server, "hello") == 1, server.port


def test_tee_answers_from_primary(redis_factory, sluice_factory):
    primary, shadow = redis_factory(), redis_factory()
    primary.client().set("who", "primary")
    shadow.client().set("who", "shadow")
    proxy = sluice_factory(two_sink_config(primary.port, shadow.port, "    - tee: { target: shadow }\n"))
    assert proxy.client().get("who") == b"primary"


def test_tee_mismatch_is_logged(redis_factory, sluice_factory):
    primary, shadow = redis_factory(), redis_factory()
    primary.client().set("drift", "one")
    shadow.client().set("drift", "two")
    proxy = sluice_factory(two_sink_config(primary.port, shadow.port,
                                           "    - tee: { target: shadow, on_mismatch: log }\n"))
    assert proxy.client().get("drift") == b"one"
    assert proxy.wait_for_output("tee: mismatch for GET")
    assert metric(proxy, "sluice_plugin_tee_mismatches_total") >= 1


def test_tee_mismatch_fails_the_request(redis_factory, sluice_factory):
    primary, shadow = redis_factory(), redis_factory()
    primary.client().set("drift", "one")
    shadow.client().set("drift", "two")
    primary.client().set("same", "x")
    shadow.client().set("same", "x")
    proxy = sluice_factory(two_sink_config(primary.port, shadow.port,
                                           "    - tee: { target: shadow, on_mismatch: fail }\n"))
    r = proxy.client()
    with pytest.raises(redis.ResponseError, match="tee: responses differ between primary and shadow"):
        r.get("drift")
    assert r.get("same") == b"x"


def test_a_responses_only_step_sees_its_requests_when_a_later_transform_changes_the_batch(
        redis_factory, sluice_factory, workdir):
    # The twin of the tee case for a step with on_responses and no on_requests: redirect after it
    # takes hot requests out of its batch, which must not shrink the requests this step sees.
    plugin_dir = os.path.join(workdir, "mixed-plugins")
    os.makedirs(plugin_dir)
    for source in (os.path.join(FIXTURES, "libmisbehaving.so"), os.path.join(PLUGINS, "libsluice-redirect.so")):
        os.symlink(source, os.path.join(plugin_dir, os.path.basename(source)))
    primary, hot = redis_factory(), redis_factory()
    steps = '    - responses-only: {}\n    - redirect: { target: hot, patterns: ["hot:*"] }\n'
    proxy = sluice_factory(two_sink_config(primary.port, hot.port, steps, other_name="hot", plugin_dir=plugin_dir))
    pipe = proxy.client().pipeline(transaction=False)
    pipe.set("hot:1", "a").set("cold:1", "b").get("hot:1").get("cold:1")
    assert pipe.execute() == [True, True, b"a", b"b"]
    assert proxy.alive()
    assert "responses-only:" not in proxy.output(), proxy.output()


def test_tee_does_not_compare_replies_that_describe_the_server(redis_factory, sluice_factory):
    primary, shadow = redis_factory(), redis_factory()
    primary.client().set("drift", "one")
    shadow.client().set("drift", "two")
    shadow.client().client_id()  # the shadow's connection ids now run ahead of the primary's
    proxy = sluice_factory(two_sink_config(primary.port, shadow.port,
                                           "    - tee: { target: shadow, on_mismatch: fail }\n"))
    r = proxy.client(protocol=3)  # HELLO 3 answers with the connection id
    assert isinstance(r.client_id(), int) and len(r.time()) == 2 and "redis_version" in r.info()
    r.sadd("set", *range(50))
    assert int(r.srandmember("set")) in range(50)
    with pytest.raises(redis.ResponseError, match="tee: responses differ"):
        r.get("drift")  # data is still compared
    assert metric(proxy, "sluice_plugin_tee_mismatches_total") == 1


def test_tee_mismatch_sent_to_a_chain(redis_factory, sluice_factory):
    primary, shadow, audit = redis_factory(), redis_factory(), redis_factory()
    primary.client().set("drift", "one")
    shadow.client().set("drift", "two")
    proxy = sluice_factory(chains_config({"primary": primary, "shadow": shadow, "audit_sink": audit}, """\
  main:
    - tee: { target: shadow, on_mismatch: chain, mismatch_chain: audit }
    - sink: primary
  audit:
    - sink: audit_sink
"""))
    r = proxy.client()
    assert r.get("drift") == b"one"
    assert r.set("agree", "x")  # same reply from both: not sent to the audit chain
    deadline = time.time() + 5
    while time.time() < deadline and audit.client().info("commandstats").get("cmdstat_get") is None:
        time.sleep(0.05)
    stats = audit.client().info("commandstats")
    assert stats["cmdstat_get"]["calls"] == 1
    assert "cmdstat_set" not in stats


def test_tee_sees_its_own_requests_when_a_later_transform_changes_the_batch(redis_factory, sluice_factory):
    # redirect after tee takes the hot requests out of the batch it was given: tee's on_responses
    # must still see the batch as tee forwarded it, or it names (log) and replays (chain) the wrong
    # request for a mismatch.
    primary, shadow, hot, audit = redis_factory(), redis_factory(), redis_factory(), redis_factory()
    primary.client().set("drift", "one")
    shadow.client().set("drift", "two")

    def proxy_with(policy):
        sinks = {"primary": primary, "shadow": shadow, "hot": hot, "audit_sink": audit}
        return sluice_factory(chains_config(sinks, f"""\
  main:
    - tee: {{ target: shadow, {policy} }}
    - redirect: {{ target: hot, patterns: ["hot:*"] }}
    - sink: primary
  audit:
    - sink: audit_sink
"""))

    for proxy in (proxy_with("on_mismatch: chain, mismatch_chain: audit"), proxy_with("on_mismatch: log")):
        pipe = proxy.client().pipeline(transaction=False)
        pipe.set("hot:1", "a").set("hot:2", "b").get("drift").set("cold", "c")
        assert pipe.execute() == [True, True, b"one", True]
    deadline = time.time() + 5
    while time.time() < deadline and audit.client().info("commandstats").get("cmdstat_get") is None:
        time.sleep(0.05)
    stats = audit.client().info("commandstats")
    assert stats.get("cmdstat_get", {}).get("calls") == 1, stats  # the GET that differed, nothing else
    assert "cmdstat_set" not in stats, stats
    assert proxy.wait_for_output("tee: mismatch for GET (request 2 of 4)"), proxy.output()


def test_mixed_traffic_through_deny_count_tee_and_redirect(redis_factory, sluice_factory):
    # Several clients at once, each on keys of its own: pipelines of hot and cold keys, denied
    # commands, transactions, SELECT, blocking pops, pub/sub, and raw connections that leave with
    # replies owed. Every reply must be right, tee must never see the two sides differ, and in the
    # end the shadow must hold what primary and hot hold between them.
    primary, shadow, hot = redis_factory(), redis_factory(), redis_factory()
    proxy = sluice_factory(chains_config({"primary": primary, "shadow": shadow, "hot": hot}, """\
  main:
    - deny: { commands: [FLUSHALL, KEYS] }
    - count: {}
    - tee: { target: shadow, on_mismatch: log }
    - redirect: { target: hot, patterns: ["hot:*"] }
    - sink: primary
"""))
    failures = []

    def client(seed):
        rnd = random.Random(seed)
        try:
            for _ in range(25):
                r = redis.Redis(port=proxy.port, protocol=rnd.choice([2, 3]), socket_timeout=10)
                for _ in range(rnd.randint(1, 12)):
                    key = lambda: f"{rnd.choice(['hot', 'cold'])}:{seed}:{rnd.randint(0, 9)}"
                    op = rnd.random()
                    if op < 0.35:
                        pipe = r.pipeline(transaction=False)
                        expected = []
                        for _ in range(rnd.randint(1, 30)):
                            k, kind = key(), rnd.random()
                            if kind < 0.4:
                                pipe.set(k, f"v{seed}")
                                expected.append(True)
                            elif kind < 0.8:
                                pipe.incr(f"{k}:n")
                                expected.append(int)
                            else:
                                pipe.keys("*")
                                expected.append(redis.ResponseError)
                        for got, want in zip(pipe.execute(raise_on_error=False), expected):
                            assert got is want or isinstance(got, want) if isinstance(want, type) else got == want, (got, want)
                    elif op < 0.45:
                        pipe = r.pipeline(transaction=True)
                        pipe.set(f"cold:t{seed}", "1").get(f"cold:t{seed}")
                        assert pipe.execute() == [True, b"1"]
                    elif op < 0.5:
                        raw = socket.create_connection(("127.0.0.1", proxy.port))
                        raw.sendall(b"SET hot:raw 1\r\nGET cold:raw\r\n" * rnd.randint(1, 50))
                        raw.close()
                    elif op < 0.6:
                        r.execute_command("SELECT", 1)
                        assert r.set(f"db1:{seed}", "z") and r.get(f"db1:{seed}") == b"z"
                        r.execute_command("SELECT", 0)
                    elif op < 0.65:
                        assert r.blpop([f"cold:list{seed}"], timeout=0.05) is None
                    elif op < 0.7:
                        ps = r.pubsub()
                        ps.subscribe(f"ch{seed}")
                        assert ps.get_message(timeout=2)["type"] == "subscribe"
                        r.publish(f"ch{seed}", "hi")
                        assert ps.get_message(timeout=2)["data"] == b"hi"
                        ps.close()
                    else:
                        k = key()
                        assert r.set(k, "x") and r.get(k) == b"x"
                r.close()
        except Exception as error:  # reported below, with the seed
            failures.append(f"client {seed}: {error!r}")

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures
    assert proxy.alive()
    assert "mismatch" not in proxy.output(), proxy.output()[-2000:]
    time.sleep(0.3)  # the last tee sends
    s, p, h = shadow.client(), primary.client(), hot.client()
    for seed in range(6):
        for i in range(10):
            for name in (f"hot:{seed}:{i}", f"hot:{seed}:{i}:n"):
                assert s.get(name) == h.get(name) and p.get(name) is None, name
            for name in (f"cold:{seed}:{i}", f"cold:{seed}:{i}:n"):
                assert s.get(name) == p.get(name) and h.get(name) is None, name


def read_until_suffix(sock, suffix):
    data = b""
    while not data.endswith(suffix):
        part = sock.recv(4096)
        assert part, data
        data += part
    return data


GLOB_KEYS = ["hot:1", "hot:", "hat:9", "h]t", "a-", "a]", "b", "]", "-", "[", "key[", "keya", "keyb", "keyc",
             "x*y", "xzy", "x", "abc", "z", "^", "m", "", "[x", "\\a"]


@pytest.mark.parametrize("pattern", ["h?t:*", "[]abc]", "[^]]", "key[ab", "[a-]*", "x\\*y", "[z-a]", "[\\]]*",
                                     "*[^a-z]", "?",
                                     "\\[*", "a*", "\\", "*", "\\\\*"])
def test_redirect_globs_match_what_redis_keys_matches(redis_factory, sluice_factory, pattern):
    """redis-server's own KEYS is the oracle: the keys redirect sends to the hot server are exactly
    the keys KEYS PATTERN returns on a server holding them all."""
    quoted = pattern.replace("\\", "\\\\").replace('"', '\\"')
    primary, hot, proxy = redirect_proxy(redis_factory, sluice_factory, f'patterns: ["{quoted}"]')
    oracle = redis_factory()
    r, o = proxy.client(), oracle.client()
    for key in GLOB_KEYS:
        assert r.set(key, "v")
        o.set(key, "v")
    expected = sorted(o.keys(pattern))
    assert sorted(hot.client().keys("*")) == expected, pattern
    assert len(primary.client().keys("*")) == len(GLOB_KEYS) - len(expected)


def test_redirect_finds_keys_of_numkeys_and_streams_commands(redis_factory, sluice_factory):
    primary, hot, proxy = redirect_proxy(redis_factory, sluice_factory)
    r = proxy.client()
    assert r.eval("return redis.call('SET', KEYS[1], ARGV[1])", 1, "hot:lua", "x") == b"OK"
    r.xadd("hot:stream", {"f": "v"})
    assert r.xread({"hot:stream": 0})[0][0] == b"hot:stream"
    r.zadd("hot:z1", {"a": 1})
    assert r.zunionstore("hot:dest", ["hot:z1"]) == 1
    assert r.blpop(["hot:list", "hot:list2"], timeout=0.1) is None
    assert sorted(hot.client().keys("*")) == [b"hot:dest", b"hot:lua", b"hot:stream", b"hot:z1"]
    assert primary.client().keys("*") == []
    with pytest.raises(redis.ResponseError, match="mixes hot and regular keys"):
        r.eval("return 1", 2, "hot:a", "cold:b")
    # SORT's keys come from the host's table (redis_keys): the sorted key and STORE's destination,
    # not the BY and GET patterns.
    with pytest.raises(redis.ResponseError, match="mixes hot and regular keys"):
        r.sort("cold:list", store="hot:sorted")
    r.rpush("hot:list", 3, 1, 2)
    assert r.sort("hot:list", by="cold:*", get="cold:*", store="hot:sorted") == 3
    assert hot.client().lrange("hot:sorted", 0, -1) == [b"", b"", b""]
    assert primary.client().keys("*") == []


def test_redirect_refuses_hot_keys_inside_multi(redis_factory, sluice_factory):
    primary, hot, proxy = redirect_proxy(redis_factory, sluice_factory)
    r = proxy.client()
    pipe = r.pipeline(transaction=True)
    pipe.set("cold:1", "a").set("hot:1", "b")
    with pytest.raises(redis.ResponseError, match="hot keys inside MULTI are not supported"):
        pipe.execute()
    assert hot.client().keys("*") == []
    # As with a command Redis itself refuses to queue, EXEC aborts: nothing of it ran.
    assert primary.client().keys("*") == []
    raw = socket.create_connection(("127.0.0.1", proxy.port))
    raw.sendall(b"MULTI\r\nSET cold:2 x\r\nSET hot:2 y\r\nEXEC\r\nGET cold:2\r\n")
    expected = (b"+OK\r\n+QUEUED\r\n-ERR redirect: hot keys inside MULTI are not supported (the transaction runs "
                b"on the primary)\r\n-EXECABORT Transaction discarded because of previous errors.\r\n$-1\r\n")
    got = b""
    while len(got) < len(expected):
        part = raw.recv(4096)
        assert part, got
        got += part
    assert got == expected
    raw.sendall(b"MULTI\r\nSET cold:3 x\r\nEXEC\r\n")  # the next transaction is not doomed
    assert read_until_suffix(raw, b"*1\r\n+OK\r\n")
    raw.close()
    assert r.set("hot:2", "after exec")  # outside the transaction hot keys route again
    assert hot.client().get("hot:2") == b"after exec"


def test_redirect_carries_auth_to_the_hot_server(redis_factory, sluice_factory):
    primary, hot, proxy = redirect_proxy(redis_factory, sluice_factory,
                                         server_args=("--requirepass", "s3cret"))
    anonymous = proxy.client()
    with pytest.raises(redis.AuthenticationError):
        anonymous.set("hot:x", "no")
    r = proxy.client(password="s3cret")
    assert r.set("hot:1", "a") and r.set("cold:1", "b")
    assert r.mget("hot:1") == [b"a"]
    assert hot.client(password="s3cret").get("hot:1") == b"a"
    assert primary.client(password="s3cret").get("cold:1") == b"b"


def test_tee_follows_select_to_the_shadow(redis_factory, sluice_factory):
    primary, shadow = redis_factory(), redis_factory()
    proxy = sluice_factory(two_sink_config(primary.port, shadow.port, "    - tee: { target: shadow }\n"))
    r = proxy.client(db=3)
    assert r.set("in-db-3", "v")
    r.execute_command("SELECT", 4)
    assert r.set("in-db-4", "w")
    for server in (primary, shadow):
        assert server.client(db=3).get("in-db-3") == b"v"
        assert server.client(db=4).get("in-db-4") == b"w"
        assert server.client(db=0).dbsize() == 0


def test_tee_comparing_does_not_hold_blocking_commands(redis_factory, sluice_factory):
    primary, shadow = redis_factory(), redis_factory()
    proxy = sluice_factory(two_sink_config(primary.port, shadow.port, "    - tee: { target: shadow, on_mismatch: log }\n"))
    r = proxy.client()
    primary.client().rpush("jobs", "only-on-primary")
    start = time.time()
    assert r.blpop(["jobs"], timeout=0) == (b"jobs", b"only-on-primary")  # the shadow's copy blocks forever
    assert time.time() - start < 3
    assert r.set("after", "1") and shadow.client().get("after") == b"1"


def test_tee_dead_shadow_with_fail_policy(redis_factory, sluice_factory):
    primary = redis_factory()
    proxy = sluice_factory(two_sink_config(primary.port, free_port(),
                                           "    - tee: { target: shadow, on_mismatch: fail }\n"))
    with pytest.raises(redis.ResponseError, match="tee: shadow failed"):
        proxy.client().set("k", "v")
    # With on_mismatch: ignore the primary keeps serving.
    proxy2 = sluice_factory(two_sink_config(primary.port, free_port(), "    - tee: { target: shadow }\n"))
    assert proxy2.client().set("k", "v")
    assert primary.client().get("k") == b"v"


# ---- redirect ------------------------------------------------------------------------------------


def test_redirect_hot_keys_land_on_the_other_server_only(redis_factory, sluice_factory):
    primary, hot, proxy = redirect_proxy(redis_factory, sluice_factory,
                                         'keys: [leaderboard], patterns: ["hot:*", "session:[0-9]*"]')
    r = proxy.client()
    pipe = r.pipeline(transaction=False)
    pipe.set("hot:1", "a").set("cold:1", "b").zadd("leaderboard", {"x": 1}).set("session:42", "s")
    pipe.set("session:x", "not hot").get("hot:1").get("cold:1").mget("hot:1", "hot:2")
    assert pipe.execute() == [True, True, 1, True, True, b"a", b"b", [b"a", None]]
    p, h = primary.client(), hot.client()
    assert sorted(h.keys()) == [b"hot:1", b"leaderboard", b"session:42"]
    assert sorted(p.keys()) == [b"cold:1", b"session:x"]
    assert metric(proxy, "sluice_plugin_redirect_redirected_total") == 5


@pytest.mark.parametrize("protocol", [2, 3])
def test_redirect_carries_the_clients_protocol_and_database(redis_factory, sluice_factory, protocol):
    """HELLO and SELECT reach the hot server too: a RESP3 client gets RESP3 nulls from it, and a
    client in database 5 writes hot keys into database 5 there."""
    primary, hot, proxy = redirect_proxy(redis_factory, sluice_factory)
    r = proxy.client(protocol=protocol, db=5)
    pipe = r.pipeline(transaction=False)
    pipe.set("hot:1", "a").set("cold:1", "b").get("hot:missing").mget("hot:1", "hot:2")
    assert pipe.execute() == [True, True, None, [b"a", None]]
    assert hot.client(db=5).get("hot:1") == b"a" and hot.client(db=0).get("hot:1") is None
    assert primary.client(db=5).get("cold:1") == b"b"



def test_redirect_mixed_keys_are_refused(redis_factory, sluice_factory):
    primary, hot, proxy = redirect_proxy(redis_factory, sluice_factory)
    r = proxy.client()
    with pytest.raises(redis.ResponseError, match="mixes hot and regular keys"):
        r.mset({"hot:a": 1, "cold:a": 2})
    assert r.ping()


# ---- command-filter (plain C) ------------------------------------------------------------------

def test_c_plugin_denies_commands_and_passes_the_rest(redis_factory, sluice_factory):
    backend = redis_factory()
    backend.client().set("keep", "me")
    steps = "    - deny: { commands: [FLUSHALL, flushdb, KEYS] }\n    - count: {}\n"
    proxy = sluice_factory(two_sink_config(backend.port, backend.port, steps))
    out = subprocess.run(["redis-cli", "-p", str(proxy.port), "FLUSHALL"], capture_output=True, text=True, timeout=10)
    assert "command 'flushall' is denied by this proxy" in out.stdout
    r = proxy.client()
    pipe = r.pipeline(transaction=False)
    pipe.set("a", 1).keys("*").get("keep").flushdb().get("a")
    results = pipe.execute(raise_on_error=False)
    assert results[0] is True and results[2] == b"me" and results[4] == b"1"
    assert isinstance(results[1], redis.ResponseError) and "denied" in str(results[1])
    assert isinstance(results[3], redis.ResponseError)
    assert backend.client().get("keep") == b"me"
    assert metric(proxy, "sluice_plugin_command_filter_denied_total") == 3
    assert metric(proxy, "sluice_plugin_command_filter_counted_total") >= 3


# ---- debug-printer -----------------------------------------------------------------------------

def test_debug_printer_logs_requests_and_responses(redis_factory, sluice_factory):
    backend = redis_factory()
    steps = "    - debug-printer: { prefix: DBG, max_bytes: 64 }\n"
    proxy = sluice_factory(two_sink_config(backend.port, backend.port, steps))
    r = proxy.client()
    r.set("printed", "value\x01")
    assert r.get("printed") == b"value\x01"
    assert proxy.wait_for_output("DBG")
    out = proxy.output()
    assert "request: SET printed value\\x01" in out
    assert "response: +OK" in out
    with pytest.raises(redis.AuthenticationError):
        r.execute_command("AUTH", "admin", "hunter2")
    assert proxy.wait_for_output("request: AUTH (redacted) (redacted)")
    assert "hunter2" not in proxy.output()


# ---- failures: plugins that misbehave, plugins that are refused, bad configs ---------------------

@pytest.mark.parametrize("transform,needle", [
    ("fail-status", "fail-status: on_requests returned status 1"),
    ("fail-message", "fail-message: boom"),
    ("respond-wrong-count", "responded with 0 responses to 1 requests"),
    ("pass-after-remove", "call_pass with 0 of 1 requests"),
])
def test_plugin_errors_become_redis_errors(redis_factory, sluice_factory, transform, needle):
    backend = redis_factory()
    proxy = sluice_factory(two_sink_config(backend.port, backend.port, f"    - {transform}: {{}}\n",
                                           plugin_dir=FIXTURES))
    r = proxy.client()
    for _ in range(3):
        with pytest.raises(redis.ResponseError) as e:
            r.get("x")
        assert needle in str(e.value)
    assert proxy.alive()


def test_double_completion_and_lent_batch_misuse_are_refused(redis_factory, sluice_factory):
    backend = redis_factory()
    backend.client().set("x", "real")
    for transform in ("double-complete", "misuse-lent"):
        proxy = sluice_factory(two_sink_config(backend.port, backend.port, f"    - {transform}: {{}}\n",
                                               plugin_dir=FIXTURES))
        assert proxy.client().get("x") == b"real"
        assert proxy.alive()
        assert "second completion was accepted" not in proxy.output()
        assert metric(proxy, "sluice_transform_abi_misuse_total") >= 1


def test_out_of_range_arguments_are_refused_not_fatal(redis_factory, sluice_factory):
    backend = redis_factory()
    backend.client().set("x", "real")
    proxy = sluice_factory(two_sink_config(backend.port, backend.port, "    - bad-arguments: {}\n",
                                           plugin_dir=FIXTURES))
    assert proxy.client().get("x") == b"real"
    assert proxy.wait_for_output("bad-arguments: checked")
    assert "accepted" not in proxy.output(), proxy.output()
    assert proxy.alive()


def test_timers_hold_calls_and_are_cancelled_safely(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(two_sink_config(backend.port, backend.port, "    - timers: {}\n", plugin_dir=FIXTURES))
    for _ in range(3):
        r = proxy.client()
        pipe = r.pipeline(transaction=False)
        pipe.set("t", "1").get("t")
        assert pipe.execute() == [True, b"1"]
        r.close()  # instance_free cancels the pending long timer
    time.sleep(0.2)
    assert proxy.alive() and proxy.client().ping()
    assert "long timer fired" not in proxy.output()


def test_each_call_starts_without_the_data_of_an_earlier_call(redis_factory, sluice_factory):
    # The host reuses the object of a call its plugin completed inside the hook; call_data must
    # still be NULL for every new call.
    backend = redis_factory()
    proxy = sluice_factory(two_sink_config(backend.port, backend.port, "    - call-data: {}\n", plugin_dir=FIXTURES))
    r = proxy.client()
    for i in range(20):
        assert r.set(f"k{i}", i) and r.get(f"k{i}") == str(i).encode()
    assert proxy.alive()
    assert "stale call data" not in proxy.output()


def test_redirect_alternating_cold_and_hot_batches_on_one_connection(redis_factory, sluice_factory):
    # Cold batches pass (their calls are reused), hot ones are split and answered later (their
    # calls are kept): interleaved on one connection, every reply must still be its own.
    primary, hot, proxy = redirect_proxy(redis_factory, sluice_factory)
    r = proxy.client()
    for i in range(100):
        assert r.set(f"cold:{i}", f"c{i}") and r.set(f"hot:{i}", f"h{i}")
        pipe = r.pipeline(transaction=False)
        pipe.get(f"cold:{i}").get(f"hot:{i}").get(f"cold:{i}")
        assert pipe.execute() == [f"c{i}".encode(), f"h{i}".encode(), f"c{i}".encode()]
        assert r.get(f"hot:{i}") == f"h{i}".encode() and r.get(f"cold:{i}") == f"c{i}".encode()
    assert len(hot.client().keys("hot:*")) == 100 and hot.client().keys("cold:*") == []
    assert len(primary.client().keys("cold:*")) == 100 and primary.client().keys("hot:*") == []


def test_plugin_may_use_its_env_after_an_answer_that_closes_the_client(redis_factory, sluice_factory):
    """PING and QUIT in one write: PING's answer, given in on_responses, also releases QUIT's +OK and
    the client closes. The plugin then still uses its env (legal until instance_free), so the host
    must free the instance on a later turn, not under the hook."""
    backend = redis_factory()
    proxy = sluice_factory(two_sink_config(backend.port, backend.port, "    - env-after-answer: {}\n",
                                           plugin_dir=FIXTURES))
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        sock.sendall(b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nQUIT\r\n")
        assert read_until_suffix(sock, b"+PONG\r\n+OK\r\n") == b"+PONG\r\n+OK\r\n"
        assert sock.recv(1024) == b""
        sock.close()
    assert proxy.alive() and proxy.client().ping()


def test_requests_held_by_the_budget_run_when_a_plugin_answers_them_all_at_once(redis_factory, sluice_factory):
    """50 000 denied requests in one write: deny answers each batch inside on_requests, so nothing
    is ever in flight and reading never pauses; what the 4096-request budget held back must still
    run without the client sending anything more."""
    backend = redis_factory()
    proxy = sluice_factory(two_sink_config(backend.port, backend.port, "    - deny: { commands: [KEYS] }\n"))
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    count = 50_000
    sock.sendall(b"*1\r\n$4\r\nKEYS\r\n" * count)
    reply = b"-ERR command-filter: command 'keys' is denied by this proxy\r\n"
    data = b""
    while len(data) < len(reply) * count:
        part = sock.recv(1 << 20)
        assert part, f"{data.count(reply)} of {count} replies before the close"
        data += part
    assert data == reply * count
    sock.close()


def run_sluice(*args):
    return subprocess.run([SLUICE, *args], capture_output=True, text=True, timeout=60)


def header_abi_version():
    """The ABI version sluice_plugin.h declares ("1.3"), which the host and the plugins built with it speak."""
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "Sources/PluginABI/include/sluice_plugin.h")) as f:
        text = f.read()
    major = re.search(r"#define SLUICE_ABI_VERSION_MAJOR (\d+)", text).group(1)
    minor = re.search(r"#define SLUICE_ABI_VERSION_MINOR (\d+)", text).group(1)
    return f"{major}.{minor}"


def test_plugins_command_lists_loaded_and_refused():
    abi = header_abi_version()
    out = run_sluice("plugins", "--dir", FIXTURES).stdout
    assert f"misbehaving 1.0.0  ABI {abi}" in out
    assert "REFUSED" in out and f"wrong ABI major: plugin built for ABI 99.0, host speaks ABI {abi}" in out
    assert "bad magic 0xDEADBEEF" in out and "no entry symbol" in out and "not a shared object" in out
    out = run_sluice("plugins", "--dir", PLUGINS).stdout
    for name in ("tee", "redirect", "debug-printer", "command-filter"):
        assert f"\n{name} 1.0.0  ABI {abi}" in "\n" + out


def test_required_refused_plugin_stops_startup_with_its_reason(workdir):
    path = os.path.join(workdir, "bad.yaml")
    with open(path, "w") as f:
        f.write(f"""plugins:
  directory: {FIXTURES}
  require: [wrong-major]
sinks:
  primary: {{ redis: {{ address: 127.0.0.1:1 }} }}
chains:
  main:
    - sink: primary
sources:
  - redis: {{ listen: 127.0.0.1:{free_port()}, chain: main }}
""")
    out = run_sluice("check", "--config", path)
    assert out.returncode == 2
    assert f"{path}:3:13: required plugin 'wrong-major' is not available" in out.stderr
    assert "wrong ABI major" in out.stderr
    run = run_sluice("run", "--config", path)
    assert run.returncode == 2 and "wrong ABI major" in run.stderr


def test_plugin_config_errors_point_into_the_file(workdir):
    path = os.path.join(workdir, "bad.yaml")
    with open(path, "w") as f:
        f.write(f"""plugins:
  directory: {PLUGINS}
sinks:
  primary: {{ redis: {{ address: 127.0.0.1:1 }} }}
chains:
  main:
    - tee: {{ target: nowhere, on_mismatch: log }}
    - redirect: {{ target: primary, patern: ["x"] }}
    - deny: {{ commands: [] }}
    - sink: primary
sources:
  - redis: {{ listen: 127.0.0.1:{free_port()}, chain: main }}
""")
    out = run_sluice("check", "--config", path)
    assert out.returncode == 2
    assert f"{path}:7:22: main[0] tee: no chain or sink is named 'nowhere'" in out.stderr
    assert re.search(re.escape(path) + r":8:\d+: main\[1\] redirect: unknown key 'patern'", out.stderr), out.stderr
    assert f"{path}:9:25: main[2] deny: commands: expected a non-empty sequence" in out.stderr


def test_check_accepts_a_good_config(workdir):
    path = os.path.join(workdir, "good.yaml")
    with open(path, "w") as f:
        f.write(f"""plugins:
  directory: {PLUGINS}
  require: [tee, redirect, command-filter, debug-printer]
sinks:
  primary: {{ redis: {{ address: 127.0.0.1:1 }} }}
  shadow: {{ redis: {{ address: 127.0.0.1:2 }} }}
chains:
  main:
    - deny: {{ commands: [FLUSHALL] }}
    - tee: {{ target: shadow }}
    - sink: primary
sources:
  - redis: {{ listen: 127.0.0.1:{free_port()}, chain: main }}
""")
    out = run_sluice("check", "--config", path)
    assert out.returncode == 0, out.stderr
    assert "chain main: deny -> tee -> sink primary" in out.stdout


def test_clients_leaving_mid_call_through_tee_and_redirect(redis_factory, sluice_factory):
    """Clients that close while the shadow (tee) or hot server (redirect) is still busy, some with a
    denied command in the batch (the C plugin then holds per-call state): the calls are abandoned,
    late completions are dropped, plugins free their per-call state, and the host keeps serving."""
    primary, other = redis_factory(), redis_factory("--enable-debug-command", "yes")
    steps = ('    - deny: { commands: [FLUSHALL] }\n'
             '    - tee: { target: other, on_mismatch: log }\n'
             '    - redirect: { target: other, patterns: ["hot:*"] }\n')
    proxy = sluice_factory(two_sink_config(primary.port, other.port, steps, other_name="other"))
    slow = threading.Thread(target=lambda: other.client().execute_command("DEBUG", "SLEEP", "0.6"))
    slow.start()
    time.sleep(0.1)
    for payload in (b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n", b"*2\r\n$3\r\nGET\r\n$5\r\nhot:1\r\n",
                    b"*1\r\n$8\r\nFLUSHALL\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"):
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
                s.sendall(payload)
                time.sleep(0.02)
    slow.join()
    time.sleep(0.3)
    assert proxy.alive()
    assert "DEBUG command not allowed" not in proxy.output()
    r = proxy.client()
    assert r.set("after", "1") and r.get("hot:x") is None


FUZZ_SEEDS = [
    b"*1\r\n$4\r\nPING\r\n", b"*3\r\n$3\r\nSET\r\n$5\r\nhot:1\r\n$1\r\nv\r\n", b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
    b"*7\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$2\r\npw\r\n$7\r\nSETNAME\r\n$1\r\nx\r\n",
    b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n", b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n", b"*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nc\r\n",
    b"*1\r\n$11\r\nUNSUBSCRIBE\r\n", b"*1\r\n$5\r\nMULTI\r\n", b"*1\r\n$4\r\nEXEC\r\n", b"*1\r\n$5\r\nRESET\r\n",
    b"*4\r\n$4\r\nMSET\r\n$5\r\nhot:2\r\n$1\r\nk\r\n$1\r\nv\r\n", b"*3\r\n$5\r\nBLPOP\r\n$1\r\nl\r\n$3\r\n0.1\r\n",
    b"*2\r\n$6\r\nSELECT\r\n$1\r\n1\r\n", b"*1\r\n$8\r\nFLUSHALL\r\n", b"*0\r\n", b"SET \"a b\" 'c'\r\n", b"PING\n",
    b"*3\r\n$6\r\nCLIENT\r\n$8\r\nTRACKING\r\n$2\r\nON\r\n",
]


def fuzz_mutate(rnd, data):
    data = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        pos = rnd.randrange(len(data) + 1)
        op = rnd.randrange(6)
        if op == 0 and data:
            data[min(pos, len(data) - 1)] = rnd.randrange(256)
        elif op == 1:
            data[pos:pos] = bytes([rnd.choice(b"*$:+-_,#%~>|\r\n0123456789")])
        elif op == 2:
            del data[pos:pos + rnd.randint(1, 6)]
        elif op == 3:
            data[pos:pos] = rnd.choice([b"9223372036854775807", b"-1", b"99999999999999999999", b"0", b"-0"])
        elif op == 4:
            data[pos:pos] = data[pos:pos + rnd.randint(1, 20)]
        else:
            del data[pos:]
    return bytes(data)


def test_mutated_requests_never_bring_the_host_down(redis_factory, sluice_factory):
    """Seeded mutations of real requests, pipelined and split at random, from hundreds of clients at
    once, through deny + count + tee + redirect and a source with client auth: every client gets
    answers or a close, never a crash, and well-formed clients are served throughout."""
    primary, shadow = redis_factory(), redis_factory()
    steps = ("    - deny: { commands: [FLUSHALL, DEBUG, SHUTDOWN] }\n    - count: {}\n"
             "    - tee: { target: shadow, on_mismatch: log }\n"
             '    - redirect: { target: shadow, patterns: ["hot:*"] }\n')
    auth_port = free_port()
    config = two_sink_config(primary.port, shadow.port, steps).replace(
        "chain: main }", "chain: main, max_frame_bytes: 65536 }\n"
        f"  - redis: {{ listen: 127.0.0.1:{auth_port}, chain: main, auth: {{ password: pw }} }}")
    proxy = sluice_factory(config)
    wait_for_port(auth_port, process=proxy.proc)  # the factory waits for the first listener only
    rnd = random.Random(20261125)
    for round_ in range(8):
        sockets = []
        for _ in range(40):
            s = socket.create_connection(("127.0.0.1", rnd.choice([proxy.port, auth_port])), timeout=5)
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
        authed = redis.Redis(port=auth_port, password="pw", protocol=3, socket_timeout=10)
        assert int(authed.get("fuzz-ok")) == round_
    assert "Fatal error" not in proxy.output()


FUZZ_REPLIES = [b"+OK\r\n", b"-ERR x\r\n", b":12\r\n", b"$3\r\nabc\r\n", b"$-1\r\n", b"*2\r\n$1\r\na\r\n:1\r\n",
                b"%1\r\n+k\r\n*1\r\n_\r\n", b",1.5\r\n", b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n",
                b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n", b"|1\r\n+a\r\n+b\r\n:2\r\n", b"~1\r\n:1\r\n"]


def resp_frame_end(buf, i=0):
    """Index just past the one RESP2/RESP3 value starting at buf[i], or None while it is incomplete.
    Written here from the RESP3 spec, independently of Sluice's scanner."""
    j = buf.find(b"\r\n", i)
    if j < 0:
        return None
    kind, line = buf[i:i + 1], buf[i + 1:j]
    if kind in (b"+", b"-", b":", b"_", b",", b"#", b"("):
        return j + 2
    if kind in (b"$", b"!", b"="):
        n = int(line)
        end = j + 2 if n < 0 else j + 2 + n + 2
        return end if len(buf) >= end else None
    if kind in (b"*", b"%", b"~", b">", b"|"):
        n = int(line)
        p = j + 2
        for _ in range(max(n * 2 if kind in (b"%", b"|") else n, 0)):
            p = resp_frame_end(buf, p)
            if p is None:
                return None
        return resp_frame_end(buf, p) if kind == b"|" else p  # an attribute precedes its value
    raise ValueError(f"not RESP: {buf[i:i + 20]!r}")


def test_mutated_replies_from_a_backend_never_bring_the_host_down(sluice_factory):
    """A backend (written here, not redis-server) that answers every read with mutations of
    RESP2/RESP3 replies (seeded; the order connections draw them in varies), too few, too many or
    malformed. Each client, a raw socket (a client library may itself hang on a strange but
    well-formed reply), must get a complete RESP value or a close for every request within 5 s
    (the reply timeout is 0.4 s), and the host stays up."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    rnd = random.Random(112526)
    stop = threading.Event()

    def serve(conn):
        conn.settimeout(0.2)
        with conn:
            while not stop.is_set():
                try:
                    if not conn.recv(65536):
                        return
                    conn.sendall(b"".join(fuzz_mutate(rnd, r) if rnd.random() < 0.5 else r
                                          for r in rnd.choices(FUZZ_REPLIES, k=rnd.randint(0, 3))))
                except socket.timeout:
                    continue
                except OSError:
                    return

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return  # closed at the end of the test
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    config = f"""
sinks:
  primary: {{ redis: {{ address: 127.0.0.1:{listener.getsockname()[1]}, reply_timeout_ms: 400, max_reply_bytes: 65536 }} }}
chains:
  main:
    - sink: primary
sources:
  - redis: {{ listen: 127.0.0.1:{{PORT}}, chain: main }}
"""
    proxy = sluice_factory(config)

    def answered(sock, request):
        """Sends a request; True once a whole RESP value came back, False if Sluice closed."""
        sock.sendall(request)
        data, deadline = b"", time.time() + 5
        while True:
            if data and resp_frame_end(data) is not None:
                return True
            sock.settimeout(max(deadline - time.time(), 0.01))
            try:
                part = sock.recv(65536)
            except socket.timeout:
                raise AssertionError(f"no complete answer to {request!r} within 5 s: {data[:200]!r}")
            except ConnectionError:
                return False
            if not part:
                return False
            data += part

    try:
        for i in range(150):
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
                requests = [b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n"] if rnd.random() < 0.5 else []
                # (No SUBSCRIBE: a subscriber waits for its confirmation as long as the backend takes.)
                requests.append(rnd.choice([b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", b"*1\r\n$4\r\nPING\r\n",
                                            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n", b"*1\r\n$5\r\nMULTI\r\n",
                                            b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n"]))
                for request in requests:
                    if not answered(sock, request):
                        break
            assert proxy.alive(), proxy.output()[-2000:]
    finally:
        stop.set()
        listener.close()
    output = proxy.output()
    assert "malformed reply" in output  # the run did feed the host broken replies
    assert "Fatal error" not in output
