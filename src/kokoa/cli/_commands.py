"""``kokoa site add``, ``kokoa resource add``, ``kokoa status``: the admin API from a shell."""

from __future__ import annotations

import argparse
import shlex
import sys
from urllib.parse import urlsplit

from kokoa.config import ConfigError, parse_host_port

from ._client import Api, ApiError, connect, gateway_info


def api_for(args: argparse.Namespace) -> Api:
    return connect(args.api, args.key_file, args.data_dir)


def organization(api: Api, wanted: str | None) -> dict:
    """The organization named or id'd ``wanted``; the only one when not given."""
    orgs = api.all("/orgs")
    if wanted:
        for org in orgs:
            if wanted in (org["id"], org["name"]):
                return org
        raise ApiError(
            f"no organization {wanted!r} (there are: {', '.join(o['name'] for o in orgs) or 'none'})"
        )
    if len(orgs) == 1:
        return orgs[0]
    if not orgs:
        raise ApiError("there is no organization yet: run `kokoa init` first")
    raise ApiError(f"several organizations: pass --org NAME (one of {', '.join(o['name'] for o in orgs)})")


def find_site(api: Api, org: dict, wanted: str) -> dict:
    for site in api.all(f"/orgs/{org['id']}/sites"):
        if wanted in (site["id"], site["name"]):
            return site
    raise ApiError(f"no site {wanted!r} in organization {org['name']!r}")


def site_add(args: argparse.Namespace) -> int:
    api = api_for(args)
    org = organization(api, args.org)
    made = api.post(f"/orgs/{org['id']}/sites", {"name": args.name})
    site, secret = made["site"], made["secret"]
    info = gateway_info(args.data_dir)
    gateway = args.gateway or next(iter(info.get("tunnel", [])), None) or "tls:GATEWAY_HOST:7443"
    ca_file = info.get("ca_file")
    trust = f" --ca-file {shlex.quote(ca_file)}" if ca_file else ""
    print(f"Site {site['name']!r} created: id {site['id']}")
    print(f"Its secret (shown only now; the gateway keeps a hash): {secret}")
    print()
    print("Run the edge next to the services of this site:")
    print(
        f"  KOKOA_SITE_SECRET={shlex.quote(secret)} twistd --pidfile= -n kokoa-edge "
        f"--gateway {gateway} --site {site['id']}{trust}"
    )
    return 0


def resource_add(args: argparse.Namespace) -> int:
    api = api_for(args)
    org = organization(api, args.org)
    site = find_site(api, org, args.site)
    addresses: list[str] = args.target
    if args.tcp_port is not None:
        for flag, value in _http_flags(args).items():
            if value is not None:
                raise ApiError(f"{flag} is for HTTP resources (--host), not TCP ones")
        if len(addresses) > 1:
            raise ApiError("a TCP resource takes one --target HOST:PORT")
        try:
            host, port = parse_host_port(addresses[0], "--target")
        except ConfigError as e:
            raise ApiError(str(e)) from None
        body = {"name": args.name, "kind": "tcp", "public_port": args.tcp_port}
        targets = [{"site_id": site["id"], "host": host, "port": port, "scheme": "tcp"}]
    else:
        body = {"name": args.name, "kind": "http", "hostname": args.host, "path_prefix": args.path}
        body |= {name: value for name, value in _http_settings(args).items() if value is not None}
        targets = [_http_target(address, site) for address in addresses]
    resource = api.post(f"/orgs/{org['id']}/resources", body)
    try:
        for target in targets:
            api.post(f"/orgs/{org['id']}/resources/{resource['id']}/targets", target)
    except ApiError:
        try:
            api.delete(f"/orgs/{org['id']}/resources/{resource['id']}")  # nothing half-made
        except ApiError as e:
            print(f"kokoa: could not remove the half-made resource {resource['id']}: {e}", file=sys.stderr)
        raise
    where = f"tcp port {args.tcp_port}" if args.tcp_port is not None else f"http://{args.host}{args.path}"
    print(
        f"Resource {resource['name']!r} ({resource['id']}): {where} -> {', '.join(addresses)} "
        f"at site {site['name']!r}"
    )
    return 0


