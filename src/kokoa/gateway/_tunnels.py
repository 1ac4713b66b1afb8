"""The gateway's side of a tunnel: authenticate the edge, register it, push its config,
take its health reports."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from twisted.internet.protocol import Factory
from twisted.logger import Logger

from kokoa import __version__
from kokoa.secrets import hash_secret
from kokoa.tunnel import Refusal, TunnelProtocol
from kokoa.wire import ErrorCode, Limits, ProtocolError, Role

from ._health import HealthBoard, parse_report
from ._model import AuthenticationFailed, HTTPTarget, ISiteDirectory, SiteDisabled
from ._registry import TunnelRegistry

#: Tunnels one site may hold open at once (edges x --connections).
DEFAULT_MAX_TUNNELS_PER_SITE = 16
#: Room left in a WELCOME for what the wire layer adds to the handler's info (version, settings).
_WELCOME_OVERHEAD = 512
#: The max_control_size an edge has when its HELLO does not say (the protocol's default).
_DEFAULT_MAX_CONTROL = 64 * 1024


def health_check_message(target: HTTPTarget) -> dict:
    """How one target's health check travels to its edge (docs/protocol.md, CONTROL config)."""
    check = target.health_check
    assert check is not None
    return {
        "id": target.id,
        "target": target.target,
        "scheme": target.scheme,
        "path": check.path,
        "interval": check.interval,
        "timeout": check.timeout,
        "healthy_threshold": check.healthy_threshold,
        "unhealthy_threshold": check.unhealthy_threshold,
        "expected_status": check.expected_status,
        "tls_verify": target.tls_verify,
        "server_name": target.tls_server_name,
    }


#: Longest edge version kept from a HELLO.
MAX_EDGE_VERSION = 64


@dataclass(frozen=True, slots=True)
class TunnelInfo:
    """What the gateway notes about a tunnel when it is up: since when, over what (``tls`` or
    ``wss``), and the edge's version as its HELLO said (None if it did not)."""

    since: datetime
    transport: str
    edge_version: str | None


def _transport_of(tunnel: TunnelProtocol) -> str:
    from kokoa.transports._adapter import WebSocketStreamTransport

    return "wss" if isinstance(getattr(tunnel, "transport", None), WebSocketStreamTransport) else "tls"


def _edge_version(hello: dict) -> str | None:
    version = hello.get("edge_version")
    if not isinstance(version, str) or not version:
        return None
    return "".join(c for c in version[:MAX_EDGE_VERSION] if c.isprintable())


def _encoded_size(message: dict) -> int:
    return len(json.dumps(message, separators=(",", ":"), sort_keys=True).encode())


