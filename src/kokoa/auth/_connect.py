"""``/connect/<resource>`` on the login host: a TCP resource's bytes over a WebSocket; both ends of it
(the gateway's, and the client's that ``kokoa connect`` runs).

The handshake is the access check: ``Authorization: Bearer kk_...`` (an API key acting for its user) or
the login host's session cookie names who asks, the policy engine decides for that TCP resource as for
its public port (refusals are ``401``/``403`` with the reason in the status line), and the decision goes
to the access log (kind ``connect``). Then a tunnel stream to the resource's target is opened as for a
connection to its port (:mod:`kokoa.gateway._tcp`) and bytes go both ways in binary messages.

Framing: each binary message carries bytes; an empty binary message ends one direction (half-close, as a
TCP FIN); the WebSocket closes once both directions have ended (``1000``), or at once with ``4011`` and
the reason when either end fails (``4013``: no stream can be had now; ``4003``: a text message came).
``?check=1`` authorizes and closes with ``1000`` without opening a stream (the CLI checks before it
listens).

Backpressure, both ways through Twisted producers: the tunnel stream is paused while the WebSocket's
socket holds more than its write buffer (64 KiB), and the WebSocket's socket is not read while the
stream's send queue is full. A message is buffered whole by autobahn: inbound ones are limited to
:data:`MAX_INBOUND_MESSAGE` bytes, outbound ones are at most :data:`MAX_MESSAGE`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IConsumer, IPushProducer, ITransport
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from zope.interface import implementer

from kokoa.tunnel import RelaySide

from ._gate import denial
from ._identities import API_KEY, SESSION, SHARE, Resolved
from ._settings import LOGIN_COOKIE

#: The "host" of the sessions that ``kokoa connect`` gets by a browser sign-in (no real host).
CLI_HOST = "kokoa-connect.cli"

log = Logger()

PREFIX = "/connect/"
#: Largest binary message sent (writes are split); largest accepted (autobahn buffers one whole).
MAX_MESSAGE = 64 * 1024
MAX_INBOUND_MESSAGE = 1024 * 1024
#: Seconds for the opening handshake (the credential lookup included) and the closing one.
OPEN_HANDSHAKE_TIMEOUT = 10.0
CLOSE_HANDSHAKE_TIMEOUT = 2.0
#: Pings find dead clients. While a slow target holds a client back its socket is not read, pongs
#: included: one held back past the timeout is closed as dead.
AUTO_PING_INTERVAL = 30.0
AUTO_PING_TIMEOUT = 90.0
#: Close codes (applications may send 1000 and 4000-4999 only): both directions ended; an end failed
#: (the reason attached); a text message came; no stream can be had now (try again).
CLOSE_NORMAL = 1000
CLOSE_ERROR = 4011
CLOSE_UNSUPPORTED = 4003
CLOSE_TRY_LATER = 4013


def _no_compression(_offers: Any) -> None:
    return None


def _status_text(text: str, limit: int = 300) -> str:
    """Text safe in an HTTP status line."""
    return "".join(c if " " <= c < "\x7f" else "?" for c in text)[:limit]


def failure_text(failure: Failure) -> str:
    """A failure's own words (without the "Connection ... lost in a non-clean fashion:" of its type)."""
    args = getattr(failure.value, "args", ())
    return str(args[0]) if args and isinstance(args[0], str) else failure.getErrorMessage()


def _close_reason(text: str) -> str:
    """A close frame's reason: at most 123 bytes of UTF-8."""
    data = text.encode("utf-8")[:123]
    return data.decode("utf-8", "ignore")


# ---------------------------------------------------------------------- relaying (both ends use it)


class RelayEnd(RelaySide):
    """A :class:`RelaySide` that keeps an end-of-input seen before the other side is connected (it is
    passed on once that side is), and remembers why it was lost (for the other side's close reason)."""

    eof_pending = False
    lost_reason: Failure | None = None

    def readConnectionLost(self) -> None:
        other = self.other
        if other is not None and (other.closed or other.transport is None):
            self.read_done = True
            self.eof_pending = not other.closed
            return
        super().readConnectionLost()

    def connectionMade(self) -> None:
        super().connectionMade()
        other = self.other
        if isinstance(other, RelayEnd) and other.eof_pending and self.transport is not None:
            other.eof_pending = False
            other.read_done = False
            other.readConnectionLost()

    def connectionLost(self, reason: Failure) -> None:
        self.lost_reason = reason
        super().connectionLost(reason)


