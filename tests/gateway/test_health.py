"""The gateway's side of health checks: the board, the checks sent to edges, the reports taken."""

from __future__ import annotations

import json

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from kokoa.gateway import Site, StaticSiteDirectory, TunnelRegistry
from kokoa.gateway._health import HealthBoard, HealthResult, parse_report
from kokoa.gateway._model import HealthCheck, HTTPResource, HTTPTarget
from kokoa.gateway._tunnels import GatewayTunnelHandler
from kokoa.secrets import hash_secret
from kokoa.wire import ErrorCode, ProtocolError

SECRET = "correct horse"
SITES = [Site("home", "Home", hash_secret(SECRET)), Site("away", "Away", hash_secret(SECRET))]
CHECK = HealthCheck(path="/healthz", interval=7, timeout=2, healthy_threshold=2, unhealthy_threshold=4)


@pytest.fixture
def logged():
    """The (level name, text) of every event logged during the test."""
    events: list[tuple[str, str]] = []

    def observe(event):
        events.append((event.get("log_level", LogLevel.info).name, formatEvent(event)))

    globalLogPublisher.addObserver(observe)
    yield events
    globalLogPublisher.removeObserver(observe)


class Directory(StaticSiteDirectory):
    """The static directory with HTTP resources too."""

    def __init__(self, http) -> None:
        super().__init__(SITES, [])
        self.http = list(http)

    def http_resources(self):
        return list(self.http)

    def targets_for(self, site_id):
        return {t.target for r in self.http for t in r.targets if t.site_id == site_id and r.enabled}


def resources() -> list[HTTPResource]:
    web = HTTPTarget("t_web", "home", "10.0.0.5", 8080, health_check=CHECK)
    tls = HTTPTarget(
        "t_tls",
        "home",
        "::1",
        8443,
        scheme="https",
        tls_verify=False,
        tls_server_name="api.internal",
        health_check=HealthCheck(expected_status="200,204"),
    )
    unchecked = HTTPTarget("t_plain", "home", "10.0.0.6", 80)
    remote = HTTPTarget("t_away", "away", "10.1.0.1", 80, health_check=CHECK)
    off = HTTPTarget("t_off", "home", "10.0.0.9", 80, health_check=CHECK)
    return [
        HTTPResource("r1", "one", "one.test", targets=(web, tls, unchecked)),
        HTTPResource("r2", "two", "two.test", targets=(web, remote)),  # t_web again: sent once
        HTTPResource("r3", "off", "off.test", targets=(off,), enabled=False),
    ]


class FakeTunnel:
    is_ready = True

    def __init__(self) -> None:
        self.peer_name = "127.0.0.1:1"
        self.streams = {}
        self.can_open_stream = True
        self.controls: list[dict] = []
        self.limit: int | None = None  # refuse control messages bigger than this (encoded)

    def send_control(self, message):
        size = len(json.dumps(message, separators=(",", ":"), sort_keys=True))
        if self.limit is not None and size > self.limit:
            raise ProtocolError(ErrorCode.CONTROL_TOO_LARGE, f"control message of {size} bytes")
        self.controls.append(message)

    def terminate(self, code, message):
        self.is_ready = False


def connect(
    h: GatewayTunnelHandler, site: str = "home", hello: dict | None = None
) -> tuple[FakeTunnel, dict]:
    tunnel = FakeTunnel()
    info = h.hello_received(tunnel, {"site": site, "secret": SECRET, **(hello or {})})
    h.tunnel_ready(tunnel, {})
    return tunnel, info


def handler(http=None, **kw) -> GatewayTunnelHandler:
    return GatewayTunnelHandler(Directory(resources() if http is None else http), TunnelRegistry(), **kw)


# ---------------------------------------------------------------------- the board


def test_a_target_never_reported_is_healthy():
    board = HealthBoard()
    assert board.healthy("home", "t_web") and board.state("home", "t_web") is None
    assert board.states() == []


def test_reports_change_the_state_and_forget_makes_it_unknown_again():
    clock = Clock()
    clock.advance(100)
    board = HealthBoard(clock)
    seen = []
    board.subscribe(lambda site, target, state: seen.append((site, target, state and state.healthy)))
    board.report("home", [HealthResult("t_web", False, "HTTP 500")])
    assert not board.healthy("home", "t_web")
    assert board.healthy("away", "t_web")  # per site
    assert board.states() == [
        {"site": "home", "target": "t_web", "healthy": False, "detail": "HTTP 500", "since": 100.0}
    ]
    clock.advance(5)
    board.report("home", [HealthResult("t_web", False, "connection refused")])  # no change of state
    assert board.state("home", "t_web").since == 100.0
    assert board.state("home", "t_web").detail == "connection refused"
    board.report("home", [HealthResult("t_web", True, "HTTP 200")])
    assert board.healthy("home", "t_web") and board.state("home", "t_web").since == 105.0
    board.forget("home")
    assert board.healthy("home", "t_web") and board.states() == []
    assert seen == [("home", "t_web", False), ("home", "t_web", True), ("home", "t_web", None)]


