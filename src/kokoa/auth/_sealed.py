"""Sealed values: small JSON payloads encrypted and authenticated for the browser to carry.

The login host keeps no sign-in in progress in its own memory: a sign-in waiting for its second
factor, a single sign-on round trip, a second factor being set up, and the browsers that signed in to
an account before (the device cookie) travel in cookies sealed with AES-256-GCM under the instance's
cookie key (kept in the store, so every gateway of a cluster opens what another sealed). A sealed
value names its purpose (authenticated, so one kind cannot be replayed as another) and its expiry.

Pure code: the caller passes the time.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: Bytes of the key (AES-256) and of each value's random nonce.
KEY_BYTES = 32
_NONCE_BYTES = 12
#: Longest sealed value accepted (a cookie's value stays well under browsers' 4 KiB).
MAX_SEALED = 3000


class Sealer:
    """Seals and opens payloads with one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a cookie key has {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)

    def seal(self, purpose: str, payload: dict[str, Any], *, now: float, lifetime: float) -> str:
        """``payload`` sealed for ``purpose``, valid ``lifetime`` seconds from ``now``."""
        nonce = os.urandom(_NONCE_BYTES)
        body = json.dumps({"p": payload, "x": int(now + lifetime)}, separators=(",", ":")).encode()
        sealed = base64.urlsafe_b64encode(nonce + self._aead.encrypt(nonce, body, purpose.encode()))
        text = sealed.rstrip(b"=").decode("ascii")
        if len(text) > MAX_SEALED:
            raise ValueError(f"a sealed {purpose} value is too large ({len(text)} characters)")
        return text

    def open(self, purpose: str, sealed: str | None, *, now: float) -> dict[str, Any] | None:
        """The payload sealed for ``purpose``, or None if it is missing, forged, for another purpose,
        or expired (all alike)."""
        if not sealed or len(sealed) > MAX_SEALED:
            return None
        try:
            raw = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) <= _NONCE_BYTES:
            return None
        try:
            body = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], purpose.encode())
        except InvalidTag:
            return None
        try:
            value = json.loads(body)
        except ValueError:
            return None
        if not isinstance(value, dict) or not isinstance(value.get("x"), int) or value["x"] < now:
            return None
        payload = value.get("p")
        return payload if isinstance(payload, dict) else None


def new_key() -> bytes:
    """A new random cookie key."""
    return os.urandom(KEY_BYTES)
