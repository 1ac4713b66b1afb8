"""Health checks of the targets next to this edge, reported to the gateway.

The gateway sends the checks with the targets (WELCOME and CONTROL ``config``, key
``health_checks``); :class:`HealthChecker` runs each on its interval, applies its
thresholds, and reports every change of state (``{"type": "health", "results": [...]}``).
See docs/protocol.md for both messages.

A check is a TCP connect (no ``path``) or an HTTP(S) GET of ``path``: healthy when the
status is in ``expected_status``. A check runs at most once at a time: the next run starts
``interval`` seconds after the previous one started, or at once if that one took longer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from OpenSSL import SSL
from twisted.internet import defer, endpoints, error
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from kokoa import __version__

from ._endpoints import target_endpoint

#: Body bytes of a check's response read (and thrown away) before the connection is closed.
MAX_BODY = 64 * 1024
#: Longest ``detail`` sent to the gateway.
MAX_DETAIL = 200
#: Bounds on what the gateway may ask for (a bad value drops the check, with a warning).
MIN_INTERVAL, MAX_INTERVAL = 1, 24 * 3600
MAX_TIMEOUT = 3600
MAX_THRESHOLD = 1000

_log = Logger()


# ---------------------------------------------------------------------- the checks' settings


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """One health check, as the gateway configured it (equal specs: nothing to restart)."""

    id: str
    target: str  # "host:port", IPv6 in brackets: what the edge's target policy sees
    host: str
    port: int
    scheme: str = "http"  # http or https; only used when path is set
    path: str | None = None  # None: a TCP connect check
    interval: float = 10
    timeout: float = 5
    healthy_threshold: int = 2
    unhealthy_threshold: int = 3
    expected_status: str = "200-399"
    tls_verify: bool = True
    server_name: str | None = None
    statuses: tuple[tuple[int, int], ...] = field(default=((200, 399),), compare=False, repr=False)

    @property
    def kind(self) -> str:
        return "tcp" if self.path is None else self.scheme

    def expects(self, status: int) -> bool:
        return any(low <= status <= high for low, high in self.statuses)

    @classmethod
    def from_message(cls, raw: object) -> CheckSpec:
        """Validate one entry of ``health_checks``; ValueError says what is wrong."""
        if not isinstance(raw, dict):
            raise ValueError("a health check must be an object")
        check_id = raw.get("id")
        if not isinstance(check_id, str) or not 0 < len(check_id) <= 200:
            raise ValueError("id must be a non-empty string")
        host, port = _split_target(raw.get("target"))
        scheme = raw.get("scheme", "http")
        if scheme not in ("http", "https"):
            raise ValueError(f"scheme must be http or https, not {scheme!r}")
        path = raw.get("path")
        if path is not None and not _valid_path(path):
            raise ValueError(f"path must be an absolute path of visible ASCII characters, not {path!r}")
        interval = _number(raw, "interval", 10, MIN_INTERVAL, MAX_INTERVAL)
        timeout = _number(raw, "timeout", 5, 0.001, MAX_TIMEOUT)
        healthy = _whole(raw, "healthy_threshold", 2)
        unhealthy = _whole(raw, "unhealthy_threshold", 3)
        expected = raw.get("expected_status", "200-399")
        statuses = parse_statuses(expected)
        tls_verify = raw.get("tls_verify", True)
        if not isinstance(tls_verify, bool):
            raise ValueError("tls_verify must be true or false")
        server_name = raw.get("server_name")
        if server_name is not None and (not isinstance(server_name, str) or not _valid_name(server_name)):
            raise ValueError(f"server_name must be a host name, not {server_name!r}")
        return cls(
            id=check_id,
            target=raw["target"],
            host=host,
            port=port,
            scheme=scheme,
            path=path,
            interval=interval,
            timeout=timeout,
            healthy_threshold=healthy,
            unhealthy_threshold=unhealthy,
            expected_status=expected,
            tls_verify=tls_verify,
            server_name=server_name,
            statuses=statuses,
        )


def parse_statuses(text: object) -> tuple[tuple[int, int], ...]:
    """``"200-399"``, ``"200,204"``, ``"200,300-308"`` as (low, high) ranges."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("expected_status must be a string such as 200-399 or 200,204")
    ranges = []
    for part in text.split(","):
        what = part.strip()
        low, dash, high = what.partition("-")
        try:
            bounds = (int(low), int(high) if dash else int(low))
        except ValueError:
            raise ValueError(f"expected_status {text!r}: {what!r} is not a status or a range") from None
        if not 100 <= bounds[0] <= bounds[1] <= 599:
            raise ValueError(f"expected_status {text!r}: {what!r} is not within 100-599")
        ranges.append(bounds)
    return tuple(ranges)


