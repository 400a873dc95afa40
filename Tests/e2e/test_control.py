"""Runtime control (issue 16 section 2): control functions that transforms declare (ABI 1.2), called
through libffi from `sluice ctl` via the admin endpoint, changing the behaviour of connections that
are already open. Real redis-server backends, real redis-py clients, the real sluice binary."""
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest
import redis

from conftest import FIXTURES, PLUGINS, SLUICE, free_port

TOKEN = "a-long-enough-admin-token-0123456789"


def plugin_dir(workdir, *files):
    """A plugin directory holding only the named shared objects (built-ins or fixtures)."""
    d = os.path.join(workdir, "plugins-" + str(free_port()))
    os.makedirs(d)
    for name in files:
        source = os.path.join(PLUGINS, name)
        if not os.path.exists(source):
            source = os.path.join(FIXTURES, name)
        shutil.copy(source, d)
    return d


def control_config(directory, backend_port, steps, admin_port, extra="", token_env=None, more_sinks=""):
    token = f", token_env: {token_env}" if token_env else ""
    return f"""
plugins:
  directory: {directory}
sinks:
  primary: {{ redis: {{ address: 127.0.0.1:{backend_port} }} }}
{more_sinks}chains:
  main:
{steps}    - sink: primary
{extra}sources:
  - redis: {{ listen: 127.0.0.1:{{PORT}}, chain: main }}
admin: {{ listen: 127.0.0.1:{admin_port}{token} }}
"""


