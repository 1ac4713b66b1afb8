"""The Twisted protocol that drives a :class:`kokoa.wire.Connection` over a byte transport."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, error, task
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from kokoa import wire
from kokoa.wire import ErrorCode, Role, StreamState

from ._stream import StreamReset, TunnelStream

#: Seconds between keepalive pings.
DEFAULT_PING_INTERVAL = 10.0
#: A peer whose oldest ping is unanswered this long is declared dead.
DEFAULT_PING_TIMEOUT = 20.0
#: The handshake must complete within this many seconds.
DEFAULT_HANDSHAKE_TIMEOUT = 15.0
#: Stream data taken from the session per transport write.
FLUSH_CHUNK = 256 * 1024


class Refusal(Exception):
    """Raised by a handler to refuse a handshake or a stream with a wire code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ITunnelHandler(Interface):
    """What the application does with a tunnel (the gateway's and the edge's sides)."""

    def hello_received(tunnel, hello):
        """Server side: check the peer's HELLO; return (or a Deferred of) the WELCOME info
        dict, or raise Refusal."""

    def tunnel_ready(tunnel, info):
        """The handshake is done; ``info`` is the peer's HELLO (server) or WELCOME (client)."""

    def stream_opened(tunnel, stream):
        """The peer opened ``stream`` (stream.metadata says what for): attach a protocol or reset it."""

    def control_received(tunnel, message):
        """A control message arrived on stream 0."""

    def tunnel_lost(tunnel, code, message):
        """The session ended; ``code`` is a wire ErrorCode (NO_ERROR for a clean close)."""


