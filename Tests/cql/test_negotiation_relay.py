"""The relay of negotiation_check.py (run by CQLVersionNegotiationDriverTests) stops cleanly when a
client connection ends while it stops.

Its listener belongs to the relay's event-loop thread. stop() used to call Server.close() from the
main thread: close() marks the server closed, stops serving, then wakes its waiters if no connection
is left; a connection that ends on the loop thread in between wakes them too (Server._detach), and
the second wake found them already gone (TypeError: 'NoneType' object is not iterable), failing the
driver test now and then. The test makes that interleaving happen every time: while close() stops
serving, the one client connection is ended and its end waited for on the loop thread.
"""
import socket
import threading
import time

from negotiation_check import Relay, free_port


def test_stop_while_a_connection_ends_does_not_race():
    relay = Relay(free_port(), free_port(), {4}, {})
    relay.start()
    client = socket.create_connection(("127.0.0.1", relay.port), timeout=5)
    deadline = time.monotonic() + 5
    while relay.server._active_count == 0 and time.monotonic() < deadline:  # accepted on the loop thread
        time.sleep(0.01)
    assert relay.server._active_count == 1

    stop_serving = relay.loop._stop_serving

    def stop_serving_while_the_client_leaves(sock):
        if threading.current_thread() is not relay.thread:
            # close() runs off the loop thread: end the connection now, on the loop thread.
            client.close()
            end = time.monotonic() + 5
            while relay.server._active_count > 0 and time.monotonic() < end:
                time.sleep(0.01)
        stop_serving(sock)

    relay.loop._stop_serving = stop_serving_while_the_client_leaves
    try:
        relay.stop()  # raised TypeError before stop() closed the server on its loop thread
    finally:
        client.close()
    assert not relay.thread.is_alive()
    assert relay.problems == []
