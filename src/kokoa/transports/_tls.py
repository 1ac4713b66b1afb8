"""TLS over TCP for the tunnel, and the pieces the WebSocket transport shares with it.

`TLSMemoryBIOFactory` does the TLS; `_AfterTLSHandshake` sits between it and the
application protocol, which is built and connected only once the handshake (and so the
certificate check) has succeeded. A failed or stalled handshake never reaches the
application: the client's connect() fails with the reason instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHandshakeListener, IProtocol, IProtocolFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from ._defaults import DEFAULT_TLS_HANDSHAKE_TIMEOUT
from ._errors import HandshakeTimeout

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime

    from kokoa.pki import ServerCredentials

_log = Logger()


def set_tcp_nodelay(transport: object) -> bool:
    """Turn Nagle's algorithm off on the TCP socket under `transport`, if there is one.

    Works through TLS (TLSMemoryBIOProtocol forwards unknown attributes to the transport
    it wraps). Returns whether it was set.
    """
    setter = getattr(transport, "setTcpNoDelay", None)
    if setter is None:
        return False
    try:
        setter(True)
    except OSError:  # not a TCP socket (e.g. a UNIX socket)
        return False
    return True


class Outcome:
    """Fires a connect() Deferred once: with the protocol when ready, or with the first failure."""

    def __init__(self, deferred: Deferred) -> None:
        self.deferred = deferred
        self.done = False

    def succeed(self, protocol: IProtocol) -> None:
        if not self.done:
            self.done = True
            self.deferred.callback(protocol)

    def fail(self, reason: Failure) -> None:
        if not self.done:
            self.done = True
            self.deferred.errback(reason)


class AfterTLSHandshakeFactory(Factory):
    """Wraps an application factory so its protocols start only after the TLS handshake."""

    noisy = False

    def __init__(
        self,
        app_factory: IProtocolFactory,
        clock: IReactorTime,
        handshake_timeout: float | None,
        ready: Callable[[IProtocol], object] | None = None,
        failed: Callable[[Failure], object] | None = None,
    ) -> None:
        self.app_factory = app_factory
        self.clock = clock
        self.handshake_timeout = handshake_timeout
        self._ready = ready
        self._failed = failed

    def buildProtocol(self, addr: IAddress) -> _AfterTLSHandshake:
        return _AfterTLSHandshake(self, addr)

    def startFactory(self) -> None:
        self.app_factory.doStart()

    def stopFactory(self) -> None:
        self.app_factory.doStop()

    def ready(self, app: IProtocol) -> None:
        if self._ready is not None:
            self._ready(app)

    def failed(self, addr: IAddress, reason: Failure) -> None:
        if self._failed is not None:
            self._failed(reason)
        else:
            _log.info("TLS handshake with {peer} failed: {why}", peer=addr, why=reason.getErrorMessage())


@implementer(IHandshakeListener)
class _AfterTLSHandshake(Protocol):
    """Holds the application protocol back until the TLS handshake completes."""

    def __init__(self, factory: AfterTLSHandshakeFactory, addr: IAddress) -> None:
        self._owner = factory
        self._addr = addr
        self._app: IProtocol | None = None
        self._refused = False
        self._lost = False
        self._timed_out = False
        self._timer: IDelayedCall | None = None

    def connectionMade(self) -> None:
        set_tcp_nodelay(self.transport)
        timeout = self._owner.handshake_timeout
        if timeout:
            self._timer = self._owner.clock.callLater(timeout, self._handshake_timed_out)

    def _handshake_timed_out(self) -> None:
        self._timer = None
        self._timed_out = True
        self.transport.abortConnection()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def handshakeCompleted(self) -> None:
        self._cancel_timer()
        if self._lost or self._app is not None or self._refused:
            return
        app = self._owner.app_factory.buildProtocol(self._addr)
        if app is None:
            self._refused = True
            self.transport.loseConnection()
            return
        self._app = app
        app.makeConnection(self.transport)
        if IHandshakeListener.providedBy(app):
            app.handshakeCompleted()
        self._owner.ready(app)

    def dataReceived(self, data: bytes) -> None:
        app = self._app
        if app is not None:
            app.dataReceived(data)

    def connectionLost(self, reason: Failure) -> None:
        if self._lost:
            return
        self._lost = True
        self._cancel_timer()
        app, self._app = self._app, None
        if app is not None:
            app.connectionLost(reason)
            return
        if self._timed_out:
            reason = Failure(
                HandshakeTimeout(f"TLS handshake did not complete within {self._owner.handshake_timeout:g} s")
            )
        elif self._refused:
            from twisted.internet.error import NoProtocol

            reason = Failure(NoProtocol("the protocol factory refused the connection"))
        self._owner.failed(self._addr, reason)


def server_context_factory(creds: ServerCredentials | object) -> object:
    """Server TLS settings from `ServerCredentials`, or a context factory used as given."""
    server_options = getattr(creds, "server_options", None)
    return server_options() if callable(server_options) else creds


def tls_server_factory(
    inner_factory: IProtocolFactory,
    creds: ServerCredentials,
    *,
    handshake_timeout: float | None = DEFAULT_TLS_HANDSHAKE_TIMEOUT,
    reactor: IReactorTime | None = None,
) -> IProtocolFactory:
    """A factory for a plain ``tcp:`` server endpoint that serves `inner_factory` over TLS.

    The inner protocol is built once the TLS handshake has completed; TCP_NODELAY is set on
    every accepted socket; a handshake not done within `handshake_timeout` seconds is aborted.
    """
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor  # type: ignore[assignment]
    gate = AfterTLSHandshakeFactory(inner_factory, reactor, handshake_timeout)
    return TLSMemoryBIOFactory(server_context_factory(creds), False, gate, clock=reactor)
