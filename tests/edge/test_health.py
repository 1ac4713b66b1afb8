"""The edge's health checks: settings, thresholds and timing on a fake clock, reports to the
gateway, and the real probes against real servers on 127.0.0.1."""

from __future__ import annotations

import json

import pytest
import pytest_twisted as pt
from twisted.internet import defer, endpoints, reactor, task
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.web import resource, server

import memory_pump
from kokoa import pki
from kokoa.edge._handler import EdgeHandler, TargetPolicy
from kokoa.edge._health import CheckSpec, HealthChecker, NetworkProbe, parse_statuses
from kokoa.gateway import Site, StaticSiteDirectory, TunnelRegistry
from kokoa.gateway._model import HealthCheck, HTTPResource, HTTPTarget
from kokoa.gateway._tunnels import GatewayTunnelHandler
from kokoa.secrets import hash_secret
from kokoa.tunnel import TunnelProtocol
from kokoa.wire import ErrorCode, ProtocolError, Role

TARGET = "127.0.0.1:8080"


def check(check_id: str = "t1", **settings) -> dict:
    message = {
        "id": check_id,
        "target": TARGET,
        "scheme": "http",
        "path": "/healthz",
        "interval": 10,
        "timeout": 5,
        "healthy_threshold": 2,
        "unhealthy_threshold": 3,
        "expected_status": "200-399",
        "tls_verify": True,
        "server_name": None,
    }
    message.update(settings)
    return message


class Script:
    """A probe that answers from a script: (healthy, detail) at once, an Exception to fail,
    or None to never answer (until cancelled); the last entry repeats."""

    def __init__(self, *outcomes) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[tuple[CheckSpec, float]] = []
        self.hanging: list[defer.Deferred] = []
        self.clock: Clock | None = None

    def __call__(self, spec: CheckSpec) -> defer.Deferred:
        self.calls.append((spec, self.clock.seconds() if self.clock else 0))
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if outcome is None:
            d = defer.Deferred()
            self.hanging.append(d)
            return d
        if isinstance(outcome, Exception):
            return defer.fail(outcome)
        return defer.succeed(outcome)


UP, DOWN = (True, "HTTP 200"), (False, "HTTP 500")


def checker(*outcomes, policy=None) -> tuple[HealthChecker, Clock, Script, list[list[dict]]]:
    clock, script, sent = Clock(), Script(*outcomes), []
    script.clock = clock
    return HealthChecker(clock, send=sent.append, policy=policy, probe=script), clock, script, sent


def run(clock: Clock, checks: int, interval: float = 10) -> None:
    """Let ``checks`` more runs of a check happen (after clock.advance(0) ran the first)."""
    for _ in range(checks):
        clock.advance(interval)


@pytest.fixture
def logged():
    texts: list[str] = []

    def observe(event):
        texts.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    yield texts
    globalLogPublisher.removeObserver(observe)


# ---------------------------------------------------------------------- settings


def test_a_check_from_the_gateway_is_parsed():
    spec = CheckSpec.from_message(check(target="[::1]:8443", scheme="https", server_name="api.internal"))
    assert (spec.host, spec.port, spec.kind, spec.server_name) == ("::1", 8443, "https", "api.internal")
    tcp = CheckSpec.from_message({"id": "t", "target": "db.internal:5432"})
    assert (tcp.kind, tcp.interval, tcp.timeout, tcp.healthy_threshold, tcp.unhealthy_threshold) == (
        "tcp",
        10,
        5,
        2,
        3,
    )
    assert tcp.expects(200) and tcp.expects(399) and not tcp.expects(400)


def test_expected_statuses():
    assert parse_statuses("200-399") == ((200, 399),)
    assert parse_statuses("200, 204,300-308") == ((200, 200), (204, 204), (300, 308))
    spec = CheckSpec.from_message(check(expected_status="200,204"))
    assert spec.expects(204) and not spec.expects(201)


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"id": ""}, "id"),
        ({"id": 5}, "id"),
        ({"target": "nohost"}, "host:port"),
        ({"target": "h:0"}, "port"),
        ({"target": "h:99999"}, "port"),
        ({"target": "[nope]:80"}, "IPv6"),
        ({"target": "a b:80"}, "host:port"),
        ({"scheme": "ftp"}, "scheme"),
        ({"path": "healthz"}, "path"),
        ({"path": "/a b"}, "path"),
        ({"path": "/a\r\nX: y"}, "path"),
        ({"interval": 0}, "interval"),
        ({"interval": True}, "interval"),
        ({"interval": "10"}, "interval"),
        ({"timeout": 0}, "timeout"),
        ({"healthy_threshold": 0}, "healthy_threshold"),
        ({"unhealthy_threshold": 1.5}, "unhealthy_threshold"),
        ({"expected_status": "2xx"}, "expected_status"),
        ({"expected_status": "399-200"}, "expected_status"),
        ({"expected_status": "700"}, "expected_status"),
        ({"tls_verify": "no"}, "tls_verify"),
        ({"server_name": "a/b"}, "server_name"),
    ],
)
def test_bad_settings_are_refused(changes, why):
    with pytest.raises(ValueError, match=why):
        CheckSpec.from_message(check(**changes))


