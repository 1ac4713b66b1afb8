"""Second factors: time-based one-time passwords (RFC 6238, 6 digits every 30 s) and backup codes.

Pure functions: the caller passes the time and keeps the state (the secret, the last accepted time
step, the hashes of unused backup codes).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Sequence

import pyotp

#: Seconds per time step, and steps accepted either side of the current one (clock drift).
TOTP_INTERVAL = 30
TOTP_DRIFT_STEPS = 1
TOTP_DIGITS = 6

#: RFC 4648 base32, lowercased: no 0, 1, 8 or 9 to confuse with o, i, l or b.
BACKUP_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
BACKUP_LENGTH = 16  # 80 random bits
BACKUP_GROUP = 4

_TOTP_CODE = re.compile(r"[0-9]{6}")
_BACKUP_CODE = re.compile(f"[{BACKUP_ALPHABET}]{{{BACKUP_LENGTH}}}")


def _unspace(code: str) -> str:
    """``code`` without spaces (nor any other whitespace)."""
    return "".join(code.split())


def new_totp_secret() -> str:
    """A new base32 secret of 160 random bits (RFC 4226's recommended length)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, email: str, issuer: str = "Kokoa") -> str:
    """The ``otpauth://totp/...`` URI that authenticator apps read (usually from a QR code)."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def verify_totp(secret: str, code: str, *, now: float, last_step: int | None = None) -> int | None:
    """The time step that ``code`` is valid for at ``now`` (unix seconds), or None.

    Accepts exactly 6 ASCII digits (spaces ignored) for the step of ``now`` or one step either side.
    Steps at or before ``last_step`` are refused, so a code is good once: store the returned step
    and pass it back next time. Every candidate is compared in constant time.
    """
    if not math.isfinite(now):
        raise ValueError(f"now must be a finite number of seconds, not {now!r}")
    if not isinstance(code, str):
        return None
    code = _unspace(code)
    if not _TOTP_CODE.fullmatch(code):
        return None
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_INTERVAL)
    current = math.floor(now / TOTP_INTERVAL)
    matched = None
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        if step < 0 or (last_step is not None and step <= last_step):
            continue
        if hmac.compare_digest(totp.generate_otp(step).encode(), code.encode()) and matched is None:
            matched = step
    return matched


def new_backup_codes(count: int = 10) -> list[str]:
    """``count`` new backup codes, shown as ``xxxx-xxxx-xxxx-xxxx``: 16 base32 characters each."""
    if count < 0:
        raise ValueError(f"count must be at least 0, not {count}")
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(BACKUP_ALPHABET) for _ in range(BACKUP_LENGTH))
        codes.append("-".join(raw[i : i + BACKUP_GROUP] for i in range(0, BACKUP_LENGTH, BACKUP_GROUP)))
    return codes


def _normalize_backup_code(code: str) -> str | None:
    """``code`` lowercased, without dashes and spaces; None if that is not 16 base32 characters."""
    if not isinstance(code, str):
        return None
    code = _unspace(code).replace("-", "")
    if not code.isascii():  # "K" (the Kelvin sign) lowercases to "k"
        return None
    code = code.lower()
    return code if _BACKUP_CODE.fullmatch(code) else None


def hash_backup_code(code: str) -> str:
    """The SHA-256 hex digest of ``code`` normalized (lowercase, no dashes or spaces), to store.

    A fast unsalted hash is adequate here, unlike for passwords: the code carries 80 random bits, far
    too many to guess even at billions of hashes a second. Raises ValueError for a malformed code.
    """
    normalized = _normalize_backup_code(code)
    if normalized is None:
        raise ValueError("a backup code is 16 letters and digits 2-7, like abcd-efgh-ijkl-mnop")
    return hashlib.sha256(normalized.encode()).hexdigest()


def match_backup_code(code: str, hashes: Sequence[str]) -> str | None:
    """The hash in ``hashes`` that ``code`` matches (to delete: a code is good once), or None.

    None too for a malformed code. Compares against every hash in constant time.
    """
    normalized = _normalize_backup_code(code)
    if normalized is None:
        return None
    digest = hashlib.sha256(normalized.encode()).hexdigest().encode()
    matched = None
    for stored in hashes:
        if hmac.compare_digest(digest, stored.encode()) and matched is None:
            matched = stored
    return matched
