"""One-time codes sent by email, signing a visitor in to one resource (its ``auth_email_allow`` list).

A code is six random digits, stored as the SHA-256 of the resource, the address and the code. Guessing
is bounded: every wrong try counts against all the live codes of that resource and address, a code
tried wrong ``max_attempts`` times is dead, and an address has at most :data:`MAX_LIVE_EMAIL_CODES`
unexpired, unused codes at once. Codes are not configuration: no change is recorded.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, func, insert, select, update

from . import _schema as s
from . import _validate as v
from ._common import atomic, get_row, new_id, resolve_now
from ._errors import Conflict, Invalid
from ._sessions import token_hash

#: Unexpired, unused codes one address may hold for one resource at once.
MAX_LIVE_EMAIL_CODES = 5
EMAIL_CODE_LIFETIME = timedelta(minutes=10)
CODE_DIGITS = 6


def _code_hash(resource_id: str, email: str, code: str) -> str:
    return token_hash(f"{resource_id}\n{email}\n{code}")


@atomic
def create_email_code(
    conn: Connection,
    resource_id: str,
    email: str,
    *,
    lifetime: timedelta = EMAIL_CODE_LIFETIME,
    now: datetime | None = None,
) -> str:
    """A new code for ``email`` on the resource (to send by email; only its hash is kept).

    :class:`Conflict` when the address already holds :data:`MAX_LIVE_EMAIL_CODES` live codes."""
    now = resolve_now(now)
    get_row(conn, s.resources, "resource", resource_id)
    email = v.email(email)
    if lifetime <= timedelta(0):
        raise Invalid("lifetime", "must be positive")
    c = s.email_codes.c
    mine = (c.resource_id == resource_id, c.email == email)
    conn.execute(delete(s.email_codes).where(*mine, c.expires_at <= now))  # no use to anyone now
    live = conn.execute(
        select(func.count()).select_from(s.email_codes).where(*mine, c.used_at.is_(None))
    ).scalar_one()
    if live >= MAX_LIVE_EMAIL_CODES:
        raise Conflict(
            "email",
            f"{MAX_LIVE_EMAIL_CODES} codes sent to this address are still valid: use one of them, "
            "or wait until they expire",
        )
    code = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
    conn.execute(
        insert(s.email_codes).values(
            id=new_id("ecode"),
            resource_id=resource_id,
            email=email,
            code_hash=_code_hash(resource_id, email, code),
            attempts=0,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    return code


@atomic
def verify_email_code(
    conn: Connection,
    resource_id: str,
    email: str,
    code: str,
    *,
    max_attempts: int = 5,
    now: datetime | None = None,
) -> bool:
    """Whether ``code`` is a live code of ``email`` on the resource; a right code is used up (with the
    address's other live codes), a wrong one counts as a try against every live code. Never raises
    for a wrong code or a malformed address: the tries it counted are kept."""
    now = resolve_now(now)
    try:
        email = v.email(email)
    except Invalid:
        return False
    c = s.email_codes.c
    live = (
        c.resource_id == resource_id,
        c.email == email,
        c.used_at.is_(None),
        c.expires_at > now,
        c.attempts < max_attempts,
    )
    if isinstance(code, str) and len(code) == CODE_DIGITS and code.isascii() and code.isdigit():
        hashed = _code_hash(resource_id, email, code)
        claimed = conn.execute(update(s.email_codes).where(*live, c.code_hash == hashed).values(used_at=now))
        if claimed.rowcount:
            conn.execute(update(s.email_codes).where(*live).values(used_at=now))  # the others are moot now
            return True
    conn.execute(update(s.email_codes).where(*live).values(attempts=c.attempts + 1))
    return False
