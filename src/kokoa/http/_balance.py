"""Choosing a target for a request: weighted round-robin or least connections, with
optional stickiness. Pure code; the proxy tells it which targets can take a request."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from kokoa.gateway._model import HTTPResource, HTTPTarget

#: The cookie that pins a client to a target when a resource is sticky.
STICKY_COOKIE = b"kokoa_sticky"


def sticky_value(target: HTTPTarget) -> str:
    """An opaque token for a target (its id is not shown to clients)."""
    return hashlib.sha256(b"kokoa-sticky:" + target.id.encode()).hexdigest()[:20]


class Balancer:
    """The state of one resource's load balancing (kept across configuration changes
    by target id)."""

    def __init__(self) -> None:
        self._current: dict[str, int] = {}  # smooth weighted round-robin scores
        self.active: dict[str, int] = {}  # requests in flight per target id

    def choose(
        self,
        resource: HTTPResource,
        available: Callable[[HTTPTarget], bool],
        sticky: str | None = None,
    ) -> HTTPTarget | None:
        """A target for the next request, or None when no target can take it."""
        candidates = [t for t in resource.targets if t.weight > 0 and available(t)]
        if not candidates:
            return None
        if resource.sticky and sticky:
            for target in candidates:
                if sticky_value(target) == sticky:
                    return target
        if resource.lb_method == "least_connections":
            return self._least_connections(candidates)
        return self._round_robin(candidates)

    def _round_robin(self, candidates: Sequence[HTTPTarget]) -> HTTPTarget:
        # nginx's smooth weighted round-robin: each pick adds every weight to its score,
        # takes the highest and subtracts the total from it. Evenly spread, weights kept.
        total = 0
        best = None
        for target in candidates:
            score = self._current.get(target.id, 0) + target.weight
            self._current[target.id] = score
            total += target.weight
            if best is None or score > self._current[best.id]:
                best = target
        assert best is not None
        self._current[best.id] -= total
        return best

    def _least_connections(self, candidates: Sequence[HTTPTarget]) -> HTTPTarget:
        # Fewest requests in flight relative to weight; ties go round-robin.
        fewest = min(self.active.get(t.id, 0) / t.weight for t in candidates)
        tied = [t for t in candidates if self.active.get(t.id, 0) / t.weight == fewest]
        return tied[0] if len(tied) == 1 else self._round_robin(tied)

    def started(self, target: HTTPTarget) -> None:
        self.active[target.id] = self.active.get(target.id, 0) + 1

    def finished(self, target: HTTPTarget) -> None:
        left = self.active.get(target.id, 0) - 1
        if left > 0:
            self.active[target.id] = left
        else:
            self.active.pop(target.id, None)

    def forget_except(self, target_ids: set[str]) -> None:
        """Drop the scores of targets that no longer exist."""
        for key in [k for k in self._current if k not in target_ids]:
            del self._current[key]