def test_retain_drops_the_states_of_checks_that_are_gone():
    board = HealthBoard()
    board.report("home", [HealthResult("a", False, "x"), HealthResult("b", False, "y")])
    board.retain("home", ["b"])
    assert board.healthy("home", "a") and not board.healthy("home", "b")
    board.retain("home", [])
    assert board.sites() == []


def test_a_failing_subscriber_does_not_starve_the_others(expect_logged_errors):
    board = HealthBoard()
    seen = []
    board.subscribe(lambda *a: 1 / 0)
    board.subscribe(lambda site, target, state: seen.append(target))
    board.report("home", [HealthResult("a", False)])
    assert seen == ["a"] and any("ZeroDivisionError" in e for e in expect_logged_errors)


@pytest.mark.parametrize(
    ("message", "why"),
    [
        ({"type": "health"}, "results must be a list"),
        ({"type": "health", "results": {"id": "a"}}, "results must be a list"),
        ({"type": "health", "results": ["a"]}, "results[0] must be an object"),
        ({"type": "health", "results": [{"healthy": True}]}, "results[0].id"),
        ({"type": "health", "results": [{"id": "", "healthy": True}]}, "results[0].id"),
        ({"type": "health", "results": [{"id": "a", "healthy": "yes"}]}, "results[0].healthy"),
        ({"type": "health", "results": [{"id": "a", "healthy": 1}]}, "results[0].healthy"),
        ({"type": "health", "results": [{"id": "a", "healthy": True, "detail": 5}]}, "results[0].detail"),
    ],
)
def test_malformed_reports_are_refused_with_a_reason(message, why):
    with pytest.raises(ValueError, match=why.replace("[", r"\[").replace("]", r"\]")):
        parse_report(message)


def test_a_report_is_parsed_and_long_details_cut():
    (result,) = parse_report(
        {"type": "health", "results": [{"id": "a", "healthy": False, "detail": "x" * 999}]}
    )
    assert result.id == "a" and not result.healthy and len(result.detail) == 256
    assert parse_report({"results": [{"id": "a", "healthy": True}]})[0].detail == ""


# ---------------------------------------------------------------------- checks sent to the edge


WEB_CHECK = {
    "id": "t_web",
    "target": "10.0.0.5:8080",
    "scheme": "http",
    "path": "/healthz",
    "interval": 7,
    "timeout": 2,
    "healthy_threshold": 2,
    "unhealthy_threshold": 4,
    "expected_status": "200-399",
    "tls_verify": True,
    "server_name": None,
}
TLS_CHECK = {
    "id": "t_tls",
    "target": "[::1]:8443",
    "scheme": "https",
    "path": None,
    "interval": 10,
    "timeout": 5,
    "healthy_threshold": 2,
    "unhealthy_threshold": 3,
    "expected_status": "200,204",
    "tls_verify": False,
    "server_name": "api.internal",
}


def test_welcome_carries_the_sites_checks_once_each():
    _, info = connect(handler())
    assert info["health_checks"] == [TLS_CHECK, WEB_CHECK]
    _, away = connect(handler(), "away")
    assert [c["id"] for c in away["health_checks"]] == ["t_away"]


def test_welcome_without_http_resources_has_an_empty_list():
    _, info = connect(handler([]))
    assert info["health_checks"] == []


def test_a_directory_without_http_resources_works():
    class Old:
        def authenticate(self, site_id, secret):
            return SITES[0]

        def targets_for(self, site_id):
            return {"127.0.0.1:22"}

    h = GatewayTunnelHandler(Old(), TunnelRegistry())
    assert h.hello_received(FakeTunnel(), {"site": "home", "secret": SECRET})["health_checks"] == []


def test_a_welcome_too_large_for_the_edge_goes_without_the_checks(logged):
    many = [HTTPTarget(f"t{i:04}", "home", "10.0.0.5", 8000 + i, health_check=CHECK) for i in range(10)]
    h = handler([HTTPResource("r", "r", "r.test", targets=tuple(many))])
    _, info = connect(h, hello={"settings": {"max_control_size": 1024}})
    assert "health_checks" not in info and len(info["targets"]) == 10
    assert (
        "error",
        "cannot send site Home (127.0.0.1:1) its 10 health check(s): the WELCOME would exceed "
        "the edge's max_control_size 1024",
    ) in logged
    _, info = connect(h, hello={"settings": {"max_control_size": 64 * 1024}})
    assert len(info["health_checks"]) == 10


