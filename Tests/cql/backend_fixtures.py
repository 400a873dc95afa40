"""Fixtures for tests that use the CQL test backend: a backend on a free loopback port (in the test's
process, on its own event loop thread), DataStax driver clusters that are shut down after the test,
and a self-signed certificate. The drivers are the real ones (cassandra-driver, cqlsh,
scylla-driver); nothing here imitates them.

Import them into a test module (`from backend_fixtures import *`) rather than through a
conftest.py: Tests/e2e has a conftest.py whose helpers its tests import as `conftest`, and a second
conftest.py would shadow it when both folders run in one pytest.
"""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

sys.path.insert(0, os.path.dirname(HERE))
from backend import BackendThread  # noqa: E402
from ports import free_port  # noqa: E402

__all__ = ["free_port", "make_backend", "backend", "clusters", "tls_files"]




@pytest.fixture
def make_backend():
    started = []

    def make(**kwargs):
        kwargs.setdefault("port", free_port())
        b = BackendThread(**kwargs).start()
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop()


@pytest.fixture
def backend(make_backend):
    return make_backend()


@pytest.fixture
def clusters():
    """Makes DataStax driver clusters that are shut down after the test."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import RoundRobinPolicy
    made = []

    def make(backend, **kwargs):
        kwargs.setdefault("execution_profiles", {
            EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=RoundRobinPolicy())})
        kwargs.setdefault("connect_timeout", 5)
        kwargs.setdefault("control_connection_timeout", 5)
        addresses = [n.info.address for n in backend.backend.nodes[:1]]
        c = Cluster(addresses, port=backend.backend.nodes[0].info.port, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.shutdown()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 made with openssl."""
    d = tmp_path_factory.mktemp("cql-tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key
