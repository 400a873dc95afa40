"""The Redis path with an empty chain: what a client sees through Sluice is what Redis says."""
import signal
import os
import socket
import subprocess
import threading
import time
import urllib.request

import pytest
import redis

from conftest import ROOT, plain_config, free_port


def raw_exchange(port, payload, expect_bytes, chunk=None, timeout=5):
    """Sends payload (optionally in chunks of `chunk` bytes), reads until expect_bytes arrived."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        if chunk:
            for i in range(0, len(payload), chunk):
                s.sendall(payload[i:i + chunk])
        else:
            s.sendall(payload)
        data = b""
        while len(data) < expect_bytes:
            part = s.recv(65536)
            if not part:
                break
            data += part
        return data


def read_until_closed(sock):
    data = b""
    while True:
        part = sock.recv(65536)
        if not part:
            return data
        data += part


def read_until(sock, needle):
    """Reads until `needle` has arrived; fails if the connection closes first."""
    data = b""
    while needle not in data:
        part = sock.recv(65536)
        assert part, data
        data += part
    return data


def metric_value(proxy, name):
    """The value of the first sample of metric `name` on the proxy's /metrics endpoint."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{proxy.metrics_port}/metrics", timeout=5).read().decode()
    return float([l for l in body.splitlines() if l.startswith(name)][0].split()[-1])


