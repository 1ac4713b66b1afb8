"""The gateway's live events for the console, by organization: pure Python, no reactor, no I/O.

The gateway publishes what changes (see :mod:`kokoa.gateway._console` for who publishes what):

``site``
    a site's tunnels changed (an edge connected or dropped): the site's overview entry;
``health``
    a target's health changed: ``{"resource_id", "id", "site_id", "target", "online", "healthy",
    "detail"}``;
``changed``
    the organization's configuration changed: ``{"kind", "id", "op"}`` (``kind`` such as ``site``,
    ``resource``, ``rule``; ``op`` create, update or delete);
``access``
    an access-log row of the organization, rendered as the access-log API renders it (``id`` null:
    not written yet; allowed requests aggregated, with their ``count``).

Subscribers are called synchronously, in the publisher's turn, each with an :class:`Event`; one that
raises is logged and does not stop the others. Publishing to an organization nobody watches costs a
dictionary lookup (publishers check :meth:`EventHub.watched` before building costly payloads).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger

EVENT_NAMES = ("site", "health", "changed", "access")

log = Logger()


@dataclass(frozen=True, slots=True)
class Event:
    """One published event: a number (increasing over the hub's life), its organization, name and
    JSON-ready data."""

    id: int
    org_id: str
    name: str
    data: Any


Subscriber = Callable[[Event], None]


class EventHub:
    """Subscribers by organization, and the events published to them."""

    def __init__(self) -> None:
        self._subscribers: dict[str, list[Subscriber]] = {}
        self._ids = itertools.count(1)
        self.published = 0

    def subscribe(self, org_id: str, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` for each event of ``org_id``; returns the function that stops it
        (idempotent)."""
        self._subscribers.setdefault(org_id, []).append(callback)

        def unsubscribe() -> None:
            callbacks = self._subscribers.get(org_id)
            if callbacks is not None and callback in callbacks:
                callbacks.remove(callback)
                if not callbacks:
                    del self._subscribers[org_id]

        return unsubscribe

    def watched(self, org_id: str | None) -> bool:
        """Whether anyone watches ``org_id``."""
        return org_id is not None and org_id in self._subscribers

    def watched_any(self) -> bool:
        return bool(self._subscribers)

    def watchers(self, org_id: str | None = None) -> int:
        """How many subscribers ``org_id`` has (None: all organizations)."""
        if org_id is None:
            return sum(len(callbacks) for callbacks in self._subscribers.values())
        return len(self._subscribers.get(org_id, ()))

    def publish(self, org_id: str | None, name: str, data: Any) -> Event | None:
        """Give ``data`` to the organization's subscribers as event ``name``; the event, or None if
        nobody watches."""
        callbacks = self._subscribers.get(org_id) if org_id is not None else None
        if not callbacks:
            return None
        assert org_id is not None
        event = Event(next(self._ids), org_id, name, data)
        self.published += 1
        for callback in list(callbacks):
            try:
                callback(event)
            except Exception:  # one failing subscriber must not starve the others
                log.failure("an event subscriber failed")
        return event
