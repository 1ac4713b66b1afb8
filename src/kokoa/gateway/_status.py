"""The gateway's live status (sites online, their tunnels and streams), served by the admin API
at ``GET /api/v1/status``."""

from __future__ import annotations

from ._model import ISiteDirectory
from ._registry import TunnelRegistry


def status_snapshot(directory: ISiteDirectory, registry: TunnelRegistry, front=None) -> dict:
    """A JSON-ready picture of the data plane, read from memory."""
    sites = {}
    http_resources = directory.http_resources()
    http_sites = {t.site_id for r in http_resources for t in r.targets}
    for site_id in {r.site_id for r in directory.tcp_resources()} | http_sites | set(registry.sites_online()):
        site = directory.site(site_id)
        tunnels = registry.tunnels(site_id)
        sites[site_id] = {
            "name": site.name if site else site_id,
            "online": bool(tunnels),
            "tunnels": [t.stats() for t in tunnels],
        }
    return {
        "sites": sites,
        "resources": [
            {
                "name": r.name,
                "kind": "tcp",
                "site": r.site_id,
                "listen": r.listen,
                "target": r.target,
                "enabled": r.enabled,
            }
            for r in directory.tcp_resources()
        ]
        + [
            {
                "id": r.id,
                "name": r.name,
                "kind": "http",
                "hostname": r.hostname,
                "path_prefix": r.path_prefix,
                "enabled": r.enabled,
                "lb_method": r.lb_method,
                "targets": [_http_target(t, front) for t in r.targets],
            }
            for r in http_resources
        ],
        "http": _front_stats(front),
    }


def _http_target(target, front) -> dict:
    entry = {"id": target.id, "site": target.site_id, "target": target.target, "scheme": target.scheme}
    if front is not None:
        entry["online"] = front.online(target)
        entry["available"] = front.available(target)
        if front.health is not None:
            state = front.health.state(target.site_id, target.id)
            entry["health"] = None if state is None else {"healthy": state.healthy, "detail": state.detail}
    return entry


def _front_stats(front) -> dict | None:
    if front is None:
        return None
    return {
        "client_connections": len(front.connections),
        "requests": front.requests,
        "upstream_streams_opened": front.pool.opened,
        "upstream_idle": front.pool.idle_count(),
    }
