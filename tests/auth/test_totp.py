"""kokoa.auth._totp: one-time passwords at injected times, replay refusal, and backup codes."""

from __future__ import annotations

import base64
import hashlib
import math
import re

import pyotp
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kokoa.auth._totp import (
    hash_backup_code,
    match_backup_code,
    new_backup_codes,
    new_totp_secret,
    provisioning_uri,
    verify_totp,
)

pytestmark = pytest.mark.sans_io

SETTINGS = settings(max_examples=200, deadline=None)

secrets_ = st.binary(min_size=20, max_size=20).map(lambda raw: base64.b32encode(raw).decode())
#: From a couple of minutes after the epoch to the year 2100, whole seconds and fractions.
times = st.one_of(st.integers(120, 4_102_444_800), st.floats(120, 4_102_444_800, allow_nan=False))
raw_backup = st.text("abcdefghijklmnopqrstuvwxyz234567", min_size=16, max_size=16)

# RFC 6238, appendix B (SHA-1), the last 6 of the 8 digits.
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
RFC_VECTORS = [(59, "287082"), (1111111109, "081804"), (1234567890, "005924"), (2000000000, "279037")]


def step_of(t: float) -> int:
    return math.floor(t / 30)


def codes_near(secret: str, t: float, steps: range) -> set[str]:
    totp = pyotp.TOTP(secret)
    return {totp.generate_otp(step_of(t) + offset) for offset in steps}


# --- one-time passwords -------------------------------------------------------------------------


def test_new_secret_is_160_bits_of_base32():
    secret = new_totp_secret()
    assert len(secret) == 32
    assert len(base64.b32decode(secret)) == 20
    assert new_totp_secret() != secret


def test_provisioning_uri_round_trips():
    secret = new_totp_secret()
    uri = provisioning_uri(secret, "alice@example.com")
    assert uri.startswith("otpauth://totp/Kokoa:alice%40example.com?")
    parsed = pyotp.parse_uri(uri)
    assert (parsed.secret, parsed.name, parsed.issuer) == (secret, "alice@example.com", "Kokoa")
    assert pyotp.parse_uri(provisioning_uri(secret, "bob@example.com", issuer="Acme")).issuer == "Acme"


@pytest.mark.parametrize(("t", "code"), RFC_VECTORS)
def test_rfc_6238_vectors(t, code):
    assert verify_totp(RFC_SECRET, code, now=t) == step_of(t)


@SETTINGS
@given(secret=secrets_, t=times)
def test_code_verifies_at_its_time_and_one_step_either_side(secret, t):
    code = pyotp.TOTP(secret).at(t)
    assert verify_totp(secret, code, now=t) in {step_of(t) - 1, step_of(t)}  # -1: only by coincidence
    for now in (t - 30, t, t + 30):
        step = verify_totp(secret, code, now=now)
        assert step is not None
        assert abs(step - step_of(t)) <= 1
        assert pyotp.TOTP(secret).generate_otp(step) == code


@SETTINGS
@given(secret=secrets_, t=times, sign=st.sampled_from([-1, 1]))
def test_code_fails_three_steps_away(secret, t, sign):
    code = pyotp.TOTP(secret).at(t)
    assume(code not in codes_near(secret, t + sign * 90, range(-1, 2)))  # a one-in-300,000 coincidence
    assert verify_totp(secret, code, now=t + sign * 90) is None


@SETTINGS
@given(secret=secrets_, t=times, later=st.sampled_from([0, 1, 29, 30, 59]))
def test_replay_is_refused(secret, t, later):
    code = pyotp.TOTP(secret).at(t)
    step = verify_totp(secret, code, now=t)
    assert step is not None
    # Unless the same code comes up again for a later step in the window (one in 330,000 or so):
    later_steps = range(step + 1, step_of(t + later) + 2)
    assume(code not in {pyotp.TOTP(secret).generate_otp(k) for k in later_steps})
    assert verify_totp(secret, code, now=t + later, last_step=step) is None


def test_next_code_after_replay_window_is_accepted():
    totp = pyotp.TOTP(RFC_SECRET)
    t = 1_700_000_000
    step = verify_totp(RFC_SECRET, totp.at(t), now=t)
    assert step == step_of(t)
    assert verify_totp(RFC_SECRET, totp.at(t + 30), now=t + 30, last_step=step) == step + 1
    # A code for an earlier step, still inside the drift window, is refused once a later one was used.
    assert verify_totp(RFC_SECRET, totp.at(t - 30), now=t, last_step=step) is None


