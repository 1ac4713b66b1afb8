"""Connections to targets: HTTP/1.1 over tunnel streams (TLS inside them for https
targets), pooled per target and reused.

A tunnel stream is a transport, so the upstream side is an ordinary protocol: it
writes request heads and bodies, parses responses with httptools, and hands what it
parses to the exchange that owns it for the moment (see ``_front``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Protocol

import httptools
from twisted.internet.protocol import Factory
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from kokoa.gateway._model import HTTPTarget
from kokoa.transports import Trust

if TYPE_CHECKING:
    from kokoa.gateway._registry import TunnelRegistry

log = Logger()


class ResponseSink(Protocol):
    """What an upstream connection tells about the response it parses."""

    def response_head(self, status: int, reason: bytes, headers: list, keep_alive: bool) -> None: ...
    def response_body(self, data: bytes) -> None: ...
    def response_complete(self, reusable: bool) -> None: ...
    def response_upgraded(self, status: int, reason: bytes, headers: list, rest: bytes) -> None: ...
    def upstream_lost(self, reason: Failure, response_started: bool) -> None: ...
    def upstream_data(self, data: bytes) -> None: ...  # raw bytes after an upgrade


class ResponseTooLarge(Exception):
    """The upstream's response head is larger than allowed."""


class UpstreamConnection(TwistedProtocol):
    """One HTTP/1.1 connection to a target. At most one exchange at a time."""

    def __init__(self, pool: UpstreamPool, key: tuple, max_head: int) -> None:
        self.pool = pool
        self.key = key
        self.max_head = max_head
        self.sink: ResponseSink | None = None
        self.head_request = False
        self.upgraded = False
        self.lost = False
        self.idle_since: float | None = None  # when it went back to the pool
        self.used = 0
        self._parser = None
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._started = False
        self._complete = False
        self._keep_alive = False

    # ------------------------------------------------------------ driving

    def begin(self, sink: ResponseSink, head: bytes, head_request: bool) -> None:
        """Send a request head and expect its response."""
        self.sink = sink
        self.head_request = head_request
        self.used += 1
        self._parser = httptools.HttpResponseParser(self)
        self._reason = b""
        self._headers = []
        self._head_size = 0
        self._started = False
        self._complete = False
        self.transport.write(head)

    def write(self, data: bytes) -> None:
        if not self.lost:
            self.transport.write(data)

    def abort(self) -> None:
        """Drop the connection (an exchange gave up on it)."""
        self.sink = None
        if not self.lost:
            self.transport.abortConnection()

    def close(self) -> None:
        self.sink = None
        if not self.lost:
            self.transport.loseConnection()

    # ------------------------------------------------------------ IProtocol

    def dataReceived(self, data: bytes) -> None:
        sink = self.sink
        if self.upgraded:
            if sink is not None:
                sink.upstream_data(data)
            return
        if sink is None or self._parser is None:
            self.transport.abortConnection()  # bytes nobody asked for: the connection is unusable
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self._upgrade(data[e.args[0] :])
            return
        except httptools.HttpParserCallbackError as e:
            log.warn("upstream {key}: {why}", key=self.key[1], why=e.__context__ or e)
            self.transport.abortConnection()
            return
        except httptools.HttpParserError as e:
            log.warn("upstream {key} sent a malformed response: {why}", key=self.key[1], why=e)
            self.transport.abortConnection()
            return
        if self._complete and self.sink is sink:
            # Finish after feed_data returned: the sink may hand this connection to the next
            # exchange, which replaces the parser.
            self._parser = None
            self.sink = None
            sink.response_complete(self._keep_alive)

    def connectionLost(self, reason: Failure = None) -> None:
        self.lost = True
        self.pool.forget(self)
        sink, self.sink = self.sink, None
        if sink is not None and not self._complete:
            sink.upstream_lost(reason, self._started)

    # ------------------------------------------------------------ httptools callbacks

    def on_status(self, reason: bytes) -> None:
        self._reason += reason
        self._head_size += len(reason)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.max_head:
            raise ResponseTooLarge(f"response head larger than {self.max_head} bytes")
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        if parser.should_upgrade() and status == 101:
            return  # the upgrade is handled once feed_data stops at it
        if 100 <= status < 200:
            self.sink.response_head(status, self._reason, self._headers, True)
            self._reason, self._headers, self._head_size = b"", [], 0
            return
        self._started = True
        self._keep_alive = parser.should_keep_alive()
        self.sink.response_head(status, self._reason, self._headers, self._keep_alive)
        if self.head_request:
            self._complete = True  # a response to HEAD has no body, whatever its length says

    def on_body(self, data: bytes) -> None:
        if not self._complete:
            self.sink.response_body(data)

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() >= 200 or self._started:
            self._complete = True

    def _upgrade(self, rest: bytes) -> None:
        parser = self._parser
        status = parser.get_status_code()
        self.upgraded = True
        self._started = True
        self._complete = True
        self.sink.response_upgraded(status, self._reason, self._headers, rest)

    @property
    def response_started(self) -> bool:
        return self._started


