"""Issue 15's protect transform (Plugins/protect, a Swift package of its own using swift-crypto's
AES-GCM), loaded from libsluice-protect.so through the C ABI, driven by redis-py (RESP2 and RESP3)
and redis-cli against real redis-server processes. Values of protected keys are read back through
Sluice as plaintext and straight from redis-server as ciphertext."""
import base64
import os
import re
import subprocess
import urllib.request

import pytest
import redis

from conftest import PLUGINS, SLUICE, free_port, plain_config

# Two AES-256 keys, generated per test run (the tests never depend on their bytes).
K1 = base64.b64encode(os.urandom(32)).decode()
K2 = base64.b64encode(os.urandom(32)).decode()
MAGIC = b"\x00SLP\x01"


def header(key_id):
    """The start of a value protect wrote with key `key_id` (docs/transforms/protect.md)."""
    return MAGIC + bytes([len(key_id)]) + key_id.encode()


def protect_step(key_id="k1", keys=None, patterns='["p:*", "secret"]'):
    keys = keys or {"k1": "PROTECT_K1"}
    entries = ", ".join(f"{name}: {{ env: {var} }}" for name, var in keys.items())
    return f"    - protect: {{ patterns: {patterns}, key_id: {key_id}, keys: {{ {entries} }} }}\n"


KEY_ENV = {"PROTECT_K1": K1, "PROTECT_K2": K2}


def start(sluice_factory, backend, step=None):
    return sluice_factory(plain_config(backend.port, step or protect_step()), env=KEY_ENV)


