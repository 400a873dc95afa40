"""The host's key table (redis_keys) is generated from redis-server's COMMAND reply: it must still
agree with the redis-server installed here (a newer server with new commands or key specs makes
this fail until scripts/gen-redis-key-table.py is rerun)."""
import os
import subprocess
import sys

from conftest import ROOT


def test_key_table_agrees_with_the_installed_redis_server(redis_factory):
    server = redis_factory()
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gen-redis-key-table.py"),
                          "--port", str(server.port), "--check"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "agrees" in out.stdout
