"""Loopback ports for the servers the tests start.

A port asked of the kernel with bind(("127.0.0.1", 0)) comes from the ephemeral range, the same
range every outgoing connection's local port is taken from; between the moment the probe socket
closes and the moment a server binds the port, any client connection of any test (redis-py, a
driver's pool, Sluice's own sinks) may take it, and the server then fails with "address in use".
So ports are handed out here from below that range, one after another from a start that differs
per process, each checked by binding it, and none twice in one run.
"""
import os
import socket

_LOWEST = 10000
_next = None


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host="127.0.0.1"):
    """A port nothing on `host` is bound to now, outside the ephemeral range, not handed out
    before by this process."""
    global _next
    high = _ephemeral_low()
    span = high - _LOWEST
    if _next is None:
        _next = _LOWEST + (os.getpid() * 7919) % span
    for _ in range(span):
        port = _next
        _next = _LOWEST + (_next - _LOWEST + 1) % span
        with socket.socket() as s:
            try:
                s.bind((host, port))  # without SO_REUSEADDR: a port in TIME_WAIT is skipped too
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port on {host} between {_LOWEST} and {high}")
