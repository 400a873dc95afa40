"""A CQL test backend: a small in-memory server that speaks the Cassandra native protocol v4 and v5
well enough for real drivers (the DataStax python driver, scylla-driver, cqlsh) to connect, read the
system tables, run a small CQL subset and receive events.

It is a test backend written for Sluice's tests, independently of Sluice's own CQL codec. It is not
Cassandra: see docs/testing.md for what it supports and what it does not.

In-process use (tests):

    backend = BackendThread(port=19042, nodes=2)   # 127.0.0.1 and 127.0.0.2
    backend.start()
    ...
    backend.stop()

As a process: python3 -m Tests.cql.backend --port 19042 (see --help).
"""
import asyncio
import threading

from .server import Backend

__all__ = ["Backend", "BackendThread"]


class BackendThread:
    """Runs a Backend on its own event loop in a daemon thread."""

    def __init__(self, **kwargs):
        self.backend = Backend(**kwargs)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name="cql-test-backend")

    def start(self):
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.backend.start(), self.loop).result(10)
        return self

    def call(self, fn, *args):
        """Runs fn(*args) on the backend's loop and returns its result."""
        async def run():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def forget_prepared(self):
        self.call(self.backend.forget_prepared)

    def stop(self):
        asyncio.run_coroutine_threadsafe(self.backend.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
