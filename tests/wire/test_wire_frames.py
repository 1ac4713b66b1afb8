"""The frame codec, the token bucket and the Limits dataclass, in isolation."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire_support import FakeClock

from kokoa.wire import (
    HEADER_SIZE,
    ErrorCode,
    Frame,
    FrameDecoder,
    FrameType,
    Limits,
    MiB,
    PeerSettings,
    ProtocolError,
    encode_frame,
)
from kokoa.wire._frames import (
    MAX_PAYLOAD,
    MAX_WINDOW,
    decode_goaway,
    decode_json,
    decode_reset,
    decode_u32,
    encode_goaway,
    encode_json,
    encode_reset,
    encode_u32,
)
from kokoa.wire._ratelimit import TokenBucket

SETTINGS = settings(max_examples=150, deadline=None)

frames_st = st.builds(
    Frame,
    version=st.integers(0, 255),
    type=st.integers(0, 255),
    flags=st.integers(0, 255),
    stream_id=st.integers(0, 2**32 - 1),
    payload=st.binary(max_size=300),
)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks, prev = [], 0
    for p in [*points, len(data)]:
        chunks.append(data[prev:p])
        prev = p
    return chunks


# ---------------------------------------------------------------- encoding


def test_header_layout_is_fixed_and_big_endian():
    raw = encode_frame(1, FrameType.DATA, 0x1, 0x01020304, b"abc")
    assert HEADER_SIZE == 12
    assert raw == bytes([1, 4, 0, 1, 1, 2, 3, 4, 0, 0, 0, 3]) + b"abc"


def test_encode_frame_refuses_payload_above_hard_ceiling():
    with pytest.raises(ProtocolError) as info:
        encode_frame(1, FrameType.DATA, 0, 1, b"\0" * (MAX_PAYLOAD + 1))
    assert info.value.code == ErrorCode.FRAME_TOO_LARGE


@SETTINGS
@given(st.lists(frames_st, max_size=12), st.lists(st.integers(0, 10_000), max_size=20))
def test_decoder_output_is_independent_of_chunking(frames, cuts):
    wire = b"".join(encode_frame(f.version, f.type, f.flags, f.stream_id, f.payload) for f in frames)
    whole = FrameDecoder(1024, 1024).feed(wire)
    assert whole == frames
    decoder = FrameDecoder(1024, 1024)
    pieces = []
    for chunk in split(wire, cuts):
        pieces += decoder.feed(chunk)
        assert decoder.buffered < HEADER_SIZE + 1024
    assert pieces == frames
    assert decoder.buffered == 0


def test_decoder_byte_by_byte():
    wire = encode_frame(1, FrameType.DATA, 1, 7, b"hello") + encode_frame(
        1, FrameType.PING, 0, 0, b"12345678"
    )
    decoder = FrameDecoder(1024, 1024)
    out = []
    for i in range(len(wire)):
        out += decoder.feed(wire[i : i + 1])
    assert out == [Frame(1, FrameType.DATA, 1, 7, b"hello"), Frame(1, FrameType.PING, 0, 0, b"12345678")]


@pytest.mark.parametrize(
    ("ftype", "code"),
    [
        (FrameType.DATA, ErrorCode.FRAME_TOO_LARGE),
        (FrameType.DATAGRAM, ErrorCode.FRAME_TOO_LARGE),
        (FrameType.OPEN, ErrorCode.CONTROL_TOO_LARGE),
        (FrameType.CONTROL, ErrorCode.CONTROL_TOO_LARGE),
        (FrameType.HELLO, ErrorCode.CONTROL_TOO_LARGE),
        (0xEE, ErrorCode.CONTROL_TOO_LARGE),  # unknown types are bounded like control frames
    ],
)
def test_oversized_length_refused_from_header_alone(ftype, code):
    decoder = FrameDecoder(max_frame_size=2048, max_control_size=1024)
    limit = 2048 if code == ErrorCode.FRAME_TOO_LARGE else 1024
    header = encode_frame(1, ftype, 0, 1, b"")[:8] + (limit + 1).to_bytes(4, "big")
    # At the limit it is fine; one byte more is refused before any payload arrives.
    ok = encode_frame(1, ftype, 0, 1, b"x" * limit)
    assert decoder.feed(ok) == [Frame(1, ftype, 0, 1, b"x" * limit)]
    with pytest.raises(ProtocolError) as info:
        decoder.feed(header)
    assert info.value.code == code


def test_decoder_keeps_nothing_after_an_error():
    decoder = FrameDecoder(1024, 1024)
    bad_header = encode_frame(1, FrameType.DATA, 0, 1)[:8] + (2**32 - 1).to_bytes(4, "big")
    with pytest.raises(ProtocolError):
        decoder.feed(bad_header + b"\0" * 100_000)
    assert decoder.buffered == 0


@SETTINGS
@given(st.binary(max_size=4000), st.lists(st.integers(0, 4000), max_size=10))
def test_decoder_never_buffers_more_than_one_frame(garbage, cuts):
    decoder = FrameDecoder(1024, 1500)
    for chunk in split(garbage, cuts):
        try:
            decoder.feed(chunk)
        except ProtocolError as e:
            assert e.code in (ErrorCode.FRAME_TOO_LARGE, ErrorCode.CONTROL_TOO_LARGE)
            assert decoder.buffered == 0
            return
        assert decoder.buffered <= HEADER_SIZE + 1500


# ---------------------------------------------------------------- payload codecs


@given(st.integers(0, 2**32 - 1))
def test_u32_roundtrip(n):
    assert decode_u32(encode_u32(n), "x") == n


@pytest.mark.parametrize("raw", [b"", b"\0\0\0", b"\0\0\0\0\0"])
def test_u32_wrong_length(raw):
    with pytest.raises(ProtocolError):
        decode_u32(raw, "WINDOW_UPDATE")


@given(st.integers(0, 2**16 - 1), st.text(max_size=50))
def test_reset_roundtrip(code, reason):
    assert decode_reset(encode_reset(code, reason)) == (code, reason)


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**16 - 1), st.text(max_size=50))
def test_goaway_roundtrip(last, code, message):
    assert decode_goaway(encode_goaway(last, code, message)) == (last, code, message)


@pytest.mark.parametrize(
    ("fn", "raw"),
    [
        (decode_reset, b"\0"),
        (decode_reset, b"\0\1\xff\xfe"),
        (decode_goaway, b"\0\0\0\1\0"),
        (decode_goaway, b"\0\0\0\1\0\0\xc3"),
    ],
)
def test_short_or_non_utf8_payloads(fn, raw):
    with pytest.raises(ProtocolError) as info:
        fn(raw)
    assert info.value.code == ErrorCode.PROTOCOL_ERROR


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"[]",
        b"1",
        b'"s"',
        b"null",
        b"\xff\xfe",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        b'{"n": ' + b"9" * 10_000 + b"}",  # above Python's int-digits limit
    ],
)
def test_json_payloads_that_are_not_objects(raw):
    with pytest.raises(ProtocolError) as info:
        decode_json(raw, "CONTROL")
    assert info.value.code == ErrorCode.PROTOCOL_ERROR


@given(st.dictionaries(st.text(max_size=10), st.integers() | st.text(max_size=10) | st.none(), max_size=5))
def test_json_roundtrip(obj):
    assert decode_json(encode_json(obj), "x") == obj
    assert json.loads(encode_json(obj)) == obj


# ---------------------------------------------------------------- token bucket


def test_token_bucket_burst_then_refill():
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=10, clock=clock)
    assert all(bucket.take() for _ in range(10))
    assert not bucket.take()
    clock.advance(0.1)  # one token back
    assert bucket.take()
    assert not bucket.take()
    clock.advance(100)  # never more than the burst
    assert sum(bucket.take() for _ in range(50)) == 10


# ---------------------------------------------------------------- limits


def test_limits_defaults_are_valid_and_advertised():
    limits = Limits()
    assert limits.advertised() == {
        "max_frame_size": limits.max_frame_size,
        "initial_window": limits.initial_window,
        "max_concurrent_streams": limits.max_concurrent_streams,
        "max_control_size": limits.max_control_size,
    }
    assert limits.as_dict()["max_window"] == 16 * MiB


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"max_frame_size": 0}, "max_frame_size must be positive"),
        ({"max_concurrent_streams": -1}, "max_concurrent_streams must be positive"),
        ({"max_stream_opens_per_second": 0.0}, "max_stream_opens_per_second must be positive"),
        ({"max_resets_per_second": -5}, "max_resets_per_second must be positive"),
        ({"max_send_buffer": 0}, "max_send_buffer must be positive"),
        ({"max_frame_size": 1023}, "max_frame_size must be between"),
        ({"max_frame_size": MAX_PAYLOAD + 1}, "max_frame_size must be between"),
        ({"max_control_size": 1000}, "max_control_size must be between"),
        ({"max_control_size": MAX_PAYLOAD + 1}, "max_control_size must be between"),
        ({"initial_window": 2 * MiB, "max_window": MiB}, "initial_window <= max_window"),
        ({"max_window": MAX_WINDOW + 1}, "initial_window <= max_window"),
        ({"max_resets_per_second": float("nan")}, "max_resets_per_second must be positive"),
        ({"max_frame_size": 2048.0}, "max_frame_size must be an integer"),
        ({"initial_window": 1000.5}, "initial_window must be an integer"),
        ({"max_concurrent_streams": True}, "max_concurrent_streams must be an integer"),
    ],
)
def test_limits_validation(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        Limits(**kwargs)


def test_limits_edges_accepted():
    Limits(max_frame_size=1024, max_control_size=MAX_PAYLOAD, initial_window=1, max_window=MAX_WINDOW)
    Limits(max_stream_opens_per_second=1.5, max_resets_per_second=3)  # rates may be fractions or ints
    Limits(max_pings_per_second=25)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_stream_opens_per_second", 0.5, "at least 1"),
        ("max_resets_per_second", 0.9, "at least 1"),
        ("max_pings_per_second", 24, "at least 25"),
    ],
)
def test_limits_rates_have_useful_minimums(field, value, message):
    with pytest.raises(ValueError, match=message):
        Limits(**{field: value})


@pytest.mark.parametrize(
    "raw",
    [
        [],
        {"max_frame_size": 0},
        {"max_frame_size": "1024"},
        {"max_frame_size": 1024.0},
        {"max_frame_size": True},
        {"max_frame_size": 1023},
        {"max_frame_size": MAX_PAYLOAD + 1},
        {"initial_window": MAX_WINDOW + 1},
        {"max_concurrent_streams": -1},
    ],
)
def test_peer_settings_validation(raw):
    with pytest.raises(ProtocolError) as info:
        PeerSettings.from_wire(raw)
    assert info.value.code == ErrorCode.PROTOCOL_ERROR


def test_peer_settings_defaults_fill_gaps():
    assert PeerSettings.from_wire({"initial_window": 5}) == PeerSettings(initial_window=5)