def _http_settings(args: argparse.Namespace) -> dict:
    """The HTTP resource settings given on the command line (None: not given, the gateway's default)."""
    return {
        "lb_method": args.lb_method,
        "sticky": True if args.sticky else None,
        "redirect_https": True if args.redirect_https else None,
        "hsts_max_age": args.hsts_max_age,
        "public": True if args.public else None,
    }


def _http_flags(args: argparse.Namespace) -> dict:
    settings = _http_settings(args)
    return {f"--{name.replace('_', '-')}": value for name, value in settings.items()}


def _http_target(address: str, site: dict) -> dict:
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(f"--target {address!r}: give http://HOST:PORT or https://HOST:PORT")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ApiError(f"--target {address!r}: the port must be a number from 1 to 65535") from None
    return {"site_id": site["id"], "host": parts.hostname, "port": port, "scheme": parts.scheme}


def status(args: argparse.Namespace) -> int:
    api = api_for(args)
    live = api.get("/status")
    live_targets = {r["id"]: r["targets"] for r in live.get("resources", []) if r.get("kind") == "http"}
    for org in api.all("/orgs"):
        print(f"organization {org['name']} ({org['id']})")
        for site in api.all(f"/orgs/{org['id']}/sites"):
            tunnels = live.get("sites", {}).get(site["id"], {}).get("tunnels", [])
            state = f"online, {len(tunnels)} tunnel(s)" if tunnels else "offline"
            seen = f", last seen {site['last_seen_at']}" if site.get("last_seen_at") else ""
            print(f"  site {site['name']} ({site['id']}): {state}{seen}")
            for t in tunnels:
                print(f"    tunnel {t['peer']}: rtt {t['rtt_ms']} ms, {t['streams']} stream(s)")
        for resource in api.all(f"/orgs/{org['id']}/resources"):
            where = (
                f"tcp:{resource['public_port']}"
                if resource["kind"] != "http"
                else f"http://{resource['hostname']}{resource['path_prefix'] or '/'}"
            )
            state = "" if resource["enabled"] else " (disabled)"
            print(f"  resource {resource['name']}: {where}{state}")
            for target in live_targets.get(resource["id"], []):
                print(f"    target {target['scheme']}://{target['target']}: {_availability(target)}")
    return 0


def _availability(target: dict) -> str:
    """How the gateway sees an HTTP target: in the pool, or why not."""
    if not target.get("online"):
        return "site offline"
    health = target.get("health")
    if health is not None and not health["healthy"]:
        return f"unhealthy ({health['detail']})"
    return "available" if health is None else f"healthy ({health['detail']})"


def fail(message: str) -> int:
    print(f"kokoa: {message}", file=sys.stderr)
    return 2


def resource_grant(args: argparse.Namespace) -> int:
    """``kokoa resource grant NAME --role ROLE | --user EMAIL``: who may reach a protected resource."""
    api = api_for(args)
    org = organization(api, args.org)
    resource = next(
        (r for r in api.all(f"/orgs/{org['id']}/resources") if args.name in (r["id"], r["name"])), None
    )
    if resource is None:
        raise ApiError(f"no resource {args.name!r} in organization {org['name']!r}")
    if args.role:
        roles = api.all(f"/orgs/{org['id']}/roles")
        role = next((r for r in roles if args.role in (r["id"], r["name"])), None)
        if role is None:
            raise ApiError(f"no role {args.role!r} (there are: {', '.join(r['name'] for r in roles)})")
        body, who = {"role_id": role["id"]}, f"role {role['name']!r}"
    else:
        members = api.all(f"/orgs/{org['id']}/members")
        users = {u["id"]: u for u in api.all("/users")} if members else {}
        member = next(
            (m for m in members if args.user in (m["user_id"], users.get(m["user_id"], {}).get("email"))),
            None,
        )
        if member is None:
            raise ApiError(f"no member {args.user!r} in organization {org['name']!r}")
        body, who = {"user_id": member["user_id"]}, f"user {args.user!r}"
    api.post(f"/orgs/{org['id']}/resources/{resource['id']}/grants", body)
    print(f"{who} may now reach {resource['name']!r} (after signing in)")
    return 0
