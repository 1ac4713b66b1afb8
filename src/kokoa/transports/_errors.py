"""Errors a tunnel connection attempt can fail with (besides Twisted's and OpenSSL's own)."""

from __future__ import annotations


class CertificateFingerprintMismatch(Exception):
    """The gateway's certificate is not the one the edge pinned."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(expected, actual)
        self.expected = expected
        self.actual = actual

    def __str__(self) -> str:
        return (
            f"gateway certificate fingerprint {self.actual} does not match the pinned "
            f"fingerprint {self.expected}"
        )


class WebSocketHandshakeError(Exception):
    """The WebSocket opening handshake did not complete (refused, timed out, or cut off)."""


class HandshakeTimeout(Exception):
    """The TLS handshake did not complete in time."""
