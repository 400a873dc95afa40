"""TLS end to end: Sluice to a redis-server speaking TLS (built with OpenSSL, Debian's package), and
clients (redis-py, redis-cli) speaking TLS to Sluice. Certificates are made here with the openssl
command line: a test CA, a server certificate for localhost / 127.0.0.1, a client certificate."""
import os
import socket
import ssl
import subprocess
import threading
import time

import pytest
import redis

from conftest import SLUICE, free_port, wait_for_port


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}", cwd=d)


def make_cert(d, name, ca, san):
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write(f"subjectAltName={san}\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=d)


@pytest.fixture
def certs(workdir):
    d = os.path.join(workdir, "certs")
    os.makedirs(d)
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    make_cert(d, "server", "ca", "DNS:localhost,IP:127.0.0.1")
    make_cert(d, "named", "ca", "DNS:localhost")  # no IP address: only a server name can match it
    make_cert(d, "client", "ca", "DNS:client")
    return lambda name: os.path.join(d, name)


def tls_redis(redis_factory, certs, *extra, cert="server"):
    """A redis-server with a TLS port beside its plain one (the plain one checks what arrived)."""
    tls_port = free_port()
    server = redis_factory("--tls-port", str(tls_port), "--tls-cert-file", certs(f"{cert}.crt"),
                           "--tls-key-file", certs(f"{cert}.key"), "--tls-ca-cert-file", certs("ca.crt"), *extra)
    wait_for_port(tls_port)
    return server, tls_port


def sink_config(port, tls):
    return f"""
sinks:
  primary: {{ redis: {{ address: 127.0.0.1:{port}, tls: {tls} }} }}
chains:
  main: [ {{ sink: primary }} ]
sources:
  - redis: {{ listen: 127.0.0.1:{{PORT}}, chain: main }}
"""


def test_sink_speaks_tls_to_the_backend(redis_factory, sluice_factory, certs):
    backend, tls_port = tls_redis(redis_factory, certs, "--tls-auth-clients", "no")
    proxy = sluice_factory(sink_config(tls_port, f"{{ ca_file: {certs('ca.crt')} }}"))
    clients = [proxy.client(protocol=p) for p in (2, 3) for _ in range(5)]
    for i, c in enumerate(clients):
        assert c.set(f"k{i}", f"v{i}")
    assert [backend.client().get(f"k{i}") for i in range(len(clients))] == [f"v{i}".encode() for i in range(len(clients))]
    pipe = clients[0].pipeline(transaction=True)
    for i in range(100):
        pipe.incr("n")
    assert pipe.execute()[-1] == 100
    big = os.urandom(5 * 1024 * 1024)
    assert clients[1].set("big", big) and clients[2].get("big") == big
    # The backend saw TLS connections: its plain port had only this test's own checks.
    assert backend.client().info("stats")["total_connections_received"] >= 2


def test_sink_tls_refuses_a_backend_it_cannot_verify(redis_factory, sluice_factory, certs):
    backend, tls_port = tls_redis(redis_factory, certs, "--tls-auth-clients", "no")
    proxy = sluice_factory(sink_config(tls_port, f"{{ ca_file: {certs('other-ca.crt')} }}"))
    with pytest.raises(redis.ResponseError) as refused:
        proxy.client().get("k")
    assert "TLS handshake failed: CERTIFICATE_VERIFY_FAILED" in str(refused.value), str(refused.value)
    assert proxy.wait_for_output("TLS handshake failed")
    # A certificate for a name only: the wrong name, or none (an IP address to check), is refused;
    # the right one (also sent as SNI) works.
    _, named_port = tls_redis(redis_factory, certs, "--tls-auth-clients", "no", cert="named")
    for tls in (f"{{ ca_file: {certs('ca.crt')}, server_name: not-this-server }}", f"{{ ca_file: {certs('ca.crt')} }}"):
        named = sluice_factory(sink_config(named_port, tls))
        with pytest.raises(redis.ResponseError, match="TLS handshake failed"):
            named.client().get("k")
    right = sluice_factory(sink_config(named_port, f"{{ ca_file: {certs('ca.crt')}, server_name: localhost }}"))
    assert right.client().set("k", "v")
    assert proxy.alive() and named.alive()


def test_sink_presents_a_client_certificate_when_the_backend_asks(redis_factory, sluice_factory, certs):
    backend, tls_port = tls_redis(redis_factory, certs, "--tls-auth-clients", "yes")
    without = sluice_factory(sink_config(tls_port, f"{{ ca_file: {certs('ca.crt')} }}"))
    # With TLS 1.3 the backend refuses the missing certificate only after the client saw the
    # handshake complete: still a failed connect, with TLS's reason.
    with pytest.raises(redis.ResponseError, match="TLS") as refused:
        without.client().get("k")
    assert "CERTIFICATE_REQUIRED" in str(refused.value) or "CERTIFICATE" in str(refused.value), str(refused.value)
    proxy = sluice_factory(sink_config(
        tls_port, f"{{ ca_file: {certs('ca.crt')}, cert_file: {certs('client.crt')}, key_file: {certs('client.key')} }}"))
    assert proxy.client().set("k", "v") and backend.client().get("k") == b"v"


def source_config(backend_port, tls):
    return f"""
sinks:
  primary: {{ redis: {{ address: 127.0.0.1:{backend_port} }} }}
chains:
  main: [ {{ sink: primary }} ]
sources:
  - redis: {{ listen: 127.0.0.1:{{PORT}}, chain: main, tls: {tls} }}
"""


def test_clients_speak_tls_to_sluice(redis_factory, sluice_factory, certs):
    backend = redis_factory()
    proxy = sluice_factory(source_config(
        backend.port, f"{{ cert_file: {certs('server.crt')}, key_file: {certs('server.key')} }}"))
    c = redis.Redis(host="localhost", port=proxy.port, ssl=True, ssl_ca_certs=certs("ca.crt"), socket_timeout=10, protocol=3)
    assert c.set("k", "v") and c.get("k") == b"v"
    out = subprocess.run(["redis-cli", "--tls", "--cacert", certs("ca.crt"), "-h", "127.0.0.1", "-p", str(proxy.port),
                          "get", "k"], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "v", out
    # A plain-text client gets no answer in the clear (the TLS handshake fails and the connection closes).
    with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
        redis.Redis(port=proxy.port, socket_timeout=3).get("k")
    assert proxy.alive()


def test_source_tls_can_require_client_certificates(redis_factory, sluice_factory, certs):
    backend = redis_factory()
    proxy = sluice_factory(source_config(
        backend.port, f"{{ cert_file: {certs('server.crt')}, key_file: {certs('server.key')}, ca_file: {certs('ca.crt')} }}"))
    anonymous = redis.Redis(host="localhost", port=proxy.port, ssl=True, ssl_ca_certs=certs("ca.crt"), socket_timeout=5)
    with pytest.raises((redis.ConnectionError, ssl.SSLError, redis.TimeoutError)):
        anonymous.get("k")
    known = redis.Redis(host="localhost", port=proxy.port, ssl=True, ssl_ca_certs=certs("ca.crt"),
                        ssl_certfile=certs("client.crt"), ssl_keyfile=certs("client.key"), socket_timeout=10)
    assert known.set("k", "v") and known.get("k") == b"v"


def test_tls_config_errors(workdir, certs):
    path = os.path.join(workdir, "tls.yaml")
    with open(path, "w") as f:
        f.write(f"""sinks:
  a: {{ redis: {{ address: 127.0.0.1:1, tls: {{ ca_file: /nonexistent/ca.pem }} }} }}
  b: {{ redis: {{ address: 127.0.0.1:1, tls: {{ cert_file: {certs('client.crt')} }} }} }}
  c: {{ redis: {{ address: 127.0.0.1:1, tls: {{ ca_file: {certs('server.key')}, verify: maybe }} }} }}
  d: {{ redis: {{ address: 127.0.0.1:1, tls: {{ ca_file: "", server_name: 127.0.0.1 }} }} }}
chains:
  main: [ {{ sink: a }} ]
sources:
  - redis: {{ listen: 127.0.0.1:{free_port()}, chain: main, tls: {{ ca_file: {certs('ca.crt')} }} }}
""")
    out = subprocess.run([SLUICE, "check", "--config", path], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out
    lines = open(path).read().split("\n")

    def at(line, text):
        return f"{path}:{line}:{lines[line - 1].index(text) + 1}"
    assert f"{at(2, '/nonexistent')}: sink 'a'.redis.tls.ca_file: cannot read '/nonexistent/ca.pem'" in out.stderr, out.stderr
    assert f"{at(3, '{ cert_file')}: sink 'b'.redis.tls: cert_file and key_file go together" in out.stderr, out.stderr
    assert f"sink 'c'.redis.tls.ca_file: '{certs('server.key')}' holds no PEM certificate" in out.stderr, out.stderr
    assert f"{at(4, 'maybe')}: sink 'c'.redis.tls.verify: expected true or false" in out.stderr, out.stderr
    assert f"source.redis.tls: cert_file and key_file are required" in out.stderr, out.stderr
    empty = '""'
    assert f"{at(5, empty)}: sink 'd'.redis.tls.ca_file: expected a file path, found an empty string" in out.stderr, out.stderr
    assert f"{at(5, '127.0.0.1 }')}: sink 'd'.redis.tls.server_name: expected a host name, found '127.0.0.1'" in out.stderr, out.stderr


def test_sink_tls_handshake_is_bounded_by_the_connect_timeout(sluice_factory):
    # A backend that accepts and never says a word; no reply timeout: the TLS handshake still ends.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    accepted = []
    threading.Thread(target=lambda: accepted.append(silent.accept()), daemon=True).start()
    config = sink_config(silent.getsockname()[1], "true").replace(
        "tls: true", "tls: true, connect_timeout_ms: 500, reply_timeout_ms: 0")
    proxy = sluice_factory(config)
    started = time.time()
    with pytest.raises(redis.ResponseError, match="no TLS handshake within 500 ms"):
        proxy.client().get("k")
    assert time.time() - started < 5
    silent.close()


def test_replies_of_a_given_up_tls_connection_are_not_matched_to_new_requests(redis_factory, sluice_factory, certs):
    # A shared TLS connection gives up on a slow command (reply timeout); its reply arrives later,
    # while TLS is still closing that channel and the next request waits on a new one. That reply
    # must be dropped, not taken as the new request's (or as its handshake's) answer.
    backend, tls_port = tls_redis(redis_factory, certs, "--tls-auth-clients", "no", "--enable-debug-command", "yes")
    backend.client().set("k", "right")
    config = sink_config(tls_port, f"{{ ca_file: {certs('ca.crt')} }}").replace(
        f"address: 127.0.0.1:{tls_port},", f"address: 127.0.0.1:{tls_port}, reply_timeout_ms: 1000,")
    proxy = sluice_factory(config)
    slow, other = proxy.client(), proxy.client()
    assert other.ping()
    with pytest.raises(redis.ResponseError, match="no reply within 1000 ms"):
        slow.execute_command("DEBUG", "SLEEP", "1.5")
    assert other.get("k") == b"right"  # sent while redis still sleeps; its +OK comes on the old channel
    assert other.set("k2", "v2") and other.get("k2") == b"v2"
    assert proxy.alive()