def test_malformed_checks_are_dropped_and_the_others_run(logged):
    health, clock, script, _ = checker(UP)
    health.configure([check("bad", interval=-1), "junk", check("good")])
    clock.advance(0)
    assert sorted(health.checks) == ["good"] and [s.id for s, _ in script.calls] == ["good"]
    assert any("ignored health check 'bad' from the gateway: interval" in t for t in logged)
    health.configure("not a list")  # ignored whole
    assert sorted(health.checks) == ["good"]
    health.stop()


# ---------------------------------------------------------------------- thresholds and timing


def test_the_first_result_decides_and_is_sent(logged):
    health, clock, _, sent = checker(DOWN)
    health.configure([check()])
    assert sent == [] and health.known() == []  # unknown until the first result
    clock.advance(0)
    assert sent == [[{"id": "t1", "healthy": False, "detail": "HTTP 500"}]]
    assert health.known() == [{"id": "t1", "healthy": False, "detail": "HTTP 500"}]
    assert "target t1 (127.0.0.1:8080) is now unhealthy: HTTP 500" in logged
    health.stop()


def test_it_takes_unhealthy_threshold_failures_in_a_row_to_go_unhealthy():
    health, clock, _, sent = checker(UP, DOWN, DOWN, UP, DOWN, DOWN, DOWN, DOWN)
    health.configure([check(unhealthy_threshold=3)])
    clock.advance(0)
    assert sent == [[{"id": "t1", "healthy": True, "detail": "HTTP 200"}]]
    run(clock, 5)  # down, down, up (resets), down, down: still healthy
    assert len(sent) == 1 and health.checks["t1"].state is True
    run(clock, 2)  # the third failure in a row
    assert sent[-1] == [{"id": "t1", "healthy": False, "detail": "HTTP 500"}]
    run(clock, 3)  # more failures: no news
    assert len(sent) == 2
    health.stop()


def test_it_takes_healthy_threshold_successes_in_a_row_to_recover():
    health, clock, _, sent = checker(DOWN, UP, DOWN, UP, UP)
    health.configure([check(healthy_threshold=2)])
    clock.advance(0)
    run(clock, 3)  # down, up, down, up: still unhealthy
    assert [s[0]["healthy"] for s in sent] == [False]
    run(clock, 1)
    assert [s[0]["healthy"] for s in sent] == [False, True]
    assert sent[-1] == [{"id": "t1", "healthy": True, "detail": "HTTP 200"}]
    health.stop()


def test_thresholds_of_one_follow_every_result():
    health, clock, _, sent = checker(UP, DOWN, UP)
    health.configure([check(healthy_threshold=1, unhealthy_threshold=1)])
    clock.advance(0)
    run(clock, 2)
    assert [s[0]["healthy"] for s in sent] == [True, False, True]
    health.stop()


def test_checks_run_on_their_interval_and_never_overlap():
    health, clock, script, _ = checker(UP)
    health.configure([check(interval=7)])
    clock.advance(0)
    clock.advance(7)
    clock.advance(7)
    assert [t for _, t in script.calls] == [0, 7, 14]
    script.outcomes = [None]  # the next probe hangs until its timeout (5 s)
    clock.advance(7)
    clock.advance(4.9)
    assert len(script.calls) == 4  # still running: no second probe meanwhile
    health.stop()


def test_a_slow_check_is_followed_at_once_by_the_next():
    health, clock, script, _ = checker(None)
    health.configure([check(interval=2, timeout=5)])
    clock.advance(0)
    clock.advance(5)  # timed out at 5, started at 0: the next one is due now
    clock.advance(0)
    assert [t for _, t in script.calls] == [0, 5]
    health.stop()


