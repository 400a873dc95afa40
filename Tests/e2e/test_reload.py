"""Hot reload (issue 16 §1): SIGHUP re-reads the config and the plugin directory and either refuses
them (the running generation keeps serving) or switches to a new generation that existing client
connections take at their next safe point, without being closed.

Real processes only: redis-server backends, a sluice process, redis-benchmark and redis-py clients.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest
import redis

from conftest import FIXTURES, PLUGINS, free_port, wait_for_port


def config(backend_port, steps="", extra="", sources=None, plugin_dir="{PLUGINS}", grace_ms=10000):
    """A config with sink 'primary', chain 'main' (steps, then the sink) and the given sources."""
    sources = sources or ["127.0.0.1:{PORT}"]
    listen = "".join(f"  - redis: {{ listen: {address}, chain: main }}\n" for address in sources)
    return f"""plugins:
  directory: {plugin_dir}
sinks:
  primary: {{ redis: {{ address: 127.0.0.1:{backend_port} }} }}
chains:
  main:
{steps}    - sink: primary
sources:
{listen}observability:
  metrics: 127.0.0.1:{{METRICS_PORT}}
reload: {{ grace_ms: {grace_ms} }}
{extra}"""


DENY_KEYS = "    - deny: { commands: [keys] }\n"


class Reloads:
    """Rewrites a running sluice's config file and sends it SIGHUP, waiting for the outcome line."""

    def __init__(self, proxy):
        self.proxy = proxy
        self.seen = 0

    def write(self, text):
        text = (text.replace("{PORT}", str(self.proxy.port))
                .replace("{METRICS_PORT}", str(self.proxy.metrics_port))
                .replace("{PLUGINS}", PLUGINS))
        temporary = self.proxy.config_path + ".new"
        with open(temporary, "w") as f:
            f.write(text)
        os.replace(temporary, self.proxy.config_path)

    def reload(self, text=None, expect="reloaded"):
        """Returns the outcome's log text (from its line to the end of the log)."""
        if text is not None:
            self.write(text)
        os.kill(self.proxy.proc.pid, signal.SIGHUP)
        deadline = time.time() + 20
        while time.time() < deadline:
            output = self.proxy.output()
            outcomes = [m.start() for m in re.finditer(r"(reloaded: generation|reload refused)", output)]
            if len(outcomes) > self.seen:
                start = outcomes[self.seen]
                self.seen += 1
                tail = output[start:]
                assert tail.startswith(expect), tail
                return tail
            time.sleep(0.02)
        raise AssertionError("no reload outcome logged:\n" + self.proxy.output()[-3000:])


def metrics(proxy):
    with urllib.request.urlopen(f"http://127.0.0.1:{proxy.metrics_port}/metrics", timeout=5) as r:
        return r.read().decode()


def metric(proxy, name, labels=""):
    pattern = re.escape(name) + (r"\{" + labels + r"\}" if labels else r"(?:\{[^}]*\})?") + r" (?P<value>[0-9.e+-]+)"
    found = re.search(pattern, metrics(proxy))
    return float(found.group("value")) if found else None


def connections_received(backend):
    return int(backend.client().info("stats")["total_connections_received"])


