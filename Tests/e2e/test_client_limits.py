"""What one client can make Sluice hold, and for how long (issue 14, items 1-3): reply bytes per
client (a client that does not read its replies), request bytes before authentication and across
all clients, and the time a request (or a TLS handshake) may take to arrive. Memory is read from
/proc/PID/status of the sluice process; clients are raw sockets, so nothing reads on their behalf."""
import os
import socket
import ssl
import threading
import time
import urllib.request

from conftest import plain_config, wait_for_port
from test_tls import certs  # noqa: F401  (the fixture)

MIB = 1024 * 1024


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def metrics_text(proxy):
    return urllib.request.urlopen(f"http://127.0.0.1:{proxy.metrics_port}/metrics", timeout=5).read().decode()


def metric(proxy, name, **labels):
    """The value of metric `name` whose labels include `labels` (0 when it is not there yet)."""
    for line in metrics_text(proxy).splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.split()[-1])
    return 0.0


def config_with(backend_port, **source_keys):
    """plain_config with extra keys on the source."""
    extra = "".join(f", {k}: {v}" for k, v in source_keys.items())
    return plain_config(backend_port, plugins=False).replace("chain: main }", "chain: main" + extra + " }")


def closed_by_peer(sock, timeout):
    """Reads (and drops) whatever arrives until the peer closes; False if it is still open after timeout."""
    sock.settimeout(timeout)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            if not sock.recv(1 << 20):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    return False


class PingProbe:
    """Bystander clients that PING one after another and record how long each answer took."""

    def __init__(self, port, clients=4):
        self.socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(clients)]
        self.times = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            for s in self.socks:  # one per event loop at least (the proxy runs two)
                started = time.time()
                s.sendall(b"PING\r\n")
                assert s.recv(64) == b"+PONG\r\n"
                self.times.append(time.time() - started)
            time.sleep(0.01)

    @property
    def worst(self):
        return max(self.times)

    def percentile(self, p):
        ordered = sorted(self.times)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(15)
        for s in self.socks:
            s.close()


def test_client_not_reading_large_replies_is_paused_holds_little_and_delays_nobody(redis_factory, sluice_factory):
    """A client pipelines 400 GETs of a 1 MiB value and does not read. Sluice reads its requests
    only while the replies it holds for it stay small (and has at most a window of them in flight on
    the backend connection it shares with others), so the proxy grows by little, other clients' PINGs
    are answered at once meanwhile, and when the client reads, every reply arrives, in order.
    (Before: all 400 went out at once; the proxy held 400 MiB, and PINGs queued behind them.)"""
    backend = redis_factory()
    value = os.urandom(MIB)
    backend.client().set("big", value)
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    before = rss_mib(proxy.serving_pid())
    count = 400
    greedy = socket.create_connection(("127.0.0.1", proxy.port), timeout=60)
    greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    with PingProbe(proxy.port) as probe:
        time.sleep(0.3)
        sender = threading.Thread(target=lambda: greedy.sendall(resp("GET", "big") * count), daemon=True)
        sender.start()
        time.sleep(3)
    grown = rss_mib(proxy.serving_pid()) - before
    print(f"proxy grew by {grown:.0f} MiB; {len(probe.times)} PINGs, 90th percentile "
          f"{probe.percentile(90) * 1000:.0f} ms, slowest {probe.worst * 1000:.0f} ms")
    assert grown < 100, f"proxy grew by {grown:.0f} MiB"
    # Generous for a loaded machine of 2 cores (seen: slowest 64 ms quiet, 1.1 s at load 17; before
    # the fix, PINGs waited 6-8 s behind the 400 MiB).
    assert probe.percentile(90) < 0.25 and probe.worst < 3, (probe.percentile(90), probe.worst)
    reply = b"$%d\r\n" % len(value) + value + b"\r\n"
    received = b""
    for i in range(count):
        while len(received) < len(reply):
            part = greedy.recv(4 * MIB)
            assert part, f"closed after {i} replies"
            received += part
        assert received[:len(reply)] == reply, i
        received = received[len(reply):]
    sender.join(10)
    greedy.close()
    assert proxy.alive()