def test_configuration_changes_send_the_checks_with_the_targets():
    h = handler()
    tunnel, _ = connect(h)
    h.configuration_changed()
    assert tunnel.controls[-1] == {
        "type": "config",
        "targets": ["10.0.0.5:8080", "10.0.0.6:80", "[::1]:8443"],
        "health_checks": [TLS_CHECK, WEB_CHECK],
    }


def test_a_config_too_large_is_sent_without_the_checks(logged):
    h = handler()
    tunnel, _ = connect(h)
    tunnel.limit = 200
    h.configuration_changed()
    assert tunnel.controls == [{"type": "config", "targets": ["10.0.0.5:8080", "10.0.0.6:80", "[::1]:8443"]}]
    errors = [text for level, text in logged if level == "error"]
    assert errors[0].startswith("cannot send site Home (127.0.0.1:1) its configuration: CONTROL_TOO_LARGE")
    assert errors[1] == "sent site Home (127.0.0.1:1) its targets without its 2 health check(s)"


# ---------------------------------------------------------------------- reports from the edge


def report(*results) -> dict:
    return {"type": "health", "results": [{"id": i, "healthy": ok, "detail": d} for i, ok, d in results]}


def test_a_report_reaches_the_board():
    board = HealthBoard()
    h = handler(health=board)
    assert h.health is board
    tunnel, _ = connect(h)
    h.control_received(tunnel, report(("t_web", False, "HTTP 500"), ("t_tls", True, "HTTP 204")))
    assert not h.health.healthy("home", "t_web") and h.health.healthy("home", "t_tls")
    assert h.health.state("home", "t_web").detail == "HTTP 500"


def test_the_handler_has_a_board_of_its_own_by_default():
    assert isinstance(handler().health, HealthBoard)
    assert handler().health is not handler().health


def test_an_edge_cannot_mark_another_sites_target():
    h = handler()
    home, _ = connect(h)
    away, _ = connect(h, "away")
    h.control_received(home, report(("t_away", False, "HTTP 500"), ("t_web", False, "HTTP 500")))
    assert h.health.healthy("away", "t_away") and h.health.healthy("home", "t_away")
    assert not h.health.healthy("home", "t_web")
    h.control_received(away, report(("t_web", True, "HTTP 200")))  # home's target, from away's edge
    assert not h.health.healthy("home", "t_web")


def test_results_for_unchecked_or_unknown_targets_are_ignored():
    h = handler()
    tunnel, _ = connect(h)
    h.control_received(tunnel, report(("t_plain", False, "x"), ("t_off", False, "x"), ("nope", False, "x")))
    assert h.health.states() == []


@pytest.mark.parametrize(
    "message",
    [
        {"type": "health"},
        {"type": "health", "results": "all good"},
        {"type": "health", "results": [{"id": "t_web", "healthy": "no"}]},
        {"type": "health", "results": [{"id": "t_web", "healthy": False}, 7]},
    ],
)
def test_malformed_reports_are_ignored_whole(message):
    h = handler()
    tunnel, _ = connect(h)
    h.control_received(tunnel, message)
    assert h.health.states() == []


def test_a_report_from_a_tunnel_not_yet_authenticated_is_ignored():
    h = handler()
    h.control_received(FakeTunnel(), report(("t_web", False, "x")))
    assert h.health.states() == []


def test_states_are_forgotten_when_the_sites_last_tunnel_goes():
    h = handler()
    first, _ = connect(h)
    second, _ = connect(h)
    h.control_received(first, report(("t_web", False, "HTTP 500")))
    h.tunnel_lost(first, ErrorCode.NO_ERROR, "bye")
    assert not h.health.healthy("home", "t_web")  # the other tunnel's edge still vouches
    h.tunnel_lost(second, ErrorCode.NO_ERROR, "bye")
    assert h.health.healthy("home", "t_web") and h.health.states() == []


def test_removing_a_check_drops_its_state():
    directory = Directory(resources())
    h = GatewayTunnelHandler(directory, TunnelRegistry())
    tunnel, _ = connect(h)
    h.control_received(tunnel, report(("t_web", False, "HTTP 500"), ("t_tls", False, "refused")))
    directory.http = [r for r in resources() if r.id != "r1"]  # t_tls gone; t_web still in r2
    h.configuration_changed()
    assert not h.health.healthy("home", "t_web") and h.health.healthy("home", "t_tls")
    assert [c["id"] for c in tunnel.controls[-1]["health_checks"]] == ["t_web"]