def relay_pair(
    name_a: str, name_b: str, on_closed: Any = None, on_connected: Any = None
) -> tuple[RelayEnd, RelayEnd]:
    """Two :class:`RelayEnd` that forward to each other once both are connected (as ``pair``)."""
    a, b = RelayEnd(name_a, on_closed, on_connected), RelayEnd(name_b, on_closed)
    a.other, b.other = b, a
    return a, b


@implementer(ITransport, IConsumer, IPushProducer)
class WebSocketSideTransport:
    """A relay side's transport that is a WebSocket: writes are binary messages, half-close is an empty
    one; producer calls go to the socket under the WebSocket (a full socket pauses the other side, a
    paused side stops the reads)."""

    def __init__(self, ws: Any, side: RelayEnd) -> None:
        self._ws = ws
        self._side = side
        self.disconnecting = False
        self.write_closed = False

    def _open(self) -> bool:
        ws = self._ws
        return ws.state == ws.STATE_OPEN

    def write(self, data: bytes) -> None:
        if self.disconnecting or self.write_closed or not data or not self._open():
            return
        if len(data) <= MAX_MESSAGE:
            self._ws.sendMessage(bytes(data), isBinary=True)
            return
        view = memoryview(data)
        for start in range(0, len(data), MAX_MESSAGE):
            self._ws.sendMessage(bytes(view[start : start + MAX_MESSAGE]), isBinary=True)

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))

    def loseWriteConnection(self) -> None:
        """The end of this direction: an empty binary message."""
        if self.disconnecting or self.write_closed:
            return
        self.write_closed = True
        if self._open():
            self._ws.sendMessage(b"", isBinary=True)

    def loseConnection(self) -> None:
        """Close the WebSocket normally (after what is written). When both directions have ended, the
        gateway closes: a client closing at the same time would cross its close, and the gateway's drop of
        the connection could cut what it sent last. (The client closes itself if the gateway does not.)"""
        if self.disconnecting:
            return
        self.disconnecting = True
        ws = self._ws
        if not self._open():
            return
        if not ws.factory.isServer and self.write_closed and self._side.read_done:
            ws.factory.reactor.callLater(CLOSE_HANDSHAKE_TIMEOUT, self._close_now)
            return
        ws.sendClose(CLOSE_NORMAL)

    def _close_now(self) -> None:
        if self._open():
            self._ws.sendClose(CLOSE_NORMAL)

    def abortConnection(self) -> None:
        """The other end failed: close with 4011 and its reason."""
        if self.disconnecting:
            return
        self.disconnecting = True
        other = self._side.other
        failure = getattr(other, "lost_reason", None)
        text = failure_text(failure) if failure is not None else "the other end failed"
        if self._open():
            self._ws.sendClose(CLOSE_ERROR, _close_reason(text))
        elif self._ws.transport is not None:
            self._ws.transport.abortConnection()

    def getPeer(self) -> Any:
        return self._ws.transport.getPeer()

    def getHost(self) -> Any:
        return self._ws.transport.getHost()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._ws.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        transport = self._ws.transport
        if transport is not None:
            transport.unregisterProducer()

    def pauseProducing(self) -> None:
        if self._ws.transport is not None:
            self._ws.transport.pauseProducing()

    def resumeProducing(self) -> None:
        if self._ws.transport is not None:
            self._ws.transport.resumeProducing()

    def stopProducing(self) -> None:
        """The other side is gone: its relay side closes this one (with the reason)."""


