"""Error codes carried on the wire, and the one exception type of the protocol."""

from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    """Why a stream was reset or a session ended (uint16 on the wire)."""

    NO_ERROR = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2
    FLOW_CONTROL_ERROR = 3
    FRAME_TOO_LARGE = 4
    UNSUPPORTED_VERSION = 5
    AUTH_FAILED = 6
    REFUSED_STREAM = 7
    RATE_LIMITED = 8
    UNKNOWN_TARGET = 9
    CONNECT_REFUSED = 10
    CONNECT_TIMEOUT = 11
    CANCEL = 12
    GOING_AWAY = 13
    PING_TIMEOUT = 14
    CONTROL_TOO_LARGE = 15
    SITE_DISABLED = 16
    TARGET_UNREACHABLE = 17
    STREAM_CLOSED = 18
    TOO_MANY_TUNNELS = 19

    @classmethod
    def describe(cls, code: int) -> str:
        """The code's name, or ``UNKNOWN(n)`` for a code this version does not know."""
        try:
            return cls(code).name
        except ValueError:
            return f"UNKNOWN({code})"


class ProtocolError(Exception):
    """The protocol's single error type.

    Raised for local misuse of the API (sending on a closed stream, exceeding a
    window) and used internally for malformed input, which ends the session with
    ``code`` and ``message``.
    """

    def __init__(self, code: ErrorCode | int, message: str) -> None:
        super().__init__(f"{ErrorCode.describe(code)}: {message}")
        self.code = int(code)
        self.message = message
