"""The gateway's live status (sites online, their tunnels and streams), served by the admin API
at ``GET /api/v1/status``."""

from __future__ import annotations

from ._model import ISiteDirectory
from ._registry import TunnelRegistry


def status_snapshot(directory: ISiteDirectory, registry: TunnelRegistry) -> dict:
    """A JSON-ready picture of the data plane, read from memory."""
    sites = {}
    for site_id in {r.site_id for r in directory.tcp_resources()} | set(registry.sites_online()):
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
        ],
    }
