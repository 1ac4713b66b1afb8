"""Handlers: sites, resources, their targets, access grants and rules.

Each write runs in one ``store.run`` transaction together with its audit entry. Before a TCP or UDP
resource starts listening (created enabled, enabled, or moved to another port), the gateway is
asked whether the port is free (``port_available``, on the reactor thread); the write then checks,
in its transaction, that the resource still needs the port that was checked.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection

from kokoa import store as st
from kokoa.store import jsonable

from ._call import NO_CONTENT, Call, Reply, created, ok, page
from ._ops_identity import pick
from ._problems import port_in_use

# -- sites -------------------------------------------------------------------------------------------


def site_in(conn: Connection, org_id: str, site_id: str) -> st.Site:
    site = st.get_site(conn, site_id)
    if site.org_id != org_id:
        raise st.NotFound("site", site_id)
    return site


async def list_sites(call: Call) -> Reply:
    org_id = call.params["org"]

    def tx(conn: Connection) -> st.Page[st.Site]:
        st.get_organization(conn, org_id)
        return st.list_sites(conn, org_id=org_id, **call.query)

    return ok(page(await call.store.run(tx)))


async def create_site(call: Call) -> Reply:
    org_id = call.params["org"]

    def tx(conn: Connection) -> tuple[st.Site, str]:
        site, secret = st.create_site(conn, org_id, call.body["name"], **pick(call.body, "enabled"))
        call.audit(conn, "site.create", org_id=org_id, kind="site", object_id=site.id, after=site)
        return site, secret

    site, secret = await call.store.run(tx)
    return created({"site": jsonable(site), "secret": secret}, f"/orgs/{org_id}/sites/{site.id}")


async def get_site(call: Call) -> Reply:
    return ok(jsonable(await call.store.run(site_in, call.params["org"], call.params["site"])))


async def update_site(call: Call) -> Reply:
    org_id, site_id = call.params["org"], call.params["site"]

    def tx(conn: Connection) -> st.Site:
        before = site_in(conn, org_id, site_id)
        after = st.update_site(conn, site_id, **pick(call.body, "name", "enabled"))
        call.audit(
            conn, "site.update", org_id=org_id, kind="site", object_id=site_id, before=before, after=after
        )
        return after

    return ok(jsonable(await call.store.run(tx)))


async def delete_site(call: Call) -> Reply:
    org_id, site_id = call.params["org"], call.params["site"]

    def tx(conn: Connection) -> None:
        before = site_in(conn, org_id, site_id)
        st.delete_site(conn, site_id)
        call.audit(conn, "site.delete", org_id=org_id, kind="site", object_id=site_id, before=before)

    await call.store.run(tx)
    return NO_CONTENT


async def rotate_site_secret(call: Call) -> Reply:
    org_id, site_id = call.params["org"], call.params["site"]
    grace = {}
    if "grace_seconds" in call.body:
        grace["grace"] = timedelta(seconds=call.body["grace_seconds"])

    def tx(conn: Connection) -> tuple[st.Site, str]:
        before = site_in(conn, org_id, site_id)
        after, secret = st.rotate_site_secret(conn, site_id, **grace)
        call.audit(
            conn,
            "site.rotate_secret",
            org_id=org_id,
            kind="site",
            object_id=site_id,
            before=before,
            after=after,
        )
        return after, secret

    site, secret = await call.store.run(tx)
    return created({"site": jsonable(site), "secret": secret}, f"/orgs/{org_id}/sites/{site_id}")


# -- resources ---------------------------------------------------------------------------------------

RESOURCE_FIELDS = (
    "name",
    "hostname",
    "path_prefix",
    "public_port",
    "enabled",
    "lb_method",
    "sticky",
    "redirect_https",
    "hsts_max_age",
    "public",
    "auth_password",
    "auth_pin",
    "auth_email_allow",
)


def resource_in(conn: Connection, org_id: str, resource_id: str) -> st.Resource:
    resource = st.get_resource(conn, resource_id)
    if resource.org_id != org_id:
        raise st.NotFound("resource", resource_id)
    return resource


def port_needed(current: st.Resource, body: dict[str, Any]) -> tuple[str, int] | None:
    """The (kind, port) an update makes the resource start listening on, if any."""
    if current.kind not in ("tcp", "udp"):
        return None
    enabled = body.get("enabled", current.enabled)
    port = body.get("public_port", current.public_port)
    if not enabled or not isinstance(port, int):
        return None
    if current.enabled and port == current.public_port:
        return None  # already listening there
    return current.kind, port


def check_port(call: Call, needed: tuple[str, int] | None) -> None:
    available = call.services.port_available
    if needed is not None and available is not None and not available(*needed):
        raise port_in_use(needed[1])


async def list_resources(call: Call) -> Reply:
    org_id = call.params["org"]

    def tx(conn: Connection) -> st.Page[st.Resource]:
        st.get_organization(conn, org_id)
        return st.list_resources(conn, org_id=org_id, **call.query)

    return ok(page(await call.store.run(tx)))


async def create_resource(call: Call) -> Reply:
    org_id, body = call.params["org"], call.body
    kind, port = body["kind"], body.get("public_port")
    if kind in ("tcp", "udp") and body.get("enabled", True) and isinstance(port, int):
        check_port(call, (kind, port))

    def tx(conn: Connection) -> st.Resource:
        resource = st.create_resource(conn, org_id, body["name"], kind, **pick(body, *RESOURCE_FIELDS[1:]))
        call.audit(
            conn, "resource.create", org_id=org_id, kind="resource", object_id=resource.id, after=resource
        )
        return resource

    resource = await call.store.run(tx)
    return created(jsonable(resource), f"/orgs/{org_id}/resources/{resource.id}")


async def get_resource(call: Call) -> Reply:
    return ok(jsonable(await call.store.run(resource_in, call.params["org"], call.params["resource"])))


async def update_resource(call: Call) -> Reply:
    org_id, resource_id = call.params["org"], call.params["resource"]
    needed = port_needed(await call.store.run(resource_in, org_id, resource_id), call.body)
    check_port(call, needed)

    def tx(conn: Connection) -> st.Resource:
        before = resource_in(conn, org_id, resource_id)
        if port_needed(before, call.body) != needed:
            raise st.Conflict("public_port", "the resource changed while it was being updated; try again")
        after = st.update_resource(conn, resource_id, **pick(call.body, *RESOURCE_FIELDS))
        call.audit(
            conn,
            "resource.update",
            org_id=org_id,
            kind="resource",
            object_id=resource_id,
            before=before,
            after=after,
        )
        return after

    return ok(jsonable(await call.store.run(tx)))


async def delete_resource(call: Call) -> Reply:
    org_id, resource_id = call.params["org"], call.params["resource"]

    def tx(conn: Connection) -> None:
        before = resource_in(conn, org_id, resource_id)
        st.delete_resource(conn, resource_id)
        call.audit(
            conn, "resource.delete", org_id=org_id, kind="resource", object_id=resource_id, before=before
        )

    await call.store.run(tx)
    return NO_CONTENT


# -- targets -----------------------------------------------------------------------------------------

TARGET_FIELDS = (
    "site_id",
    "host",
    "port",
    "scheme",
    "weight",
    "enabled",
    "health_check",
    "tls_verify",
    "tls_server_name",
)


def target_in(conn: Connection, org_id: str, resource_id: str, target_id: str) -> st.Target:
    resource_in(conn, org_id, resource_id)
    target = st.get_target(conn, target_id)
    if target.resource_id != resource_id:
        raise st.NotFound("target", target_id)
    return target


async def list_targets(call: Call) -> Reply:
    org_id, resource_id = call.params["org"], call.params["resource"]

    def tx(conn: Connection) -> st.Page[st.Target]:
        resource_in(conn, org_id, resource_id)
        return st.list_targets(conn, resource_id=resource_id, **call.query)

    return ok(page(await call.store.run(tx)))


async def create_target(call: Call) -> Reply:
    org_id, resource_id, body = call.params["org"], call.params["resource"], call.body

    def tx(conn: Connection) -> st.Target:
        resource_in(conn, org_id, resource_id)
        extra = pick(body, *TARGET_FIELDS[3:])
        target = st.create_target(conn, resource_id, body["site_id"], body["host"], body["port"], **extra)
        call.audit(conn, "target.create", org_id=org_id, kind="target", object_id=target.id, after=target)
        return target

    target = await call.store.run(tx)
    return created(jsonable(target), f"/orgs/{org_id}/resources/{resource_id}/targets/{target.id}")


async def get_target(call: Call) -> Reply:
    p = call.params
    return ok(jsonable(await call.store.run(target_in, p["org"], p["resource"], p["target"])))


async def update_target(call: Call) -> Reply:
    org_id, resource_id, target_id = call.params["org"], call.params["resource"], call.params["target"]

    def tx(conn: Connection) -> st.Target:
        before = target_in(conn, org_id, resource_id, target_id)
        changes = pick(call.body, *TARGET_FIELDS)
        if "health_check" in changes:  # settings left out keep their value
            changes["health_check"] = {**dataclasses.asdict(before.health_check), **changes["health_check"]}
        after = st.update_target(conn, target_id, **changes)
        call.audit(
            conn,
            "target.update",
            org_id=org_id,
            kind="target",
            object_id=target_id,
            before=before,
            after=after,
        )
        return after

    return ok(jsonable(await call.store.run(tx)))


async def delete_target(call: Call) -> Reply:
    org_id, resource_id, target_id = call.params["org"], call.params["resource"], call.params["target"]

    def tx(conn: Connection) -> None:
        before = target_in(conn, org_id, resource_id, target_id)
        st.delete_target(conn, target_id)
        call.audit(conn, "target.delete", org_id=org_id, kind="target", object_id=target_id, before=before)

    await call.store.run(tx)
    return NO_CONTENT


# -- grants ------------------------------------------------------------------------------------------


def grant_in(conn: Connection, org_id: str, resource_id: str, grant_id: str) -> st.Grant:
    resource_in(conn, org_id, resource_id)
    grant = st.get_grant(conn, grant_id)
    if grant.resource_id != resource_id:
        raise st.NotFound("grant", grant_id)
    return grant


async def list_grants(call: Call) -> Reply:
    org_id, resource_id = call.params["org"], call.params["resource"]

    def tx(conn: Connection) -> st.Page[st.Grant]:
        resource_in(conn, org_id, resource_id)
        return st.list_grants(conn, resource_id=resource_id, **call.query)

    return ok(page(await call.store.run(tx)))


async def create_grant(call: Call) -> Reply:
    org_id, resource_id = call.params["org"], call.params["resource"]

    def tx(conn: Connection) -> st.Grant:
        resource_in(conn, org_id, resource_id)
        grant = st.create_grant(conn, resource_id, **pick(call.body, "role_id", "user_id"))
        call.audit(conn, "grant.create", org_id=org_id, kind="grant", object_id=grant.id, after=grant)
        return grant

    grant = await call.store.run(tx)
    return created(jsonable(grant), f"/orgs/{org_id}/resources/{resource_id}/grants/{grant.id}")


async def get_grant(call: Call) -> Reply:
    p = call.params
    return ok(jsonable(await call.store.run(grant_in, p["org"], p["resource"], p["grant"])))


async def delete_grant(call: Call) -> Reply:
    org_id, resource_id, grant_id = call.params["org"], call.params["resource"], call.params["grant"]

    def tx(conn: Connection) -> None:
        before = grant_in(conn, org_id, resource_id, grant_id)
        st.delete_grant(conn, grant_id)
        call.audit(conn, "grant.delete", org_id=org_id, kind="grant", object_id=grant_id, before=before)

    await call.store.run(tx)
    return NO_CONTENT


# -- rules -------------------------------------------------------------------------------------------

RULE_FIELDS = ("priority", "action", "cidr", "path", "method", "enabled")


def rule_in(conn: Connection, org_id: str, resource_id: str, rule_id: str) -> st.Rule:
    resource_in(conn, org_id, resource_id)
    rule = st.get_rule(conn, rule_id)
    if rule.resource_id != resource_id:
        raise st.NotFound("rule", rule_id)
    return rule


def _rule_cursor(priority: int) -> str:
    return base64.urlsafe_b64encode(f"priority:{priority}".encode()).decode().rstrip("=")


def _after_priority(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    kind, _, number = text.partition(":")
    if kind != "priority" or not number.isdigit() or not number.isascii():
        raise st.Invalid("cursor", "not a cursor from a previous page")
    return int(number)


async def list_rules(call: Call) -> Reply:
    """A resource's rules in evaluation order (lowest priority first), paginated by priority."""
    org_id, resource_id = call.params["org"], call.params["resource"]
    limit: int = call.query.get("limit", st.DEFAULT_LIMIT)
    cursor: str | None = call.query.get("cursor")
    after = -1 if cursor is None else _after_priority(cursor)

    def tx(conn: Connection) -> list[st.Rule]:
        resource_in(conn, org_id, resource_id)
        return st.list_rules(conn, resource_id)

    rules = [r for r in await call.store.run(tx) if r.priority > after]
    items, more = rules[:limit], len(rules) > limit
    next_cursor = _rule_cursor(items[-1].priority) if more else None
    return ok({"items": [jsonable(r) for r in items], "next_cursor": next_cursor})