def test_benchmark_during_20_reloads_loses_no_request_and_no_connection(redis_factory, sluice_factory):
    backend = redis_factory()
    plain = config(backend.port)
    denying = config(backend.port, "    - deny: { commands: [flushall] }\n")
    proxy = sluice_factory(plain)
    reloads = Reloads(proxy)
    assert proxy.client().set("key:__rand_int__", "x")
    clients = 20
    bench = subprocess.Popen(
        ["redis-benchmark", "-p", str(proxy.port), "-c", str(clients), "-n", "100000000", "-t", "set,get",
         "-r", "1000", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 10
        while (metric(proxy, "sluice_client_connections") or 0) < clients and time.time() < deadline:
            time.sleep(0.05)
        assert metric(proxy, "sluice_client_connections") == clients
        time.sleep(0.5)  # every event loop has opened its shared backend connection by now
        before = connections_received(backend) + 1  # the next look counts itself
        requests_before = metric(proxy, "sluice_requests_total")
        for i in range(20):
            reloads.reload(denying if i % 2 == 0 else plain)
            time.sleep(0.25)
            assert bench.poll() is None, "redis-benchmark stopped during the reloads"
        requests_during = metric(proxy, "sluice_requests_total") - requests_before
        assert metric(proxy, "sluice_client_connections") == clients
    finally:
        bench.send_signal(signal.SIGINT)
        output, _ = bench.communicate(timeout=10)
    print(f"requests during the 20 reloads: {requests_during:.0f}")
    # redis-benchmark (7.x) exits at the first error reply or closed connection, printing "Error".
    assert "Error" not in output, output[-2000:]
    assert bench.returncode == -signal.SIGINT, (bench.returncode, output[-2000:])
    assert requests_during > 1000
    assert metric(proxy, "sluice_config_generation") == 21
    assert metric(proxy, "sluice_config_reloads_total", 'result="ok"') == 20
    assert metric(proxy, "sluice_config_reloads_total", 'result="refused"') == 0
    # The denying generations ran requests (their deny instances counted them)...
    assert metric(proxy, "sluice_plugin_command_filter_requests_total") > 0
    # ...and the unchanged sink kept its backend connections: not one new connection at the backend.
    assert connections_received(backend) == before
    assert "closing client" not in proxy.output()


def pinned_connections(pool, count):
    connections = [pool.get_connection() for _ in range(count)]
    for c in connections:
        c.send_command("PING")
        assert c.read_response() in (b"PONG", "PONG", True)
    return connections


def command(connection, *args):
    connection.send_command(*args)
    return connection.read_response()


def local_port(connection):
    return connection._sock.getsockname()[1]


def test_pooled_clients_take_a_changed_chain_without_reconnecting(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(config(backend.port))
    reloads = Reloads(proxy)
    pool = redis.ConnectionPool(host="127.0.0.1", port=proxy.port, max_connections=8)
    connections = pinned_connections(pool, 5)
    ports = [local_port(c) for c in connections]
    for c in connections:
        assert command(c, "KEYS", "nothing:*") == []
    reloads.reload(config(backend.port, DENY_KEYS))
    for c in connections:
        with pytest.raises(redis.ResponseError, match="denied"):
            command(c, "KEYS", "nothing:*")
        assert command(c, "SET", "k", "v") in (b"OK", True)
    assert [local_port(c) for c in connections] == ports
    assert pool._created_connections == 5
    reloads.reload(config(backend.port))
    for c in connections:
        assert command(c, "KEYS", "nothing:*") == []
    assert [local_port(c) for c in connections] == ports
    for c in connections:
        pool.release(c)


def test_a_client_keeps_its_database_and_name_across_a_reload(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(config(backend.port))
    reloads = Reloads(proxy)
    client = redis.Redis(host="127.0.0.1", port=proxy.port, db=3, client_name="kept", single_connection_client=True)
    client.set("where", "db3")
    reloads.reload(config(backend.port, DENY_KEYS))
    with pytest.raises(redis.ResponseError, match="denied"):
        client.keys("*")
    assert client.get("where") == b"db3"
    assert client.client_getname() == "kept"
    assert backend.client(db=0).get("where") is None


def test_a_client_with_state_on_a_changed_sink_keeps_it_until_the_grace_period_ends(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(config(backend.port))
    reloads = Reloads(proxy)
    stateful = redis.Redis(host="127.0.0.1", port=proxy.port, db=3, single_connection_client=True, protocol=2)
    stateful.set("where", "db3")
    plain = proxy.client(single_connection_client=True)
    plain.ping()
    # The sink changes (a new reply timeout): its backend connections are new ones, and the
    # stateful client's connection (SELECT 3) cannot follow it there.
    changed = config(backend.port, DENY_KEYS, grace_ms=1500).replace(
        f"127.0.0.1:{backend.port} }}", f"127.0.0.1:{backend.port}, reply_timeout_ms: 20000 }}")
    line = reloads.reload(changed)
    assert "sinks changed: primary" in line.splitlines()[0]
    with pytest.raises(redis.ResponseError, match="denied"):
        plain.keys("*")
    # Still on the old generation: no deny, and still in database 3.
    assert stateful.keys("where") == [b"where"]
    assert stateful.get("where") == b"db3"
    port = local_port(stateful.connection)
    assert proxy.wait_for_output("its backend session is on a sink the reload changed", timeout=6)
    # Closed after its replies; redis-py reconnects (and selects db 3 again) onto the new generation.
    assert stateful.get("where") == b"db3"
    assert local_port(stateful.connection) != port
    with pytest.raises(redis.ResponseError, match="denied"):
        stateful.keys("*")
    assert backend.client(db=3).get("where") == b"db3" and backend.client(db=0).get("where") is None


def test_multi_and_subscribe_keep_the_old_chain_until_they_end(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(config(backend.port))
    reloads = Reloads(proxy)
    pool = redis.ConnectionPool(host="127.0.0.1", port=proxy.port, protocol=2)  # pub/sub messages as replies
    transaction, subscriber, idle = pinned_connections(pool, 3)
    assert command(transaction, "MULTI") in (b"OK", True)
    assert command(transaction, "SET", "t", "1") in (b"QUEUED", "QUEUED")
    subscriber.send_command("SUBSCRIBE", "news")
    assert subscriber.read_response()[0] in (b"subscribe", "subscribe")

    reloads.reload(config(backend.port, DENY_KEYS))
    with pytest.raises(redis.ResponseError, match="denied"):
        command(idle, "KEYS", "*")
    # Inside MULTI: still the old chain (KEYS is queued, not denied), until EXEC.
    assert command(transaction, "KEYS", "*") in (b"QUEUED", "QUEUED")
    result = command(transaction, "EXEC")
    assert result[0] in (b"OK", True) and isinstance(result[1], list)
    with pytest.raises(redis.ResponseError, match="denied"):
        command(transaction, "KEYS", "*")
    # Subscribed: messages still arrive; after UNSUBSCRIBE the next command meets the new chain.
    backend.client().publish("news", "hello")
    assert subscriber.read_response()[2] in (b"hello", "hello")
    subscriber.send_command("UNSUBSCRIBE", "news")
    assert subscriber.read_response()[0] in (b"unsubscribe", "unsubscribe")
    with pytest.raises(redis.ResponseError, match="denied"):
        command(subscriber, "KEYS", "*")
    assert "closing client" not in proxy.output()


def test_a_client_that_never_reaches_a_safe_point_is_closed_after_the_grace_period(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(config(backend.port, grace_ms=1500))
    reloads = Reloads(proxy)
    pool = redis.ConnectionPool(host="127.0.0.1", port=proxy.port, protocol=2)
    subscriber, idle = pinned_connections(pool, 2)
    subscriber.send_command("SUBSCRIBE", "news")
    subscriber.read_response()
    started = time.time()
    reloads.reload(config(backend.port, DENY_KEYS, grace_ms=1500))  # the new config's grace applies
    assert proxy.wait_for_output("end of the reload grace period", timeout=6)
    waited = time.time() - started
    assert 1.3 < waited < 5, waited
    subscriber._sock.settimeout(5)
    assert subscriber._sock.recv(100) == b""  # closed by the proxy (after its replies: none owed)
    # The idle client had moved at once and is still served.
    with pytest.raises(redis.ResponseError, match="denied"):
        command(idle, "KEYS", "*")


def test_a_broken_config_is_refused_with_its_position_and_traffic_continues(redis_factory, sluice_factory):
    backend = redis_factory()
    good = config(backend.port, DENY_KEYS)
    proxy = sluice_factory(good)
    reloads = Reloads(proxy)
    client = proxy.client(single_connection_client=True)
    client.set("a", "1")
    name = os.path.basename(proxy.config_path)

    refused = reloads.reload("sinks: [\n", expect="reload refused")
    assert re.search(re.escape(name) + r":2:1: invalid YAML", refused), refused
    refused = reloads.reload(good.replace("- deny:", "- denny:"), expect="reload refused")
    assert re.search(re.escape(name) + r":7:7: chain 'main': unknown transform 'denny'", refused), refused
    refused = reloads.reload(good.replace("commands: [keys]", "commands: keys"), expect="reload refused")
    assert re.search(re.escape(name) + r":7:\d+: ", refused), refused

    assert client.get("a") == b"1"
    with pytest.raises(redis.ResponseError, match="denied"):
        client.keys("*")  # generation 1's chain still serves
    assert metric(proxy, "sluice_config_generation") == 1
    assert metric(proxy, "sluice_config_reloads_total", 'result="refused"') == 3
    assert proxy.alive()


def test_a_new_source_port_opens_and_a_removed_one_closes(redis_factory, sluice_factory):
    backend = redis_factory()
    extra_port = free_port()
    proxy = sluice_factory(config(backend.port))
    reloads = Reloads(proxy)
    kept = proxy.client(single_connection_client=True)
    kept.ping()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", extra_port), timeout=1).close()

    line = reloads.reload(config(backend.port, sources=["127.0.0.1:{PORT}", f"127.0.0.1:{extra_port}"]))
    assert f"sources added: 127.0.0.1:{extra_port}" in line.splitlines()[0]
    extra = redis.Redis(host="127.0.0.1", port=extra_port, single_connection_client=True)
    assert extra.ping()
    assert kept.ping()

    line = reloads.reload(config(backend.port))
    assert f"sources removed: 127.0.0.1:{extra_port}" in line.splitlines()[0]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", extra_port), timeout=1).close()
    assert kept.ping()
    # A port taken by someone else refuses the reload (with the source's position) and changes nothing.
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the closed clients' TIME_WAIT
        squatter.bind(("127.0.0.1", extra_port))
        squatter.listen()
        refused = reloads.reload(config(backend.port, sources=["127.0.0.1:{PORT}", f"127.0.0.1:{extra_port}"]),
                                 expect="reload refused")
        assert f"cannot listen on 127.0.0.1:{extra_port}" in refused
    assert kept.ping()
    assert metric(proxy, "sluice_config_generation") == 3


def test_a_plugin_replaced_on_disk_is_loaded_as_new_code(redis_factory, sluice_factory, workdir):
    backend = redis_factory()
    plugins = os.path.join(workdir, "plugins")
    os.mkdir(plugins)

    def install(variant):
        # As scripts/build-plugins.sh does: a temporary name in the directory, then rename.
        temporary = os.path.join(plugins, ".libreload-variant.so.tmp")
        shutil.copy(os.path.join(FIXTURES, f"libreload-variant-{variant}.so"), temporary)
        os.replace(temporary, os.path.join(plugins, "libreload-variant.so"))

    install("one")
    text = config(backend.port, "    - reload-variant: {}\n", plugin_dir=plugins)
    proxy = sluice_factory(text)
    reloads = Reloads(proxy)
    client = proxy.client(single_connection_client=True)
    client.set("x", "1")
    port = client.connection._sock.getsockname()[1]
    with pytest.raises(redis.ResponseError, match="reload-variant one"):
        client.execute_command("VARIANT")
    install("two")
    line = reloads.reload()
    assert "plugins changed: reload-variant" in line.splitlines()[0]
    with pytest.raises(redis.ResponseError, match="reload-variant two"):
        client.execute_command("VARIANT")
    assert client.connection._sock.getsockname()[1] == port  # the same connection, moved
    fresh = proxy.client(single_connection_client=True)
    with pytest.raises(redis.ResponseError, match="reload-variant two"):
        fresh.execute_command("VARIANT")
    # Unchanged contents: the same loaded code, no plugin change reported.
    line = reloads.reload()
    assert line.splitlines()[0].endswith("nothing changed")
    with pytest.raises(redis.ResponseError, match="reload-variant two"):
        client.execute_command("VARIANT")


def events(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().split()


def test_an_old_config_is_freed_after_its_last_instance(redis_factory, sluice_factory, workdir):
    backend = redis_factory()
    first, second = os.path.join(workdir, "first"), os.path.join(workdir, "second")

    def counting(path):
        return config(backend.port, f"    - config-counter: {{ file: {path}, instances: true }}\n",
                      plugin_dir=FIXTURES)

    proxy = sluice_factory(counting(first))
    reloads = Reloads(proxy)
    pool = redis.ConnectionPool(host="127.0.0.1", port=proxy.port, protocol=2)
    subscriber, idle = pinned_connections(pool, 2)
    time.sleep(0.2)
    # (the start-up probe of the fixture connected and closed: one pair more; its close and the
    # pool's two opens run on different event loops, so those three come in either order)
    start = ["new", "instance-new", "instance-free", "instance-new", "instance-new"]

    def after_start(seen, rest):
        return seen[:1] == start[:1] and sorted(seen[1:5]) == sorted(start[1:5]) and seen[5:] == rest

    assert after_start(events(first), []), events(first)
    subscriber.send_command("SUBSCRIBE", "news")
    subscriber.read_response()

    reloads.reload(counting(second))
    command(idle, "PING")  # moved at once: its instance of the first config is freed
    time.sleep(0.3)
    assert after_start(events(first), ["instance-free"]), events(first)
    assert events(second) == ["new", "instance-new"]

    subscriber.send_command("UNSUBSCRIBE", "news")
    subscriber.read_response()
    command(subscriber, "PING")  # leaves the first generation: its last instance goes, then its config
    deadline = time.time() + 5
    while "free" not in events(first) and time.time() < deadline:
        time.sleep(0.05)
    assert after_start(events(first), ["instance-free", "instance-free", "free"]), events(first)
    assert events(second) == ["new", "instance-new", "instance-new"]
    proxy.stop()
    assert proxy.proc.returncode == 0
    assert events(second) == ["new", "instance-new", "instance-new", "instance-free", "instance-free", "free"]


def test_sluice_ctl_reload_switches_or_refuses_through_the_admin_endpoint(redis_factory, sluice_factory):
    from conftest import SLUICE
    backend = redis_factory()
    admin = free_port()
    admin_block = f"admin: {{ listen: 127.0.0.1:{admin} }}\n"
    proxy = sluice_factory(config(backend.port, extra=admin_block))
    reloads = Reloads(proxy)
    client = proxy.client(single_connection_client=True)
    assert client.keys("nothing:*") == []

    def ctl_reload():
        return subprocess.run([SLUICE, "ctl", "reload", "--admin", f"127.0.0.1:{admin}"],
                              capture_output=True, text=True, timeout=60)

    reloads.write(config(backend.port, DENY_KEYS, extra=admin_block))
    done = ctl_reload()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "reloaded: generation 2: chains changed: main"
    with pytest.raises(redis.ResponseError, match="denied"):
        client.keys("nothing:*")
    # A control call after the reload reaches the new generation's deny step.
    done = subprocess.run([SLUICE, "ctl", "call", "command-filter.add", "--step", "main[0]", "--admin",
                           f"127.0.0.1:{admin}", "GET"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with pytest.raises(redis.ResponseError, match="denied"):
        client.get("k")

    reloads.write(config(backend.port, DENY_KEYS.replace("deny", "denny"), extra=admin_block))
    done = ctl_reload()
    assert done.returncode == 1
    name = os.path.basename(proxy.config_path)
    assert re.search(re.escape(name) + r":7:7: chain 'main': unknown transform 'denny'", done.stderr), done.stderr
    with pytest.raises(redis.ResponseError, match="denied"):
        client.keys("nothing:*")
    assert metric(proxy, "sluice_config_generation") == 2


def test_a_resp3_subscriber_keeps_its_subscription_across_a_reload(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(config(backend.port))
    reloads = Reloads(proxy)
    pubsub = redis.Redis(host="127.0.0.1", port=proxy.port, protocol=3).pubsub()
    pubsub.subscribe("news")
    first = pubsub.get_message(timeout=5)
    assert first and first["type"] == "subscribe"
    port = local_port(pubsub.connection)
    reloads.reload(config(backend.port, DENY_KEYS))
    time.sleep(0.3)
    for text in ("after-1", "after-2"):
        assert backend.client().publish("news", text) == 1
        message = pubsub.get_message(timeout=5)
        assert message and message["type"] == "message" and message["data"] == text.encode(), message
    assert local_port(pubsub.connection) == port
    pubsub.close()


def test_back_to_back_reloads_under_load_never_run_a_client_on_a_freed_config(redis_factory, sluice_factory, workdir):
    """Reloads with no pause between them: a loop may learn of generation N+1 only after N+2
    already replaced it and freed its configs (no session had started on it). Clients moving at
    that moment (keep-alive ones) and clients connecting then (a new connection per request) must
    start on the current generation, never on the freed configs (instance_new with a freed or NULL
    config: the config-counter fixture would crash or write 'instance-new' after 'free')."""
    backend = redis_factory()

    def counting(i):
        path = os.path.join(workdir, f"generation-{i}")
        return config(backend.port, f"    - config-counter: {{ file: {path}, instances: true }}\n",
                      plugin_dir=FIXTURES)

    proxy = sluice_factory(counting(0))
    reloads = Reloads(proxy)
    assert proxy.client().set("key", "x")
    steady = subprocess.Popen(
        ["redis-benchmark", "-p", str(proxy.port), "-c", "16", "-n", "100000000", "-t", "set,get", "-r", "1000", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    reconnecting = subprocess.Popen(
        ["redis-benchmark", "-p", str(proxy.port), "-c", "4", "-k", "0", "-n", "100000000", "-t", "ping", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 10
        while (metric(proxy, "sluice_client_connections") or 0) < 16 and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        requests_before = metric(proxy, "sluice_requests_total")
        # No pause: the next signal is pending while a reload runs (signals of one kind merge, so
        # this goes on until 30 reloads switched), each reload reading the newest config.
        written = 0
        deadline = time.time() + 60
        while time.time() < deadline:
            if len(re.findall(r"(reloaded: generation|reload refused)", proxy.output())) >= 30:
                break
            written += 1
            reloads.write(counting(written))
            os.kill(proxy.proc.pid, signal.SIGHUP)
            time.sleep(0.002)
        time.sleep(0.5)
        assert proxy.alive(), proxy.output()[-3000:]
        assert steady.poll() is None, "redis-benchmark stopped during the reloads"
        assert reconnecting.poll() is None, "the reconnecting redis-benchmark stopped during the reloads"
        requests_during = metric(proxy, "sluice_requests_total") - requests_before
    finally:
        outputs = []
        for bench in (steady, reconnecting):
            bench.send_signal(signal.SIGINT)
            outputs.append(bench.communicate(timeout=10)[0])
    generations = metric(proxy, "sluice_config_generation")
    print(f"generations: {generations:.0f}, requests during the reloads: {requests_during:.0f}")
    for output in outputs:
        assert "Error" not in output, output[-2000:]
    assert metric(proxy, "sluice_config_reloads_total", 'result="refused"') == 0
    assert generations >= 31
    assert requests_during > 1000
    log = proxy.output()
    assert "configuration generation has ended" not in log, log[-3000:]
    assert "closing client" not in log
    proxy.stop()
    assert proxy.proc.returncode == 0, log[-3000:]
    # Each config was freed once, after every instance of it was: none made after its config_free.
    for i in range(written + 1):
        seen = events(os.path.join(workdir, f"generation-{i}"))
        if "free" in seen:
            assert seen[-1] == "free" and seen.count("free") == seen.count("new"), (i, seen)


def test_a_client_never_moves_to_a_generation_freed_before_its_loop_learnt_of_it(redis_factory, sluice_factory, workdir):
    """The ordering behind the test above, made certain: the event loops are held busy (generation
    2's instance_new stalls) longer than a reload waits for them (2 s), so reloads 3 and 4 run
    while they are; 3 is replaced before anyone started on it and its config is freed. When the
    loops catch up, their view names 3 first: the clients must move to 4, the current one (moving
    to 3 ran instance_new on its freed config: a NULL config, which crashes the fixture)."""
    backend = redis_factory()

    def counting(name, stall_ms=0):
        path = os.path.join(workdir, name)
        return config(backend.port,
                      f"    - config-counter: {{ file: {path}, instances: true, stall_ms: {stall_ms} }}\n",
                      plugin_dir=FIXTURES)

    proxy = sluice_factory(counting("first"))
    reloads = Reloads(proxy)
    pool = redis.ConnectionPool(host="127.0.0.1", port=proxy.port, protocol=2)
    clients = pinned_connections(pool, 4)  # two on each event loop
    reloads.reload(counting("second", stall_ms=1300))  # each loop now spends 2.6 s moving its clients
    reloads.reload(counting("third"))
    reloads.reload(counting("fourth"))
    assert "an event loop is still busy" in proxy.output(), "reload 3 did not run while the loops were busy"
    for c in clients:
        try:
            assert command(c, "PING") in (b"PONG", "PONG", True)
        except redis.ConnectionError as error:
            time.sleep(0.5)  # the supervisor reports a worker that died
            raise AssertionError(f"{error}; sluice's log:\n{proxy.output()[-3000:]}")
    assert proxy.alive(), proxy.output()[-3000:]
    assert events(os.path.join(workdir, "third")) == ["new", "free"], "no instance of the freed config"
    assert events(os.path.join(workdir, "fourth")).count("instance-new") == 4
    assert "configuration generation has ended" not in proxy.output()
    proxy.stop()
    assert proxy.proc.returncode == 0


def test_a_source_whose_protocol_changes_keeps_its_clients_off_the_new_one(redis_factory, sluice_factory):
    """redis -> cassandra at the same listen address: one source removed and another added. The
    redis client does not move onto the cassandra source (its PING would run through a CQL chain);
    it stays on the old generation until the grace period ends, then it is closed; the listener,
    still bound, takes CQL clients (OPTIONS is answered by Sluice itself, no backend needed)."""
    backend = redis_factory()
    proxy = sluice_factory(config(backend.port, grace_ms=1500))
    reloads = Reloads(proxy)
    kept = proxy.client(single_connection_client=True)
    assert kept.ping()
    cql = f"""plugins:
  directory: {{PLUGINS}}
sinks:
  cass: {{ cassandra: {{ address: 127.0.0.1:{free_port()} }} }}
chains:
  cql: [ {{ sink: cass }} ]
sources:
  - cassandra: {{ listen: 127.0.0.1:{{PORT}}, chain: cql }}
observability:
  metrics: 127.0.0.1:{{METRICS_PORT}}
reload: {{ grace_ms: 1500 }}
"""
    line = reloads.reload(cql).splitlines()[0]
    assert f"sources added: 127.0.0.1:{proxy.port}" in line, line
    assert f"sources removed: 127.0.0.1:{proxy.port}" in line, line
    assert kept.ping()  # still on the redis source of generation 1
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(bytes([4, 0, 0, 1, 5, 0, 0, 0, 0]))  # v4 OPTIONS on stream 1
        header = s.recv(9)
        assert header[0] == 0x84 and header[4] == 0x06, header  # SUPPORTED
    assert proxy.wait_for_output("end of the reload grace period", timeout=6)
    kept.connection._sock.settimeout(5)
    assert kept.connection._sock.recv(100) == b""
    assert proxy.alive()
