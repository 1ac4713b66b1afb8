"""Helpers shared by the kokoa.wire tests: a fake clock and connected pairs."""

from __future__ import annotations

from kokoa.wire import (
    HANDSHAKE_VERSION,
    SUPPORTED_VERSIONS,
    Connection,
    Event,
    Frame,
    FrameDecoder,
    FrameType,
    HandshakeCompleted,
    HelloReceived,
    Limits,
    Role,
    encode_frame,
)
from kokoa.wire._frames import MAX_PAYLOAD, encode_json, encode_reset, encode_u32


class FakeClock:
    """A clock the test advances by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def new_pair(
    clock: FakeClock | None = None,
    client_limits: Limits | None = None,
    server_limits: Limits | None = None,
    client_versions: tuple[int, ...] = SUPPORTED_VERSIONS,
    server_versions: tuple[int, ...] = SUPPORTED_VERSIONS,
) -> tuple[Connection, Connection, FakeClock]:
    """A client and a server that have exchanged nothing yet."""
    clock = clock or FakeClock()
    client = Connection(Role.CLIENT, client_limits, clock=clock, versions=client_versions)
    server = Connection(Role.SERVER, server_limits, clock=clock, versions=server_versions)
    return client, server, clock


def handshake(client: Connection, server: Connection, hello: dict | None = None) -> None:
    client.initiate(hello or {"site": "test"})
    events = server.receive_data(client.data_to_send())
    assert [type(e) for e in events] == [HelloReceived], events
    server.accept({"gateway": "test"})
    events = client.receive_data(server.data_to_send())
    assert [type(e) for e in events] == [HandshakeCompleted], events


def connected_pair(
    clock: FakeClock | None = None,
    client_limits: Limits | None = None,
    server_limits: Limits | None = None,
) -> tuple[Connection, Connection, FakeClock]:
    client, server, clock = new_pair(clock, client_limits, server_limits)
    handshake(client, server)
    return client, server, clock


def deliver(sender: Connection, receiver: Connection, limit: int | None = None) -> list[Event]:
    """Everything ``sender`` has to send, fed whole to ``receiver``."""
    return receiver.receive_data(sender.data_to_send(limit))


def pump(client: Connection, server: Connection, rounds: int = 100) -> tuple[list[Event], list[Event]]:
    """Exchange bytes until both sides are quiet; returns (client events, server events)."""
    client_events: list[Event] = []
    server_events: list[Event] = []
    for _ in range(rounds):
        to_server = client.data_to_send()
        to_client = server.data_to_send()
        if not to_server and not to_client:
            return client_events, server_events
        server_events += server.receive_data(to_server)
        client_events += client.receive_data(to_client)
    raise AssertionError("the pair never went quiet")


def parse(data: bytes) -> list[Frame]:
    """Cut bytes that a Connection produced into frames (all of them complete)."""
    decoder = FrameDecoder(MAX_PAYLOAD, MAX_PAYLOAD)
    frames = decoder.feed(data)
    assert decoder.buffered == 0, "output ends inside a frame"
    return frames


def frame(ftype: int, stream_id: int = 0, payload: bytes = b"", flags: int = 0, version: int = 1) -> bytes:
    return encode_frame(version, ftype, flags, stream_id, payload)


def data_frame(stream_id: int, payload: bytes = b"", fin: bool = False) -> bytes:
    return frame(FrameType.DATA, stream_id, payload, flags=1 if fin else 0)


def open_frame(stream_id: int, metadata: dict | None = None, fin: bool = False) -> bytes:
    return frame(FrameType.OPEN, stream_id, encode_json(metadata or {}), flags=1 if fin else 0)


def reset_frame(stream_id: int, code: int = 12, reason: str = "") -> bytes:
    return frame(FrameType.RESET, stream_id, encode_reset(code, reason))


def window_frame(stream_id: int, increment: int) -> bytes:
    return frame(FrameType.WINDOW_UPDATE, stream_id, encode_u32(increment))


def hello_frame(body: dict) -> bytes:
    return frame(FrameType.HELLO, 0, encode_json(body), version=HANDSHAKE_VERSION)


def goaways(data: bytes) -> list[Frame]:
    return [f for f in parse(data) if f.type == FrameType.GOAWAY]
