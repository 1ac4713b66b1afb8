"""The console's pieces without a reactor: the event hub, what the tunnel handler notes about tunnels, the
access recorder's observer, the view's events, the ``[console]`` settings, and the SSE framing."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from twisted.internet import task

from kokoa.api._sse import DEFAULT_MAX_BUFFER, DEFAULT_MAX_STREAMS, EventSink, frame
from kokoa.auth._recorder import AccessRecorder
from kokoa.config import ConfigError
from kokoa.gateway import Site, StaticSiteDirectory, TunnelRegistry, _console
from kokoa.gateway._config import load_gateway_config
from kokoa.gateway._console import ConsoleView
from kokoa.gateway._events import EventHub
from kokoa.gateway._health import HealthBoard, HealthResult
from kokoa.gateway._model import HTTPResource, HTTPTarget
from kokoa.gateway._tunnels import GatewayTunnelHandler
from kokoa.secrets import hash_secret
from kokoa.transports._adapter import WebSocketStreamTransport

pytestmark = pytest.mark.sans_io

SECRET = "correct horse"


# -- the hub ---------------------------------------------------------------------------------------------


def test_the_hub_delivers_by_organization_and_forgets_who_unsubscribed():
    hub = EventHub()
    seen: dict[str, list] = {"a1": [], "a2": [], "b": []}
    stop_a1 = hub.subscribe("org_a", seen["a1"].append)
    hub.subscribe("org_a", seen["a2"].append)
    hub.subscribe("org_b", seen["b"].append)
    assert hub.watched("org_a") and not hub.watched("org_c") and not hub.watched(None)
    assert hub.watchers() == 3 and hub.watchers("org_a") == 2
    first = hub.publish("org_a", "site", {"id": "s1"})
    assert first is not None and first.name == "site" and first.data == {"id": "s1"}
    assert hub.publish("org_c", "site", {}) is None  # nobody watches: nothing built, nothing sent
    stop_a1()
    stop_a1()  # twice is fine
    second = hub.publish("org_a", "health", {"id": "t"})
    assert [e.id for e in seen["a1"]] == [first.id]
    assert [e.id for e in seen["a2"]] == [first.id, second.id] and second.id > first.id
    assert seen["b"] == []


def test_a_failing_subscriber_does_not_starve_the_others():
    hub = EventHub()
    got = []

    def broken(event):
        raise RuntimeError("boom")

    hub.subscribe("org", broken)
    hub.subscribe("org", got.append)
    hub.publish("org", "changed", {"kind": "site", "id": "s", "op": "update"})
    assert len(got) == 1


# -- tunnels: since when, over what, which edge version ----------------------------------------------------


class FakeTunnel:
    def __init__(self, transport=None) -> None:
        self.streams: dict = {}
        self.can_open_stream = True
        self.peer_name = "127.0.0.1:1"
        self.transport = transport
        self.rtt = 0.004


def test_the_handler_notes_each_tunnel_and_says_when_a_sites_tunnels_change():
    directory = StaticSiteDirectory([Site("home", "Home", hash_secret(SECRET))], [])
    h = GatewayTunnelHandler(directory, TunnelRegistry())
    changes = []
    h.on_tunnels_changed = changes.append
    ws = WebSocketStreamTransport(SimpleNamespace(state=1, STATE_OPEN=1), 1024)
    plain, websocket = FakeTunnel(), FakeTunnel(ws)
    for tunnel, version in ((plain, "1.2.3"), (websocket, "x" * 500 + "\x00")):
        h.hello_received(tunnel, {"site": "home", "secret": SECRET})
        h.tunnel_ready(tunnel, {"site": "home", "secret": SECRET, "edge_version": version})
    assert changes == ["home", "home"]
    info = h.tunnel_info(plain)
    assert info is not None and info.transport == "tls" and info.edge_version == "1.2.3"
    other = h.tunnel_info(websocket)
    assert other is not None and other.transport == "wss" and other.edge_version == "x" * 64
    h.tunnel_lost(plain, 0, "bye")
    assert changes == ["home", "home", "home"] and h.tunnel_info(plain) is None
    # a tunnel that never came up changes nothing
    stranger = FakeTunnel()
    h.hello_received(stranger, {"site": "home", "secret": SECRET})
    h.tunnel_lost(stranger, 0, "bye")
    assert len(changes) == 3


def test_a_failing_tunnel_subscriber_never_breaks_a_tunnel():
    directory = StaticSiteDirectory([Site("home", "Home", hash_secret(SECRET))], [])
    h = GatewayTunnelHandler(directory, TunnelRegistry())

    def broken(site_id):
        raise RuntimeError("boom")

    h.on_tunnels_changed = broken
    tunnel = FakeTunnel()
    h.hello_received(tunnel, {"site": "home", "secret": SECRET})
    h.tunnel_ready(tunnel, {})
    assert h.registry.tunnels("home") == [tunnel]


# -- the access recorder's observer -----------------------------------------------------------------------


class NoStore:
    def run(self, fn, *args, **kw):
        from twisted.internet.defer import Deferred

        return Deferred()


def test_the_observer_sees_refusals_at_once_and_allowed_requests_each_tick():
    recorder = AccessRecorder(lambda: None, task.Clock(), max_pending=100, retention_days=30)
    seen = []
    recorder.observer = lambda row, count: seen.append({**row, "count": count})
    recorder.record("request", "deny", "rule 1", org_id="org", resource_id="res", client_address="192.0.2.1")
    recorder.record("signin", "success", "password", user_id="usr")
    assert [(r["outcome"], r["count"]) for r in seen] == [("deny", 1), ("success", 1)]
    for _ in range(3):
        recorder.record("request", "allow", "granted", org_id="org", resource_id="res", user_id="u")
    assert len(seen) == 2  # allowed requests wait for the tick
    recorder.flush()  # the store is not open: nothing is written, the allowed rows are shown
    assert seen[-1]["outcome"] == "allow" and seen[-1]["count"] == 3 and len(seen) == 3
    recorder.flush()
    assert len(seen) == 3  # nothing new: nothing shown
    recorder.record("request", "allow", "granted", org_id="org", resource_id="res", user_id="u")
    recorder.flush()
    assert seen[-1]["count"] == 1  # only what is new since the last tick
    # the buffer itself still holds the whole count, for the database
    assert sorted(row["count"] for row in recorder._allowed.values()) == [4]


def test_the_observer_after_a_write_starts_counting_again():
    store = NoStore()
    recorder = AccessRecorder(lambda: store, task.Clock(), max_pending=100, retention_days=30)
    seen = []
    recorder.observer = lambda row, count: seen.append({**row, "count": count})
    recorder.record("request", "allow", "granted", org_id="org", resource_id="res")
    recorder.flush()  # shown (count 1), then handed to the store
    recorder.record("request", "allow", "granted", org_id="org", resource_id="res")
    recorder._flushing = False
    recorder.flush()
    assert [row["count"] for row in seen] == [1, 1]


def test_a_failing_observer_does_not_lose_the_row():
    recorder = AccessRecorder(lambda: None, task.Clock(), max_pending=100, retention_days=30)

    def broken(row, count):
        raise RuntimeError("boom")

    recorder.observer = broken
    recorder.record("request", "deny", "x", org_id="org")
    assert len(recorder) == 1


# -- the view's events ------------------------------------------------------------------------------------


class Directory:
    version = 1

    def __init__(self) -> None:
        self.resources = [
            HTTPResource(
                "res",
                "wiki",
                "wiki.example",
                targets=(HTTPTarget("tgt", "site", "10.0.0.1", 80),),
                org_id="org",
            )
        ]

    def site(self, site_id):
        return SimpleNamespace(name="Home", enabled=True) if site_id == "site" else None

    def site_org(self, site_id):
        return "org" if site_id == "site" else None

    def http_resources(self):
        return self.resources

    def tunnel_info(self, tunnel):
        return None


def test_the_view_publishes_sites_and_health_to_their_organization_only_when_watched():
    directory, registry, health, hub = Directory(), TunnelRegistry(), HealthBoard(), EventHub()
    view = ConsoleView(
        registry=registry,
        tunnels=directory,
        health=health,
        directory=directory,
        store_directory=directory,
        store=lambda: None,
        events=hub,
        name="gw",
    )
    health.subscribe(view.health_changed)
    view.configuration_changed()
    view.tunnels_changed("site")  # nobody watches: nothing
    assert hub.published == 0
    got = []
    hub.subscribe("org", got.append)
    registry.add("site", FakeTunnel())
    view.tunnels_changed("site")
    health.report("site", [HealthResult("tgt", False, "refused")])
    view.tunnels_changed("unknown")  # a site of the file: no organization
    assert [e.name for e in got] == ["site", "health"]
    assert got[0].data["online"] is True and got[0].data["tunnels"][0]["rtt_ms"] == 4.0
    assert got[1].data == {
        "resource_id": "res",
        "id": "tgt",
        "site_id": "site",
        "target": "10.0.0.1:80",
        "online": True,
        "healthy": False,
        "detail": "refused",
    }
    view.access_row({"org_id": "org", "kind": "request", "outcome": "deny", "reason": "r", "at": None})
    view.access_row({"org_id": "other", "kind": "request", "outcome": "deny", "reason": "r"})
    assert [e.name for e in got] == ["site", "health", "access"] and got[2].data["id"] is None


# -- the [console] settings -------------------------------------------------------------------------------


def load(tmp_path, text: str):
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return load_gateway_config(path).console


def test_console_settings_defaults_and_values(tmp_path):
    defaults = load(tmp_path, "")
    assert (defaults.max_streams, defaults.max_buffer) == (64, 1024 * 1024)
    assert (DEFAULT_MAX_STREAMS, DEFAULT_MAX_BUFFER) == (
        _console.DEFAULT_MAX_STREAMS,
        _console.DEFAULT_MAX_BUFFER,
    )
    set_ = load(tmp_path, "[console]\nmax_streams = 8\nmax_buffer = 65536\n")
    assert (set_.max_streams, set_.max_buffer) == (8, 65536)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[console]\nmax_streams = 0\n", "max_streams must be a whole number from 1 to 100000, not 0"),
        ("[console]\nmax_streams = 1.5\n", "max_streams must be a whole number"),
        ("[console]\nmax_streams = true\n", "max_streams must be a whole number"),
        ('[console]\nmax_streams = "8"\n', "max_streams must be a whole number"),
        ("[console]\nmax_buffer = 100\n", "max_buffer must be a whole number from 16384 to 1073741824 bytes"),
        ("[console]\nmax_buffer = 2000000000000\n", "max_buffer must be a whole number"),
        ("[console]\nmax_stream = 8\n", "unknown key(s) max_stream; known keys: max_buffer, max_streams"),
        ('console = "yes"\n', "[console]: must be a table"),
    ],
)
def test_bad_console_settings_are_refused_clearly(tmp_path, text, message):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, text)
    assert message in str(e.value) and "[console]" in str(e.value)


# -- framing ----------------------------------------------------------------------------------------------


def test_frames_are_one_json_line_and_fields_cannot_break_out():
    chunk = frame("site\nevent: evil", {"text": "a\nb\r\nc", "ü": "é"}, "7\ndata: x")
    lines = chunk.decode().split("\n")
    assert lines[0] == "id: 7 data: x" and lines[1] == "event: site event: evil"
    assert json.loads(lines[2].removeprefix("data: ")) == {"text": "a\nb\r\nc", "ü": "é"}
    assert chunk.endswith(b"\n\n") and chunk.count(b"\n") == 4


class Request:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


def test_a_sink_holds_live_events_behind_the_backlog_and_bounds_what_waits():
    request = Request()
    sink = EventSink(request, max_buffer=300)
    sink.push("live", {"n": 1})  # arrives while the backlog is being read
    sink.push("backlog", {"n": 0})
    assert request.written == []
    sink.release()
    assert [json.loads(w.split(b"data: ")[1]) for w in request.written] == [{"n": 1}, {"n": 0}]
    sink.pauseProducing()
    for n in range(5):
        sink.push("slow", {"n": n})
    assert sink.reason is None and sink.pending_bytes > 0
    sink.resumeProducing()
    assert sink.pending_bytes == 0 and len(request.written) == 7
    sink.pauseProducing()
    for n in range(20):
        sink.push("slow", {"n": n, "pad": "x" * 20})
    assert sink.reason == "overflow" and sink.pending_bytes == 0 and sink.closed.called
