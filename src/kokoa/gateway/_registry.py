"""Which tunnels are up for which site, and which one carries the next stream."""

from __future__ import annotations

import itertools
from collections import defaultdict

from kokoa.tunnel import TunnelProtocol


class TunnelRegistry:
    """Live tunnels by site id. New streams go to the least-loaded tunnel."""

    def __init__(self) -> None:
        self._tunnels: dict[str, list[TunnelProtocol]] = defaultdict(list)
        self._turn = itertools.count()

    def add(self, site_id: str, tunnel: TunnelProtocol) -> None:
        self._tunnels[site_id].append(tunnel)

    def remove(self, site_id: str, tunnel: TunnelProtocol) -> None:
        tunnels = self._tunnels.get(site_id)
        if tunnels and tunnel in tunnels:
            tunnels.remove(tunnel)
            if not tunnels:
                del self._tunnels[site_id]

    def tunnels(self, site_id: str) -> list[TunnelProtocol]:
        return list(self._tunnels.get(site_id, ()))

    def sites_online(self) -> list[str]:
        return [site for site, tunnels in self._tunnels.items() if tunnels]

    def pick(self, site_id: str) -> TunnelProtocol | None:
        """A tunnel that can open a stream now: fewest open streams, ties in turn."""
        usable = [t for t in self._tunnels.get(site_id, ()) if t.can_open_stream]
        if not usable:
            return None
        fewest = min(len(t.streams) for t in usable)
        candidates = [t for t in usable if len(t.streams) == fewest]
        return candidates[next(self._turn) % len(candidates)]

    def all(self) -> list[tuple[str, TunnelProtocol]]:
        return [(site, t) for site, tunnels in self._tunnels.items() for t in tunnels]
