"""The gateway's pieces in memory: authentication, the registry, TCP resources without an edge."""

from __future__ import annotations

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

import memory_pump
from kokoa.gateway import Site, StaticSiteDirectory, TCPResource, TunnelRegistry
from kokoa.gateway._tcp import TCPResourceFactory
from kokoa.gateway._tunnels import GatewayTunnelHandler
from kokoa.secrets import hash_secret
from kokoa.tunnel import Refusal, TunnelProtocol
from kokoa.wire import ErrorCode, Role

SECRET = "correct horse"
SITES = [Site("home", "Home", hash_secret(SECRET)), Site("off", "Off", hash_secret(SECRET), enabled=False)]
RESOURCES = [TCPResource("ssh", "home", "tcp:2222", "127.0.0.1", 22)]


class FakeTunnel:
    def __init__(self, streams: int = 0, usable: bool = True) -> None:
        self.streams = dict.fromkeys(range(streams))
        self.can_open_stream = usable
        self.peer_name = "127.0.0.1:1"


def handler(max_tunnels: int = 16) -> GatewayTunnelHandler:
    return GatewayTunnelHandler(StaticSiteDirectory(SITES, RESOURCES), TunnelRegistry(), max_tunnels)


def test_valid_credentials_are_welcomed_with_the_sites_targets():
    h = handler()
    info = h.hello_received(FakeTunnel(), {"site": "home", "secret": SECRET})
    assert info["site"] == "home" and info["targets"] == ["127.0.0.1:22"]


@pytest.mark.parametrize(
    ("hello", "code", "text"),
    [
        ({"site": "home", "secret": "wrong"}, ErrorCode.AUTH_FAILED, "do not match"),
        ({"site": "nobody", "secret": SECRET}, ErrorCode.AUTH_FAILED, "do not match"),
        ({"site": "off", "secret": SECRET}, ErrorCode.SITE_DISABLED, "disabled"),
        ({"site": "home"}, ErrorCode.AUTH_FAILED, "must carry"),
        ({"site": 5, "secret": SECRET}, ErrorCode.AUTH_FAILED, "must carry"),
    ],
)
def test_bad_credentials_are_refused(hello, code, text):
    with pytest.raises(Refusal) as e:
        handler().hello_received(FakeTunnel(), hello)
    assert e.value.code == code and text in e.value.message


def test_unknown_site_and_wrong_secret_read_the_same():
    messages = set()
    for hello in ({"site": "nobody", "secret": SECRET}, {"site": "nobody", "secret": "x"}):
        with pytest.raises(Refusal) as e:
            handler().hello_received(FakeTunnel(), hello)
        messages.add(e.value.message.replace("nobody", "X"))
    assert len(messages) == 1


def test_tunnels_per_site_are_capped():
    h = handler(max_tunnels=2)
    for _ in range(2):
        tunnel = FakeTunnel()
        h.hello_received(tunnel, {"site": "home", "secret": SECRET})
        h.tunnel_ready(tunnel, {})
    with pytest.raises(Refusal) as e:
        h.hello_received(FakeTunnel(), {"site": "home", "secret": SECRET})
    assert e.value.code == ErrorCode.TOO_MANY_TUNNELS
    assert "already holds 2 tunnels" in e.value.message


def test_registry_picks_the_least_loaded_usable_tunnel():
    registry = TunnelRegistry()
    busy, idle, full = FakeTunnel(5), FakeTunnel(1), FakeTunnel(0, usable=False)
    for t in (busy, idle, full):
        registry.add("home", t)
    assert registry.pick("home") is idle
    registry.remove("home", idle)
    assert registry.pick("home") is busy
    assert registry.pick("elsewhere") is None
    registry.remove("home", busy)
    registry.remove("home", full)
    assert registry.sites_online() == []


def test_ties_between_tunnels_take_turns():
    registry = TunnelRegistry()
    a, b = FakeTunnel(), FakeTunnel()
    registry.add("home", a)
    registry.add("home", b)
    assert {registry.pick("home") for _ in range(4)} == {a, b}


def test_connection_to_an_offline_site_is_closed_at_once():
    factory = TCPResourceFactory(RESOURCES[0], TunnelRegistry())
    protocol = factory.buildProtocol(IPv4Address("TCP", "203.0.113.9", 5555))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "203.0.113.9", 5555))
    transport.abortConnection = lambda: setattr(transport, "aborted", True)
    protocol.makeConnection(transport)
    assert getattr(transport, "aborted", False)
    assert not factory.active


def test_edges_may_not_open_streams_to_the_gateway():
    """An edge that opens a stream gets it refused; the session stays up."""
    clock = Clock()
    h = handler()

    class EdgeSide:
        def hello_received(self, tunnel, hello): ...
        def tunnel_ready(self, tunnel, info): ...
        def stream_opened(self, tunnel, stream): ...
        def control_received(self, tunnel, message): ...
        def tunnel_lost(self, tunnel, code, message): ...

    gateway = TunnelProtocol(Role.SERVER, h, clock)
    edge = TunnelProtocol(Role.CLIENT, EdgeSide(), clock, hello={"site": "home", "secret": SECRET})
    _, _, pump = memory_pump.connect(gateway, edge, clock)
    assert edge.is_ready

    class Recorder(Protocol):
        reason = None

        def connectionLost(self, reason):
            self.reason = reason

    recorder = Recorder()
    edge.open_stream({"target": "x"}, recorder)
    pump.flush()
    assert recorder.reason is not None
    assert recorder.reason.value.code == ErrorCode.REFUSED_STREAM
    assert edge.is_ready and gateway.is_ready


class TerminableTunnel(FakeTunnel):
    is_ready = True

    def __init__(self) -> None:
        super().__init__()
        self.terminated = None
        self.controls = []

    def terminate(self, code, message):  # as the real one: the session is over
        self.terminated = (code, message)
        self.is_ready = False

    def send_control(self, message):
        self.controls.append(message)


def test_a_new_secret_in_the_file_disconnects_edges_on_the_old_one():
    directory = StaticSiteDirectory(SITES, RESOURCES)
    h = GatewayTunnelHandler(directory, TunnelRegistry())
    tunnel = TerminableTunnel()
    h.hello_received(tunnel, {"site": "home", "secret": SECRET})
    h.tunnel_ready(tunnel, {})
    h.configuration_changed()
    assert tunnel.terminated is None and tunnel.controls[-1]["targets"] == ["127.0.0.1:22"]
    directory.replace([Site("home", "Home", hash_secret("rotated"))], RESOURCES)
    h.configuration_changed()
    assert tunnel.terminated[0] == ErrorCode.AUTH_FAILED
    assert "no longer valid" in tunnel.terminated[1]


def test_disabling_a_site_disconnects_with_site_disabled():
    directory = StaticSiteDirectory(SITES, RESOURCES)
    h = GatewayTunnelHandler(directory, TunnelRegistry())
    tunnel = TerminableTunnel()
    h.hello_received(tunnel, {"site": "home", "secret": SECRET})
    h.tunnel_ready(tunnel, {})
    directory.replace([Site("home", "Home", hash_secret(SECRET), enabled=False)], RESOURCES)
    h.configuration_changed()
    assert tunnel.terminated[0] == ErrorCode.SITE_DISABLED
