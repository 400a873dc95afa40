"""Crash containment (issue 16 §3): `sluice run` supervises worker processes that share the
listening ports; a worker killed by a plugin is restarted, the supervisor names the signal, the
plugin and the hook, the other workers' clients never notice, and a plugin that keeps crashing
workers gets its chain quarantined. The crashing plugin is Tests/fixtures/plugins/crashing.c (a
real segfault or abort in a real worker), driven by real clients (redis-py, redis-cli)."""
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from conftest import FIXTURES, PLUGINS, SLUICE, plain_config, wait_for_port


def crashing_plugins(workdir):
    """A plugin directory holding the built-in plugins and the crashing fixture."""
    plugins = os.path.join(workdir, "plugins")
    shutil.copytree(PLUGINS, plugins)
    shutil.copy(os.path.join(FIXTURES, "libcrashing.so"), plugins)
    return plugins


def crash_config(workdir, backend_port, crash_after, supervision="", how="segv"):
    steps = f"    - crash-after: {{ crash_after: {crash_after}, how: {how} }}\n"
    text = plain_config(backend_port, steps).replace("{PLUGINS}", crashing_plugins(workdir))
    return text + supervision


def wait_until(predicate, timeout=10.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def connection_owners(port, pids):
    """Client port -> the worker pid holding the server side of that TCP connection (from
    /proc/net/tcp and each worker's socket descriptors)."""
    inodes = {}
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes[target[8:-1]] = pid
    owners = {}
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].split(":")[1], 16)
            remote_port = int(fields[2].split(":")[1], 16)
            if local_port == port and fields[9] in inodes:
                owners[remote_port] = inodes[fields[9]]
    return owners


def fresh_client(port):
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10, single_connection_client=True,
                         retry=Retry(NoBackoff(), 0))
    client.ping()
    return client


def local_port(client):
    return client.connection._sock.getsockname()[1]


def restart_times(output):
    return [int(ms) for ms in re.findall(r"serving again, (\d+) ms after its predecessor died", output)]


