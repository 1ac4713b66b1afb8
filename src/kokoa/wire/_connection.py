"""The tunnel session as a sans-IO state machine.

Feed received bytes to :meth:`Connection.receive_data` and act on the events it
returns; call the ``send_*``/``open_stream`` methods to act; write whatever
:meth:`Connection.data_to_send` returns to the transport. No I/O, no threads:
the clock is injected.
"""

from __future__ import annotations

import enum
import itertools
import time
from collections import deque
from collections.abc import Callable

from . import _events as ev
from ._errors import ErrorCode, ProtocolError
from ._frames import (
    FLAG_ACK,
    FLAG_FIN,
    HEADER,
    MAX_STREAM_ID,
    MAX_WINDOW,
    PREFACE,
    SESSION_TYPES,
    FrameDecoder,
    FrameType,
    decode_goaway,
    decode_json,
    decode_reset,
    decode_u32,
    encode_frame,
    encode_goaway,
    encode_json,
    encode_reset,
    encode_u32,
)
from ._ratelimit import TokenBucket
from ._settings import Limits, PeerSettings
from ._streams import Action, StreamInput, StreamState, transition

#: Protocol versions this implementation speaks, oldest first.
SUPPORTED_VERSIONS = (1,)
#: The version carried in the header of the handshake frames, forever.
HANDSHAKE_VERSION = 1

_MAX_REASON = 512  # bytes of a reset reason or go-away message that we send
#: Seconds between the round-trip probes sent along with window updates.
RTT_PROBE_INTERVAL = 0.05


class Role(enum.Enum):
    CLIENT = "client"  # dials, sends the preface, opens odd streams
    SERVER = "server"  # accepts, opens even streams


class SessionState(enum.Enum):
    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSED = "closed"


class _Stream:
    __slots__ = (
        "consumed",
        "fin_queued",
        "last_update",
        "outbound",
        "outbound_bytes",
        "recv_credit",
        "recv_window",
        "send_window",
        "state",
        "stream_id",
    )

    def __init__(self, stream_id: int, send_window: int, recv_window: int) -> None:
        self.stream_id = stream_id
        self.state = StreamState.IDLE
        self.send_window = send_window  # bytes the peer lets us send
        self.recv_window = recv_window  # the window we grant (grows with the BDP)
        self.recv_credit = recv_window  # bytes the peer may still send before an update
        self.consumed = 0  # acknowledged by the application, not yet credited
        self.last_update: float | None = None
        self.outbound: deque[memoryview] = deque()
        self.outbound_bytes = 0
        self.fin_queued = False

    def sendable(self) -> bool:
        return (self.outbound_bytes > 0 and self.send_window > 0) or (
            self.fin_queued and self.outbound_bytes == 0
        )


