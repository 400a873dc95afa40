"""`sluice new-transform` as a stranger uses it: from an empty folder outside the checkout, with no
--sluice-root, a transform is made in each language and built with nothing but the project itself
(C: a C compiler; Swift: `swift build` with an empty HOME, so no SwiftPM cache and nothing to
resolve), then loaded by the host and run in a chain against redis-server with redis-py.

The C project is made by an *installed* sluice (scripts/install.sh: PREFIX/bin/sluice with
PREFIX/share/sluice), the Swift one by the binary in the checkout it was built in."""
import os
import re
import shutil
import subprocess
import time

import pytest
import redis

from conftest import ROOT, SLUICE
from test_plugins import header_abi_version, metric, two_sink_config

NAMES = {"c": "deny-c", "swift": "deny-swift"}


def run(args, cwd, timeout=120, **kw):
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout, **kw)


def install_sluice(prefix):
    """PREFIX/bin/sluice and PREFIX/share/sluice, as scripts/install.sh lays them out."""
    out = run(["bash", os.path.join(ROOT, "scripts", "install.sh"), prefix, "--bin", SLUICE], cwd=prefix.parent)
    assert out.returncode == 0, out.stderr
    assert sorted(os.listdir(prefix / "share" / "sluice")) == ["Sources", "plugin-template"]
    return prefix / "bin" / "sluice"


@pytest.fixture(scope="module")
def stranger(tmp_path_factory):
    """An empty folder outside the checkout."""
    base = tmp_path_factory.mktemp("stranger")
    assert not os.path.realpath(base).startswith(os.path.realpath(ROOT) + os.sep)
    return base


@pytest.fixture(scope="module")
def plugin_dir(stranger):
    plugins = stranger / "plugins"
    plugins.mkdir()

    # C, with an installed sluice, into ./NAME (the default), built by make alone.
    installed = install_sluice(stranger / "prefix")
    work = stranger / "c-work"
    work.mkdir()
    made = run([installed, "new-transform", NAMES["c"], "--lang", "c"], cwd=work)
    assert made.returncode == 0, made.stderr
    project = work / NAMES["c"]
    assert sorted(os.listdir(project)) == ["Makefile", "README.md", "deny_c.c", "include"]
    build = run(["make", f"OUT={plugins}", "CFLAGS=-std=c99 -O2 -Wall -Wextra -Werror"], cwd=project)
    assert build.returncode == 0, build.stdout + build.stderr

    # Swift, with the checkout's own binary (found by walking up from it), into --dir, built with an
    # empty HOME: no ~/.swiftpm, no ~/.cache, so any package to resolve would fail or show up.
    project = stranger / "projects" / "swift"
    made = run([SLUICE, "new-transform", NAMES["swift"], "--dir", project], cwd=stranger)
    assert made.returncode == 0, made.stderr
    assert (project / "Sources" / "DenySwiftTransform" / "DenySwift.swift").exists()
    assert (project / "Sources" / "SluiceSDK" / "SluicePlugin.swift").exists()
    assert (project / "Sources" / "PluginABI" / "include" / "sluice_plugin.h").exists()
    home = stranger / "empty-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    env["HOME"] = str(home)
    # Without a network too, where a user namespace can be made (unshare -rn).
    offline = ["unshare", "-rn"] if run(["unshare", "-rn", "true"], cwd=stranger).returncode == 0 else []
    build = run([*offline, "swift", "build"], cwd=project, timeout=1200, env=env)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert "Fetching" not in build.stdout + build.stderr and "Computing version" not in build.stdout + build.stderr
    assert not (project / "Package.resolved").exists()
    shutil.copy(project / ".build" / "debug" / "libsluice-deny-swift.so", plugins)
    return str(plugins)


def test_both_load_and_require_abi_1_1(plugin_dir):
    listing = run([SLUICE, "plugins", "--dir", plugin_dir], cwd=plugin_dir).stdout
    for name in NAMES.values():
        assert f"{name} 0.1.0  ABI {header_abi_version()}" in listing and f"transform {name}" in listing, listing


