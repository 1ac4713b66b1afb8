"""autobahn protocol classes for the WebSocket transport.

Imported only from inside the functions that need them: autobahn takes a noticeable
time to import, and the plugin file must stay cheap to load.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.types import ConnectingRequest, ConnectionDeny
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost, NoProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from kokoa import __version__

from ._adapter import WebSocketStreamTransport
from ._errors import WebSocketHandshakeError
from ._tls import set_tcp_nodelay

if TYPE_CHECKING:
    from twisted.internet.interfaces import IProtocol, IProtocolFactory, IReactorTime

    from ._tls import Outcome
    from ._url import GatewayAddress

_log = Logger()

#: Seconds to wait for the peer's answer to our WebSocket close frame.
CLOSE_HANDSHAKE_TIMEOUT = 2.0
_SERVER_NAME = "kokoa"
_NORMAL_CLOSE_CODES = (None, 1000)


def _no_compression(_offers_or_response: Any) -> None:
    """Accept no per-message compression offer (server) or response (client)."""
    return None


class _StreamOverWebSocket:
    """Both sides: carry an inner protocol's bytes in binary WebSocket messages."""

    factory: Any
    transport: Any
    _inner: IProtocol | None = None
    _adapter: WebSocketStreamTransport | None = None
    _inner_lost = False
    _refused = False
    _close_info: tuple[bool, int | None, str | None] | None = None

    def connectionMade(self) -> None:
        set_tcp_nodelay(self.transport)
        super().connectionMade()  # type: ignore[misc]

    def onOpen(self) -> None:
        inner = self.factory.inner_factory.buildProtocol(self.transport.getPeer())
        if inner is None:
            self._refused = True
            self._fail_connection(1011, "connection refused by the application")  # type: ignore[attr-defined]
            return
        self._adapter = WebSocketStreamTransport(self, self.factory.max_message_size)
        self._inner = inner
        inner.makeConnection(self._adapter)
        self._opened(inner)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not isBinary:
            self._fail_connection(  # type: ignore[attr-defined]
                1002, "text messages are not allowed on a tunnel connection"
            )
            return
        inner = self._inner
        if inner is not None and not self._inner_lost:
            inner.dataReceived(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._close_info = (wasClean, code, reason)

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)  # type: ignore[misc]  # autobahn: calls onClose
        inner = self._inner
        if inner is None:
            self._not_opened(reason)
            return
        if self._inner_lost:
            return
        self._inner_lost = True
        if self._adapter is not None:
            self._adapter.disconnecting = True
        inner.connectionLost(self._inner_reason(reason))

    def _inner_reason(self, reason: Failure) -> Failure:
        """Why the byte stream ended, as a Twisted connection error."""
        if self._adapter is not None and self._adapter.aborted:  # the inner protocol asked for it
            return reason if reason.check(ConnectionAborted) else Failure(ConnectionAborted())
        if getattr(self, "failedByMe", False):
            code = getattr(self, "localCloseCode", None)
            text = getattr(self, "localCloseReason", None) or self.wasNotCleanReason  # type: ignore[attr-defined]
            if isinstance(text, bytes):
                text = text.decode("utf-8", "replace")
            return Failure(ConnectionLost(f"WebSocket closed by this side (code {code}): {text}"))
        was_clean, code, text = self._close_info or (False, None, None)
        if was_clean and code in _NORMAL_CLOSE_CODES:
            return Failure(ConnectionDone("WebSocket closed normally"))
        if was_clean:
            return Failure(ConnectionLost(f"WebSocket closed by the peer (code {code}): {text}"))
        detail = self.wasNotCleanReason or reason.getErrorMessage()  # type: ignore[attr-defined]
        return Failure(ConnectionLost(f"WebSocket connection lost: {detail}"))

    def _opened(self, inner: IProtocol) -> None:
        """The byte stream is ready (hook)."""

    def _not_opened(self, reason: Failure) -> None:
        """The connection ended before the byte stream was ready (hook)."""


class TunnelWebSocketServerProtocol(_StreamOverWebSocket, WebSocketServerProtocol):
    """Gateway side: accepts the configured path only."""

    def onConnect(self, request: Any) -> None:
        if request.path != self.factory.tunnel_path:
            raise ConnectionDeny(ConnectionDeny.NOT_FOUND, "Not Found")
        return None

    def _not_opened(self, reason: Failure) -> None:
        _log.debug(
            "WebSocket tunnel handshake from {peer} failed: {why}",
            peer=self.peer,
            why=self.wasNotCleanReason or reason.getErrorMessage(),
        )


