"""Properties of kokoa.wire.Connection over generated sessions and generated garbage.

1. Re-chunking: a session replayed with every delivery cut at arbitrary points
   produces exactly the same events and bytes as with whole deliveries.
2. Malformed input: whatever bytes arrive, receive_data never raises, the
   events stay consistent, a local error ends the session with a non-zero code
   and a GOAWAY, and the decoder never holds more than one frame.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_support import FakeClock, parse

from kokoa.wire import (
    HEADER_SIZE,
    PREFACE,
    Connection,
    ConnectionTerminated,
    ControlReceived,
    DatagramReceived,
    DataReceived,
    ErrorCode,
    Event,
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
    StreamEnded,
    StreamOpened,
    StreamReset,
    StreamState,
    encode_frame,
)
from kokoa.wire._frames import HEADER, encode_goaway, encode_json, encode_reset, encode_u32

LIMITS = Limits(
    max_frame_size=1 * KiB,
    max_control_size=2 * KiB,
    initial_window=4 * KiB,
    max_window=32 * KiB,
    max_concurrent_streams=8,
    max_stream_opens_per_second=20,
    max_resets_per_second=20,
)
BOUND = HEADER_SIZE + max(LIMITS.max_frame_size, LIMITS.max_control_size)


def cut(data: bytes, points: list[int]) -> list[bytes]:
    points = sorted({p % (len(data) + 1) for p in points})
    chunks, prev = [], 0
    for p in [*points, len(data)]:
        chunks.append(data[prev:p])
        prev = p
    return chunks


def payload_bytes(seed: int, size: int) -> bytes:
    return bytes((seed * 31 + i) % 251 for i in range(size))


# ================================================================ 1. re-chunking

side_st = st.sampled_from("cs")
index_st = st.integers(0, 20)
size_st = st.sampled_from([1, 100, 1024, 1500, 3000, 5000]) | st.integers(0, 5000)
send_st = st.tuples(st.just("send"), side_st, index_st, size_st, st.booleans() | st.just(False))
deliver_st = st.tuples(st.just("deliver"), side_st, st.none() | st.just(None) | st.integers(0, 5000))
ack_st = st.tuples(st.just("ack"), side_st, index_st, st.integers(1, 4))
# one_of() picks a branch uniformly: the common operations are listed more than once.
op_st = st.one_of(
    send_st,
    send_st,
    send_st,
    deliver_st,
    deliver_st,
    deliver_st,
    deliver_st,
    ack_st,
    ack_st,
    st.tuples(st.just("open"), side_st, st.booleans(), st.integers(0, 60)),
    st.tuples(st.just("end"), side_st, index_st),
    st.tuples(
        st.just("reset"), side_st, index_st, st.sampled_from([ErrorCode.CANCEL, ErrorCode.CONNECT_REFUSED])
    ),
    st.tuples(st.just("ping"), side_st),
    st.tuples(st.just("control"), side_st, st.integers(0, 300)),
    st.tuples(st.just("datagram"), side_st, index_st, st.integers(0, 1024)),
    st.tuples(st.just("tick"), st.sampled_from([0.001, 0.05, 0.3, 2.0])),
)
goaway_st = st.tuples(
    st.just("goaway"),
    side_st,
    st.sampled_from([ErrorCode.NO_ERROR, ErrorCode.NO_ERROR, ErrorCode.INTERNAL_ERROR]),
)
#: A few streams open in each direction, then random operations, maybe a go-away among them.
script_st = st.builds(
    lambda opening, ops, goaway, where: [*opening, *ops[:where], *goaway, *ops[where:]],
    st.lists(st.tuples(st.just("open"), side_st, st.just(False), st.integers(0, 20)), min_size=1, max_size=4),
    st.lists(op_st, min_size=15, max_size=80),
    st.lists(goaway_st, max_size=1),
    st.integers(0, 60),
)


class Session:
    """A client and a server driven by a script; ``chunker`` cuts each delivery."""

    def __init__(self, chunker: Callable[[bytes], list[bytes]]) -> None:
        self.chunker = chunker
        self.clock = FakeClock()
        self.conns = {
            "c": Connection(Role.CLIENT, LIMITS, clock=self.clock),
            "s": Connection(Role.SERVER, LIMITS, clock=self.clock),
        }
        self.streams: dict[str, list[int]] = {"c": [], "s": []}
        self.unacked: dict[str, dict[int, int]] = {"c": {}, "s": {}}
        self.transcript: list[tuple] = []
        self.sends = 0

    def run(self, ops) -> list[tuple]:
        self.conns["c"].initiate({"site": "prop"})
        self.deliver("c")
        if self.conns["s"]._hello_pending:
            self.conns["s"].accept({"gw": 1})
        self.deliver("s")
        for op in ops:
            self.apply(op)
        for _ in range(50):  # drain
            if not (self.conns["c"].has_data_to_send or self.conns["s"].has_data_to_send):
                break
            self.deliver("c")
            self.deliver("s")
        return self.transcript

    def deliver(self, frm: str, limit: int | None = None) -> None:
        to = "s" if frm == "c" else "c"
        raw = self.conns[frm].data_to_send(limit)
        events: list[Event] = []
        for chunk in self.chunker(raw):
            events += self.conns[to].receive_data(chunk)
        self.transcript.append(("deliver", frm, raw, events))
        for e in events:
            if isinstance(e, StreamOpened):
                self.streams[to].append(e.stream_id)
            elif isinstance(e, DataReceived):
                self.unacked[to][e.stream_id] = self.unacked[to].get(e.stream_id, 0) + len(e.data)

    def pick(self, side: str, index: int) -> int | None:
        """Mostly a live stream; now and then any stream, closed ones included."""
        known = self.streams[side]
        if index < 16:
            known = [sid for sid in known if self.conns[side].stream_state(sid) is not StreamState.CLOSED]
        return known[index % len(known)] if known else None

    def apply(self, op) -> None:
        kind = op[0]
        if kind == "tick":
            self.clock.advance(op[1])
            return
        side = op[1]
        conn = self.conns[side]
        if kind == "deliver":
            self.deliver(side, op[2])
            return
        try:
            result = self._call(conn, side, op)
        except ProtocolError as e:
            result = ("raised", e.code)
        self.transcript.append(("op", op, result))

    def _call(self, conn: Connection, side: str, op):
        kind = op[0]
        if kind == "open":
            sid = conn.open_stream({"target": "t" * op[3]}, fin=op[2])
            self.streams[side].append(sid)
            return sid
        if kind == "ping":
            return conn.ping()
        if kind == "control":
            return conn.send_control({"msg": "m" * op[2]})
        if kind == "goaway":
            return conn.go_away(op[2], "bye")
        sid = self.pick(side, op[2])
        if sid is None:
            return None
        if kind == "send":
            self.sends += 1
            return conn.send_data(sid, payload_bytes(self.sends, op[3]), fin=op[4])
        if kind == "ack":
            amount = self.unacked[side].get(sid, 0) * op[3] // 4
            self.unacked[side][sid] = self.unacked[side].get(sid, 0) - amount
            return conn.acknowledge_data(sid, amount)
        if kind == "end":
            return conn.end_stream(sid)
        if kind == "reset":
            return conn.reset_stream(sid, op[3], "script")
        if kind == "datagram":
            return conn.send_datagram(sid, payload_bytes(sid, op[3]))
        raise AssertionError(op)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script_st, st.data())
def test_any_session_survives_arbitrary_rechunking(ops, data):
    whole = Session(lambda raw: [raw]).run(ops)

    def chunker(raw: bytes) -> list[bytes]:
        if not raw:
            return [raw]
        if len(raw) <= 300 and data.draw(st.booleans(), label="bytewise"):
            return [raw[i : i + 1] for i in range(len(raw))]
        return cut(raw, data.draw(st.lists(st.integers(0, len(raw)), max_size=8), label="cuts"))

    rechunked = Session(chunker).run(ops)
    assert rechunked == whole
    # The session did carry traffic: the handshake at least completed.
    assert any(isinstance(e, HandshakeCompleted) for item in whole if item[0] == "deliver" for e in item[3])


# ================================================================ 2. malformed input


def _client_session() -> tuple[bytes, bytes]:
    """(handshake bytes, body bytes) that a well-behaved client sends."""
    clock = FakeClock()
    client = Connection(Role.CLIENT, LIMITS, clock=clock)
    server = Connection(Role.SERVER, LIMITS, clock=clock)
    client.initiate({"site": "s1", "secret": "x"})
    handshake = client.data_to_send()
    server.receive_data(handshake)
    server.accept()
    client.receive_data(server.data_to_send())
    body = []

    def flush():
        out = client.data_to_send()
        body.append(out)
        for e in server.receive_data(out):
            if isinstance(e, DataReceived):
                server.acknowledge_data(e.stream_id, len(e.data))
        back = server.data_to_send()
        for e in client.receive_data(back):
            if isinstance(e, DataReceived):
                client.acknowledge_data(e.stream_id, len(e.data))

    a = client.open_stream({"target": "web", "client": "203.0.113.9:5555", "proto": "http"})
    b = client.open_stream({"target": "dns", "udp": True})
    c = client.open_stream({"target": "once"}, fin=True)
    client.send_data(a, payload_bytes(1, 3000))
    client.send_datagram(b, b"query")
    client.send_control({"type": "health", "ok": True})
    client.ping()
    flush()
    server.send_data(a, payload_bytes(2, 5000), fin=True)
    flush()
    flush()
    client.send_data(a, payload_bytes(3, 1000), fin=True)  # stays within the initial window
    client.reset_stream(b, ErrorCode.CANCEL, "done")
    d = client.open_stream({"target": "late"})
    client.send_data(d, b"x" * 10)
    flush()
    client.go_away(ErrorCode.NO_ERROR, "shutting down")
    flush()
    assert c
    return handshake, b"".join(body)


def _server_session() -> tuple[bytes, bytes]:
    """(WELCOME bytes, body bytes) that a well-behaved server sends to a passive client."""
    clock = FakeClock()
    client = Connection(Role.CLIENT, LIMITS, clock=clock)
    server = Connection(Role.SERVER, LIMITS, clock=clock)
    client.initiate({})
    server.receive_data(client.data_to_send())
    server.accept({"gateway": "g"})
    welcome = server.data_to_send()
    client.receive_data(welcome)
    body = []

    def flush():
        out = server.data_to_send()
        body.append(out)
        for e in client.receive_data(out):
            if isinstance(e, DataReceived):
                client.acknowledge_data(e.stream_id, len(e.data))
        server.receive_data(client.data_to_send())

    a = server.open_stream({"target": "ssh"})
    b = server.open_stream({"target": "udp", "udp": True})
    server.send_data(a, payload_bytes(4, 4000))
    server.send_datagram(b, b"dgram")
    server.send_control({"config": {"resources": ["a", "b"]}})
    server.ping()
    flush()
    flush()
    server.send_data(b, b"", fin=True)
    server.reset_stream(a, ErrorCode.CONNECT_REFUSED, "nope")
    flush()
    server.go_away(ErrorCode.NO_ERROR, "draining")
    flush()
    return welcome, b"".join(body)


CLIENT_HANDSHAKE, CLIENT_BODY = _client_session()
SERVER_WELCOME, SERVER_BODY = _server_session()


def _offsets(body: bytes) -> list[int]:
    """Where each frame of ``body`` starts."""
    offsets, pos = [], 0
    while pos < len(body):
        offsets.append(pos)
        pos += HEADER_SIZE + HEADER.unpack_from(body, pos)[4]
    return offsets


CLIENT_OFFSETS = _offsets(CLIENT_BODY)
SERVER_OFFSETS = _offsets(SERVER_BODY)

json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
payload_st = st.one_of(
    st.binary(max_size=40),
    st.dictionaries(st.text(max_size=8), json_value, max_size=4).map(encode_json),
    json_value.map(encode_json),
    st.sampled_from([b"{", b'{"a":', b"\xff\xfe", b"nul", b"{}" * 3, b'{"versions": [1]}']),
    st.integers(1, 1020).map(lambda n: b"[" * n + b"]" * n),  # deep nesting
    st.integers(1, 680).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.integers(0, 2**32 - 1).map(encode_u32),
    st.tuples(st.integers(0, 2**16 - 1), st.text(max_size=10)).map(lambda t: encode_reset(*t)),
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 40), st.text(max_size=10)).map(
        lambda t: encode_goaway(*t)
    ),
    st.fixed_dictionaries(
        {
            "versions": st.lists(st.integers(0, 3), max_size=3) | json_value,
            "settings": st.dictionaries(
                st.sampled_from(["max_frame_size", "initial_window", "max_concurrent_streams"]),
                st.integers(-5, 2**32) | json_value,
            ),
            "version": st.integers(0, 3) | json_value,
        }
    ).map(encode_json),
    st.integers(LIMITS.max_frame_size - 2, 2 * LIMITS.max_control_size + 2).map(lambda n: b"x" * n),
)


@st.composite
def frame_st(draw) -> bytes:
    payload = draw(payload_st)
    length = len(payload)
    lie = draw(st.sampled_from([None] * 6 + ["short", "long", "huge"]))
    if lie == "short":
        length = max(0, length - draw(st.integers(1, 20)))
    elif lie == "long":
        length += draw(st.integers(1, 20))
    elif lie == "huge":
        length = draw(st.integers(BOUND, 2**32 - 1))
    header = HEADER.pack(
        draw(st.sampled_from([1] * 8 + [0, 2, 255])),
        draw(st.sampled_from([*list(FrameType), 0, 0x0B, 0xFF])),
        draw(st.sampled_from([0, 0, 1, 2, 0xFF])),
        draw(st.sampled_from([0, 0, 1, 2, 3, 4, 5, 6, 7, 9, 2**31 - 1, 2**31, 2**32 - 1])),
        length,
    )
    return header + payload


@st.composite
def mutated(draw, body: bytes, offsets: list[int]) -> bytes:
    data = bytearray(body)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "splice", "field"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=20))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 30))]
        elif kind == "splice":
            start = draw(st.sampled_from([*offsets, len(body)]))
            data[start:start] = draw(frame_st())
        elif kind == "field" and offsets:
            start = draw(st.sampled_from(offsets))
            field = draw(st.sampled_from([(0, 1), (1, 1), (2, 2), (4, 4), (8, 4)]))  # header fields
            value = draw(st.integers(0, 2 ** (8 * field[1]) - 1))
            if start + field[0] + field[1] <= len(data):
                data[start + field[0] : start + field[0] + field[1]] = value.to_bytes(field[1], "big")
    return bytes(data)


class Observer:
    """Feeds a connection and checks every answer it gives."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.terminated = False
        self.live: set[int] = set()  # streams the application knows
        self.ended: set[int] = set()  # streams whose peer sent FIN
        self.gone: set[int] = set()

    def feed(self, chunk: bytes) -> list[Event]:
        conn = self.conn
        events = conn.receive_data(chunk)  # must never raise
        assert conn._decoder.buffered + len(conn._preface_buf) <= BOUND + len(PREFACE)
        if self.terminated:
            assert events == []
            assert conn.data_to_send() == b""
            return events
        for i, e in enumerate(events):
            self.check(e, last=i == len(events) - 1)
        out = conn.data_to_send()
        frames = parse(out)  # what we send is always well formed
        if events and isinstance(events[-1], ConnectionTerminated):
            term = events[-1]
            self.terminated = True
            assert conn.state is SessionState.CLOSED
            if not term.by_peer:
                assert term.code != ErrorCode.NO_ERROR
                assert frames and frames[-1].type == FrameType.GOAWAY
                assert int.from_bytes(frames[-1].payload[4:6], "big") == term.code
        else:
            assert conn.state is not SessionState.CLOSED
        if conn._hello_pending:  # a server that got HELLO answers it, as the gateway would
            conn.accept({"ok": True})
            parse(conn.data_to_send())
        return events

    def check(self, e: Event, last: bool) -> None:
        if isinstance(e, ConnectionTerminated):
            assert last, "ConnectionTerminated must be the last event"
            assert isinstance(e.message, str)
            return
        if isinstance(e, StreamOpened):
            assert isinstance(e.metadata, dict)
            assert e.stream_id not in self.live | self.gone
            self.live.add(e.stream_id)
        elif isinstance(e, DataReceived):
            assert e.stream_id in self.live and e.stream_id not in self.ended
            assert 0 < len(e.data) <= LIMITS.max_frame_size
            self.conn.acknowledge_data(e.stream_id, len(e.data))
        elif isinstance(e, StreamEnded):
            assert e.stream_id in self.live and e.stream_id not in self.ended
            self.ended.add(e.stream_id)
        elif isinstance(e, StreamReset):
            assert e.stream_id != 0
            if e.stream_id in self.live:
                self.live.discard(e.stream_id)
            else:
                assert not e.by_peer  # a refused open: never known to the application
            self.gone.add(e.stream_id)
        elif isinstance(e, DatagramReceived):
            assert e.stream_id in self.live
            assert len(e.data) <= LIMITS.max_frame_size
        elif isinstance(e, ControlReceived):
            assert isinstance(e.message, dict)
        elif isinstance(e, PingAcknowledged):
            assert e.rtt >= 0
        elif isinstance(e, GoAwayReceived | HelloReceived | HandshakeCompleted):
            pass
        else:
            raise AssertionError(f"unexpected event {e!r}")


