"""Server-Sent Events (``text/event-stream``) from the API: a route answers with a :class:`Stream`, and the
API keeps the response open, writing events as they come, until the client goes or the gateway stops.

A handler returns ``Stream(subscribe, backlog)``:

- ``subscribe(push)`` is called before anything is written (a :class:`~kokoa.api._problems.Problem` it
  raises, such as 503 for a busy source, is the answer then); it hands ``push(event, data, id=None)``
  to its source and returns the function that unsubscribes (called once, however the stream ends);
- ``backlog()`` (optional, awaited) gives the events to send first; live events that arrive meanwhile
  wait and follow it, in order.

Framing: ``id:`` (when given), ``event:`` and one ``data:`` line of compact JSON, then a blank line; a
``: keepalive`` comment every :data:`KEEPALIVE` seconds keeps proxies and browsers from timing out. The
first thing written is ``retry: 2000`` (browsers reconnect after 2 s when the stream ends).

Bounds (:class:`StreamLimits`, one per gateway, shared by its API listeners):

- at most ``max_streams`` streams open at once; beyond, 503 with ``Retry-After``;
- at most ``max_buffer`` bytes of events waiting per stream while the client does not read (the
  response is a streaming producer: a full socket pauses it, and events wait in memory). Beyond, the
  stream is closed and the connection dropped, which frees everything; the browser's EventSource
  reconnects and starts again from a fresh picture.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import task
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from zope.interface import implementer

from ._problems import Problem

#: Seconds between keepalive comments.
KEEPALIVE = 15.0
#: Defaults of the ``[console]`` settings.
DEFAULT_MAX_STREAMS = 64
DEFAULT_MAX_BUFFER = 1024 * 1024
#: Seconds a client refused for too many streams is asked to wait.
RETRY_AFTER = 5

CONTENT_TYPE = b"text/event-stream; charset=utf-8"
_KEEPALIVE = b": keepalive\n\n"
_RETRY = b"retry: 2000\n\n"

_log = Logger()

#: What a source calls for each event: ``push(event, data, id=None)``.
Push = Callable[..., None]


@dataclass(frozen=True, slots=True)
class Event:
    """One event: its name (the ``event:`` field), JSON data, and an optional id."""

    event: str
    data: Any
    id: str | None = None


def _field(value: str) -> str:
    """A value safe on one line of the stream (no CR, LF or NUL)."""
    return value.replace("\r", " ").replace("\n", " ").replace("\x00", " ")


def frame(event: str, data: Any, id: str | None = None) -> bytes:
    """The bytes of one event. The data is compact JSON, so it is one line (JSON escapes newlines)."""
    lines = []
    if id is not None:
        lines.append(f"id: {_field(id)}")
    lines.append(f"event: {_field(event)}")
    lines.append("data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


class Stream:
    """A handler's answer that streams events (see the module's docstring)."""

    def __init__(
        self,
        subscribe: Callable[[Push], Callable[[], None]],
        backlog: Callable[[], Awaitable[list[Event]]] | None = None,
    ) -> None:
        self.subscribe = subscribe
        self.backlog = backlog


@implementer(IPushProducer)
class EventSink:
    """One open stream: writes events to its response, holds them while the client is slow (up to
    ``max_buffer`` bytes), and fires :attr:`closed` when it ends on our side."""

    def __init__(self, request: IRequest, max_buffer: int) -> None:
        self.request = request
        self.max_buffer = max_buffer
        self.closed: Deferred[str] = Deferred()
        self.reason: str | None = None
        self._holding = True  # until the backlog is out
        self._held: list[bytes] = []
        self._paused = False
        self._pending: deque[bytes] = deque()
        self.pending_bytes = 0
        self.sent = 0

    # -- what sources call --------------------------------------------------------------------------

    def push(self, event: str, data: Any, id: str | None = None) -> None:
        if self.reason is not None:
            return
        try:
            chunk = frame(event, data, id)
        except (TypeError, ValueError):
            _log.failure("an event could not be encoded")
            return
        if self._holding:
            self._held.append(chunk)
            self._add_pending(len(chunk))
            return
        self._write(chunk)

    def send(self, event: Event) -> None:
        self.push(event.event, event.data, event.id)

    # -- the stream's life ----------------------------------------------------------------------------

    def release(self) -> None:
        """The backlog is out: write what arrived meanwhile, then write as events come."""
        held, self._held = self._held, []
        self._holding = False
        self.pending_bytes -= sum(len(chunk) for chunk in held)
        for chunk in held:
            self._write(chunk)

    def keepalive(self) -> None:
        if self.reason is None and not self._paused and not self._holding:
            self.request.write(_KEEPALIVE)

    def close(self, reason: str) -> None:
        """End the stream on our side (the response then finishes)."""
        if self.reason is not None:
            return
        self.reason = reason
        self._pending.clear()
        self._held = []
        self.pending_bytes = 0
        self.closed.callback(reason)

    def _write(self, chunk: bytes) -> None:
        if self.reason is not None:
            return
        if self._paused:
            self._pending.append(chunk)
            self._add_pending(len(chunk))
            return
        self.sent += len(chunk)
        self.request.write(chunk)

    def _add_pending(self, size: int) -> None:
        self.pending_bytes += size
        if self.pending_bytes > self.max_buffer:
            self.close("overflow")

    # -- IPushProducer: the response's transport says when it is full ------------------------------

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        while self._pending and not self._paused and self.reason is None:
            chunk = self._pending.popleft()
            self.pending_bytes -= len(chunk)
            self.sent += len(chunk)
            self.request.write(chunk)

    def stopProducing(self) -> None:
        self.close("connection lost")


class StreamLimits:
    """The event streams of one gateway: how many may be open, and how much each may hold back."""

    def __init__(
        self,
        reactor: IReactorTime,
        *,
        max_streams: int = DEFAULT_MAX_STREAMS,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        keepalive: float = KEEPALIVE,
    ) -> None:
        if max_streams < 1 or max_buffer < 1 or keepalive <= 0:
            raise ValueError("max_streams, max_buffer and keepalive must be positive")
        self.reactor = reactor
        self.max_streams = max_streams
        self.max_buffer = max_buffer
        self.keepalive = keepalive
        self.open: set[EventSink] = set()
        #: Streams closed because their client fell more than max_buffer behind.
        self.overflows = 0
        self._stopping = False

    def close_all(self, reason: str = "the gateway is stopping") -> None:
        """End every open stream (the gateway stops); new ones are refused from now on."""
        self._stopping = True
        for sink in list(self.open):
            sink.close(reason)

    async def serve(self, request: IRequest, stream: Stream) -> bytes:
        """Answer ``request`` with ``stream`` until it ends; the body left to write (empty)."""
        if self._stopping:
            raise Problem(503, "the gateway is stopping", headers={"Retry-After": str(RETRY_AFTER)})
        if len(self.open) >= self.max_streams:
            raise Problem(
                503,
                f"too many event streams are open on this gateway (at most {self.max_streams}, "
                "[console] max_streams); try again later",
                headers={"Retry-After": str(RETRY_AFTER)},
            )
        sink = EventSink(request, self.max_buffer)
        unsubscribe = stream.subscribe(sink.push)  # may refuse (a Problem): nothing is written yet
        self.open.add(sink)
        keepalive = task.LoopingCall(sink.keepalive)
        keepalive.clock = self.reactor
        registered = False
        try:
            request.setResponseCode(200)
            request.setHeader(b"content-type", CONTENT_TYPE)
            request.setHeader(b"cache-control", b"no-store")
            request.setHeader(b"x-accel-buffering", b"no")
            request.registerProducer(sink, True)
            registered = True
            request.write(_RETRY)
            if stream.backlog is not None:
                try:
                    backlog = await stream.backlog()
                except CancelledError:
                    raise
                except Exception:  # the answer has begun: say so in the stream, and end it
                    _log.failure("the backlog of an event stream failed")
                    backlog = [Event("error", {"detail": "the stream could not start; reconnecting"})]
                    sink.close("backlog failed")
                    for event in backlog:
                        request.write(frame(event.event, event.data))
                for event in backlog:
                    sink.send(event)
            sink.release()
            keepalive.start(self.keepalive, now=False)
            reason = await sink.closed
        finally:
            self.open.discard(sink)
            if keepalive.running:
                keepalive.stop()
            try:
                unsubscribe()
            except Exception:
                _log.failure("an event source failed to unsubscribe")
            sink.close("ended")
            if registered and not getattr(request, "_disconnected", False):
                request.unregisterProducer()
        if reason == "overflow":
            self.overflows += 1
            _log.info(
                "closed an event stream whose client fell more than {n} bytes behind", n=self.max_buffer
            )
            self._drop_connection(request)
        return b""

    def _drop_connection(self, request: IRequest) -> None:
        """After the response is finished, drop the connection: what the slow client did not read is
        freed at once (its browser reconnects)."""
        channel = getattr(request, "channel", None)
        transport = getattr(channel, "transport", None)
        abort = getattr(transport, "abortConnection", None)
        if abort is not None:
            self.reactor.callLater(0, abort)  # type: ignore[attr-defined]
