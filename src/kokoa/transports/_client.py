"""The edge's side: one endpoint type for every gateway transport."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from ._defaults import (
    DEFAULT_AUTO_PING_INTERVAL,
    DEFAULT_AUTO_PING_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_OPEN_HANDSHAKE_TIMEOUT,
    DEFAULT_TLS_HANDSHAKE_TIMEOUT,
)
from ._tls import AfterTLSHandshakeFactory, Outcome
from ._trust import Trust
from ._url import GatewayAddress, parse_gateway_url

if TYPE_CHECKING:
    from twisted.internet.interfaces import IProtocol, IProtocolFactory


@implementer(IStreamClientEndpoint)
class TunnelClientEndpoint:
    """Connects to a gateway over TLS or WebSocket; the caller cannot tell which.

    ``connect(factory)`` builds one protocol and fires with it once the byte stream is
    ready: after the TLS handshake (certificate verified) and, for WebSocket, after the
    opening handshake. Any earlier failure (refused, timeout, bad certificate, pin
    mismatch, handshake refused) fails the Deferred instead; the protocol then never sees
    a connection. Cancelling the Deferred aborts the attempt.
    """

    def __init__(
        self,
        reactor,
        address: GatewayAddress,
        trust: Trust,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        tls_handshake_timeout: float | None = DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        open_handshake_timeout: float = DEFAULT_OPEN_HANDSHAKE_TIMEOUT,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        auto_ping_interval: float = DEFAULT_AUTO_PING_INTERVAL,
        auto_ping_timeout: float = DEFAULT_AUTO_PING_TIMEOUT,
    ) -> None:
        if max_message_size < 1:
            raise ValueError("max_message_size must be positive")
        self._reactor = reactor
        self.address = address
        self.trust = trust
        # Built now, so a bad CA file is reported when the edge starts, not at each attempt.
        self._creator = trust.connection_creator(address.host) if address.secure else None
        self._connect_timeout = connect_timeout
        self._tls_handshake_timeout = tls_handshake_timeout
        self._ws_options = {
            "max_message_size": max_message_size,
            "auto_ping_interval": auto_ping_interval,
            "auto_ping_timeout": auto_ping_timeout,
            "open_handshake_timeout": open_handshake_timeout,
        }

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        attempt: list[Deferred] = []
        wire_protocol: list = []

        def cancel(_: Deferred) -> None:
            outcome.done = True  # the Deferred fails with CancelledError; ignore later news
            if wire_protocol:
                wire_protocol[0].transport.abortConnection()
            elif attempt:
                attempt[0].cancel()

        ready: Deferred[IProtocol] = Deferred(cancel)
        outcome = Outcome(ready)
        address = self.address
        app_factory = protocolFactory
        if address.is_websocket:
            from ._ws_protocols import TunnelWebSocketClientFactory

            app_factory = TunnelWebSocketClientFactory(
                protocolFactory, address, outcome, reactor=self._reactor, **self._ws_options
            )
        wire_factory = app_factory
        if self._creator is not None:
            gate = AfterTLSHandshakeFactory(
                app_factory,
                self._reactor,
                self._tls_handshake_timeout,
                ready=None if address.is_websocket else outcome.succeed,
                failed=outcome.fail,
            )
            wire_factory = TLSMemoryBIOFactory(self._creator, True, gate, clock=self._reactor)
        tcp = HostnameEndpoint(self._reactor, address.host, address.port, timeout=self._connect_timeout)
        d = tcp.connect(wire_factory)
        attempt.append(d)
        d.addCallbacks(wire_protocol.append, outcome.fail)
        return ready

    def __repr__(self) -> str:
        return f"<TunnelClientEndpoint {self.address}>"


def client_endpoint(
    reactor,
    url: str | GatewayAddress,
    trust: Trust | None = None,
    **options: float | int | None,
) -> TunnelClientEndpoint:
    """The endpoint for a gateway address (``tls:HOST:PORT`` or ``wss://HOST[:PORT]/PATH``).

    `trust` defaults to the system trust store with hostname verification; it is ignored
    for plain ``ws://`` (tests only). `options` are `TunnelClientEndpoint`'s keywords.
    """
    address = url if isinstance(url, GatewayAddress) else parse_gateway_url(url)
    return TunnelClientEndpoint(reactor, address, trust if trust is not None else Trust(), **options)  # type: ignore[arg-type]
