"""TCP resources: a public listening port whose connections go through a site's tunnel."""

from __future__ import annotations

from twisted.application.service import MultiService
from twisted.internet import defer, endpoints
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from kokoa.tunnel import RelaySide, StreamReset, pair
from kokoa.wire import ErrorCode, ProtocolError

from ._model import ISiteDirectory, TCPResource
from ._registry import TunnelRegistry

log = Logger()


class TCPResourceFactory(Factory):
    """Accepts public connections for one resource and relays each over a new stream."""

    def __init__(self, resource: TCPResource, registry: TunnelRegistry) -> None:
        self.resource = resource
        self.registry = registry
        self.active: set[RelaySide] = set()

    def buildProtocol(self, addr):
        public, _ = pair(f"client {addr.host}:{addr.port}", "stream", self._closed, self._connected)
        public.factory = self
        return public

    def _connected(self, public: RelaySide) -> None:
        resource = self.resource
        peer = public.transport.getPeer()
        tunnel = self.registry.pick(resource.site_id)
        if tunnel is None:
            log.warn(
                "closing {client} to resource {name!r}: {why}",
                client=f"{peer.host}:{peer.port}",
                name=resource.name,
                why=self._why_no_tunnel(resource.site_id),
            )
            public.other = None
            public.transport.abortConnection()
            return
        public.transport.pauseProducing()  # until the stream is attached
        metadata = {
            "proto": "tcp",
            "resource": resource.name,
            "target": resource.target,
            "client": f"{peer.host}:{peer.port}",
        }
        self.active.add(public)
        try:
            tunnel.open_stream(metadata, public.other)
        except ProtocolError as e:
            log.warn("cannot open a stream for {name!r}: {e}", name=resource.name, e=e.message)
            public.other = None
            public.transport.abortConnection()

    def _why_no_tunnel(self, site_id: str) -> str:
        tunnels = self.registry.tunnels(site_id)
        if not tunnels:
            return f"site {site_id!r} is offline (no edge connected)"
        limit = tunnels[0].connection.peer.max_concurrent_streams
        return (
            f"site {site_id!r} cannot take another stream: its {len(tunnels)} tunnel(s) are draining "
            f"or full (the edge allows {limit} concurrent streams per tunnel)"
        )

    def _closed(self, side: RelaySide, reason: Failure) -> None:
        if side.name != "stream":
            self.active.discard(side)
            return
        # The stream's side knows why: the edge's reset code and reason.
        if reason.check(StreamReset) and reason.value.code not in (ErrorCode.NO_ERROR, ErrorCode.CANCEL):
            log.warn(
                "connection of {client} to resource {name!r} closed: {why}",
                client=side.other.name if side.other else "?",
                name=self.resource.name,
                why=reason.getErrorMessage(),
            )

    def close_all(self, why: str) -> None:
        for public in list(self.active):
            if public.transport is not None:
                public.transport.abortConnection()
        self.active.clear()


class TCPResourceService(MultiService):
    """One listener per enabled TCP resource in the directory."""

    def __init__(self, directory: ISiteDirectory, registry: TunnelRegistry, reactor) -> None:
        super().__init__()
        self.directory = directory
        self.registry = registry
        self.reactor = reactor
        self.ports: dict[str, object] = {}
        self.factories: dict[str, TCPResourceFactory] = {}

    @defer.inlineCallbacks
    def startService(self):
        super().startService()
        for resource in self.directory.tcp_resources():
            if resource.enabled:
                yield self.listen(resource)

    @defer.inlineCallbacks
    def listen(self, resource: TCPResource):
        factory = TCPResourceFactory(resource, self.registry)
        endpoint = endpoints.serverFromString(self.reactor, resource.listen)
        port = yield endpoint.listen(factory)
        self.ports[resource.name] = port
        self.factories[resource.name] = factory
        log.info(
            "resource {name!r}: {listen} -> site {site!r} target {target}",
            name=resource.name,
            listen=resource.listen,
            site=resource.site_id,
            target=resource.target,
        )

    @defer.inlineCallbacks
    def stopService(self):
        for name, port in list(self.ports.items()):
            yield port.stopListening()
            self.factories[name].close_all("gateway stopping")
        self.ports.clear()
        yield super().stopService()
