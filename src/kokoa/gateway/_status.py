"""A read-only JSON status page: sites online, their tunnels and streams."""

from __future__ import annotations

import json

from twisted.web.resource import Resource

from ._model import ISiteDirectory
from ._registry import TunnelRegistry


class StatusResource(Resource):
    isLeaf = True

    def __init__(self, directory: ISiteDirectory, registry: TunnelRegistry) -> None:
        super().__init__()
        self.directory = directory
        self.registry = registry

    def render_GET(self, request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(self.snapshot(), indent=2).encode()

    def snapshot(self) -> dict:
        sites = {}
        for site_id in {r.site_id for r in self.directory.tcp_resources()} | set(
            self.registry.sites_online()
        ):
            site = self.directory.site(site_id)
            tunnels = self.registry.tunnels(site_id)
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
                for r in self.directory.tcp_resources()
            ],
        }


def status_root(directory: ISiteDirectory, registry: TunnelRegistry) -> Resource:
    """``/api/v1/status`` (the admin API grows around it)."""
    root, api, v1 = Resource(), Resource(), Resource()
    root.putChild(b"api", api)
    api.putChild(b"v1", v1)
    v1.putChild(b"status", StatusResource(directory, registry))
    return root
