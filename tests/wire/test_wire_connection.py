"""Unit tests of kokoa.wire.Connection: handshake, limits, pings, go-away, flow control."""

from __future__ import annotations

import dataclasses

import pytest
from wire_support import (
    FakeClock,
    connected_pair,
    data_frame,
    deliver,
    frame,
    goaways,
    hello_frame,
    new_pair,
    open_frame,
    parse,
    pump,
    reset_frame,
    window_frame,
)

from kokoa.wire import (
    HANDSHAKE_VERSION,
    PREFACE,
    Connection,
    ConnectionTerminated,
    ControlReceived,
    DatagramReceived,
    DataReceived,
    ErrorCode,
    FrameType,
    GoAwayReceived,
    HandshakeCompleted,
    HelloReceived,
    KiB,
    Limits,
    PingAcknowledged,
    ProtocolError,
    Role,
    SessionState,
    StreamOpened,
    StreamReset,
    StreamState,
)
from kokoa.wire._frames import MAX_WINDOW, encode_goaway, encode_json


def assert_terminated(events, conn: Connection, code: int, by_peer: bool = False) -> ConnectionTerminated:
    """The last event ends the session with ``code``; a local error queues a GOAWAY saying so."""
    assert events, "expected ConnectionTerminated"
    last = events[-1]
    assert isinstance(last, ConnectionTerminated), events
    assert (last.code, last.by_peer) == (code, by_peer), last
    assert conn.state is SessionState.CLOSED
    assert conn.close_code == code
    if not by_peer:
        sent = goaways(conn.data_to_send())
        assert len(sent) == 1
        assert sent[0].payload[4:6] == code.to_bytes(2, "big")
    return last


# ---------------------------------------------------------------- handshake


@pytest.mark.parametrize(
    ("client_versions", "server_versions", "agreed"),
    [
        ((1,), (1,), 1),
        ((1, 2, 3), (1, 2), 2),
        ((1,), (1, 2), 1),
        ((2, 5), (1, 2, 5, 7), 5),
        ((7, 3, 1), (3, 1, 7), 7),
    ],
)
def test_version_negotiation_picks_highest_common(client_versions, server_versions, agreed):
    client, server, _ = new_pair(client_versions=client_versions, server_versions=server_versions)
    client.initiate({"site": "s1", "secret": "x"})
    raw = client.data_to_send()
    assert raw.startswith(PREFACE)
    (hello,) = parse(raw[len(PREFACE) :])
    assert (hello.type, hello.version, hello.stream_id) == (FrameType.HELLO, HANDSHAKE_VERSION, 0)
    (event,) = server.receive_data(raw)
    assert isinstance(event, HelloReceived)
    assert event.version == agreed
    assert event.hello["site"] == "s1" and event.hello["secret"] == "x"
    assert event.hello["versions"] == list(client_versions)
    server.accept({"gateway": "g1"})
    (welcome,) = parse(server.data_to_send())
    assert (welcome.type, welcome.version) == (FrameType.WELCOME, HANDSHAKE_VERSION)
    (done,) = client.receive_data(frame(FrameType.WELCOME, 0, welcome.payload, version=HANDSHAKE_VERSION))
    assert done == HandshakeCompleted(agreed, done.info)
    assert done.info["gateway"] == "g1"
    assert client.version == server.version == agreed
    assert client.is_open and server.is_open
    # Every frame after the handshake carries the agreed version.
    sid = client.open_stream({})
    (opened,) = parse(client.data_to_send())
    assert opened.version == agreed
    assert server.receive_data(frame(FrameType.OPEN, sid, b"{}", version=agreed)) == [StreamOpened(sid, {})]


def test_settings_are_exchanged_in_the_handshake():
    client_limits = Limits(max_frame_size=2 * KiB, initial_window=10 * KiB, max_concurrent_streams=7)
    server_limits = Limits(max_frame_size=4 * KiB, initial_window=20 * KiB, max_concurrent_streams=9)
    client, server, _ = connected_pair(client_limits=client_limits, server_limits=server_limits)
    assert (server.peer.max_frame_size, server.peer.initial_window, server.peer.max_concurrent_streams) == (
        2 * KiB,
        10 * KiB,
        7,
    )
    assert (client.peer.max_frame_size, client.peer.initial_window, client.peer.max_concurrent_streams) == (
        4 * KiB,
        20 * KiB,
        9,
    )
    sid = client.open_stream({})
    deliver(client, server)
    assert client.send_window(sid) == 20 * KiB
    assert server.send_window(sid) == 10 * KiB
    assert server.receive_window(sid) == 20 * KiB


def test_no_common_version_ends_with_unsupported_version():
    client, server, _ = new_pair(client_versions=(1,), server_versions=(2, 3))
    client.initiate({})
    events = server.receive_data(client.data_to_send())
    assert len(events) == 1
    term = events[0]
    assert isinstance(term, ConnectionTerminated)
    assert (term.code, term.by_peer) == (ErrorCode.UNSUPPORTED_VERSION, False)
    assert "[2, 3]" in term.message and "[1]" in term.message
    raw = server.data_to_send()
    (goaway,) = parse(raw)
    assert (goaway.type, goaway.version) == (FrameType.GOAWAY, HANDSHAKE_VERSION)
    (seen,) = client.receive_data(raw)
    assert seen == ConnectionTerminated(ErrorCode.UNSUPPORTED_VERSION, term.message, by_peer=True)
    assert client.state is SessionState.CLOSED


