"""What the login host's sign-in steps read and write: second factors, a resource's own secrets,
one-time password links, single sign-on identities, and the instance's shared keys."""

from __future__ import annotations

import base64
import logging
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from . import _schema as s
from ._common import utcnow
from ._errors import NotFound
from ._orgs import add_member, get_organization, get_role_by_name, list_organizations
from ._sessions import revoke_user_sessions
from ._user_tokens import redeem_user_token
from ._users import User, create_user, get_user_by_email, set_password_hash, update_user

log = logging.getLogger(__name__)


def totp_secret_of(conn: Connection, user_id: str) -> str | None:
    """The user's TOTP secret, or None when they have no second factor."""
    users = s.users.c
    return conn.execute(select(users.totp_secret).where(users.id == user_id)).scalar_one_or_none()


def check_second_factor(conn: Connection, user_id: str, code: str, now: float) -> bool:
    """A TOTP code (not replayed) or an unused backup code; records what was used. ``now``: Unix time."""
    from kokoa.auth._totp import match_backup_code, verify_totp

    row = conn.execute(select(s.users).where(s.users.c.id == user_id)).one_or_none()
    if row is None or row.totp_secret is None:
        return False
    step = verify_totp(row.totp_secret, code, now=now, last_step=row.totp_last_step)
    users = s.users.c
    if step is not None:
        # Conditional: of two sign-ins with one code at the same moment, one only moves the step.
        newer = (users.totp_last_step.is_(None)) | (users.totp_last_step < step)
        claimed = conn.execute(update(s.users).where(users.id == user_id, newer).values(totp_last_step=step))
        return claimed.rowcount == 1
    hashes = list(row.backup_codes or [])
    used = match_backup_code(code, hashes)
    if used is None:
        return False
    hashes.remove(used)
    # Likewise a backup code: only if the list is still the one read (nobody used one meanwhile).
    same = (
        users.backup_codes == row.backup_codes if conn.dialect.name == "postgresql" else users.id == user_id
    )
    claimed = conn.execute(update(s.users).where(users.id == user_id, same).values(backup_codes=hashes))
    return claimed.rowcount == 1


def enable_totp(conn: Connection, user_id: str, secret: str, step: int, backup_hashes: list[str]) -> None:
    """Turn on the user's second factor (``step``: the time step of the code that proved it)."""
    conn.execute(
        update(s.users)
        .where(s.users.c.id == user_id)
        .values(totp_secret=secret, totp_last_step=step, backup_codes=backup_hashes)
    )


def resource_secret_hash(conn: Connection, resource_id: str, method: str) -> str | None:
    """The hash of a resource's own password (``method`` "password") or PIN ("pin")."""
    resources = s.resources.c
    column = resources.auth_password_hash if method == "password" else resources.auth_pin_hash
    return conn.execute(select(column).where(resources.id == resource_id)).scalar_one_or_none()


def use_password_link(conn: Connection, token: str, purpose: str, password_hash: str) -> User | None:
    """Spend a setup, reset or invitation link: set the password, activate an invited user, end
    their sessions. None for a link that is unknown, used or expired."""
    user = redeem_user_token(conn, token, purpose)
    if user is None:
        return None
    set_password_hash(conn, user.id, password_hash)
    if user.status == "invited":
        update_user(conn, user.id, status="active")
    revoke_user_sessions(conn, user.id)
    return user


def change_password(conn: Connection, user_id: str, password_hash: str, keep_session: str) -> None:
    """A new password; every session of the user ends but ``keep_session``."""
    set_password_hash(conn, user_id, password_hash)
    revoke_user_sessions(conn, user_id, except_id=keep_session)


def sso_user(
    conn: Connection, provider: str, claims: Any, provision_org: str | None, default_role: str
) -> str | None:
    """The user a provider's subject is: linked before, or the user with that (verified) email, or a
    new one in ``provision_org`` with ``default_role``; None if none may be made."""
    ids = s.user_identities
    linked = conn.execute(
        select(ids.c.user_id).where(ids.c.provider == provider, ids.c.subject == claims.subject)
    ).scalar_one_or_none()
    if linked is not None:
        return linked
    try:
        user = get_user_by_email(conn, claims.email)
    except NotFound:
        if provision_org is None:
            return None
        try:
            org = get_organization(conn, provision_org)
        except NotFound:
            org = next(
                (
                    o
                    for o in list_organizations(conn, limit=1000).items
                    if o.name.lower() == provision_org.lower()
                ),
                None,
            )
            if org is None:
                log.warning("oidc provider %s: provision_org %r does not exist", provider, provision_org)
                return None
        user = create_user(conn, claims.email, display_name=(claims.name or None) and claims.name[:100])
        add_member(conn, org.id, user.id, get_role_by_name(conn, org.id, default_role).id)
    if user.status != "active":
        return None
    conn.execute(
        insert(ids).values(
            provider=provider,
            subject=claims.subject[:255],
            user_id=user.id,
            email=claims.email,
            created_at=utcnow(),
        )
    )
    return user.id


def instance_key(conn: Connection, name: str, make: Any) -> bytes:
    """The instance's key ``name``, made with ``make()`` (bytes) the first time any gateway asks."""
    keys = s.instance_keys.c
    found = conn.execute(select(keys.value).where(keys.name == name)).scalar_one_or_none()
    if found is None:
        value = base64.b64encode(make()).decode("ascii")
        try:
            with conn.begin_nested():
                conn.execute(insert(s.instance_keys).values(name=name, value=value, created_at=utcnow()))
        except IntegrityError:  # another gateway made it first: take theirs
            pass
        found = conn.execute(select(keys.value).where(keys.name == name)).scalar_one()
    return base64.b64decode(found)