class TunnelWebSocketClientProtocol(_StreamOverWebSocket, WebSocketClientProtocol):
    """Edge side: reports the outcome of the opening handshake to connect()."""

    def onConnecting(self, transport_details: Any) -> ConnectingRequest:
        address: GatewayAddress = self.factory.address
        host = f"[{address.host}]" if ":" in address.host else address.host
        return ConnectingRequest(
            host=host,
            port=address.port,
            resource=address.path,
            headers={},
            useragent=f"kokoa/{__version__}",
            origin=None,  # edges are not browsers: no Origin header
            protocols=[],
        )

    def _opened(self, inner: IProtocol) -> None:
        self.factory.outcome.succeed(inner)

    def _not_opened(self, reason: Failure) -> None:
        if self._refused:
            failure = Failure(NoProtocol("the protocol factory refused the connection"))
        else:
            why = self.wasNotCleanReason or reason.getErrorMessage()
            failure = Failure(
                WebSocketHandshakeError(f"WebSocket handshake with {self.factory.address} failed: {why}")
            )
        self.factory.outcome.fail(failure)


class TunnelWebSocketServerFactory(WebSocketServerFactory):
    """Serves WebSocket tunnels on one path, each carrying a protocol from `inner_factory`."""

    protocol = TunnelWebSocketServerProtocol
    noisy = False

    def __init__(
        self,
        inner_factory: IProtocolFactory,
        *,
        path: str,
        allowed_origins: list[str],
        max_message_size: int,
        auto_ping_interval: float,
        auto_ping_timeout: float,
        open_handshake_timeout: float,
        reactor: IReactorTime,
    ) -> None:
        super().__init__(server=_SERVER_NAME, reactor=reactor)
        self.inner_factory = inner_factory
        self.tunnel_path = path
        self.max_message_size = max_message_size
        self.setProtocolOptions(
            webStatus=False,
            perMessageCompressionAccept=_no_compression,
            maxFramePayloadSize=max_message_size,
            maxMessagePayloadSize=max_message_size,
            autoFragmentSize=0,
            autoPingInterval=auto_ping_interval,
            autoPingTimeout=auto_ping_timeout,
            openHandshakeTimeout=open_handshake_timeout,
            closeHandshakeTimeout=CLOSE_HANDSHAKE_TIMEOUT,
            allowedOrigins=allowed_origins,
            allowNullOrigin=False,
            requireMaskedClientFrames=True,
            maskServerFrames=False,
            failByDrop=False,
            tcpNoDelay=True,
            trustXForwardedFor=0,
            serveFlashSocketPolicy=False,
        )

    def startFactory(self) -> None:
        super().startFactory()
        self.inner_factory.doStart()

    def stopFactory(self) -> None:
        self.inner_factory.doStop()
        super().stopFactory()


class TunnelWebSocketClientFactory(WebSocketClientFactory):
    """One connection attempt's WebSocket client; `outcome` gets the inner protocol or the failure."""

    protocol = TunnelWebSocketClientProtocol
    noisy = False

    def __init__(
        self,
        inner_factory: IProtocolFactory,
        address: GatewayAddress,
        outcome: Outcome,
        *,
        max_message_size: int,
        auto_ping_interval: float,
        auto_ping_timeout: float,
        open_handshake_timeout: float,
        reactor: IReactorTime,
    ) -> None:
        scheme = "wss" if address.secure else "ws"
        super().__init__(url=f"{scheme}://{address.netloc}{address.path}", reactor=reactor)
        self.inner_factory = inner_factory
        self.address = address
        self.outcome = outcome
        self.max_message_size = max_message_size
        self.setProtocolOptions(
            perMessageCompressionOffers=[],
            perMessageCompressionAccept=_no_compression,
            maxFramePayloadSize=max_message_size,
            maxMessagePayloadSize=max_message_size,
            autoFragmentSize=0,
            autoPingInterval=auto_ping_interval,
            autoPingTimeout=auto_ping_timeout,
            openHandshakeTimeout=open_handshake_timeout,
            closeHandshakeTimeout=CLOSE_HANDSHAKE_TIMEOUT,
            maskClientFrames=True,
            acceptMaskedServerFrames=False,
            failByDrop=False,
            tcpNoDelay=True,
        )

    def startFactory(self) -> None:
        super().startFactory()
        self.inner_factory.doStart()

    def stopFactory(self) -> None:
        self.inner_factory.doStop()
        super().stopFactory()
