"""Share links: a token that lets anyone holding it reach one resource, until it expires, is revoked or
has been used ``max_uses`` times.

A token reads ``kks_<8 characters>_<secret>`` and is made like an API key (see :mod:`._keys`): the
``kks_<8 characters>`` prefix is stored in clear and finds the link, the whole token only as a SHA-256
hash; it is returned once, at creation. Writes are configuration changes (kind ``share_link``), so
gateways drop the sessions they cached for a link as soon as it is revoked or deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, or_, select, update

from kokoa.secrets import generate_secret, hash_secret, verify_secret

from . import _schema as s
from . import _validate as v
from ._common import DEFAULT_LIMIT, Page, atomic, get_row, new_id, paginate, record_change, resolve_now
from ._errors import Invalid
from ._keys import new_prefix, token_prefix

SHARE_LINK_PREFIX = "kks_"
#: The most uses a link can be given.
MAX_SHARE_LINK_USES = 1_000_000


@dataclass(frozen=True, slots=True)
class ShareLink:
    """A share link as shown to admins: its prefix, never its token or hash. ``max_uses`` None: no limit."""

    id: str
    resource_id: str
    name: str
    prefix: str
    expires_at: datetime | None
    max_uses: int | None
    uses: int
    revoked_at: datetime | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime

    def is_active(self, now: datetime | None = None) -> bool:
        """Neither revoked, nor expired, nor used up."""
        if self.revoked_at is not None or (self.max_uses is not None and self.uses >= self.max_uses):
            return False
        return self.expires_at is None or resolve_now(now) < self.expires_at


def _link(row: Row[Any]) -> ShareLink:
    return ShareLink(
        row.id,
        row.resource_id,
        row.name,
        row.prefix,
        row.expires_at,
        row.max_uses,
        row.uses,
        row.revoked_at,
        row.created_by,
        row.created_at,
        row.updated_at,
    )


def _org_of(conn: Connection, resource_id: str) -> str:
    return conn.execute(select(s.resources.c.org_id).where(s.resources.c.id == resource_id)).scalar_one()


@atomic
def create_share_link(
    conn: Connection,
    resource_id: str,
    name: str,
    *,
    expires_at: datetime | None = None,
    max_uses: int | None = None,
    created_by: str | None = None,
    now: datetime | None = None,
) -> tuple[ShareLink, str]:
    """A new link to the HTTP resource, and its token: shown this once, only its hash is kept.

    ``created_by`` names who made it (an audit actor such as ``key:kk_abcd1234``)."""
    now = resolve_now(now)
    resource = get_row(conn, s.resources, "resource", resource_id)
    if resource.kind != "http":
        raise Invalid("resource_id", "share links open HTTP resources only")
    name = v.name(name)
    if expires_at is not None and v.aware(expires_at, "expires_at") <= now:
        raise Invalid("expires_at", "must be in the future")
    if max_uses is not None:
        v.integer(max_uses, "max_uses", 1, MAX_SHARE_LINK_USES)
    if created_by is not None:
        created_by = v.name(created_by, "created_by", 200)
    prefix = new_prefix(conn, s.share_links, SHARE_LINK_PREFIX)
    token = f"{prefix}_{generate_secret()}"
    link_id = new_id("share")
    conn.execute(
        insert(s.share_links).values(
            id=link_id,
            resource_id=resource_id,
            name=name,
            prefix=prefix,
            token_hash=hash_secret(token),
            expires_at=expires_at,
            max_uses=max_uses,
            uses=0,
            created_by=created_by,
            created_at=now,
            updated_at=now,
        )
    )
    record_change(conn, "share_link", link_id, "create", resource.org_id, now)
    return get_share_link(conn, link_id), token


def get_share_link(conn: Connection, link_id: str) -> ShareLink:
    return _link(get_row(conn, s.share_links, "share link", link_id))


def list_share_links(
    conn: Connection,
    *,
    resource_id: str | None = None,
    org_id: str | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[ShareLink]:
    """Every link, a resource's, or those of an organization's resources, in creation order."""
    links = s.share_links
    query = select(links)
    if resource_id is not None:
        query = query.where(links.c.resource_id == resource_id)
    if org_id is not None:
        query = query.where(
            links.c.resource_id.in_(select(s.resources.c.id).where(s.resources.c.org_id == org_id))
        )
    return paginate(conn, query, links, _link, limit, cursor)


@atomic
def revoke_share_link(conn: Connection, link_id: str, *, now: datetime | None = None) -> ShareLink:
    """Make the link unusable from now on (kept, with its revocation time, for the record); the
    sessions opened with it end too."""
    now = resolve_now(now)
    current = get_share_link(conn, link_id)
    if current.revoked_at is None:
        links = s.share_links
        conn.execute(update(links).where(links.c.id == link_id).values(revoked_at=now, updated_at=now))
        _end_sessions(conn, link_id, now)
        record_change(conn, "share_link", link_id, "update", _org_of(conn, current.resource_id), now)
    return get_share_link(conn, link_id)


@atomic
def delete_share_link(conn: Connection, link_id: str, *, now: datetime | None = None) -> None:
    now = resolve_now(now)
    current = get_share_link(conn, link_id)
    org_id = _org_of(conn, current.resource_id)
    conn.execute(delete(s.share_links).where(s.share_links.c.id == link_id))
    _end_sessions(conn, link_id, now)
    record_change(conn, "share_link", link_id, "delete", org_id, now)


def session_method(link_id: str) -> str:
    """The ``method`` of the sessions a share link opens (how they are found when it is revoked)."""
    return f"share:{link_id}"


def _end_sessions(conn: Connection, link_id: str, now: datetime) -> None:
    sessions = s.sessions
    conn.execute(
        update(sessions)
        .where(sessions.c.method == session_method(link_id), sessions.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


@atomic
def redeem_share_link(
    conn: Connection, token: str, *, count_use: bool, now: datetime | None = None
) -> ShareLink | None:
    """The active link with this token, or None (unknown, wrong, revoked, expired or used up alike).

    With ``count_use``, one use is counted, in a single conditional UPDATE: of concurrent redemptions
    of a link with ``max_uses``, no more than that many succeed. Uses are not configuration changes."""
    now = resolve_now(now)
    prefix = token_prefix(token, SHARE_LINK_PREFIX)
    if prefix is None or len(token) > 200 or not (token.isascii() and token.isprintable()):
        return None
    links = s.share_links
    row = conn.execute(select(links).where(links.c.prefix == prefix)).one_or_none()
    if row is None or not verify_secret(token, row.token_hash):
        return None
    link = _link(row)
    if not link.is_active(now):
        return None
    if count_use:
        counted = conn.execute(
            update(links)
            .where(
                links.c.id == link.id,
                links.c.revoked_at.is_(None),
                or_(links.c.expires_at.is_(None), links.c.expires_at > now),
                or_(links.c.max_uses.is_(None), links.c.uses < links.c.max_uses),
            )
            .values(uses=links.c.uses + 1)
        ).rowcount
        if counted != 1:
            return None
        link = get_share_link(conn, link.id)
    return link
