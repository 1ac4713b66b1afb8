"""Reads for the web console: one organization's configuration at once (a handful of queries, however
many resources it has), for its overview, its launcher and its access decisions."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from . import _schema as s
from ._access import Grant, Rule, _grant, _rule
from ._resources import Resource, Target, _resource, _target
from ._sites import Site, _site


@dataclass(frozen=True, slots=True)
class OrgConfig:
    """Everything of one organization the data plane serves, in creation order (rules: by resource
    and priority). Disabled objects included."""

    org_id: str
    sites: tuple[Site, ...]
    resources: tuple[Resource, ...]
    targets: tuple[Target, ...]
    grants: tuple[Grant, ...]
    rules: tuple[Rule, ...]

    def targets_of(self, resource_id: str) -> tuple[Target, ...]:
        return tuple(t for t in self.targets if t.resource_id == resource_id)


def load_org_config(conn: Connection, org_id: str) -> OrgConfig:
    """The organization's sites, resources, targets, grants and rules (its existence is not checked:
    an unknown organization has none)."""
    r, t, g, ru = s.resources, s.targets, s.grants, s.rules
    sites = conn.execute(
        select(s.sites).where(s.sites.c.org_id == org_id).order_by(s.sites.c.created_at, s.sites.c.id)
    )
    resources = conn.execute(select(r).where(r.c.org_id == org_id).order_by(r.c.created_at, r.c.id))
    of_org = select(r.c.id).where(r.c.org_id == org_id)
    targets = conn.execute(select(t).where(t.c.resource_id.in_(of_org)).order_by(t.c.created_at, t.c.id))
    grants = conn.execute(select(g).where(g.c.resource_id.in_(of_org)).order_by(g.c.created_at, g.c.id))
    rules = conn.execute(
        select(ru).where(ru.c.resource_id.in_(of_org)).order_by(ru.c.resource_id, ru.c.priority)
    )
    return OrgConfig(
        org_id,
        tuple(_site(row) for row in sites),
        tuple(_resource(row) for row in resources),
        tuple(_target(row) for row in targets),
        tuple(_grant(row) for row in grants),
        tuple(_rule(row) for row in rules),
    )
