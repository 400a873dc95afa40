"""`sluice new-transform` end to end: generate a transform from plugin-template/, build it with
SwiftPM exactly as a user would, drop the .so into a plugin directory and run it in a chain."""
import os
import shutil
import subprocess

import pytest
import redis

from conftest import ROOT, SLUICE
from test_plugins import metric, two_sink_config


@pytest.fixture(scope="module")
def generated_plugin_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("new-transform")
    project = base / "rate-guard"
    out = subprocess.run([SLUICE, "new-transform", "rate-guard", "--output", str(project), "--sluice-root", ROOT],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert (project / "Sources" / "RateGuard.swift").exists()
    # A second run refuses to overwrite the project.
    again = subprocess.run([SLUICE, "new-transform", "rate-guard", "--output", str(project), "--sluice-root", ROOT],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and "already exists" in again.stderr
    build = subprocess.run(["swift", "build", "-c", "release"], cwd=project, capture_output=True, text=True,
                           timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    plugins = base / "plugins"
    plugins.mkdir()
    shutil.copy(project / ".build" / "release" / "libsluice-rate-guard.so", plugins)
    return str(plugins)


def test_generated_transform_loads_and_runs(generated_plugin_dir, redis_factory, sluice_factory):
    listing = subprocess.run([SLUICE, "plugins", "--dir", generated_plugin_dir], capture_output=True, text=True,
                             timeout=60).stdout
    assert "rate-guard 0.1.0  ABI 1.1" in listing and "transform rate-guard" in listing
    backend = redis_factory()
    proxy = sluice_factory(two_sink_config(backend.port, backend.port, "    - rate-guard: { deny: [flushall] }\n",
                                           plugin_dir=generated_plugin_dir))
    r = proxy.client()
    assert r.set("k", "v") and r.get("k") == b"v"
    with pytest.raises(redis.ResponseError, match="rate-guard: 'flushall' is denied"):
        r.flushall()
    # One denied command in a pipeline is answered alone; the others reach the backend.
    pipe = r.pipeline(transaction=False)
    pipe.set("a", "1").flushall().get("a")
    results = pipe.execute(raise_on_error=False)
    assert results[0] is True and results[2] == b"1" and isinstance(results[1], redis.ResponseError)
    assert backend.client().get("k") == b"v"
    assert metric(proxy, "sluice_plugin_rate_guard_requests_total") >= 3


def test_generated_transform_reports_config_errors_with_position(generated_plugin_dir, workdir):
    path = os.path.join(workdir, "bad.yaml")
    with open(path, "w") as f:
        f.write(two_sink_config(1, 2, "    - rate-guard: { deny: [x], limit: 3 }\n", plugin_dir=generated_plugin_dir)
                .replace("{PORT}", "1").replace("{METRICS_PORT}", "2"))
    out = subprocess.run([SLUICE, "check", "--config", path], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert f"{path}:9:32: main[0] rate-guard: unknown key 'limit'" in out.stderr, out.stderr