# ---- a plugin that segfaults under load from 50 clients ------------------------------------------
def test_a_worker_crash_loses_only_its_own_connections(workdir, redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(crash_config(workdir, backend.port, 1000, "supervision: { workers: 2 }\n"))
    assert proxy.wait_for_output("supervising 2 worker(s)", timeout=20), proxy.output()
    workers = proxy.workers()
    assert len(workers) == 2

    clients = [fresh_client(proxy.port) for _ in range(50)]
    owners = connection_owners(proxy.port, workers)
    owner_of = [owners[local_port(c)] for c in clients]
    per_worker = {pid: owner_of.count(pid) for pid in workers}
    assert all(per_worker.values()), per_worker  # the kernel spread the 50 connections over both
    # Each worker counts its own requests: the victim's clients go at full speed until it dies;
    # the others (and, after the crash, every client) send two requests every half second, so no
    # other worker reaches the plugin's 1,000th request while the test runs.
    victim = max(workers, key=lambda pid: per_worker[pid])
    survivor = next(pid for pid in workers if pid != victim)

    stop = threading.Event()
    crashed = threading.Event()
    lost = []  # (client index, worker pid that held the lost connection)
    served = [0] * len(clients)
    wrong = []

    def load(i):
        client, owner, n = clients[i], owner_of[i], 0
        while not stop.is_set():
            n += 1
            try:
                key = f"k{i}:{n}"
                client.set(key, str(n))
                if client.get(key) != str(n).encode():
                    wrong.append((i, n))
                served[i] += 1
            except redis.ConnectionError:
                lost.append((i, owner))
                crashed.set()
                owner = None
                while not stop.is_set():  # reconnect: to the other worker, or the restarted one
                    try:
                        client = fresh_client(proxy.port)
                        break
                    except redis.ConnectionError:
                        time.sleep(0.01)
            if owner != victim or crashed.is_set():
                time.sleep(0.5)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    try:
        assert crashed.wait(60), "the plugin never crashed"
        wait_until(lambda: restart_times(proxy.output()), timeout=10, what="the restarted worker")
        time.sleep(1.0)  # the service keeps answering: every client must get through again
        served_before = list(served)
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join(20)

    out = proxy.output()
    restart_ms = restart_times(out)[0]
    victims = [i for i, pid in enumerate(owner_of) if pid == victim]
    print(f"\n50 clients over 2 workers ({per_worker[victim]} on the crashed one): "
          f"{len(lost)} connections lost, worker restarted in {restart_ms} ms (death -> new worker listening), "
          f"{sum(served)} requests answered, {len(wrong)} wrong")
    assert re.search(rf"worker \d \(pid {victim}\) killed by signal 11 \(SIGSEGV\) in plugin crashing "
                     r"\(transform crash-after, hook on_requests, step main\[0\]\); restarting it", out), out
    assert restart_ms < 1000
    assert sorted(i for i, _ in lost) == victims, ("exactly the crashed worker's connections are lost", lost, out)
    assert all(pid == victim for _, pid in lost)
    assert survivor in proxy.workers() and victim not in proxy.workers()
    assert not wrong
    assert all(after > before for after, before in zip(served, served_before)), "every client is served again"


def test_the_supervisor_names_an_abort_and_a_kill_from_outside(workdir, redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(crash_config(workdir, backend.port, 3, how="abort"))
    client = redis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=10, retry=Retry(NoBackoff(), 0))
    worker = proxy.workers()[0]
    with pytest.raises(redis.ConnectionError):
        for n in range(10):
            client.set(f"k{n}", "v")
    assert proxy.wait_for_output("serving again", timeout=10), proxy.output()
    assert (f"worker 0 (pid {worker}) killed by signal 6 (SIGABRT) in plugin crashing (transform crash-after, "
            "hook on_requests, step main[0]); restarting it") in proxy.output()

    restarted = proxy.workers()[0]
    assert restarted != worker
    os.kill(restarted, signal.SIGKILL)
    wait_until(lambda: proxy.output().count("serving again") == 2, what="the second restart")
    assert f"worker 0 (pid {restarted}) killed by signal 9 (SIGKILL) in an unknown place" in proxy.output()
    socket.create_connection(("127.0.0.1", proxy.port), timeout=5).close()  # a worker listens again
    assert proxy.workers() not in ([worker], [restarted], [])
    assert proxy.proc.poll() is None


# ---- quarantine ---------------------------------------------------------------------------------
def test_a_plugin_that_keeps_crashing_gets_its_chain_quarantined(workdir, redis_factory, sluice_factory):
    backend = redis_factory()
    text = crash_config(workdir, backend.port, 2, "supervision: { workers: 1, quarantine_after: 3, quarantine_window_ms: 60000 }\n")
    # A second source on a chain without the crashing plugin keeps working throughout.
    text = text.replace("chains:\n", "chains:\n  plain: [ { sink: primary } ]\n").replace(
        "sources:\n", "sources:\n  - redis: { listen: 127.0.0.1:{PLAIN_PORT}, chain: plain }\n")
    plain_port = wait_free_port()
    proxy = sluice_factory(text.replace("{PLAIN_PORT}", str(plain_port)))
    wait_for_port(plain_port)

    message = None
    for attempt in range(40):
        try:
            client = redis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=10, retry=Retry(NoBackoff(), 0))
            for n in range(5):
                client.set(f"k{n}", "v")
        except redis.ConnectionError:
            time.sleep(0.2)  # the worker died; the next one may not listen yet
        except redis.ResponseError as e:
            message = str(e)
            break
    out = proxy.output()
    assert message == ("sluice: chain 'main' is out of service: its plugin crashing (transform crash-after, "
                       "on_requests) crashed 3 workers within 60000 ms"), (message, out)
    assert out.count("killed by signal 11 (SIGSEGV) in plugin crashing") == 3, out
    assert "quarantine: sluice: chain 'main' is out of service" in out
    # Every request on the chain gets the error, the connection stays open, nothing crashes again.
    client = redis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=10, retry=Retry(NoBackoff(), 0))
    for n in range(20):
        with pytest.raises(redis.ResponseError, match="out of service"):
            client.get(f"k{n}")
    plain = redis.Redis(host="127.0.0.1", port=plain_port, socket_timeout=10)
    assert plain.set("p", "1") and plain.get("p") == b"1"
    with urllib.request.urlopen(f"http://127.0.0.1:{proxy.metrics_port}/metrics", timeout=10) as answer:
        metrics = answer.read().decode()
    assert re.search(r'sluice_worker_crashes_total\{(hook="on_requests",plugin="crashing"|plugin="crashing",hook="on_requests")\} 3', metrics), metrics
    assert re.search(r'sluice_chain_quarantined\{chain="main"\} 1', metrics), metrics
    assert proxy.output().count("killed by signal") == 3