async def create_rule(call: Call) -> Reply:
    org_id, resource_id, body = call.params["org"], call.params["resource"], call.body

    def tx(conn: Connection) -> st.Rule:
        resource_in(conn, org_id, resource_id)
        extra = pick(body, "cidr", "path", "method", "enabled")
        rule = st.create_rule(conn, resource_id, body["action"], body["priority"], **extra)
        call.audit(conn, "rule.create", org_id=org_id, kind="rule", object_id=rule.id, after=rule)
        return rule

    rule = await call.store.run(tx)
    return created(jsonable(rule), f"/orgs/{org_id}/resources/{resource_id}/rules/{rule.id}")


async def get_rule(call: Call) -> Reply:
    p = call.params
    return ok(jsonable(await call.store.run(rule_in, p["org"], p["resource"], p["rule"])))


async def update_rule(call: Call) -> Reply:
    org_id, resource_id, rule_id = call.params["org"], call.params["resource"], call.params["rule"]

    def tx(conn: Connection) -> st.Rule:
        before = rule_in(conn, org_id, resource_id, rule_id)
        after = st.update_rule(conn, rule_id, **pick(call.body, *RULE_FIELDS))
        call.audit(
            conn, "rule.update", org_id=org_id, kind="rule", object_id=rule_id, before=before, after=after
        )
        return after

    return ok(jsonable(await call.store.run(tx)))


async def delete_rule(call: Call) -> Reply:
    org_id, resource_id, rule_id = call.params["org"], call.params["resource"], call.params["rule"]

    def tx(conn: Connection) -> None:
        before = rule_in(conn, org_id, resource_id, rule_id)
        st.delete_rule(conn, rule_id)
        call.audit(conn, "rule.delete", org_id=org_id, kind="rule", object_id=rule_id, before=before)

    await call.store.run(tx)
    return NO_CONTENT