def test_client_whose_replies_keep_piling_up_is_closed_at_the_hard_limit(redis_factory, sluice_factory):
    """A client that first reads small replies (so up to 4096 of its requests may be in flight),
    then pipelines 150 GETs of 1 MiB and stops reading: once more than reply_buffer_hard_bytes of
    replies piled up behind its full socket it is closed, with a log line and a metric; the proxy
    stays small and serves others."""
    backend = redis_factory()
    backend.client().set("big", b"b" * MIB)
    proxy = sluice_factory(config_with(backend.port, reply_buffer_hard_bytes=8 * MIB))
    before = rss_mib(proxy.serving_pid())
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.sendall(resp("PING") * 200)
    got = b""
    while got.count(b"+PONG\r\n") < 200:
        got += s.recv(65536)
    s.sendall(resp("GET", "big") * 150)
    assert proxy.wait_for_output("reply_buffer_hard_bytes", timeout=10), proxy.output()[-2000:]
    assert closed_by_peer(s, 10)
    assert metric(proxy, "sluice_clients_closed_total", reason="reply_buffer") == 1
    time.sleep(1)  # the replies still in flight for it are read and dropped
    grown = rss_mib(proxy.serving_pid()) - before
    print(f"proxy grew by {grown:.0f} MiB")
    assert grown < 100, f"proxy grew by {grown:.0f} MiB"
    assert proxy.client().get("big") == b"b" * MIB and proxy.alive()


def test_client_reading_slowly_is_not_closed(redis_factory, sluice_factory):
    """A client that reads 100 MiB of large replies slowly (its socket is full most of the time)
    keeps its connection: only replies that pile up while it reads nothing count for the hard
    limit, and the window keeps few of its requests in flight."""
    backend = redis_factory()
    backend.client().set("big", b"s" * MIB)
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    count = 100
    threading.Thread(target=lambda: s.sendall(resp("GET", "big") * count), daemon=True).start()
    expected = (len(b"$1048576\r\n") + MIB + 2) * count
    received = 0
    while received < expected:
        part = s.recv(256 * 1024)
        assert part, f"closed after {received} of {expected} bytes"
        received += len(part)
        time.sleep(0.005)  # at most about 50 MB/s
    s.close()
    assert "reply_buffer_hard_bytes" not in proxy.output()


def auth_config(backend_port, **source_keys):
    return config_with(backend_port, auth="{ password: sesame }", **source_keys)


def test_unauthenticated_requests_are_capped_as_redis_caps_them(redis_factory, sluice_factory):
    """Before AUTH a client may send at most 10 arguments of at most 16 KiB: a larger request gets
    redis-server's own error (checked against a redis-server with requirepass) and the connection is
    closed, from the header, before Sluice buffers the value. So three strangers announcing 300 MB
    values no longer make the proxy hold them. After AUTH, large values work."""
    backend = redis_factory()
    reference = redis_factory("--requirepass", "sesame")
    proxy = sluice_factory(auth_config(backend.port))
    for payload in (b"*11\r\n", b"*2\r\n$4\r\nAUTH\r\n$16385\r\n", b"*1\r\n$100000\r\n"):
        answers = []
        for port in (reference.port, proxy.port):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(payload)
                data = b""
                while True:
                    part = s.recv(4096)
                    if not part:
                        break
                    data += part
                answers.append(data)
        assert answers[0] == answers[1], (payload, answers)
        assert answers[1].startswith(b"-ERR Protocol error: unauthenticated "), answers
    # Within the limits, a stranger still gets NOAUTH, as from Redis.
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(resp("SET", "k", "v" * 16384))
        assert s.recv(100) == b"-NOAUTH Authentication required.\r\n"
    before = rss_mib(proxy.serving_pid())
    strangers = []
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        s.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$300000000\r\n")
        strangers.append(s)
    chunk = b"x" * MIB
    for s in strangers:
        try:
            for _ in range(100):
                s.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
    grown = rss_mib(proxy.serving_pid()) - before
    assert grown < 30, f"proxy grew by {grown:.0f} MiB"
    for s in strangers:
        assert closed_by_peer(s, 5)
        s.close()
    c = proxy.client(password="sesame")
    big = os.urandom(5 * MIB)
    assert c.set("big", big) and c.get("big") == big


