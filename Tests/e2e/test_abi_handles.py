"""ABI 1.1 safety, with fixture plugins written in C that misuse the ABI on purpose (see
Tests/fixtures/plugins): stale handles, calls the plugin never completes, sends that take too long,
nulls for RESP3 clients, and config_free."""
import os
import socket
import subprocess
import time

import pytest
import redis

from conftest import FIXTURES, SLUICE, free_port


def fixture_config(backend_port, steps, extra_plugins=""):
    return f"""
plugins:
  directory: {FIXTURES}
{extra_plugins}sinks:
  primary: {{ redis: {{ address: 127.0.0.1:{backend_port} }} }}
chains:
  main:
{steps}    - sink: primary
sources:
  - redis: {{ listen: 127.0.0.1:{{PORT}}, chain: main }}
"""


def wait_for_status(r, expected, timeout=5.0):
    """LASTSTATUS of a fixture, once its delayed misuse ran (timers run late on a loaded machine)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if r.execute_command("LASTSTATUS") == expected:
            return True
        time.sleep(0.05)
    return False


# ---- bug 1: handles that cross the ABI are safe to misuse --------------------------------------

def test_a_kept_call_handle_never_completes_a_later_call(redis_factory, sluice_factory):
    # KEEP is answered at once (its call object goes back to the host for reuse) and its handle is
    # completed again 100 ms later, while SLOW - the next batch, on the reused storage - waits for
    # its own answer at 300 ms. Before safe handles, the stale call_fail answered SLOW.
    backend = redis_factory()
    proxy = sluice_factory(fixture_config(backend.port, "    - stale-handles: {}\n"))
    r = proxy.client()
    for _ in range(3):
        assert r.execute_command("KEEP") == b"kept"
        assert r.execute_command("SLOW") == b"slow-done"
        assert r.execute_command("LASTSTATUS") == 3  # SLUICE_ERROR_STATE for the stale completion
    assert r.set("k", "v") and r.get("k") == b"v"
    assert proxy.alive()
    assert proxy.wait_for_output("call_fail: refused a call handle")


def test_stale_batch_and_timer_handles_are_refused_not_dereferenced(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(fixture_config(backend.port, "    - stale-handles: {}\n"))
    r = proxy.client()
    for round in range(3):
        # an owned batch freed twice, then written to (SLUICE_ERROR_STATE = 3) and counted (0)
        assert r.execute_command("STALEBATCH") == b"put=3 count=0"
        # the lent request batch, read 50 ms after its call completed
        assert wait_for_status(r, 3)
        if round == 0:
            assert proxy.wait_for_output("batch_free: refused a batch handle")
            time.sleep(1.1)  # refusals are logged at most once a second
        # a fired timer and a call handle posing as a timer, cancelled
        assert r.execute_command("STALETIMER") == b"survived"
        if round == 0:
            assert proxy.wait_for_output("timer_cancel: refused a timer handle")
    assert r.ping() and proxy.alive()


# ---- the call deadline --------------------------------------------------------------------------

def test_a_call_the_plugin_never_completes_fails_at_the_deadline(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(fixture_config(backend.port, "    - forgets: {}\n",
                                          extra_plugins="  call_deadline_ms: 300\n"))
    r = proxy.client()
    started = time.time()
    with pytest.raises(redis.ResponseError) as e:
        r.execute_command("FORGET")
    assert "forgets: the transform did not answer within 300 ms (sluice call deadline)" in str(e.value)
    assert 0.25 < time.time() - started < 5
    # the connection goes on
    pipe = r.pipeline(transaction=False)
    pipe.set("a", "1").get("a")
    assert pipe.execute() == [True, b"1"]
    # FORGETLATE's completion at 600 ms comes after its deadline: refused
    with pytest.raises(redis.ResponseError):
        r.execute_command("FORGETLATE")
    assert wait_for_status(r, 3)
    # call_set_deadline(call, 0): this call may take longer than the host's deadline
    assert r.execute_command("NODEADLINE") == b"patient"
    assert proxy.alive()


def test_a_call_deadline_of_zero_disables_it(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(fixture_config(backend.port, "    - forgets: {}\n",
                                          extra_plugins="  call_deadline_ms: 0\n"))
    r = redis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=1)
    with pytest.raises(redis.TimeoutError):
        r.execute_command("FORGET")
    assert proxy.alive()


# ---- send with a timeout and a cancel -----------------------------------------------------------

def test_send_times_out_and_late_responses_are_dropped(redis_factory, sluice_factory):
    # With a call deadline of 300 ms: a call whose transform waits for a send of its own (here up
    # to 2 s) is not forgotten, and does not expire while the send is in flight.
    backend = redis_factory()
    proxy = sluice_factory(fixture_config(backend.port, "    - slow-send: { target: primary }\n",
                                          extra_plugins="  call_deadline_ms: 300\n"))
    r = proxy.client()
    started = time.time()
    reply = r.execute_command("SENDSLOW", 200, 1).decode()
    assert reply == "timeout 7 send to 'primary' timed out after 200 ms", reply  # 7 = SLUICE_ERROR_TIMEOUT
    assert time.time() - started < 0.9
    # BLPOP's own answer arrives at about 1 s and must not be taken for a later request's
    assert r.execute_command("SENDSLOW", 3000, 1) == b"completed"
    assert r.set("after", "x") and r.get("after") == b"x"
    assert proxy.alive()


def test_a_cancelled_send_never_completes(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(fixture_config(backend.port, "    - slow-send: { target: primary }\n"))
    r = proxy.client()
    assert r.execute_command("SENDCANCEL") == b"cancel=0 again=3"
    time.sleep(1.3)  # the BLPOP's answer arrives meanwhile
    assert r.execute_command("COMPLETIONS") == 0
    assert r.set("after", "x") and r.get("after") == b"x"
    assert proxy.alive()


# ---- bug 3: a null reply is encoded for the client's protocol -----------------------------------

def read_reply(sock, expected_length, timeout=5):
    sock.settimeout(timeout)
    data = b""
    while len(data) < expected_length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_null_replies_follow_the_clients_protocol(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(fixture_config(backend.port, "    - answers-null: {}\n"))
    # redis-py 8 speaking RESP3 (it sends HELLO 3 first): a '$-1' here would hang its parser
    r3 = redis.Redis(host="127.0.0.1", port=proxy.port, protocol=3, socket_timeout=5)
    assert r3.execute_command("NULLME") is None
    r3.set("sluice:null", "not null")
    assert r3.get("sluice:null") is None  # replaced in on_responses
    assert r3.set("k", "v") and r3.get("k") == b"v"
    # the bytes on the wire, RESP3 and RESP2
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    sock.sendall(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")
    time.sleep(0.2)
    sock.recv(65536)
    sock.sendall(b"*1\r\n$6\r\nNULLME\r\n*2\r\n$3\r\nGET\r\n$11\r\nsluice:null\r\n")
    assert read_reply(sock, 6) == b"_\r\n_\r\n"
    sock.close()
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    sock.sendall(b"*1\r\n$6\r\nNULLME\r\n*2\r\n$3\r\nGET\r\n$11\r\nsluice:null\r\n")
    assert read_reply(sock, 10) == b"$-1\r\n$-1\r\n"
    sock.close()
    r2 = redis.Redis(host="127.0.0.1", port=proxy.port, protocol=2, socket_timeout=5)
    assert r2.execute_command("NULLME") is None


# ---- bug 4: config_free -------------------------------------------------------------------------

def counter_config(backend_port, path, fail=False, listen_port=None):
    steps = f"    - config-counter: {{ file: {path} }}\n    - config-counter: {{ file: {path} }}\n"
    if fail:
        steps += f"    - config-counter: {{ file: {path}, fail: true }}\n"
    config = fixture_config(backend_port, steps)
    if listen_port is not None:
        config = config.replace("{PORT}", str(listen_port))
    return config


def events(path):
    with open(path) as f:
        return f.read().split()


def test_config_free_runs_at_shutdown(redis_factory, sluice_factory, workdir):
    backend = redis_factory()
    path = os.path.join(workdir, "events")
    proxy = sluice_factory(counter_config(backend.port, path))
    assert proxy.client().ping()
    assert events(path) == ["new", "new"]
    proxy.stop()
    assert proxy.proc.returncode == 0
    assert events(path) == ["new", "new", "free", "free"]


def test_config_free_runs_after_a_config_error_and_in_check(redis_factory, workdir):
    backend = redis_factory()
    path = os.path.join(workdir, "events")
    config_path = os.path.join(workdir, "refused.yaml")
    with open(config_path, "w") as f:
        f.write(counter_config(backend.port, path, fail=True, listen_port=free_port()))
    run = subprocess.run([SLUICE, "run", "--config", config_path], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "refused on purpose" in run.stderr
    # the two configs that were made are freed; the refused one never existed
    assert events(path) == ["new", "new", "refused", "free", "free"]
    os.remove(path)
    with open(config_path, "w") as f:
        f.write(counter_config(backend.port, path, listen_port=free_port()))
    check = subprocess.run([SLUICE, "check", "--config", config_path], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert events(path) == ["new", "new", "free", "free"]


def test_config_free_runs_when_start_up_fails_after_configuration(redis_factory, workdir):
    backend = redis_factory()
    path = os.path.join(workdir, "events")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    config_path = os.path.join(workdir, "taken.yaml")
    with open(config_path, "w") as f:
        f.write(counter_config(backend.port, path, listen_port=taken.getsockname()[1]))
    run = subprocess.run([SLUICE, "run", "--config", config_path], capture_output=True, text=True, timeout=60)
    taken.close()
    assert run.returncode != 0
    assert events(path) == ["new", "new", "free", "free"]


# ---- SluiceSDK: hooks that throw, statuses that are not dropped, huge commands ------------------
# (Tests/fixtures/swift-plugin, a Swift transform built on SluiceSDK)

def test_swift_hooks_may_throw_and_statuses_are_not_dropped(redis_factory, sluice_factory):
    backend = redis_factory()
    proxy = sluice_factory(fixture_config(backend.port, "    - sdk-promises: {}\n"))
    r = proxy.client()
    with pytest.raises(redis.ResponseError) as e:
        r.execute_command("THROWME")
    assert "sdk-promises: thrown on purpose" in str(e.value)
    with pytest.raises(redis.ResponseError) as e:
        r.execute_command("BADINDEX")
    assert "sdk-promises: redis_put_reply: SLUICE_ERROR_INVALID_ARGUMENT" in str(e.value)
    assert r.execute_command("THROWAFTER") == b"answered"
    assert proxy.wait_for_output("onRequests threw after completing its call: thrown after answering")
    assert r.set("k", "v") and r.get("k") == b"v"
    assert proxy.alive()


def test_a_swift_transform_rewrites_an_mset_of_100000_pairs(redis_factory, sluice_factory):
    # SluiceSDK's putCommand used to recurse once per argument: this killed the host (exit 139).
    backend = redis_factory()
    proxy = sluice_factory(fixture_config(backend.port, "    - sdk-promises: {}\n"))
    r = proxy.client()
    assert r.execute_command("BIGMSET", 100000) == b"OK"
    assert backend.client().dbsize() == 100000
    assert backend.client().get("big:99999") == b"99999"
    assert proxy.alive()