class RelayOverWebSocket:
    """Mixin for an autobahn protocol: carries one :class:`RelayEnd`'s bytes (see the module's framing)."""

    side: RelayEnd | None = None
    close_info: tuple[bool, int | None, str | None] | None = None

    def start_relay(self, side: RelayEnd) -> None:
        self.side = side
        side.makeConnection(WebSocketSideTransport(self, side))

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        side = self.side
        if side is None or side.closed:
            return
        if not isBinary:
            self.sendClose(CLOSE_UNSUPPORTED, "binary messages only")  # type: ignore[attr-defined]
            return
        if not payload:
            if not side.read_done:
                side.readConnectionLost()
            return
        side.dataReceived(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.close_info = (wasClean, code, reason)

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)  # type: ignore[misc]  # autobahn: calls onClose
        side = self.side
        if side is not None and not side.closed:
            side.connectionLost(self.relay_reason(reason))

    def relay_reason(self, reason: Failure) -> Failure:
        """Why the byte stream ended: done (a normal close both ways), or lost with the peer's reason."""
        was_clean, code, text = self.close_info or (False, None, None)
        local = getattr(self, "localCloseCode", None)
        if was_clean and code in (None, CLOSE_NORMAL) and local in (None, CLOSE_NORMAL):
            return Failure(ConnectionDone("WebSocket closed normally"))
        if was_clean and code not in (None, CLOSE_NORMAL):
            return Failure(ConnectionLost(f"WebSocket closed (code {code}): {text or 'no reason'}"))
        if local not in (None, CLOSE_NORMAL):
            return Failure(ConnectionLost(f"WebSocket closed here (code {local})"))
        detail = getattr(self, "wasNotCleanReason", None) or reason.getErrorMessage()
        return Failure(ConnectionLost(f"WebSocket connection lost: {detail}"))


# ---------------------------------------------------------------------- the gateway's side