def test_a_probe_that_does_not_answer_times_out():
    health, clock, script, sent = checker(None)
    health.configure([check(timeout=2)])
    clock.advance(0)
    clock.advance(1.9)
    assert sent == []
    clock.advance(0.1)
    assert sent == [[{"id": "t1", "healthy": False, "detail": "timed out after 2s"}]]
    assert script.hanging[0].called  # cancelled
    health.stop()


def test_a_failing_probe_is_a_failed_check():
    from twisted.internet.error import ConnectionRefusedError

    health, clock, _, sent = checker(ConnectionRefusedError())
    health.configure([check(path=None)])
    clock.advance(0)
    assert sent == [[{"id": "t1", "healthy": False, "detail": "connection refused"}]]
    health.stop()


def test_a_target_the_policy_refuses_is_unhealthy_without_a_probe():
    policy = TargetPolicy(allow=["10.0.0.0/8"])
    policy.configured = {TARGET}
    health, clock, script, sent = checker(UP, policy=policy)
    health.configure([check()])
    clock.advance(0)
    assert script.calls == []
    assert sent == [
        [{"id": "t1", "healthy": False, "detail": f"target {TARGET!r} is outside this edge's --allow list"}]
    ]
    policy.configured = set()
    clock.advance(10)
    assert health.checks["t1"].detail == f"target {TARGET!r} is not configured for this site on the gateway"
    health.stop()


# ---------------------------------------------------------------------- configuration changes


def test_an_unchanged_check_keeps_running_undisturbed():
    health, clock, script, sent = checker(UP)
    health.configure([check()])
    clock.advance(0)
    running = health.checks["t1"]
    health.configure([check()])
    assert health.checks["t1"] is running and running.state is True
    clock.advance(10)
    assert len(script.calls) == 2 and len(sent) == 1
    health.stop()


def test_a_changed_check_restarts_and_reports_only_news():
    health, clock, script, sent = checker(DOWN)
    health.configure([check()])
    clock.advance(0)
    old = health.checks["t1"]
    health.configure([check(path="/other")])
    assert health.checks["t1"] is not old and not old.call  # the old timer is cancelled
    assert health.known() == []  # restarted: unknown until its first result
    clock.advance(0)
    assert script.calls[-1][0].path == "/other"
    assert len(sent) == 1  # still unhealthy: nothing new for the gateway
    script.outcomes = [UP]
    health.configure([check(path="/third")])
    clock.advance(0)
    assert sent[-1] == [{"id": "t1", "healthy": True, "detail": "HTTP 200"}]
    health.stop()


def test_a_removed_check_stops():
    health, clock, script, _ = checker(UP)
    health.configure([check("a"), check("b")])
    clock.advance(0)
    health.configure([check("b")])
    clock.advance(10)
    assert [s.id for s, _ in script.calls] == ["a", "b", "b"]
    assert [r["id"] for r in health.known()] == ["b"]
    health.configure([])
    assert clock.getDelayedCalls() == []
    assert health.known() == []


def test_duplicate_ids_run_once():
    health, clock, script, _ = checker(UP)
    health.configure([check("a"), check("a", path="/second")])
    clock.advance(0)
    assert [(s.id, s.path) for s, _ in script.calls] == [("a", "/healthz")]
    health.stop()


def test_stop_leaves_nothing_behind():
    health, clock, script, sent = checker(UP, None)
    health.configure([check("a"), check("b", path=None)])
    clock.advance(0)
    clock.advance(10)  # both probes now hang
    health.stop()
    assert clock.getDelayedCalls() == []
    assert all(d.called for d in script.hanging)  # cancelled
    n = len(sent)
    health.configure([check("c")])  # too late: ignored
    assert clock.getDelayedCalls() == [] and len(sent) == n


# ---------------------------------------------------------------------- the edge handler


class FakeTunnel:
    def __init__(self, ready: bool = True, limit: int | None = None) -> None:
        self.is_ready = ready
        self.limit = limit
        self.peer_name = "gateway"
        self.controls: list[dict] = []

    def send_control(self, message):
        size = len(json.dumps(message, separators=(",", ":"), sort_keys=True))
        if self.limit is not None and size > self.limit:
            raise ProtocolError(ErrorCode.CONTROL_TOO_LARGE, f"{size} bytes")
        self.controls.append(message)


def edge(*outcomes) -> tuple[EdgeHandler, Clock, Script]:
    clock, script = Clock(), Script(*outcomes)
    script.clock = clock
    return EdgeHandler(clock, TargetPolicy(), health_probe=script), clock, script


