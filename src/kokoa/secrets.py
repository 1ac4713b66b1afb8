"""Site secrets: generated at random, stored only as a hash.

Site secrets are 256-bit random tokens, not passwords a person chose, so a
single SHA-256 is enough to make a stolen hash useless (there is nothing to
guess); a slow password hash (argon2id) would only slow every edge handshake.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "sha256:"


def generate_secret() -> str:
    """A new random site secret (43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return PREFIX + hashlib.sha256(secret.encode("utf-8")).hexdigest()


def verify_secret(secret: str, stored_hash: str) -> bool:
    """Constant-time comparison of ``secret`` against a stored hash."""
    if not stored_hash.startswith(PREFIX) or not isinstance(secret, str):
        return False
    return hmac.compare_digest(hash_secret(secret), stored_hash)