def test_request_bytes_of_all_clients_stay_within_the_budget(redis_factory, sluice_factory):
    """Eight clients each send most of a 40 MB SET. With a 64 MiB budget for the buffered request
    bytes of all clients, Sluice stops reading clients once it is spent (it does not close them),
    so the proxy holds about the budget instead of 320 MB; the longest-buffering client always goes
    on, so every request completes in turn once the clients send the rest."""
    backend = redis_factory()
    proxy = sluice_factory(config_with(backend.port, max_frame_bytes=64 * MIB, request_buffer_budget_bytes=64 * MIB))
    before = rss_mib(proxy.serving_pid())
    size = 40_000_000
    clients = [socket.create_connection(("127.0.0.1", proxy.port), timeout=60) for _ in range(8)]
    requests = [resp("SET", f"k{i}", bytes([65 + i]) * size) for i in range(8)]
    head = len(requests[0]) - 1000  # all but the last 1000 bytes

    def send_head(s, r):
        s.sendall(r[:head])

    senders = [threading.Thread(target=send_head, args=(s, r), daemon=True) for s, r in zip(clients, requests)]
    for t in senders:
        t.start()
    time.sleep(4)
    grown = rss_mib(proxy.serving_pid()) - before
    print(f"proxy grew by {grown:.0f} MiB; paused {metric(proxy, 'sluice_request_budget_pauses_total'):.0f} times")
    assert grown < 200, f"proxy grew by {grown:.0f} MiB"
    assert metric(proxy, "sluice_request_budget_pauses_total") > 0

    def send_tail(s, r, t):
        t.join(60)
        s.sendall(r[head:])

    tails = [threading.Thread(target=send_tail, args=(s, r, t), daemon=True) for s, r, t in zip(clients, requests, senders)]
    for t in tails:
        t.start()
    for s in clients:
        s.settimeout(60)
        assert s.recv(16) == b"+OK\r\n"
        s.close()
    check = backend.client()
    assert [check.strlen(f"k{i}") for i in range(8)] == [size] * 8
    assert check.getrange("k7", 0, 3) == b"HHHH"
    assert proxy.alive()


def test_client_not_reading_its_replies_holds_no_request_budget(redis_factory, sluice_factory):
    """Client B pipelines 20,000 GETs of a 60 KB value and never reads: its reading pauses with
    complete requests held back (by its in-flight and reply limits) for ever. Those count nothing
    against the request budget, so B is not the "longest buffering" client that every other client
    waits for: A1 and A2 then each send a 60 KB SET in two parts and get +OK, within
    request_timeout_ms. (Before: B's held requests kept it the oldest holder, A1 and A2 waited for
    it and were closed by the request timeout while B stayed connected.)"""
    backend = redis_factory()
    backend.client().set("big", b"v" * 60000)
    proxy = sluice_factory(config_with(backend.port, max_frame_bytes=65536,
                                       request_buffer_budget_bytes=131072, request_timeout_ms=3000))
    b = socket.create_connection(("127.0.0.1", proxy.port))
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    b.setblocking(False)
    pipeline = resp("GET", "big") * 20000
    sent = 0
    until = time.time() + 3
    while time.time() < until and sent < len(pipeline):
        try:
            sent += b.send(pipeline[sent:sent + 65536])
        except BlockingIOError:
            time.sleep(0.05)
    a1 = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    a2 = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    s1, s2 = resp("SET", "a1", b"1" * 60000), resp("SET", "a2", b"2" * 60000)
    a1.sendall(s1[:40000])
    time.sleep(0.3)
    a2.sendall(s2[:40000])
    time.sleep(0.3)
    a1.sendall(s1[40000:])
    a2.sendall(s2[40000:])
    assert read_exactly(a1, 5) == b"+OK\r\n"
    assert read_exactly(a2, 5) == b"+OK\r\n"
    assert backend.client().strlen("a1") == 60000 and backend.client().strlen("a2") == 60000
    assert metric(proxy, "sluice_clients_closed_total", reason="request_timeout") == 0
    b.close()
    assert proxy.alive()


def test_pipelined_requests_run_while_another_client_holds_the_budget(redis_factory, sluice_factory):
    """Client B holds nearly all of a 64 KiB request budget with a partial 65,000-byte SET. Client A
    then pipelines 2,000 PINGs at once: they are complete requests, held back only by A's in-flight
    limit, so they run as A's replies free room and A gets all 2,000 PONGs while B's request is
    still incomplete; B's SET then completes too. (Before: A's held requests counted against the
    spent budget, A waited for B and got 16 PONGs until B finished.)"""
    backend = redis_factory()
    proxy = sluice_factory(config_with(backend.port, max_frame_bytes=65536, request_buffer_budget_bytes=65536))
    b = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    b.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$65000\r\n" + b"x" * 64000)
    time.sleep(0.5)
    a = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    a.sendall(b"*1\r\n$4\r\nPING\r\n" * 2000)
    assert read_exactly(a, 7 * 2000) == b"+PONG\r\n" * 2000
    b.sendall(b"x" * 1000 + b"\r\n")
    assert read_exactly(b, 5) == b"+OK\r\n"
    assert backend.client().strlen("b") == 65000
    a.close()
    b.close()


