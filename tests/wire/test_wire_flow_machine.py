"""Flow control as a Hypothesis state machine over a connected client/server pair.

Rules send data, flush output (whole or under a budget), deliver arbitrary
partial byte chunks, acknowledge part of what was received, ping and let time
pass (so windows grow). Invariants, checked after every step:

* every stream's send_window is >= 0 on both sides, and equals exactly the
  credit the sender has been given minus what it has sent;
* bytes sent never exceed the credit delivered to the sender, which never
  exceeds what the receiver granted;
* data delivered is a prefix of the data sent, in order, per stream and
  direction (and, after a final drain, all of it);
* what a receiver holds unacknowledged never exceeds the window it grants
  (receive_window), and no window grows beyond max_window.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from wire_support import connected_pair

from kokoa.wire import (
    HEADER_SIZE,
    ConnectionTerminated,
    DataReceived,
    FrameDecoder,
    FrameType,
    KiB,
    Limits,
    StreamEnded,
    StreamOpened,
    StreamState,
)
from kokoa.wire._frames import MAX_PAYLOAD

LIMITS = Limits(
    max_frame_size=1 * KiB,
    initial_window=3000,
    max_window=10_000,  # 3000 -> 6000 -> 10000: the last doubling is capped
    max_concurrent_streams=16,
)
OTHER = {"c": "s", "s": "c"}


def _decoder() -> FrameDecoder:
    return FrameDecoder(MAX_PAYLOAD, MAX_PAYLOAD)


class FlowControl(RuleBasedStateMachine):
    @initialize(
        client_opens=st.integers(1, 3),
        server_opens=st.integers(0, 2),
        rtt=st.sampled_from([None, 0.05, 0.2]),
    )
    def setup(self, client_opens, server_opens, rtt):
        self.client, self.server, self.clock = connected_pair(client_limits=LIMITS, server_limits=LIMITS)
        if rtt is not None:  # both sides know the round-trip time, so windows may grow
            for a, b in ((self.client, self.server), (self.server, self.client)):
                a.ping()
                b.receive_data(a.data_to_send())
                self.clock.advance(rtt)
                a.receive_data(b.data_to_send())
        self.conns = {"c": self.client, "s": self.server}
        self.pending = {"c": bytearray(), "s": bytearray()}  # produced, not yet delivered
        self.produced = {"c": _decoder(), "s": _decoder()}  # every frame a side produced
        self.delivered = {"c": _decoder(), "s": _decoder()}  # frames the other side has read
        self.streams: list[int] = []
        self.app_sent: dict[tuple[str, int], bytearray] = {}  # (sender, sid) -> bytes given to send_data
        self.app_received: dict[tuple[str, int], bytearray] = {}  # (sender, sid) -> bytes the peer got
        self.wire_sent: dict[tuple[str, int], int] = {}  # (sender, sid) -> DATA bytes put on the wire
        self.granted: dict[tuple[str, int], int] = {}  # (sender, sid) -> credit the receiver emitted
        self.credited: dict[tuple[str, int], int] = {}  # (sender, sid) -> credit delivered to the sender
        self.unacked: dict[tuple[str, int], int] = {}  # (sender, sid) -> held by the receiving app
        self.ended: set[tuple[str, int]] = set()
        self.peer_ended: set[tuple[str, int]] = set()
        self.counter = 0
        for _ in range(client_opens):
            self.open("c")
        for _ in range(server_opens):
            self.open("s")

    # ------------------------------------------------------------ helpers

    def open(self, side: str) -> None:
        sid = self.conns[side].open_stream({"target": "t"})
        self.streams.append(sid)
        for sender in "cs":
            key = (sender, sid)
            self.app_sent[key] = bytearray()
            self.app_received[key] = bytearray()
            self.wire_sent[key] = 0
            self.granted[key] = LIMITS.initial_window
            self.credited[key] = LIMITS.initial_window
            self.unacked[key] = 0

    def pick(self, index: int) -> int:
        return self.streams[index % len(self.streams)]

    def collect(self, side: str, limit: int | None = None) -> None:
        out = self.conns[side].data_to_send(limit)
        for f in self.produced[side].feed(out):
            if f.type == FrameType.DATA:
                self.wire_sent[(side, f.stream_id)] += len(f.payload)
            elif f.type == FrameType.WINDOW_UPDATE:
                # ``side`` lets its peer send more on this stream.
                self.granted[(OTHER[side], f.stream_id)] += int.from_bytes(f.payload, "big")
        assert self.produced[side].buffered == 0  # output is made of whole frames
        self.pending[side] += out

    def deliver(self, side: str, size: int) -> None:
        """Hand ``size`` bytes of what ``side`` produced to the other side."""
        chunk = bytes(self.pending[side][:size])
        del self.pending[side][:size]
        receiver = self.conns[OTHER[side]]
        for f in self.delivered[side].feed(chunk):
            if f.type == FrameType.WINDOW_UPDATE:
                self.credited[(OTHER[side], f.stream_id)] += int.from_bytes(f.payload, "big")
        events = receiver.receive_data(chunk)
        for e in events:
            assert not isinstance(e, ConnectionTerminated), e
            if isinstance(e, DataReceived):
                key = (side, e.stream_id)
                self.app_received[key] += e.data
                self.unacked[key] += len(e.data)
            elif isinstance(e, StreamEnded):
                self.peer_ended.add((side, e.stream_id))
            elif isinstance(e, StreamOpened):
                assert e.stream_id in self.streams

    def acknowledge(self, receiver: str, sid: int, amount: int) -> None:
        key = (OTHER[receiver], sid)
        amount = min(amount, self.unacked[key])
        self.unacked[key] -= amount
        self.conns[receiver].acknowledge_data(sid, amount)

    # ------------------------------------------------------------ rules

    @precondition(lambda self: len(self.streams) < 8)
    @rule(side=st.sampled_from("cs"))
    def open_stream(self, side):
        self.open(side)

    @rule(
        side=st.sampled_from("cs"),
        index=st.integers(0, 20),
        size=st.sampled_from([1, 500, 1024, 2999, 3000, 3001, 8000]) | st.integers(1, 10_000),
        fin=st.sampled_from([False] * 9 + [True]),
    )
    def send(self, side, index, size, fin):
        sid = self.pick(index)
        if (side, sid) in self.ended or self.conns[side].stream_state(sid) is StreamState.IDLE:
            return  # already ended, or its OPEN has not reached this side yet
        self.counter += 1
        data = bytes((self.counter * 7 + i) % 256 for i in range(size))
        self.conns[side].send_data(sid, data, fin=fin)
        self.app_sent[(side, sid)] += data
        if fin:
            self.ended.add((side, sid))

    @rule(side=st.sampled_from("cs"), limit=st.none() | st.integers(0, 4000))
    def flush(self, side, limit):
        self.collect(side, limit)

    @rule(side=st.sampled_from("cs"), size=st.integers(1, 5000) | st.sampled_from([1, HEADER_SIZE - 1]))
    def deliver_some(self, side, size):
        self.deliver(side, size)

    @rule(side=st.sampled_from("cs"))
    def deliver_all(self, side):
        self.deliver(side, len(self.pending[side]))

    @rule(receiver=st.sampled_from("cs"), index=st.integers(0, 20), quarters=st.integers(1, 4))
    def acknowledge_part(self, receiver, index, quarters):
        sid = self.pick(index)
        held = self.unacked[(OTHER[receiver], sid)]
        self.acknowledge(receiver, sid, max(1, held * quarters // 4) if held else 0)

    @rule(side=st.sampled_from("cs"))
    def ping(self, side):
        self.conns[side].ping()

    @rule(seconds=st.sampled_from([0.001, 0.01, 0.05, 0.5, 3.0]))
    def tick(self, seconds):
        self.clock.advance(seconds)

    # ------------------------------------------------------------ invariants

    @invariant()
    def windows_never_negative(self):
        for side, conn in self.conns.items():
            assert conn.is_open
            for sid in self.streams:
                assert conn.send_window(sid) >= 0
                assert conn.receive_window(sid) <= LIMITS.max_window
                live = conn.stream_state(sid) not in (StreamState.IDLE, StreamState.CLOSED)
                if live and (side, sid) not in self.ended:
                    # Exactly the credit it was given, minus what it sent.
                    key = (side, sid)
                    assert conn.send_window(sid) == self.credited[key] - self.wire_sent[key]

    @invariant()
    def in_flight_within_granted_window(self):
        for key, sent in self.wire_sent.items():
            assert sent <= self.credited[key] <= self.granted[key]

    @invariant()
    def delivered_in_order(self):
        for key, got in self.app_received.items():
            sent = self.app_sent[key]
            assert got == sent[: len(got)]

    @invariant()
    def receiver_holds_at_most_its_window(self):
        for (sender, sid), held in self.unacked.items():
            receiver = self.conns[OTHER[sender]]
            if receiver.stream_state(sid) is not StreamState.CLOSED:
                assert held <= receiver.receive_window(sid)
                # Received but not yet credited back never exceeds the window either.
                received = len(self.app_received[(sender, sid)])
                assert received <= self.granted[(sender, sid)]

    @invariant()
    def bounded_decoder(self):
        for conn in self.conns.values():
            assert conn._decoder.buffered <= HEADER_SIZE + LIMITS.max_control_size

    def teardown(self):
        if not hasattr(self, "conns"):
            return
        # Drain: everything flows once the applications consume what they get.
        for _ in range(500):
            for side in "cs":
                self.collect(side)
                self.deliver(side, len(self.pending[side]))
            for (sender, sid), held in list(self.unacked.items()):
                if held:
                    self.acknowledge(OTHER[sender], sid, held)
            if not any(self.pending.values()) and not any(c.has_data_to_send for c in self.conns.values()):
                break
        else:
            raise AssertionError("the pair never drained")
        self.windows_never_negative()
        self.in_flight_within_granted_window()
        for key, sent in self.app_sent.items():
            assert self.app_received[key] == sent, key
            assert (key in self.peer_ended) == (key in self.ended)


TestFlowControl = FlowControl.TestCase
TestFlowControl.settings = settings(
    max_examples=80,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
