"""An HTTP front, a real tunnel and a real edge in one reactor, over loopback sockets.

The gateway's pieces (registry, tunnel handler, HTTPFront) and the edge's
(EdgeHandler) are the production classes; only the processes are folded into one,
so tests can look inside (the pool, the balancers) and drive clients from threads
with plain blocking sockets while the reactor runs.
"""

from __future__ import annotations

import hashlib
import socket
from dataclasses import dataclass, field

from twisted.internet import defer, endpoints, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.web import resource, server

from kokoa.edge._handler import EdgeHandler, TargetPolicy
from kokoa.gateway import Site, StaticSiteDirectory, TunnelRegistry
from kokoa.gateway._model import HTTPResource, HTTPTarget
from kokoa.gateway._tunnels import GatewayTunnelHandler, tunnel_server_factory
from kokoa.http._front import FrontSettings, HTTPFront
from kokoa.secrets import hash_secret
from kokoa.tunnel import TunnelProtocol
from kokoa.wire import Limits, Role

SECRET = "rig secret"


class Directory(StaticSiteDirectory):
    """The static directory with HTTP resources too."""

    def __init__(self, sites, http_resources) -> None:
        super().__init__(sites, [])
        self.http = list(http_resources)

    def http_resources(self):
        return list(self.http)

    def targets_for(self, site_id):
        return {t.target for r in self.http for t in r.targets if t.site_id == site_id and r.enabled}

    def set_http(self, resources) -> None:
        self.http = list(resources)
        self.replace(list(self._sites.values()), [])


class Echo(resource.Resource):
    """Answers with what it received: method, path, headers and the body's length and digest."""

    isLeaf = True

    def __init__(self, name: str = "upstream") -> None:
        super().__init__()
        self.name = name
        self.requests: list[dict] = []

    def render(self, request):
        body = request.content.read()
        seen = {
            "method": request.method.decode(),
            "uri": request.uri.decode(),
            "headers": {
                k.decode().lower(): [v.decode() for v in vs]
                for k, vs in request.requestHeaders.getAllRawHeaders()
            },
            "length": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "upstream": self.name,
        }
        self.requests.append(seen)
        path = request.path.decode()
        if path.startswith("/status/"):
            request.setResponseCode(int(path.rsplit("/", 1)[1]))
        if path.startswith("/bytes/"):
            n = int(path.rsplit("/", 1)[1])
            request.setHeader(b"content-type", b"application/octet-stream")
            return b"x" * n
        if path.startswith("/chunked/"):
            n = int(path.rsplit("/", 1)[1])
            for _ in range(n):
                request.write(b"chunk;")
            request.finish()
            return server.NOT_DONE_YET
        request.setHeader(b"content-type", b"application/json")
        import json

        return json.dumps(seen).encode()


class Recorder(Protocol):
    """A raw upstream that records every byte and answers each request line with a small 200."""

    def connectionMade(self) -> None:
        self.factory.connections += 1

    def dataReceived(self, data: bytes) -> None:
        self.factory.received += data
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


@dataclass
class Rig:
    directory: Directory
    front: HTTPFront
    registry: TunnelRegistry
    handler: GatewayTunnelHandler
    http_port: int
    ports: list = field(default_factory=list)
    tunnels: list = field(default_factory=list)
    upstreams: dict = field(default_factory=dict)
    edges: list = field(default_factory=list)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    @defer.inlineCallbacks
    def stop(self):
        self.front.stop()
        self.front.close_all()
        for edge in self.edges:
            edge.stop()  # its health checks' timers
        for tunnel in self.tunnels:
            if tunnel.transport is not None:
                tunnel.transport.loseConnection()
        for port in self.ports:
            yield port.stopListening()
        # let the closes run
        yield deferLater(0.05)


def deferLater(seconds: float):
    from twisted.internet import task

    return task.deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def listen_upstream(site_resource) -> tuple[object, int]:
    port = yield endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        server.Site(site_resource)
    )
    return port, port.getHost().port


@defer.inlineCallbacks
def start_rig(resources_for, settings: FrontSettings | None = None, edges: int = 1, sites=("home",)):
    """``resources_for(ports)`` builds the HTTP resources once the upstreams listen.

    Returns a Rig whose edges are connected."""
    site_objs = [Site(s, s, hash_secret(SECRET)) for s in sites]
    directory = Directory(site_objs, [])
    registry = TunnelRegistry()
    handler = GatewayTunnelHandler(directory, registry)
    front = HTTPFront(directory, registry, reactor, settings or FrontSettings())
    directory.subscribe(front.reload)
    front.start()
    directory.subscribe(handler.configuration_changed)
    tunnel_port = yield endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        tunnel_server_factory(handler, reactor, Limits())
    )
    http_port = yield endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        front.factory("http")
    )
    rig = Rig(directory, front, registry, handler, http_port.getHost().port, ports=[tunnel_port, http_port])
    resources = yield resources_for(rig)
    directory.set_http(resources)
    for site in sites:
        for _ in range(edges):
            edge = EdgeHandler(reactor, TargetPolicy())
            rig.edges.append(edge)
            ready = defer.Deferred()
            original = edge.tunnel_ready

            def tunnel_ready(tunnel, info, original=original, ready=ready):
                original(tunnel, info)
                ready.callback(None)

            edge.tunnel_ready = tunnel_ready
            hello = {"site": site, "secret": SECRET, "edge_version": "test"}
            protocol = TunnelProtocol(Role.CLIENT, edge, reactor, hello=hello)
            yield endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", tunnel_port.getHost().port).connect(
                Factory.forProtocol(lambda p=protocol: p)
            )
            yield ready
            rig.tunnels.append(protocol)
    return rig


def http_resource(name: str, host: str, *targets: HTTPTarget, prefix: str = "/", **kw) -> HTTPResource:
    return HTTPResource(id=f"res_{name}", name=name, hostname=host, path_prefix=prefix, targets=targets, **kw)


def target(name: str, port: int, site: str = "home", **kw) -> HTTPTarget:
    return HTTPTarget(id=f"tgt_{name}", site_id=site, host="127.0.0.1", port=port, **kw)


def exchange(port: int, data: bytes, read_until_close: bool = True, timeout: float = 10.0) -> bytes:
    """Send raw bytes, read the answer until the server closes (blocking; run in a thread)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if not read_until_close:
                break
        return b"".join(chunks)


def parse_responses(raw: bytes) -> list[tuple[int, dict, bytes]]:
    """Split a byte stream of responses: (status, lower-cased headers, decoded body) each."""
    import httptools

    out: list = []

    class Collect:
        def on_message_begin(self):
            self.headers, self.body = {}, b""

        def on_header(self, name, value):
            self.headers[name.decode().lower()] = value.decode()

        def on_body(self, data):
            self.body += data

        def on_message_complete(self):
            out.append((parser.get_status_code(), self.headers, self.body))

    parser = httptools.HttpResponseParser(Collect())
    parser.feed_data(raw)
    return out