@implementer(IPushProducer)
class TunnelProtocol(Protocol):
    """One tunnel session over one byte transport (TLS or WebSocket)."""

    log = Logger()

    def __init__(
        self,
        role: Role,
        handler: Any,
        reactor: IReactorTime,
        limits: wire.Limits | None = None,
        hello: dict | None = None,
        ping_interval: float = DEFAULT_PING_INTERVAL,
        ping_timeout: float = DEFAULT_PING_TIMEOUT,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        local_name: str = "",
    ) -> None:
        self.role = role
        self.handler = handler
        self.reactor = reactor
        self.limits = limits or wire.Limits()
        self.connection = wire.Connection(role, self.limits, clock=reactor.seconds)
        self._hello = hello
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.handshake_timeout = handshake_timeout
        self.local_name = local_name
        self.peer_name = "peer"
        self.info: dict = {}
        self.streams: dict[int, TunnelStream] = {}
        self.ready = defer.Deferred()  # fires with the tunnel once the handshake is done
        self.lost = defer.Deferred()  # fires with (code, message) when the session ends
        self._paused = False
        self._flushing = False
        self._receiving = False
        self._closing_streams: set[TunnelStream] = set()
        self._waiting_drain: set[TunnelStream] = set()
        self._finishing: set[TunnelStream] = set()  # write side closed, FIN maybe not yet out
        self._transport_lost = False
        self._flush_call = None
        self._keepalive: task.LoopingCall | None = None
        self._handshake_timer = None
        self._ended = False
        self._last_received = reactor.seconds()

    # ----------------------------------------------------------- public

    @property
    def is_ready(self) -> bool:
        return self.connection.is_open and not self._ended

    @property
    def can_open_stream(self) -> bool:
        return self.is_ready and self.connection.can_open_stream

    @property
    def rtt(self) -> float | None:
        return self.connection.rtt

    def open_stream(self, metadata: dict, protocol) -> TunnelStream:
        """Open a stream to the peer and attach ``protocol`` to it. Raises wire.ProtocolError."""
        sid = self.connection.open_stream(metadata)
        stream = TunnelStream(self, sid, metadata)
        self.streams[sid] = stream
        stream.attach(protocol)
        if self.connection.stream_ids_left == 0:
            # A session opens at most 2**30 streams; drain this one so a new one takes over.
            self.go_away("stream ids used up; reconnect")
        self.flush()
        return stream

    def send_control(self, message: dict) -> None:
        self.connection.send_control(message)
        self.flush()

    def go_away(self, message: str = "shutting down") -> None:
        """Drain: no new streams; close once the open ones are done."""
        self.connection.go_away(ErrorCode.NO_ERROR, message)
        self.flush()
        self._close_if_drained()

    def shutdown(self, message: str = "shutting down") -> None:
        """Before our side closes the transport from outside (a service stopping):
        tell the peer why, and stop being the transport's producer, since a TLS
        transport does not close while a producer is registered."""
        if self._ended or self._transport_lost:
            return
        self.connection.go_away(ErrorCode.NO_ERROR, message)
        self._flush_now()
        self.transport.unregisterProducer()

    def terminate(self, code: int, message: str) -> None:
        """End the session at once with an error code; the peer is told why."""
        if self._ended:
            return
        self.connection.go_away(code, message)
        self._flush_now()
        self._session_over(code, message, by_peer=False)
        self._close_transport()

    def stats(self) -> dict:
        """A snapshot for status pages and tests."""
        return {
            "peer": self.peer_name,
            "rtt_ms": None if self.rtt is None else round(self.rtt * 1000, 3),
            "streams": len(self.streams),
            "stream_detail": [
                {
                    "id": s.stream_id,
                    "buffered_inbound": s.buffered_inbound,
                    "buffered_outbound": self.connection.outbound_buffered(s.stream_id),
                    "receive_window": self.connection.receive_window(s.stream_id),
                    "send_window": self.connection.send_window(s.stream_id),
                }
                for s in self.streams.values()
            ],
        }

    # ----------------------------------------------------------- Protocol

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.peer_name = f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"
        set_nodelay = getattr(self.transport, "setTcpNoDelay", None)
        if set_nodelay is not None:
            try:
                set_nodelay(True)
            except (OSError, AttributeError):
                pass
        self.transport.registerProducer(self, True)
        self._handshake_timer = self.reactor.callLater(self.handshake_timeout, self._handshake_expired)
        if self.role is Role.CLIENT:
            self.connection.initiate(self._hello)
            self._hello = None  # holds the secret: keep it no longer than needed
            self.flush()

    def dataReceived(self, data: bytes) -> None:
        self._last_received = self.reactor.seconds()
        self._receiving = True
        try:
            events = self.connection.receive_data(data)
            for event in events:
                self._dispatch(event)
        finally:
            self._receiving = False
        self.flush()

    def connectionLost(self, reason: Failure = error.ConnectionDone) -> None:
        self._transport_lost = True
        self._stop_timers()
        for event in self.connection.connection_lost():
            self._dispatch(event)
        if not self._ended:
            self._session_over(ErrorCode.NO_ERROR, "connection lost", by_peer=True)

    # ----------------------------------------------------------- IPushProducer (the transport's buffer)

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self.flush()

    def stopProducing(self) -> None:
        self._paused = True

    # ----------------------------------------------------------- events

    def _dispatch(self, event: wire.Event) -> None:
        if isinstance(event, wire.DataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.data_received(event.data)
            else:
                self.connection.acknowledge_data(event.stream_id, len(event.data))
        elif isinstance(event, wire.StreamOpened):
            self._stream_opened(event)
        elif isinstance(event, wire.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.ended()
        elif isinstance(event, wire.StreamReset):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.closed(Failure(StreamReset(event.code, event.reason, event.by_peer)))
            elif not event.by_peer:
                self.log.info(
                    "refused stream {sid} from {peer}: {code}: {reason}",
                    sid=event.stream_id,
                    peer=self.peer_name,
                    code=ErrorCode.describe(event.code),
                    reason=event.reason,
                )
        elif isinstance(event, wire.HelloReceived):
            self._hello_received(event)
        elif isinstance(event, wire.HandshakeCompleted):
            self._handshake_done(event.info)
        elif isinstance(event, wire.ControlReceived):
            self.handler.control_received(self, event.message)
        elif isinstance(event, wire.GoAwayReceived):
            self.log.info(
                "{peer} is going away ({code}): {message}",
                peer=self.peer_name,
                code=ErrorCode.describe(event.code),
                message=event.message,
            )
            self._close_if_drained()
        elif isinstance(event, wire.ConnectionTerminated):
            self._session_over(event.code, event.message, event.by_peer)
            if not self._transport_lost:
                self._flush_now()
                self._close_transport()

    def _stream_opened(self, event: wire.StreamOpened) -> None:
        stream = TunnelStream(self, event.stream_id, event.metadata)
        self.streams[event.stream_id] = stream
        try:
            self.handler.stream_opened(self, stream)
        except Refusal as refusal:
            stream.reset(refusal.code, refusal.message)
        except Exception:
            self.log.failure("stream_opened handler failed")
            stream.reset(ErrorCode.INTERNAL_ERROR, "internal error")
        if event.fin and stream.protocol is not None:
            stream.ended()

    def _hello_received(self, event: wire.HelloReceived) -> None:
        d = defer.maybeDeferred(self.handler.hello_received, self, event.hello)

        def accepted(info):
            if self._ended:
                return
            self.connection.accept(info or {})
            self._handshake_done(event.hello)
            self.flush()

        def refused(failure):
            if self._ended:
                return
            if failure.check(Refusal):
                code, message = failure.value.code, failure.value.message
            else:
                self.log.failure("handshake check failed", failure)
                code, message = ErrorCode.INTERNAL_ERROR, "internal error while checking credentials"
            self.connection.reject(code, message)
            self._session_over(code, message, by_peer=False)
            self._flush_now()
            self._close_transport()

        d.addCallbacks(accepted, refused)

    def _handshake_done(self, info: dict) -> None:
        self.info = info
        if self._handshake_timer is not None and self._handshake_timer.active():
            self._handshake_timer.cancel()
        self._keepalive = task.LoopingCall(self._keepalive_tick)
        self._keepalive.clock = self.reactor
        self._keepalive.start(self.ping_interval, now=True)
        self.handler.tunnel_ready(self, info)
        self.ready.callback(self)

    def _handshake_expired(self) -> None:
        self.terminate(
            ErrorCode.PROTOCOL_ERROR, f"handshake not completed within {self.handshake_timeout:g}s"
        )

    def _keepalive_tick(self) -> None:
        if not self.connection.is_open:
            return
        age = self.connection.unanswered_ping_age()
        silent = self.reactor.seconds() - self._last_received
        # A peer that keeps sending is alive even if its answer is queued behind data.
        if age > self.ping_timeout and silent > self.ping_timeout:
            self.log.warn(
                "tunnel peer {peer} answered no ping for {age:.1f}s: declaring it dead",
                peer=self.peer_name,
                age=age,
            )
            self.terminate(ErrorCode.PING_TIMEOUT, f"no answer to pings for {age:.1f}s")
            self.transport.abortConnection()
            return
        self.connection.ping()
        self.flush()

    # ----------------------------------------------------------- output

    def flush(self) -> None:
        """Write what the session has to send, once per reactor turn: the writes of
        many streams in one turn leave as one batch of frames."""
        if self._receiving or self._flush_call is not None:
            return  # dataReceived, or the scheduled call, flushes
        self._flush_call = self.reactor.callLater(0, self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_call = None
        self._flush_now()

    def _flush_now(self) -> None:
        if self._flushing or self.transport is None:
            return
        self._flushing = True
        try:
            connection = self.connection
            # Control frames (pings, window updates, resets) always go, even while
            # the transport is full: they are small, and stalling them would
            # stall every stream's flow control and the keepalive.
            data = connection.data_to_send(0 if self._paused and connection.is_open else FLUSH_CHUNK)
            while data:
                self.transport.write(data)
                if self._paused or not connection.is_open:
                    break
                data = connection.data_to_send(FLUSH_CHUNK)
            self._after_flush()
        finally:
            self._flushing = False

    def _after_flush(self) -> None:
        limit = self.limits.max_send_buffer
        for stream in list(self._waiting_drain):
            buffered = self.connection.outbound_buffered(stream.stream_id)
            if buffered <= limit // 2:
                self._waiting_drain.discard(stream)
            stream.send_buffer_changed(buffered, limit)
        for stream in list(self._closing_streams):
            state = self.connection.stream_state(stream.stream_id)
            if state is StreamState.HALF_CLOSED_LOCAL:
                # Our FIN is out; the application closed fully, so stop the peer too.
                self._closing_streams.discard(stream)
                stream.reset(ErrorCode.CANCEL, "closed by the other side")
            elif state is StreamState.CLOSED:
                self._closing_streams.discard(stream)
                stream.closed(Failure(error.ConnectionDone()))
        for stream in list(self._finishing):
            self._maybe_closed(stream)

    # ----------------------------------------------------------- called by streams

    def stream_wrote(self, stream: TunnelStream) -> None:
        if stream.write_closed:
            self._finishing.add(stream)
        buffered = self.connection.outbound_buffered(stream.stream_id)
        if buffered > self.limits.max_send_buffer:
            self._waiting_drain.add(stream)
            stream.send_buffer_changed(buffered, self.limits.max_send_buffer)
        self.flush()

    def stream_closing(self, stream: TunnelStream) -> None:
        self._closing_streams.add(stream)
        self.flush()

    def stream_read_closed(self, stream: TunnelStream) -> None:
        self._maybe_closed(stream)

    def stream_gone(self, stream: TunnelStream) -> None:
        self.streams.pop(stream.stream_id, None)
        self._closing_streams.discard(stream)
        self._waiting_drain.discard(stream)
        self._finishing.discard(stream)
        self._close_if_drained()

    def _maybe_closed(self, stream: TunnelStream) -> None:
        """Both directions finished cleanly: the stream is done."""
        if stream.disconnected:
            self._finishing.discard(stream)
        elif stream.read_closed and self.connection.stream_state(stream.stream_id) is StreamState.CLOSED:
            stream.closed(Failure(error.ConnectionDone()))

    # ----------------------------------------------------------- teardown

    def _close_if_drained(self) -> None:
        c = self.connection
        if (c.goaway_sent or c.goaway_received) and not self.streams and not self._ended:
            self._session_over(ErrorCode.NO_ERROR, "drained", by_peer=c.goaway_received)
            self._flush_now()
            self._close_transport()

    def _session_over(self, code: int, message: str, by_peer: bool) -> None:
        if self._ended:
            return
        self._ended = True
        self._stop_timers()
        reason = Failure(StreamReset(code or ErrorCode.GOING_AWAY, f"tunnel closed: {message}", by_peer))
        for stream in list(self.streams.values()):
            stream.closed(reason)
        self.streams.clear()
        if code != ErrorCode.NO_ERROR:
            self.log.warn(
                "tunnel with {peer} ended by {who}: {code}: {message}",
                peer=self.peer_name,
                who="peer" if by_peer else "us",
                code=ErrorCode.describe(code),
                message=message,
            )
        self.handler.tunnel_lost(self, code, message)
        if not self.ready.called:
            self.ready.errback(Failure(StreamReset(code, message, by_peer)))
            self.ready.addErrback(lambda _: None)
        self.lost.callback((code, message))

    def _close_transport(self) -> None:
        """Close the transport once what is written is sent. We unregister as its
        producer first: a TLS transport waits for its producer to go away before
        it closes."""
        if self._transport_lost or self.transport is None:
            return
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def _stop_timers(self) -> None:
        if self._keepalive is not None and self._keepalive.running:
            self._keepalive.stop()
        if self._handshake_timer is not None and self._handshake_timer.active():
            self._handshake_timer.cancel()