MALFORMED = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
cuts_st = st.lists(st.integers(0, 20_000), max_size=6)


def _server():
    return Observer(Connection(Role.SERVER, LIMITS, clock=FakeClock()))


def _client_after_handshake():
    conn = Connection(Role.CLIENT, LIMITS, clock=FakeClock())
    conn.initiate({})
    conn.data_to_send()
    observer = Observer(conn)
    events = observer.feed(SERVER_WELCOME)
    assert [type(e) for e in events] == [HandshakeCompleted]
    return observer


def test_canonical_sessions_are_valid():
    """The streams that the mutations start from are accepted as they are."""
    server = _server()
    server.feed(CLIENT_HANDSHAKE)
    events = server.feed(CLIENT_BODY)
    assert not server.terminated
    assert {type(e) for e in events} >= {StreamOpened, DataReceived, StreamReset, GoAwayReceived}
    client = _client_after_handshake()
    events = client.feed(SERVER_BODY)
    assert not client.terminated
    assert {type(e) for e in events} >= {StreamOpened, DataReceived, StreamReset, GoAwayReceived}


@MALFORMED
@given(st.booleans(), st.binary(max_size=5000), cuts_st)
def test_server_survives_random_bytes(with_preface, garbage, cuts):
    server = _server()
    for chunk in cut((PREFACE if with_preface else b"") + garbage, cuts):
        server.feed(chunk)