@pytest.mark.parametrize(
    "template", ["{}{}{} {}{}{}", " {}{}{}{}{}{} ", "{}{} {}{} {}{}", "{}{}{}\u00a0{}{}{}"]
)
def test_spaces_are_ignored(template):
    t = 1_700_000_000
    code = pyotp.TOTP(RFC_SECRET).at(t)
    assert verify_totp(RFC_SECRET, template.format(*code), now=t) == step_of(t)


@pytest.mark.parametrize(
    "code",
    [
        "",
        "12345",
        "1234567",
        "abcdef",
        "12345a",
        "+12345",
        "-12345",
        "\uff11\uff12\uff13\uff14\uff15\uff16",
        "\u0661\u0662\u0663\u0664\u0665\u0666",
        "12-34-56",
    ],
)
def test_anything_but_six_digits_is_refused(code):
    t = 1_700_000_000
    secret = new_totp_secret()
    assert verify_totp(secret, code, now=t) is None


@SETTINGS
@given(secret=secrets_, t=times, code=st.text(max_size=10))
def test_garbage_never_raises(secret, t, code):
    step = verify_totp(secret, code, now=t)
    if step is not None:
        assert re.fullmatch("[0-9]{6}", "".join(code.split()))


def test_non_string_code_is_refused():
    assert verify_totp(RFC_SECRET, 287082, now=59) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("now", [math.nan, math.inf, -math.inf])
def test_non_finite_time_is_an_error(now):
    with pytest.raises(ValueError, match="finite"):
        verify_totp(RFC_SECRET, "287082", now=now)


def test_near_the_epoch_no_negative_step():
    assert verify_totp(RFC_SECRET, pyotp.TOTP(RFC_SECRET).at(0), now=0) == 0


# --- backup codes -------------------------------------------------------------------------------


def test_backup_codes_look_right():
    codes = new_backup_codes()
    assert len(codes) == 10
    assert len(set(codes)) == 10
    for code in codes:
        assert re.fullmatch(r"[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}", code)
    assert len(new_backup_codes(3)) == 3
    assert new_backup_codes(0) == []
    with pytest.raises(ValueError):
        new_backup_codes(-1)


def test_backup_code_hash_is_sha256_of_the_normalized_code():
    assert hash_backup_code("ABCD-efgh 2345-6777") == hashlib.sha256(b"abcdefgh23456777").hexdigest()


def test_generated_codes_round_trip():
    codes = new_backup_codes()
    hashes = [hash_backup_code(code) for code in codes]
    for code, digest in zip(codes, hashes, strict=True):
        assert match_backup_code(code, hashes) == digest
        assert match_backup_code(code.upper().replace("-", " "), hashes) == digest


@SETTINGS
@given(raw=raw_backup, others=st.lists(raw_backup, max_size=5), data=st.data())
def test_backup_code_round_trip_in_any_spelling(raw, others, data):
    hashes = [hash_backup_code(other) for other in others] + [hash_backup_code(raw)]
    spelled = "".join(
        data.draw(st.sampled_from([ch, ch.upper()])) + data.draw(st.sampled_from(["", "-", " "]))
        for ch in raw
    )
    assert match_backup_code(spelled, hashes) == hash_backup_code(raw)


@SETTINGS
@given(raw=raw_backup, others=st.lists(raw_backup, max_size=5))
def test_a_different_code_never_matches(raw, others):
    assume(raw not in others)
    assert match_backup_code(raw, [hash_backup_code(other) for other in others]) is None


@pytest.mark.parametrize(
    "code",
    [
        "",
        "abcd-efgh-ijkl-mno",  # 15
        "abcd-efgh-ijkl-mnopq",  # 17
        "abcd-efgh-ijkl-mno0",  # not base32
        "abcd-efgh-ijkl-mno1",
        "abcd-efgh-ijkl-mno8",
        "abcd-efgh-ijkl-mno\u212a",  # the Kelvin sign lowercases to "k"
        "abcd_efgh_ijkl_mnop",
    ],
)
def test_malformed_backup_codes(code):
    hashes = [hash_backup_code("abcd-efgh-ijkl-mnop"), hash_backup_code("abcd-efgh-ijkl-mnok")]
    assert match_backup_code(code, hashes) is None
    with pytest.raises(ValueError, match="backup code"):
        hash_backup_code(code)


def test_match_backup_code_with_no_hashes_or_non_string():
    assert match_backup_code("abcd-efgh-ijkl-mnop", []) is None
    assert match_backup_code(None, [hash_backup_code("abcd-efgh-ijkl-mnop")]) is None  # type: ignore[arg-type]
