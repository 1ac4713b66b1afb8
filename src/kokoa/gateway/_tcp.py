"""TCP resources: a public listening port whose connections go through a site's tunnel."""

from __future__ import annotations

from twisted.application.service import MultiService
from twisted.internet import defer, endpoints, task
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

    def __init__(self, resource: TCPResource, registry: TunnelRegistry, gate=None) -> None:
        self.resource = resource
        self.registry = registry
        self.gate = gate  # kokoa.auth.AccessGate: the resource's address rules (store resources)
        self.active: set[RelaySide] = set()

    def buildProtocol(self, addr):
        public, _ = pair(f"client {addr.host}:{addr.port}", "stream", self._closed, self._connected)
        public.factory = self
        return public

    def _connected(self, public: RelaySide) -> None:
        resource = self.resource
        peer = public.transport.getPeer()
        if self.gate is not None and resource.id and not self.gate.check_connection(resource, peer.host):
            public.other = None
            public.transport.abortConnection()
            return
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

    def close_all(self, abort: bool = True) -> None:
        """Close every open connection: at once (abort), or after what is queued (FIN)."""
        for public in list(self.active):
            if public.transport is not None:
                if abort:
                    public.transport.abortConnection()
                else:
                    public.transport.unregisterProducer()
                    public.transport.loseConnection()
        self.active.clear()


class TCPResourceService(MultiService):
    """One listener per enabled TCP resource in the directory."""

    def __init__(
        self, directory: ISiteDirectory, registry: TunnelRegistry, reactor, drain_timeout: float = 5.0
    ) -> None:
        super().__init__()
        self.drain_timeout = drain_timeout
        self.directory = directory
        self.registry = registry
        self.reactor = reactor
        self.ports: dict[str, object] = {}
        self.factories: dict[str, TCPResourceFactory] = {}
        self._lock = defer.DeferredLock()
        self._stopping = False
        self.gate = None  # set by the gateway: checks each connection against the resource's rules

    @defer.inlineCallbacks
    def startService(self):
        super().startService()
        yield self.reconcile()

    def reconcile(self) -> defer.Deferred:
        """Make the listeners match the directory (serialized: one change at a time)."""
        return self._lock.run(self._reconcile)

    @defer.inlineCallbacks
    def _reconcile(self):
        if self._stopping:
            return
        wanted = {r.key: r for r in self.directory.tcp_resources() if r.enabled}
        for key, factory in list(self.factories.items()):
            resource = wanted.get(key)
            if resource is not None and resource.listen == factory.resource.listen:
                factory.resource = resource  # new connections use the new target; open ones go on
            else:
                yield self.unlisten(key, "removed or disabled" if resource is None else "moved")
        listening = [self.listen(r) for key, r in wanted.items() if key not in self.factories]
        yield defer.DeferredList(listening, consumeErrors=True)

    def listen(self, resource: TCPResource) -> defer.Deferred:
        """Listen for ``resource``; a port that cannot be had is logged, not fatal."""
        factory = TCPResourceFactory(resource, self.registry, self.gate)
        endpoint = endpoints.serverFromString(self.reactor, resource.listen)

        def listening(port):
            self.ports[resource.key] = port
            self.factories[resource.key] = factory
            log.info(
                "resource {name!r}: {listen} -> site {site!r} target {target}",
                name=resource.name,
                listen=resource.listen,
                site=resource.site_id,
                target=resource.target,
            )
            return port

        def failed(failure):
            log.error(
                "resource {name!r} is not served: cannot listen on {listen}: {why}",
                name=resource.name,
                listen=resource.listen,
                why=failure.getErrorMessage(),
            )
            return failure

        return endpoint.listen(factory).addCallbacks(listening, failed)

    @defer.inlineCallbacks
    def unlisten(self, key: str, why: str):
        """Stop serving a resource: close its listener and, cleanly, its connections."""
        factory = self.factories.pop(key)
        port = self.ports.pop(key, None)
        if port is not None:
            yield port.stopListening()
        open_connections = len(factory.active)
        factory.close_all(abort=False)
        log.info(
            "resource {name!r} {why}: listener on {listen} closed, {n} connection(s) closed",
            name=factory.resource.name,
            why=why,
            listen=factory.resource.listen,
            n=open_connections,
        )

    def stopService(self):
        """Stop accepting, give open connections ``drain_timeout`` to finish, then cut them."""
        self._stopping = True  # no reconcile opens anything from now on
        return self._lock.run(self._stop)

    @defer.inlineCallbacks
    def _stop(self):
        yield defer.DeferredList([port.stopListening() for port in self.ports.values()])
        self.ports.clear()
        deadline = self.reactor.seconds() + self.drain_timeout
        while any(f.active for f in self.factories.values()) and self.reactor.seconds() < deadline:
            yield task.deferLater(self.reactor, 0.1, lambda: None)
        for factory in self.factories.values():
            factory.close_all()
        self.factories.clear()
        yield super().stopService()
