"""The stream state table, exercised pair by pair through the Connection API.

For every (StreamState, StreamInput) pair: drive a real connected pair until one
side (the subject) holds a stream in that state, apply the input (a local call,
or a frame crafted as if the peer had sent it) and compare what happens with
what kokoa.wire.TRANSITIONS says.
"""

from __future__ import annotations

import pytest
from wire_support import (
    connected_pair,
    data_frame,
    deliver,
    open_frame,
    parse,
    pump,
    reset_frame,
)

from kokoa.wire import (
    TRANSITIONS,
    Action,
    Connection,
    ConnectionTerminated,
    DataReceived,
    ErrorCode,
    FrameType,
    ProtocolError,
    SessionState,
    StreamEnded,
    StreamInput,
    StreamOpened,
    StreamReset,
    StreamState,
    transition,
)

S, I = StreamState, StreamInput  # noqa: E741


def test_table_is_total():
    assert set(TRANSITIONS) == {(s, i) for s in S for i in I}
    for (state, inp), (new_state, action) in TRANSITIONS.items():
        assert transition(state, inp) == (new_state, action)
        if action is not Action.OK:
            # Only a reset moves a stream without the transition being OK.
            assert new_state is state or inp in (I.SEND_RESET, I.RECV_RESET)


@pytest.mark.parametrize(
    ("state", "inp", "expected"),
    [
        (S.IDLE, I.SEND_OPEN, (S.OPEN, Action.OK)),
        (S.OPEN, I.SEND_FIN, (S.HALF_CLOSED_LOCAL, Action.OK)),
        (S.HALF_CLOSED_LOCAL, I.RECV_FIN, (S.CLOSED, Action.OK)),
        (S.HALF_CLOSED_REMOTE, I.RECV_DATA, (S.HALF_CLOSED_REMOTE, Action.STREAM_ERROR)),
        (S.CLOSED, I.RECV_DATA, (S.CLOSED, Action.IGNORE)),
        (S.CLOSED, I.RECV_OPEN, (S.CLOSED, Action.CONNECTION_ERROR)),
        (S.IDLE, I.RECV_DATA, (S.IDLE, Action.CONNECTION_ERROR)),
        (S.IDLE, I.SEND_RESET, (S.IDLE, Action.LOCAL_ERROR)),
        (S.CLOSED, I.SEND_RESET, (S.CLOSED, Action.IGNORE)),
        (S.OPEN, I.RECV_RESET, (S.CLOSED, Action.OK)),
    ],
)
def test_table_spot_checks(state, inp, expected):
    assert transition(state, inp) == expected


# ---------------------------------------------------------------- driving a pair


def drive(state: StreamState, subject_role: str, local: bool):
    """A connected pair in which ``subject`` holds stream ``sid`` in ``state``.

    ``local``: the subject opened the stream (else its peer did).
    """
    client, server, _ = connected_pair()
    subject, peer = (client, server) if subject_role == "client" else (server, client)
    if state is S.IDLE:
        # The next id of the opener's parity, never used.
        sid = (1 if subject is client else 2) if local else (2 if subject is client else 1)
        assert subject.stream_state(sid) is S.IDLE
        return subject, peer, sid
    opener, other = (subject, peer) if local else (peer, subject)
    sid = opener.open_stream({"target": "echo"})
    events = deliver(opener, other)
    assert events == [StreamOpened(sid, {"target": "echo"})]
    if state is S.HALF_CLOSED_LOCAL:
        subject.end_stream(sid)
        deliver(subject, peer)
    elif state is S.HALF_CLOSED_REMOTE:
        peer.end_stream(sid)
        deliver(peer, subject)
    elif state is S.CLOSED:
        subject.end_stream(sid)
        peer.end_stream(sid)
        pump(subject, peer)
    assert subject.stream_state(sid) is state
    assert not subject.has_data_to_send
    return subject, peer, sid


def _peer_frame(inp: StreamInput, sid: int) -> bytes:
    return {
        I.RECV_OPEN: lambda: open_frame(sid, {"target": "again"}),
        I.RECV_DATA: lambda: data_frame(sid, b"payload"),
        I.RECV_FIN: lambda: data_frame(sid, b"", fin=True),
        I.RECV_RESET: lambda: reset_frame(sid, ErrorCode.CANCEL, "peer cancels"),
    }[inp]()


def _local_call(subject: Connection, inp: StreamInput, sid: int):
    if inp is I.SEND_OPEN:
        return subject.open_stream({"target": "new"})
    if inp is I.SEND_DATA:
        return subject.send_data(sid, b"payload")
    if inp is I.SEND_FIN:
        return subject.end_stream(sid)
    if inp is I.SEND_RESET:
        return subject.reset_stream(sid, ErrorCode.CANCEL, "we cancel")
    raise AssertionError(inp)


def _cases():
    for state in S:
        for inp in I:
            for local in (True, False):
                # Only the opener can send OPEN, and the peer can only open its own ids.
                if inp is I.SEND_OPEN and not local:
                    continue
                if inp is I.RECV_OPEN and local:
                    continue
                for role in ("client", "server"):
                    yield pytest.param(
                        state,
                        inp,
                        local,
                        role,
                        id=f"{state.value}-{inp.value}-{'own' if local else 'peers'}-{role}",
                    )


