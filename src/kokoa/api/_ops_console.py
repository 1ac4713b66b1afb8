"""Handlers for the web console: who is signed in (``/me``), what they may open (``/me/resources``),
and the live picture of an organization.

Nothing here writes: these routes read the store, and the gateway's memory through
:class:`~kokoa.api._call.Services` (None where the API is served without a gateway: 503).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from kokoa import store as st
from kokoa.policy import Identity, PolicySet

from ._auth import Principal
from ._call import Call, Reply, ok
from ._problems import FieldError, Problem, invalid, not_found, unavailable
from ._sse import Event, Push, Stream


def _all_organizations(conn: Connection) -> list[st.Organization]:
    orgs: list[st.Organization] = []
    cursor = None
    while True:
        page = st.list_organizations(conn, limit=st.MAX_LIMIT, cursor=cursor)
        orgs += page.items
        cursor = page.next_cursor
        if cursor is None:
            return orgs


def _org_entry(org: st.Organization, role: str | None) -> dict[str, Any]:
    return {"id": org.id, "name": org.name, "role": role}


async def get_me(call: Call) -> Reply:
    """The caller: a console user with their organizations and roles, or an API key with the
    organizations it may act in."""
    principal = call.principal
    assert principal is not None
    if principal.kind == "user":
        return ok(await call.store.run(_user_me, principal))

    def key_tx(conn: Connection) -> list[dict[str, Any]]:
        if principal.instance_wide:
            return [_org_entry(org, None) for org in _all_organizations(conn)]
        return [_org_entry(st.get_organization(conn, principal.org_id), None)]

    prefix = principal.actor.removeprefix("key:")
    orgs = await call.store.run(key_tx)
    return ok({"kind": "api_key", "key": {"prefix": prefix, "org_id": principal.org_id}, "orgs": orgs})


def _user_me(conn: Connection, principal: Principal) -> dict[str, Any]:
    assert principal.user_id is not None
    user = st.get_user(conn, principal.user_id)
    orgs = [_org_entry(st.get_organization(conn, org_id), role) for org_id, role in principal.orgs]
    return {
        "kind": "user",
        "user": {"id": user.id, "email": user.email, "name": user.display_name},
        "orgs": orgs,
    }


# -- the launcher: what the caller may open -----------------------------------------------------------


def _identity(conn: Connection, user_id: str) -> Identity | None:
    """The user as the gateway's gate sees them (their roles in every organization), or None if they
    may not sign in (disabled, invited)."""
    from kokoa.auth._identities import identity_of

    found = st.lookup_user_identity(conn, user_id)
    return None if found is None else identity_of(found)


def _may_open(
    policies: PolicySet, resource: st.Resource, identity: Identity, client_address: str | None
) -> bool:
    """Whether the gateway's policy engine lets ``identity`` open the resource from ``client_address``:
    its URL (the path prefix) with GET for an HTTP resource, a connection for a TCP or UDP one."""
    from kokoa.http._router import BadTarget, normalize_target

    if resource.kind == "http":
        try:
            match_path = normalize_target((resource.path_prefix or "/").encode("ascii")).match_path
        except (BadTarget, UnicodeError):
            return False
        decision = policies.decide(resource.id, match_path, "GET", client_address, identity)
    else:
        decision = policies.decide(resource.id, None, None, client_address, identity)
    return decision.allowed


def launcher_entry(
    org: st.Organization, resource: st.Resource, public_host: str | None, https_port: int | None
) -> dict[str, Any] | None:
    """How the launcher shows a resource: its URL (HTTP) or address (TCP, UDP); None if it has none."""
    entry: dict[str, Any] = {
        "org_id": org.id,
        "org_name": org.name,
        "id": resource.id,
        "name": resource.name,
        "kind": resource.kind,
        "public": resource.public,
    }
    if resource.kind == "http":
        if resource.hostname is None:
            return None
        if resource.hostname.startswith("*."):
            entry["url"] = None  # a wildcard: any one name under it, no single link
        else:
            port = "" if https_port in (None, 443) else f":{https_port}"
            entry["url"] = f"https://{resource.hostname}{port}{resource.path_prefix or '/'}"
        return entry
    if resource.public_port is None or not public_host:
        return None
    host = f"[{public_host}]" if ":" in public_host else public_host
    entry["address"] = f"{host}:{resource.public_port}"
    return entry


def _launcher(
    conn: Connection,
    user_id: str,
    orgs: list[tuple[str, str]],
    client_address: str | None,
    public_host: str | None,
    https_port: int | None,
) -> list[dict[str, Any]]:
    identity = _identity(conn, user_id)
    if identity is None:
        return []
    items: list[dict[str, Any]] = []
    for org_id, _role in orgs:
        org = st.get_organization(conn, org_id)
        config = st.load_org_config(conn, org_id)
        policies = PolicySet.build(
            config.rules,
            config.grants,
            [r.id for r in config.resources if r.public],
            resources=[r.id for r in config.resources],
        )
        for resource in config.resources:
            if not resource.enabled:
                continue
            if not _may_open(policies, resource, identity, client_address):
                continue
            entry = launcher_entry(org, resource, public_host, https_port)
            if entry is not None:
                items.append(entry)
    return items


async def list_my_resources(call: Call) -> Reply:
    """The resources the caller may open, over all their organizations, decided by the gateway's policy
    engine (grants to them or their roles, public resources, rules for the caller's address), exactly
    as the gate will decide when they open it: an Owner without a grant sees no protected resource,
    since the gate would refuse it. An organization's API key made for
    a member sees what that member sees in the key's organization; other keys see nothing."""
    principal = call.principal
    assert principal is not None
    view = call.services.console
    public_host = view.public_host if view is not None else call.host
    https_port = view.https_port if view is not None else None

    def tx(conn: Connection) -> list[dict[str, Any]]:
        if principal.kind == "user":
            assert principal.user_id is not None
            user_id, orgs = principal.user_id, list(principal.orgs)
        else:
            if principal.key_id is None or principal.org_id is None:
                return []
            key = st.get_api_key(conn, principal.key_id)
            if key.created_by is None:
                return []
            user_id = key.created_by
            memberships = {m.org_id: m.role_name for m in st.list_user_memberships(conn, user_id)}
            if principal.org_id not in memberships:
                return []
            orgs = [(principal.org_id, memberships[principal.org_id])]
        return _launcher(conn, user_id, orgs, call.source_address, public_host, https_port)

    return ok({"items": await call.store.run(tx)})


# -- the organization's live picture ------------------------------------------------------------------

#: How far back the overview counts requests and denials.
LAST_HOUR = timedelta(hours=1)
#: How many sign-ins the overview shows.
SIGNINS = 10


def view_of(call: Call) -> Any:
    """The gateway's live view, or 503 where this API serves without one."""
    view = call.services.console
    if view is None:
        raise unavailable("not available on this listener: there is no gateway behind it")
    return view


def _target_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def overview(
    view: Any,
    config: st.OrgConfig,
    totals: list[tuple[str | None, str, int]],
    signins: list[st.AccessEntry],
) -> dict[str, Any]:
    """The overview of an organization: its store configuration, with the live state of this gateway."""
    sites = [view.site(site.id, site.name, site.enabled) for site in config.sites]
    resources = []
    for resource in config.resources:
        entry: dict[str, Any] = {
            "id": resource.id,
            "name": resource.name,
            "kind": resource.kind,
            "enabled": resource.enabled,
        }
        if resource.kind == "http":
            entry["hostname"] = resource.hostname
            entry["path_prefix"] = resource.path_prefix
        else:
            entry["listen"] = resource.public_port
        checked = resource.kind == "http"
        entry["targets"] = [
            {
                "id": target.id,
                "site_id": target.site_id,
                "target": _target_address(target.host, target.port),
                "enabled": target.enabled,
                **view.target(target.site_id, target.id, checked and target.health_check.enabled),
            }
            for target in config.targets_of(resource.id)
        ]
        resources.append(entry)
    by_resource: dict[str | None, dict[str, int]] = {}
    for resource_id, outcome, number in totals:
        counts = by_resource.setdefault(resource_id, {"requests": 0, "denials": 0})
        counts["requests"] += number
        if outcome == "deny":
            counts["denials"] += number
    return {
        "sites": sites,
        "resources": resources,
        "last_hour": {
            "requests": sum(c["requests"] for c in by_resource.values()),
            "denials": sum(c["denials"] for c in by_resource.values()),
            "by_resource": [
                {"resource_id": resource_id, **counts}
                for resource_id, counts in sorted(by_resource.items(), key=lambda item: item[0] or "")
            ],
        },
        "signins": [st.jsonable(entry) for entry in signins],
    }


async def _overview(call: Call, view: Any, org_id: str) -> dict[str, Any]:
    since = datetime.now(UTC) - LAST_HOUR

    def tx(conn: Connection) -> tuple[st.OrgConfig, list[tuple[str | None, str, int]], list[st.AccessEntry]]:
        st.get_organization(conn, org_id)
        return (
            st.load_org_config(conn, org_id),
            st.access_totals(conn, org_id, since),
            st.recent_signins(conn, org_id, SIGNINS),
        )

    config, totals, signins = await call.store.run(tx)
    return overview(view, config, totals, signins)


async def get_overview(call: Call) -> Reply:
    """The organization's sites with their tunnels to this gateway, its resources with the state of
    their targets, the last hour's requests and denials, and its latest sign-ins."""
    view = view_of(call)
    return ok(await _overview(call, view, call.params["org"]))


async def org_events(call: Call) -> Stream:
    """The organization's live events (Server-Sent Events): first ``overview`` (as GET .../overview),
    then ``site``, ``health``, ``changed`` and ``access`` as they happen."""
    view = view_of(call)
    org_id = call.params["org"]
    await call.store.run(st.get_organization, org_id)  # 404 for an unknown one, before streaming

    def subscribe(push: Push) -> Any:
        return view.events.subscribe(org_id, lambda event: push(event.name, event.data, str(event.id)))

    async def backlog() -> list[Event]:
        return [Event("overview", await _overview(call, view, org_id))]

    return Stream(subscribe, backlog)


# -- which rule decides a request -------------------------------------------------------------------


def _decide_request(
    config: st.OrgConfig, resource: st.Resource, method: str, path: str, client_address: str
) -> dict[str, Any]:
    """What the gateway decides for an anonymous request (``method`` ``path`` from ``client_address``)
    to ``resource``, with the store's current rules, grants and public flag: the router's one
    routing decision, then the policy engine (:meth:`PolicySet.decide_route`), as the HTTP front and
    the gate do; for a TCP or UDP resource, the gate's decision for a connection."""
    from kokoa.auth._gate import connection_decision
    from kokoa.gateway._store_directory import _http_resource
    from kokoa.http._front import INTERNAL_PREFIX
    from kokoa.http._router import BadTarget, Router, normalize_target

    rules = [rule for rule in config.rules if rule.resource_id == resource.id]
    policies = PolicySet.build(
        rules,
        [grant for grant in config.grants if grant.resource_id == resource.id],
        [resource.id] if resource.public else [],
        resources=[resource.id],
    )
    if resource.kind != "http":
        decision = connection_decision(policies, resource.id, client_address)
    else:
        try:
            target = normalize_target(path.encode("ascii"))
        except (BadTarget, UnicodeError) as e:
            raise invalid([FieldError("path", f"the gateway refuses this request target: {e}")]) from None
        hostname = resource.hostname or ""
        host = "test." + hostname[2:] if hostname.startswith("*.") else hostname
        if target.path.startswith(INTERNAL_PREFIX):
            return {
                "decision": "internal",
                "rule": None,
                "reason": f"the gateway answers {INTERNAL_PREFIX}... paths itself (signing in, share "
                "links): no rule applies",
            }
        http_resource = _http_resource(resource, config.targets_of(resource.id))
        if not http_resource.enabled:  # the tester decides as if it were enabled
            import dataclasses

            http_resource = dataclasses.replace(http_resource, enabled=True)
        route = Router([http_resource]).route(host, target)
        if route is None:
            return {
                "decision": "not_routed",
                "rule": None,
                "reason": f"{target.match_path} is not under the resource's path prefix "
                f"{resource.path_prefix}: the gateway does not send it to this resource",
            }
        decision = policies.decide_route(route, method, client_address, None)
    rule = next((r for r in rules if r.id == decision.rule_id), None) if decision.rule_id else None
    outcome = decision.outcome
    if outcome == "allow" and rule is not None and rule.action == "bypass":
        outcome = "bypass"
    return {"decision": outcome, "rule": st.jsonable(rule), "reason": decision.reason}


async def test_rules(call: Call) -> Reply:
    """Which rule decides a request to the resource (and what it decides), for an anonymous visitor."""
    import ipaddress

    org_id, resource_id, body = call.params["org"], call.params["resource"], call.body
    try:
        ipaddress.ip_address(body["client_address"])
    except ValueError:
        raise invalid([FieldError("client_address", "must be an IPv4 or IPv6 address")]) from None

    def tx(conn: Connection) -> dict[str, Any]:
        resource = st.get_resource(conn, resource_id)
        if resource.org_id != org_id:
            raise st.NotFound("resource", resource_id)
        config = st.load_org_config(conn, org_id)
        return _decide_request(config, resource, body["method"], body["path"], body["client_address"])

    return ok(await call.store.run(tx))


# -- requests and denials over time -------------------------------------------------------------------

#: The most buckets one answer of access-stats holds.
MAX_BUCKETS = 500
DEFAULT_BUCKET = 300
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def access_stats(call: Call) -> Reply:
    """Allowed and denied requests (and TCP connections) per resource, per bucket of time, summed in
    SQL over the access log; buckets are aligned on multiples of ``bucket`` seconds since the epoch and
    only those with requests are listed."""
    org_id = call.params["org"]
    bucket: int = call.query.get("bucket", DEFAULT_BUCKET)
    now = datetime.now(UTC)
    until: datetime = call.query.get("until") or now
    since: datetime = call.query.get("since") or until - LAST_HOUR
    if since < _EPOCH:
        raise invalid([FieldError("since", "must be after 1970-01-01T00:00:00Z")])
    if since >= until:
        raise invalid([FieldError("since", "must be before until")])
    first = int((since - _EPOCH).total_seconds()) // bucket
    last = -(-int((until - _EPOCH).total_seconds()) // bucket)
    if last - first > MAX_BUCKETS:
        raise invalid(
            [
                FieldError(
                    "bucket",
                    f"since to until is {last - first} buckets of {bucket} seconds; at most {MAX_BUCKETS}: "
                    "take larger buckets or a shorter time",
                )
            ]
        )

    def tx(conn: Connection) -> tuple[dict[str, str], list[tuple[str | None, int, int, int]]]:
        st.get_organization(conn, org_id)
        names: dict[str, str] = {}
        cursor = None
        while True:
            page = st.list_resources(conn, org_id=org_id, limit=st.MAX_LIMIT, cursor=cursor)
            names.update((r.id, r.name) for r in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        return names, st.access_series(conn, org_id, since, until, bucket)

    names, rows = await call.store.run(tx)
    series: dict[str | None, dict[str, Any]] = {}
    for resource_id, number, allowed, denied in rows:
        entry = series.get(resource_id)
        if entry is None:
            entry = series[resource_id] = {
                "resource_id": resource_id,
                "name": names.get(resource_id) if resource_id is not None else None,
                "points": [],
            }
        at = (_EPOCH + timedelta(seconds=number * bucket)).isoformat()
        entry["points"].append([at, allowed, denied])
    ordered = sorted(
        series.values(), key=lambda e: (e["name"] is None, e["name"] or "", e["resource_id"] or "")
    )
    return ok({"bucket_seconds": bucket, "series": ordered})


# -- the request inspector ----------------------------------------------------------------------------


async def inspect_resource(call: Call) -> Stream:
    """The requests going through an HTTP resource (Server-Sent Events): those the gateway's ring holds
    first, then each as it ends, as ``request`` events (heads redacted by the inspector). The gateway
    keeps the ring only while someone watches."""
    from kokoa.http._inspector import InspectorBusy

    view = view_of(call)
    inspector = view.inspector
    if inspector is None:
        raise unavailable("this gateway has no request inspector")
    org_id, resource_id = call.params["org"], call.params["resource"]
    resource = await call.store.run(st.get_resource, resource_id)
    if resource.org_id != org_id:
        raise st.NotFound("resource", resource_id)
    if resource.kind != "http":
        raise not_found(
            f"resource {resource_id} is a {resource.kind} resource: the inspector sees HTTP requests"
        )

    def subscribe(push: Push) -> Any:
        try:
            return inspector.watch(resource_id, lambda entry: push("request", entry, str(entry.get("id"))))
        except InspectorBusy as e:
            raise Problem(503, f"the request inspector is busy: {e}", headers={"Retry-After": "5"}) from None

    async def backlog() -> list[Event]:
        return [Event("request", entry, str(entry.get("id"))) for entry in inspector.recent(resource_id)]

    return Stream(subscribe, backlog)
