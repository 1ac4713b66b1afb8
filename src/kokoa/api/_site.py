"""A twisted.web Site that refuses request bodies above a limit *before* buffering them.

twisted.web holds a request's whole body (in memory, or a temporary file above 100 kB) before any
resource sees it. :class:`CappedRequest` checks ``Content-Length`` as soon as the headers are in
(``gotLength``), and counts the bytes of a chunked body as they come (``handleContentChunk``). Above
the limit it answers 413 with a problem document and ``Connection: close`` at once, keeps nothing
of the body, and never runs the resource. It then reads and discards what the client is still
sending for a while (up to :data:`LINGER_BYTES`) before closing, so that the client, still writing,
gets to read the answer rather than a connection reset; beyond that it aborts the connection.

HTTP/1.x only: over HTTP/2 (TLS with ALPN, when the h2 package is installed) a refused stream is
aborted without an answer.
"""

from __future__ import annotations

import io
from typing import Any

from twisted.logger import Logger
from twisted.web import http, server
from twisted.web.resource import IResource

from ._app import DEFAULT_MAX_BODY
from ._problems import PROBLEM_CONTENT_TYPE, content_too_large

#: After refusing a body, read and drop at most this much more before aborting the connection.
LINGER_BYTES = 1024 * 1024

_log = Logger()


class CappedRequest(server.Request):
    """A request whose body is kept in memory, up to its site's ``max_body`` bytes, or refused."""

    _refused = False
    _received = 0
    _discarded = 0

    @property
    def max_body(self) -> int:
        site = getattr(self.channel, "site", None)
        return getattr(site, "max_body", DEFAULT_MAX_BODY)

    def gotLength(self, length: int | None) -> None:
        self.content = io.BytesIO()  # never more than max_body bytes: memory is fine
        if length is not None and length > self.max_body:
            self._refuse()

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            self._discard(len(data))
            return
        self._received += len(data)
        if self._received > self.max_body:
            self.content = io.BytesIO()
            self._refuse()
            return
        self.content.write(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._refused:  # the whole refused body is in (and dropped): done with this connection
            if self.channel is not None:
                self.channel.loseConnection()
            return
        super().requestReceived(command, path, version)

    def _refuse(self) -> None:
        self._refused = True
        channel = self.channel
        if channel is None:
            return
        limit = self.max_body
        if not isinstance(channel, http.HTTPChannel):
            channel.abortConnection()  # an HTTP/2 stream: reset it, there is no HTTP/1.1 answer to write
            return
        _log.info(
            "Refused a request body above {limit} bytes from {peer}",
            limit=limit,
            peer=channel.transport.getPeer(),
        )
        self.requestHeaders.removeHeader(b"expect")  # no "100 Continue" after this answer
        channel.persistent = False
        body = content_too_large(limit).body()
        head = (
            b"HTTP/1.1 413 Content Too Large\r\n"
            b"Content-Type: " + PROBLEM_CONTENT_TYPE + b"\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n"
            b"Cache-Control: no-store\r\n"
            b"Connection: close\r\n\r\n"
        )
        channel.transport.write(head + body)
        lose_write = getattr(channel.transport, "loseWriteConnection", None)
        if lose_write is not None:
            lose_write()  # the answer is complete: FIN after it, and keep reading for a while

    def _discard(self, size: int) -> None:
        self._discarded += size
        if self._discarded > LINGER_BYTES and self.channel is not None:
            self.channel.transport.abortConnection()


class CappedSite(server.Site):
    """A :class:`~twisted.web.server.Site` whose requests refuse bodies above ``max_body`` bytes
    with 413 before buffering them."""

    requestFactory = CappedRequest

    def __init__(self, resource: IResource, *args: Any, max_body: int = DEFAULT_MAX_BODY, **kw: Any) -> None:
        super().__init__(resource, *args, **kw)
        self.max_body = max_body