@pytest.mark.parametrize(("state", "inp", "local", "role"), list(_cases()))
def test_every_state_input_pair_through_the_connection(state, inp, local, role):
    subject, _peer, sid = drive(state, role, local)
    new_state, action = TRANSITIONS[(state, inp)]
    ids_in_use = {s for s in range(1, 20) if subject.stream_state(s) is not S.IDLE}

    if inp is I.SEND_OPEN and state is not S.IDLE:
        # The API cannot name the stream to open: open_stream() always takes a
        # fresh idle id, so opening a used stream is impossible, not an error.
        assert action is Action.LOCAL_ERROR
        new_sid = subject.open_stream({"target": "new"})
        assert new_sid not in ids_in_use
        assert subject.stream_state(sid) is state
        return

    if inp.name.startswith("SEND"):
        if action is Action.LOCAL_ERROR:
            with pytest.raises(ProtocolError) as info:
                _local_call(subject, inp, sid)
            assert info.value.code == ErrorCode.STREAM_CLOSED
            assert subject.is_open
            assert subject.stream_state(sid) is state
            assert subject.data_to_send() == b""
            return
        result = _local_call(subject, inp, sid)
        out = parse(subject.data_to_send())
        if action is Action.IGNORE:
            assert out == []
            assert subject.stream_state(sid) is state
            return
        assert action is Action.OK
        if inp is I.SEND_OPEN:
            assert result == sid
            assert [(f.type, f.stream_id) for f in out] == [(FrameType.OPEN, sid)]
        elif inp is I.SEND_DATA:
            assert [(f.type, f.stream_id, f.payload, f.flags) for f in out] == [
                (FrameType.DATA, sid, b"payload", 0)
            ]
        elif inp is I.SEND_FIN:
            assert [(f.type, f.stream_id, f.payload, f.flags) for f in out] == [(FrameType.DATA, sid, b"", 1)]
        elif inp is I.SEND_RESET:
            assert [(f.type, f.stream_id) for f in out] == [(FrameType.RESET, sid)]
        assert subject.stream_state(sid) is new_state
        assert subject.is_open
        return

    # A frame from the peer.
    events = subject.receive_data(_peer_frame(inp, sid))
    out = parse(subject.data_to_send())
    if action is Action.CONNECTION_ERROR:
        assert isinstance(events[-1], ConnectionTerminated)
        assert events[-1].code == ErrorCode.PROTOCOL_ERROR
        assert not events[-1].by_peer
        assert subject.state is SessionState.CLOSED
        assert [f.type for f in out] == [FrameType.GOAWAY]
        return
    assert subject.is_open
    if action is Action.IGNORE:
        assert events == []
        assert out == []
        assert subject.stream_state(sid) is state
        return
    if action is Action.STREAM_ERROR:
        assert events == [StreamReset(sid, ErrorCode.STREAM_CLOSED, events[0].reason, by_peer=False)]
        assert [(f.type, f.stream_id) for f in out] == [(FrameType.RESET, sid)]
        assert subject.stream_state(sid) is S.CLOSED
        return
    assert action is Action.OK
    expected_event = {
        I.RECV_OPEN: StreamOpened(sid, {"target": "again"}),
        I.RECV_DATA: DataReceived(sid, b"payload"),
        I.RECV_FIN: StreamEnded(sid),
        I.RECV_RESET: StreamReset(sid, ErrorCode.CANCEL, "peer cancels", by_peer=True),
    }[inp]
    assert events == [expected_event]
    assert out == []
    assert subject.stream_state(sid) is new_state


def test_send_after_end_stream_is_refused_before_the_fin_is_flushed():
    client, server, _ = connected_pair()
    sid = client.open_stream({})
    client.send_data(sid, b"last", fin=True)
    with pytest.raises(ProtocolError):
        client.send_data(sid, b"too late")
    with pytest.raises(ProtocolError):
        client.end_stream(sid)
    _, server_events = pump(client, server)
    assert server_events == [StreamOpened(sid, {}), DataReceived(sid, b"last"), StreamEnded(sid)]


def test_open_with_fin_is_half_closed_at_once():
    client, server, _ = connected_pair()
    sid = client.open_stream({"udp": False}, fin=True)
    assert client.stream_state(sid) is S.HALF_CLOSED_LOCAL
    events = deliver(client, server)
    assert events == [StreamOpened(sid, {"udp": False}, fin=True), StreamEnded(sid)]
    assert server.stream_state(sid) is S.HALF_CLOSED_REMOTE
    server.send_data(sid, b"reply", fin=True)
    client_events, _ = pump(client, server)
    assert client_events == [DataReceived(sid, b"reply"), StreamEnded(sid)]
    assert client.stream_state(sid) is S.CLOSED
    assert server.stream_state(sid) is S.CLOSED
    assert client.open_streams == server.open_streams == 0