def metric(proxy, name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{proxy.metrics_port}/metrics", timeout=5).read().decode()
    return sum(float(l.split()[-1]) for l in text.splitlines()
               if l.startswith(name) and l[len(name):len(name) + 1] in ("{", " "))


def redis_cli(port, *args, protocol=2):
    extra = ["-3"] if protocol == 3 else []
    out = subprocess.run(["redis-cli", "-p", str(port), *extra, *args], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def backend(redis_factory):
    return redis_factory()


@pytest.mark.parametrize("protocol", [2, 3])
def test_string_family_round_trips_and_redis_holds_ciphertext(backend, sluice_factory, protocol):
    proxy = start(sluice_factory, backend)
    r = proxy.client(protocol=protocol)
    direct = backend.client()
    assert r.set("p:a", "alpha")
    assert r.get("p:a") == b"alpha"
    stored = direct.get("p:a")
    assert stored.startswith(header("k1")) and b"alpha" not in stored
    assert len(stored) == len(header("k1")) + 12 + len("alpha") + 16
    # Keys that match no pattern are left alone, byte for byte.
    assert r.set("plain", "visible") and direct.get("plain") == b"visible"
    assert r.set("secret", b"\x00\r\n binary \xff")
    assert r.get("secret") == b"\x00\r\n binary \xff"
    assert direct.get("secret").startswith(header("k1"))

    assert r.getset("p:a", "beta") == b"alpha"
    assert r.set("p:a", "gamma", get=True) == b"beta"
    assert r.getex("p:a", ex=100) == b"gamma" and 0 < direct.ttl("p:a") <= 100
    assert r.setex("p:b", 100, "bee") and r.get("p:b") == b"bee"
    assert r.psetex("p:c", 100000, "sea") and r.get("p:c") == b"sea"
    assert r.setnx("p:d", "dee") and not r.setnx("p:d", "other")
    assert r.get("p:d") == b"dee"
    assert r.getdel("p:d") == b"dee" and direct.exists("p:d") == 0
    assert r.get("p:missing") is None
    assert r.set("p:e", "") and r.get("p:e") == b""
    for key in ("p:a", "p:b", "p:c", "p:e"):
        assert direct.get(key).startswith(header("k1")), key

    assert r.mset({"p:m1": "one", "plain2": "two", "p:m2": "three"})
    assert direct.get("plain2") == b"two"
    assert direct.get("p:m1").startswith(header("k1")) and direct.get("p:m2").startswith(header("k1"))
    assert r.mget("p:m1", "plain2", "p:nothing", "p:m2", "nothing") == [b"one", b"two", None, b"three", None]
    assert r.msetnx({"p:n1": "x1", "p:n2": "x2"})
    assert r.mget("p:n1", "p:n2") == [b"x1", b"x2"]
    assert direct.get("p:n1").startswith(header("k1"))
    # A large value survives too (its ciphertext is 28 + 2 + len("k1") bytes longer).
    big = os.urandom(1 << 20)
    assert r.set("p:big", big) and r.get("p:big") == big
    assert metric(proxy, "sluice_plugin_protect_encrypted_total") >= 12
    assert metric(proxy, "sluice_plugin_protect_decrypted_total") >= 12


@pytest.mark.parametrize("protocol", [2, 3])
def test_hash_family_round_trips_and_redis_holds_ciphertext(backend, sluice_factory, protocol):
    proxy = start(sluice_factory, backend)
    r = proxy.client(protocol=protocol)
    direct = backend.client()
    assert r.hset("p:h", mapping={"f1": "v1", "f2": "v2"}) == 2
    assert r.hsetnx("p:h", "f3", "v3") and not r.hsetnx("p:h", "f3", "other")
    assert r.hmset("p:h", {"f4": "v4"})
    assert r.hget("p:h", "f1") == b"v1"
    assert r.hget("p:h", "nope") is None
    assert r.hmget("p:h", "f1", "nope", "f3") == [b"v1", None, b"v3"]
    assert r.hgetall("p:h") == {b"f1": b"v1", b"f2": b"v2", b"f3": b"v3", b"f4": b"v4"}
    assert sorted(r.hvals("p:h")) == [b"v1", b"v2", b"v3", b"v4"]
    # Field names stay readable; every value is ciphertext.
    stored = direct.hgetall("p:h")
    assert sorted(stored) == [b"f1", b"f2", b"f3", b"f4"]
    assert all(v.startswith(header("k1")) for v in stored.values())
    assert r.hgetall("p:empty") == {}
    # Many values in one command (rebuilt once, not copied per value).
    wide = {f"f{i}".encode(): f"value {i}".encode() for i in range(2000)}
    assert r.hset("p:wide", mapping=wide) == 2000
    assert r.hgetall("p:wide") == wide
    assert all(v.startswith(header("k1")) for v in direct.hvals("p:wide"))
    # An unprotected hash is untouched.
    r.hset("h", "f", "v")
    assert direct.hget("h", "f") == b"v"


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_cli_round_trip(backend, sluice_factory, protocol):
    proxy = start(sluice_factory, backend)
    assert redis_cli(proxy.port, "SET", "p:cli", "hello", protocol=protocol).strip() == b"OK"
    assert redis_cli(proxy.port, "GET", "p:cli", protocol=protocol).strip() == b"hello"
    assert redis_cli(proxy.port, "HSET", "p:clih", "f", "v", "g", "w", protocol=protocol).strip().endswith(b"2")
    out = redis_cli(proxy.port, "HGETALL", "p:clih", protocol=protocol)
    assert b"v" in out and b"w" in out and b"SLP" not in out
    assert redis_cli(backend.port, "--no-raw", "GET", "p:cli").startswith(b'"\\x00SLP\\x01\\x02k1')
    assert redis_cli(proxy.port, "--no-raw", "APPEND", "p:cli", "x", protocol=protocol).startswith(b"(error) ERR protect:")


def test_key_rotation_old_values_still_read_new_writes_use_the_current_key(backend, sluice_factory):
    direct = backend.client()
    first = start(sluice_factory, backend)
    r = first.client()
    r.set("p:old", "written with k1")
    r.hset("p:oldh", "f", "hash k1")
    first.stop()
    assert direct.get("p:old").startswith(header("k1"))

    second = start(sluice_factory, backend,
                   protect_step(key_id="k2", keys={"k1": "PROTECT_K1", "k2": "PROTECT_K2"}))
    r = second.client()
    assert r.get("p:old") == b"written with k1"
    assert r.hget("p:oldh", "f") == b"hash k1"
    r.set("p:new", "written with k2")
    assert direct.get("p:new").startswith(header("k2"))
    assert direct.get("p:old").startswith(header("k1"))  # reading does not re-encrypt
    assert r.mget("p:old", "p:new") == [b"written with k1", b"written with k2"]
    second.stop()

    # Without k1 configured, the old value is refused with a clear error (never ciphertext).
    third = start(sluice_factory, backend, protect_step(key_id="k2", keys={"k2": "PROTECT_K2"}))
    r = third.client()
    with pytest.raises(redis.ResponseError, match="key id 'k1' is not configured"):
        r.get("p:old")
    assert r.get("p:new") == b"written with k2"


@pytest.mark.parametrize("protocol", [2, 3])
def test_tampered_or_foreign_values_give_an_error_never_garbage(backend, sluice_factory, protocol):
    proxy = start(sluice_factory, backend)
    r = proxy.client(protocol=protocol)
    direct = backend.client()
    r.set("p:t", "original")
    stored = bytearray(direct.get("p:t"))
    stored[-20] ^= 0x01  # one bit of the ciphertext
    direct.set("p:t", bytes(stored))
    with pytest.raises(redis.ResponseError, match="value of key 'p:t' cannot be decrypted: authentication failed"):
        r.get("p:t")
    # The key id in the header is authenticated too.
    r.set("p:id", "original")
    forged = direct.get("p:id").replace(header("k1"), header("k2"), 1)
    direct.set("p:id", forged)
    with pytest.raises(redis.ResponseError, match="key id 'k2' is not configured"):
        r.get("p:id")
    direct.set("p:foreign", "written around Sluice")
    with pytest.raises(redis.ResponseError, match="not written by protect"):
        r.get("p:foreign")
    direct.hset("p:fh", "f", "plain")
    with pytest.raises(redis.ResponseError, match="cannot be decrypted"):
        r.hgetall("p:fh")
    with pytest.raises(redis.ResponseError, match="cannot be decrypted"):
        r.mget("p:t", "p:id")
    # The other requests of the same pipeline are answered normally.
    pipe = r.pipeline(transaction=False)
    pipe.set("p:ok", "fine").get("p:t").get("p:ok")
    ok, bad, value = pipe.execute(raise_on_error=False)
    assert ok is True and isinstance(bad, redis.ResponseError) and value == b"fine"
    assert metric(proxy, "sluice_plugin_protect_decrypt_failures_total") >= 6


@pytest.mark.parametrize("protocol", [2, 3])
def test_commands_on_ciphertext_are_refused_and_the_rest_of_the_pipeline_goes_through(backend, sluice_factory, protocol):
    proxy = start(sluice_factory, backend)
    r = proxy.client(protocol=protocol)
    direct = backend.client()
    r.set("p:s", "10")
    r.hset("p:h", "f", "5")
    r.set("plain", "10")
    before = direct.get("p:s")
    pipe = r.pipeline(transaction=False)
    pipe.append("p:s", "x")                 # 0 refused
    pipe.incr("p:s")                        # 1 refused
    pipe.incr("plain")                      # 2 fine: not protected
    pipe.getrange("p:s", 0, 1)              # 3 refused
    pipe.setrange("p:s", 0, "z")            # 4 refused
    pipe.strlen("p:s")                      # 5 refused
    pipe.get("p:s")                         # 6 fine
    pipe.hincrby("p:h", "f", 1)             # 7 refused
    pipe.hincrbyfloat("p:h", "f", 1.5)      # 8 refused
    pipe.hstrlen("p:h", "f")                # 9 refused
    pipe.execute_command("LCS", "plain", "p:s")  # 10 refused: any protected key
    pipe.execute_command("SUBSTR", "p:s", 0, 1)  # 11 refused
    pipe.bitcount("p:s")                    # 12 refused
    pipe.setbit("p:s", 1, 1)                # 13 refused
    pipe.getbit("p:s", 1)                   # 14 refused
    pipe.bitop("AND", "dest", "plain", "p:s")  # 15 refused
    pipe.incrbyfloat("p:s", 1.0)            # 16 refused
    pipe.decrby("p:s", 2)                   # 17 refused
    pipe.execute_command("HRANDFIELD", "p:h", 1, "WITHVALUES")  # 18 refused
    pipe.execute_command("HRANDFIELD", "p:h", 1)  # 19 fine: field names are not encrypted
    pipe.hscan("p:h")                       # 20 refused
    pipe.hget("p:h", "f")                   # 21 fine
    results = pipe.execute(raise_on_error=False)
    fine = {2: 11, 6: b"10", 19: [b"f"], 21: b"5"}
    for i, result in enumerate(results):
        if i in fine:
            assert result == fine[i], (i, result)
        else:
            assert isinstance(result, redis.ResponseError), (i, result)
            assert str(result).startswith("protect:") and "protected key" in str(result), (i, str(result))
    assert direct.get("p:s") == before  # nothing refused reached the server
    assert direct.exists("dest") == 0
    assert metric(proxy, "sluice_plugin_protect_refused_total") == 18


@pytest.mark.parametrize("protocol", [2, 3])
def test_transactions_encrypt_writes_and_decrypt_reads_in_exec_reply(backend, sluice_factory, protocol):
    proxy = start(sluice_factory, backend)
    r = proxy.client(protocol=protocol)
    direct = backend.client()
    tx = r.pipeline(transaction=True)
    tx.set("p:x", "in multi").set("plain", "also").hset("p:h", mapping={"f": "v", "g": "w"})
    assert tx.execute() == [True, True, 2]
    assert direct.get("p:x").startswith(header("k1"))
    assert direct.hget("p:h", "g").startswith(header("k1"))
    tx = r.pipeline(transaction=True)
    tx.get("plain").get("p:x").mget("p:x", "plain", "p:none").hgetall("p:h").hmget("p:h", "g", "nope")
    tx.execute_command("LPOP", "nolist", 2)  # a null array in RESP2, copied as it came
    tx.getset("p:x", "new").get("p:missing")
    assert tx.execute() == [b"also", b"in multi", [b"in multi", b"also", None], {b"f": b"v", b"g": b"w"},
                            [b"w", None], None, b"in multi", None]
    assert r.get("p:x") == b"new" and direct.get("p:x").startswith(header("k1"))
    # A command refused inside MULTI aborts the transaction, as a command Redis refuses to queue does.
    tx = r.pipeline(transaction=True)
    tx.set("p:z", "never").append("p:x", "refused").set("plain", "never")
    with pytest.raises(redis.ResponseError, match="protected key"):
        tx.execute()
    assert direct.exists("p:z") == 0 and direct.get("plain") == b"also"
    conn = r.connection_pool.get_connection("MULTI")
    try:
        conn.send_command("MULTI")
        assert conn.read_response() in (b"OK", "OK", True)
        conn.send_command("APPEND", "p:x", "refused")
        with pytest.raises(redis.ResponseError, match="protected key"):
            conn.read_response()
        conn.send_command("EXEC")
        with pytest.raises(redis.exceptions.ExecAbortError, match="Transaction discarded because of previous errors"):
            conn.read_response()
        conn.send_command("GET", "plain")
        assert conn.read_response() == b"also"  # the server is out of MULTI
    finally:
        r.connection_pool.release(conn)
    # A nested MULTI (refused by the server) does not lose what was queued before it.
    conn = r.connection_pool.get_connection("MULTI")
    try:
        for command, expect in ((("MULTI",), None), (("GET", "p:x"), None), (("MULTI",), "nested"),
                                (("GET", "plain"), None)):
            conn.send_command(*command)
            if expect:
                with pytest.raises(redis.ResponseError, match=expect):
                    conn.read_response()
            else:
                conn.read_response()
        conn.send_command("EXEC")
        assert conn.read_response() == [b"new", b"also"]
    finally:
        r.connection_pool.release(conn)
    # A value that cannot be decrypted makes EXEC's reply an error (the transaction ran).
    direct.set("p:foreign", "plain text")
    tx = r.pipeline(transaction=True)
    tx.set("p:y", "written").get("p:foreign")
    with pytest.raises(redis.ResponseError, match="a value in EXEC's reply cannot be decrypted: it was not written by protect"):
        tx.execute()
    assert r.get("p:y") == b"written"
    # DISCARD forgets what was queued; the next transaction lines up again.
    tx = r.pipeline(transaction=True)
    tx.get("p:x")
    tx.execute_command("DISCARD")
    with pytest.raises(redis.ResponseError):
        tx.execute()
    tx = r.pipeline(transaction=True)
    tx.get("plain").get("p:y")
    assert tx.execute() == [b"also", b"written"]


def test_redis_benchmark_through_protect(backend, sluice_factory):
    proxy = start(sluice_factory, backend, protect_step(patterns='["key:*"]'))
    out = subprocess.run(["redis-benchmark", "-p", str(proxy.port), "-q", "-n", "2000", "-c", "10", "-P", "8",
                          "-t", "set,get,mset", "-r", "100"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "requests per second" in out.stdout, out.stdout
    direct = backend.client()
    keys = direct.keys("key:*")
    assert keys and all(direct.type(k) != b"string" or direct.get(k).startswith(header("k1")) for k in keys)
    value = proxy.client().get(keys[0])
    assert len(value) == 3 and not value.startswith(MAGIC)  # redis-benchmark's 3-byte value, decrypted


def check(workdir, step, env=None):
    path = os.path.join(workdir, "protect.yaml")
    with open(path, "w") as f:
        f.write(f"""plugins:
  directory: {PLUGINS}
sinks:
  primary: {{ redis: {{ address: 127.0.0.1:1 }} }}
chains:
  main:
{step}    - sink: primary
sources:
  - redis: {{ listen: 127.0.0.1:{free_port()}, chain: main }}
""")
    out = subprocess.run([SLUICE, "check", "--config", path], capture_output=True, text=True, timeout=60,
                         env={**os.environ, **(env or {})})
    return path, out.returncode, out.stderr + out.stdout


def test_config_errors_point_into_the_file(workdir):
    short = base64.b64encode(os.urandom(16)).decode()
    keyfile = os.path.join(workdir, "k1.key")
    with open(keyfile, "w") as f:
        f.write(K1 + "\n")
    badfile = os.path.join(workdir, "bad.key")
    with open(badfile, "w") as f:
        f.write("not base64 at all!\n")
    cases = [
        ('    - protect: { patterns: ["p:*"], key_id: k1, keys: { k1: { env: PROTECT_UNSET_VAR } } }\n', {},
         r":7:\d+: main\[0\] protect: keys.k1: the environment variable PROTECT_UNSET_VAR is not set"),
        ('    - protect: { patterns: ["p:*"], key_id: k1, keys: { k1: { env: PROTECT_BAD } } }\n', {"PROTECT_BAD": "%%%"},
         r":7:\d+: main\[0\] protect: keys.k1: the environment variable PROTECT_BAD does not hold valid base64"),
        ('    - protect: { patterns: ["p:*"], key_id: k1, keys: { k1: { env: PROTECT_SHORT } } }\n', {"PROTECT_SHORT": short},
         r":7:\d+: main\[0\] protect: keys.k1: the environment variable PROTECT_SHORT holds 16 bytes, a key is 32 bytes"),
        (f'    - protect: {{ patterns: ["p:*"], key_id: k1, keys: {{ k1: {{ file: {workdir}/missing.key }} }} }}\n', {},
         r":7:\d+: main\[0\] protect: keys.k1: cannot read the key file"),
        (f'    - protect: {{ patterns: ["p:*"], key_id: k1, keys: {{ k1: {{ file: {badfile} }} }} }}\n', {},
         r":7:\d+: main\[0\] protect: keys.k1: the file '.*bad.key' does not hold valid base64"),
        (f'    - protect: {{ patterns: ["p:*"], key_id: k9, keys: {{ k1: {{ file: {keyfile} }} }} }}\n', {},
         r":7:\d+: main\[0\] protect: key_id 'k9' is not one of the keys \(k1\)"),
        (f'    - protect: {{ patterns: [], key_id: k1, keys: {{ k1: {{ file: {keyfile} }} }} }}\n', {},
         r":7:\d+: main\[0\] protect: patterns is required"),
        (f'    - protect: {{ patterns: ["p:*"], keys: {{ k1: {{ file: {keyfile} }} }} }}\n', {},
         r":7:\d+: main\[0\] protect: key_id is required"),
        ('    - protect: { patterns: ["p:*"], key_id: k1, keys: { k1: { env: A, file: B } } }\n', {},
         r":7:\d+: main\[0\] protect: keys.k1: give exactly one of file: PATH or env: VAR"),
        ('    - protect: { patterns: ["p:*"], key_id: k1, keys: { k1: { env: A } }, pattern: x }\n', {},
         r":7:\d+: main\[0\] protect: unknown key 'pattern'"),
    ]
    for step, env, needle in cases:
        path, code, out = check(workdir, step, env)
        assert code != 0, (step, out)
        assert re.search(re.escape(path) + needle, out), (needle, out)
    # The key file form is accepted.
    path, code, out = check(workdir, f'    - protect: {{ patterns: ["p:*"], key_id: k1, keys: {{ k1: {{ file: {keyfile} }} }} }}\n')
    assert code == 0, out
