"""Limits of a tunnel session, with sane defaults; every one is a setting."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ._errors import ErrorCode, ProtocolError
from ._frames import MAX_PAYLOAD, MAX_WINDOW

#: Peers send round-trip probes at most every 50 ms, plus keepalives.
MIN_PINGS_PER_SECOND = 25

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True, slots=True)
class Limits:
    """What one side of a session accepts and enforces.

    The first three are advertised to the peer in the handshake and bind the
    peer's sending; the others are enforced locally.
    """

    #: Largest DATA or DATAGRAM payload this side accepts.
    max_frame_size: int = 64 * KiB
    #: Receive window each stream starts with (bytes the peer may send unacknowledged).
    initial_window: int = 256 * KiB
    #: Streams the peer may have open at once; more are refused.
    max_concurrent_streams: int = 1024
    #: Ceiling for a stream's window as it grows with the bandwidth-delay product.
    max_window: int = 16 * MiB
    #: Largest payload of any non-data frame (handshake, OPEN metadata, CONTROL, RESET, GOAWAY).
    max_control_size: int = 64 * KiB
    #: Stream opens per second accepted from the peer; above it, opens are refused.
    max_stream_opens_per_second: float = 1000.0
    #: Resets per second accepted from the peer; above it the session ends (rapid reset).
    max_resets_per_second: float = 1000.0
    #: Bytes the local application may queue on one stream before it is asked to pause.
    max_send_buffer: int = 256 * KiB
    #: Total bytes by which one session's streams may grow their windows past
    #: ``initial_window``: with the stream limit, it bounds a tunnel's receive memory.
    max_window_growth: int = 64 * MiB
    #: Pings per second accepted from the peer (each costs an answer); above it the session ends.
    max_pings_per_second: float = 50.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and type(value) is not int:
                raise ValueError(f"limit {f.name} must be an integer")
            if not value > 0:  # also refuses NaN
                raise ValueError(f"limit {f.name} must be positive")
        if not 1024 <= self.max_frame_size <= MAX_PAYLOAD:
            raise ValueError(f"max_frame_size must be between 1024 and {MAX_PAYLOAD}")
        if not 1024 <= self.max_control_size <= MAX_PAYLOAD:
            raise ValueError(f"max_control_size must be between 1024 and {MAX_PAYLOAD}")
        for name in ("max_stream_opens_per_second", "max_resets_per_second"):
            if getattr(self, name) < 1:
                raise ValueError(f"limit {name} must be at least 1")
        if self.max_pings_per_second < MIN_PINGS_PER_SECOND:
            raise ValueError(
                f"limit max_pings_per_second must be at least {MIN_PINGS_PER_SECOND} "
                "(peers probe the round trip up to 20 times a second while data flows)"
            )
        if not self.initial_window <= self.max_window <= MAX_WINDOW:
            raise ValueError("need initial_window <= max_window <= 2**31-1")

    def advertised(self) -> dict[str, int]:
        """The settings sent to the peer in HELLO / WELCOME."""
        return {
            "max_frame_size": self.max_frame_size,
            "initial_window": self.initial_window,
            "max_concurrent_streams": self.max_concurrent_streams,
            "max_control_size": self.max_control_size,
        }

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class PeerSettings:
    """What the peer advertised: the bounds on what we may send it."""

    max_frame_size: int = 64 * KiB
    initial_window: int = 256 * KiB
    max_concurrent_streams: int = 1024
    max_control_size: int = 64 * KiB

    @classmethod
    def from_wire(cls, raw: object) -> PeerSettings:
        """Validate the ``settings`` object of a HELLO or WELCOME."""
        if not isinstance(raw, dict):
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "settings must be a JSON object")
        values = {}
        for f in fields(cls):
            value = raw.get(f.name, getattr(cls(), f.name))
            if type(value) is not int or value <= 0:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, f"setting {f.name} must be a positive integer")
            values[f.name] = value
        for name in ("max_frame_size", "max_control_size"):
            if not 1024 <= values[name] <= MAX_PAYLOAD:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, f"setting {name} out of range")
        if values["initial_window"] > MAX_WINDOW:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "setting initial_window out of range")
        return cls(**values)
