"""The edge's side of a tunnel: serve the gateway's streams by connecting to local targets,
and check those targets' health for the gateway."""

from __future__ import annotations

import ipaddress

from twisted.internet import error
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from kokoa.tunnel import Refusal, TunnelProtocol, TunnelStream, pair
from kokoa.wire import ErrorCode, ProtocolError

from ._endpoints import target_endpoint
from ._health import HealthChecker, Probe

#: Seconds to wait for a target to accept a connection.
DEFAULT_CONNECT_TIMEOUT = 10.0

_ADVICE = {
    ErrorCode.AUTH_FAILED: "check --site and the secret (KOKOA_SITE_SECRET or --secret-file)",
    ErrorCode.SITE_DISABLED: "an administrator disabled this site on the gateway",
    ErrorCode.TOO_MANY_TUNNELS: "lower --connections, or stop the other edges of this site",
    ErrorCode.UNSUPPORTED_VERSION: "the edge and the gateway speak different protocol versions: "
    "upgrade the older one",
}


class TargetPolicy:
    """Which targets the edge will connect to: those the gateway configured for this
    site, narrowed by the edge's own ``--allow`` list when one is given."""

    def __init__(self, allow: list[str] | None = None) -> None:
        self.configured: set[str] = set()
        self.allow = list(allow or [])

    def refusal(self, target: object) -> str | None:
        """Why the edge will not connect to ``target``, or None if it will."""
        if not isinstance(target, str) or target not in self.configured:
            return f"target {target!r} is not configured for this site on the gateway"
        if self.allow and not any(_matches(rule, target) for rule in self.allow):
            return f"target {target!r} is outside this edge's --allow list"
        return None


def _matches(rule: str, target: str) -> bool:
    """``host:port``, ``host:*`` or ``CIDR`` (any port)."""
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    if "/" in rule:
        try:
            return ipaddress.ip_address(host) in ipaddress.ip_network(rule, strict=False)
        except ValueError:
            return False
    rule_host, _, rule_port = rule.rpartition(":")
    return rule_host.strip("[]") == host and rule_port in ("*", port)


class EdgeHandler:
    """ITunnelHandler for the tunnels this edge holds."""

    log = Logger()

    def __init__(
        self,
        reactor,
        policy: TargetPolicy,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        *,
        health_probe: Probe | None = None,
        health_ca_file: str | None = None,
    ) -> None:
        self.reactor = reactor
        self.policy = policy
        self.connect_timeout = connect_timeout
        self.tunnels: set[TunnelProtocol] = set()
        self.stopping = False
        #: The targets' health checks (configured by the gateway, run here).
        self.health = HealthChecker(
            reactor, send=self._send_health, policy=policy, probe=health_probe, ca_file=health_ca_file
        )

    def hello_received(self, tunnel, hello):
        raise Refusal(ErrorCode.PROTOCOL_ERROR, "the edge does not accept tunnels")

    def tunnel_ready(self, tunnel: TunnelProtocol, info: dict) -> None:
        self.tunnels.add(tunnel)
        self._set_targets(info.get("targets", []))
        if "health_checks" in info:  # absent (an older gateway): the checks stay as they are
            self.health.configure(info["health_checks"])
        self.log.info(
            "connected to gateway {peer} as site {site!r} ({n} tunnel(s) up); targets: {targets}",
            peer=tunnel.peer_name,
            site=info.get("site_name", info.get("site")),
            n=len(self.tunnels),
            targets=", ".join(sorted(self.policy.configured)) or "none yet",
        )
        known = self.health.known()
        if known:  # a new tunnel may mean a gateway that forgot (or never heard) them
            self._send_health(known, tunnel)

    def control_received(self, tunnel: TunnelProtocol, message: dict) -> None:
        if message.get("type") == "config":
            self._set_targets(message.get("targets", []))
            if "health_checks" in message:
                self.health.configure(message["health_checks"])
            self.log.info(
                "configuration updated; targets: {t}; {n} health check(s)",
                t=", ".join(sorted(self.policy.configured)),
                n=len(self.health.checks),
            )

    def stop(self) -> None:
        """The edge is stopping: no reconnection news, no more health checks."""
        self.stopping = True
        self.health.stop()

    def _send_health(self, results: list[dict], tunnel: TunnelProtocol | None = None) -> None:
        """Report results on ``tunnel``, or else on every ready tunnel: they may end at different
        gateways (several --gateway, or gateways sharing one address), and each keeps its own
        board; a gateway ignores a repeated state. With no tunnel up, the next tunnel_ready
        sends every known state. A report too large is split in halves until each part fits."""
        if tunnel is None:
            for each in [t for t in self.tunnels if t.is_ready]:
                self._send_health(results, each)
            return
        if not tunnel.is_ready:
            return
        try:
            tunnel.send_control({"type": "health", "results": results})
        except ProtocolError as e:
            if e.code != ErrorCode.CONTROL_TOO_LARGE or len(results) == 1:
                ids = ", ".join(str(r.get("id")) for r in results[:10])
                self.log.error("cannot report the health of {ids}: {e}", ids=ids, e=e)
                return
            half = len(results) // 2
            self._send_health(results[:half], tunnel)
            self._send_health(results[half:], tunnel)

    def tunnel_lost(self, tunnel: TunnelProtocol, code: int, message: str) -> None:
        self.tunnels.discard(tunnel)
        advice = _ADVICE.get(code)
        if advice:
            self.log.error(
                "the gateway refused this edge: {code}: {message}. What to do: {advice}",
                code=ErrorCode.describe(code),
                message=message,
                advice=advice,
            )
        else:
            self.log.info(
                "tunnel to {peer} closed ({code}: {message}){then}",
                then="" if self.stopping else "; reconnecting",
                peer=tunnel.peer_name,
                code=ErrorCode.describe(code),
                message=message,
            )

    def stream_opened(self, tunnel: TunnelProtocol, stream: TunnelStream) -> None:
        target = stream.metadata.get("target")
        refusal = self.policy.refusal(target)
        if refusal is not None:
            self.log.warn("refused a stream: {why}", why=refusal)
            raise Refusal(ErrorCode.UNKNOWN_TARGET, refusal)
        host, _, port = target.rpartition(":")
        stream_side, target_side = pair(f"stream {stream.stream_id}", f"target {target}")
        stream.pauseProducing()  # hold the client's bytes (within the window) until connected
        stream.attach(stream_side)
        endpoint = target_endpoint(self.reactor, host.strip("[]"), int(port), self.connect_timeout)
        factory = Factory.forProtocol(lambda: target_side)
        factory.noisy = False  # no "Starting/Stopping factory" lines for every stream
        d = endpoint.connect(factory)
        d.addErrback(self._connect_failed, stream, target)

    def _connect_failed(self, failure, stream: TunnelStream, target: str) -> None:
        if failure.check(error.ConnectionRefusedError):
            code, reason = ErrorCode.CONNECT_REFUSED, f"connection to {target} refused"
        elif failure.check(error.TimeoutError):
            code, reason = (
                ErrorCode.CONNECT_TIMEOUT,
                f"no answer from {target} within {self.connect_timeout:g}s",
            )
        else:
            code, reason = ErrorCode.TARGET_UNREACHABLE, f"cannot reach {target}: {failure.getErrorMessage()}"
        self.log.warn("stream {sid}: {reason}", sid=stream.stream_id, reason=reason)
        stream.reset(code, reason)

    def _set_targets(self, targets) -> None:
        if isinstance(targets, list) and all(isinstance(t, str) for t in targets):
            self.policy.configured = set(targets)