@MALFORMED
@given(st.booleans(), st.lists(frame_st(), max_size=8), cuts_st)
def test_server_survives_random_frames(after_hello, frames, cuts):
    server = _server()
    if after_hello:
        server.feed(CLIENT_HANDSHAKE)
    else:
        server.feed(PREFACE)  # frames before (or instead of) the handshake
    for chunk in cut(b"".join(frames), cuts):
        server.feed(chunk)


@MALFORMED
@given(st.booleans(), st.data(), cuts_st)
def test_server_survives_mutated_sessions(mutate_handshake, data, cuts):
    server = _server()
    handshake, body = CLIENT_HANDSHAKE, CLIENT_BODY
    if mutate_handshake:
        handshake = data.draw(mutated(CLIENT_HANDSHAKE, [len(PREFACE)]))
    else:
        body = data.draw(mutated(CLIENT_BODY, CLIENT_OFFSETS))
    server.feed(handshake)
    for chunk in cut(body, cuts):
        server.feed(chunk)


@MALFORMED
@given(st.lists(frame_st(), max_size=8), cuts_st)
def test_client_survives_random_frames_after_handshake(frames, cuts):
    client = _client_after_handshake()
    for chunk in cut(b"".join(frames), cuts):
        client.feed(chunk)


@MALFORMED
@given(st.binary(max_size=3000), cuts_st)
def test_client_survives_random_bytes_after_handshake(garbage, cuts):
    client = _client_after_handshake()
    for chunk in cut(garbage, cuts):
        client.feed(chunk)