class ConnectProtocol(RelayOverWebSocket, WebSocketServerProtocol):
    """One ``kokoa connect`` connection: authorized at the handshake, then relayed over a tunnel stream."""

    factory: ConnectFactory
    resource: Any = None
    check_only = False
    client_ip = ""

    def onConnect(self, request: Any) -> Deferred:
        return Deferred.fromCoroutine(self._admit(request))

    async def _admit(self, request: Any) -> None:
        factory = self.factory
        gate = factory.gate
        self.client_ip = self._client_ip(request)
        path = request.path or ""
        name = unquote(path[len(PREFIX) :]) if path.startswith(PREFIX) else ""
        if not name or "/" in name:
            raise ConnectionDeny(404, f"Name the TCP resource: {PREFIX}<resource id or name>")
        self.check_only = "check" in (request.params or {})
        found, kind = await self._identity(request)
        identity = found.identity if found is not None else None
        resource, why = factory.find(name, identity, self.client_ip)
        fields = {
            "user_id": identity.user_id if identity is not None and not identity.resources else None,
            "subject": identity.email if identity is not None else None,
            "host": gate.login_host,
            "path": path[:1000],
            "client_address": self.client_ip,
        }
        if resource is None:
            outcome = "authenticate" if identity is None else "deny"
            gate.recorder.record("connect", outcome, why, **fields)
            if identity is None:
                raise ConnectionDeny(401, _status_text(self._sign_in(kind)))
            raise ConnectionDeny(404, _status_text(why))
        if found is not None and found.org_id is not None and found.org_id != resource.org_id:
            identity = None  # an organization's API key reaches that organization's resources only
        decision = gate.policies.decide(resource.id, None, None, self.client_ip, identity)
        org_id = await factory.org_of(resource.id)
        gate.recorder.record(
            "connect",
            decision.outcome,
            decision.reason,
            org_id=org_id,
            resource_id=resource.id,
            rule_id=decision.rule_id,
            **fields,
        )
        if decision.outcome == "authenticate":
            raise ConnectionDeny(401, _status_text(self._sign_in(kind)))
        if decision.outcome != "allow":
            who = f" ({identity.email})" if identity is not None and identity.email else ""
            raise ConnectionDeny(
                403, _status_text(f"You{who} may not reach {resource.name!r}: {denial(decision)}")
            )
        if not resource.enabled:
            raise ConnectionDeny(503, _status_text(f"The resource {resource.name!r} is disabled"))
        if factory.registry.pick(resource.site_id) is None:
            raise ConnectionDeny(503, _status_text(factory.why_no_tunnel(resource)))
        self.resource = resource
        log.info(
            "connect: {who} from {client} to resource {name!r}{check}",
            who=identity.email if identity is not None else "anyone",
            client=self.client_ip,
            name=resource.name,
            check=" (check)" if self.check_only else "",
        )
        return None

    def _sign_in(self, kind: str | None) -> str:
        why = "the credential is unknown, expired or revoked" if kind else "this resource needs signing in"
        return f"Sign in first: {why}. Send Authorization: Bearer <API key>"

    async def _identity(self, request: Any) -> tuple[Resolved | None, str | None]:
        """The caller's identity: a bearer API key (or share token), else the login host's session."""
        gate = self.factory.gate
        headers = request.headers or {}
        kind = token = None
        scheme, _, value = (headers.get("authorization") or "").strip().partition(" ")
        value = value.strip()
        cli_session = scheme.lower() == "session" and bool(value)
        if scheme.lower() == "bearer" and value:
            kind = API_KEY if value.startswith("kk_") else SHARE if value.startswith("kks_") else None
            token = value
            if kind is None:
                return None, "bearer"
        elif cli_session:  # kokoa connect signed in with a browser: a session made for the command line
            kind, token = SESSION, value
        else:
            cookie = _cookie(headers.get("cookie") or "", LOGIN_COOKIE)
            origin = headers.get("origin")
            # A browser page of another site must not ride on the login cookie (cross-site WebSocket).
            if cookie and (origin is None or origin == gate.login_origin):
                kind, token = SESSION, cookie
        if kind is None:
            return None, None
        found = gate.identities.resolve(kind, token)
        if isinstance(found, Deferred):
            found = await found
        if found.identity is None:
            return None, kind
        expected_host = CLI_HOST if cli_session else None
        if kind == SESSION and (
            found.host != expected_host or found.session_id is None or found.identity.resources
        ):
            return None, kind  # a resource host's session, not the login host's (or the command line's)
        return found, kind

    def _client_ip(self, request: Any) -> str:
        peer = getattr(self.transport.getPeer(), "host", "unknown")
        trusted = self.factory.gate.trusted
        forwarded = (request.headers or {}).get("x-forwarded-for")
        if not trusted or forwarded is None:
            return peer
        return trusted.client_address(peer, [forwarded.encode("latin-1", "replace")])

    def onOpen(self) -> None:
        resource = self.resource
        if resource is None:
            self.sendClose(CLOSE_ERROR, "not authorized")
            return
        if self.check_only:
            self.sendClose(CLOSE_NORMAL, "ready")
            return
        from kokoa.wire import ProtocolError

        peer = self.transport.getPeer()
        ws_side, stream_side = relay_pair(
            f"connect {self.client_ip}:{getattr(peer, 'port', '?')}", "stream", self._closed
        )
        self.start_relay(ws_side)
        tunnel = self.factory.registry.pick(resource.site_id)
        if tunnel is None:
            self.sendClose(CLOSE_TRY_LATER, _close_reason(self.factory.why_no_tunnel(resource)))
            return
        ws_side.transport.pauseProducing()  # until the stream is attached
        metadata = {
            "proto": "tcp",
            "resource": resource.name,
            "target": resource.target,
            "client": f"{self.client_ip}:{getattr(peer, 'port', 0)}",
        }
        try:
            tunnel.open_stream(metadata, stream_side)
        except ProtocolError as e:
            log.warn("cannot open a stream for {name!r}: {e}", name=resource.name, e=e.message)
            ws_side.transport.resumeProducing()
            self.sendClose(CLOSE_TRY_LATER, _close_reason(f"cannot open a stream: {e.message}"))

    def failHandshake(self, reason: str, code: int = 400, responseHeaders: Any = None) -> None:
        """A refusal: the status line says why (401 asks for a bearer token); no warning is logged."""
        headers = [("WWW-Authenticate", 'Bearer realm="kokoa"')] if code == 401 else responseHeaders
        self.wasNotCleanReason = reason
        log.info("connect refused ({code}): {why}", code=code, why=reason)
        self.sendHttpErrorResponse(code, reason, headers)
        self.wasClean = True  # said in the response: not a broken connection
        self.dropConnection(abort=False)

    def _closed(self, side: RelaySide, reason: Failure) -> None:
        from kokoa.tunnel import StreamReset
        from kokoa.wire import ErrorCode

        # The edge's reset says why (the target refused, ...); the client is told in the close reason.
        failed = side.name == "stream" and reason.check(StreamReset) and reason.value.by_peer
        if failed and reason.value.code not in (ErrorCode.NO_ERROR, ErrorCode.CANCEL):
            log.warn(
                "connect to resource {name!r} closed: {why}",
                name=self.resource.name if self.resource is not None else "?",
                why=failure_text(reason),
            )


