"""Sites: the private networks whose edges dial in, with their secrets (stored hashed) and presence.

Rotating a site's secret keeps the previous one valid for a grace period
(:data:`SECRET_GRACE_PERIOD`, 24 hours by default), so an edge can be given the new secret and restarted
without downtime. Only one previous secret is kept: rotating again ends the older one's grace at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, delete, func, insert, select, update

from kokoa.secrets import generate_secret, hash_secret, verify_secret

from . import _schema as s
from . import _validate as v
from ._common import (
    DEFAULT_LIMIT,
    UNSET,
    Page,
    Unset,
    atomic,
    get_row,
    lock_config,
    new_id,
    paginate,
    record_change,
    resolve_now,
    where_equal,
)
from ._errors import Conflict, Invalid

#: How long a rotated-out secret stays valid, unless rotate_site_secret is told otherwise.
SECRET_GRACE_PERIOD = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Site:
    """A site as shown to admins (no secret hashes)."""

    id: str
    org_id: str
    name: str
    enabled: bool
    online: bool
    last_seen_at: datetime | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SiteCredentials:
    """What a gateway needs to authenticate a site's edge from memory."""

    id: str
    org_id: str
    name: str
    enabled: bool
    secret_hash: str
    previous_secret_hash: str | None
    previous_secret_expires_at: datetime | None

    def accepts(self, secret: str, now: datetime | None = None) -> bool:
        """Whether ``secret`` is the current one, or the previous one still in its grace period."""
        if verify_secret(secret, self.secret_hash):
            return True
        if self.previous_secret_hash is None or self.previous_secret_expires_at is None:
            return False
        return resolve_now(now) < self.previous_secret_expires_at and verify_secret(
            secret, self.previous_secret_hash
        )


def _site(row: Row[Any]) -> Site:
    return Site(
        row.id,
        row.org_id,
        row.name,
        row.enabled,
        row.online,
        row.last_seen_at,
        row.previous_secret_expires_at,
        row.created_at,
        row.updated_at,
    )


def site_credentials(row: Row[Any]) -> SiteCredentials:
    return SiteCredentials(
        row.id,
        row.org_id,
        row.name,
        row.enabled,
        row.secret_hash,
        row.previous_secret_hash,
        row.previous_secret_expires_at,
    )


@atomic
def create_site(
    conn: Connection, org_id: str, name: str, *, enabled: bool = True, now: datetime | None = None
) -> tuple[Site, str]:
    """A new site, and its secret: shown this once, only its hash is kept."""
    now = resolve_now(now)
    get_row(conn, s.organizations, "organization", org_id)
    name = v.name(name)
    enabled = v.boolean(enabled, "enabled")
    _check_name_free(conn, org_id, name)
    site_id = new_id("site")
    secret = generate_secret()
    conn.execute(
        insert(s.sites).values(
            id=site_id,
            org_id=org_id,
            name=name,
            secret_hash=hash_secret(secret),
            enabled=enabled,
            online=False,
            created_at=now,
            updated_at=now,
        )
    )
    record_change(conn, "site", site_id, "create", org_id, now)
    return get_site(conn, site_id), secret


def get_site(conn: Connection, site_id: str) -> Site:
    return _site(get_row(conn, s.sites, "site", site_id))


def list_sites(
    conn: Connection, *, org_id: str | None = None, limit: int = DEFAULT_LIMIT, cursor: str | None = None
) -> Page[Site]:
    query = select(s.sites)
    query = where_equal(query, s.sites, org_id=org_id)
    return paginate(conn, query, s.sites, _site, limit, cursor)


@atomic
def update_site(
    conn: Connection,
    site_id: str,
    *,
    name: str | Unset = UNSET,
    enabled: bool | Unset = UNSET,
    now: datetime | None = None,
) -> Site:
    now = resolve_now(now)
    site = get_site(conn, site_id)
    values: dict[str, Any] = {}
    if name is not UNSET:
        values["name"] = v.name(name)
        if values["name"].lower() != site.name.lower():
            _check_name_free(conn, site.org_id, values["name"])
    if enabled is not UNSET:
        values["enabled"] = v.boolean(enabled, "enabled")
    if values:
        conn.execute(update(s.sites).where(s.sites.c.id == site_id).values(updated_at=now, **values))
        record_change(conn, "site", site_id, "update", site.org_id, now)
    return get_site(conn, site_id)


@atomic
def delete_site(conn: Connection, site_id: str, *, now: datetime | None = None) -> None:
    """Delete a site and its targets."""
    now = resolve_now(now)
    site = get_site(conn, site_id)
    conn.execute(delete(s.sites).where(s.sites.c.id == site_id))
    record_change(conn, "site", site_id, "delete", site.org_id, now)


@atomic
def rotate_site_secret(
    conn: Connection,
    site_id: str,
    *,
    grace: timedelta = SECRET_GRACE_PERIOD,
    now: datetime | None = None,
) -> tuple[Site, str]:
    """A new secret for the site (shown this once); the old one stays valid for ``grace``
    (``timedelta(0)``: revoked at once)."""
    now = resolve_now(now)
    if not isinstance(grace, timedelta) or grace < timedelta(0):
        raise Invalid("grace", "must be a duration of zero or more")
    lock_config(conn)  # two rotations at once: the second keeps the first's secret as the previous one
    row = get_row(conn, s.sites, "site", site_id)
    secret = generate_secret()
    keep = grace > timedelta(0)
    conn.execute(
        update(s.sites)
        .where(s.sites.c.id == site_id)
        .values(
            secret_hash=hash_secret(secret),
            previous_secret_hash=row.secret_hash if keep else None,
            previous_secret_expires_at=now + grace if keep else None,
            updated_at=now,
        )
    )
    record_change(conn, "site", site_id, "update", row.org_id, now)
    return get_site(conn, site_id), secret


def get_site_credentials(conn: Connection, site_id: str) -> SiteCredentials:
    return site_credentials(get_row(conn, s.sites, "site", site_id))


def authenticate_site(
    conn: Connection, site_id: str, secret: str, *, now: datetime | None = None
) -> SiteCredentials | None:
    """The site if ``secret`` is valid for it (whether or not it is enabled: the caller says which
    refusal to give), else None, for an unknown site and a wrong secret alike."""
    if not isinstance(site_id, str) or not isinstance(secret, str):
        return None
    row = conn.execute(select(s.sites).where(s.sites.c.id == site_id)).one_or_none()
    if row is None:
        verify_secret(secret, hash_secret(""))  # same work as for a known site
        return None
    credentials = site_credentials(row)
    return credentials if credentials.accepts(secret, now) else None


def mark_site_seen(
    conn: Connection, site_id: str, *, online: bool = True, now: datetime | None = None
) -> None:
    """Record that the site's edge is connected (or, with ``online=False``, has gone).

    Presence is not configuration: it does not bump the configuration version.
    """
    now = resolve_now(now)
    result = conn.execute(
        update(s.sites)
        .where(s.sites.c.id == site_id)
        .values(online=v.boolean(online, "online"), last_seen_at=now)
    )
    if result.rowcount == 0:
        get_site(conn, site_id)  # raises NotFound


def _check_name_free(conn: Connection, org_id: str, name: str) -> None:
    taken = conn.execute(
        select(s.sites.c.id).where(s.sites.c.org_id == org_id, func.lower(s.sites.c.name) == name.lower())
    ).first()
    if taken is not None:
        raise Conflict("name", s.CONSTRAINT_FIELDS["uq_sites_org_name"][1])
