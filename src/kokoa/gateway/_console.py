"""What the console sees of a running gateway: :class:`ConsoleView`, given to the admin API
(``Services.console``), reads the tunnels, their health and the request inspector from memory, and
publishes what changes to the :class:`~kokoa.gateway._events.EventHub` (see that module for the events).

Who feeds it (wired in :mod:`kokoa.gateway.tap`): the tunnel handler on every tunnel up or down
(``site``), the health board on every change (``health``), the directory on every configuration
change (``changed``, read from the store's change log), the access recorder on every row (``access``).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger

from kokoa.config import ConfigError, check_keys

from ._events import EventHub
from ._health import HealthBoard, TargetHealth
from ._registry import TunnelRegistry

log = Logger()


#: Defaults and bounds of the ``[console]`` settings.
DEFAULT_MAX_STREAMS = 64
DEFAULT_MAX_BUFFER = 1024 * 1024
MAX_STREAMS_LIMIT = 100_000
MIN_BUFFER, MAX_BUFFER_LIMIT = 16 * 1024, 1024 * 1024 * 1024


@dataclass
class ConsoleSettings:
    """The ``[console]`` table: bounds of the console's live event streams (Server-Sent Events)."""

    #: Event streams (an organization's events, a resource's inspector) open at once on this gateway,
    #: over all its API listeners; beyond, 503 with Retry-After.
    max_streams: int = DEFAULT_MAX_STREAMS
    #: Bytes of events one stream may hold back while its client does not read; beyond, the stream
    #: is closed (the browser reconnects).
    max_buffer: int = DEFAULT_MAX_BUFFER