class ConnectFactory(WebSocketServerFactory):
    """The WebSocket side of ``/connect/...``: the gate decides, the front's directory and tunnels serve."""

    protocol = ConnectProtocol
    noisy = False

    def __init__(self, gate: Any, front: Any, reactor: Any) -> None:
        super().__init__(server="kokoa", reactor=reactor)
        self.gate = gate
        self.front = front
        self._orgs: dict[str, str | None] = {}
        self.setProtocolOptions(
            webStatus=False,
            perMessageCompressionAccept=_no_compression,
            maxFramePayloadSize=MAX_INBOUND_MESSAGE,
            maxMessagePayloadSize=MAX_INBOUND_MESSAGE,
            autoFragmentSize=0,
            autoPingInterval=AUTO_PING_INTERVAL,
            autoPingTimeout=AUTO_PING_TIMEOUT,
            openHandshakeTimeout=OPEN_HANDSHAKE_TIMEOUT,
            closeHandshakeTimeout=CLOSE_HANDSHAKE_TIMEOUT,
            requireMaskedClientFrames=True,
            failByDrop=False,
            tcpNoDelay=True,
            trustXForwardedFor=0,
        )

    @property
    def registry(self) -> Any:
        return self.front.registry

    def find(self, name: str, identity: Any, client_ip: str) -> tuple[Any, str]:
        """The store's TCP resource with this id, or the one with this name the caller may reach
        (names repeat across organizations); else None and why."""
        resources = [r for r in self.front.directory.tcp_resources() if r.id]
        for resource in resources:
            if resource.id == name:
                return resource, ""
        named = [r for r in resources if r.name == name]
        if len(named) > 1:
            reachable = [
                r for r in named if self.gate.policies.decide(r.id, None, None, client_ip, identity).allowed
            ]
            named = reachable or named
        if len(named) == 1:
            return named[0], ""
        if named:
            return None, f"Several TCP resources are named {name!r}: use the id of one"
        return None, f"No TCP resource {name!r} (with a target) on this gateway"

    async def org_of(self, resource_id: str) -> str | None:
        """The resource's organization, for the access log (read once per resource)."""
        if resource_id in self._orgs:
            return self._orgs[resource_id]
        store = self.gate._store()
        if store is None:
            return None
        from kokoa.store import get_resource

        try:
            found = await store.run(get_resource, resource_id)
        except Exception:  # deleted meanwhile, or the store is busy: the row goes without it
            return None
        if len(self._orgs) > 10_000:
            self._orgs.clear()
        self._orgs[resource_id] = found.org_id
        return found.org_id

    def why_no_tunnel(self, resource: Any) -> str:
        if not self.registry.tunnels(resource.site_id):
            return f"The site of {resource.name!r} is offline (no edge connected)"
        return f"The site of {resource.name!r} cannot take another stream now: try again"


def _cookie(header: str, name: str) -> str | None:
    for part in header.replace(",", ";").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value.strip()
    return None


class ConnectResource(WebSocketResource):
    """``/connect/<resource>``: autobahn takes the connection over from twisted.web. The front keeps
    carrying its bytes (it handed the connection to the login site and still feeds it), now to the
    WebSocket protocol."""

    def render(self, request: IRequest) -> Any:
        if not request.isSecure():
            request.setResponseCode(400)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"kokoa connect works over wss:// only.\n"
        transport = request.channel.transport
        front = transport.wrappedProtocol if isinstance(transport, ProtocolWrapper) else None
        transport.unregisterProducer()  # the HTTP channel's: the relay registers its own
        result = super().render(request)
        # autobahn made the WebSocket protocol the TLS layer's; give it back to the front, which feeds the
        # protocol it handed the connection to (and counts the connection as its own until it ends).
        if front is not None and getattr(front, "handed_off", None) is not None:
            protocol = transport.wrappedProtocol
            if protocol is not front:
                transport.wrappedProtocol = front
                front.handed_off = protocol
        return result


#: What plain HTTP gets for ``/api/...`` and ``/connect/...`` on the login host (their credentials are
#: bearer keys and session cookies, never to be sent or accepted in clear text).
PLAIN_API_REFUSAL = (
    "the admin API is served over HTTPS on the login host, or on the --api listener, never over plain "
    "HTTP on the public front (a key sent here in clear text may have been seen: consider revoking it)"
)
PLAIN_CONNECT_REFUSAL = "kokoa connect works over wss:// (HTTPS) on the login host only, not over plain HTTP"