class Connection:
    """One side of a tunnel session."""

    def __init__(
        self,
        role: Role,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.monotonic,
        versions: tuple[int, ...] = SUPPORTED_VERSIONS,
    ) -> None:
        self.role = role
        self.limits = limits or Limits()
        self.clock = clock
        self.versions = versions
        self.state = SessionState.HANDSHAKE
        self.version: int | None = None
        self.peer = PeerSettings()
        self.rtt: float | None = None  # the latest round-trip sample
        self.srtt: float | None = None  # smoothed round-trip time (as TCP's SRTT)
        self._last_probe = float("-inf")
        self._window_growth = 0  # sum over streams of recv_window - initial_window
        self.close_code: int | None = None
        self.close_message = ""
        self._decoder = FrameDecoder(self.limits.max_frame_size, self.limits.max_control_size)
        self._preface_pending = role is Role.SERVER
        self._preface_buf = b""
        self._hello_pending = False  # server: HELLO seen, accept()/reject() not yet called
        self._hello_sent = False
        self._out: list[bytes] = []
        self._streams: dict[int, _Stream] = {}
        self._ready: deque[int] = deque()  # streams with sendable data, in turn order
        self._ready_set: set[int] = set()  # the same ids, for membership tests
        self._next_local_id = 1 if role is Role.CLIENT else 2
        self._highest_peer_id = 0
        self._peer_open_count = 0
        self._local_open_count = 0
        self._ping_ids = itertools.count(1)
        self._pings: dict[bytes, float] = {}
        self.goaway_sent = False
        self.goaway_received = False
        self._peer_last_stream_id = MAX_STREAM_ID
        self._opens = TokenBucket(
            self.limits.max_stream_opens_per_second, self.limits.max_stream_opens_per_second, clock
        )
        self._resets = TokenBucket(
            self.limits.max_resets_per_second, self.limits.max_resets_per_second, clock
        )
        self._pings_in = TokenBucket(
            self.limits.max_pings_per_second, self.limits.max_pings_per_second, clock
        )

    # ------------------------------------------------------------------ handshake

    def initiate(self, hello: dict | None = None) -> None:
        """Client: queue the preface and HELLO (``hello`` carries credentials)."""
        if self.role is not Role.CLIENT or self._hello_sent:
            raise ProtocolError(ErrorCode.INTERNAL_ERROR, "initiate() is for a new client")
        body = dict(hello or {})
        body["versions"] = list(self.versions)
        body["settings"] = self.limits.advertised()
        self._out.append(PREFACE)
        self._queue_control(FrameType.HELLO, 0, encode_json(body), HANDSHAKE_VERSION)
        self._hello_sent = True

    def accept(self, info: dict | None = None) -> None:
        """Server: complete the handshake that HelloReceived announced."""
        if not self._hello_pending:
            raise ProtocolError(ErrorCode.INTERNAL_ERROR, "no HELLO to accept")
        self._hello_pending = False
        body = dict(info or {})
        body["version"] = self.version
        body["settings"] = self.limits.advertised()
        self._queue_control(FrameType.WELCOME, 0, encode_json(body), HANDSHAKE_VERSION)
        self.state = SessionState.OPEN

    def reject(self, code: ErrorCode | int, message: str) -> None:
        """Server: refuse the HELLO; the session ends with ``code`` and ``message``."""
        if not self._hello_pending:
            raise ProtocolError(ErrorCode.INTERNAL_ERROR, "no HELLO to reject")
        self._hello_pending = False
        self._terminate(code, message, send=True)

    # ------------------------------------------------------------------ streams

    @property
    def is_open(self) -> bool:
        return self.state is SessionState.OPEN

    @property
    def can_open_stream(self) -> bool:
        return (
            self.is_open
            and not self.goaway_sent
            and not self.goaway_received
            and self._local_open_count < self.peer.max_concurrent_streams
            and self._next_local_id <= MAX_STREAM_ID
        )

    @property
    def stream_ids_left(self) -> int:
        """How many more streams this side can ever open in this session."""
        return max(0, (MAX_STREAM_ID - self._next_local_id) // 2 + 1)

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def stream_state(self, stream_id: int) -> StreamState:
        stream = self._streams.get(stream_id)
        if stream is not None:
            return stream.state
        return StreamState.CLOSED if self._was_opened(stream_id) else StreamState.IDLE

    def open_stream(self, metadata: dict, fin: bool = False) -> int:
        """Open a stream carrying ``metadata``; returns its id."""
        self._require_open()
        if self.goaway_sent or self.goaway_received:
            raise ProtocolError(ErrorCode.GOING_AWAY, "session is draining")
        if self._local_open_count >= self.peer.max_concurrent_streams:
            raise ProtocolError(
                ErrorCode.REFUSED_STREAM,
                f"peer allows {self.peer.max_concurrent_streams} concurrent streams",
            )
        if self._next_local_id > MAX_STREAM_ID:
            raise ProtocolError(ErrorCode.REFUSED_STREAM, "stream ids exhausted")
        payload = encode_json(metadata)
        self._check_control_size(payload, "OPEN metadata")
        sid = self._next_local_id
        self._next_local_id += 2
        stream = _Stream(sid, self.peer.initial_window, self.limits.initial_window)
        self._streams[sid] = stream
        self._local_open_count += 1
        self._step(stream, StreamInput.SEND_OPEN)
        self._queue_control(FrameType.OPEN, sid, payload, flags=FLAG_FIN if fin else 0)
        if fin:
            self._step(stream, StreamInput.SEND_FIN)
        return sid

    def send_data(self, stream_id: int, data: bytes, fin: bool = False) -> None:
        """Queue stream data; it leaves as the peer's window allows."""
        stream = self._stream_for_send(stream_id)
        if data:
            if stream.fin_queued:
                raise ProtocolError(ErrorCode.STREAM_CLOSED, f"stream {stream_id} already ended")
            self._step(stream, StreamInput.SEND_DATA)
            stream.outbound.append(memoryview(bytes(data)))
            stream.outbound_bytes += len(data)
        if fin:
            self.end_stream(stream_id)
        else:
            self._mark_ready(stream)

    def end_stream(self, stream_id: int) -> None:
        """Half-close: we send no more data on this stream (after what is queued)."""
        stream = self._stream_for_send(stream_id)
        if stream.fin_queued:
            raise ProtocolError(ErrorCode.STREAM_CLOSED, f"stream {stream_id} already ended")
        if stream.state not in (StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE):
            self._step(stream, StreamInput.SEND_FIN)  # raises
        stream.fin_queued = True
        self._mark_ready(stream)

    def reset_stream(self, stream_id: int, code: ErrorCode | int, reason: str = "") -> None:
        """Abort a stream in both directions; queued outbound data is dropped."""
        if self.state is not SessionState.OPEN:
            return  # the session is over: every stream is gone already
        stream = self._streams.get(stream_id)
        if stream is None:
            if not self._was_opened(stream_id):
                raise ProtocolError(ErrorCode.STREAM_CLOSED, f"stream {stream_id} was never opened")
            return  # already gone: resetting twice is harmless
        self._step(stream, StreamInput.SEND_RESET)
        self._queue_control(FrameType.RESET, stream_id, encode_reset(code, _clip(reason)))
        self._forget(stream)

    def acknowledge_data(self, stream_id: int, size: int) -> None:
        """The application consumed ``size`` bytes of the stream: credit the peer."""
        stream = self._streams.get(stream_id)
        if stream is None or size <= 0 or self.state is SessionState.CLOSED:
            return
        unacknowledged = stream.recv_window - stream.recv_credit - stream.consumed
        if size > unacknowledged:
            raise ProtocolError(
                ErrorCode.FLOW_CONTROL_ERROR,
                f"acknowledged {size} bytes on stream {stream_id}, only {unacknowledged} are unacknowledged",
            )
        stream.consumed += size
        if stream.state in (StreamState.HALF_CLOSED_REMOTE, StreamState.CLOSED):
            return  # the peer sends no more: no credit needed
        if stream.consumed < stream.recv_window // 2:
            return
        now = self.clock()
        increment = stream.consumed
        # Grow the window while updates come faster than two round trips apart:
        # the window, not the link, is then the bottleneck. A slow reader
        # acknowledges slowly and so never grows its window.
        if (
            self.srtt is not None
            and stream.last_update is not None
            and now - stream.last_update < 2 * self.srtt
            and stream.recv_window < self.limits.max_window
        ):
            grown = min(stream.recv_window * 2, self.limits.max_window)
            if self._window_growth + grown - stream.recv_window <= self.limits.max_window_growth:
                self._window_growth += grown - stream.recv_window
                increment += grown - stream.recv_window
                stream.recv_window = grown
        stream.last_update = now
        stream.consumed = 0
        stream.recv_credit += increment
        self._queue_control(FrameType.WINDOW_UPDATE, stream_id, encode_u32(increment))
        # Keep the round-trip estimate current while data flows (it grows under load).
        if not self._pings and now - self._last_probe >= RTT_PROBE_INTERVAL:
            self._last_probe = now
            self.ping()

    def outbound_buffered(self, stream_id: int) -> int:
        """Bytes queued on the stream and not yet handed to data_to_send()."""
        stream = self._streams.get(stream_id)
        return stream.outbound_bytes if stream else 0

    def send_window(self, stream_id: int) -> int:
        stream = self._streams.get(stream_id)
        return stream.send_window if stream else 0

    def receive_window(self, stream_id: int) -> int:
        """The window currently granted to the peer on this stream."""
        stream = self._streams.get(stream_id)
        return stream.recv_window if stream else 0

    def send_datagram(self, stream_id: int, data: bytes) -> None:
        """One unreliable datagram on a stream (UDP); not flow controlled."""
        stream = self._stream_for_send(stream_id)
        if len(data) > self.peer.max_frame_size:
            raise ProtocolError(
                ErrorCode.FRAME_TOO_LARGE,
                f"datagram of {len(data)} bytes exceeds peer max_frame_size {self.peer.max_frame_size}",
            )
        if stream.state is StreamState.CLOSED:
            raise ProtocolError(ErrorCode.STREAM_CLOSED, f"stream {stream_id} is closed")
        self._queue_control(FrameType.DATAGRAM, stream_id, bytes(data))

    # ------------------------------------------------------------------ session

    def send_control(self, message: dict) -> None:
        """A control message on stream 0 (config push, health report ...)."""
        self._require_open()
        payload = encode_json(message)
        self._check_control_size(payload, "control message")
        self._queue_control(FrameType.CONTROL, 0, payload)

    def ping(self) -> bytes:
        """Send a ping; PingAcknowledged reports the round-trip time."""
        self._require_open()
        opaque = next(self._ping_ids).to_bytes(8, "big")
        self._pings[opaque] = self.clock()
        self._queue_control(FrameType.PING, 0, opaque)
        return opaque

    def unanswered_ping_age(self) -> float:
        """Seconds since the oldest ping still waiting for its answer (0 if none)."""
        if not self._pings:
            return 0.0
        return self.clock() - min(self._pings.values())

    def go_away(self, code: ErrorCode | int = ErrorCode.NO_ERROR, message: str = "") -> None:
        """Drain (NO_ERROR: streams already open finish) or end the session with an error."""
        if self.state is SessionState.CLOSED:
            return
        if code == ErrorCode.NO_ERROR and self.state is SessionState.OPEN:
            if not self.goaway_sent:
                self.goaway_sent = True
                payload = encode_goaway(self._highest_peer_id, code, _clip(message))
                self._queue_control(FrameType.GOAWAY, 0, payload)
            return
        self._terminate(code, message, send=True)

    def data_to_send(self, limit: int | None = None) -> bytes:
        """Bytes to write to the transport: control frames first, then stream data
        round-robin, one frame per stream per turn, as windows allow.

        ``limit`` bounds the stream data taken in this call (control frames always go).
        """
        out = self._out
        self._out = []
        if self.state is SessionState.OPEN:
            budget = limit if limit is not None else 1 << 62
            ready = self._ready
            version = self.version
            max_frame = self.peer.max_frame_size
            ready_set = self._ready_set
            while ready and budget > 0:
                sid = ready.popleft()
                ready_set.discard(sid)
                stream = self._streams.get(sid)
                if stream is None or not stream.sendable():
                    continue
                parts, size = _take(stream, min(stream.send_window, max_frame, budget))
                stream.send_window -= size
                budget -= size
                flags = 0
                if stream.fin_queued and stream.outbound_bytes == 0:
                    flags = FLAG_FIN
                    stream.fin_queued = False
                    self._step(stream, StreamInput.SEND_FIN)
                out.append(HEADER.pack(version, FrameType.DATA, flags, sid, size))
                out.extend(parts)
                if flags and stream.state is StreamState.CLOSED:
                    self._forget(stream)
                elif stream.sendable():
                    ready.append(sid)
                    ready_set.add(sid)
        return b"".join(out)

    @property
    def has_data_to_send(self) -> bool:
        return bool(self._out) or (self.state is SessionState.OPEN and bool(self._ready))

    # ------------------------------------------------------------------ receiving

    def receive_data(self, data: bytes) -> list[ev.Event]:
        """Feed bytes from the transport; returns what happened.

        Malformed input never raises: it ends the session, and the last event is
        a ConnectionTerminated carrying the error (a GOAWAY saying it is queued).
        """
        events: list[ev.Event] = []
        if self.state is SessionState.CLOSED:
            return events
        try:
            if self._preface_pending:
                data = self._receive_preface(data)
            for frame in self._decoder.feed(data):
                self._handle_frame(frame, events)
                if self.state is SessionState.CLOSED:
                    break
        except ProtocolError as e:
            events.append(self._terminate(e.code, e.message, send=True))
        return events

    def connection_lost(self) -> list[ev.Event]:
        """The transport is gone: every stream is reset."""
        events: list[ev.Event] = []
        if self.state is not SessionState.CLOSED:
            events.append(self._terminate(ErrorCode.NO_ERROR, "connection lost", send=False, by_peer=True))
        return events

    def _receive_preface(self, data: bytes) -> bytes:
        pending = self._preface_buf + data
        if len(pending) < len(PREFACE):
            if not PREFACE.startswith(pending):
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "not a Kokoa tunnel client (bad preface)")
            self._preface_buf = pending
            return b""
        if not pending.startswith(PREFACE):
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "not a Kokoa tunnel client (bad preface)")
        self._preface_pending = False
        self._preface_buf = b""
        return pending[len(PREFACE) :]

    def _handle_frame(self, frame, events: list[ev.Event]) -> None:
        ftype = frame.type
        if self.state is SessionState.HANDSHAKE:
            self._handle_handshake_frame(frame, events)
            return
        if frame.version != self.version:
            raise ProtocolError(
                ErrorCode.PROTOCOL_ERROR,
                f"frame version {frame.version} but session version {self.version}",
            )
        sid = frame.stream_id
        if ftype in SESSION_TYPES:
            if sid != 0:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, f"{FrameType(ftype).name} on stream {sid}")
        elif ftype in _STREAM_TYPES and sid == 0:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, f"{FrameType(ftype).name} on stream 0")
        if ftype == FrameType.DATA:
            self._on_data(frame, events)
        elif ftype == FrameType.WINDOW_UPDATE:
            self._on_window_update(frame)
        elif ftype == FrameType.OPEN:
            self._on_open(frame, events)
        elif ftype == FrameType.RESET:
            self._on_reset(frame, events)
        elif ftype == FrameType.PING:
            self._on_ping(frame, events)
        elif ftype == FrameType.CONTROL:
            events.append(ev.ControlReceived(decode_json(frame.payload, "CONTROL")))
        elif ftype == FrameType.DATAGRAM:
            stream = self._peer_stream(sid)
            if stream is not None and stream.state is not StreamState.CLOSED:
                events.append(ev.DatagramReceived(sid, frame.payload))
        elif ftype == FrameType.GOAWAY:
            self._on_goaway(frame, events)
        elif ftype in (FrameType.HELLO, FrameType.WELCOME):
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, f"{FrameType(ftype).name} after the handshake")
        # Unknown frame types are ignored: room for extensions.

    def _handle_handshake_frame(self, frame, events: list[ev.Event]) -> None:
        ftype = frame.type
        if frame.version != HANDSHAKE_VERSION or frame.stream_id != 0:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "malformed handshake frame")
        if ftype == FrameType.GOAWAY:
            _, code, message = decode_goaway(frame.payload)
            events.append(self._terminate(code, message, send=False, by_peer=True))
            return
        if self.role is Role.SERVER:
            if ftype != FrameType.HELLO or self._hello_pending:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "expected HELLO before anything else")
            hello = decode_json(frame.payload, "HELLO")
            offered = hello.get("versions")
            if not isinstance(offered, list) or not all(type(v) is int for v in offered):
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "HELLO versions must be a list of integers")
            common = set(offered) & set(self.versions)
            if not common:
                raise ProtocolError(
                    ErrorCode.UNSUPPORTED_VERSION,
                    f"this gateway speaks protocol versions {list(self.versions)}, "
                    f"the edge offered {offered}: upgrade the older side",
                )
            self.peer = PeerSettings.from_wire(hello.get("settings", {}))
            self.version = max(common)
            self._hello_pending = True
            events.append(ev.HelloReceived(self.version, hello))
            return
        if ftype != FrameType.WELCOME or not self._hello_sent:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "expected WELCOME or GOAWAY")
        welcome = decode_json(frame.payload, "WELCOME")
        version = welcome.get("version")
        if type(version) is not int or version not in self.versions:
            raise ProtocolError(ErrorCode.UNSUPPORTED_VERSION, f"gateway chose unknown version {version!r}")
        self.peer = PeerSettings.from_wire(welcome.get("settings", {}))
        self.version = version
        self.state = SessionState.OPEN
        events.append(ev.HandshakeCompleted(version, welcome))

    def _on_data(self, frame, events: list[ev.Event]) -> None:
        stream = self._peer_stream(frame.stream_id)
        fin = bool(frame.flags & FLAG_FIN)
        if stream is None:
            return  # closed already: frames in flight are dropped
        size = len(frame.payload)
        if size:
            if not self._step_peer(stream, StreamInput.RECV_DATA, events):
                return
            stream.recv_credit -= size
            if stream.recv_credit < 0:
                raise ProtocolError(
                    ErrorCode.FLOW_CONTROL_ERROR,
                    f"stream {stream.stream_id} exceeded its window of {stream.recv_window} bytes",
                )
            events.append(ev.DataReceived(stream.stream_id, frame.payload))
        if fin:
            self._on_fin(stream, events)

    def _on_fin(self, stream: _Stream, events: list[ev.Event]) -> None:
        if not self._step_peer(stream, StreamInput.RECV_FIN, events):
            return
        events.append(ev.StreamEnded(stream.stream_id))
        if stream.state is StreamState.CLOSED:
            self._forget(stream)

    def _on_open(self, frame, events: list[ev.Event]) -> None:
        sid = frame.stream_id
        if self._is_local_id(sid):
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, f"peer opened stream {sid} of our parity")
        if sid <= self._highest_peer_id or sid > MAX_STREAM_ID:
            raise ProtocolError(
                ErrorCode.PROTOCOL_ERROR, f"stream id {sid} reused, not increasing or too large"
            )
        self._highest_peer_id = sid
        metadata = decode_json(frame.payload, "OPEN metadata")
        fin = bool(frame.flags & FLAG_FIN)
        refusal = None
        if self.goaway_sent:
            refusal = (ErrorCode.REFUSED_STREAM, "session is draining (go-away sent)")
        elif self._peer_open_count >= self.limits.max_concurrent_streams:
            refusal = (
                ErrorCode.REFUSED_STREAM,
                f"stream table full ({self.limits.max_concurrent_streams} streams)",
            )
        elif not self._opens.take():
            refusal = (
                ErrorCode.RATE_LIMITED,
                f"more than {self.limits.max_stream_opens_per_second:g} stream opens per second",
            )
        if refusal is not None:
            code, reason = refusal
            self._queue_control(FrameType.RESET, sid, encode_reset(code, reason))
            events.append(ev.StreamReset(sid, code, reason, by_peer=False))
            return
        stream = _Stream(sid, self.peer.initial_window, self.limits.initial_window)
        self._streams[sid] = stream
        self._peer_open_count += 1
        self._step(stream, StreamInput.RECV_OPEN)
        events.append(ev.StreamOpened(sid, metadata, fin))
        if fin:
            self._on_fin(stream, events)

    def _on_reset(self, frame, events: list[ev.Event]) -> None:
        code, reason = decode_reset(frame.payload)
        if not self._resets.take():
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"more than {self.limits.max_resets_per_second:g} stream resets per second",
            )
        stream = self._peer_stream(frame.stream_id)
        if stream is None:
            return
        self._step(stream, StreamInput.RECV_RESET)
        self._forget(stream)
        events.append(ev.StreamReset(stream.stream_id, code, reason, by_peer=True))

    def _on_window_update(self, frame) -> None:
        increment = decode_u32(frame.payload, "WINDOW_UPDATE")
        if increment == 0:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
        stream = self._peer_stream(frame.stream_id)
        if stream is None:
            return
        stream.send_window += increment
        if stream.send_window > MAX_WINDOW:
            raise ProtocolError(ErrorCode.FLOW_CONTROL_ERROR, f"stream {stream.stream_id} window overflow")
        self._mark_ready(stream)

    def _on_ping(self, frame, events: list[ev.Event]) -> None:
        if len(frame.payload) != 8:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "PING payload must be 8 bytes")
        if frame.flags & FLAG_ACK:
            sent = self._pings.pop(frame.payload, None)
            if sent is not None:
                self.rtt = self.clock() - sent
                self.srtt = self.rtt if self.srtt is None else 0.875 * self.srtt + 0.125 * self.rtt
                events.append(ev.PingAcknowledged(self.rtt))
        else:
            if not self._pings_in.take():
                raise ProtocolError(
                    ErrorCode.RATE_LIMITED,
                    f"more than {self.limits.max_pings_per_second:g} pings per second",
                )
            self._queue_control(FrameType.PING, 0, frame.payload, flags=FLAG_ACK)

    def _on_goaway(self, frame, events: list[ev.Event]) -> None:
        last, code, message = decode_goaway(frame.payload)
        self.goaway_received = True
        self._peer_last_stream_id = min(self._peer_last_stream_id, last)
        events.append(ev.GoAwayReceived(last, code, message))
        if code != ErrorCode.NO_ERROR:
            events.append(self._terminate(code, message, send=False, by_peer=True))
            return
        # Streams we opened above ``last`` were never seen by the peer.
        for stream in [s for s in self._streams.values() if self._is_local_id(s.stream_id)]:
            if stream.stream_id > last:
                self._forget(stream)
                events.append(
                    ev.StreamReset(stream.stream_id, ErrorCode.REFUSED_STREAM, "peer is going away", False)
                )

    # ------------------------------------------------------------------ helpers

    def _is_local_id(self, sid: int) -> bool:
        return (sid % 2 == 1) == (self.role is Role.CLIENT)

    def _peer_stream(self, sid: int) -> _Stream | None:
        """The stream a peer frame names; None if it was closed; error if never opened."""
        stream = self._streams.get(sid)
        if stream is not None:
            return stream
        if not self._was_opened(sid):
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, f"frame for stream {sid}, which was never opened")
        return None

    def _was_opened(self, sid: int) -> bool:
        """Whether ``sid`` left the idle state (ids are used in increasing order)."""
        return sid < self._next_local_id if self._is_local_id(sid) else sid <= self._highest_peer_id

    def _step(self, stream: _Stream, inp: StreamInput) -> None:
        """A local transition: misuse raises ProtocolError to the caller."""
        new_state, action = transition(stream.state, inp)
        if action is Action.LOCAL_ERROR:
            raise ProtocolError(
                ErrorCode.STREAM_CLOSED,
                f"cannot {inp.value} on stream {stream.stream_id} ({stream.state.value})",
            )
        stream.state = new_state

    def _step_peer(self, stream: _Stream, inp: StreamInput, events: list[ev.Event]) -> bool:
        """A transition caused by the peer; False if the frame is to be dropped."""
        new_state, action = transition(stream.state, inp)
        if action is Action.CONNECTION_ERROR:
            raise ProtocolError(
                ErrorCode.PROTOCOL_ERROR,
                f"{inp.value} on stream {stream.stream_id} ({stream.state.value})",
            )
        if action is Action.STREAM_ERROR:
            reason = f"{inp.value} after the peer's FIN"
            self._queue_control(
                FrameType.RESET, stream.stream_id, encode_reset(ErrorCode.STREAM_CLOSED, reason)
            )
            self._forget(stream)
            events.append(ev.StreamReset(stream.stream_id, ErrorCode.STREAM_CLOSED, reason, by_peer=False))
            return False
        if action is Action.IGNORE:
            return False
        stream.state = new_state
        return True

    def _stream_for_send(self, stream_id: int) -> _Stream:
        self._require_open()
        stream = self._streams.get(stream_id)
        if stream is None:
            raise ProtocolError(ErrorCode.STREAM_CLOSED, f"stream {stream_id} is closed")
        return stream

    def _mark_ready(self, stream: _Stream) -> None:
        if stream.sendable() and stream.stream_id not in self._ready_set:
            self._ready.append(stream.stream_id)
            self._ready_set.add(stream.stream_id)

    def _forget(self, stream: _Stream) -> None:
        stream.state = StreamState.CLOSED
        if self._streams.pop(stream.stream_id, None) is not None:
            self._window_growth -= stream.recv_window - self.limits.initial_window
            if self._is_local_id(stream.stream_id):
                self._local_open_count -= 1
            else:
                self._peer_open_count -= 1
        stream.outbound.clear()
        stream.outbound_bytes = 0

    def _queue_control(
        self, ftype: FrameType, sid: int, payload: bytes, version: int | None = None, flags: int = 0
    ) -> None:
        self._out.append(
            encode_frame(version or self.version or HANDSHAKE_VERSION, ftype, flags, sid, payload)
        )

    def _check_control_size(self, payload: bytes, what: str) -> None:
        """Refuse to send what the peer would refuse to receive."""
        limit = self.peer.max_control_size
        if len(payload) > limit:
            raise ProtocolError(
                ErrorCode.CONTROL_TOO_LARGE,
                f"{what} of {len(payload)} bytes exceeds the peer's max_control_size {limit}",
            )

    def _require_open(self) -> None:
        if self.state is not SessionState.OPEN:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, f"session is {self.state.value}")

    def _terminate(
        self, code: int, message: str, send: bool, by_peer: bool = False
    ) -> ev.ConnectionTerminated:
        if send:
            # Until the handshake is over the peer reads only HANDSHAKE_VERSION frames.
            in_handshake = self.state is SessionState.HANDSHAKE
            self._out.append(
                encode_frame(
                    HANDSHAKE_VERSION if in_handshake else self.version or HANDSHAKE_VERSION,
                    FrameType.GOAWAY,
                    0,
                    0,
                    encode_goaway(self._highest_peer_id, int(code), _clip(message)),
                )
            )
        self.state = SessionState.CLOSED
        self.close_code = int(code)
        self.close_message = message
        for stream in list(self._streams.values()):
            self._forget(stream)
        self._ready.clear()
        self._ready_set.clear()
        self._hello_pending = False
        return ev.ConnectionTerminated(int(code), message, by_peer)


_STREAM_TYPES = frozenset(
    {FrameType.OPEN, FrameType.DATA, FrameType.WINDOW_UPDATE, FrameType.RESET, FrameType.DATAGRAM}
)


def _take(stream: _Stream, size: int) -> tuple[list[memoryview], int]:
    """Remove up to ``size`` bytes from the stream's outbound queue, without copying."""
    queue = stream.outbound
    parts = []
    remaining = size
    while queue and remaining:
        chunk = queue[0]
        if len(chunk) <= remaining:
            parts.append(queue.popleft())
            remaining -= len(chunk)
        else:
            parts.append(chunk[:remaining])
            queue[0] = chunk[remaining:]
            remaining = 0
    taken = size - remaining
    stream.outbound_bytes -= taken
    return parts, taken


def _clip(text: str) -> str:
    raw = text.encode("utf-8")[:_MAX_REASON]
    return raw.decode("utf-8", "ignore")