def test_request_must_complete_within_the_request_timeout(redis_factory, sluice_factory):
    """Slowloris: 20 clients at max_clients 20 each dribble one byte of a request every 100 ms.
    With request_timeout_ms 1500 they are closed (log line, metric) and a new client gets in; a
    client that sends complete requests slowly, for longer than the timeout, is not affected.
    (Before: they lived for ever and every other client was told max clients reached.)"""
    backend = redis_factory()
    proxy = sluice_factory(config_with(backend.port, max_clients=21, request_timeout_ms=1500))
    patient = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    slow = [socket.create_connection(("127.0.0.1", proxy.port), timeout=5) for _ in range(20)]
    request = resp("SET", "slow", "x" * 100)
    stop = threading.Event()

    def dribble():
        for i in range(len(request)):
            if stop.is_set():
                return
            for s in slow:
                try:
                    s.sendall(request[i:i + 1])
                except OSError:
                    pass
            time.sleep(0.1)

    threading.Thread(target=dribble, daemon=True).start()
    time.sleep(0.5)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as refused:
        assert refused.recv(100) == b"-ERR max number of clients reached\r\n"
    for _ in range(4):  # complete requests, slowly, over 2 s: never closed
        patient.sendall(b"PING\r\n")
        assert patient.recv(64) == b"+PONG\r\n"
        time.sleep(0.5)
    assert all(closed_by_peer(s, 3) for s in slow)
    stop.set()
    assert proxy.wait_for_output("request not complete within 1500 ms")
    assert metric(proxy, "sluice_clients_closed_total", reason="request_timeout") == 20
    assert proxy.client().ping()
    patient.sendall(b"PING\r\n")
    assert patient.recv(64) == b"+PONG\r\n"


def test_pipelining_client_whose_reads_end_inside_requests_is_not_timed_out(redis_factory, sluice_factory):
    """The request timeout is per request: a client that streams a pipeline for three times
    request_timeout_ms, in writes that each end inside a request (so Sluice always holds part of
    one), completes requests all the time and is never closed."""
    backend = redis_factory()
    proxy = sluice_factory(config_with(backend.port, request_timeout_ms=1000))
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    request = resp("INCR", "streamed")
    stream = request * 400  # sent one request's length at a time, each write ending in mid-request
    expected = sum(len(b":%d\r\n" % i) for i in range(1, 401))
    replies = []
    reader = threading.Thread(target=lambda: replies.append(read_exactly(s, expected)), daemon=True)
    reader.start()
    half = len(request) // 2
    s.sendall(stream[:half])
    for i in range(half, len(stream), len(request)):
        time.sleep(0.008)  # 400 writes: over 3 s
        s.sendall(stream[i:i + len(request)])
    reader.join(10)
    assert replies and replies[0].endswith(b":400\r\n"), replies
    assert backend.client().get("streamed") == b"400"
    assert "request not complete" not in proxy.output()
    s.close()


def read_exactly(sock, n):
    data = b""
    while len(data) < n:
        part = sock.recv(65536)
        if not part:
            break
        data += part
    return data


def test_tls_handshake_must_complete_within_the_request_timeout(redis_factory, sluice_factory, certs):  # noqa: F811
    """A TLS source: connections that never start (or never finish) the handshake are closed after
    request_timeout_ms instead of holding a place under max_clients for ever; a TLS client that
    does handshake is served and then not bound by the timeout while idle."""
    backend = redis_factory()
    config = config_with(backend.port, request_timeout_ms=1000, max_clients=6,
                         tls=f"{{ cert_file: {certs('server.crt')}, key_file: {certs('server.key')} }}")
    proxy = sluice_factory(config)
    silent = [socket.create_connection(("127.0.0.1", proxy.port), timeout=5) for _ in range(3)]
    half = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    half.sendall(b"\x16\x03\x01\x00\xc8\x01")  # the first bytes of a ClientHello, never the rest
    context = ssl.create_default_context(cafile=certs("ca.crt"))
    good = context.wrap_socket(socket.create_connection(("127.0.0.1", proxy.port), timeout=5), server_hostname="localhost")
    good.sendall(b"PING\r\n")
    assert good.recv(64) == b"+PONG\r\n"
    for s in silent + [half]:
        assert closed_by_peer(s, 4)
    assert metric(proxy, "sluice_clients_closed_total", reason="tls_handshake_timeout") == 4
    assert proxy.wait_for_output("TLS handshake not complete within 1000 ms")
    time.sleep(0.5)
    good.sendall(b"PING\r\n")
    assert good.recv(64) == b"+PONG\r\n"
    good.close()
