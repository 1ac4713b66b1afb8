"""What the edges say about their targets' health, as the gateway keeps it.

Edges run the health checks (they are next to the targets) and report each change of
state over CONTROL (``{"type": "health", "results": [...]}``, see docs/protocol.md).
The :class:`HealthBoard` keeps the latest state per (site, target); the HTTP front asks
it whether a target may take requests. A target nobody reported on is healthy: the
gateway is optimistic until the edge says otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from twisted.logger import Logger

#: Longest ``detail`` kept from an edge's report (longer ones are cut).
MAX_DETAIL = 256
#: Longest target id accepted in a report.
MAX_ID = 200


@dataclass(frozen=True, slots=True)
class HealthResult:
    """One target's state as an edge reported it."""

    id: str
    healthy: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class TargetHealth:
    """What the board holds for one target: the state, why, and since when (epoch seconds)."""

    healthy: bool
    detail: str
    since: float


def parse_report(message: dict) -> list[HealthResult]:
    """The results of a ``health`` CONTROL message; ValueError says what is malformed."""
    results = message.get("results")
    if not isinstance(results, list):
        raise ValueError("results must be a list")
    parsed = []
    for index, raw in enumerate(results):
        if not isinstance(raw, dict):
            raise ValueError(f"results[{index}] must be an object")
        target_id, healthy, detail = raw.get("id"), raw.get("healthy"), raw.get("detail", "")
        if not isinstance(target_id, str) or not 0 < len(target_id) <= MAX_ID:
            raise ValueError(f"results[{index}].id must be a non-empty string of at most {MAX_ID} characters")
        if not isinstance(healthy, bool):
            raise ValueError(f"results[{index}].healthy must be true or false")
        if not isinstance(detail, str):
            raise ValueError(f"results[{index}].detail must be a string")
        parsed.append(HealthResult(target_id, healthy, detail[:MAX_DETAIL]))
    return parsed


class HealthBoard:
    """The latest health of every checked target, per site, as reported by its edge."""

    log = Logger()

    def __init__(self, clock=None) -> None:
        self._clock = clock  # anything with seconds() (a reactor, a Clock); default: time.time
        self._states: dict[str, dict[str, TargetHealth]] = {}
        self._subscribers: list[Callable[[str, str, TargetHealth | None], None]] = []

    def _now(self) -> float:
        return self._clock.seconds() if self._clock is not None else time.time()

    def report(self, site_id: str, results: Iterable[HealthResult]) -> None:
        """Record what the site's edge reported (the caller checked the ids are the site's)."""
        for result in results:
            states = self._states.setdefault(site_id, {})
            before = states.get(result.id)
            if before is not None and before.healthy == result.healthy:
                if before.detail != result.detail:  # same state, newer reason: keep it quietly
                    states[result.id] = TargetHealth(result.healthy, result.detail, before.since)
                continue
            state = states[result.id] = TargetHealth(result.healthy, result.detail, self._now())
            self.log.info(
                "site {site}: target {target} is now {state}{detail}",
                site=site_id,
                target=result.id,
                state="healthy" if result.healthy else "unhealthy",
                detail=f": {result.detail}" if result.detail else "",
            )
            self._notify(site_id, result.id, state)

    def healthy(self, site_id: str, target_id: str) -> bool:
        """False only when the edge said so: never reported means healthy."""
        state = self._states.get(site_id, {}).get(target_id)
        return state is None or state.healthy

    def state(self, site_id: str, target_id: str) -> TargetHealth | None:
        """The reported state, or None when unknown."""
        return self._states.get(site_id, {}).get(target_id)

    def forget(self, site_id: str) -> None:
        """Drop the site's states (its last tunnel went: nobody vouches for them any more)."""
        states = self._states.pop(site_id, {})
        if states:
            self.log.info(
                "site {site} is offline: forgetting the health of {n} target(s)", site=site_id, n=len(states)
            )
        for target_id in sorted(states):
            self._notify(site_id, target_id, None)

    def retain(self, site_id: str, target_ids: Iterable[str]) -> None:
        """Drop the states of the site's targets that are no longer checked."""
        keep = set(target_ids)
        states = self._states.get(site_id, {})
        for target_id in sorted(set(states) - keep):
            del states[target_id]
            self._notify(site_id, target_id, None)
        if not states:
            self._states.pop(site_id, None)

    def sites(self) -> list[str]:
        """The sites with at least one known state."""
        return sorted(self._states)

    def states(self) -> list[dict]:
        """Every known state, JSON-ready, for the status API."""
        return [
            {"site": site_id, "target": target_id, "healthy": s.healthy, "detail": s.detail, "since": s.since}
            for site_id in sorted(self._states)
            for target_id, s in sorted(self._states[site_id].items())
        ]

    def subscribe(self, callback: Callable[[str, str, TargetHealth | None], None]) -> None:
        """Call ``callback(site_id, target_id, state)`` on every change; ``state`` is None when
        the target's state is forgotten (back to unknown, so healthy)."""
        self._subscribers.append(callback)

    def _notify(self, site_id: str, target_id: str, state: TargetHealth | None) -> None:
        for callback in list(self._subscribers):
            try:
                callback(site_id, target_id, state)
            except Exception:  # one failing subscriber must not starve the others
                self.log.failure("a health subscriber failed")