def wait_free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- start-up, stopping and --single-process ------------------------------------------------------
def test_a_refused_config_exits_2_once_without_a_restart_loop(workdir):
    path = os.path.join(workdir, "bad.yaml")
    with open(path, "w") as f:
        f.write("sinks: {\n")
    out = subprocess.run([SLUICE, "run", "--config", path, "--workers", "3"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert out.stderr.count("sluice: configuration refused:") == 1, out.stderr
    assert "bad.yaml:2:1: invalid YAML" in out.stderr


def test_a_port_in_use_exits_2_with_the_same_message_supervised_or_not(workdir, redis_factory):
    backend = redis_factory()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    path = os.path.join(workdir, "taken.yaml")
    with open(path, "w") as f:
        f.write(plain_config(backend.port, plugins=False).replace("{PORT}", str(taken.getsockname()[1]))
                .replace("observability:\n  metrics: 127.0.0.1:{METRICS_PORT}\n", ""))
    outputs = [subprocess.run([SLUICE, "run", "--config", path, *extra], capture_output=True, text=True, timeout=30)
               for extra in ([], ["--single-process"])]
    taken.close()
    assert [o.returncode for o in outputs] == [2, 2]
    assert outputs[0].stderr == outputs[1].stderr and "the address is already in use" in outputs[0].stderr, outputs


def test_sigterm_drains_every_worker_and_exits(workdir, redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port), extra_args=("--workers", "2"))
    assert proxy.wait_for_output("supervising 2 worker(s)", timeout=20), proxy.output()
    workers = proxy.workers()
    blocked = redis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=10)
    result = []
    waiter = threading.Thread(target=lambda: result.append(blocked.blpop("queue", timeout=1)))
    waiter.start()
    time.sleep(0.2)
    proxy.proc.send_signal(signal.SIGTERM)
    waiter.join(10)
    assert proxy.proc.wait(15) == 0
    assert result == [None]  # the blocking command in flight got its reply before its worker stopped
    out = proxy.output()
    assert out.count("draining clients") == 2 and out.count("stopped; every client was answered") == 2, out
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}"), "a worker outlived the supervisor"


def test_single_process_serves_alone_and_a_crash_stops_it(workdir, redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(crash_config(workdir, backend.port, 3), extra_args=("--single-process",))
    assert proxy.workers() == []
    client = redis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=10, retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.ConnectionError):
        for n in range(10):
            client.set(f"k{n}", "v")
    assert proxy.proc.wait(10) == -signal.SIGSEGV  # no supervisor: the crash ends Sluice


def test_sighup_reaches_every_worker(workdir, redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port), extra_args=("--workers", "2"))
    assert proxy.wait_for_output("supervising 2 worker(s)", timeout=20), proxy.output()
    workers = proxy.workers()
    proxy.proc.send_signal(signal.SIGHUP)
    assert proxy.wait_for_output("SIGHUP forwarded to 2 worker(s)"), proxy.output()
    # Each worker reloads in place (docs/architecture.md, "Supervision"): none restarts.
    wait_until(lambda: proxy.output().count("reloaded: generation 2") == 2, what="both workers' reloads")
    assert proxy.workers() == workers and proxy.alive(), proxy.output()
    assert redis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=10).ping()


def test_the_admin_endpoint_answers_while_a_worker_restarts(workdir, redis_factory, sluice_factory):
    backend = redis_factory()
    admin = wait_free_port()
    text = plain_config(backend.port, "    - deny: { commands: [FLUSHALL] }\n") + f"admin: {{ listen: 127.0.0.1:{admin} }}\n"
    proxy = sluice_factory(text, extra_args=("--workers", "2"))
    assert proxy.wait_for_output("supervising 2 worker(s)", timeout=20), proxy.output()
    wait_for_port(admin)

    def ctl(*args):
        return subprocess.run([SLUICE, "ctl", args[0], "--admin", f"127.0.0.1:{admin}", *args[1:]],
                              capture_output=True, text=True, timeout=60)

    os.kill(proxy.workers()[0], signal.SIGKILL)
    listed = ctl("functions")  # the listener is the supervisor's: up while the worker restarts
    assert listed.returncode == 0 and "command-filter.add(const char *command)  steps: main[0]" in listed.stdout, listed
    wait_until(lambda: "serving again" in proxy.output(), what="the restarted worker")
    done = ctl("call", "command-filter.list", "--step", "main[0]")
    assert done.returncode == 0 and "denied: flushall" in done.stdout, (done, proxy.output())


