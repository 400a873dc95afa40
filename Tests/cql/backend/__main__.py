"""Runs the CQL test backend as a process: python3 -m Tests.cql.backend --port 19042 [--nodes 3]."""
import argparse
import asyncio
import logging
import signal
import sys

from .server import Backend


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m Tests.cql.backend",
                                 description="CQL test backend (not Cassandra): native protocol v4/v5, "
                                             "in-memory tables.")
    ap.add_argument("--host", default="127.0.0.1", help="address of the first node (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=9042, help="port every node listens on (default 9042)")
    ap.add_argument("--nodes", type=int, default=1,
                    help="number of nodes, on consecutive addresses from --host (default 1)")
    ap.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD",
                    help="require PasswordAuthenticator with this user (repeatable)")
    ap.add_argument("--authenticator", choices=["password", "dse"], default="password",
                    help="with --user: Cassandra's PasswordAuthenticator (default) or DSE's, which "
                         "sends an AUTH_CHALLENGE")
    ap.add_argument("--tls-cert", help="serve TLS with this certificate (PEM)")
    ap.add_argument("--tls-key", help="private key of --tls-cert (PEM)")
    ap.add_argument("--no-echo-custom-payload", action="store_true",
                    help="ignore custom payloads instead of echoing them back")
    ap.add_argument("--stall-startup", action="store_true",
                    help="accept connections but never answer STARTUP (a hung backend)")
    ap.add_argument("--versions", default="4,5", metavar="4,5",
                    help="protocol versions spoken (default 4,5; '4': a backend without v5, like "
                         "Cassandra 3.x, which answers a v5 client PROTOCOL_ERROR)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="cql-test-backend: %(message)s")
    credentials = None
    if args.user:
        credentials = dict(u.split(":", 1) for u in args.user)
    backend = Backend(host=args.host, port=args.port, nodes=args.nodes, credentials=credentials,
                      certfile=args.tls_cert, keyfile=args.tls_key,
                      echo_custom_payload=not args.no_echo_custom_payload,
                      authenticator=args.authenticator, stall_startup=args.stall_startup,
                      versions=tuple(int(v) for v in args.versions.split(",")))

    async def run():
        await backend.start()
        addresses = ", ".join(f"{n.info.address}:{n.info.port}" for n in backend.nodes)
        print(f"cql-test-backend listening on {addresses}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, backend.forget_prepared)
        await stop.wait()
        await backend.stop()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