def health_messages(tunnel: FakeTunnel) -> list[dict]:
    return [m for m in tunnel.controls if m.get("type") == "health"]


def test_welcome_configures_the_checks_and_changes_are_reported():
    handler, clock, _ = edge(DOWN)
    tunnel = FakeTunnel()
    handler.tunnel_ready(tunnel, {"targets": [TARGET], "health_checks": [check()]})
    assert health_messages(tunnel) == []  # nothing known yet
    clock.advance(0)
    assert health_messages(tunnel) == [
        {"type": "health", "results": [{"id": "t1", "healthy": False, "detail": "HTTP 500"}]}
    ]
    handler.stop()
    assert clock.getDelayedCalls() == []


def test_a_new_tunnel_gets_every_known_state():
    handler, clock, _ = edge(UP)
    first = FakeTunnel()
    handler.tunnel_ready(first, {"targets": [TARGET], "health_checks": [check("a"), check("b")]})
    clock.advance(0)
    second = FakeTunnel()
    handler.tunnel_ready(second, {"targets": [TARGET], "health_checks": [check("a"), check("b")]})
    assert health_messages(second) == [
        {
            "type": "health",
            "results": [
                {"id": "a", "healthy": True, "detail": "HTTP 200"},
                {"id": "b", "healthy": True, "detail": "HTTP 200"},
            ],
        }
    ]
    handler.stop()


def test_config_messages_replace_the_checks_and_their_absence_keeps_them():
    handler, clock, _ = edge(UP)
    tunnel = FakeTunnel()
    handler.tunnel_ready(tunnel, {"targets": [TARGET], "health_checks": [check("a")]})
    handler.control_received(tunnel, {"type": "config", "targets": [TARGET], "health_checks": [check("b")]})
    assert sorted(handler.health.checks) == ["b"]
    handler.control_received(tunnel, {"type": "config", "targets": [TARGET]})  # an older gateway
    assert sorted(handler.health.checks) == ["b"]
    handler.tunnel_ready(FakeTunnel(), {"targets": [TARGET]})
    assert sorted(handler.health.checks) == ["b"]
    handler.control_received(tunnel, {"type": "config", "targets": [TARGET], "health_checks": []})
    assert handler.health.checks == {} and clock.getDelayedCalls() == []


def test_reports_go_on_every_ready_tunnel_or_wait_for_the_next():
    handler, clock, _ = edge(DOWN)
    draining = FakeTunnel()
    handler.tunnel_ready(draining, {"targets": [TARGET], "health_checks": [check()]})
    draining.is_ready = False
    ready, other = FakeTunnel(), FakeTunnel()  # maybe to two gateways: each keeps its own board
    handler.tunnels.update([ready, other])
    clock.advance(0)
    assert health_messages(draining) == []
    assert len(health_messages(ready)) == len(health_messages(other)) == 1
    handler.tunnels.clear()
    handler.health.configure([check(path="/x")])
    handler.health.checks["t1"].inherited = None  # pretend the gateway knows nothing
    clock.advance(0)  # no tunnel at all: dropped, the next tunnel_ready sends it
    later = FakeTunnel()
    handler.tunnel_ready(later, {"targets": [TARGET]})
    assert health_messages(later)[0]["results"] == [{"id": "t1", "healthy": False, "detail": "HTTP 500"}]
    handler.stop()


def test_a_report_too_large_is_split():
    handler, clock, _ = edge(UP)
    checks = [check(f"target-{i:03}") for i in range(40)]
    handler.tunnel_ready(FakeTunnel(), {"targets": [TARGET], "health_checks": checks})
    clock.advance(0)
    small = FakeTunnel(limit=1024)
    handler.tunnel_ready(small, {"targets": [TARGET]})
    messages = health_messages(small)
    assert len(messages) > 1
    assert sorted(r["id"] for m in messages for r in m["results"]) == [c["id"] for c in checks]
    handler.stop()


# ---------------------------------------------------------------------- through a real tunnel, in memory


SECRET = "s3cret"


class Directory(StaticSiteDirectory):
    def __init__(self, http) -> None:
        super().__init__(
            [Site("home", "Home", hash_secret(SECRET)), Site("away", "Away", hash_secret(SECRET))], []
        )
        self.http = http

    def http_resources(self):
        return list(self.http)

    def targets_for(self, site_id):
        return {t.target for r in self.http for t in r.targets if t.site_id == site_id}