class NoTunnel(Exception):
    """No tunnel of the target's site can take a stream now."""


class UpstreamPool:
    """Idle upstream connections per target, reused for the next request to it."""

    def __init__(
        self,
        registry: TunnelRegistry,
        reactor,
        max_idle_per_target: int = 32,
        idle_timeout: float = 30.0,
        max_head: int = 64 * 1024,
        ca_file: str | None = None,
    ) -> None:
        self.registry = registry
        self.reactor = reactor
        self.max_idle_per_target = max_idle_per_target
        self.idle_timeout = idle_timeout
        self.max_head = max_head
        self.ca_file = ca_file
        self._idle: dict[tuple, list[UpstreamConnection]] = defaultdict(list)
        self._creators: dict[tuple, object] = {}
        self.opened = 0  # streams opened, for the status page and tests

    @staticmethod
    def key_of(target: HTTPTarget) -> tuple:
        return (target.site_id, target.target, target.scheme, target.tls_verify, target.tls_server_name)

    def acquire(self, target: HTTPTarget, metadata: dict) -> tuple[UpstreamConnection, bool]:
        """An idle connection to ``target``, or a new one; and whether it was reused."""
        key = self.key_of(target)
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()  # the most recently used: the oldest expire first
            connection.idle_since = None
            if not connection.lost:
                return connection, True
        tunnel = self.registry.pick(target.site_id)
        if tunnel is None:
            raise NoTunnel(target.site_id)
        connection = UpstreamConnection(self, key, self.max_head)
        protocol = connection
        if target.scheme == "https":
            tls = TLSMemoryBIOFactory(self._creator(target), True, Factory.forProtocol(lambda: connection))
            protocol = tls.buildProtocol(None)
        tunnel.open_stream(metadata, protocol)
        self.opened += 1
        return connection, False

    def _creator(self, target: HTTPTarget):
        key = self.key_of(target)
        creator = self._creators.get(key)
        if creator is None:
            name = target.tls_server_name or target.host
            trust = Trust(insecure=True) if not target.tls_verify else Trust(ca_file=self.ca_file)
            creator = self._creators[key] = trust.connection_creator(name)
        return creator

    def release(self, connection: UpstreamConnection) -> None:
        """Keep a connection whose exchange ended cleanly, for the next request."""
        idle = self._idle[connection.key]
        if connection.lost or connection.upgraded or len(idle) >= self.max_idle_per_target:
            connection.close()
            return
        idle.append(connection)
        connection.idle_since = self.reactor.seconds()

    def expire_idle(self, now: float) -> None:
        """Close connections idle for longer than ``idle_timeout`` (the front's sweep calls it)."""
        limit = now - self.idle_timeout
        for key in list(self._idle):
            connections = self._idle[key]
            while (
                connections and connections[0].idle_since is not None and connections[0].idle_since <= limit
            ):
                connection = connections.pop(0)
                connection.idle_since = None
                connection.close()
            if not connections:
                del self._idle[key]

    def forget(self, connection: UpstreamConnection) -> None:
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)
            if not idle:
                del self._idle[connection.key]
        connection.idle_since = None

    def idle_count(self) -> int:
        return sum(len(v) for v in self._idle.values())

    def close_all(self) -> None:
        for connections in list(self._idle.values()):
            for connection in list(connections):
                self.forget(connection)
                connection.close()
        self._idle.clear()
