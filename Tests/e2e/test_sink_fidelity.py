"""What Redis sends and says passes through Sluice as Redis sends and says it: deep replies,
protocol-error wording, the order of a dedicated connection's handshake, MONITOR and CLIENT REPLY,
and replies that answer no request (a backend out of step) never reaching the wrong client."""
import socket
import time

from conftest import plain_config


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


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


def exchange_until_closed(port, payload):
    """What a server answers to `payload` before it closes the connection (5 s at most)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        return read_until_closed(s)


def test_protocol_errors_in_redis_own_words(redis_factory, sluice_factory):
    """The same bad input sent to redis-server and to Sluice gets the same bytes back."""
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    for bad in [
        b"*1\r\n$600000000\r\n",           # longer than proto-max-bulk-len (and max_frame_bytes)
        b"*1\r\n$-5\r\n",
        b"*1\r\n$x\r\n",
        b"*1\r\n$04\r\nPING\r\n",
        b"*1\r\n:4\r\n",
        b"*x\r\n",
        b"*3000000000\r\n",
        b'GET "unbalanced\r\n',
        b"PING" * 20000,                    # an inline request longer than 64 KiB
        b"*" + b"1" * 70000,                # a multibulk count line that never ends
        # Not an error for Redis: the two bytes after a bulk are skipped, whatever they are.
        b"*2\r\n$3\r\nGET\r\n$1\r\nkXY*1\r\n$4\r\nQUIT\r\n",
    ]:
        direct = exchange_until_closed(backend.port, bad)
        through = exchange_until_closed(proxy.port, bad)
        assert direct.startswith(b"-ERR Protocol error") or bad.endswith(b"QUIT\r\n"), (bad[:40], direct)
        assert through == direct, (bad[:40], direct, through)
    assert proxy.alive()


def test_reply_nested_as_deep_as_lua_allows(redis_factory, sluice_factory):
    """A Lua table that contains itself is answered with `*1` nested ~8,000 levels deep (then
    Lua's stack-limit error): it reaches the client whole, and the connection stays usable."""
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    script = resp("EVAL", "local t = {}; t[1] = t; return t", "0")
    with socket.create_connection(("127.0.0.1", backend.port), timeout=5) as s:
        s.sendall(script + resp("PING", "after"))
        direct = read_until(s, b"$5\r\nafter\r\n")
    assert direct.count(b"*1\r\n") > 1000, direct[:100]
    for hello in (b"", resp("HELLO", "3")):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
            s.sendall(hello + script + resp("PING", "after"))
            data = read_until(s, b"$5\r\nafter\r\n")
        if not hello:
            assert data == direct
        else:
            assert data[data.index(b"*1\r\n*1\r\n"):] == direct
    # Shared connections: several clients at once, each still gets its own replies.
    clients = [proxy.client() for _ in range(4)]
    for i, c in enumerate(clients):
        c.set(f"k{i}", f"v{i}")
    for i, c in enumerate(clients):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
            s.sendall(script + resp("GET", f"k{i}"))
            assert read_until(s, f"v{i}\r\n".encode()).endswith(f"$2\r\nv{i}\r\n".encode())
    assert "malformed reply" not in proxy.output()


def test_resp3_client_authenticates_after_setting_a_password(redis_factory, sluice_factory):
    """redis-py (RESP3) sets a password, authenticates, and clears it again: as directly, every
    step succeeds; through Sluice the AUTH opens a dedicated connection, which must not send
    HELLO 3 before that AUTH (Redis refuses HELLO before authentication)."""
    import redis
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    for port in (backend.port, proxy.port):
        r = redis.Redis(host="127.0.0.1", port=port, protocol=3, socket_timeout=10)
        assert r.ping()
        assert r.set("k", "v")
        assert r.config_set("requirepass", "s3cret")
        assert r.auth("s3cret", "default"), port
        hello = r.execute_command("HELLO")
        assert hello.get(b"proto", hello.get("proto")) == 3, (port, hello)
        assert r.get("k") == b"v"
        assert r.config_set("requirepass", "")
        r.close()
        later = redis.Redis(host="127.0.0.1", port=port, protocol=3, socket_timeout=10)
        assert later.get("k") == b"v"
        later.close()


def test_resp3_client_authenticates_with_hello_after_setting_a_password(redis_factory, sluice_factory):
    """The same with `HELLO 3 AUTH default pass`: the dedicated connection it opens must not send a
    HELLO 3 of its own first."""
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    replies = []
    for port in (backend.port, proxy.port):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(resp("HELLO", "3"))
            read_until(s, b"modules")
            s.sendall(resp("CONFIG", "SET", "requirepass", "s3cret"))
            assert read_until(s, b"\r\n") == b"+OK\r\n"
            s.sendall(resp("HELLO", "3", "AUTH", "default", "s3cret") + resp("PING", "after"))
            data = read_until(s, b"$5\r\nafter\r\n")
            replies.append(data[:2] + data[data.index(b"after") - 4:])
            s.sendall(resp("CONFIG", "SET", "requirepass", ""))
            assert read_until(s, b"\r\n") == b"+OK\r\n", port
    assert replies[0] == replies[1] == b"%7$5\r\nafter\r\n", replies


def direct_and_through(backend_port, proxy_port, payload, needle):
    """The replies to `payload` from redis-server and through Sluice, each read until `needle`."""
    replies = []
    for port in (backend_port, proxy_port):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(payload)
            replies.append(read_until(s, needle))
            # Nothing more may follow: a reply sent where Redis sends none would show up here.
            s.settimeout(0.3)
            try:
                extra = s.recv(65536)
            except socket.timeout:
                extra = b""
            replies[-1] += extra
    return replies


def test_client_reply_off_skip_on_keeps_replies_paired(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    for payload in [
        resp("CLIENT", "REPLY", "OFF") + resp("SET", "a", "1") + resp("GET", "a") + resp("CLIENT", "REPLY", "ON")
        + resp("GET", "a") + resp("PING", "end"),
        resp("CLIENT", "REPLY", "SKIP") + resp("SET", "b", "2") + resp("GET", "b") + resp("PING", "end"),
        resp("CLIENT", "REPLY", "SKIP") + resp("CLIENT", "REPLY", "SKIP") + resp("GET", "b") + resp("PING", "end"),
        resp("CLIENT", "REPLY", "OFF") + resp("CLIENT", "REPLY", "SKIP") + resp("GET", "b")
        + resp("CLIENT", "REPLY", "ON") + resp("PING", "end"),
        resp("CLIENT", "REPLY", "SKIP") + resp("RESET") + resp("PING", "end"),
        resp("CLIENT", "REPLY", "OFF") + resp("RESET") + resp("PING", "end"),
        resp("CLIENT", "REPLY", "BOGUS") + resp("CLIENT", "REPLY") + resp("PING", "end"),
    ]:
        direct, through = direct_and_through(backend.port, proxy.port, payload, b"$3\r\nend\r\n")
        assert through == direct, (payload, direct, through)
    # One request at a time, as a client waiting for nothing would send them.
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(resp("CLIENT", "REPLY", "OFF"))
        for i in range(20):
            s.sendall(resp("INCR", "counter"))
        s.sendall(resp("CLIENT", "REPLY", "ON"))
        assert read_until(s, b"+OK\r\n") == b"+OK\r\n"
        s.sendall(resp("GET", "counter"))
        assert read_until(s, b"20\r\n") == b"$2\r\n20\r\n"


def test_monitor_streams_through_sluice(redis_factory, sluice_factory):
    """redis-cli monitor and redis-py's Monitor see the commands other clients send; RESET ends
    the stream as in Redis."""
    import subprocess
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port, plugins=False))
    other = proxy.client()
    cli = subprocess.Popen(["redis-cli", "-p", str(proxy.port), "monitor"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
    try:
        assert cli.stdout.readline().strip() == b"OK"
        for i in range(5):
            other.set(f"seen{i}", "v")
        # The stream also shows what the other connections sent first (HELLO…), in order.
        wanted = [f'"set" "seen{i}" "v"'.encode() for i in range(5)]
        lines = []
        while wanted and len(lines) < 50:
            lines.append(cli.stdout.readline().lower())
            if wanted[0] in lines[-1]:
                wanted.pop(0)
        assert not wanted, lines
    finally:
        cli.kill()
        cli.wait()
    with proxy.client().monitor() as m:
        other.get("seen0")
        command = m.next_command()
        assert command["command"] == "GET seen0", command
    # Raw: the stream, then RESET's reply, and the connection answers as before.
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(resp("MONITOR"))
        assert read_until(s, b"+OK\r\n") == b"+OK\r\n"
        other.set("during", "x")
        assert b'"SET" "during" "x"' in read_until(s, b'"x"\r\n')
        s.sendall(resp("RESET") + resp("PING", "after"))
        data = read_until(s, b"$5\r\nafter\r\n")
        assert data.endswith(b"+RESET\r\n$5\r\nafter\r\n"), data
    assert other.get("during") == b"x"


class OutOfStepBackend:
    """A RESP server written here (not Redis): GET answers from its own table, and `GET trap` is
    answered twice, `$-1` and then an extra `+OK`, as a broken or hostile server might."""

    def __init__(self, values):
        import threading
        self.values = values
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.stopping = False
        self.threads = []
        self.connections = []
        accept = threading.Thread(target=self.accept, daemon=True)
        accept.start()
        self.threads.append(accept)

    def accept(self):
        import threading
        self.listener.settimeout(0.2)
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            self.connections.append(conn)
            t = threading.Thread(target=self.serve, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    @staticmethod
    def parse(buf):
        """(arguments, rest) for the first complete request of `buf`, or (None, buf)."""
        if not buf.startswith(b"*") or b"\r\n" not in buf:
            return None, buf
        head, rest = buf.split(b"\r\n", 1)
        args = []
        for _ in range(int(head[1:])):
            if b"\r\n" not in rest:
                return None, buf
            length_line, rest = rest.split(b"\r\n", 1)
            length = int(length_line[1:])
            if len(rest) < length + 2:
                return None, buf
            args.append(rest[:length])
            rest = rest[length + 2:]
        return args, rest

    def serve(self, conn):
        buf = b""
        try:
            while not self.stopping:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                out = b""
                while True:
                    args, buf = self.parse(buf)
                    if args is None:
                        break
                    name = args[0].upper()
                    if name == b"GET" and args[1] == b"trap":
                        out += b"$-1\r\n+OK\r\n"
                    elif name == b"GET":
                        value = self.values.get(args[1])
                        out += b"$-1\r\n" if value is None else b"$%d\r\n%s\r\n" % (len(value), value)
                    elif name == b"PING":
                        out += b"+PONG\r\n"
                    else:
                        out += b"+OK\r\n"
                conn.sendall(out)
        except OSError:
            return

    def stop(self):
        self.stopping = True
        for c in self.connections:
            try:
                c.close()
            except OSError:
                pass
        self.listener.close()


def read_reply(sock, buf):
    """One RESP2 reply (simple, error, integer, bulk) from `sock`: (reply bytes, rest of buf)."""
    while True:
        if b"\r\n" in buf:
            line, rest = buf.split(b"\r\n", 1)
            if line[:1] != b"$" or line == b"$-1":
                return line, rest
            length = int(line[1:])
            if len(rest) >= length + 2:
                return rest[:length], rest[length + 2:]
        part = sock.recv(65536)
        if not part:
            raise ConnectionError("closed")
        buf += part


def test_a_backend_out_of_step_never_sends_a_client_another_client_s_value(sluice_factory):
    """Several clients GET their own keys over the shared connection while one asks for `trap`,
    which the backend answers twice. Every client gets its own value or an error, never another
    client's; the connection is reset, counted and logged."""
    import threading
    from test_redis_path import metric_value
    clients = 6
    values = {f"key{i}".encode(): f"value-of-client-{i}".encode() for i in range(clients)}
    backend = OutOfStepBackend(values)
    try:
        proxy = sluice_factory(plain_config(backend.port, plugins=False))
        wrong, errors, done = [], [], threading.Event()

        def client(i):
            key, mine = f"key{i}".encode(), values[f"key{i}".encode()]
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
                buf = b""
                for _ in range(300):
                    s.sendall(resp("GET", key) * 4)
                    for _ in range(4):
                        try:
                            reply, buf = read_reply(s, buf)
                        except (ConnectionError, OSError):
                            return
                        if reply.startswith(b"-"):
                            errors.append(reply)
                        elif reply != mine:
                            wrong.append((i, reply))

        def trapper():
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
                buf = b""
                while not done.is_set():
                    time.sleep(0.05)
                    s.sendall(resp("GET", "trap"))
                    try:
                        _, buf = read_reply(s, buf)
                    except (ConnectionError, OSError):
                        return

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        trap = threading.Thread(target=trapper)
        trap.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        done.set()
        trap.join(10)
        assert not wrong, wrong[:5]
        assert metric_value(proxy, "sluice_backend_out_of_step_resets_total") > 0
        assert errors and all(b"out of step" in e for e in errors), errors[:3]
        assert "the backend is out of step with the requests" in proxy.output()
        assert proxy.alive()
    finally:
        backend.stop()


def test_a_backend_out_of_step_on_a_dedicated_connection(sluice_factory):
    """The same check on a client's own connection (after SELECT): the reply that would go to the
    wrong request resets it, and the client gets errors, then is closed, never a shifted value."""
    values = {b"key1": b"value-one", b"key2": b"value-two"}
    backend = OutOfStepBackend(values)
    try:
        proxy = sluice_factory(plain_config(backend.port, plugins=False))
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
            s.sendall(resp("SELECT", "0"))
            assert read_until(s, b"\r\n") == b"+OK\r\n"
            s.sendall(resp("GET", "trap"))
            assert read_until(s, b"\r\n") == b"$-1\r\n"
            time.sleep(0.2)  # the extra +OK is in by now, with nothing waiting
            s.sendall(resp("GET", "key1") + resp("GET", "key2"))
            data = read_until_closed(s)
        assert b"value" not in data, data
        assert b"out of step" in data or data == b"", data
        s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        with s:
            # Pipelined: the extra reply arrives while GET key1 waits for its own.
            s.sendall(resp("SELECT", "0") + resp("GET", "trap") + resp("GET", "key1") + resp("GET", "key2"))
            data = read_until_closed(s)
        # The batch the reply landed in fails as a whole (one error per request), then the close.
        assert b"value" not in data and b"out of step" in data, data
        assert proxy.alive()
    finally:
        backend.stop()