@pytest.mark.parametrize("versions", [(1,), (1, 2)])
def test_reject_with_auth_failed(versions):
    client, server, _ = new_pair(client_versions=versions, server_versions=versions)
    client.initiate({"site": "s1", "secret": "wrong"})
    (hello,) = server.receive_data(client.data_to_send())
    assert hello.hello["secret"] == "wrong"
    server.reject(ErrorCode.AUTH_FAILED, "unknown site or wrong secret")
    assert server.state is SessionState.CLOSED
    with pytest.raises(ProtocolError):
        server.accept()
    raw = server.data_to_send()
    # Still in the handshake: the client reads only HANDSHAKE_VERSION frames.
    assert [(f.type, f.version) for f in parse(raw)] == [(FrameType.GOAWAY, HANDSHAKE_VERSION)]
    events = client.receive_data(raw)
    assert events == [
        ConnectionTerminated(ErrorCode.AUTH_FAILED, "unknown site or wrong secret", by_peer=True)
    ]
    with pytest.raises(ProtocolError):
        client.open_stream({})


def test_handshake_misuse_raises():
    client, server, _ = new_pair()
    with pytest.raises(ProtocolError):
        server.initiate()
    with pytest.raises(ProtocolError):
        server.accept()
    with pytest.raises(ProtocolError):
        server.reject(ErrorCode.AUTH_FAILED, "no")
    client.initiate()
    with pytest.raises(ProtocolError):
        client.initiate()
    for call in (
        lambda: client.open_stream({}),
        lambda: client.send_control({}),
        lambda: client.ping(),
        lambda: client.send_data(1, b"x"),
    ):
        with pytest.raises(ProtocolError):
            call()


@pytest.mark.parametrize(
    "raw",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00",  # a TLS ClientHello
        b"\x89KOKOA\r\x00",
        b"X",  # one wrong byte is enough
        PREFACE[:-1] + b"!" + b"more bytes",
    ],
)
def test_bad_preface(raw):
    server = Connection(Role.SERVER, clock=FakeClock())
    events = server.receive_data(raw)
    term = assert_terminated(events, server, ErrorCode.PROTOCOL_ERROR)
    assert "bad preface" in term.message
    assert server.receive_data(PREFACE) == []


def test_preface_and_hello_byte_by_byte():
    client, server, _ = new_pair()
    client.initiate({"k": "v"})
    raw = client.data_to_send()
    events = []
    for i in range(len(raw)):
        events += server.receive_data(raw[i : i + 1])
    assert [type(e) for e in events] == [HelloReceived]


@pytest.mark.parametrize(
    "first",
    [
        open_frame(1),
        frame(FrameType.PING, 0, b"\0" * 8),
        frame(FrameType.WELCOME, 0, b"{}"),
        hello_frame({"versions": [1]})[:1] + b"\x02" + hello_frame({"versions": [1]})[2:],  # wrong type
        frame(FrameType.HELLO, 0, encode_json({"versions": [1]}), version=2),  # wrong header version
        frame(FrameType.HELLO, 1, encode_json({"versions": [1]})),  # not on stream 0
        hello_frame({"versions": "1"}),
        hello_frame({"versions": [1.0]}),
        hello_frame({"versions": [True]}),
        hello_frame({}),
        hello_frame({"versions": [1], "settings": []}),
        hello_frame({"versions": [1], "settings": {"initial_window": -1}}),
        frame(FrameType.HELLO, 0, b"[1]"),
        frame(FrameType.HELLO, 0, b"\xff"),
        hello_frame({"versions": [1]}) + hello_frame({"versions": [1]}),  # twice, before accept()
    ],
)
def test_server_refuses_bad_handshake(first):
    server = Connection(Role.SERVER, clock=FakeClock())
    events = server.receive_data(PREFACE + first)
    assert_terminated(events, server, ErrorCode.PROTOCOL_ERROR)
    assert not any(isinstance(e, HandshakeCompleted) for e in events)