class LoginRoot(Resource):
    """The login host's root: ``/connect/...`` to the WebSocket resource, ``/api/...`` to the admin
    API (cookie sessions with CSRF checks), ``/static/...`` to the console's files, everything else to
    the app.

    Over plain HTTP (the public HTTP front hands the login host's connections here too) ``/api/...``
    and ``/connect/...`` answer 403 (a problem document) before anything reads their credentials."""

    isLeaf = True

    def __init__(
        self, app: Resource, connect: Resource, api: Resource | None = None, static: Resource | None = None
    ) -> None:
        super().__init__()
        self.app = app
        self.connect = connect
        self.api = api  # the admin API for the console (cookie sessions), once the store is open
        self.static = static  # the console's files

    def render(self, request: IRequest) -> Any:
        first = request.postpath[:1]
        if first in ([b"api"], [b"connect"]) and not request.isSecure():
            from kokoa.api._app import render_problem
            from kokoa.api._problems import forbidden

            refusal = PLAIN_API_REFUSAL if first == [b"api"] else PLAIN_CONNECT_REFUSAL
            request.setHeader(b"cache-control", b"no-store")
            return render_problem(request, forbidden(refusal))
        if len(request.postpath) >= 2 and request.postpath[0] == b"connect":
            return self.connect.render(request)
        if request.postpath[:1] == [b"api"] and self.api is not None:
            return self.api.render(request)
        if request.postpath[:1] == [b"static"] and self.static is not None:
            request.prepath.append(request.postpath.pop(0))
            return self.static.render(request)
        return self.app.render(request)


def connect_resource(login: Any) -> ConnectResource:
    """The ``/connect/`` resource of a :class:`kokoa.auth.login.LoginApp`."""
    return ConnectResource(ConnectFactory(login.gate, login.front, login.reactor))


# ---------------------------------------------------------------------- the client's side (kokoa connect)


class ConnectError(Exception):
    """Why a WebSocket to ``/connect/`` did not open (``status``: the gateway's refusal, if it refused)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ClientSettings:
    """Where ``kokoa connect`` goes: the WebSocket URL, the bearer key, the TLS connection creator (trust
    and name), the login host's name for messages, and the address to dial."""

    url: str
    key: str
    creator: Any
    host: str
    connect_host: str
    connect_port: int
    scheme: str = "Bearer"  # or "Session": a session token from the browser sign-in (kokoa connect)


#: Seconds to reach the gateway's port; for the opening handshake (TLS included); Ctrl-C's clean close.
CONNECT_TIMEOUT = 10.0
CLIENT_OPEN_TIMEOUT = 15.0
STOP_TIMEOUT = 2.0


class _ClientWebSocket(RelayOverWebSocket, WebSocketClientProtocol):
    """One WebSocket to ``/connect/...``: relays its local connection once open (or only checks)."""

    factory: _ClientFactory
    opened = False

    def onOpen(self) -> None:
        self.opened = True
        factory = self.factory
        if factory.local is None:
            return  # a check: the gateway closes with 1000
        factory.client.websockets.add(self)
        self.start_relay(factory.local.other)
        factory.settle(None)

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        factory = self.factory
        factory.client.gone(self)
        if not self.opened:
            factory.settle(Failure(self._not_opened(reason)))
        elif factory.local is None:
            was_clean, code, text = self.close_info or (False, None, None)
            if was_clean and code == CLOSE_NORMAL:
                factory.settle(None)
            else:
                factory.settle(Failure(ConnectError(f"the gateway ended the check: {text or code}")))

    def _not_opened(self, reason: Failure) -> ConnectError:
        status_line = getattr(self, "http_status_line", None)
        if status_line:
            parts = status_line.split(" ", 2)
            if len(parts) >= 2 and parts[1].isdigit() and parts[1] != "101":
                text = parts[2] if len(parts) > 2 else ""
                return ConnectError(f"the gateway refused the connection ({parts[1]}): {text}", int(parts[1]))
        from OpenSSL import SSL

        host = self.factory.client.settings.host
        if reason.check(SSL.Error):
            return ConnectError(
                f"cannot verify the certificate of {host} ({_tls_reason(reason.value)}): "
                "pass --ca-file with the CA that issued it"
            )
        if type(reason.value).__name__ == "VerificationError":
            return ConnectError(f"the certificate of {host} is not for that name: {reason.value}")
        why = getattr(self, "wasNotCleanReason", None) or reason.getErrorMessage()
        return ConnectError(f"the WebSocket to {host} did not open: {why}")


def _tls_reason(error: Exception) -> str:
    details = error.args[0] if error.args else None
    if isinstance(details, list) and details:
        return "; ".join(str(item[-1]) for item in details if item)
    return str(error) or type(error).__name__