class GatewayTunnelHandler:
    """ITunnelHandler for edges connecting to this gateway."""

    log = Logger()

    def __init__(
        self,
        directory: ISiteDirectory,
        registry: TunnelRegistry,
        max_tunnels_per_site: int = DEFAULT_MAX_TUNNELS_PER_SITE,
        *,
        health: HealthBoard | None = None,
    ) -> None:
        self.directory = directory
        self.registry = registry
        self.max_tunnels_per_site = max_tunnels_per_site
        #: What the edges report about their targets' health (the HTTP front reads it).
        self.health = health if health is not None else HealthBoard()
        #: Called with (site id, online) when a site's first tunnel comes or its last goes.
        self.on_presence: Callable[[str, bool], None] | None = None
        #: Called with the site id whenever one of its tunnels comes up or goes (after the registry).
        self.on_tunnels_changed: Callable[[str], None] | None = None
        self._site_of: dict[TunnelProtocol, str] = {}
        self._info_of: dict[TunnelProtocol, TunnelInfo] = {}
        self._secret_hash_of: dict[TunnelProtocol, str] = {}

    def hello_received(self, tunnel: TunnelProtocol, hello: dict) -> dict:
        site_id, secret = hello.get("site"), hello.get("secret")
        if not isinstance(site_id, str) or not isinstance(secret, str):
            raise Refusal(ErrorCode.AUTH_FAILED, "HELLO must carry a site id and a secret")
        try:
            site = self.directory.authenticate(site_id, secret)
        except AuthenticationFailed as e:
            self.log.warn("refused edge from {peer}: {why}", peer=tunnel.peer_name, why=str(e))
            code = ErrorCode.SITE_DISABLED if isinstance(e, SiteDisabled) else ErrorCode.AUTH_FAILED
            raise Refusal(code, str(e)) from None
        held = len(self.registry.tunnels(site.id))
        if held >= self.max_tunnels_per_site:
            message = (
                f"site {site.name!r} already holds {held} tunnels, the most this gateway allows "
                f"(max_tunnels_per_site); lower the edge's --connections or run fewer edges"
            )
            self.log.warn("refused edge from {peer}: {why}", peer=tunnel.peer_name, why=message)
            raise Refusal(ErrorCode.TOO_MANY_TUNNELS, message)
        self._site_of[tunnel] = site.id
        self._secret_hash_of[tunnel] = hash_secret(secret)  # to re-check it after a rotation
        tunnel.peer_name = f"site {site.name} ({tunnel.peer_name})"
        info = {
            "gateway_version": __version__,
            "site": site.id,
            "site_name": site.name,
            "targets": sorted(self.directory.targets_for(site.id)),
            "health_checks": self.health_checks().get(site.id, []),
        }
        limit = _peer_max_control(hello)
        if info["health_checks"] and _encoded_size(info) + _WELCOME_OVERHEAD > limit:
            n = len(info.pop("health_checks"))
            self.log.error(
                "cannot send {peer} its {n} health check(s): the WELCOME would exceed the edge's "
                "max_control_size {limit}",
                peer=tunnel.peer_name,
                n=n,
                limit=limit,
            )
        return info

    def tunnel_ready(self, tunnel: TunnelProtocol, info: dict) -> None:
        site_id = self._site_of[tunnel]
        self._info_of[tunnel] = TunnelInfo(datetime.now(UTC), _transport_of(tunnel), _edge_version(info))
        self.registry.add(site_id, tunnel)
        if len(self.registry.tunnels(site_id)) == 1 and self.on_presence is not None:
            self.on_presence(site_id, True)
        self._tunnels_changed(site_id)
        self.log.info(
            "edge connected: {peer}, edge version {version}, {n} tunnel(s) for this site",
            peer=tunnel.peer_name,
            version=info.get("edge_version", "?"),
            n=len(self.registry.tunnels(site_id)),
        )

    def stream_opened(self, tunnel: TunnelProtocol, stream) -> None:
        raise Refusal(ErrorCode.REFUSED_STREAM, "edges may not open streams to the gateway")

    def control_received(self, tunnel: TunnelProtocol, message: dict) -> None:
        if message.get("type") == "health":
            self._health_received(tunnel, message)
            return
        self.log.debug("control message from {peer}: {message}", peer=tunnel.peer_name, message=message)

    def _health_received(self, tunnel: TunnelProtocol, message: dict) -> None:
        site_id = self._site_of.get(tunnel)
        if site_id is None:
            return
        try:
            results = parse_report(message)
        except ValueError as e:
            self.log.warn(
                "ignored a malformed health report from {peer}: {why}", peer=tunnel.peer_name, why=e
            )
            return
        checked = {check["id"] for check in self.health_checks().get(site_id, [])}
        foreign = sorted({r.id for r in results if r.id not in checked})
        if foreign:
            # Another site's target, a removed one, or one without a check: an edge vouches
            # only for the checks this gateway gave it.
            self.log.warn(
                "ignored health results from {peer} for targets it does not check: {ids}",
                peer=tunnel.peer_name,
                ids=", ".join(repr(i) for i in foreign[:10]) + (", ..." if len(foreign) > 10 else ""),
            )
        self.health.report(site_id, [r for r in results if r.id in checked])

    def health_checks(self) -> dict[str, list[dict]]:
        """Per site id, the health checks its edge runs (the enabled HTTP resources' targets
        that have one), one per target id, sorted by id."""
        by_site: dict[str, dict[str, dict]] = {}
        http_resources = getattr(self.directory, "http_resources", None)  # directories without HTTP
        for resource in http_resources() if http_resources is not None else []:
            if not resource.enabled:
                continue
            for target in resource.targets:
                if target.health_check is None or not getattr(target, "enabled", True):
                    continue
                checks = by_site.setdefault(target.site_id, {})
                if target.id not in checks:
                    checks[target.id] = health_check_message(target)
        return {site_id: [checks[k] for k in sorted(checks)] for site_id, checks in by_site.items()}

    def tunnel_info(self, tunnel: TunnelProtocol) -> TunnelInfo | None:
        """What was noted when the tunnel came up (None for one that is not up)."""
        return self._info_of.get(tunnel)

    def _tunnels_changed(self, site_id: str) -> None:
        if self.on_tunnels_changed is None:
            return
        try:
            self.on_tunnels_changed(site_id)
        except Exception:  # the console's events must never break a tunnel
            self.log.failure("a tunnel subscriber failed")

    def tunnel_lost(self, tunnel: TunnelProtocol, code: int, message: str) -> None:
        site_id = self._site_of.pop(tunnel, None)
        self._secret_hash_of.pop(tunnel, None)
        was_up = self._info_of.pop(tunnel, None) is not None
        if site_id is None:
            return
        self.registry.remove(site_id, tunnel)
        if not self.registry.tunnels(site_id):
            self.health.forget(site_id)  # nobody vouches for these states any more
            if self.on_presence is not None:
                self.on_presence(site_id, False)
        if was_up:
            self._tunnels_changed(site_id)
        self.log.info(
            "edge disconnected: {peer} ({code}: {message}); {n} tunnel(s) left for this site",
            peer=tunnel.peer_name,
            code=ErrorCode.describe(code),
            message=message,
            n=len(self.registry.tunnels(site_id)),
        )

    def revalidate(self) -> None:
        """Disconnect edges whose secret is no longer accepted: rotated with no grace, or
        whose grace period ended (the gateway calls this on changes and periodically)."""
        for site_id, tunnel in self.registry.all():
            secret_hash = self._secret_hash_of.get(tunnel)
            if tunnel.is_ready and secret_hash and not self.directory.accepts_hash(site_id, secret_hash):
                why = "this site's secret was rotated: the edge's secret is no longer valid"
                self.log.info("disconnecting {peer}: {why}", peer=tunnel.peer_name, why=why)
                tunnel.terminate(ErrorCode.AUTH_FAILED, why)

    def configuration_changed(self) -> None:
        """Apply a new configuration to the connected edges: disconnect those whose site is
        gone or disabled or whose secret no longer holds; tell the others their targets."""
        for site_id, tunnel in self.registry.all():
            site = self.directory.site(site_id)
            if tunnel.is_ready and (site is None or not site.enabled):
                code = ErrorCode.AUTH_FAILED if site is None else ErrorCode.SITE_DISABLED
                why = "this site was removed from the gateway" if site is None else "this site was disabled"
                self.log.info("disconnecting {peer}: {why}", peer=tunnel.peer_name, why=why)
                tunnel.terminate(code, why)
        self.revalidate()
        checks = self.health_checks()
        for site_id in self.health.sites():  # states of removed checks are stale
            self.health.retain(site_id, [check["id"] for check in checks.get(site_id, [])])
        for site_id, tunnel in self.registry.all():
            if not tunnel.is_ready:
                continue
            targets = sorted(self.directory.targets_for(site_id))
            config = {"type": "config", "targets": targets, "health_checks": checks.get(site_id, [])}
            try:
                tunnel.send_control(config)
            except ProtocolError as e:  # e.g. more targets than the edge's max_control_size
                self.log.error("cannot send {peer} its configuration: {e}", peer=tunnel.peer_name, e=e)
                if not config["health_checks"]:
                    continue
                # Without the checks (the edge then keeps the ones it has), the targets may fit.
                try:
                    tunnel.send_control({"type": "config", "targets": targets})
                except ProtocolError:
                    continue
                self.log.error(
                    "sent {peer} its targets without its {n} health check(s)",
                    peer=tunnel.peer_name,
                    n=len(config["health_checks"]),
                )


def _peer_max_control(hello: dict) -> int:
    """The edge's max_control_size, from its HELLO's settings (the wire layer checked them)."""
    settings = hello.get("settings")
    value = settings.get("max_control_size") if isinstance(settings, dict) else None
    return value if type(value) is int and value > 0 else _DEFAULT_MAX_CONTROL


def tunnel_server_factory(handler: GatewayTunnelHandler, reactor, limits: Limits, **timeouts) -> Factory:
    """Builds one server-role TunnelProtocol per accepted tunnel connection."""
    return Factory.forProtocol(
        lambda: TunnelProtocol(Role.SERVER, handler, reactor, limits=limits, local_name="gateway", **timeouts)
    )
