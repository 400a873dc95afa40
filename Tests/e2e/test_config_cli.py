"""Careless and hostile operators (issue 14, items 12–16; issue 16's plugins rewritten in place):
config files that must not hang start-up, listen addresses that cannot work, bad flags, and
messages that say what is wrong."""
import glob
import os
import shutil
import socket
import subprocess
import time

import pytest
import redis

from conftest import PLUGINS, SLUICE, free_port, plain_config


def run_sluice(*args, timeout=60):
    return subprocess.run([SLUICE, *args], capture_output=True, text=True, timeout=timeout)


def write(workdir, name, text):
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def minimal_config(listen_lines, metrics=None, plugins=""):
    text = plugins + """sinks:
  primary: { redis: { address: 127.0.0.1:1 } }
chains:
  main: [ { sink: primary } ]
sources:
""" + "".join(f"  - redis: {{ listen: {listen}, chain: main }}\n" for listen in listen_lines)
    if metrics:
        text += f"observability:\n  metrics: {metrics}\n"
    return text


def held_port():
    """A socket listening on a free loopback port, as another process would hold it."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s, s.getsockname()[1]


# ---- item 12: a file nested 100,000 levels deep --------------------------------------------------
def test_deeply_nested_yaml_is_refused_at_once(workdir):
    """`x: [[[…]]]` 100,000 levels deep (200 KB) took 40 s in `sluice check`: the depth limit was
    applied after libyaml had built the whole document. It is applied while reading now."""
    depth = 100_000
    path = write(workdir, "deep.yaml", "x: " + "[" * depth + "]" * depth + "\n")
    started = time.monotonic()
    out = run_sluice("check", "--config", path, timeout=20)
    elapsed = time.monotonic() - started
    assert out.returncode == 2, out
    assert f"{path}:1:67: invalid YAML: nested deeper than 64 levels" in out.stderr
    print(f"sluice check of a {depth}-level file: {elapsed:.2f} s")


# ---- item 13: duplicate keys ----------------------------------------------------------------------
def test_duplicate_keys_name_both_positions(workdir):
    path = write(workdir, "dup.yaml", minimal_config([f"127.0.0.1:{free_port()}"]).replace(
        "address: 127.0.0.1:1 }", "address: 127.0.0.1:1, address: 127.0.0.1:2 }"))
    out = run_sluice("check", "--config", path)
    assert out.returncode == 2
    assert f"{path}:2:45: duplicate key 'address' in this map (first at {path}:2:23)" in out.stderr, out.stderr


# ---- item 14: listen addresses --------------------------------------------------------------------
def test_check_refuses_two_sources_on_one_port_and_metrics_on_a_source_port(workdir):
    port = free_port()
    path = write(workdir, "ports.yaml", minimal_config([f"127.0.0.1:{port}", f"127.0.0.1:{port}"],
                                                       metrics=f"127.0.0.1:{port}"))
    out = run_sluice("check", "--config", path)
    assert out.returncode == 2
    taken = f"port {port} is already taken by source.redis.listen 127.0.0.1:{port} (line 6:22)"
    assert f"{path}:7:22: source.redis.listen: cannot listen on 127.0.0.1:{port}: {taken}" in out.stderr, out.stderr
    assert f"{path}:9:12: observability.metrics: cannot listen on 127.0.0.1:{port}: {taken}" in out.stderr, out.stderr


def test_check_refuses_a_port_in_use_and_an_invalid_address(workdir):
    holder, port = held_port()
    with holder:
        path = write(workdir, "inuse.yaml", minimal_config([f"127.0.0.1:{port}", "300.1.2.3:7000"]))
        out = run_sluice("check", "--config", path)
        assert out.returncode == 2
        assert (f"{path}:6:22: source.redis.listen: cannot listen on 127.0.0.1:{port}: "
                "the address is already in use (another process listens there)") in out.stderr, out.stderr
        assert (f"{path}:7:22: source.redis.listen: cannot listen on 300.1.2.3:7000: "
                "'300.1.2.3' is neither an IP address nor a host name this machine resolves") in out.stderr
        # A config for a Sluice that holds its ports: the bind is skipped on request.
        path = write(workdir, "inuse2.yaml", minimal_config([f"127.0.0.1:{port}"]))
        assert run_sluice("check", "--no-bind", "--config", path).returncode == 0


def test_run_names_the_address_and_the_line_it_cannot_listen_on(workdir):
    holder, port = held_port()
    with holder:
        path = write(workdir, "run.yaml", minimal_config([f"127.0.0.1:{free_port()}"], metrics=f"127.0.0.1:{port}"))
        out = run_sluice("run", "--config", path, timeout=30)
        assert out.returncode != 0
        assert (f"{path}:8:12: observability.metrics: cannot listen on 127.0.0.1:{port}: "
                "the address is already in use") in out.stderr, out.stderr
        assert "bind(" not in out.stderr


# ---- item 15: flags -------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, message", [
    (["--threads", "0"], "--threads: expected 1...256 event-loop threads, found 0"),
    (["--threads", "100000"], "--threads: expected 1...256 event-loop threads, found 100000"),
    (["--log-level", "bogus"], "--log-level: expected one of trace, debug, info, notice, warning, error, critical, found 'bogus'"),
    (["--drain-timeout-ms=-5"], "--drain-timeout-ms: expected 0 or more milliseconds, found -5"),
])
def test_bad_flags_are_refused_before_anything_starts(workdir, flags, message):
    """--threads 0 trapped (SIGILL), --threads 100000 died on EMFILE, --log-level bogus meant info."""
    path = write(workdir, "ok.yaml", minimal_config([f"127.0.0.1:{free_port()}"]))
    out = run_sluice("run", "--config", path, *flags, timeout=30)
    assert out.returncode == 64, (out.returncode, out.stderr)  # ArgumentParser's usage error, as for --threads abc
    assert message in out.stderr, out.stderr


# ---- item 16: messages ----------------------------------------------------------------------------
def test_a_missing_plugin_directory_is_named(workdir):
    missing = os.path.join(workdir, "no-plugins-here")
    path = write(workdir, "plugins.yaml", minimal_config([f"127.0.0.1:{free_port()}"],
                                                         plugins=f"plugins:\n  directory: {missing}\n")
                 .replace("main: [ { sink: primary } ]", "main: [ { tee: { target: primary } }, { sink: primary } ]"))
    out = run_sluice("check", "--config", path)
    assert out.returncode == 2
    assert f"{path}:2:14: plugins.directory: the plugin directory {missing} does not exist" in out.stderr, out.stderr
    out = run_sluice("plugins", "--dir", missing)
    assert out.returncode == 2 and f"the plugin directory {missing} does not exist" in out.stderr


def test_a_config_that_is_a_fifo_is_called_what_it_is(workdir):
    path = os.path.join(workdir, "fifo.yaml")
    os.mkfifo(path)
    out = run_sluice("check", "--config", path, timeout=20)
    assert out.returncode == 2
    assert f"{path}:0:0: the config file is a FIFO (named pipe), not a regular file" in out.stderr, out.stderr
    assert "permission" not in out.stderr.lower()
    out = run_sluice("check", "--config", workdir)
    assert out.returncode == 2 and "the config file is a directory, not a regular file" in out.stderr


def test_a_refused_backend_connect_reads_as_words_not_nio_types(sluice_factory):
    dead = free_port()
    proxy = sluice_factory(plain_config(dead, plugins=False))
    with pytest.raises(redis.ResponseError) as refused:
        proxy.client().get("k")
    text = str(refused.value)
    assert text == f"sluice: backend 'primary' (127.0.0.1:{dead}) unavailable: connect failed: connection refused", text
    log = proxy.output()
    assert "connect failed: connection refused" in log
    for internal in ("NIOConnectionError", "SingleConnectionFailure", "IOError", "errno"):
        assert internal not in text and internal not in log


# ---- issue 16: plugin files rewritten in place ----------------------------------------------------
def test_plugin_files_overwritten_in_place_do_not_touch_the_running_host(workdir, redis_factory, sluice_factory):
    """Operators upgrade by copying .so files over the old ones; the host used to map those very
    files, so the next client connection ran whatever bytes were there (signal 11 in
    ChainInstance.init). The host now runs private copies; the directory is removed at exit."""
    plugins = os.path.join(workdir, "plugins")
    shutil.copytree(PLUGINS, plugins)
    runtime = os.path.join(workdir, "runtime")
    os.mkdir(runtime, 0o700)
    primary, shadow = redis_factory(), redis_factory()
    steps = ("    - deny: { commands: [FLUSHALL] }\n"
             "    - redirect: { target: shadow, patterns: [\"hot:*\"] }\n"
             "    - tee: { target: shadow }\n")
    config = plain_config(primary.port, steps).replace(
        "sinks:\n", f"sinks:\n  shadow: {{ redis: {{ address: 127.0.0.1:{shadow.port} }} }}\n").replace(
        "{PLUGINS}", plugins)
    proxy = sluice_factory(config, env={"XDG_RUNTIME_DIR": runtime})
    first = proxy.client()
    assert first.set("k", "v1") and first.get("k") == b"v1"

    private = glob.glob(os.path.join(runtime, f"sluice-{proxy.serving_pid()}-*"))
    copies = glob.glob(os.path.join(private[0], "*.so")) if private else []

    # Rotate the contents: every file now holds another plugin's code, written into its inode.
    files = sorted(glob.glob(os.path.join(plugins, "*.so")))
    originals = {f: open(f, "rb").read() for f in files}
    for i, path in enumerate(files):
        with open(path, "r+b") as f:
            f.truncate(0)
            f.write(originals[files[(i + 1) % len(files)]])

    for round in range(5):
        client = proxy.client()  # a new connection: a new instance of every transform
        assert client.set(f"k{round}", "v") and client.get(f"k{round}") == b"v"
        assert client.set(f"hot:{round}", "h") and shadow.client().get(f"hot:{round}") == b"h"
        with pytest.raises(redis.ResponseError):
            client.flushall()
        client.close()
    assert first.get("k") == b"v1"
    assert proxy.alive(), proxy.output()
    assert len(private) == 1 and len(copies) == len(files), (private, copies)

    proxy.stop()
    assert proxy.proc.returncode == 0, proxy.output()
    assert glob.glob(os.path.join(runtime, "sluice-*")) == [], "the private copies outlived the process"