def test_edge_reports_reach_the_gateways_board_through_a_tunnel():
    clock = Clock()
    hc = HealthCheck(path="/healthz", interval=10, timeout=2, healthy_threshold=1, unhealthy_threshold=2)
    directory = Directory(
        [
            HTTPResource(
                "r",
                "web",
                "web.test",
                targets=(
                    HTTPTarget("t_a", "home", "127.0.0.1", 8080, health_check=hc),
                    HTTPTarget("t_b", "home", "127.0.0.1", 8081, health_check=hc),
                ),
            )
        ]
    )
    gateway_handler = GatewayTunnelHandler(directory, TunnelRegistry())
    board = gateway_handler.health
    outcomes = {"127.0.0.1:8080": UP, "127.0.0.1:8081": DOWN}

    def probe(spec):
        return defer.succeed(outcomes[spec.target])

    edge_handler = EdgeHandler(clock, TargetPolicy(), health_probe=probe)
    gateway = TunnelProtocol(Role.SERVER, gateway_handler, clock)
    tunnel = TunnelProtocol(Role.CLIENT, edge_handler, clock, hello={"site": "home", "secret": SECRET})
    _, _, pump = memory_pump.connect(gateway, tunnel, clock)
    assert tunnel.is_ready and sorted(edge_handler.health.checks) == ["t_a", "t_b"]
    pump.flush()
    assert board.healthy("home", "t_a") and not board.healthy("home", "t_b")
    assert board.state("home", "t_b").detail == "HTTP 500"

    outcomes["127.0.0.1:8080"] = DOWN
    clock.advance(10)
    pump.flush()
    assert board.healthy("home", "t_a")  # one failure of two
    clock.advance(10)
    pump.flush()
    assert not board.healthy("home", "t_a")

    # The gateway drops a check: the edge stops it, the board forgets it.
    directory.http = [HTTPResource("r", "web", "web.test", targets=directory.http[0].targets[:1])]
    gateway_handler.configuration_changed()
    pump.flush()
    assert sorted(edge_handler.health.checks) == ["t_a"] and board.healthy("home", "t_b")

    edge_handler.stop()
    tunnel.terminate(ErrorCode.NO_ERROR, "bye")
    pump.flush()
    assert board.states() == []  # the site's last tunnel went


# ---------------------------------------------------------------------- real probes, real sockets


class Health(resource.Resource):
    """/ok answers 200, /status/N answers N, /big sends 1 MiB; records the Host headers."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.hosts: list[str] = []
        self.paths: list[str] = []

    def render_GET(self, request):
        self.hosts.append(request.getHeader(b"host").decode())
        path = request.path.decode()
        self.paths.append(path)
        if path.startswith("/status/"):
            request.setResponseCode(int(path.rsplit("/", 1)[1]))
        if path == "/big":
            return b"x" * (1 << 20)
        return b"ok"


class Silent(Protocol):
    """Accepts and never answers."""


class Hangup(Protocol):
    """Accepts and closes at once."""

    def connectionMade(self) -> None:
        self.transport.loseConnection()


@pytest.fixture
def tls_creds(tmp_path):
    return pki.ensure_dev_ca(tmp_path, ["upstream.internal"])


@pt.async_yield_fixture
async def servers(tls_creds):
    """An HTTP server, an HTTPS one (the dev CA's certificate), a silent one, and a closed port."""
    health = Health()
    ports = [
        await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(server.Site(health)),
        await endpoints.SSL4ServerEndpoint(
            reactor, 0, tls_creds.server_options(), interface="127.0.0.1"
        ).listen(server.Site(health)),
        await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(Silent)
        ),
        await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(Hangup)
        ),
    ]
    closed = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Factory())
    closed_port = closed.getHost().port
    await closed.stopListening()
    yield {
        "health": health,
        "http": ports[0].getHost().port,
        "https": ports[1].getHost().port,
        "silent": ports[2].getHost().port,
        "hangup": ports[3].getHost().port,
        "closed": closed_port,
    }
    for port in ports:
        await port.stopListening()
    await task.deferLater(reactor, 0.05, lambda: None)  # let the closes run


async def probe_once(port: int, ca_file: str | None = None, **settings) -> tuple[bool, str]:
    """Run one check with the real probe through a HealthChecker (timeouts and all)."""
    results: list[dict] = []
    done = defer.Deferred()

    def send(batch):
        results.extend(batch)
        done.callback(None)

    settings = {"healthy_threshold": 1, "unhealthy_threshold": 1, **settings}
    health = HealthChecker(reactor, send=send, probe=NetworkProbe(reactor, ca_file))
    health.configure([check(target=f"127.0.0.1:{port}", **settings)])
    try:
        await done
    finally:
        health.stop()
    (result,) = results
    return result["healthy"], result["detail"]