def test_a_restart_that_fails_before_ready_is_retried_with_a_back_off(workdir, redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port), extra_args=("--workers", "2"))
    assert proxy.wait_for_output("supervising 2 worker(s)", timeout=20), proxy.output()
    with open(proxy.config_path) as f:
        good = f.read()
    with open(proxy.config_path, "w") as f:
        f.write("sinks: {\n")  # the file on disk breaks; the running workers do not care
    killed, survivor = proxy.workers()
    os.kill(killed, signal.SIGKILL)
    wait_until(lambda: "before it was ready; next try in 2000 ms" in proxy.output(), timeout=15,
               what="the second failed restart")
    out = proxy.output()
    assert f"(pid {killed}) killed by signal 9 (SIGKILL)" in out
    assert "before it was ready; next try in 1000 ms" in out  # not a tight loop: 1 s, then 2 s, ...
    assert out.count("sluice: configuration refused:") == 2
    assert survivor in proxy.workers() and proxy.proc.poll() is None
    assert redis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=10).ping()  # the other worker serves
    with open(proxy.config_path, "w") as f:
        f.write(good)
    wait_until(lambda: "serving again" in proxy.output(), timeout=15, what="the restart once the file is fixed")
    assert len(proxy.workers()) == 2


# ---- signals while workers start, and with the admin endpoint's thread in the supervisor --------
def first_worker_spawned(proxy, timeout=10.0):
    """Polls (1 ms) until the supervisor spawned a worker; returns as soon as one exists, long
    before the worker's own start-up (a debug binary's load alone takes several ms) is over."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proxy.workers():
            return
        time.sleep(0.001)
    raise AssertionError("no worker spawned: " + proxy.output())


@pytest.mark.parametrize("attempt", range(3))
def test_a_sighup_while_a_worker_starts_is_a_reload_once_it_serves(workdir, redis_factory, sluice_factory, attempt):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port), extra_args=("--workers", "2"), expect_start=False)
    first_worker_spawned(proxy)
    proxy.proc.send_signal(signal.SIGHUP)  # forwarded to worker 0, still starting
    assert proxy.wait_for_output("supervising 2 worker(s)", timeout=20), proxy.output()
    wait_until(lambda: "reloaded: generation 2" in proxy.output(), what="the reload once worker 0 serves")
    assert proxy.alive(), proxy.output()
    assert redis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=10).ping()
    proxy.proc.send_signal(signal.SIGTERM)
    assert proxy.proc.wait(15) == 0, proxy.output()


def test_a_sigterm_while_the_first_worker_starts_stops_cleanly(workdir, redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(plain_config(backend.port), extra_args=("--workers", "2"), expect_start=False)
    first_worker_spawned(proxy)
    proxy.proc.send_signal(signal.SIGTERM)
    assert proxy.proc.wait(20) == 0, proxy.output()
    assert "killed by signal" not in proxy.output()


def test_sighups_with_the_admin_endpoint_never_kill_the_supervisor(workdir, redis_factory, sluice_factory):
    # The admin endpoint's event loop is a thread of the supervisor: it must not take a SIGHUP
    # (default action: the supervisor dies, and its workers with it) while the main thread is
    # between two sigtimedwait calls.
    backend = redis_factory()
    admin = wait_free_port()
    text = plain_config(backend.port) + f"admin: {{ listen: 127.0.0.1:{admin} }}\n"
    proxy = sluice_factory(text, extra_args=("--workers", "2"))
    assert proxy.wait_for_output("supervising 2 worker(s)", timeout=20), proxy.output()
    wait_for_port(admin)
    workers = proxy.workers()
    # A stream of SIGHUPs for a second: some arrive while the main thread forwards the previous
    # one (a signal pending already is merged, so bursts alone would not do).
    end = time.time() + 1.0
    while time.time() < end and proxy.proc.poll() is None:
        proxy.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert proxy.proc.poll() is None, proxy.output()[-3000:]
    assert proxy.workers() == workers and proxy.alive(), proxy.output()
    assert redis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=10).ping()
    proxy.proc.send_signal(signal.SIGTERM)
    assert proxy.proc.wait(15) == 0, proxy.output()


def test_a_plugin_crashing_in_config_new_gets_its_chain_quarantined_even_before_ready(workdir, redis_factory, sluice_factory):
    # The config on disk gains a step whose config_new segfaults; a SIGHUP makes the worker
    # reload it (crash 1, while serving), and its restart crashes in config_new again before it is
    # ready (crash 2): that one counts too, the chain is quarantined, and the next restart skips
    # the quarantined chain's config_new and serves (the chain's requests get the error).
    backend = redis_factory()
    supervision = "supervision: { workers: 1, quarantine_after: 2, quarantine_window_ms: 60000 }\n"
    text = crash_config(workdir, backend.port, 1000, supervision)
    text = text.replace("chains:\n", "chains:\n  plain: [ { sink: primary } ]\n").replace(
        "sources:\n", "sources:\n  - redis: { listen: 127.0.0.1:{PLAIN_PORT}, chain: plain }\n")
    plain_port = wait_free_port()
    proxy = sluice_factory(text.replace("{PLAIN_PORT}", str(plain_port)))
    wait_for_port(plain_port)
    with open(proxy.config_path) as f:
        good = f.read()
    with open(proxy.config_path, "w") as f:
        f.write(good.replace("crash_after: 1000, how: segv", "crash_after: 1000, in: config_new"))
    proxy.proc.send_signal(signal.SIGHUP)
    try:
        wait_until(lambda: "serving again" in proxy.output(), timeout=20, what="a worker serving again")
    except AssertionError:
        raise AssertionError(proxy.output())
    out = proxy.output()
    assert out.count("killed by signal 11 (SIGSEGV) in plugin crashing (transform crash-after, hook config_new, step main[0])") == 2, out
    assert "before it was ready; next try in 1000 ms" in out
    assert ("quarantine: sluice: chain 'main' is out of service: its plugin crashing (transform crash-after, "
            "config_new) crashed 2 workers within 60000 ms") in out, out
    client = redis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=10, retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.ResponseError, match="chain 'main' is out of service"):
        client.get("k")
    plain = redis.Redis(host="127.0.0.1", port=plain_port, socket_timeout=10)
    assert plain.set("p", "1") and plain.get("p") == b"1"
    assert proxy.proc.poll() is None and proxy.output().count("killed by signal") == 2


def test_a_crash_in_a_control_function_does_not_count_toward_quarantine(workdir, redis_factory, sluice_factory):
    # An operator's call that crashes a worker is not the chain's traffic: with quarantine_after: 1
    # the chain would otherwise be out of service after one such call.
    backend = redis_factory()
    admin = wait_free_port()
    plugins = os.path.join(workdir, "plugins")
    shutil.copytree(PLUGINS, plugins)
    shutil.copy(os.path.join(FIXTURES, "libcontrol-probe.so"), plugins)
    text = (plain_config(backend.port, "    - probe: {}\n").replace("{PLUGINS}", plugins)
            + f"admin: {{ listen: 127.0.0.1:{admin} }}\n"
            + "supervision: { workers: 1, quarantine_after: 1, quarantine_window_ms: 60000 }\n")
    proxy = sluice_factory(text)
    wait_for_port(admin)
    done = subprocess.run([SLUICE, "ctl", "call", "--admin", f"127.0.0.1:{admin}", "control-probe.crash", "--step", "main[0]"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0, done  # the worker died under the call
    try:
        wait_until(lambda: "serving again" in proxy.output(), timeout=20, what="the restarted worker")
    except AssertionError:
        raise AssertionError(proxy.output())
    out = proxy.output()
    assert "hook control_function" in out and "quarantine" not in out, out
    client = redis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=10)
    assert client.set("k", "v") and client.get("k") == b"v"
    with urllib.request.urlopen(f"http://127.0.0.1:{proxy.metrics_port}/metrics", timeout=10) as answer:
        metrics = answer.read().decode()
    assert re.search(r'sluice_worker_crashes_total\{(hook="control_function",plugin="control-probe"|plugin="control-probe",hook="control_function")\} 1', metrics), metrics
