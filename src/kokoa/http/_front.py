"""The HTTP front: client connections, parsed strictly and streamed to targets.

One :class:`FrontProtocol` per client connection parses requests with httptools
(strict, fast, and streaming: bodies arrive in pieces and leave in pieces). Each
request becomes an :class:`Exchange`; exchanges are answered one at a time, in
order (pipelined requests wait, and reading stops while they do). An exchange
makes the one routing decision for its request, picks a target, borrows an
upstream connection from the pool and couples the two sides with backpressure
in both directions: a full tunnel window pauses the client, a slow client pauses
the stream.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from http import HTTPStatus

import httptools
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import task
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from kokoa.gateway._model import HTTPResource, HTTPTarget
from kokoa.transports import set_tcp_nodelay
from kokoa.tunnel import StreamReset
from kokoa.wire import ErrorCode, ProtocolError

from ._balance import STICKY_COOKIE, Balancer, sticky_value
from ._errors import error_response
from ._inspector import Inspection, Inspector
from ._messages import (
    BadRequest,
    RequestHead,
    check_request,
    client_response_head,
    cookie_value,
    switching_protocols_head,
    upstream_request_head,
)
from ._router import Route, Router
from ._upstream import NoTunnel, UpstreamConnection, UpstreamPool

log = Logger()

KiB = 1024
GiB = 1024**3
ACME_PREFIX = "/.well-known/acme-challenge/"
INTERNAL_PREFIX = "/.kokoa/"
#: Body bytes kept while the gate looks a credential up; beyond that the client is paused.
HELD_BODY_LIMIT = 64 * KiB


@dataclass
class FrontSettings:
    """Limits and timeouts of the HTTP front (all settable in the gateway's config)."""

    max_request_line: int = 8 * KiB  # the request target; longer gets 414
    max_header_bytes: int = 32 * KiB  # the header block; larger gets 431
    max_headers: int = 100  # header fields; more gets 431
    header_timeout: float = 10.0  # seconds for a whole request head (slowloris)
    idle_timeout: float = 60.0  # seconds a kept-alive client connection may sit idle
    upstream_timeout: float = 60.0  # seconds from sending a request to its response head
    max_body: int = 10 * GiB  # request body bytes; more gets 413 (0: no limit)
    max_response_header_bytes: int = 64 * KiB  # an upstream's larger response head is a 502
    max_connections: int = 10_000  # client connections at once; more are closed at once
    max_pipelined: int = 16  # requests parsed ahead of their turn on one connection
    pool_max_idle: int = 256  # idle upstream connections kept per target
    pool_idle_timeout: float = 30.0  # seconds an idle upstream connection is kept
    upstream_ca_file: str | None = None  # extra CAs for https targets (default: the system's)
    inspector_ring_size: int = 200  # requests kept per watched resource (the request inspector)
    inspector_max_watchers: int = 32  # inspector watchers at once, over all resources


class HTTPFront:
    """What every HTTP listener shares: the routing table, balancers, upstream pool."""

    def __init__(self, directory, registry, reactor, settings: FrontSettings | None = None, health=None):
        self.directory = directory
        self.registry = registry
        self.reactor = reactor
        self.settings = settings or FrontSettings()
        self.health = health
        self.acme_responder = None  # token -> bytes | None, for ACME HTTP-01
        self.router = Router([])
        self.balancers: dict[str, Balancer] = {}
        self.pool = UpstreamPool(
            registry,
            reactor,
            max_idle_per_target=self.settings.pool_max_idle,
            idle_timeout=self.settings.pool_idle_timeout,
            max_head=self.settings.max_response_header_bytes,
            ca_file=self.settings.upstream_ca_file,
        )
        self.connections: set[FrontProtocol] = set()
        self.requests = 0
        #: The request inspector: the recent requests of the resources someone watches.
        self.inspector = Inspector(
            ring_size=self.settings.inspector_ring_size,
            max_watchers=self.settings.inspector_max_watchers,
            clock=reactor.seconds,
        )
        #: Decides who may reach what (kokoa.auth.AccessGate); None: every routed request goes through.
        self.gate = None
        #: The login host and the twisted.web site that serves it (connections for it are handed over).
        self.login_host: str | None = None
        self.login_site = None
        self._sweeper: task.LoopingCall | None = None

    def reload(self) -> None:
        """Rebuild the routing table from the directory (called on every change)."""
        resources = self.directory.http_resources()
        self.router = Router(resources)
        ids = {r.id for r in resources}
        for resource_id in [k for k in self.balancers if k not in ids]:
            del self.balancers[resource_id]
        for resource in resources:
            balancer = self.balancers.get(resource.id)
            if balancer is not None:
                balancer.forget_except({t.id for t in resource.targets})

    def balancer(self, resource: HTTPResource) -> Balancer:
        balancer = self.balancers.get(resource.id)
        if balancer is None:
            balancer = self.balancers[resource.id] = Balancer()
        return balancer

    def online(self, target: HTTPTarget) -> bool:
        return bool(self.registry.tunnels(target.site_id))

    def available(self, target: HTTPTarget) -> bool:
        """A target takes requests when its site is online and it is not known unhealthy."""
        if not self.online(target):
            return False
        return self.health is None or self.health.healthy(target.site_id, target.id)

    def start(self) -> None:
        """Start enforcing deadlines (header, idle, upstream, pooled connections' idleness)."""
        settings = self.settings
        shortest = min(settings.header_timeout, settings.idle_timeout, settings.upstream_timeout)
        self._sweeper = task.LoopingCall(self.sweep)
        self._sweeper.clock = self.reactor
        self._sweeper.start(max(0.05, min(1.0, shortest / 4)), now=False)

    def stop(self) -> None:
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None and sweeper.running:
            sweeper.stop()

    def sweep(self) -> None:
        """One pass over the deadlines: a float compare per connection, no timers per request."""
        now = self.reactor.seconds()
        for connection in list(self.connections):
            connection.check_deadlines(now)
        self.pool.expire_idle(now)

    def factory(self, scheme: str) -> FrontFactory:
        return FrontFactory(self, scheme)

    def close_all(self) -> None:
        for connection in list(self.connections):
            connection.transport.abortConnection()
        self.pool.close_all()


class FrontFactory(Factory):
    """Client connections of one listener (``scheme`` is what the client used: http or https)."""

    def __init__(self, front: HTTPFront, scheme: str) -> None:
        self.front = front
        self.scheme = scheme

    def buildProtocol(self, addr):
        if len(self.front.connections) >= self.front.settings.max_connections:
            log.warn(
                "refusing a connection from {addr}: {n} client connections open (max_connections)",
                addr=getattr(addr, "host", addr),
                n=len(self.front.connections),
            )
            return _Refused()  # (None would break under TLS: TLSMemoryBIOFactory needs a protocol)
        return FrontProtocol(
            self.front, self.scheme, getattr(addr, "host", "unknown"), getattr(addr, "port", 0)
        )


class _Refused(Protocol):
    """A connection over max_connections: closed at once."""

    def connectionMade(self) -> None:
        self.transport.abortConnection()


@implementer(IPushProducer)
class FrontProtocol(Protocol):
    """One client connection."""

    def __init__(self, front: HTTPFront, scheme: str, client_host: str, client_port: int) -> None:
        self.front = front
        self.settings = front.settings
        self.scheme = scheme
        self.client_host = client_host
        self.client_port = client_port
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[Exchange] = deque()
        self.lost = False
        self.broken = False  # no more requests are read on this connection
        self.raw_upstream: UpstreamConnection | None = None  # after an upgrade
        self._pauses: set[str] = set()
        self._deadline: float | None = None  # checked by HTTPFront.sweep
        self._in_head = False
        self._head_fed = 0
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._parsing: Exchange | None = None
        # What arrived before the first request's head was complete: handed to the login site if
        # that request is for the login host.
        self._first: list[bytes] | None = [] if front.login_site is not None else None
        self.handed_off = None  # the login site's channel, once the connection is its

    # ------------------------------------------------------------ connection

    def connectionMade(self) -> None:
        set_tcp_nodelay(self.transport)  # a response's head and body must not wait for Nagle
        self.front.connections.add(self)
        self._set_timer(self.settings.idle_timeout, "idle")

    def connectionLost(self, reason: Failure = None) -> None:
        self.lost = True
        self.front.connections.discard(self)
        self._cancel_timer()
        if self.handed_off is not None:
            self.handed_off.connectionLost(reason)
            return
        for exchange in self.queue:
            exchange.client_lost()
        self.queue.clear()
        if self.raw_upstream is not None:
            upstream, self.raw_upstream = self.raw_upstream, None
            upstream.close()

    def dataReceived(self, data: bytes) -> None:
        if self.raw_upstream is not None:
            self.raw_upstream.write(data)
            return
        if self.handed_off is not None:
            self.handed_off.dataReceived(data)
            return
        if self.broken:
            return
        if self._first is not None:
            self._first.append(data)
        was_in_head = self._in_head
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            if self.handed_off is None and isinstance(e.__context__, _HandOver):
                self._hand_over()
                return
            self._upgrade_requested(data[e.args[0] :])
            return
        except httptools.HttpParserCallbackError as e:
            cause = e.__context__
            if isinstance(cause, _HandOver):
                self._hand_over()
                return
            if isinstance(cause, BadRequest):
                self._refuse(cause)
                return
            raise
        except httptools.HttpParserError as e:
            self._refuse(BadRequest(f"malformed request: {_parser_message(e)}"))
            return
        if was_in_head and self._in_head:
            # A head that spans reads: count what httptools buffers for it (it does not say).
            self._head_fed += len(data)
            if self._head_fed > self.settings.max_header_bytes + self.settings.max_request_line:
                self._refuse(BadRequest("the request head is too large", 431))

    # ------------------------------------------------------------ httptools callbacks

    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_fed = 0
        self._url = b""
        self._headers = []
        self._head_size = 0
        self._set_timer(self.settings.header_timeout, "header")
        if self.queue:
            self._pause("pipeline")  # answer in order: read on once the earlier ones are done
            if len(self.queue) >= self.settings.max_pipelined:
                raise BadRequest("too many pipelined requests", 429)

    def on_url(self, piece: bytes) -> None:
        self._url += piece
        if len(self._url) > self.settings.max_request_line:
            raise BadRequest("the request target is too long", 414)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.settings.max_header_bytes:
            raise BadRequest("the request's header block is too large", 431)
        if len(self._headers) >= self.settings.max_headers:
            raise BadRequest(f"more than {self.settings.max_headers} header fields", 431)
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._timer_kind == "header":
            self._cancel_timer()
        parser = self.parser
        head = check_request(
            parser.get_method(),
            self._url,
            parser.get_http_version(),
            self._headers,
            parser.should_keep_alive(),
        )
        if self.front.login_site is not None and head.host == self.front.login_host:
            if self._first is not None and not self.queue:
                raise _HandOver()
            raise BadRequest("the login host is served on a connection of its own: connect again", 421)
        self._first = None
        max_body = self.settings.max_body
        if max_body and head.content_length is not None and head.content_length > max_body:
            raise BadRequest(f"the request body is larger than this gateway accepts ({max_body} bytes)", 413)
        exchange = Exchange(self, head)
        self._parsing = exchange
        self.queue.append(exchange)
        if len(self.queue) == 1:
            exchange.start()

    def on_body(self, data: bytes) -> None:
        exchange = self._parsing
        if exchange is None:
            return
        exchange.received += len(data)
        max_body = self.settings.max_body
        if max_body and exchange.received > max_body:
            raise BadRequest(f"the request body is larger than this gateway accepts ({max_body} bytes)", 413)
        exchange.request_body(data)

    def on_message_complete(self) -> None:
        exchange, self._parsing = self._parsing, None
        if exchange is not None:
            exchange.request_complete()
            if not exchange.head.keep_alive:
                self.broken = True  # the client closes after this one: read nothing more
        if self.broken:
            self._pause("done")

    def _hand_over(self) -> None:
        """The connection's first request is for the login host: from now on, the login site (a
        twisted.web Site) reads and answers this connection, starting from its first byte."""
        data = b"".join(self._first or ())
        self._first = None
        self.broken = True
        self._cancel_timer()
        channel = self.front.login_site.buildProtocol(self.transport.getPeer())
        self.handed_off = channel
        channel.makeConnection(self.transport)
        channel.dataReceived(data)

    # ------------------------------------------------------------ refusing

    def _refuse(self, error: BadRequest) -> None:
        """A request Kokoa will not forward: answer it in its turn, then close."""
        self.broken = True
        self._in_head = False
        self._pause("refused")
        parsing, self._parsing = self._parsing, None
        if parsing is not None and parsing in self.queue and parsing.upstream is not None:
            parsing.abort_upstream()  # its body went bad midway: the upstream must not use it
        exchange = Exchange(self, None, error=error)
        if parsing is not None and parsing.dispatched and not parsing.response_started:
            # The refused body belongs to the exchange being served: answer it instead.
            self.queue.remove(parsing)
            parsing.release_balancer()
            exchange.inspection, exchange.received = parsing.inspection, parsing.received
            self.queue.appendleft(exchange)
            exchange.start()
            return
        self.queue.append(exchange)
        if len(self.queue) == 1:
            exchange.start()

    # ------------------------------------------------------------ answering

    def write(self, data: bytes) -> None:
        if not self.lost:
            self.transport.write(data)

    def respond_locally(self, exchange: Exchange, response: bytes, close: bool) -> None:
        if exchange.inspection is not None:
            exchange.inspection.answered(response)
        self.write(response)
        self.exchange_finished(exchange, close)

    def exchange_finished(self, exchange: Exchange, close: bool) -> None:
        """An exchange's response is complete: go on with the next one, or close."""
        if exchange.inspection is not None:
            exchange.inspected("client_gone" if self.lost else "complete")
        if self.queue and self.queue[0] is exchange:
            self.queue.popleft()
        if self.lost:
            return
        if close or (exchange.head is not None and not exchange.complete):
            self.broken = True
            self.transport.loseConnection()
            return
        if self.queue:
            self.queue[0].start()
        if len(self.queue) <= 1:
            self._resume("pipeline")
        if not self.queue:
            if self.broken:
                self.transport.loseConnection()
            elif not self._in_head:
                self._set_timer(self.settings.idle_timeout, "idle")

    # ------------------------------------------------------------ upgrades

    def _upgrade_requested(self, rest: bytes) -> None:
        """The client asked to switch protocols; what follows the head is not HTTP."""
        self.broken = True
        self._pause("upgrade")
        exchange = self._parsing or (self.queue[-1] if self.queue else None)
        self._parsing = None
        if exchange is None:
            return
        if exchange.head is not None and exchange.head.upgrade is None:
            # httptools treats CONNECT as an upgrade; check_request refuses it before this.
            return
        exchange.request_complete()
        exchange.raw_pending = rest

    def splice(self, upstream: UpstreamConnection, pending: bytes) -> None:
        """After a 101, bytes go both ways unparsed."""
        self._cancel_timer()
        self.raw_upstream = upstream
        self.queue.clear()
        if pending:
            upstream.write(pending)
        self._pauses.clear()
        if not self.lost:
            self.transport.resumeProducing()

    # ------------------------------------------------------------ reading and timers

    def _pause(self, why: str) -> None:
        if not self._pauses and not self.lost:
            self.transport.pauseProducing()
        self._pauses.add(why)

    def _resume(self, why: str) -> None:
        if why in self._pauses:
            self._pauses.discard(why)
            if not self._pauses and not self.lost:
                self.transport.resumeProducing()

    # IPushProducer, for the upstream stream: a full tunnel window pauses the client.
    def pauseProducing(self) -> None:
        self._pause("upstream")

    def resumeProducing(self) -> None:
        self._resume("upstream")

    def stopProducing(self) -> None:
        if not self.lost:
            self.transport.abortConnection()

    _timer_kind = ""

    def _set_timer(self, seconds: float, kind: str) -> None:
        """Arm the connection's one deadline (idle or header); HTTPFront.sweep enforces it.
        A float per request instead of a DelayedCall: no heap work on the request path."""
        self._timer_kind = kind
        self._deadline = self.front.reactor.seconds() + seconds

    def _cancel_timer(self) -> None:
        self._deadline = None
        self._timer_kind = ""

    def check_deadlines(self, now: float) -> None:
        """Called by the sweep: time out the connection, or its exchange waiting for an answer."""
        if self.handed_off is not None:
            return  # the login site keeps its own time
        if self.queue:
            self.queue[0].check_deadline(now)
        if self._deadline is not None and now >= self._deadline and not self.lost:
            self._timed_out()

    def _timed_out(self) -> None:
        self._deadline = None
        kind, self._timer_kind = self._timer_kind, ""
        if self.lost:
            return
        if kind == "header":
            log.info(
                "closing {client}: no complete request head within {s:g}s",
                client=self.client_host,
                s=self.settings.header_timeout,
            )
            if not self.queue:
                self.write(error_response(408, "The request head did not arrive in time.", close=True))
        self.transport.loseConnection()


class _HandOver(Exception):
    """Raised in a parser callback to stop parsing: the connection goes to the login site."""


class Exchange:
    """One request and its response."""

    def __init__(
        self, front_protocol: FrontProtocol, head: RequestHead | None, error: BadRequest | None = None
    ):
        self.client = front_protocol
        self.front = front_protocol.front
        self.head = head
        self.error = error
        self.route: Route | None = None
        self.target: HTTPTarget | None = None
        self.upstream: UpstreamConnection | None = None
        self.reused = False
        self.dispatched = False
        self.complete = False  # the whole request arrived
        self.received = 0
        self.pending: list[bytes] = []
        self.raw_pending = b""
        self.response_started = False
        self.framing = "length"
        self.close_after = False
        self.sticky_cookie: bytes | None = None
        self._deadline: float | None = None  # for the response head
        self._balanced = False
        self._attempts = 0
        self._producing_to_client = False
        self.held = False  # waiting for the gate (the body is kept meanwhile, bounded)
        self._held_until = 0.0
        self.identity_headers: list[tuple[bytes, bytes]] = []
        self.drop_header: bytes | None = None  # a Kokoa token's header: not for the upstream
        self.client_address: str = front_protocol.client_host
        self.inspection: Inspection | None = None  # notes on this request, when its resource is watched

    # ------------------------------------------------------------ request side

    def start(self) -> None:
        """This exchange's turn: route it and answer or forward it."""
        if self.dispatched:
            return
        self.dispatched = True
        client = self.client
        if self.error is not None:
            accept = self.head.accept if self.head is not None else None
            response = error_response(self.error.status, self.error.detail, accept, close=True)
            client.respond_locally(self, response, close=True)
            return
        head = self.head
        assert head is not None and head.target is not None
        front = self.front
        front.requests += 1
        if client.scheme == "http" and head.target.path.startswith(ACME_PREFIX) and front.acme_responder:
            token = head.target.path[len(ACME_PREFIX) :]
            answer = front.acme_responder(token)
            if answer is not None:
                self._respond(200, close=False, content_type=b"text/plain", body=answer)
                return
        gate = front.gate
        if (
            gate is not None
            and head.target.path.startswith(INTERNAL_PREFIX)
            and front.router.knows_host(head.host)
        ):
            gate.internal(self)
            return
        route = front.router.route(head.host, head.target)
        if route is None:
            known = front.router.knows_host(head.host)
            detail = (
                f"No resource on {head.host} serves {head.target.path}."
                if known
                else f"No resource is configured for the host {head.host}."
            )
            self._error(404, detail, title="Not found")
            return
        self.route = route
        resource = route.resource
        if front.inspector.watching(resource.id):
            self.inspection = front.inspector.begin(resource.id, head, self.client_address, gate)
        if client.scheme == "http" and resource.redirect_https:
            location = b"https://" + head.host.encode() + head.target.forwarded.encode()
            self._respond(308, close=False, extra=[(b"Location", location)])
            return
        if gate is not None:
            gate.check(self)  # calls proceed(), or answers
            return
        self._forward()

    # ------------------------------------------------------------ the gate's answers

    def hold(self) -> None:
        """The gate needs a moment (a database lookup): keep the body that arrives meanwhile. The
        sweep answers 503 if the answer does not come within ``upstream_timeout``."""
        self.held = True
        self._held_until = self.front.reactor.seconds() + self.front.settings.upstream_timeout

    def waiting(self) -> bool:
        """Whether this exchange still waits for the gate's answer (its client did not go, and
        nothing else answered it meanwhile, such as a refused body)."""
        client = self.client
        return (
            not client.lost and bool(client.queue) and client.queue[0] is self and not self.response_started
        )

    def proceed(self, identity_headers: list, drop_header: bytes | None, client_address: str) -> None:
        """Allowed: forward the request, with these identity headers for the upstream."""
        self.identity_headers = identity_headers
        self.drop_header = drop_header
        self.client_address = client_address
        self._release()
        self._forward()

    def refuse(self, status: int, detail: str, headers: list | None = None) -> None:
        self._release()
        head = self.head
        close = not head.keep_alive or not self.complete
        response = error_response(
            status,
            detail,
            head.accept,
            close=close,
            head=head.method == b"HEAD",
            headers=tuple(headers or ()),
        )
        self.client.respond_locally(self, response, close)

    def redirect(self, location: bytes, headers: list) -> None:
        self._release()
        self._respond(
            302, close=False, extra=[(b"Location", location), (b"Cache-Control", b"no-store"), *headers]
        )

    def _release(self) -> None:
        if self.held:
            self.held = False
            self.client._resume("gate")

    def _forward(self) -> None:
        head, route = self.head, self.route
        resource = route.resource
        balancer = self.front.balancer(resource)
        sticky = cookie_value(head, STICKY_COOKIE) if resource.sticky else None
        target = balancer.choose(resource, self.front.available, sticky)
        if target is None:
            self._no_target(resource)
            return
        self.target = target
        if self.inspection is not None:
            self.inspection.served_by(target)
        if resource.sticky and sticky != sticky_value(target):
            self.sticky_cookie = STICKY_COOKIE + b"=" + sticky_value(target).encode()
        balancer.started(target)
        self._balanced = True
        metadata = {
            "proto": "http",
            "resource": resource.name,
            "target": target.target,
            "client": f"{self.client.client_host}:{self.client.client_port}",
        }
        try:
            upstream, self.reused = self.front.pool.acquire(target, metadata)
        except NoTunnel:
            self._error(502, f"The site of resource {resource.name!r} is offline: its edge is not connected.")
            return
        except ProtocolError as e:
            self._error(
                503, f"The tunnel to resource {resource.name!r} cannot take a new stream: {e.message}"
            )
            return
        self.upstream = upstream
        self._attempts += 1
        strip = frozenset({STICKY_COOKIE}) if resource.sticky else frozenset()
        gate = self.front.gate
        drop: frozenset[bytes] = frozenset()
        prefixes: tuple[bytes, ...] = ()
        tokens: frozenset[bytes] = frozenset()
        if gate is not None:
            strip = strip | gate.strip_cookies
            drop = gate.drop_headers if self.drop_header is None else gate.drop_headers | {self.drop_header}
            prefixes = gate.drop_prefixes
            if head.authorization is not None or gate.custom_bearer:
                tokens = gate.token_headers  # no Kokoa token passes, whatever the credential used
        request_head = upstream_request_head(
            head,
            self.client_address,
            self.client.scheme,
            strip,
            self.identity_headers,
            drop,
            prefixes,
            tokens,
        )
        upstream.begin(self, request_head, head.method == b"HEAD")
        for piece in self.pending:
            self._send_body(piece)
        self.pending = []
        if self.complete:
            self._end_body()
        elif head.has_body:
            upstream.transport.registerProducer(self.client, True)
        if self.complete:
            self._await_response()
        if not self.complete and head.has_body:
            self.client._resume("pipeline")  # this exchange's body must flow now

    def _no_target(self, resource: HTTPResource) -> None:
        targets = [t for t in resource.targets if t.weight > 0]
        if not targets:
            self._error(503, f"Resource {resource.name!r} has no targets.")
        elif not any(self.front.online(t) for t in targets):
            self._error(502, f"The site of resource {resource.name!r} is offline: its edge is not connected.")
        else:
            self._error(503, f"No healthy target is left for resource {resource.name!r}.")

    def request_body(self, data: bytes) -> None:
        if self.upstream is not None:
            self._send_body(data)
        elif not self.dispatched or self.held:
            self.pending.append(data)
            if self.held and sum(map(len, self.pending)) > HELD_BODY_LIMIT:
                self.client._pause("gate")
        # dispatched and answered locally: the body is dropped (the connection closes after)

    def _send_body(self, data: bytes) -> None:
        if self.head.chunked:
            self.upstream.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.upstream.write(data)

    def request_complete(self) -> None:
        self.complete = True
        if self.upstream is not None:
            self._end_body()
            if self.head.has_body and not self.upstream.lost:
                self.upstream.transport.unregisterProducer()
            self._await_response()

    def _await_response(self) -> None:
        """The whole request is sent: the upstream has ``upstream_timeout`` to start answering
        (a long upload does not count against it)."""
        if not self.response_started and self._deadline is None:
            self._deadline = self.front.reactor.seconds() + self.front.settings.upstream_timeout

    def check_deadline(self, now: float) -> None:
        if self._deadline is not None and now >= self._deadline:
            self._timed_out()
        elif self.held and now >= self._held_until and self.waiting():
            log.warn(
                "the access check of {host}{path} did not finish in time: 503",
                host=self.head.host,
                path=self.head.target.path,
            )
            self.refuse(503, "The gateway could not check your access in time: try again in a moment.")

    def _end_body(self) -> None:
        if self.head.chunked:
            self.upstream.write(b"0\r\n\r\n")

    # ------------------------------------------------------------ response side (ResponseSink)

    def response_head(self, status: int, reason: bytes, headers: list, keep_alive: bool) -> None:
        head = self.head
        if status < 200:
            if head.version == "1.1":
                self.client.write(client_response_head(status, reason, headers, "none", False))
            return
        self._cancel_timer()
        self.response_started = True
        has_length = any(name.lower() == b"content-length" for name, _ in headers)
        chunked = any(name.lower() == b"transfer-encoding" for name, _ in headers)
        if head.method == b"HEAD" or status in (204, 304):
            self.framing = "none"
        elif has_length and not chunked:
            self.framing = "length"
        elif head.version == "1.1":
            self.framing = "chunked"
        else:
            self.framing = "close"
        self.close_after = not self.head.keep_alive or self.framing == "close" or not self.complete
        extra = []
        resource = self.route.resource
        if self.client.scheme == "https" and resource.hsts_max_age:
            extra.append((b"Strict-Transport-Security", b"max-age=%d" % resource.hsts_max_age))
        if self.sticky_cookie is not None:
            secure = b"; Secure" if self.client.scheme == "https" else b""
            extra.append((b"Set-Cookie", self.sticky_cookie + b"; Path=/; HttpOnly; SameSite=Lax" + secure))
        response = client_response_head(status, reason, headers, self.framing, self.close_after, extra)
        if self.inspection is not None:
            self.inspection.responded(response)
        self.client.write(response)
        if not self.client.lost:
            self.client.transport.registerProducer(self.upstream.transport, True)
            self._producing_to_client = True

    def response_body(self, data: bytes) -> None:
        if self.inspection is not None:
            self.inspection.bytes_out += len(data)
        if self.framing == "chunked":
            self.client.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.client.write(data)

    def response_complete(self, reusable: bool) -> None:
        upstream, self.upstream = self.upstream, None
        if self.framing == "chunked":
            self.client.write(b"0\r\n\r\n")
        self._unregister(upstream)
        self.release_balancer()
        if reusable and self.complete and not upstream.lost:
            self.front.pool.release(upstream)
        else:
            upstream.close()
        self.client.exchange_finished(self, self.close_after)  # "close" framing set it already

    def response_upgraded(self, status: int, reason: bytes, headers: list, rest: bytes) -> None:
        self._cancel_timer()
        self.response_started = True
        self.release_balancer()
        client = self.client
        if self.head.upgrade is None or client.lost:
            self.upstream.abort()
            client.exchange_finished(self, close=True)
            return
        response = switching_protocols_head(status, reason, headers)
        if self.inspection is not None:
            self.inspection.responded(response)
            self.inspected("upgraded")
        client.write(response)
        if rest:
            client.write(rest)
        upstream = self.upstream
        upstream.sink = _RawSink(client)
        client.splice(upstream, self.raw_pending)
        if not client.lost:
            client.transport.registerProducer(upstream.transport, True)
            self._producing_to_client = True

    def upstream_lost(self, reason: Failure, response_started: bool) -> None:
        upstream, self.upstream = self.upstream, None
        self._cancel_timer()
        self._unregister(upstream)
        if response_started and self.framing == "close":
            self.release_balancer()
            self.client.exchange_finished(self, close=True)  # the end of a close-delimited body
            return
        if response_started:
            self.release_balancer()
            if self.inspection is not None:
                self.inspected("upstream_gone")
            log.warn(
                "upstream {target} of {name!r} closed mid-response: {why}",
                target=self.target.target,
                name=self.route.resource.name,
                why=reason.getErrorMessage(),
            )
            if not self.client.lost:
                self.client.transport.abortConnection()  # the client must see the truncation
            return
        if (
            self.reused
            and self._attempts == 1
            and not self.head.has_body
            and reason.check(StreamReset) is None
        ):
            # A kept-alive upstream connection closed as we reused it: try once more on a new one.
            self.release_balancer()
            self._forward()
            return
        self.release_balancer()
        status, detail = _upstream_failure(reason, self.target, self.route.resource)
        self._error(status, detail)

    def _timed_out(self) -> None:
        self._deadline = None
        upstream, self.upstream = self.upstream, None
        self._unregister(upstream)
        if upstream is not None:
            upstream.abort()
        self.release_balancer()
        timeout = self.front.settings.upstream_timeout
        log.warn(
            "upstream {target} of resource {name!r} did not answer within {s:g}s: 504",
            target=self.target.target,
            name=self.route.resource.name,
            s=timeout,
        )
        self._error(
            504, f"The upstream of resource {self.route.resource.name!r} did not answer within {timeout:g}s."
        )

    # ------------------------------------------------------------ endings

    def client_lost(self) -> None:
        if self.inspection is not None:
            self.inspected("client_gone")
        self._cancel_timer()
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.abort()
        self.release_balancer()

    def abort_upstream(self) -> None:
        upstream, self.upstream = self.upstream, None
        self._cancel_timer()
        if upstream is not None:
            self._unregister(upstream)
            upstream.abort()

    def inspected(self, ended: str) -> None:
        """Record this watched exchange in the inspector (once)."""
        inspection, self.inspection = self.inspection, None
        if inspection is not None:
            inspection.finish(self.received, ended)

    def release_balancer(self) -> None:
        if self._balanced:
            self._balanced = False
            self.front.balancer(self.route.resource).finished(self.target)

    def _unregister(self, upstream: UpstreamConnection | None) -> None:
        client = self.client
        if self._producing_to_client:
            self._producing_to_client = False
            if not client.lost:
                client.transport.unregisterProducer()
            if upstream is not None and not upstream.lost:
                # A slow client may have paused the stream; unpaused, it can serve the next one.
                upstream.transport.resumeProducing()
        if upstream is not None and not upstream.lost and self.head.has_body and not self.complete:
            upstream.transport.unregisterProducer()
        client._resume("upstream")

    def _cancel_timer(self) -> None:
        self._deadline = None

    def _error(self, status: int, detail: str, title: str | None = None) -> None:
        head = self.head
        close = not head.keep_alive or not self.complete or self.response_started
        if self.response_started:
            if not self.client.lost:
                self.client.transport.abortConnection()
            return
        response = error_response(
            status, detail, head.accept, title=title, close=close, head=head.method == b"HEAD"
        )
        self.client.respond_locally(self, response, close)

    def _respond(self, status: int, close: bool, content_type=None, body=b"", extra=None) -> None:
        close = close or not self.head.keep_alive or not self.complete
        headers = [(b"Content-Length", b"%d" % len(body))]
        if content_type:
            headers.append((b"Content-Type", content_type))
        reason = HTTPStatus(status).phrase.encode()
        response = client_response_head(status, reason, headers + (extra or []), "length", close)
        self.client.respond_locally(self, response + (b"" if self.head.method == b"HEAD" else body), close)


class _RawSink:
    """After an upgrade, what the upstream sends goes to the client as it is."""

    def __init__(self, client: FrontProtocol) -> None:
        self.client = client

    def upstream_data(self, data: bytes) -> None:
        self.client.write(data)

    def upstream_lost(self, reason, response_started) -> None:
        client = self.client
        client.raw_upstream = None
        if not client.lost:
            client.transport.loseConnection()


def _upstream_failure(reason: Failure, target: HTTPTarget, resource: HTTPResource) -> tuple[int, str]:
    """The status and message for a request whose upstream failed before answering."""
    where = f"{target.target} (resource {resource.name!r})"
    if reason.check(StreamReset):
        code = reason.value.code
        if code == ErrorCode.CONNECT_REFUSED:
            return 502, f"The upstream {where} refused the connection."
        if code == ErrorCode.CONNECT_TIMEOUT:
            return 504, f"The upstream {where} did not accept a connection in time."
        if code == ErrorCode.UNKNOWN_TARGET:
            return 502, f"The edge does not (yet) serve {where}: {reason.value.reason}"
        if code == ErrorCode.TARGET_UNREACHABLE:
            return 502, f"The edge cannot reach {where}: {reason.value.reason}"
        return 502, f"The tunnel stream to {where} was reset: {reason.value.reason}"
    if reason.check(SSL.Error, VerificationError):
        return 502, f"The TLS handshake with the upstream {where} failed: {reason.getErrorMessage()}"
    return 502, f"The upstream {where} closed the connection without answering ({reason.getErrorMessage()})."


def _parser_message(error: Exception) -> str:
    return str(error).rstrip(".") or type(error).__name__