@pt.ensureDeferred
async def test_tcp_connect_to_a_listening_port_is_healthy(servers):
    assert await probe_once(servers["http"], path=None) == (True, "connected")


@pt.ensureDeferred
async def test_tcp_connect_to_a_closed_port_is_refused(servers):
    assert await probe_once(servers["closed"], path=None) == (False, "connection refused")


@pt.ensureDeferred
async def test_http_status_decides(servers):
    assert await probe_once(servers["http"], path="/ok") == (True, "HTTP 200")
    assert await probe_once(servers["http"], path="/status/500") == (False, "HTTP 500")
    assert await probe_once(servers["http"], path="/status/404") == (False, "HTTP 404")
    assert await probe_once(servers["http"], path="/status/204", expected_status="200,204") == (
        True,
        "HTTP 204",
    )
    assert servers["health"].paths == ["/ok", "/status/500", "/status/404", "/status/204"]


@pt.ensureDeferred
async def test_the_host_header_is_the_host_or_the_server_name(servers):
    await probe_once(servers["http"], path="/ok")
    await probe_once(servers["http"], path="/ok", server_name="app.internal")
    assert servers["health"].hosts == ["127.0.0.1", "app.internal"]


@pt.ensureDeferred
async def test_a_large_body_is_not_read_to_the_end(servers):
    assert await probe_once(servers["http"], path="/big") == (True, "HTTP 200")


@pt.ensureDeferred
async def test_a_server_that_never_answers_times_out(servers):
    assert await probe_once(servers["silent"], path="/ok", timeout=0.2) == (False, "timed out after 0.2s")
    assert await probe_once(servers["silent"], path=None, timeout=0.2) == (True, "connected")


@pt.ensureDeferred
async def test_a_server_that_hangs_up_fails_the_http_check(servers):
    assert await probe_once(servers["hangup"], path="/ok") == (
        False,
        "the connection closed before a complete response",
    )


@pt.ensureDeferred
async def test_http_to_a_closed_port_is_refused(servers):
    assert await probe_once(servers["closed"], path="/ok") == (False, "connection refused")


@pt.ensureDeferred
async def test_https_verified_with_the_server_name(servers, tls_creds):
    https = servers["https"]
    ca = tls_creds.ca_path
    assert await probe_once(https, ca, scheme="https", path="/ok", server_name="upstream.internal") == (
        True,
        "HTTP 200",
    )
    assert servers["health"].hosts[-1] == "upstream.internal"
    assert await probe_once(https, ca, scheme="https", path="/ok") == (True, "HTTP 200")  # 127.0.0.1 is named
    healthy, detail = await probe_once(https, ca, scheme="https", path="/ok", server_name="wrong.internal")
    assert (healthy, detail) == (False, "TLS handshake failed: the certificate does not match wrong.internal")


@pt.ensureDeferred
async def test_https_with_an_unknown_ca_fails_unless_verification_is_off(servers):
    healthy, detail = await probe_once(
        servers["https"], scheme="https", path="/ok", server_name="upstream.internal"
    )
    assert (healthy, detail) == (False, "TLS handshake failed: certificate verify failed")
    assert await probe_once(servers["https"], scheme="https", path="/ok", tls_verify=False) == (
        True,
        "HTTP 200",
    )


@pt.ensureDeferred
async def test_a_checker_runs_on_the_real_reactor_and_stops_clean(servers):
    sent: list[list[dict]] = []
    health = HealthChecker(reactor, send=sent.append)
    health.configure(
        [
            check("web", target=f"127.0.0.1:{servers['http']}", path="/ok", interval=1),
            check("db", target=f"127.0.0.1:{servers['closed']}", path=None, interval=1),
            check("slow", target=f"127.0.0.1:{servers['silent']}", path="/ok", interval=1, timeout=30),
        ]
    )
    for _ in range(100):
        if len(sent) >= 2:
            break
        await task.deferLater(reactor, 0.02, lambda: None)
    health.stop()  # "slow" is still waiting: cancelled, its connection closed
    assert sorted((r["id"], r["healthy"], r["detail"]) for batch in sent for r in batch) == [
        ("db", False, "connection refused"),
        ("web", True, "HTTP 200"),
    ]