class _ClientFactory(WebSocketClientFactory):
    protocol = _ClientWebSocket
    noisy = False

    def __init__(self, client: ConnectClient, local: RelayEnd | None) -> None:
        settings = client.settings
        super().__init__(
            url=settings.url + ("?check=1" if local is None else ""),
            headers={"Authorization": f"{settings.scheme} {settings.key}"},
            useragent="kokoa-connect",
            reactor=client.reactor,
        )
        self.client = client
        self.local = local
        self.outcome: Deferred[None] = Deferred()
        self.setProtocolOptions(
            perMessageCompressionOffers=[],
            perMessageCompressionAccept=_no_compression,
            maxFramePayloadSize=MAX_INBOUND_MESSAGE,
            maxMessagePayloadSize=MAX_INBOUND_MESSAGE,
            autoFragmentSize=0,
            openHandshakeTimeout=CLIENT_OPEN_TIMEOUT,
            closeHandshakeTimeout=STOP_TIMEOUT,
            failByDrop=False,
            tcpNoDelay=True,
        )

    def settle(self, result: Failure | None) -> None:
        if self.outcome.called:
            return
        if result is None:
            self.outcome.callback(None)
        else:
            self.outcome.errback(result)


class ConnectClient(Factory):
    """Accepts local connections and gives each its WebSocket to the gateway; ``say`` reports problems."""

    noisy = False

    def __init__(self, reactor: Any, settings: ClientSettings, say: Callable[[str], None]) -> None:
        self.reactor = reactor
        self.settings = settings
        self.say = say
        self.port: Any = None
        self.locals: set[RelayEnd] = set()
        self.websockets: set[_ClientWebSocket] = set()
        self._idle: list[Deferred[None]] = []

    def open(self, local: RelayEnd | None) -> Deferred[None]:
        """A WebSocket for ``local`` (None: a check); fires once open, or fails with a ConnectError."""
        from twisted.internet.endpoints import HostnameEndpoint
        from twisted.protocols.tls import TLSMemoryBIOFactory

        factory = _ClientFactory(self, local)
        s = self.settings
        endpoint = HostnameEndpoint(self.reactor, s.connect_host, s.connect_port, timeout=CONNECT_TIMEOUT)

        def unreachable(failure: Failure) -> None:
            where = f"{s.connect_host}:{s.connect_port}"
            message = f"cannot reach the gateway at {where}: {failure.getErrorMessage()}"
            factory.settle(Failure(ConnectError(message)))

        endpoint.connect(TLSMemoryBIOFactory(s.creator, True, factory)).addErrback(unreachable)
        return factory.outcome

    def check(self) -> Deferred[None]:
        """One handshake that opens no stream: reachable, trusted, and this key let in."""
        return self.open(None)

    def buildProtocol(self, addr: Any) -> RelayEnd:
        local, _ = relay_pair(f"{addr.host}:{addr.port}", "websocket", self._closed, self._connected)
        return local

    def _connected(self, local: RelayEnd) -> None:
        local.transport.pauseProducing()  # until the WebSocket is open
        self.locals.add(local)

        def failed(failure: Failure) -> None:
            self.say(f"connection from {local.name}: {failure.getErrorMessage()}")
            if not local.closed:
                local.transport.loseConnection()

        self.open(local).addErrback(failed)

    def _closed(self, side: RelaySide, reason: Failure) -> None:
        if side.name != "websocket":
            self.locals.discard(side)
        elif not reason.check(ConnectionDone) and side.transport is not None and not side.other.closed:
            # the gateway's end failed (the local one's failures are the local program's to tell)
            self.say(f"connection from {side.other.name} ended: {failure_text(reason)}")

    def gone(self, websocket: _ClientWebSocket) -> None:
        self.websockets.discard(websocket)
        if not self.websockets:
            waiting, self._idle = self._idle, []
            for d in waiting:
                d.callback(None)

    def stop(self) -> Deferred[None] | None:
        """Stop listening and close every connection cleanly (waiting :data:`STOP_TIMEOUT` at most)."""
        if self.port is not None:
            self.port.stopListening()
        for local in list(self.locals):
            if local.transport is not None and not local.closed:
                local.transport.loseConnection()
        self.say("stopped")
        if not self.websockets:
            return None
        done: Deferred[None] = Deferred()
        self._idle.append(done)
        timer = self.reactor.callLater(STOP_TIMEOUT, lambda: done.called or done.callback(None))
        done.addBoth(lambda result: timer.cancel() if timer.active() else None)
        return done