def ctl(admin_port, *args, token_env=None, env=None):
    command = [SLUICE, "ctl", args[0], "--admin", f"127.0.0.1:{admin_port}"]
    if token_env:
        command += ["--token-env", token_env]
    command += args[1:]
    return subprocess.run(command, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def http(admin_port, method, path, body=None, token=None):
    """A raw request to the admin endpoint: (status, JSON answer)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{admin_port}{path}", data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def deny_proxy(workdir, redis_factory, sluice_factory):
    backend = redis_factory()
    admin = free_port()
    directory = plugin_dir(workdir, "libsluice-command-filter.so", "libcontrol-probe.so")
    proxy = sluice_factory(control_config(directory, backend.port,
                                          "    - deny: { commands: [flushall] }\n    - probe: {}\n", admin))
    return proxy, admin


def test_deny_list_grows_on_a_connection_opened_before_the_call(deny_proxy):
    proxy, admin = deny_proxy
    client = proxy.client()  # opened, and used, before the call
    assert client.set("k", "v") and client.get("k") == b"v"
    done = ctl(admin, "call", "command-filter.add", "--step", "main[0]", "GET")
    assert done.returncode == 0, done.stderr
    assert "get" in done.stdout and "flushall" in done.stdout
    with pytest.raises(redis.ResponseError, match="command 'get' is denied"):
        client.get("k")
    assert client.set("k", "w")  # the rest still passes
    fresh = proxy.client()
    with pytest.raises(redis.ResponseError, match="denied"):
        fresh.get("k")
    done = ctl(admin, "call", "command-filter.remove", "--step", "main[0]", "get")
    assert done.returncode == 0, done.stderr
    assert client.get("k") == b"w" and fresh.get("k") == b"w"
    listed = ctl(admin, "call", "command-filter.list", "--step", "main[0]")
    assert listed.returncode == 0 and listed.stdout.strip() == "denied: flushall"
    assert proxy.wait_for_output("POST /call: command-filter.add on main[0]")


def test_functions_lists_signatures_and_steps(deny_proxy):
    proxy, admin = deny_proxy
    done = ctl(admin, "functions")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "command-filter.add(const char *command)  steps: main[0]" in lines
    assert "command-filter.list()  steps: main[0]" in lines
    assert ("control-probe.typed(int64_t n, double x, bool flag, const char *text, "
            "const uint8_t *bytes, size_t bytes_len)  steps: main[1]") in lines


def probe_calls(admin):
    done = ctl(admin, "call", "control-probe.calls", "--step", "main[1]")
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


def test_arguments_are_converted_by_the_declared_signature(deny_proxy):
    proxy, admin = deny_proxy
    done = ctl(admin, "call", "control-probe.typed", "--step", "main[1]", "--", "-42", "2.5", "yes", "hello world",
               "raw bytes")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "n=-42 x=2.5 flag=true text=hello world bytes=raw bytes (9)"
    assert probe_calls(admin) == 1


@pytest.mark.parametrize("args, why", [
    (["1", "2.5", "true", "text"], "expected 5 argument(s)"),                       # too few
    (["1", "2.5", "true", "text", "b", "extra"], "expected 5 argument(s)"),         # too many
    (["12abc", "2.5", "true", "text", "b"], "argument 1 (n): expected an integer"),  # not an integer
    (["1.5", "2.5", "true", "text", "b"], "argument 1 (n): expected an integer"),
    (["99999999999999999999", "2.5", "true", "text", "b"], "expected an integer"),  # beyond int64
    (["1", "nan", "true", "text", "b"], "argument 2 (x): expected a finite number"),
    (["1", "2.5", "maybe", "text", "b"], "argument 3 (flag): expected a bool"),
])
def test_wrong_arity_or_types_are_refused_before_any_call(deny_proxy, args, why):
    proxy, admin = deny_proxy
    before = probe_calls(admin)
    done = ctl(admin, "call", "control-probe.typed", "--step", "main[1]", "--", *args)
    assert done.returncode == 2
    assert "refused (nothing was called)" in done.stderr and why in done.stderr
    assert probe_calls(admin) == before  # the plugin never saw the call


def test_unknown_function_step_or_plugin_is_refused(deny_proxy):
    proxy, admin = deny_proxy
    for args, why in [
        (["control-probe.nope", "--step", "main[1]"], "has no control function 'nope'"),
        (["control-probe.calls", "--step", "main[7]"], "there is no step 7"),
        (["control-probe.calls", "--step", "main[2]"], "is a sink, not a transform"),
        (["control-probe.calls", "--step", "other[0]"], "no chain named 'other'"),
        (["control-probe.calls", "--step", "main[0]"], "not 'control-probe'"),
    ]:
        done = ctl(admin, "call", *args)
        assert done.returncode == 2 and why in done.stderr, (args, done.stderr)


def test_a_functions_error_return_is_reported_with_a_non_zero_exit(deny_proxy):
    proxy, admin = deny_proxy
    done = ctl(admin, "call", "control-probe.fail", "--step", "main[1]", "the flux capacitor is cold")
    assert done.returncode == 1
    assert "returned SLUICE_ERROR: the flux capacitor is cold" in done.stderr
    done = ctl(admin, "call", "command-filter.remove", "--step", "main[0]", "hgetall")
    assert done.returncode == 1 and "SLUICE_ERROR_NOT_FOUND" in done.stderr
    assert proxy.alive() and proxy.client().ping()


def test_a_kept_control_handle_is_stale_in_a_later_call(deny_proxy):
    proxy, admin = deny_proxy
    assert ctl(admin, "call", "control-probe.keep", "--step", "main[1]").returncode == 0
    done = ctl(admin, "call", "control-probe.use_kept", "--step", "main[1]")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stale reply: 3, stale publish: 3"  # SLUICE_ERROR_STATE twice


def test_token_required_when_configured(workdir, redis_factory, sluice_factory):
    backend = redis_factory()
    admin = free_port()
    directory = plugin_dir(workdir, "libsluice-command-filter.so", "libcontrol-probe.so")
    env = {"SLUICE_TEST_ADMIN_TOKEN": TOKEN}
    proxy = sluice_factory(control_config(directory, backend.port, "    - deny: { commands: [flushall] }\n    - probe: {}\n",
                                          admin, token_env="SLUICE_TEST_ADMIN_TOKEN"), env=env)
    client = proxy.client()
    assert client.set("k", "v")
    # No token, a wrong one, a wrong scheme: 401 and nothing called.
    assert http(admin, "POST", "/call", {"function": "command-filter.add", "step": "main[0]", "args": ["get"]})[0] == 401
    assert http(admin, "POST", "/call", {"function": "command-filter.add", "step": "main[0]", "args": ["get"]},
                token=TOKEN[:-1] + "x")[0] == 401
    assert http(admin, "GET", "/functions", token="")[0] == 401
    done = ctl(admin, "call", "command-filter.add", "--step", "main[0]", "GET")
    assert done.returncode == 3 and "unauthorized" in done.stderr
    done = ctl(admin, "call", "command-filter.add", "--step", "main[0]", "GET", token_env="WRONG_TOKEN",
               env={"WRONG_TOKEN": "x" * 40})
    assert done.returncode == 3
    assert client.get("k") == b"v"  # nothing was called
    assert proxy.wait_for_output("refused, no token") and proxy.wait_for_output("refused, wrong token")
    done = ctl(admin, "call", "control-probe.calls", "--step", "main[1]", token_env="SLUICE_TEST_ADMIN_TOKEN", env=env)
    assert done.returncode == 0 and done.stdout.strip() == "0"
    done = ctl(admin, "call", "command-filter.add", "--step", "main[0]", "GET", token_env="SLUICE_TEST_ADMIN_TOKEN",
               env=env)
    assert done.returncode == 0, done.stderr
    with pytest.raises(redis.ResponseError, match="denied"):
        client.get("k")


def test_admin_settings_are_checked_with_positions(workdir, redis_factory):
    backend = redis_factory()
    directory = plugin_dir(workdir, "libsluice-command-filter.so")
    cases = [
        ("admin: { listen: 0.0.0.0:9 }\n", "admin.listen: '0.0.0.0' is not a loopback IP address"),
        # a host name is not a loopback address, whatever it resolves to (or starts with)
        ("admin: { listen: 127.attacker.example:9 }\n", "admin.listen: '127.attacker.example' is not a loopback IP address"),
        ("admin: { listen: localhost:9 }\n", "admin.listen: 'localhost' is not a loopback IP address"),
        ("admin: { listen: 127.0.0.1:9, token_env: SLUICE_NOT_SET_ANYWHERE }\n", "environment variable 'SLUICE_NOT_SET_ANYWHERE' is not set"),
        ("admin: { listn: 9 }\n", "admin"),
    ]
    for admin_block, message in cases:
        path = os.path.join(workdir, f"bad-{free_port()}.yaml")
        with open(path, "w") as f:
            f.write(f"""plugins: {{ directory: {directory} }}
sinks: {{ primary: {{ redis: {{ address: 127.0.0.1:{backend.port} }} }} }}
chains: {{ main: [ {{ sink: primary }} ] }}
sources: [ {{ redis: {{ listen: 127.0.0.1:{free_port()}, chain: main }} }} ]
{admin_block}""")
        done = subprocess.run([SLUICE, "check", "--config", path], capture_output=True, text=True, timeout=60)
        assert done.returncode != 0
        assert f"{path}:5:" in done.stdout + done.stderr and message in done.stdout + done.stderr, done.stdout + done.stderr


def test_a_plugin_built_against_abi_1_1_loads_without_control_functions(workdir, redis_factory, sluice_factory):
    backend = redis_factory()
    admin = free_port()
    directory = plugin_dir(workdir, "libminor-1-1.so", "libcontrol-probe.so")
    proxy = sluice_factory(control_config(directory, backend.port, "    - minor-pass: {}\n", admin))
    client = proxy.client()
    assert client.set("k", "v") and client.get("k") == b"v"
    done = ctl(admin, "functions")
    assert done.returncode == 0 and "bait" not in done.stdout and "minor" not in done.stdout
    done = ctl(admin, "call", "minor-1-1.bait", "--step", "main[0]")
    assert done.returncode == 2 and "has no control function 'bait'" in done.stderr
    assert proxy.alive()


def test_reload_starts_from_the_file_again(deny_proxy):
    """A reload builds a new generation from the config file: what control calls changed at run time
    is not carried over (docs/operations.md), and the functions are those of the new generation."""
    proxy, admin = deny_proxy
    assert ctl(admin, "call", "command-filter.add", "--step", "main[0]", "GET").returncode == 0
    done = ctl(admin, "reload")
    assert done.returncode == 0 and "generation 2" in done.stdout, done.stdout + done.stderr
    listed = ctl(admin, "call", "command-filter.list", "--step", "main[0]")
    assert listed.returncode == 0 and listed.stdout.strip() == "denied: flushall"
    fresh = proxy.client()
    assert fresh.set("k", "v") and fresh.get("k") == b"v"


def test_tee_policy_changes_on_a_live_connection(workdir, redis_factory, sluice_factory):
    primary, shadow = redis_factory(), redis_factory()
    admin = free_port()
    directory = plugin_dir(workdir, "libsluice-tee.so")
    proxy = sluice_factory(control_config(
        directory, primary.port, "    - tee: { target: shadow, on_mismatch: ignore }\n", admin,
        more_sinks=f"  shadow: {{ redis: {{ address: 127.0.0.1:{shadow.port} }} }}\n"))
    primary.client().set("k", "primary")
    shadow.client().set("k", "shadow")
    client = proxy.client()
    assert client.get("k") == b"primary"  # ignore: the difference does not matter
    done = ctl(admin, "call", "tee.set_policy", "--step", "main[0]", "fail")
    assert done.returncode == 0 and done.stdout.strip() == "on_mismatch: fail", done.stderr
    with pytest.raises(redis.ResponseError, match="responses differ between primary and shadow"):
        client.get("k")
    assert ctl(admin, "call", "tee.policy", "--step", "main[0]").stdout.strip() == "on_mismatch: fail"
    done = ctl(admin, "call", "tee.set_policy", "--step", "main[0]", "log")
    assert done.returncode == 0, done.stderr
    assert client.get("k") == b"primary"
    assert proxy.wait_for_output("tee: mismatch for GET")
    # A policy the step cannot take is the function's error return; nothing changes.
    done = ctl(admin, "call", "tee.set_policy", "--step", "main[0]", "chain")
    assert done.returncode == 1 and "chain needs mismatch_chain" in done.stderr
    done = ctl(admin, "call", "tee.set_policy", "--step", "main[0]", "sometimes")
    assert done.returncode == 1 and "expected ignore, log, fail or chain, found 'sometimes'" in done.stderr
    assert ctl(admin, "call", "tee.policy", "--step", "main[0]").stdout.strip() == "on_mismatch: log"
    assert client.get("k") == b"primary"


def test_redirect_hot_keys_change_on_a_live_connection(workdir, redis_factory, sluice_factory):
    primary, hot = redis_factory(), redis_factory()
    admin = free_port()
    directory = plugin_dir(workdir, "libsluice-redirect.so")
    proxy = sluice_factory(control_config(
        directory, primary.port, "    - redirect: { target: hot, keys: [listed] }\n", admin,
        more_sinks=f"  hot: {{ redis: {{ address: 127.0.0.1:{hot.port} }} }}\n"))
    primary.client().mset({"user:1": "P", "listed": "P", "other": "P"})
    hot.client().mset({"user:1": "H", "listed": "H", "other": "H"})
    client = proxy.client()
    assert client.get("user:1") == b"P" and client.get("listed") == b"H"
    done = ctl(admin, "call", "redirect.add_pattern", "--step", "main[0]", "user:*")
    assert done.returncode == 0 and done.stdout.strip() == "keys: listed; patterns: user:*", done.stderr
    assert client.get("user:1") == b"H" and client.get("other") == b"P"
    done = ctl(admin, "call", "redirect.add_key", "--step", "main[0]", "other")
    assert done.returncode == 0, done.stderr
    assert client.get("other") == b"H"
    done = ctl(admin, "call", "redirect.set_patterns", "--step", "main[0]", "")
    assert done.returncode == 0 and done.stdout.strip() == "keys: listed, other; patterns: (none)", done.stderr
    assert client.get("user:1") == b"P"
    done = ctl(admin, "call", "redirect.remove_key", "--step", "main[0]", "listed")
    assert done.returncode == 0, done.stderr
    assert client.get("listed") == b"P"
    done = ctl(admin, "call", "redirect.remove_key", "--step", "main[0]", "never-listed")
    assert done.returncode == 1 and "not a listed key" in done.stderr
    assert ctl(admin, "call", "redirect.list", "--step", "main[0]").stdout.strip() == "keys: other; patterns: (none)"


def test_control_calls_under_traffic_lose_nothing(deny_proxy):
    """Publishing runs on every event loop while the hooks serve traffic there: clients on both loops
    keep getting right answers while the deny list changes 20 times, and all see the final list."""
    import threading
    proxy, admin = deny_proxy
    clients = [proxy.client() for _ in range(8)]
    for c in clients:
        c.ping()  # connected (and their instances made) before the first call
    stop = threading.Event()
    failures = []
    done_ops = [0] * len(clients)

    def work(i, c):
        n = 0
        while not stop.is_set():
            try:
                c.set(f"k{i}", n)
                assert c.get(f"k{i}") == str(n).encode()
                n += 1
            except Exception as error:  # noqa: BLE001 - any failure is reported below
                failures.append(repr(error))
                return
        done_ops[i] = n

    threads = [threading.Thread(target=work, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    try:
        for _ in range(10):
            assert ctl(admin, "call", "command-filter.add", "--step", "main[0]", "hgetall").returncode == 0
            assert ctl(admin, "call", "command-filter.remove", "--step", "main[0]", "hgetall").returncode == 0
        assert ctl(admin, "call", "command-filter.add", "--step", "main[0]", "lpush").returncode == 0
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert failures == []
    assert all(n > 0 for n in done_ops)
    for c in clients:
        with pytest.raises(redis.ResponseError, match="command 'lpush' is denied"):
            c.lpush("list", "x")
        assert c.hgetall("nohash") == {}
    assert proxy.alive()


def test_ctl_reports_an_unreachable_endpoint(workdir):
    done = ctl(free_port(), "functions")
    assert done.returncode == 4 and "cannot reach the admin endpoint" in done.stderr


def test_supervised_workers_all_get_the_call(workdir, redis_factory, sluice_factory):
    """With two worker processes the supervisor's admin endpoint forwards each call to both, so
    every client connection changes, whichever worker it landed on."""
    import time
    backend = redis_factory()
    admin = free_port()
    directory = plugin_dir(workdir, "libsluice-command-filter.so")
    proxy = sluice_factory(control_config(directory, backend.port, "    - deny: { commands: [flushall] }\n", admin),
                           extra_args=("--workers", "2"))
    deadline = time.time() + 30
    while True:  # both workers serve their private admin sockets once they are up
        status, answer = http(admin, "POST", "/call", {"function": "command-filter.list", "step": "main[0]"})
        if status == 200 and len(answer["workers"]) == 2:
            break
        assert time.time() < deadline, answer
        time.sleep(0.2)
    assert len(proxy.workers()) == 2
    clients = [proxy.client() for _ in range(16)]
    for c in clients:
        assert c.set("k", "v")
    done = ctl(admin, "call", "command-filter.add", "--step", "main[0]", "GET")
    assert done.returncode == 0, done.stderr
    for c in clients:  # 16 connections over two workers: both workers' connections are among them
        with pytest.raises(redis.ResponseError, match="command 'get' is denied"):
            c.get("k")
    status, answer = http(admin, "POST", "/call", {"function": "command-filter.list", "step": "main[0]"})
    assert status == 200 and [w["result"] for w in answer["workers"]] == ["denied: flushall, get"] * 2
    assert proxy.wait_for_output("forwarded to 2 worker(s): worker 0: 200, worker 1: 200")
    # Refusals come back from the workers unchanged, and nothing is called.
    done = ctl(admin, "call", "command-filter.add", "--step", "main[0]", "GET", "extra")
    assert done.returncode == 2 and "expected 1 argument(s)" in done.stderr
    assert proxy.alive()


def test_a_control_function_that_crashes_is_named_and_the_worker_restarts(deny_proxy):
    import time
    proxy, admin = deny_proxy
    client = proxy.client()
    assert client.set("k", "v")
    done = ctl(admin, "call", "control-probe.crash", "--step", "main[1]")
    assert done.returncode != 0  # the worker died under the call: reported, not answered
    assert proxy.wait_for_output("hook control_function", timeout=10), proxy.output()
    assert "plugin control-probe" in proxy.output()
    deadline = time.time() + 20
    while True:  # the supervisor restarts the worker; the endpoint (the supervisor's) answers again
        done = ctl(admin, "call", "control-probe.calls", "--step", "main[1]")
        if done.returncode == 0:
            break
        assert time.time() < deadline, done.stderr
        time.sleep(0.2)
    assert proxy.client().get("k") == b"v"


def test_admin_options_may_come_before_the_command(deny_proxy):
    """As the issue writes it: sluice ctl --admin HOST:PORT COMMAND."""
    proxy, admin = deny_proxy
    done = subprocess.run([SLUICE, "ctl", "--admin", f"127.0.0.1:{admin}", "call", "command-filter.list",
                           "--step", "main[0]"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "denied: flushall", done.stderr


def test_a_crashing_control_function_kills_at_most_one_of_two_workers(workdir, redis_factory, sluice_factory):
    """The supervisor calls one worker first (a canary); when that worker dies under the call the
    other is not called, so its clients keep their connections."""
    import time
    backend = redis_factory()
    admin = free_port()
    directory = plugin_dir(workdir, "libsluice-command-filter.so", "libcontrol-probe.so")
    proxy = sluice_factory(control_config(directory, backend.port,
                                          "    - deny: { commands: [flushall] }\n    - probe: {}\n", admin),
                           extra_args=("--workers", "2"))
    deadline = time.time() + 30
    while True:  # both workers serve their private admin sockets once they are up
        status, answer = http(admin, "POST", "/call", {"function": "control-probe.calls", "step": "main[1]"})
        if status == 200 and len(answer["workers"]) == 2:
            break
        assert time.time() < deadline, answer
        time.sleep(0.2)
    before = proxy.workers()
    assert len(before) == 2
    import socket

    def ping(sock):
        try:
            sock.sendall(b"PING\r\n")
            return sock.recv(64) == b"+PONG\r\n"
        except OSError:
            return False
    # Raw connections (redis-py would reconnect silently), spread over both workers by SO_REUSEPORT.
    sockets = [socket.create_connection(("127.0.0.1", proxy.port), timeout=10) for _ in range(16)]
    assert all(ping(s) for s in sockets)
    done = ctl(admin, "call", "control-probe.crash", "--step", "main[1]")
    assert done.returncode != 0
    assert "gave no answer" in done.stdout + done.stderr and "Not forwarded to the other workers" in done.stdout + done.stderr, \
        done.stdout + done.stderr
    time.sleep(1)
    assert proxy.output().count("hook control_function") == 1, proxy.output()
    assert len(set(before) & set(proxy.workers())) == 1, (before, proxy.workers())
    kept = sum(ping(s) for s in sockets)  # the connections on the worker that was not called
    for s in sockets:
        s.close()
    assert 0 < kept < 16, kept
    assert proxy.proc.poll() is None  # the supervisor runs on (one worker died, as reported)