def test_redis_cli_set_get_through_sluice(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    out = subprocess.run(["redis-cli", "-p", str(proxy.port), "SET", "greeting", "hello world"],
                         capture_output=True, text=True, timeout=10)
    assert out.stdout.strip() == "OK"
    out = subprocess.run(["redis-cli", "-p", str(proxy.port), "GET", "greeting"],
                         capture_output=True, text=True, timeout=10)
    assert out.stdout.strip() == "hello world"
    assert backend.client().get("greeting") == b"hello world"


def test_pipeline_order_and_binary_safety(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    r = proxy.client()
    values = [bytes([i % 256]) * (i % 97) + b"\r\n\x00" for i in range(2000)]
    pipe = r.pipeline(transaction=False)
    for i, v in enumerate(values):
        pipe.set(b"bin:\x00\r\n" + str(i).encode(), v)
    for i in range(len(values)):
        pipe.get(b"bin:\x00\r\n" + str(i).encode())
    results = pipe.execute()
    assert results[:2000] == [True] * 2000
    assert results[2000:] == values


def test_every_split_point_of_a_request(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    request = b"*3\r\n$3\r\nSET\r\n$5\r\nsplit\r\n$8\r\nv\r\na\x00lue\r\n*2\r\n$3\r\nGET\r\n$5\r\nsplit\r\n"
    expected = b"+OK\r\n$8\r\nv\r\na\x00lue\r\n"
    for split in range(1, len(request)):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
            s.sendall(request[:split])
            time.sleep(0.002)
            s.sendall(request[split:])
            data = b""
            while len(data) < len(expected):
                data += s.recv(4096)
        assert data == expected, f"split at {split}"


def test_byte_by_byte_pipeline(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    request = b"".join(b"*2\r\n$4\r\nECHO\r\n$3\r\n%03d\r\n" % i for i in range(20))
    expected = b"".join(b"$3\r\n%03d\r\n" % i for i in range(20))
    assert raw_exchange(proxy.port, request, len(expected), chunk=1) == expected


def test_inline_commands_like_telnet(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    payload = b'SET "inline key" \'it\\\'s here\'\r\nGET "inline key"\r\nPING\r\n'
    expected = b"+OK\r\n$9\r\nit's here\r\n+PONG\r\n"
    assert raw_exchange(proxy.port, payload, len(expected)) == expected


def test_values_of_tens_of_megabytes(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    r = proxy.client()
    big = bytes(range(256)) * (40 * 1024 * 1024 // 256)
    assert r.set("big", big)
    assert r.get("big") == big
    assert backend.client().strlen("big") == len(big)


def test_resp3_hello_and_types(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    r = proxy.client(protocol=3)
    r.hset("h", mapping={"a": "1", "b": "2"})
    assert r.hgetall("h") == {b"a": b"1", b"b": b"2"}
    assert r.execute_command("HELLO", "3")[b"proto"] == 3
    r.sadd("s", "x", "y")
    assert r.smembers("s") == {b"x", b"y"}


def test_select_is_per_client_even_on_shared_connections(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    plain = proxy.client()
    selected = proxy.client(db=3)
    selected.set("where", "db3")
    plain.set("where", "db0")
    assert selected.get("where") == b"db3"
    assert plain.get("where") == b"db0"
    assert backend.client(db=3).get("where") == b"db3"


def test_multi_exec_and_watch(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    r = proxy.client()
    pipe = r.pipeline(transaction=True)
    pipe.set("tx", "1").incr("tx").get("tx")
    assert pipe.execute() == [True, 2, b"2"]
    # WATCH aborts when another client changes the key.
    r2 = proxy.client()
    with r.pipeline() as p:
        p.watch("tx")
        r2.set("tx", "changed")
        p.multi()
        p.set("tx", "mine")
        try:
            p.execute()
            aborted = False
        except redis.WatchError:
            aborted = True
    assert aborted
    assert r.get("tx") == b"changed"


def test_blocking_command_does_not_block_other_clients(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    result = {}

    def blocker():
        result["value"] = proxy.client().blpop("queue", timeout=10)

    t = threading.Thread(target=blocker)
    t.start()
    time.sleep(0.3)
    other = proxy.client()
    for i in range(50):
        assert other.ping()
    other.rpush("queue", "item")
    t.join(10)
    assert result["value"] == (b"queue", b"item")


def test_pubsub_resp2_and_resp3(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    for protocol in (2, 3):
        sub = proxy.client(protocol=protocol).pubsub()
        sub.subscribe("news")
        msg = sub.get_message(timeout=5)
        assert msg["type"] == "subscribe"
        time.sleep(0.1)
        assert proxy.client().publish("news", f"hello {protocol}") == 1
        msg = sub.get_message(timeout=5)
        assert msg["type"] == "message" and msg["data"] == f"hello {protocol}".encode()
        sub.psubscribe("n*")
        assert sub.get_message(timeout=5)["type"] == "psubscribe"
        sub.ping()
        assert sub.get_message(timeout=5)["type"] == "pong"
        sub.unsubscribe()
        sub.punsubscribe()
        kinds = {sub.get_message(timeout=5)["type"], sub.get_message(timeout=5)["type"]}
        assert kinds == {"unsubscribe", "punsubscribe"}
        sub.close()


def test_auth_state_per_client(redis_factory, sluice_factory):
    backend = redis_factory("--requirepass", "s3cret")
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    try:
        proxy.client().get("x")
        assert False, "unauthenticated client was served"
    except redis.AuthenticationError:
        pass
    except redis.ResponseError as e:
        assert "NOAUTH" in str(e)
    authed = proxy.client(password="s3cret")
    assert authed.set("x", "1")
    assert authed.get("x") == b"1"


def test_quit_closes_after_ok(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nQUIT\r\n*1\r\n$4\r\nPING\r\n")
        data = read_until_closed(s)
    assert data == b"+PONG\r\n+OK\r\n"
    # Inline QUIT, with an argument too, is answered here like the RESP form: forwarded, it would
    # close the backend connection that other clients share.
    bystander = proxy.client()
    bystander.set("q", "still here")
    for inline in (b"quit\r\nPING\r\n", b"QUIT now\r\nPING\r\n"):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
            s.sendall(inline)
            assert read_until_closed(s) == b"+OK\r\n", inline
        assert bystander.get("q") == b"still here"


def test_malformed_and_oversized_frames_get_errors_and_host_survives(redis_factory, sluice_factory):
    backend = redis_factory()
    config = plain_config(backend.port, plugins=False).replace(
        "chain: main }", "chain: main, max_frame_bytes: 4096 }")
    proxy = sluice_factory(config)
    for garbage, needle in [
        (b"*1\r\n$4\r\nPING\r\n*2\r\n:5\r\n", b"Protocol error"),
        (b"*x\r\n", b"invalid multibulk length"),
        # Redis's words (clients match on them); the configured limit is named in the log.
        (b"*2\r\n$3\r\nGET\r\n$100000\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b'GET "unbalanced\r\n', b"unbalanced quotes"),
    ]:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
            s.sendall(garbage)
            data = read_until_closed(s)
        assert needle in data, (garbage, data)
    assert proxy.client().ping()
    assert proxy.alive()
    assert proxy.wait_for_output("request larger than max_frame_bytes (4096)")


def test_dead_backend_gives_clear_error_then_recovers(redis_factory, sluice_factory, workdir):
    port = free_port()
    proxy = sluice_factory(plain_config(port, plugins=False))
    r = proxy.client()
    try:
        r.get("k")
        assert False, "expected an error from a dead backend"
    except redis.ResponseError as e:
        assert "backend 'primary'" in str(e) and "unavailable" in str(e)
    from conftest import RedisServer
    server = RedisServer(workdir, port=port)
    try:
        # Connects are retried with a backoff (100 ms after one failure): recovery follows shortly.
        deadline = time.time() + 5
        while True:
            try:
                assert r.set("k", "v")
                break
            except redis.ResponseError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        assert r.get("k") == b"v"
    finally:
        server.stop()


def test_clients_mixing_small_and_large_requests_on_the_shared_connection(redis_factory, sluice_factory):
    """Stateless clients share one backend connection: the small requests of an event-loop tick are
    coalesced into one write, larger ones (over 4 KiB) go out as their own slices in between. Eight
    clients send at once (their requests often share a tick), and one client mixes sizes within a
    batch that is added message by message; everyone must get exactly their own replies, in order."""
    backend = redis_factory()
    backend.client().set("small", "s")
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    socks = [socket.create_connection(("127.0.0.1", proxy.port)) for _ in range(8)]
    expected = {n: b"$1\r\ns\r\n" if n % 2 == 0 else b"+OK\r\n" for n in range(len(socks))}

    def big_set(key, size):
        return b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, size, b"v" * size)

    def read_exactly(sock, length):
        reply = b""
        while len(reply) < length:
            part = sock.recv(65536)
            assert part, reply
            reply += part
        return reply

    for round_ in range(150):
        payloads = []
        for n in range(len(socks)):
            if n % 2 == 0:
                payloads.append(b"*2\r\n$3\r\nGET\r\n$5\r\nsmall\r\n")
            else:
                size = (4096, 4097, 70000)[(n + round_) % 3]
                key = f"big:{n}".encode()
                payloads.append(big_set(key, size))
        for sock, payload in zip(socks, payloads):
            sock.sendall(payload)
        for n, sock in enumerate(socks):
            assert read_exactly(sock, len(expected[n])) == expected[n], (round_, n)
    # One client whose batch is not one contiguous slice (inline commands are re-encoded), so its
    # messages are added one by one: small, large, small must still go out in that order.
    sock = socks[0]
    for size in (4096, 4097, 70000):
        sock.sendall(b"GET small\r\n" + big_set(b"big:inline", size) + b"STRLEN big:inline\r\n")
        want = b"$1\r\ns\r\n+OK\r\n:%d\r\n" % size
        assert read_exactly(sock, len(want)) == want
    for sock in socks:
        sock.close()
    assert backend.client().strlen("big:1") in (4096, 4097, 70000)


def test_redis_benchmark_short_run(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    for pipeline in ("1", "16"):
        out = subprocess.run(["redis-benchmark", "-p", str(proxy.port), "-n", "20000", "-c", "20", "-P", pipeline,
                              "-t", "set,get,incr,lpush,lpop,mset", "-q"],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        lines = [l for l in out.stdout.replace("\r", "\n").splitlines() if "requests per second" in l]
        assert len(lines) == 6, out.stdout
    assert backend.client().dbsize() > 0


def test_bench_script_measures_every_target():
    # bench/run.sh is not a test, but it must keep working: a tiny run of it, every target and
    # both pipeline depths must report throughput, the ratios and the CPU per request.
    env = dict(os.environ, N="2000", C="10", ROUNDS="1")
    out = subprocess.run(["bash", "bench/run.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = {}
    for line in out.stdout.splitlines():
        fields = line.split()
        if len(fields) == 6 and fields[0] in ("1", "16"):
            rows[(fields[0], fields[1])] = fields[2:]
    targets = ("direct", "haproxy", "twemproxy", "sluice-empty", "sluice-3-transforms")
    for p in ("1", "16"):
        for target in targets:
            set_rate, get_rate, vs_twem, vs_direct = rows[(p, target)]
            assert float(set_rate) > 0 and float(get_rate) > 0, out.stdout
            assert vs_twem.endswith("x") and float(vs_twem[:-1]) > 0, out.stdout
    cpu_rows = [l.split() for l in out.stdout.splitlines() if l.split()[:2] == ["1", "sluice-3-transforms"]]
    assert len(cpu_rows) == 2 and len(cpu_rows[1]) == 5, out.stdout  # the throughput row and the CPU row
    assert "log lines with 'error': 0" in out.stdout, out.stdout


def test_metrics_endpoint_counts_requests(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    r = proxy.client()
    for _ in range(10):
        r.ping()
    assert metric_value(proxy, "sluice_requests_total") >= 10


def test_max_clients_turns_extra_clients_away_like_redis(redis_factory, sluice_factory):
    backend = redis_factory()
    config = plain_config(backend.port, plugins=False).replace("chain: main }", "chain: main, max_clients: 2 }")
    proxy = sluice_factory(config)

    def admitted():
        # The probe that waited for the port may still count until Sluice has seen it close.
        deadline = time.time() + 5
        while True:
            sock = socket.create_connection(("127.0.0.1", proxy.port))
            sock.sendall(b"PING\r\n")
            if read_until(sock, b"\r\n") == b"+PONG\r\n":
                return sock
            sock.close()
            assert time.time() < deadline, "a client slot never freed"
            time.sleep(0.05)

    first, second = admitted(), admitted()
    extra = socket.create_connection(("127.0.0.1", proxy.port))
    extra.settimeout(5)
    refused = b""
    while True:
        part = extra.recv(1024)
        if not part:
            break
        refused += part
    assert refused == b"-ERR max number of clients reached\r\n"
    with pytest.raises(redis.exceptions.ConnectionError, match="max number of clients reached"):
        proxy.client().ping()
    first.close()
    deadline = time.time() + 5
    while True:  # the slot frees once Sluice has seen the close
        try:
            assert proxy.client().ping()
            break
        except redis.exceptions.ConnectionError:
            assert time.time() < deadline
            time.sleep(0.05)
    second.sendall(b"PING\r\n")
    assert read_until(second, b"\r\n") == b"+PONG\r\n"
    assert metric_value(proxy, "sluice_refused_connections_total") >= 2


def test_idle_timeout_closes_idle_clients_but_not_blocked_or_subscribed_ones(redis_factory, sluice_factory):
    backend = redis_factory()
    config = plain_config(backend.port, plugins=False).replace("chain: main }", "chain: main, idle_timeout_ms: 300 }")
    proxy = sluice_factory(config)
    idle, blocked, subscriber, busy = (socket.create_connection(("127.0.0.1", proxy.port)) for _ in range(4))
    for sock in (idle, blocked, subscriber, busy):
        sock.settimeout(5)
    idle.sendall(b"PING\r\n")
    assert read_until(idle, b"\r\n") == b"+PONG\r\n"
    blocked.sendall(b"BLPOP idle:list 1.5\r\n")
    subscriber.sendall(b"SUBSCRIBE idle:channel\r\n")
    assert b"idle:channel" in read_until(subscriber, b":1\r\n")
    start = time.time()
    while time.time() - start < 1.2:
        busy.sendall(b"PING\r\n")
        assert read_until(busy, b"\r\n") == b"+PONG\r\n"
        time.sleep(0.1)
    assert idle.recv(1024) == b""  # closed for idleness
    assert read_until(blocked, b"\r\n") == b"*-1\r\n"  # kept while blocked: BLPOP timed out at 1.5 s
    assert backend.client().publish("idle:channel", "still here") == 1
    assert b"still here" in read_until(subscriber, b"still here")
    assert blocked.recv(1024) == b""  # idle once its reply came back
    for sock in (idle, blocked, subscriber, busy):
        sock.close()


def test_quit_after_a_request_in_flight_on_a_dedicated_connection(redis_factory, sluice_factory):
    """The reply to GET arrives in a backend read and completes QUIT's slot too, so the client
    closes (and its dedicated backend connection is freed) while that read is still being parsed."""
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        sock.sendall(b"SELECT 0\r\n")
        assert read_until(sock, b"\r\n") == b"+OK\r\n"
        sock.sendall(b"GET quit:key\r\nGET quit:key\r\nQUIT\r\n")
        assert read_until(sock, b"+OK\r\n") == b"$-1\r\n$-1\r\n+OK\r\n"
        assert sock.recv(1024) == b""
        sock.close()
    assert proxy.alive() and proxy.client().ping()


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def test_commands_whose_replies_cannot_be_matched_are_refused_not_forwarded(redis_factory, sluice_factory):
    """REPLCONF ACK gets no reply from Redis, CLIENT REPLY OFF/SKIP inside MULTI would act in the
    middle of EXEC's reply, a SUBSCRIBE inside MULTI answers in EXEC: forwarded, each would shift
    later replies (on a shared connection into another client's hands). Sluice answers them itself.
    (MONITOR and CLIENT REPLY outside MULTI are supported: see test_sink_fidelity.py.)"""
    backend = redis_factory()
    backend.client().set("secret", "alice-token")
    backend.client().set("pub", "public")
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    attacker, victim = (socket.create_connection(("127.0.0.1", proxy.port), timeout=5) for _ in range(2))
    attacker.sendall(resp("REPLCONF", "ACK", "0") + resp("GET", "pub"))
    victim.sendall(resp("GET", "secret"))
    assert read_until(victim, b"alice-token\r\n") == b"$11\r\nalice-token\r\n"
    assert read_until(attacker, b"public\r\n") == (
        b"-ERR sluice: REPLCONF (replication) is not supported through the proxy\r\n$6\r\npublic\r\n")
    cases = [
        (resp("MULTI") + resp("client", "reply", "skip") + resp("EXEC"),
         b"+OK\r\n-ERR sluice: CLIENT REPLY OFF and SKIP inside MULTI are not supported through the proxy\r\n*0\r\n"),
        (resp("PSYNC", "?", "-1"), b"-ERR sluice: PSYNC (replication) is not supported through the proxy\r\n"),
        (resp("SUBSCRIBE"), b"-ERR wrong number of arguments for 'subscribe' command\r\n"),
        (resp("MULTI") + resp("SUBSCRIBE", "c") + resp("EXEC"),
         b"+OK\r\n-ERR sluice: SUBSCRIBE inside MULTI is not supported through the proxy\r\n*0\r\n"),
    ]
    for request, expected in cases:
        attacker.sendall(request + resp("PING", "after"))
        assert read_until(attacker, b"after\r\n") == expected + b"$5\r\nafter\r\n", request
    # Inline (telnet-style) requests are checked the same way.
    attacker.sendall(b"REPLCONF ACK 0\r\nPING inline\r\n")
    assert read_until(attacker, b"inline\r\n").startswith(b"-ERR sluice: REPLCONF")
    assert proxy.client().get("secret") == b"alice-token"


def test_reset_and_resp3_end_pubsub_matching_where_redis_does(redis_factory, sluice_factory):
    backend = redis_factory()
    backend.client().rpush("list", "message", "x", "y")
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    # RESP2: RESET leaves subscribed mode, so an array reply starting with "message" is a reply.
    sock.sendall(resp("SUBSCRIBE", "c") + resp("RESET") + resp("LRANGE", "list", 0, -1) + resp("GET", "k"))
    expected = (b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n+RESET\r\n"
                b"*3\r\n$7\r\nmessage\r\n$1\r\nx\r\n$1\r\ny\r\n$-1\r\n")
    assert read_until(sock, expected[-5:]) == expected
    # RESP3: ordinary commands are allowed while subscribed, and pub/sub traffic comes as pushes.
    sock.sendall(resp("HELLO", 3) + resp("SUBSCRIBE", "c") + resp("LRANGE", "list", 0, -1) + resp("PING", "z"))
    data = read_until(sock, b"$1\r\nz\r\n")
    # (The push may come before HELLO's reply: pushes are not held back behind a batch's replies.)
    assert b">3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n" in data and b"$5\r\nproto\r\n:3\r\n" in data
    assert data.endswith(b"*3\r\n$7\r\nmessage\r\n$1\r\nx\r\n$1\r\ny\r\n$1\r\nz\r\n")
    assert backend.client().publish("c", "hi") == 1
    assert b"hi" in read_until(sock, b"hi\r\n")
    sock.close()


def test_sigterm_drains_clients_before_stopping(redis_factory, sluice_factory):
    """SIGTERM closes the listener, closes idle clients at once, lets a client with a request in
    flight receive its reply, then exits cleanly."""
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    idle, waiting = (socket.create_connection(("127.0.0.1", proxy.port), timeout=5) for _ in range(2))
    idle.sendall(b"PING\r\n")
    assert read_until(idle, b"\r\n") == b"+PONG\r\n"
    waiting.sendall(b"BLPOP drain:list 1.5\r\n")
    time.sleep(0.3)
    stopped_at = time.time()
    proxy.proc.send_signal(signal.SIGTERM)
    assert idle.recv(1024) == b""  # nothing owed: closed at once
    assert time.time() - stopped_at < 1.0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1)
    assert read_until(waiting, b"\r\n") == b"*-1\r\n"  # owed a reply: it came, then the close
    assert waiting.recv(1024) == b""
    assert proxy.proc.wait(5) == 0
    assert "every client was answered" in proxy.output()


def test_sigterm_drain_answers_requests_held_back_by_the_budget(redis_factory, sluice_factory):
    """A client pipelined more than the in-flight budget (4096 requests) before SIGTERM. What
    Sluice had read runs and is answered, including what the budget held back; what it had not
    read yet is never run; the replies end with a clean close, not a reset that could destroy them."""
    backend = redis_factory("--enable-debug-command", "yes")
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    # Small replies first, so that the client's window is the full 4096 requests (a new client
    # starts with 16 in flight until its replies show how large they are).
    s.sendall(resp("PING") * 100)
    assert read_until(s, b"+PONG\r\n" * 100).count(b"+PONG") == 100
    # DEBUG SLEEP holds the backend (and with it the first 4096 requests) while SIGTERM arrives.
    s.sendall(resp("DEBUG", "SLEEP", "0.5") + resp("INCR", "drained") * 9000)
    time.sleep(0.25)
    proxy.proc.send_signal(signal.SIGTERM)
    data = read_until_closed(s)  # a reset raises here
    answered = data.count(b"\r\n") - 1
    assert data.startswith(b"+OK\r\n") and data.endswith(b":%d\r\n" % answered), data[-100:]
    assert answered > 4096, answered  # more than the budget: the held-back requests ran
    assert backend.client().get("drained") == str(answered).encode()  # nothing ran unanswered
    assert proxy.proc.wait(5) == 0


def test_drain_timeout_cuts_off_clients_that_would_wait_forever(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False), extra_args=("--drain-timeout-ms", "300"))
    forever = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    forever.sendall(b"BLPOP drain:never 0\r\n")
    time.sleep(0.3)
    stopped_at = time.time()
    proxy.proc.send_signal(signal.SIGTERM)
    assert forever.recv(1024) == b""
    assert proxy.proc.wait(5) == 0
    assert time.time() - stopped_at < 3
    assert "1 client(s) cut off at the drain timeout" in proxy.output()


def test_hostile_frames_never_crash_or_desynchronise_the_shared_connection(redis_factory, sluice_factory):
    """Frames that would overflow a length, that Redis answers with no reply, or that Redis's own
    parser refuses: each client gets an error (or nothing, as from Redis), and a bystander client
    sharing the backend connection keeps getting its own replies."""
    backend = redis_factory()
    backend.client().set("mine", "bystander")
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    bystander = proxy.client()
    assert bystander.get("mine") == b"bystander"
    for hostile, expected in [
        (b"*1\r\n$9223372036854775807\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*9223372036854775807\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*0000\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\n$04\r\nPING\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        # Redis skips empty multibulks without a reply; so must the proxy (then PING answers).
        (b"*-100\r\n*0\r\n*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nQUIT\r\n", b"+PONG\r\n+OK\r\n"),
        # QUIT with an argument is still QUIT: answered here, never closing a shared connection.
        (b"*2\r\n$4\r\nQUIT\r\n$1\r\nx\r\n", b"+OK\r\n"),
    ]:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
            s.sendall(hostile)
            assert read_until_closed(s) == expected, hostile
        for _ in range(3):
            assert bystander.get("mine") == b"bystander"
    assert proxy.alive()


def test_unsubscribe_outside_subscribed_mode_keeps_replies_in_order(redis_factory, sluice_factory):
    backend = redis_factory()
    backend.client().set("k", "v")
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    bystander = proxy.client()
    assert bystander.get("k") == b"v"
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        # Redis answers UNSUBSCRIBE once per channel, even when not subscribed.
        s.sendall(b"*3\r\n$11\r\nUNSUBSCRIBE\r\n$1\r\na\r\n$1\r\nb\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
        data = read_until(s, b"v\r\n")
        assert data.count(b"unsubscribe") == 2 and data.endswith(b"$1\r\nv\r\n"), data
    for _ in range(3):
        assert bystander.get("k") == b"v"


def test_hello_3_pipelined_after_unsubscribe(redis_factory, sluice_factory):
    # The confirmation comes in RESP2 before HELLO 3's reply: it is no reply to HELLO (which came
    # next, with no request left to pair it with, and closed the client as out of step).
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(b"*1\r\n$11\r\nUNSUBSCRIBE\r\n*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*1\r\n$4\r\nPING\r\n")
        data = read_until(s, b"+PONG\r\n")
        assert data.startswith(b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n%"), data
    assert "out of step" not in proxy.output(), proxy.output()


def test_subscribe_pipelined_after_a_nil_reply(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(b"*2\r\n$3\r\nGET\r\n$7\r\nmissing\r\n*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n")
        data = read_until(s, b"subscribe")
        backend.client().publish("ch", "hello")
        data += read_until(s, b"hello")
    assert data.startswith(b"$-1\r\n*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"), data
    assert proxy.client().ping() and proxy.alive()


def test_client_leaving_with_requests_in_flight(redis_factory, sluice_factory):
    """A client that disconnects while its BLPOP waits on a dedicated connection, or while its
    pipeline is on the shared connection, leaves nothing behind that later crashes the host."""
    backend = redis_factory("--enable-debug-command", "yes")
    config = plain_config(backend.port).replace("  main:\n", "  main:\n    - debug-printer: { prefix: DBG }\n")
    proxy = sluice_factory(config)
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
            s.sendall(b"*3\r\n$5\r\nBLPOP\r\n$4\r\nlist\r\n$1\r\n0\r\n")
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
            s.sendall(b"*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n$3\r\n0.1\r\n*1\r\n$4\r\nPING\r\n" * 3)
    time.sleep(0.5)
    backend.client().lpush("list", "x")
    time.sleep(0.3)
    assert proxy.alive()
    assert proxy.client().ping()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_subscriber_that_does_not_read_cannot_grow_the_proxy(redis_factory, sluice_factory):
    """200 MB of pub/sub messages to a subscriber that never reads: Sluice stops reading that
    client's backend connection, so the messages wait at Redis (whose pubsub output limit then drops
    the subscriber) instead of in the proxy's memory; a bystander keeps working."""
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    before = rss_kib(proxy.serving_pid())
    lazy = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    lazy.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$5\r\nflood\r\n")
    time.sleep(0.3)
    publisher = backend.client()
    payload = b"x" * 100_000
    for _ in range(2000):
        publisher.publish("flood", payload)
    time.sleep(0.5)
    grown_mib = (rss_kib(proxy.serving_pid()) - before) / 1024
    assert grown_mib < 100, f"proxy grew by {grown_mib:.0f} MiB"
    assert proxy.client().ping() and proxy.alive()
    lazy.close()


def test_client_pipelining_without_reading_cannot_grow_the_proxy(redis_factory, sluice_factory):
    """40 000 GETs of a 10 kB value (400 MB of replies) pipelined by a client that does not read:
    Sluice stops reading it once its window of requests is in flight, so the replies it holds stay bounded; a
    bystander keeps working, and once the client reads, every reply arrives, in order."""
    backend = redis_factory()
    backend.client().set("big", b"v" * 10_000)
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    before = rss_kib(proxy.serving_pid())
    greedy = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
    greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    count = 40_000
    sender = threading.Thread(target=lambda: greedy.sendall(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" * count), daemon=True)
    sender.start()
    time.sleep(2)
    grown_mib = (rss_kib(proxy.serving_pid()) - before) / 1024
    assert grown_mib < 150, f"proxy grew by {grown_mib:.0f} MiB"
    assert proxy.client().ping() and proxy.alive()
    reply = b"$10000\r\n" + b"v" * 10_000 + b"\r\n"
    expected, received = len(reply) * count, 0
    chunk = b""
    while received < expected:
        part = greedy.recv(1 << 20)
        assert part, f"closed after {received} of {expected} bytes"
        chunk += part
        whole = len(chunk) - len(chunk) % len(reply)
        assert chunk[:whole] == reply * (whole // len(reply))
        received += whole
        chunk = chunk[whole:]
    sender.join(10)
    greedy.close()


def test_stuck_backend_times_out_instead_of_hanging_every_client(sluice_factory):
    """A backend that accepts connections and never answers: requests on the shared connection fail
    after reply_timeout_ms with a clear error, and later requests get the same rather than a hang."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    accepted = []
    stop = threading.Event()

    def accept_and_ignore():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept_and_ignore, daemon=True)
    thread.start()
    try:
        config = plain_config(port, plugins=False).replace(
            f"address: 127.0.0.1:{port} }}", f"address: 127.0.0.1:{port}, reply_timeout_ms: 400 }}")
        proxy = sluice_factory(config)
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
            for _ in range(2):  # the second request goes out on a fresh connection, stuck as well
                start = time.time()
                s.sendall(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
                data = read_until(s, b"\r\n")
                assert b"no reply within 400 ms" in data, data
                assert time.time() - start < 3
        assert proxy.alive()
    finally:
        stop.set()
        thread.join()
        for c in accepted:
            c.close()
        listener.close()


def test_dead_backend_is_not_hammered_with_connects(sluice_factory):
    proxy = sluice_factory(plain_config(free_port(), plugins=False))
    r = proxy.client()
    failures = 0
    for _ in range(50):
        try:
            r.get("k")
        except redis.ResponseError as e:
            assert "unavailable" in str(e)
            failures += 1
    assert failures == 50
    attempts = proxy.output().count("connect failed")
    assert 1 <= attempts <= 5, proxy.output()


def test_reply_larger_than_max_reply_bytes_fails_cleanly(redis_factory, sluice_factory):
    backend = redis_factory()
    backend.client().set("big", b"x" * 200_000)
    backend.client().set("small", "ok")
    config = plain_config(backend.port, plugins=False).replace(
        f"address: 127.0.0.1:{backend.port} }}", f"address: 127.0.0.1:{backend.port}, max_reply_bytes: 65536 }}")
    proxy = sluice_factory(config)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n")
        data = read_until(s, b"\r\n")
        assert data.startswith(b"-ERR sluice: backend 'primary'"), data
    assert proxy.client().get("small") == b"ok"
    assert proxy.alive()


def test_reply_timeout_spares_blocking_commands(redis_factory, sluice_factory):
    """A BLPOP may wait longer than reply_timeout_ms: it is answered by Redis, not cut off."""
    backend = redis_factory()
    config = plain_config(backend.port, plugins=False).replace(
        f"address: 127.0.0.1:{backend.port} }}", f"address: 127.0.0.1:{backend.port}, reply_timeout_ms: 200 }}")
    proxy = sluice_factory(config)
    r = proxy.client()
    start = time.time()
    assert r.blpop(["nothing-here"], timeout=1) is None
    assert time.time() - start >= 0.9
    assert r.ping() and proxy.alive()


def credentials_config(backend_port, credentials):
    return f"""
sinks:
  primary: {{ redis: {{ address: 127.0.0.1:{backend_port}, {credentials} }} }}
chains:
  main:
    - sink: primary
sources:
  - redis: {{ listen: 127.0.0.1:{{PORT}}, chain: main }}
"""


def test_sink_credentials_let_clients_share_a_password_protected_backend(redis_factory, sluice_factory):
    backend = redis_factory("--requirepass", "s3cret")
    admin = backend.client(password="s3cret")
    admin.execute_command("ACL", "SETUSER", "app", "on", ">app-pw", "~*", "+@all")
    proxy = sluice_factory(credentials_config(backend.port, "password: s3cret"))
    clients = [proxy.client(protocol=2) for _ in range(20)]  # none of them sends AUTH (nor HELLO)
    for i, c in enumerate(clients):
        assert c.set(f"k{i}", i)
    assert [int(c.get(f"k{i}")) for i, c in enumerate(clients)] == list(range(20))
    # They share the authenticated connections (one per event loop) instead of each opening one.
    assert len(admin.client_list()) <= 1 + 2  # admin's own, and Sluice's (2 event loops)
    # An ACL user, its password taken from the environment.
    acl = sluice_factory(credentials_config(backend.port, "username: app, password_env: APP_PASSWORD"),
                         env={"APP_PASSWORD": "app-pw"})
    assert acl.client().execute_command("ACL", "WHOAMI") == b"app"
    assert acl.client().get("k3") == b"3"
    assert "app-pw" not in acl.output() and "s3cret" not in proxy.output()


def test_sink_credentials_refused_fail_requests_with_the_reason(redis_factory, sluice_factory):
    backend = redis_factory("--requirepass", "s3cret")
    proxy = sluice_factory(credentials_config(backend.port, "password: not-the-password"))
    with pytest.raises(redis.ResponseError) as refused:
        proxy.client().get("x")
    message = str(refused.value)
    assert "backend 'primary'" in message and "AUTH refused" in message and "WRONGPASS" in message
    assert proxy.wait_for_output("AUTH refused")
    assert "not-the-password" not in proxy.output()
    # The backend is backed off, not hammered; once it accepts, requests flow again.
    backend.client(password="s3cret").config_set("requirepass", "not-the-password")
    deadline = time.time() + 10
    while True:
        try:
            assert proxy.client().set("x", "1")
            break
        except redis.ResponseError:
            assert time.time() < deadline, "requests kept failing after the backend accepted the password"
            time.sleep(0.2)
    assert proxy.alive()


def test_sink_credentials_config_errors(workdir):
    path = os.path.join(workdir, "auth.yaml")
    with open(path, "w") as f:
        f.write(f"""sinks:
  a: {{ redis: {{ address: 127.0.0.1:1, password: x, password_env: SLUICE_TEST_PW }} }}
  b: {{ redis: {{ address: 127.0.0.1:1, password_env: SLUICE_TEST_SURELY_UNSET }} }}
  c: {{ redis: {{ address: 127.0.0.1:1, username: app }} }}
chains:
  main: [ {{ sink: a }} ]
sources:
  - redis: {{ listen: 127.0.0.1:{free_port()}, chain: main }}
""")
    out = subprocess.run([os.environ.get("SLUICE_BIN", os.path.join(ROOT, ".build", "release", "sluice")),
                          "check", "--config", path], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out
    lines = open(path).read().split("\n")

    def at(line, text):  # file:line:column of text's first occurrence on that line (1-based)
        return f"{path}:{line}:{lines[line - 1].index(text) + 1}"
    assert f"{at(2, 'SLUICE_TEST_PW')}: sink 'a'.redis: give either password or password_env, not both" in out.stderr, out.stderr
    assert (f"{at(3, 'SLUICE_TEST_SURELY_UNSET')}: sink 'b'.redis.password_env: environment variable "
            "'SLUICE_TEST_SURELY_UNSET' is not set") in out.stderr, out.stderr
    assert (f"{at(4, 'app')}: sink 'c'.redis.username: a password (password or password_env) is required "
            "with it") in out.stderr, out.stderr


def client_auth_config(backend_port, auth, sink_credentials=""):
    """Sluice with `auth:` on its source, in front of a backend reached with `sink_credentials`."""
    extra = f", {sink_credentials}" if sink_credentials else ""
    return f"""
plugins:
  directory: {{PLUGINS}}
sinks:
  primary: {{ redis: {{ address: 127.0.0.1:{backend_port}{extra} }} }}
chains:
  main:
    - debug-printer: {{}}
    - sink: primary
sources:
  - redis:
      listen: 127.0.0.1:{{PORT}}
      chain: main
      auth: {auth}
observability:
  metrics: 127.0.0.1:{{METRICS_PORT}}
"""


def test_client_auth_guards_a_password_protected_backend(redis_factory, sluice_factory):
    # The backend needs a password that Sluice holds (sink credentials); without source auth anyone
    # reaching Sluice's port would be let in. With it, clients authenticate to Sluice itself.
    backend = redis_factory("--requirepass", "backend-pw")
    backend.client(password="backend-pw").set("k", "v")
    proxy = sluice_factory(client_auth_config(
        backend.port, "[ { password: client-pw }, { username: app, password_env: APP_CLIENT_PW } ]",
        "password: backend-pw"), env={"APP_CLIENT_PW": "app-pw"})
    with pytest.raises(redis.AuthenticationError):
        proxy.client(protocol=2).get("k")
    with pytest.raises(redis.AuthenticationError):
        proxy.client(protocol=2, password="backend-pw").get("k")  # the backend's password is not the client's
    with pytest.raises(redis.AuthenticationError):
        proxy.client(protocol=3, username="app", password="client-pw").get("k")  # right password, wrong user
    assert proxy.client(protocol=2, password="client-pw").get("k") == b"v"
    assert proxy.client(protocol=3, password="client-pw").get("k") == b"v"  # HELLO 3 AUTH default ...
    assert proxy.client(protocol=3, username="app", password="app-pw").get("k") == b"v"
    assert proxy.client(protocol=2, username="app", password="app-pw").get("k") == b"v"
    # HELLO keeps what follows its AUTH option: the client name reaches the backend.
    named = proxy.client(protocol=3, password="client-pw", client_name="reporting")
    assert named.client_getname() == b"reporting"
    # Every wrong password counts (redis-py retries a refused connection, so it sent several).
    failures = metric_value(proxy, "sluice_client_auth_failures_total")
    assert failures >= 3
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        assert ask(s, ("AUTH", "app", "client-pw"), ("PING",), until=b"required.\r\n") == (
            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
            b"-NOAUTH Authentication required.\r\n")
    assert metric_value(proxy, "sluice_client_auth_failures_total") == failures + 1
    # Neither transforms nor logs see a client's password (debug-printer prints every request).
    output = proxy.output()
    assert "GET" in output.upper()
    for secret in ("client-pw", "app-pw", "backend-pw"):
        assert secret not in output


def test_client_auth_replies_follow_redis_in_a_pipeline(redis_factory, sluice_factory):
    backend = redis_factory()
    backend.client().set("x", "1")
    proxy = sluice_factory(client_auth_config(backend.port, "{ password: pw }"))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        got = ask(s, ("GET", "x"), ("HELLO", "3"), ("AUTH", "nope"), ("AUTH", "a", "b", "c"), ("AUTH",),
                  ("HELLO", "4", "AUTH", "default", "pw"), ("HELLO", "3", "AUTH", "default"),
                  ("AUTH", "pw"), ("GET", "x"), ("RESET",), ("GET", "x"), ("RESET",),
                  ("AUTH", "default", "pw"), ("MULTI",), ("AUTH", "pw"), ("EXEC",), ("PING",),
                  until=b"+PONG\r\n")
    assert got == (b"-NOAUTH Authentication required.\r\n"
                   b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO "
                   b"<proto> AUTH <user> <pass> option can be used to authenticate the client and select the "
                   b"RESP protocol version at the same time\r\n"
                   b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
                   b"-ERR syntax error\r\n"
                   b"-ERR wrong number of arguments for 'auth' command\r\n"
                   b"-NOPROTO unsupported protocol version\r\n"
                   b"-ERR Syntax error in HELLO option 'AUTH'\r\n"
                   b"+OK\r\n$1\r\n1\r\n"
                   b"+RESET\r\n"  # from the backend: RESET signs the client out, as on Redis
                   b"-NOAUTH Authentication required.\r\n"
                   b"+RESET\r\n"  # answered here: the client has nothing to reset
                   b"+OK\r\n+OK\r\n"
                   b"-ERR sluice: AUTH inside MULTI is not supported through the proxy\r\n"
                   b"*0\r\n+PONG\r\n")
    # Before signing in, nothing reaches a backend: not even a SUBSCRIBE or a RESET.
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        assert ask(s, ("SUBSCRIBE", "c"), ("RESET",), ("QUIT",), until=b"+OK\r\n") == (
            b"-NOAUTH Authentication required.\r\n+RESET\r\n+OK\r\n")


def test_reset_keeps_a_dedicated_connection_signed_in_to_a_password_protected_backend(redis_factory, sluice_factory):
    # RESET signs a connection out of a backend that requires a password; the sink signs it in again
    # at once, so the client (which never had the backend's password) carries on. Also pipelined,
    # with requests after the RESET in the same read, and twice in one batch.
    backend = redis_factory("--requirepass", "backend-pw")
    backend.client(password="backend-pw").set("k", "v")
    proxy = sluice_factory(client_auth_config(backend.port, "{ password: client-pw }", "password: backend-pw"))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        assert ask(s, ("AUTH", "client-pw"), ("SELECT", "1"), ("RESET",), ("AUTH", "client-pw"), ("GET", "k"),
                   ("MULTI",), ("RESET",), ("RESET",), until=b"+RESET\r\n+RESET\r\n") == (
            b"+OK\r\n+OK\r\n+RESET\r\n+OK\r\n$1\r\nv\r\n+OK\r\n+RESET\r\n+RESET\r\n")
        assert ask(s, ("AUTH", "client-pw"), ("GET", "k"), until=b"v\r\n") == b"+OK\r\n$1\r\nv\r\n"
    # Without client auth too: the sink's credentials follow a client's RESET.
    open_proxy = sluice_factory(credentials_config(backend.port, "password: backend-pw"))
    with socket.create_connection(("127.0.0.1", open_proxy.port), timeout=5) as s:
        assert ask(s, ("SELECT", "0"), ("RESET",), ("GET", "k"), until=b"v\r\n") == b"+OK\r\n+RESET\r\n$1\r\nv\r\n"


def test_client_auth_config_errors(workdir):
    path = os.path.join(workdir, "client-auth.yaml")
    with open(path, "w") as f:
        f.write(f"""sinks:
  a: {{ redis: {{ address: 127.0.0.1:1 }} }}
chains:
  main: [ {{ sink: a }} ]
sources:
  - redis: {{ listen: 127.0.0.1:{free_port()}, chain: main, auth: {{ username: app }} }}
  - redis: {{ listen: 127.0.0.1:{free_port()}, chain: main, auth: [ {{ password: x, pasword: y }} ] }}
  - redis: {{ listen: 127.0.0.1:{free_port()}, chain: main, auth: [] }}
""")
    out = subprocess.run([os.environ.get("SLUICE_BIN", os.path.join(ROOT, ".build", "release", "sluice")),
                          "check", "--config", path], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out
    lines = open(path).read().split("\n")

    def at(line, text):
        return f"{path}:{line}:{lines[line - 1].index(text) + 1}"
    assert (f"{at(6, 'app')}: source.redis.auth.username: a password (password or password_env) is required "
            "with it") in out.stderr, out.stderr
    assert f"{at(7, 'pasword')}: source.redis.auth: unknown key 'pasword'" in out.stderr, out.stderr
    assert f"{at(8, '[]')}: source.redis.auth: expected" in out.stderr, out.stderr


def ask(sock, *commands, until):
    """Sends the commands in one write and reads until `until` (a reply's bytes) arrived."""
    sock.sendall(b"".join(resp(*c) for c in commands))
    return read_until(sock, until)


def test_resp3_clients_share_a_resp3_backend_connection(redis_factory, sluice_factory):
    backend = redis_factory()
    backend.client().zadd("z", {"m": 1.5})
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    clients = [proxy.client(protocol=3) for _ in range(20)]  # each sends HELLO 3 first
    for i, c in enumerate(clients):
        assert c.set(f"k{i}", i)
        assert c.zscore("z", "m") == 1.5
    # One RESP3 connection per event loop, not one per client.
    assert len(backend.client().client_list()) <= 1 + 2
    # The replies are RESP3 for RESP3 clients and RESP2 for the others, side by side.
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as v3, \
            socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as v2:
        assert ask(v3, ("HELLO", "3"), until=b"proto").startswith(b"%")
        for _ in range(3):
            assert ask(v3, ("ZSCORE", "z", "m"), until=b"\r\n") == b",1.5\r\n"
            assert ask(v2, ("ZSCORE", "z", "m"), until=b"1.5\r\n") == b"$3\r\n1.5\r\n"
        assert ask(v3, ("GET", "missing"), until=b"\r\n") == b"_\r\n"
        assert ask(v2, ("GET", "missing"), until=b"\r\n") == b"$-1\r\n"
        # HELLO 2 takes the client back to RESP2.
        assert ask(v3, ("HELLO", "2"), until=b"proto").startswith(b"*")
        assert ask(v3, ("GET", "missing"), until=b"\r\n") == b"$-1\r\n"


def test_resp3_client_keeps_resp3_on_its_dedicated_connection(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        ask(s, ("HELLO", "3"), until=b"proto")
        assert ask(s, ("SELECT", "1"), until=b"\r\n") == b"+OK\r\n"  # moves it to a dedicated connection
        assert ask(s, ("ZADD", "z1", "2.5", "m"), ("ZSCORE", "z1", "m"), until=b",2.5\r\n") == b":1\r\n,2.5\r\n"
    assert backend.client(db=1).zscore("z1", "m") == 2.5
    # A HELLO 3 after other requests in one pipeline: those before it are answered in RESP2.
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        data = ask(s, ("GET", "missing"), ("HELLO", "3"), ("GET", "missing"), until=b"_\r\n")
        assert data.startswith(b"$-1\r\n%") and data.endswith(b"_\r\n"), data


def test_resp3_clients_share_an_authenticated_connection(redis_factory, sluice_factory):
    backend = redis_factory("--requirepass", "s3cret")
    proxy = sluice_factory(credentials_config(backend.port, "password: s3cret"))
    clients = [proxy.client(protocol=3) for _ in range(10)]
    for i, c in enumerate(clients):
        assert c.hset("h", f"f{i}", i) == 1
        assert c.hgetall("h")[f"f{i}".encode()] == str(i).encode()
    assert len(backend.client(password="s3cret").client_list()) <= 1 + 2
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        ask(s, ("HELLO", "3"), until=b"proto")
        assert ask(s, ("HGETALL", "h"), until=b"f9\r\n").startswith(b"%10\r\n")


def test_push_never_overtakes_the_replies_it_follows(redis_factory, sluice_factory):
    """An invalidation push that the backend sent after a GET's reply must not reach the client
    before that reply: a client-side cache would then keep the stale value it invalidates."""
    backend = redis_factory()
    backend.client().set("k", "old")
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        ask(s, ("HELLO", "3"), until=b"proto")
        assert ask(s, ("CLIENT", "TRACKING", "on"), until=b"\r\n") == b"+OK\r\n"
        push = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n"
        # One pipeline: the backend answers GET, then pushes the invalidation its own SET causes,
        # then answers SET and the second GET.
        data = ask(s, ("GET", "k"), ("SET", "k", "new"), ("GET", "k"), until=push)
        if not data.endswith(push):
            data += read_until(s, b"$3\r\nnew\r\n")
        assert data.startswith(b"$3\r\nold\r\n"), data
        assert data.index(push) > data.index(b"$3\r\nold\r\n"), data
        assert data.replace(push, b"") == b"$3\r\nold\r\n+OK\r\n$3\r\nnew\r\n", data


def test_refused_hello_3_leaves_the_client_in_resp2(redis_factory, sluice_factory):
    """Without sink credentials a password-protected backend refuses HELLO 3 before AUTH. The client
    keeps RESP2, as with Redis, and can still authenticate (clients such as Lettuce fall back so)."""
    backend = redis_factory("--requirepass", "s3cret")
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        assert ask(s, ("HELLO", "3"), until=b"\r\n").startswith(b"-NOAUTH")
        assert ask(s, ("AUTH", "s3cret"), until=b"\r\n") == b"+OK\r\n"
        assert ask(s, ("GET", "missing"), until=b"\r\n") == b"$-1\r\n"
        assert ask(s, ("HELLO", "3"), until=b"proto").startswith(b"%")
        assert ask(s, ("GET", "missing"), until=b"\r\n") == b"_\r\n"


def test_client_leaving_during_the_backend_handshake_does_not_back_the_sink_off(redis_factory, sluice_factory):
    backend = redis_factory("--requirepass", "s3cret", "--enable-debug-command", "yes")
    proxy = sluice_factory(credentials_config(backend.port, "password: s3cret"))
    assert proxy.client(protocol=2).set("k", "v")
    admin = backend.client(password="s3cret")
    sleeper = threading.Thread(target=lambda: admin.execute_command("DEBUG", "SLEEP", "0.6"))
    sleeper.start()
    time.sleep(0.1)
    # SELECT needs a connection of its own, whose AUTH the sleeping backend does not answer yet.
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(resp("SELECT", "1"))
        time.sleep(0.1)
    sleeper.join()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        assert ask(s, ("SELECT", "2"), until=b"\r\n") == b"+OK\r\n"  # a new dedicated connection, at once
    assert "connect failed" not in proxy.output()


def test_subscribe_on_a_connection_that_cannot_be_established_gets_the_error(redis_factory, sluice_factory):
    """A SUBSCRIBE is answered by its confirmation, not by a reply, so its batch used to count as
    answered before the connection was up: a refused AUTH or a dead backend left the subscriber
    waiting forever instead of telling it why."""
    backend = redis_factory("--requirepass", "s3cret")
    refused = sluice_factory(credentials_config(backend.port, "password: wrong"))
    dead = sluice_factory(plain_config(free_port(), plugins=False))
    for proxy, reason in ((refused, b"AUTH refused (WRONGPASS"), (dead, b"connect failed")):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
            reply = ask(s, ("SUBSCRIBE", "ch"), until=b"\r\n")
            assert reply.startswith(b"-ERR sluice: backend 'primary'") and reason in reply, reply
