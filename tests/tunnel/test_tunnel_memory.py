"""The tunnel protocol over an in-memory connection (twisted.test.iosim), with a fake clock."""

from __future__ import annotations

from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock

import memory_pump
from kokoa.tunnel import Refusal, TunnelProtocol
from kokoa.wire import ErrorCode, Limits, Role


class Handler:
    def __init__(self, accept=True):
        self.accept = accept
        self.ready = []
        self.lost = []
        self.opened = []
        self.controls = []
        self.on_open = None

    def hello_received(self, tunnel, hello):
        if not self.accept:
            raise Refusal(ErrorCode.AUTH_FAILED, "wrong secret for site 'a'")
        return {"gateway": "test"}

    def tunnel_ready(self, tunnel, info):
        self.ready.append(info)

    def stream_opened(self, tunnel, stream):
        self.opened.append(stream)
        if self.on_open:
            self.on_open(stream)

    def control_received(self, tunnel, message):
        self.controls.append(message)

    def tunnel_lost(self, tunnel, code, message):
        self.lost.append((code, message))


class Collect(Protocol):
    def __init__(self):
        self.data = bytearray()
        self.reason = None
        self.read_closed = False

    def dataReceived(self, data):
        self.data += data

    def connectionLost(self, reason):
        self.reason = reason


class Echo(Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


def connect(server_handler, client_handler, clock, limits=None, hello=None):
    server = TunnelProtocol(Role.SERVER, server_handler, clock, limits=limits)
    client = TunnelProtocol(Role.CLIENT, client_handler, clock, limits=limits, hello=hello or {"site": "a"})
    return memory_pump.connect(server, client, clock)


def test_handshake_and_echo_stream():
    clock = Clock()
    sh, ch = Handler(), Handler()
    ch.on_open = lambda stream: stream.attach(Echo())
    server, client, pump = connect(sh, ch, clock)
    assert sh.ready and ch.ready
    out = Collect()
    stream = server.open_stream({"target": "echo"}, out)
    payload = bytes(range(256)) * 4000  # 1 MB, more than one window
    stream.write(payload)
    for _ in range(200):
        pump.flush()
        if len(out.data) == len(payload):
            break
    assert bytes(out.data) == payload
    stream.loseConnection()
    pump.flush()
    pump.flush()
    assert out.reason is not None
    assert not server.streams and not client.streams


def test_refused_handshake_reaches_client():
    clock = Clock()
    sh, ch = Handler(accept=False), Handler()
    _server, _client, _pump = connect(sh, ch, clock)
    assert ch.lost and ch.lost[0][0] == ErrorCode.AUTH_FAILED
    assert "wrong secret" in ch.lost[0][1]
    assert sh.lost and sh.lost[0][0] == ErrorCode.AUTH_FAILED


def test_paused_reader_holds_window_and_others_flow():
    clock = Clock()
    sh, ch = Handler(), Handler()
    limits = Limits(initial_window=64 * 1024, max_window=64 * 1024)
    received = {}

    def on_open(stream):
        proto = Collect()
        received[stream.metadata["n"]] = (stream, proto)
        stream.attach(proto)
        if stream.metadata["n"] == 0:
            stream.pauseProducing()

    ch.on_open = on_open
    server, _client, pump = connect(sh, ch, clock, limits=limits)
    streams = [server.open_stream({"n": n}, Collect()) for n in range(3)]
    for s in streams:
        s.write(b"x" * 1_000_000)
    for _ in range(400):
        pump.flush()
    slow_stream, slow = received[0]
    assert len(slow.data) == 0
    assert slow_stream.buffered_inbound <= 64 * 1024
    for n in (1, 2):
        assert len(received[n][1].data) == 1_000_000
    slow_stream.resumeProducing()
    for _ in range(400):
        pump.flush()
    assert len(slow.data) == 1_000_000


def test_ping_timeout_declares_peer_dead():
    clock = Clock()
    sh, ch = Handler(), Handler()
    _server, client, pump = connect(sh, ch, clock)
    # From now on nothing the client sends reaches the server.
    client.transport.write = lambda data: None
    for _ in range(3):
        clock.advance(10)
        pump.flush()
    assert not sh.lost  # one unanswered ping is not yet death
    for _ in range(2):
        clock.advance(10)
        pump.flush()
    assert sh.lost and sh.lost[0][0] == ErrorCode.PING_TIMEOUT


def test_a_tunnel_out_of_stream_ids_drains_for_a_new_one():
    clock = Clock()
    sh, ch = Handler(), Handler()
    ch.on_open = lambda stream: stream.attach(Echo())
    server, _client, pump = connect(sh, ch, clock)
    server.connection._next_local_id = 2**31 - 2  # the last even id
    out = Collect()
    stream = server.open_stream({"n": 1}, out)
    assert not server.can_open_stream
    stream.write(b"still works")
    pump.flush()
    assert bytes(out.data) == b"still works"
    stream.loseConnection()
    for _ in range(5):
        pump.flush()
    assert sh.lost and ch.lost  # drained, then closed: the edge reconnects
