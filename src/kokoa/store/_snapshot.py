"""What the data plane serves from memory: every site, resource and target, read in one transaction,
with the configuration version it reflects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, select

from . import _schema as s
from ._access import Grant, Rule, _grant, _rule
from ._common import Change
from ._resources import Resource, Target, _resource, _target
from ._sites import SiteCredentials, site_credentials


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The data plane's configuration at ``version`` (compare with :func:`config_version`)."""

    version: int
    sites: tuple[SiteCredentials, ...]
    resources: tuple[Resource, ...]
    targets: tuple[Target, ...]
    grants: tuple[Grant, ...] = ()
    rules: tuple[Rule, ...] = ()

    def site(self, site_id: str) -> SiteCredentials | None:
        return next((site for site in self.sites if site.id == site_id), None)

    def targets_of(self, resource_id: str) -> tuple[Target, ...]:
        return tuple(t for t in self.targets if t.resource_id == resource_id)


def config_version(conn: Connection) -> int:
    """The configuration version: bumped by every configuration write, in its transaction."""
    return conn.execute(select(s.config_version.c.version).where(s.config_version.c.id == 1)).scalar_one()


def load_snapshot(conn: Connection) -> Snapshot:
    """Every site, resource, target, grant and rule (all of them, enabled or not), in creation order.

    Run it in one transaction (``store.run(load_snapshot)``) so the parts agree with each other; on
    PostgreSQL that takes a REPEATABLE READ transaction, which :meth:`Store.run` does not ask for
    (READ COMMITTED is its default): see :meth:`Store.snapshot`.
    """
    version = config_version(conn)
    order = (s.sites.c.created_at, s.sites.c.id)
    sites = tuple(site_credentials(r) for r in conn.execute(select(s.sites).order_by(*order)))
    resources = tuple(
        _resource(r)
        for r in conn.execute(select(s.resources).order_by(s.resources.c.created_at, s.resources.c.id))
    )
    targets = tuple(
        _target(r) for r in conn.execute(select(s.targets).order_by(s.targets.c.created_at, s.targets.c.id))
    )
    grants = tuple(
        _grant(r) for r in conn.execute(select(s.grants).order_by(s.grants.c.created_at, s.grants.c.id))
    )
    rules = tuple(
        _rule(r) for r in conn.execute(select(s.rules).order_by(s.rules.c.resource_id, s.rules.c.priority))
    )
    return Snapshot(version, sites, resources, targets, grants, rules)


def changes_since(conn: Connection, version: int, limit: int = 1000) -> list[Change]:
    """The changes after configuration version ``version``, oldest first."""
    c = s.changes
    rows = conn.execute(select(c).where(c.c.version > version).order_by(c.c.id).limit(limit))
    return [Change(r.version, r.kind, r.object_id, r.op, r.org_id, r.at) for r in rows]


def prune_changes(conn: Connection, before: datetime) -> int:
    """Forget the change log older than ``before`` (the version counter is kept); returns how many."""
    return conn.execute(delete(s.changes).where(s.changes.c.at < before)).rowcount