@pytest.mark.parametrize(
    "first",
    [
        open_frame(2),
        frame(FrameType.PING, 0, b"\0" * 8),
        hello_frame({"versions": [1]}),
        frame(FrameType.WELCOME, 0, encode_json({"version": 1}), version=3),
        frame(FrameType.WELCOME, 0, b"not json"),
        frame(FrameType.WELCOME, 0, encode_json({"version": 1, "settings": {"max_frame_size": 5}})),
    ],
)
def test_client_refuses_bad_welcome(first):
    client = Connection(Role.CLIENT, clock=FakeClock())
    client.initiate()
    client.data_to_send()
    events = client.receive_data(first)
    assert_terminated(events, client, ErrorCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("version", [9, 1.0, True, "1", None, [1]])
def test_client_refuses_a_version_it_did_not_offer(version):
    client = Connection(Role.CLIENT, clock=FakeClock())
    client.initiate()
    client.data_to_send()
    welcome = frame(FrameType.WELCOME, 0, encode_json({"version": version, "settings": {}}))
    # A PING after it would make a confused client answer with a bad header.
    events = client.receive_data(welcome + frame(FrameType.PING, 0, b"\0" * 8))
    assert_terminated(events, client, ErrorCode.UNSUPPORTED_VERSION)


def test_welcome_without_hello_is_refused():
    client = Connection(Role.CLIENT, clock=FakeClock())
    events = client.receive_data(frame(FrameType.WELCOME, 0, encode_json({"version": 1})))
    assert_terminated(events, client, ErrorCode.PROTOCOL_ERROR)


def test_goaway_during_handshake_ends_the_session():
    client = Connection(Role.CLIENT, clock=FakeClock())
    client.initiate()
    events = client.receive_data(frame(FrameType.GOAWAY, 0, encode_goaway(0, ErrorCode.SITE_DISABLED, "off")))
    assert events == [ConnectionTerminated(ErrorCode.SITE_DISABLED, "off", by_peer=True)]


def test_handshake_frames_after_the_handshake_are_refused():
    client, server, _ = connected_pair()
    events = server.receive_data(hello_frame({"versions": [1]}))
    assert_terminated(events, server, ErrorCode.PROTOCOL_ERROR)
    client, server, _ = connected_pair()
    events = client.receive_data(frame(FrameType.WELCOME, 0, encode_json({"version": 1})))
    assert_terminated(events, client, ErrorCode.PROTOCOL_ERROR)


# ---------------------------------------------------------------- framing rules after the handshake


@pytest.mark.parametrize(
    "raw",
    [
        frame(FrameType.PING, 0, b"\0" * 8, version=2),  # not the session's version
        frame(FrameType.PING, 1, b"\0" * 8),  # session frame on a stream
        frame(FrameType.CONTROL, 1, b"{}"),
        frame(FrameType.GOAWAY, 3, encode_goaway(0, 0, "")),
        frame(FrameType.DATA, 0, b"x"),  # stream frame on stream 0
        frame(FrameType.OPEN, 0, b"{}"),
        frame(FrameType.RESET, 0, b"\0\0"),
        frame(FrameType.WINDOW_UPDATE, 0, b"\0\0\0\1"),
        frame(FrameType.DATAGRAM, 0, b"x"),
        open_frame(2),  # the server's parity
        open_frame(1) + open_frame(1),  # reused id
        open_frame(5) + open_frame(3),  # ids go down
        frame(FrameType.OPEN, 1, b"[]"),
        frame(FrameType.OPEN, 1, b"{"),
        frame(FrameType.CONTROL, 0, b"[1, 2]"),
        frame(FrameType.CONTROL, 0, b"[" * 5000 + b"]" * 5000),
        frame(FrameType.PING, 0, b"1234567"),
        frame(FrameType.PING, 0, b"123456789", flags=1),
        frame(FrameType.RESET, 1, b"\0"),
        open_frame(1) + frame(FrameType.RESET, 1, b"\0\1\xff"),
        open_frame(1) + frame(FrameType.WINDOW_UPDATE, 1, b"\0\0\1"),
        open_frame(1) + window_frame(1, 0),
        frame(FrameType.GOAWAY, 0, b"\0\0\0"),
        data_frame(7, b"x"),  # never opened
        window_frame(9, 1),
        reset_frame(11),
        frame(FrameType.DATAGRAM, 13, b"x"),
    ],
)
def test_malformed_frames_after_handshake_end_with_protocol_error(raw):
    _client, server, _ = connected_pair()
    events = server.receive_data(raw)
    assert_terminated(events, server, ErrorCode.PROTOCOL_ERROR)
    # The session is over: nothing more comes out of it.
    assert server.receive_data(open_frame(101)) == []
    assert server.data_to_send() == b""


def test_unknown_frame_types_are_ignored():
    _client, server, _ = connected_pair()
    assert server.receive_data(frame(0x7F, 0, b"extension") + frame(0x80, 5, b"x")) == []
    assert server.is_open


def test_connection_lost_ends_every_stream():
    client, _server, _ = connected_pair()
    sid = client.open_stream({})
    client.send_data(sid, b"queued")
    assert client.connection_lost() == [ConnectionTerminated(ErrorCode.NO_ERROR, "connection lost", True)]
    assert client.open_streams == 0
    assert client.stream_state(sid) is StreamState.CLOSED
    assert client.connection_lost() == []
    client.reset_stream(sid, ErrorCode.CANCEL)  # harmless
    with pytest.raises(ProtocolError):
        client.send_data(sid, b"x")


# ---------------------------------------------------------------- frame and control size limits


def test_max_frame_size_on_receive():
    limits = Limits(max_frame_size=2 * KiB)
    _client, server, _ = connected_pair(server_limits=limits)
    events = server.receive_data(open_frame(1) + data_frame(1, b"x" * 2 * KiB))
    assert events == [StreamOpened(1, {}), DataReceived(1, b"x" * 2 * KiB)]
    events = server.receive_data(data_frame(1, b"x" * (2 * KiB + 1)))
    assert_terminated(events, server, ErrorCode.FRAME_TOO_LARGE)
    _client, server, _ = connected_pair(server_limits=limits)
    events = server.receive_data(open_frame(1) + frame(FrameType.DATAGRAM, 1, b"d" * (2 * KiB + 1)))
    assert_terminated(events, server, ErrorCode.FRAME_TOO_LARGE)


def test_max_frame_size_on_send():
    client, _server, _ = connected_pair(server_limits=Limits(max_frame_size=1 * KiB))
    sid = client.open_stream({})
    client.send_data(sid, b"a" * 3500)
    sizes = [len(f.payload) for f in parse(client.data_to_send()) if f.type == FrameType.DATA]
    assert sizes == [1024, 1024, 1024, 428]
    client.send_datagram(sid, b"d" * 1024)
    with pytest.raises(ProtocolError) as info:
        client.send_datagram(sid, b"d" * 1025)
    assert info.value.code == ErrorCode.FRAME_TOO_LARGE
    assert client.is_open


def test_max_control_size_on_send_is_the_peers():
    """The server advertises 1 KiB: the client refuses to send more (its own limit is larger)."""
    client, server, _ = connected_pair(server_limits=Limits(max_control_size=1 * KiB))
    assert client.peer.max_control_size == 1 * KiB
    with pytest.raises(ProtocolError) as info:
        client.open_stream({"target": "x" * 1100})
    assert info.value.code == ErrorCode.CONTROL_TOO_LARGE
    with pytest.raises(ProtocolError) as info:
        client.send_control({"config": "x" * 1100})
    assert info.value.code == ErrorCode.CONTROL_TOO_LARGE
    assert client.open_streams == 0
    assert client.data_to_send() == b""
    # Nothing was consumed: the next stream is still stream 1, and fits.
    assert client.open_stream({"target": "x" * 900}) == 1
    client.send_control({"config": "y" * 900})
    events = deliver(client, server)
    assert [type(e) for e in events] == [StreamOpened, ControlReceived]


@pytest.mark.parametrize(
    "raw",
    [
        open_frame(1, {"target": "x" * 1100}),
        frame(FrameType.CONTROL, 0, encode_json({"config": "x" * 1100})),
        reset_frame(1, 0, "r" * 1100),
        frame(0x55, 0, b"u" * 1025),
    ],
)
def test_max_control_size_on_receive(raw):
    _client, server, _ = connected_pair(server_limits=Limits(max_control_size=1 * KiB))
    events = server.receive_data(raw)
    assert_terminated(events, server, ErrorCode.CONTROL_TOO_LARGE)


def test_max_control_size_exactly_is_accepted():
    _client, server, _ = connected_pair(server_limits=Limits(max_control_size=1 * KiB))
    payload = encode_json({"c": "x" * (1024 - 8)})
    assert len(payload) == 1024
    assert server.receive_data(frame(FrameType.CONTROL, 0, payload)) == [ControlReceived({"c": "x" * 1016})]


def test_reasons_are_clipped_to_fit_any_control_limit():
    client, server, _ = connected_pair(server_limits=Limits(max_control_size=1 * KiB))
    sid = client.open_stream({})
    client.reset_stream(sid, ErrorCode.CANCEL, "é" * 2000)
    events = deliver(client, server)
    assert events[0] == StreamOpened(sid, {})
    reason = events[1].reason
    assert reason == "é" * 256  # 512 bytes, cut on a character boundary
    client.go_away(ErrorCode.INTERNAL_ERROR, "x" * 5000)
    (last,) = deliver(client, server)[-1:]
    assert last.message == "x" * 512


# ---------------------------------------------------------------- concurrent streams and rate limits


def test_max_concurrent_streams_refuses_with_stream_table_full():
    client, server, _ = connected_pair(server_limits=Limits(max_concurrent_streams=3))
    ids = [client.open_stream({"n": n}) for n in range(3)]
    assert not client.can_open_stream
    with pytest.raises(ProtocolError) as info:
        client.open_stream({})
    assert info.value.code == ErrorCode.REFUSED_STREAM
    deliver(client, server)
    # A client that ignores the advertised limit is refused, stream by stream.
    client.peer = dataclasses.replace(client.peer, max_concurrent_streams=100)
    extra = client.open_stream({"n": 3})
    events = deliver(client, server)
    assert events == [StreamReset(extra, ErrorCode.REFUSED_STREAM, "stream table full (3 streams)", False)]
    events = deliver(server, client)
    assert events == [StreamReset(extra, ErrorCode.REFUSED_STREAM, "stream table full (3 streams)", True)]
    # The other streams keep working in both directions.
    for sid in ids:
        client.send_data(sid, b"ping %d" % sid)
        server.send_data(sid, b"pong %d" % sid)
    client_events, server_events = pump(client, server)
    assert server_events == [DataReceived(sid, b"ping %d" % sid) for sid in ids]
    assert client_events == [DataReceived(sid, b"pong %d" % sid) for sid in ids]
    # Once one of them is gone, there is room again.
    client.reset_stream(ids[0], ErrorCode.CANCEL)
    again = client.open_stream({})
    _, server_events = pump(client, server)
    assert server_events[-1] == StreamOpened(again, {})
    assert server.open_streams == 3


def test_stream_opens_per_second_are_rate_limited():
    client, server, clock = connected_pair(server_limits=Limits(max_stream_opens_per_second=5))
    opened = [client.open_stream({}) for _ in range(6)]
    events = deliver(client, server)
    assert events[:5] == [StreamOpened(sid, {}) for sid in opened[:5]]
    assert events[5] == StreamReset(
        opened[5], ErrorCode.RATE_LIMITED, "more than 5 stream opens per second", by_peer=False
    )
    assert server.is_open
    (refusal,) = deliver(server, client)
    assert (refusal.stream_id, refusal.code, refusal.by_peer) == (opened[5], ErrorCode.RATE_LIMITED, True)
    # The bucket refills with time: one open per 0.2 s.
    clock.advance(0.2)
    a, _b = client.open_stream({}), client.open_stream({})
    events = deliver(client, server)
    assert events[0] == StreamOpened(a, {})
    assert isinstance(events[1], StreamReset) and events[1].code == ErrorCode.RATE_LIMITED
    clock.advance(10)  # never more than one second's worth at once
    more = [client.open_stream({}) for _ in range(6)]
    events = deliver(client, server)
    assert [type(e) for e in events] == [StreamOpened] * 5 + [StreamReset]
    assert events[5].stream_id == more[5]


def _open_many(client, server, n):
    ids = [client.open_stream({}) for _ in range(n)]
    deliver(client, server)
    return ids


def test_rapid_resets_end_the_session_with_rate_limited():
    client, server, clock = connected_pair(server_limits=Limits(max_resets_per_second=5))
    ids = _open_many(client, server, 12)
    for sid in ids[:5]:
        client.reset_stream(sid, ErrorCode.CANCEL)
    events = deliver(client, server)
    assert [type(e) for e in events] == [StreamReset] * 5
    # The bucket refills: a second later five more are fine...
    clock.advance(1.0)
    for sid in ids[5:10]:
        client.reset_stream(sid, ErrorCode.CANCEL)
    assert [type(e) for e in deliver(client, server)] == [StreamReset] * 5
    # ... but a sixth within the same second ends the session.
    client.reset_stream(ids[10], ErrorCode.CANCEL)
    client.reset_stream(ids[11], ErrorCode.CANCEL)
    events = deliver(client, server)
    term = assert_terminated(events[-1:], server, ErrorCode.RATE_LIMITED)
    assert "5 stream resets per second" in term.message


def test_client_hears_why_its_resets_ended_the_session():
    client, server, _ = connected_pair(server_limits=Limits(max_resets_per_second=5))
    ids = _open_many(client, server, 6)
    for sid in ids:
        client.reset_stream(sid, ErrorCode.CANCEL)
    deliver(client, server)
    events = deliver(server, client)
    assert events[-1] == ConnectionTerminated(ErrorCode.RATE_LIMITED, server.close_message, by_peer=True)


def test_open_and_reset_loop_is_stopped():
    """The HTTP/2 rapid-reset attack: open and cancel at once, as fast as possible."""
    _client, server, _ = connected_pair(server_limits=Limits(max_resets_per_second=20))
    wire = b"".join(open_frame(sid) + reset_frame(sid) for sid in range(1, 200, 2))
    events = server.receive_data(wire)
    assert sum(isinstance(e, StreamReset) for e in events) == 20
    assert_terminated(events, server, ErrorCode.RATE_LIMITED)
    assert server.open_streams == 0


# ---------------------------------------------------------------- pings


def test_ping_measures_rtt_with_the_clock():
    client, server, clock = connected_pair()
    assert server.unanswered_ping_age() == 0.0
    opaque = server.ping()
    assert len(opaque) == 8
    clock.advance(2.0)
    assert server.unanswered_ping_age() == 2.0
    second = server.ping()
    assert second != opaque
    clock.advance(1.0)
    assert server.unanswered_ping_age() == 3.0  # the oldest one counts
    assert deliver(server, client) == []  # answered, no event
    clock.advance(0.25)
    events = deliver(client, server)
    assert events == [PingAcknowledged(3.25), PingAcknowledged(1.25)]
    assert server.rtt == 1.25
    assert server.unanswered_ping_age() == 0.0
    # The other direction works the same way.
    client.ping()
    deliver(client, server)
    clock.advance(0.05)
    assert deliver(server, client) == [PingAcknowledged(pytest.approx(0.05))]


def test_unsolicited_ping_ack_is_ignored():
    _client, server, _ = connected_pair()
    assert server.receive_data(frame(FrameType.PING, 0, b"notmine!", flags=1)) == []
    assert server.rtt is None
    assert server.is_open


# ---------------------------------------------------------------- go-away


def test_go_away_drains():
    client, server, _ = connected_pair()
    a = client.open_stream({"n": "a"})
    server_stream = server.open_stream({"n": "s"})
    pump(client, server)
    b = client.open_stream({"n": "b"})  # in flight when the server goes away
    client.send_data(a, b"request")
    in_flight = client.data_to_send()
    server.go_away(ErrorCode.NO_ERROR, "restarting")
    server.go_away(ErrorCode.NO_ERROR, "twice")  # one GOAWAY only
    assert not server.can_open_stream
    with pytest.raises(ProtocolError) as info:
        server.open_stream({})
    assert info.value.code == ErrorCode.GOING_AWAY
    (goaway,) = goaways(goaway_bytes := server.data_to_send())
    assert goaway.payload[:4] == a.to_bytes(4, "big")  # the last stream it saw
    events = client.receive_data(goaway_bytes)
    assert events == [
        GoAwayReceived(a, ErrorCode.NO_ERROR, "restarting"),
        StreamReset(b, ErrorCode.REFUSED_STREAM, "peer is going away", by_peer=False),
    ]
    assert client.stream_state(b) is StreamState.CLOSED
    assert not client.can_open_stream
    with pytest.raises(ProtocolError):
        client.open_stream({})
    # The server refuses the stream that crossed its GOAWAY, and serves the old one.
    events = server.receive_data(in_flight)
    assert events == [
        StreamReset(b, ErrorCode.REFUSED_STREAM, "session is draining (go-away sent)", by_peer=False),
        DataReceived(a, b"request"),
    ]
    # Its refusal reaches a client that has already forgotten the stream: dropped quietly.
    assert deliver(server, client) == []
    server.send_data(a, b"response", fin=True)
    server.send_data(server_stream, b"push", fin=True)
    client.end_stream(a)
    client.end_stream(server_stream)
    client_events, _ = pump(client, server)
    assert DataReceived(a, b"response") in client_events
    assert DataReceived(server_stream, b"push") in client_events
    assert client.open_streams == server.open_streams == 0
    assert client.is_open and server.is_open  # closing the transport is the caller's call


def test_go_away_of_the_client_refuses_server_streams_above_last():
    client, server, _ = connected_pair()
    seen = server.open_stream({})
    deliver(server, client)
    unseen = server.open_stream({})
    client.go_away()
    events = deliver(client, server)
    assert events == [
        GoAwayReceived(seen, ErrorCode.NO_ERROR, ""),
        StreamReset(unseen, ErrorCode.REFUSED_STREAM, "peer is going away", by_peer=False),
    ]


def test_go_away_with_an_error_ends_both_sides():
    client, server, _ = connected_pair()
    sid = client.open_stream({})
    deliver(client, server)
    server.go_away(ErrorCode.SITE_DISABLED, "site disabled by admin")
    assert server.state is SessionState.CLOSED
    events = deliver(server, client)
    assert events == [
        GoAwayReceived(sid, ErrorCode.SITE_DISABLED, "site disabled by admin"),
        ConnectionTerminated(ErrorCode.SITE_DISABLED, "site disabled by admin", by_peer=True),
    ]
    assert client.open_streams == 0
    server.go_away()  # already closed: nothing happens
    assert server.data_to_send() == b""


# ---------------------------------------------------------------- flow control


def test_credit_on_consumption_not_receipt():
    client, server, _ = connected_pair(server_limits=Limits(initial_window=4 * KiB))
    sid = client.open_stream({})
    client.send_data(sid, b"x" * 10_000)
    events = deliver(client, server)
    assert sum(len(e.data) for e in events if isinstance(e, DataReceived)) == 4 * KiB
    assert client.send_window(sid) == 0
    assert client.outbound_buffered(sid) == 10_000 - 4 * KiB
    assert not client.has_data_to_send
    # Received but not consumed: no credit at all.
    assert server.data_to_send() == b""
    server.acknowledge_data(sid, 1000)  # below half the window: not worth an update yet
    assert server.data_to_send() == b""
    server.acknowledge_data(sid, 1048)
    update, probe = parse(server.data_to_send())
    assert probe.type == FrameType.PING  # a round-trip probe rides along with the update
    assert (update.type, update.stream_id, int.from_bytes(update.payload, "big")) == (
        FrameType.WINDOW_UPDATE,
        sid,
        2048,
    )
    client.receive_data(frame(FrameType.WINDOW_UPDATE, sid, update.payload))
    assert client.send_window(sid) == 2048
    events = deliver(client, server)
    assert sum(len(e.data) for e in events if isinstance(e, DataReceived)) == 2048


def test_acknowledging_more_than_received_is_refused():
    client, server, _ = connected_pair()
    sid = client.open_stream({})
    client.send_data(sid, b"x" * 100)
    deliver(client, server)
    with pytest.raises(ProtocolError):
        server.acknowledge_data(sid, 101)
    server.acknowledge_data(sid, 60)
    with pytest.raises(ProtocolError):
        server.acknowledge_data(sid, 41)
    server.acknowledge_data(sid, 40)
    assert server.is_open


def test_no_window_update_after_the_peer_finished():
    client, server, _ = connected_pair(server_limits=Limits(initial_window=4 * KiB))
    sid = client.open_stream({})
    client.send_data(sid, b"x" * 4096, fin=True)
    deliver(client, server)
    server.acknowledge_data(sid, 4096)
    assert server.data_to_send() == b""


def test_peer_overrunning_the_window_is_a_flow_control_error():
    _client, server, _ = connected_pair(server_limits=Limits(initial_window=4 * KiB, max_frame_size=4 * KiB))
    events = server.receive_data(open_frame(1) + data_frame(1, b"a" * 3000) + data_frame(1, b"b" * 1096))
    assert [type(e) for e in events] == [StreamOpened, DataReceived, DataReceived]
    events = server.receive_data(data_frame(1, b"c"))
    term = assert_terminated(events, server, ErrorCode.FLOW_CONTROL_ERROR)
    assert "stream 1" in term.message


def test_window_update_overflow_is_a_flow_control_error():
    client, server, _ = connected_pair()
    sid = client.open_stream({})
    deliver(client, server)
    room = MAX_WINDOW - client.send_window(sid)
    assert client.receive_data(window_frame(sid, room)) == []
    events = client.receive_data(window_frame(sid, 1))
    assert_terminated(events, client, ErrorCode.FLOW_CONTROL_ERROR)


def test_window_updates_for_closed_streams_are_ignored():
    client, server, _ = connected_pair()
    sid = client.open_stream({})
    deliver(client, server)
    client.reset_stream(sid, ErrorCode.CANCEL)
    assert client.receive_data(window_frame(sid, 100) + data_frame(sid, b"late")) == []
    assert client.is_open


def _fill_and_ack(client, server, sid, clock, ack_delay):
    """Send one window's worth, have the server consume it after ``ack_delay``."""
    client.send_data(sid, b"z" * client.send_window(sid))
    events = deliver(client, server)
    clock.advance(ack_delay)
    server.acknowledge_data(sid, sum(len(e.data) for e in events if isinstance(e, DataReceived)))
    deliver(server, client)


def _measure_rtt(client, server, clock, rtt):
    server.ping()
    deliver(server, client)
    clock.advance(rtt)
    assert deliver(client, server) == [PingAcknowledged(pytest.approx(rtt))]


def test_window_grows_with_fast_acknowledgements_up_to_max_window():
    limits = Limits(initial_window=4 * KiB, max_window=64 * KiB)
    client, server, clock = connected_pair(server_limits=limits)
    _measure_rtt(client, server, clock, 0.1)
    sid = client.open_stream({})
    deliver(client, server)
    windows = []
    for _ in range(8):
        _fill_and_ack(client, server, sid, clock, ack_delay=0.05)  # well within 2 * rtt
        windows.append(server.receive_window(sid))
        assert client.send_window(sid) == server.receive_window(sid)
    assert windows == [4096, 8192, 16384, 32768, 65536, 65536, 65536, 65536]


def test_window_stays_put_when_acknowledgements_are_slow_or_rtt_unknown():
    limits = Limits(initial_window=4 * KiB, max_window=64 * KiB)
    client, server, clock = connected_pair(server_limits=limits)
    sid = client.open_stream({})
    deliver(client, server)
    for _ in range(4):  # no RTT measured yet: no growth
        _fill_and_ack(client, server, sid, clock, ack_delay=0.0)
    assert server.receive_window(sid) == 4096
    _measure_rtt(client, server, clock, 0.1)
    for _ in range(4):  # acknowledgements more than two round trips apart
        _fill_and_ack(client, server, sid, clock, ack_delay=0.3)
    assert server.receive_window(sid) == 4096
    assert client.send_window(sid) == 4096


# ---------------------------------------------------------------- scheduling


def _queued(server_limits, sizes):
    client, server, _clock = connected_pair(server_limits=server_limits)
    ids = [client.open_stream({}) for _ in sizes]
    deliver(client, server)
    for sid, size in zip(ids, sizes, strict=True):
        client.send_data(sid, bytes([sid]) * size)
    return client, server, ids


def test_round_robin_one_frame_per_stream_per_turn():
    client, _server, ids = _queued(Limits(max_frame_size=1 * KiB), [3000, 3000, 3000])
    out = parse(client.data_to_send())
    assert [f.stream_id for f in out] == ids * 3
    assert [len(f.payload) for f in out] == [1024] * 6 + [952] * 3


def test_round_robin_resumes_where_it_stopped_under_a_budget():
    client, _server, ids = _queued(Limits(max_frame_size=1 * KiB), [3 * KiB, 3 * KiB, 3 * KiB])
    order = []
    while client.has_data_to_send:
        frames = parse(client.data_to_send(limit=1024))
        assert [len(f.payload) for f in frames] == [1024]
        order += [f.stream_id for f in frames]
    assert order == ids * 3
    client, _server, ids = _queued(Limits(max_frame_size=1 * KiB), [3000, 3000, 3000])
    sent = {sid: 0 for sid in ids}
    while client.has_data_to_send:
        frames = parse(client.data_to_send(limit=700))
        assert sum(len(f.payload) for f in frames) <= 700
        for f in frames:
            sent[f.stream_id] += len(f.payload)
        assert max(sent.values()) - min(sent.values()) <= 1024  # no stream gets ahead by more than a frame
    assert sent == {sid: 3000 for sid in ids}


def test_a_stream_without_window_does_not_block_the_others():
    client, server, (slow, fast) = _queued(
        Limits(max_frame_size=1 * KiB, initial_window=2 * KiB), [2 * KiB, 0]
    )
    deliver(client, server)  # slow's window is now used up
    assert client.send_window(slow) == 0
    client.send_data(slow, b"s" * 5000)
    client.send_data(fast, b"f" * 1500, fin=True)
    client.send_datagram(slow, b"datagrams are not flow controlled")
    out = parse(client.data_to_send())
    assert [(f.type, f.stream_id) for f in out] == [
        (FrameType.DATAGRAM, slow),
        (FrameType.DATA, fast),
        (FrameType.DATA, fast),
    ]
    assert out[-1].flags == 1
    server.acknowledge_data(slow, 2 * KiB)
    deliver(server, client)
    frames = [f for f in parse(client.data_to_send()) if f.type != FrameType.PING]  # drop the probe's answer
    assert [f.stream_id for f in frames] == [slow, slow]


def test_control_frames_go_first():
    client, _server, _ids = _queued(Limits(max_frame_size=1 * KiB), [2000])
    client.send_control({"health": "ok"})
    client.ping()
    out = parse(client.data_to_send(limit=0))
    assert [f.type for f in out] == [FrameType.CONTROL, FrameType.PING]
    assert client.has_data_to_send


# ---------------------------------------------------------------- control messages and datagrams


def test_control_messages_and_datagrams():
    client, server, _ = connected_pair()
    sid = client.open_stream({"udp": True})
    client.send_control({"type": "health", "ok": True})
    client.send_datagram(sid, b"udp payload")
    events = deliver(client, server)
    assert events == [
        StreamOpened(sid, {"udp": True}),
        ControlReceived({"ok": True, "type": "health"}),
        DatagramReceived(sid, b"udp payload"),
    ]
    server.send_datagram(sid, b"reply")
    assert deliver(server, client) == [DatagramReceived(sid, b"reply")]
    client.reset_stream(sid, ErrorCode.CANCEL)
    with pytest.raises(ProtocolError):
        client.send_datagram(sid, b"gone")
    # A datagram that crossed the reset is dropped quietly.
    assert client.receive_data(frame(FrameType.DATAGRAM, sid, b"late")) == []
    assert client.is_open


def test_send_data_copies_its_argument():
    client, server, _ = connected_pair()
    sid = client.open_stream({})
    buf = bytearray(b"original")
    client.send_data(sid, buf)
    client.send_data(sid, memoryview(b"+view"))
    buf[:] = b"mutated!"
    events = deliver(client, server)
    assert b"".join(e.data for e in events if isinstance(e, DataReceived)) == b"original+view"


def test_stream_ids_and_parity():
    client, server, _ = connected_pair()
    assert [client.open_stream({}) for _ in range(3)] == [1, 3, 5]
    assert [server.open_stream({}) for _ in range(3)] == [2, 4, 6]
    _, _ = pump(client, server)
    assert client.open_streams == server.open_streams == 6
    assert client.stream_state(7) is StreamState.IDLE
    assert client.stream_state(8) is StreamState.IDLE
    with pytest.raises(ProtocolError):
        client.reset_stream(7, ErrorCode.CANCEL)


def test_peer_may_skip_stream_ids():
    _client, server, _ = connected_pair()
    assert server.receive_data(open_frame(9)) == [StreamOpened(9, {})]
    # 1..7 were skipped: they count as closed, and late frames for them are dropped.
    assert server.stream_state(3) is StreamState.CLOSED
    assert server.receive_data(data_frame(3, b"x") + reset_frame(5)) == []
    assert server.is_open


def test_a_ping_flood_ends_the_session():
    limits = Limits(max_pings_per_second=25)
    _client, server, _clock = connected_pair(server_limits=limits)
    for n in range(25):
        events = server.receive_data(frame(FrameType.PING, 0, n.to_bytes(8, "big")))
        assert events == []
    events = server.receive_data(frame(FrameType.PING, 0, b"\x00" * 8))
    assert_terminated(events, server, ErrorCode.RATE_LIMITED)
    assert "pings per second" in server.close_message


def test_the_ping_budget_refills_with_time():
    _client, server, clock = connected_pair(server_limits=Limits(max_pings_per_second=25))
    for _ in range(3):
        for n in range(25):
            assert server.receive_data(frame(FrameType.PING, 0, n.to_bytes(8, "big"))) == []
        clock.advance(1.0)
    assert server.is_open


def test_round_trip_probes_ride_with_window_updates_at_most_every_interval():
    from kokoa.wire._connection import RTT_PROBE_INTERVAL

    client, server, clock = connected_pair(server_limits=Limits(initial_window=4 * KiB))
    sid = client.open_stream({})

    def one_round() -> int:
        client.send_data(sid, b"x" * (4 * KiB))
        events = deliver(client, server)
        server.acknowledge_data(sid, sum(len(e.data) for e in events if isinstance(e, DataReceived)))
        out = server.data_to_send()
        client.receive_data(out)  # the window update, and the probe the client will answer
        return sum(f.type == FrameType.PING for f in parse(out))

    assert [one_round() for _ in range(5)] == [1, 0, 0, 0, 0]
    assert server.srtt is not None  # the probe's answer came back with the next data
    clock.advance(RTT_PROBE_INTERVAL * 1.01)
    assert one_round() == 1


def test_smoothed_rtt_follows_samples():
    client, server, clock = connected_pair()
    _measure_rtt(client, server, clock, 0.1)
    assert server.srtt == pytest.approx(0.1)
    _measure_rtt(client, server, clock, 0.9)
    assert server.srtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.9)
    assert server.rtt == pytest.approx(0.9)


