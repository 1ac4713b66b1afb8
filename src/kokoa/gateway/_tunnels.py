"""The gateway's side of a tunnel: authenticate the edge, register it, push its config."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.protocol import Factory
from twisted.logger import Logger

from kokoa import __version__
from kokoa.secrets import hash_secret
from kokoa.tunnel import Refusal, TunnelProtocol
from kokoa.wire import ErrorCode, Limits, ProtocolError, Role

from ._model import AuthenticationFailed, ISiteDirectory, SiteDisabled
from ._registry import TunnelRegistry

#: Tunnels one site may hold open at once (edges x --connections).
DEFAULT_MAX_TUNNELS_PER_SITE = 16


class GatewayTunnelHandler:
    """ITunnelHandler for edges connecting to this gateway."""

    log = Logger()

    def __init__(
        self,
        directory: ISiteDirectory,
        registry: TunnelRegistry,
        max_tunnels_per_site: int = DEFAULT_MAX_TUNNELS_PER_SITE,
    ) -> None:
        self.directory = directory
        self.registry = registry
        self.max_tunnels_per_site = max_tunnels_per_site
        #: Called with (site id, online) when a site's first tunnel comes or its last goes.
        self.on_presence: Callable[[str, bool], None] | None = None
        self._site_of: dict[TunnelProtocol, str] = {}
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
        return {
            "gateway_version": __version__,
            "site": site.id,
            "site_name": site.name,
            "targets": sorted(self.directory.targets_for(site.id)),
        }

    def tunnel_ready(self, tunnel: TunnelProtocol, info: dict) -> None:
        site_id = self._site_of[tunnel]
        self.registry.add(site_id, tunnel)
        if len(self.registry.tunnels(site_id)) == 1 and self.on_presence is not None:
            self.on_presence(site_id, True)
        self.log.info(
            "edge connected: {peer}, edge version {version}, {n} tunnel(s) for this site",
            peer=tunnel.peer_name,
            version=info.get("edge_version", "?"),
            n=len(self.registry.tunnels(site_id)),
        )

    def stream_opened(self, tunnel: TunnelProtocol, stream) -> None:
        raise Refusal(ErrorCode.REFUSED_STREAM, "edges may not open streams to the gateway")

    def control_received(self, tunnel: TunnelProtocol, message: dict) -> None:
        self.log.debug("control message from {peer}: {message}", peer=tunnel.peer_name, message=message)

    def tunnel_lost(self, tunnel: TunnelProtocol, code: int, message: str) -> None:
        site_id = self._site_of.pop(tunnel, None)
        self._secret_hash_of.pop(tunnel, None)
        if site_id is None:
            return
        self.registry.remove(site_id, tunnel)
        if not self.registry.tunnels(site_id) and self.on_presence is not None:
            self.on_presence(site_id, False)
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
        for site_id, tunnel in self.registry.all():
            if not tunnel.is_ready:
                continue
            targets = sorted(self.directory.targets_for(site_id))
            try:
                tunnel.send_control({"type": "config", "targets": targets})
            except ProtocolError as e:  # e.g. more targets than the edge's max_control_size
                self.log.error("cannot send {peer} its configuration: {e}", peer=tunnel.peer_name, e=e)


def tunnel_server_factory(handler: GatewayTunnelHandler, reactor, limits: Limits, **timeouts) -> Factory:
    """Builds one server-role TunnelProtocol per accepted tunnel connection."""
    return Factory.forProtocol(
        lambda: TunnelProtocol(Role.SERVER, handler, reactor, limits=limits, local_name="gateway", **timeouts)
    )