@pytest.mark.parametrize("lang", ["c", "swift"])
def test_denies_one_command_of_a_pipeline_and_reports_from_a_timer(lang, plugin_dir, redis_factory, sluice_factory):
    name = NAMES[lang]
    backend = redis_factory()
    proxy = sluice_factory(two_sink_config(backend.port, backend.port,
                                           f"    - {name}: {{ deny: [flushall, KEYS], report_every_ms: 100 }}\n",
                                           plugin_dir=plugin_dir))
    r = proxy.client()
    r.ping()  # redis-py's handshake (CLIENT SETINFO…) is counted too: count from here
    ident = name.replace("-", "_")
    before = metric(proxy, f"sluice_plugin_{ident}_requests_total")
    # One pipelined batch: the denied commands are answered with errors in their places, the
    # others reach redis-server and succeed.
    pipe = r.pipeline(transaction=False)
    pipe.set("a", "1").flushall().incr("a").keys("*").get("a")
    results = pipe.execute(raise_on_error=False)
    assert results[0] is True and results[2] == 2 and results[4] == b"2", results
    assert isinstance(results[1], redis.ResponseError) and f"{name}: 'flushall' is denied" in str(results[1])
    assert isinstance(results[3], redis.ResponseError) and f"{name}: 'keys' is denied" in str(results[3])
    # A batch of denied commands only.
    pipe = r.pipeline(transaction=False)
    pipe.flushall().flushall()
    assert all(isinstance(x, redis.ResponseError) for x in pipe.execute(raise_on_error=False))
    # Nothing denied reached the server; the rest did.
    stats = backend.client().info("commandstats")
    assert "cmdstat_flushall" not in stats and "cmdstat_keys" not in stats
    assert stats["cmdstat_incrby"]["calls"] == 1 and backend.client().get("a") == b"2"
    assert metric(proxy, f"sluice_plugin_{ident}_requests_total") - before == 7
    assert metric(proxy, f"sluice_plugin_{ident}_denied_total") == 4
    # The connection's timer logs its count once it changed.
    report = re.compile(rf"{name}: client 127\.0\.0\.1:\d+: {int(before) + 7} requests, 4 denied")
    deadline = time.time() + 10
    while not report.search(proxy.output()) and time.time() < deadline:
        time.sleep(0.05)
    assert report.search(proxy.output()), proxy.output()[-2000:]
    # Closing the connection frees its instance (the C one cancels its pending timer); the host
    # goes on serving.
    r.close()
    other = proxy.client()
    assert other.ping() and other.get("a") == b"2"
    assert proxy.alive()


@pytest.mark.parametrize("lang", ["c", "swift"])
@pytest.mark.parametrize("options,needle,message", [
    ("{ deny: [x], limit: 3 }", "limit", "unknown key 'limit' (expected one of: deny, report_every_ms)"),
    ("{ deny: [x, [y]] }", "[y]", "deny: every item must be"),
    ("{ deny: [x], report_every_ms: soon }", "soon", "report_every_ms: expected a whole number of milliseconds"),
])
def test_config_errors_point_at_the_node(lang, options, needle, message, plugin_dir, tmp_path):
    name = NAMES[lang]
    step = f"    - {name}: {options}\n"
    text = two_sink_config(1, 2, step, plugin_dir=plugin_dir).replace("{PORT}", "1").replace("{METRICS_PORT}", "2")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    line = text.split("\n").index(step.rstrip("\n")) + 1
    column = step.index(needle) + 1
    out = run([SLUICE, "check", "--config", path], cwd=tmp_path)
    assert out.returncode == 2
    assert f"{path}:{line}:{column}: main[0] {name}: {message}" in out.stderr, out.stderr


def test_says_where_it_looked_when_nothing_is_found(tmp_path):
    lonely = tmp_path / "lonely" / "bin"
    lonely.mkdir(parents=True)
    shutil.copy(SLUICE, lonely / "sluice")
    out = run([lonely / "sluice", "new-transform", "x"], cwd=tmp_path)
    assert out.returncode != 0 and not (tmp_path / "x").exists()
    assert "cannot find Sluice's plugin templates and SDK" in out.stderr, out.stderr
    assert f"  {lonely}\n" in out.stderr and f"  {lonely}/share/sluice\n" in out.stderr
    assert "\npass --sluice-root DIR" in out.stderr
    # --sluice-root replaces the search, and is the one folder named.
    out = run([SLUICE, "new-transform", "x", "--sluice-root", tmp_path], cwd=tmp_path)
    assert out.returncode != 0 and f"in:\n  {tmp_path}" in out.stderr, out.stderr
    # And with the checkout named, it works from here.
    out = run([lonely / "sluice", "new-transform", "x", "--lang", "c", "--sluice-root", ROOT], cwd=tmp_path)
    assert out.returncode == 0 and (tmp_path / "x" / "include" / "sluice_plugin.h").exists(), out.stderr


def test_never_overwrites(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep")
    out = run([SLUICE, "new-transform", "taken", "--lang", "c"], cwd=tmp_path)
    assert out.returncode != 0 and "already exists and is not an empty folder" in out.stderr
    assert os.listdir(tmp_path / "taken") == ["mine.txt"]
    (tmp_path / "empty").mkdir()
    out = run([SLUICE, "new-transform", "ok", "--lang", "c", "--dir", tmp_path / "empty"], cwd=tmp_path)
    assert out.returncode == 0 and (tmp_path / "empty" / "ok.c").exists(), out.stderr
    out = run([SLUICE, "new-transform", "Bad_Name"], cwd=tmp_path)
    assert out.returncode != 0 and "[a-z][a-z0-9-]*" in out.stderr