def parse_console(table: Any, where: str) -> ConsoleSettings:
    """The ``[console]`` table (``where`` names it in errors)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    check_keys(table, {"max_streams", "max_buffer"}, where)
    settings = ConsoleSettings()
    bounds = {"max_streams": (1, MAX_STREAMS_LIMIT), "max_buffer": (MIN_BUFFER, MAX_BUFFER_LIMIT)}
    for key, (low, high) in bounds.items():
        if key not in table:
            continue
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            unit = " bytes" if key == "max_buffer" else ""
            raise ConfigError(
                f"{where}: {key} must be a whole number from {low} to {high}{unit}, not {value!r}"
            )
        setattr(settings, key, value)
    return settings


def target_address(host: str, port: int) -> str:
    """``host:port`` (an IPv6 host in brackets), as targets are shown everywhere."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ConsoleView:
    """The gateway's live state for the console's API routes, and the publisher of its events."""

    def __init__(
        self,
        *,
        registry: TunnelRegistry,
        tunnels: Any,
        health: HealthBoard,
        directory: Any,
        store_directory: Any,
        store: Callable[[], Any],
        events: EventHub | None = None,
        front: Any = None,
        name: str | None = None,
        public_host: str | None = None,
        https_port: Callable[[], int | None] = lambda: None,
    ) -> None:
        self.registry = registry
        self.tunnel_handler = tunnels  # GatewayTunnelHandler: what it noted about each tunnel
        self.health = health
        self.directory = directory
        self.store_directory = store_directory
        self._store = store
        self.events = events if events is not None else EventHub()
        self.front = front
        #: This gateway's name, as the tunnels of the overview name it.
        self.name = name or socket.gethostname()
        #: The host clients reach this gateway's TCP and UDP resources at.
        self.public_host = public_host or self.name
        self._https_port = https_port
        self._version: int | None = None
        # (site id, target id) -> [(org id, resource id, target address)], for health events
        self._targets: dict[tuple[str, str], list[tuple[str, str, str]]] = {}

    # -- read by the API --------------------------------------------------------------------------------

    @property
    def https_port(self) -> int | None:
        return self._https_port()

    @property
    def inspector(self) -> Any:
        """The HTTP front's request inspector, if this gateway has one."""
        return getattr(self.front, "inspector", None)

    def online(self, site_id: str) -> bool:
        """Whether the site has a tunnel up to this gateway."""
        return bool(self.registry.tunnels(site_id))

    def tunnels(self, site_id: str) -> list[dict[str, Any]]:
        """The site's tunnels to this gateway, oldest first."""
        entries = []
        for tunnel in self.registry.tunnels(site_id):
            info = self.tunnel_handler.tunnel_info(tunnel)
            rtt = tunnel.rtt
            entries.append(
                {
                    "gateway": self.name,
                    "transport": info.transport if info is not None else "tls",
                    "rtt_ms": None if rtt is None else round(rtt * 1000, 3),
                    "since": info.since.isoformat() if info is not None else None,
                    "edge_version": info.edge_version if info is not None else None,
                }
            )
        entries.sort(key=lambda entry: entry["since"] or "")
        return entries

    def site(self, site_id: str, name: str, enabled: bool) -> dict[str, Any]:
        """A site's overview entry."""
        tunnels = self.tunnels(site_id)
        return {"id": site_id, "name": name, "enabled": enabled, "online": bool(tunnels), "tunnels": tunnels}

    def target(self, site_id: str, target_id: str, checked: bool) -> dict[str, Any]:
        """A target's live state: ``online`` (its site has a tunnel here), ``healthy`` (its edge's last
        report; None when unknown or not ``checked``) and why."""
        state = self.health.state(site_id, target_id) if checked else None
        return {
            "online": self.online(site_id),
            "healthy": None if state is None else state.healthy,
            "detail": None if state is None else (state.detail or None),
        }

    # -- fed by the gateway -----------------------------------------------------------------------------

    def tunnels_changed(self, site_id: str) -> None:
        """A tunnel of the site came up or went: its entry to those who watch its organization."""
        org_id = self._site_org(site_id)
        if not self.events.watched(org_id):
            return
        site = self.directory.site(site_id)
        if site is None:
            return
        self.events.publish(org_id, "site", self.site(site_id, site.name, site.enabled))

    def health_changed(self, site_id: str, target_id: str, state: TargetHealth | None) -> None:
        for org_id, resource_id, address in self._targets.get((site_id, target_id), ()):
            if not self.events.watched(org_id):
                continue
            self.events.publish(
                org_id,
                "health",
                {
                    "resource_id": resource_id,
                    "id": target_id,
                    "site_id": site_id,
                    "target": address,
                    "online": self.online(site_id),
                    "healthy": None if state is None else state.healthy,
                    "detail": None if state is None else (state.detail or None),
                },
            )

    def configuration_changed(self) -> None:
        """The configuration moved: index the targets again, and tell the watchers of each
        organization what changed (from the store's change log)."""
        targets: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
        for resource in self.directory.http_resources():
            if resource.org_id is None:
                continue
            for t in resource.targets:
                targets.setdefault((t.site_id, t.id), []).append((resource.org_id, resource.id, t.target))
        self._targets = targets
        version = getattr(self.store_directory, "version", None)
        store = self._store()
        if version is None or store is None or version == self._version:
            return
        last, self._version = self._version, version
        if last is None or not self.events.watched_any():
            return
        from kokoa.store import changes_since

        store.run(changes_since, last).addCallbacks(
            self._publish_changes,
            lambda f: log.warn("cannot read the configuration changes: {why}", why=f.getErrorMessage()),
        )

    def _publish_changes(self, changes: list[Any]) -> None:
        for change in changes:
            if change.org_id is not None and change.kind != "session":
                self.events.publish(
                    change.org_id, "changed", {"kind": change.kind, "id": change.object_id, "op": change.op}
                )

    def access_row(self, row: dict[str, Any], count: int = 1) -> None:
        """An access-log row as the recorder notes it, with the count to show (the recorder's
        observer: nothing is copied unless someone watches)."""
        org_id = row.get("org_id")
        if org_id is None:
            # A sign-in to the login host: its user's organizations watch it (looked up, rarely).
            user_id = row.get("user_id")
            if row.get("kind") == "signin" and user_id and self.events.watched_any():
                self._publish_to_members(user_id, {**row, "count": count})
            return
        if self.events.watched(org_id):
            rendered = _rendered({**row, "count": count})
            if rendered is not None:
                self.events.publish(org_id, "access", rendered)

    def _publish_to_members(self, user_id: str, row: dict[str, Any]) -> None:
        store = self._store()
        if store is None:
            return
        from kokoa.store import list_user_memberships

        def publish(memberships: list[Any]) -> None:
            rendered = _rendered(row)
            if rendered is None:
                return
            for membership in memberships:
                self.events.publish(membership.org_id, "access", rendered)

        store.run(list_user_memberships, user_id).addCallbacks(
            publish, lambda f: log.warn("cannot read a user's organizations: {why}", why=f.getErrorMessage())
        )

    def _site_org(self, site_id: str) -> str | None:
        site_org = getattr(self.store_directory, "site_org", None)
        return None if site_org is None else site_org(site_id)


def _rendered(row: dict[str, Any]) -> dict[str, Any] | None:
    """The row as the access-log API renders rows (``id`` None: not written yet)."""
    from kokoa.store import Invalid, jsonable, unwritten_entry

    try:
        return jsonable(unwritten_entry(row))
    except Invalid as e:
        log.warn("an access log row cannot be shown: {why}", why=e)
        return None


class _NoGateway:
    """A gateway with no tunnel and nothing in memory: what :func:`idle_view` reads."""

    version = None

    def tunnel_info(self, tunnel: Any) -> None:
        return None

    def site(self, site_id: str) -> None:
        return None

    def site_org(self, site_id: str) -> None:
        return None

    def http_resources(self) -> list[Any]:
        return []


def idle_view(store: Any, name: str = "devserver") -> ConsoleView:
    """A view of a gateway that has no tunnels (for the API's dev server): every site offline, every
    target's health unknown, no events."""
    nothing = _NoGateway()
    return ConsoleView(
        registry=TunnelRegistry(),
        tunnels=nothing,
        health=HealthBoard(),
        directory=nothing,
        store_directory=nothing,
        store=lambda: store,
        name=name,
        public_host="localhost",
    )
