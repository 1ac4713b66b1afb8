"""Frame layout: a fixed 12-byte header and a typed payload.

    0       1       2       4               8               12
    +-------+-------+-------+---------------+---------------+--------
    |version| type  | flags |   stream id   |    length     | payload
    +-------+-------+-------+---------------+---------------+--------

All integers are big-endian. The header's layout never changes between
protocol versions, so a peer can always read a frame it does not understand.
"""

from __future__ import annotations

import enum
import json
import struct
from dataclasses import dataclass

from ._errors import ErrorCode, ProtocolError

#: Sent by the connecting side (the edge) before its first frame.
PREFACE = b"\x89KOKOA\r\n"

HEADER = struct.Struct(">BBHII")
HEADER_SIZE = HEADER.size  # 12

MAX_STREAM_ID = 2**31 - 1
MAX_WINDOW = 2**31 - 1
MAX_PAYLOAD = 2**24 - 1  # hard ceiling, whatever the settings say

FLAG_FIN = 0x1  # DATA, OPEN: no more data from the sender on this stream
FLAG_ACK = 0x1  # PING: this is the answer to a ping

_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_GOAWAY = struct.Struct(">IH")


class FrameType(enum.IntEnum):
    HELLO = 0x01
    WELCOME = 0x02
    OPEN = 0x03
    DATA = 0x04
    WINDOW_UPDATE = 0x05
    RESET = 0x06
    PING = 0x07
    GOAWAY = 0x08
    CONTROL = 0x09
    DATAGRAM = 0x0A


#: Frame types whose payload is data, bounded by ``max_frame_size``; every other
#: type is a control frame, bounded by ``max_control_size``.
DATA_TYPES = frozenset({FrameType.DATA, FrameType.DATAGRAM})
#: Frame types that belong to stream 0 (the session's control channel).
SESSION_TYPES = frozenset(
    {FrameType.HELLO, FrameType.WELCOME, FrameType.PING, FrameType.GOAWAY, FrameType.CONTROL}
)


@dataclass(frozen=True, slots=True)
class Frame:
    version: int
    type: int
    flags: int
    stream_id: int
    payload: bytes


def encode_frame(version: int, ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """Serialize one frame."""
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, f"payload of {len(payload)} bytes")
    return HEADER.pack(version, ftype, flags, stream_id, len(payload)) + payload


def encode_json(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def decode_json(payload: bytes, what: str) -> dict:
    """Decode a control payload that must be a JSON object."""
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ProtocolError(ErrorCode.PROTOCOL_ERROR, f"{what} is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.PROTOCOL_ERROR, f"{what} must be a JSON object")
    return obj


def encode_u32(value: int) -> bytes:
    return _U32.pack(value)


def decode_u32(payload: bytes, what: str) -> int:
    if len(payload) != 4:
        raise ProtocolError(ErrorCode.PROTOCOL_ERROR, f"{what} payload must be 4 bytes")
    return _U32.unpack(payload)[0]


def encode_reset(code: int, reason: str) -> bytes:
    return _U16.pack(code) + reason.encode("utf-8")


def decode_reset(payload: bytes) -> tuple[int, str]:
    if len(payload) < 2:
        raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "RESET payload shorter than 2 bytes")
    return _U16.unpack_from(payload)[0], _text(payload[2:], "RESET reason")


def encode_goaway(last_stream_id: int, code: int, message: str) -> bytes:
    return _GOAWAY.pack(last_stream_id, code) + message.encode("utf-8")


def decode_goaway(payload: bytes) -> tuple[int, int, str]:
    if len(payload) < _GOAWAY.size:
        raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "GOAWAY payload shorter than 6 bytes")
    last, code = _GOAWAY.unpack_from(payload)
    return last, code, _text(payload[_GOAWAY.size :], "GOAWAY message")


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(ErrorCode.PROTOCOL_ERROR, f"{what} is not UTF-8") from None


class FrameDecoder:
    """Cut a byte stream into frames, never buffering more than one frame.

    The declared length is checked against the limits as soon as the header is
    complete, so an oversized frame is refused before its payload is buffered.
    """

    def __init__(self, max_frame_size: int, max_control_size: int) -> None:
        self.max_frame_size = max_frame_size
        self.max_control_size = max_control_size
        self._buffer = bytearray()
        self._header: tuple[int, int, int, int, int] | None = None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes; return the frames now complete. Raises ProtocolError."""
        self._buffer += data
        frames = []
        buf = self._buffer
        pos = 0
        while True:
            if self._header is None:
                if len(buf) - pos < HEADER_SIZE:
                    break
                header = HEADER.unpack_from(buf, pos)
                pos += HEADER_SIZE
                try:
                    self._check_length(header[1], header[4])
                except ProtocolError:
                    buf.clear()  # the stream is unusable: keep none of it
                    raise
                self._header = header
            version, ftype, flags, stream_id, length = self._header
            if len(buf) - pos < length:
                break
            frames.append(Frame(version, ftype, flags, stream_id, bytes(buf[pos : pos + length])))
            pos += length
            self._header = None
        if pos:
            del buf[:pos]
        return frames

    def _check_length(self, ftype: int, length: int) -> None:
        if ftype in DATA_TYPES:
            if length > self.max_frame_size:
                raise ProtocolError(
                    ErrorCode.FRAME_TOO_LARGE,
                    f"{FrameType(ftype).name} frame of {length} bytes exceeds "
                    f"max_frame_size {self.max_frame_size}",
                )
        elif length > self.max_control_size:
            raise ProtocolError(
                ErrorCode.CONTROL_TOO_LARGE,
                f"control frame (type {ftype}) of {length} bytes exceeds "
                f"max_control_size {self.max_control_size}",
            )