def _split_target(target: object) -> tuple[str, int]:
    if not isinstance(target, str):
        raise ValueError("target must be a host:port string")
    host, _, port = target.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"target {target!r}: {host!r} is not an IPv6 address") from None
    elif not _valid_name(host):
        raise ValueError(f"target {target!r} must be host:port")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"target {target!r}: the port must be from 1 to 65535")
    return host, int(port)


def _valid_name(name: str) -> bool:
    return 0 < len(name) <= 253 and all(c.isalnum() or c in "-._" for c in name) and name.isascii()


def _valid_path(path: object) -> bool:
    return (
        isinstance(path, str)
        and path.startswith("/")
        and len(path) <= 2048
        and all(0x21 <= ord(c) <= 0x7E for c in path)
    )


def _number(raw: dict, key: str, default: float, low: float, high: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{key} must be a number of seconds from {low:g} to {high:g}")
    return value


def _whole(raw: dict, key: str, default: int) -> int:
    value = raw.get(key, default)
    if type(value) is not int or not 1 <= value <= MAX_THRESHOLD:
        raise ValueError(f"{key} must be a whole number from 1 to {MAX_THRESHOLD}")
    return value


# ---------------------------------------------------------------------- probes


#: A probe runs one check once: a Deferred of (healthy, detail), or a failure that
#: :func:`describe_failure` turns into a detail. The checker applies the timeout.
Probe = Callable[[CheckSpec], defer.Deferred]


@implementer(IAgentEndpointFactory)
class _OneEndpoint:
    """The Agent's connection goes to the check's host:port whatever the URI says."""

    def __init__(self, endpoint) -> None:
        self._endpoint = endpoint

    def endpointForURI(self, uri):
        return self._endpoint


class _Discard(Protocol):
    """Reads a response body up to ``limit`` bytes and throws it away, then stops."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.received = 0
        self.cancelled = False
        self.done = defer.Deferred(self._cancel)

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        if self.received > self.limit and self.transport is not None:
            self.transport.stopProducing()  # enough: the status decided already

    def connectionLost(self, reason) -> None:
        if not self.cancelled and not self.done.called:
            self.done.callback(None)

    def _cancel(self, _) -> None:
        self.cancelled = True
        if self.transport is not None:
            self.transport.stopProducing()


class NetworkProbe:
    """The real checks: a TCP connect, or a GET with a real HTTP client (twisted.web's Agent)."""

    def __init__(self, reactor, ca_file: str | None = None) -> None:
        self.reactor = reactor
        self.ca_file = ca_file
        self._creators: dict[tuple[str, bool], object] = {}

    def __call__(self, spec: CheckSpec) -> defer.Deferred:
        endpoint = target_endpoint(self.reactor, spec.host, spec.port, spec.timeout)
        if spec.path is None:
            return endpoint.connect(Factory.forProtocol(Protocol)).addCallback(self._connected)
        if spec.scheme == "https":
            endpoint = endpoints.wrapClientTLS(self._creator(spec), endpoint)
        agent = Agent.usingEndpointFactory(
            self.reactor, _OneEndpoint(endpoint), pool=HTTPConnectionPool(self.reactor, persistent=False)
        )
        host = f"[{spec.host}]" if ":" in spec.host else spec.host
        uri = f"{spec.scheme}://{host}:{spec.port}{spec.path}".encode("ascii")
        headers = Headers(
            {
                b"host": [(spec.server_name or host).encode("ascii")],
                b"user-agent": [f"kokoa-edge/{__version__} health check".encode()],
            }
        )
        return agent.request(b"GET", uri, headers).addCallback(self._response, spec)

    @staticmethod
    def _connected(protocol: Protocol) -> tuple[bool, str]:
        protocol.transport.loseConnection()
        return True, "connected"

    @staticmethod
    def _response(response, spec: CheckSpec) -> defer.Deferred:
        sink = _Discard(MAX_BODY)
        response.deliverBody(sink)
        result = (spec.expects(response.code), f"HTTP {response.code}")
        return sink.done.addCallback(lambda _: result)

    def _creator(self, spec: CheckSpec):
        from kokoa.transports import Trust
        from kokoa.transports._trust import _UnverifiedCreator

        name = spec.server_name or spec.host
        key = (name, spec.tls_verify)
        creator = self._creators.get(key)
        if creator is None:
            if spec.tls_verify:
                creator = Trust(ca_file=self.ca_file).connection_creator(name)
            else:
                creator = _UnverifiedCreator(name)  # Trust(insecure=True) would warn about the gateway
            self._creators[key] = creator
        return creator


def describe_failure(failure: Failure, spec: CheckSpec) -> str:
    """A short reason for the gateway's log and status (``"connection refused"``)."""
    wrapped = getattr(failure.value, "reasons", None)  # the Agent's ResponseNeverReceived and co.
    if isinstance(wrapped, list):
        causes = [r for r in wrapped if isinstance(r, Failure) and not r.check(error.ConnectionDone)]
        if not causes or causes[0].check(error.ConnectionLost):
            return "the connection closed before a complete response"
        return describe_failure(causes[0], spec)
    if failure.check(defer.TimeoutError, error.TimeoutError, defer.CancelledError):
        return f"timed out after {spec.timeout:g}s"
    if failure.check(error.ConnectionRefusedError):
        return "connection refused"
    if failure.check(error.DNSLookupError):
        return f"cannot resolve {spec.host}"
    if failure.check(SSL.Error):
        return f"TLS handshake failed: {_ssl_reason(failure.value)}"
    if type(failure.value).__name__ == "VerificationError":  # service_identity: the name did not match
        return f"TLS handshake failed: the certificate does not match {spec.server_name or spec.host}"
    if failure.check(error.ConnectionLost, error.ConnectionDone):
        return "the connection closed before a complete response"
    message = failure.getErrorMessage().strip()
    return message or type(failure.value).__name__


def _ssl_reason(e: SSL.Error) -> str:
    try:
        return ", ".join(str(part[2]) for part in e.args[0]) or str(e)
    except (IndexError, TypeError):
        return str(e)


# ---------------------------------------------------------------------- the checker


class _Check:
    """One running check and its state machine."""

    def __init__(self, spec: CheckSpec, inherited: bool | None = None) -> None:
        self.spec = spec
        self.state: bool | None = None  # None: unknown, until the first result
        self.detail = ""
        self.successes = 0  # in a row
        self.failures = 0  # in a row
        self.inherited = inherited  # the state of the check this one replaced (no news if equal)
        self.call = None  # the DelayedCall of the next run
        self.running: defer.Deferred | None = None
        self.stopped = False

    def result(self) -> dict:
        return {"id": self.spec.id, "healthy": self.state, "detail": self.detail}


class HealthChecker:
    """Runs the checks the gateway configured and tells it of every change of state.

    ``send(results)`` gets a list of ``{"id", "healthy", "detail"}`` on each change;
    ``policy`` (the edge's TargetPolicy) may refuse a target: the check then fails without
    touching the network, with the refusal as its detail.
    """

    log = Logger()

    def __init__(
        self,
        reactor,
        send: Callable[[list[dict]], None] | None = None,
        policy=None,
        probe: Probe | None = None,
        ca_file: str | None = None,
    ) -> None:
        self.reactor = reactor
        self.send = send
        self.policy = policy
        self.probe: Probe = probe if probe is not None else NetworkProbe(reactor, ca_file)
        self.checks: dict[str, _Check] = {}
        self.stopped = False

    def configure(self, raw: object) -> None:
        """Apply the gateway's ``health_checks`` list: start new checks, restart changed
        ones, stop removed ones. Malformed entries are dropped with a warning."""
        if self.stopped:
            return
        if not isinstance(raw, list):
            self.log.warn("ignored health checks from the gateway: not a list")
            return
        specs: dict[str, CheckSpec] = {}
        for entry in raw:
            try:
                spec = CheckSpec.from_message(entry)
            except ValueError as e:
                where = entry.get("id") if isinstance(entry, dict) else None
                self.log.warn("ignored health check {id!r} from the gateway: {why}", id=where, why=str(e))
                continue
            specs.setdefault(spec.id, spec)
        for check_id in [i for i in self.checks if i not in specs]:
            self._stop(self.checks.pop(check_id))
        for check_id, spec in specs.items():
            current = self.checks.get(check_id)
            if current is not None and current.spec == spec:
                continue
            inherited = None
            if current is not None:
                self._stop(current)
                inherited = current.state if current.state is not None else current.inherited
            check = self.checks[check_id] = _Check(spec, inherited)
            self._schedule(check, 0)

    def known(self) -> list[dict]:
        """Every check whose state is known, as results (sent on each new tunnel)."""
        return [self.checks[i].result() for i in sorted(self.checks) if self.checks[i].state is not None]

    def stop(self) -> None:
        """Stop every check (the edge is stopping): no timer and no probe is left running."""
        self.stopped = True
        for check in self.checks.values():
            self._stop(check)

    # -------------------------------------------------------------- running

    def _schedule(self, check: _Check, delay: float) -> None:
        check.call = self.reactor.callLater(delay, self._run, check)

    def _stop(self, check: _Check) -> None:
        check.stopped = True
        if check.call is not None and check.call.active():
            check.call.cancel()
        check.call = None
        if check.running is not None:
            running, check.running = check.running, None
            running.cancel()

    def _run(self, check: _Check) -> None:
        check.call = None
        spec = check.spec
        started = self.reactor.seconds()
        refusal = self.policy.refusal(spec.target) if self.policy is not None else None
        if refusal is not None:
            d = defer.succeed((False, refusal))
        else:
            d = defer.maybeDeferred(self.probe, spec)
            d.addTimeout(spec.timeout, self.reactor)
            d.addErrback(lambda failure: (False, describe_failure(failure, spec)))
        check.running = d
        d.addCallback(self._finished, check, started)
        d.addErrback(lambda failure: self.log.failure("health check {id} failed", failure, id=spec.id))

    def _finished(self, outcome: tuple[bool, str], check: _Check, started: float) -> None:
        check.running = None
        if check.stopped:
            return
        healthy, detail = outcome
        self._record(check, bool(healthy), str(detail)[:MAX_DETAIL])
        delay = max(0.0, started + check.spec.interval - self.reactor.seconds())
        self._schedule(check, delay)

    def _record(self, check: _Check, healthy: bool, detail: str) -> None:
        spec = check.spec
        if healthy:
            check.successes, check.failures = check.successes + 1, 0
        else:
            check.successes, check.failures = 0, check.failures + 1
        previous = check.state
        if previous is None:
            new = healthy  # the first result decides
        elif previous and check.failures >= spec.unhealthy_threshold:
            new = False
        elif not previous and check.successes >= spec.healthy_threshold:
            new = True
        else:
            new = previous
        if new == previous:
            if new == healthy:
                check.detail = detail  # keep the reason current; the news is only on changes
            return
        check.state, check.detail = new, detail
        before = previous if previous is not None else check.inherited
        check.inherited = None
        if new == before:
            return  # a restarted check found what the gateway already knows
        self.log.info(
            "target {id} ({target}) is now {state}: {detail}",
            id=spec.id,
            target=spec.target,
            state="healthy" if new else "unhealthy",
            detail=detail,
        )
        if self.send is not None:
            self.send([check.result()])
