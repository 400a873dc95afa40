"""The DataStax python driver negotiating its protocol version against Sluice's rejection frames.

Run by Tests/SluiceHostTests/CQLVersionNegotiationDriverTests.swift, which writes on stdin:

    {"supported": [4, 5], "rejections": {"66": "<hex>", ...}}

the ERROR frames Sluice's codec builds (CQLVersionNegotiation.rejection, stream 0) for each version
it does not speak. This script starts the Python test backend, and in front of it a relay that plays
Sluice's part of the negotiation: a connection whose first frame has a version in `supported` is
relayed to the backend untouched; any other version is answered with Sluice's frame for it (after
checking that the frame names the stream the client used) and closed. Then it connects with the
real driver, without fixing a protocol version, runs a query, and prints what happened as JSON:
the version the driver settled on, the versions the relay refused, and the query's answer.
"""
import asyncio
import json
import os
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from backend import BackendThread  # noqa: E402
from ports import free_port  # noqa: E402
from cassandra.cluster import Cluster  # noqa: E402


class Relay:
    def __init__(self, port, backend_port, supported, rejections):
        self.port, self.backend_port = port, backend_port
        self.supported, self.rejections = supported, rejections
        self.refused, self.problems = [], []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self):
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self.loop).result(10)

    async def _listen(self):
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def _client(self, reader, writer):
        try:
            first = await reader.readexactly(4)
        except asyncio.IncompleteReadError:
            writer.close()
            return
        version = first[0] & 0x7F
        if version not in self.supported:
            reply = bytes.fromhex(self.rejections.get(str(version), ""))
            if not reply:
                self.problems.append(f"no rejection frame for version {version}")
            elif reply[2:4] != first[2:4]:
                self.problems.append(f"client used stream {first[2:4].hex()}, Sluice's frame names {reply[2:4].hex()}")
            self.refused.append(version)
            writer.write(reply)
            await writer.drain()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.backend_port)
        up_writer.write(first)

        async def pipe(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def stop(self):
        """Closes the listener on the loop's own thread, then stops the loop. asyncio objects are not
        thread-safe: Server.close() called from this thread raced a connection ending on the loop
        thread (both woke the server's waiters; the second found them gone: TypeError)."""
        async def close():
            self.server.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def main():
    request = json.load(sys.stdin)
    backend_port = free_port()
    backend = BackendThread(port=backend_port).start()
    relay = Relay(free_port(), backend_port, set(request["supported"]), request["rejections"])
    relay.start()
    out = {}
    cluster = Cluster(["127.0.0.1"], port=relay.port, connect_timeout=5, control_connection_timeout=5)
    try:
        session = cluster.connect()
        row = session.execute("SELECT release_version FROM system.local").one()
        out["protocol_version"] = cluster.protocol_version
        out["release_version"] = row.release_version
    except Exception as e:  # reported to the Swift test, which fails on it
        out["exception"] = f"{type(e).__name__}: {e}"
    finally:
        cluster.shutdown()
        relay.stop()
        backend.stop()
    out["refused"] = relay.refused
    out["problems"] = relay.problems
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