def test_stream_ids_above_the_maximum_are_refused():
    client, _server, _ = connected_pair()
    events = client.receive_data(open_frame(2**31 + 1))
    assert_terminated(events, client, ErrorCode.PROTOCOL_ERROR)


def test_peer_settings_carry_max_control_size():
    _client, server, _ = connected_pair(client_limits=Limits(max_control_size=2 * KiB))
    assert server.peer.max_control_size == 2 * KiB
    with pytest.raises(ProtocolError):
        server.send_control({"big": "x" * 3000})


def test_window_growth_across_a_session_is_capped():
    limits = Limits(initial_window=4 * KiB, max_window=64 * KiB, max_window_growth=12 * KiB)
    client, server, clock = connected_pair(server_limits=limits)
    _measure_rtt(client, server, clock, 0.1)
    streams = [client.open_stream({}) for _ in range(3)]
    for sid in streams:
        for _ in range(6):
            _fill_and_ack(client, server, sid, clock, ack_delay=0.01)
    windows = [server.receive_window(sid) for sid in streams]
    assert sum(w - 4 * KiB for w in windows) <= 12 * KiB
    assert windows[0] > 4 * KiB  # the first stream did grow
    client.reset_stream(streams[0], ErrorCode.CANCEL)
    deliver(client, server)  # its growth is given back to the session
    for _ in range(6):
        _fill_and_ack(client, server, streams[2], clock, ack_delay=0.01)
    assert server.receive_window(streams[2]) > windows[2]


def test_stream_ids_left_counts_down():
    client, server, _ = connected_pair()
    assert client.stream_ids_left == 2**30  # odd ids 1 .. 2**31 - 1
    assert server.stream_ids_left == 2**30 - 1  # even ids 2 .. 2**31 - 2
    client.open_stream({})
    server.open_stream({})
    assert (client.stream_ids_left, server.stream_ids_left) == (2**30 - 1, 2**30 - 2)
