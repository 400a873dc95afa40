"""The CQL frames of one client read run through the chain as one batch (issue 13 §6), and their
replies still go back per stream as the backend sends them (§3: one slow query never delays the
replies of other streams). Raw v4 frames (encoded by the DataStax driver's protocol code, not
Sluice's) are written several at a time in ONE send, so Sluice reads them together, through Sluice
to the CQL test backend (Tests/cql/backend, not Cassandra), whose TESTBACKEND SLEEP makes one slow.

The rule (docs/cql.md, "Frames read together"): with transforms that only pass (call_pass, also
after answering some frames themselves with call_answer, as deny does) the replies of the batch go
back one by one; a transform that takes the batch's responses (on_responses), or responds to or
fails the whole call, makes that batch's replies go back together, each on its own stream.
"""
import time

import pytest
from cassandra import ConsistencyLevel
from cassandra.protocol import ErrorMessage, ProtocolHandler, QueryMessage, ResultMessage
from conftest import CQLRawConnection, Sluice, cql_config

SLOW_MS = 1500
FAST = "SELECT release_version FROM system.local"


def frame(text, stream):
    return ProtocolHandler.encode_message(QueryMessage(text, ConsistencyLevel.ONE), stream, 4, None, False)


def send_together(connection, queries):
    """Writes the frames of `queries` ({stream: text}) in one send; returns [(stream, reply, seconds)]
    in the order the replies arrived."""
    connection.sock.sendall(b"".join(frame(text, stream) for stream, text in queries.items()))
    started = time.monotonic()
    arrived = []
    for _ in queries:
        reply = connection.receive()
        assert reply is not None, "connection closed instead of a reply"
        arrived.append((reply.stream_id, reply, time.monotonic() - started))
    return arrived


CHAINS = {
    "pass-through": ("", False),
    # Both C transforms call_pass when nothing matches: the batch is never joined.
    "call_pass transforms": ("    - count: {}\n    - deny: { statements: [ddl], commands: [TRUNCATE] }\n", True),
}


@pytest.mark.parametrize("chain", list(CHAINS))
def test_fast_frames_read_with_a_slow_one_are_answered_first(workdir, cql_backend_factory, sluice_factory, chain):
    steps, plugins = CHAINS[chain]
    backend = cql_backend_factory()
    sluice = sluice_factory(cql_config(backend.port, chain_steps=steps, plugins=plugins))
    with CQLRawConnection(sluice.port) as c:
        c.startup()
        c.query(FAST)  # the backend connection is up: nothing below waits for a connect
        queries = {10: f"TESTBACKEND SLEEP {SLOW_MS}", 11: FAST, 12: FAST, 13: FAST, 14: FAST}
        arrived = send_together(c, queries)
        streams = [stream for stream, _, _ in arrived]
        assert sorted(streams) == sorted(queries)
        assert streams[-1] == 10, f"the slow frame's reply came last, the others first: {streams}"
        for stream, reply, seconds in arrived:
            assert isinstance(reply, ResultMessage), reply
            if stream != 10:
                assert seconds < SLOW_MS / 1000, f"stream {stream} waited {seconds:.2f}s for the slow one"
        # The connection goes on as before.
        assert c.query(FAST).parsed_rows


def test_a_denied_frame_among_others_gets_its_own_error_on_its_stream(workdir, cql_backend_factory, sluice_factory):
    backend = cql_backend_factory()
    with CQLRawConnection(backend.port) as direct:
        direct.startup()
        direct.query("CREATE KEYSPACE IF NOT EXISTS ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
        direct.query("CREATE TABLE IF NOT EXISTS ks.t (k int PRIMARY KEY, v text)")
        direct.query("INSERT INTO ks.t (k, v) VALUES (1, 'one')")
    sluice = sluice_factory(cql_config(backend.port, plugins=True,
                                       chain_steps="    - count: {}\n    - deny: { statements: [delete], code: invalid }\n"))
    with CQLRawConnection(sluice.port) as c:
        c.startup()
        queries = {21: "SELECT v FROM ks.t WHERE k = 1", 22: "DELETE FROM ks.t WHERE k = 1",
                   23: "SELECT v FROM ks.t WHERE k = 1", 24: FAST}
        arrived = {stream: reply for stream, reply, _ in send_together(c, queries)}
        assert sorted(arrived) == [21, 22, 23, 24]
        assert isinstance(arrived[22], ErrorMessage), arrived[22]
        assert arrived[22].code == 0x2200, hex(arrived[22].code)  # INVALID, as configured
        for stream in (21, 23):
            assert isinstance(arrived[stream], ResultMessage), arrived[stream]
            assert arrived[stream].parsed_rows == [("one",)], "the DELETE did not run"
        assert isinstance(arrived[24], ResultMessage)


def test_a_denied_frame_does_not_make_the_others_wait_for_a_slow_one(workdir, cql_backend_factory, sluice_factory):
    """deny answers the DELETE itself (call_answer) and passes the rest (call_pass): its ERROR and
    the fast reply go back at once, the slow one when it is done."""
    backend = cql_backend_factory()
    sluice = sluice_factory(cql_config(backend.port, plugins=True,
                                       chain_steps="    - deny: { statements: [delete], code: invalid }\n"))
    with CQLRawConnection(sluice.port) as c:
        c.startup()
        c.query(FAST)
        queries = {30: f"TESTBACKEND SLEEP {SLOW_MS}", 31: "DELETE FROM ks.t WHERE k = 1", 32: FAST}
        arrived = send_together(c, queries)
        streams = [stream for stream, _, _ in arrived]
        assert streams[-1] == 30, f"the slow frame's reply came last: {streams}"
        replies = {stream: (reply, seconds) for stream, reply, seconds in arrived}
        assert isinstance(replies[31][0], ErrorMessage) and replies[31][0].code == 0x2200, replies[31][0]
        assert isinstance(replies[32][0], ResultMessage), replies[32][0]
        for stream in (31, 32):
            assert replies[stream][1] < SLOW_MS / 1000, f"stream {stream} waited for the slow one"