@MALFORMED
@given(st.data(), cuts_st)
def test_client_survives_mutated_sessions(data, cuts):
    client = _client_after_handshake()
    for chunk in cut(data.draw(mutated(SERVER_BODY, SERVER_OFFSETS)), cuts):
        client.feed(chunk)


@MALFORMED
@given(st.data(), cuts_st)
def test_client_survives_mutated_welcome(data, cuts):
    conn = Connection(Role.CLIENT, LIMITS, clock=FakeClock())
    conn.initiate({})
    conn.data_to_send()
    client = Observer(conn)
    welcome = data.draw(mutated(SERVER_WELCOME, [0]))
    for chunk in cut(welcome + SERVER_BODY, cuts):
        client.feed(chunk)


def test_oversized_frames_are_refused_before_buffering():
    for ftype, size, code in [
        (FrameType.DATA, LIMITS.max_frame_size + 1, ErrorCode.FRAME_TOO_LARGE),
        (FrameType.CONTROL, LIMITS.max_control_size + 1, ErrorCode.CONTROL_TOO_LARGE),
        (FrameType.OPEN, 2**32 - 1, ErrorCode.CONTROL_TOO_LARGE),
    ]:
        client = _client_after_handshake()
        header = encode_frame(1, ftype, 0, 2, b"")[:8] + size.to_bytes(4, "big")
        events = client.feed(header + b"\0" * 50_000)
        assert events[-1].code == code
        assert client.conn._decoder.buffered == 0
