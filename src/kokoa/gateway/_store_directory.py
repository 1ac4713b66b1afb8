"""Sites and resources from the store, served from memory and refreshed on change.

The data plane never waits on the database: :class:`StoreSiteDirectory` keeps the
last snapshot in memory. It reloads it after every change this process writes
(the store's subscription) and when the configuration version in the database
moves (a cheap poll), so a change written by another gateway process arrives too.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

from ._model import (
    AuthenticationFailed,
    HealthCheck,
    HTTPResource,
    HTTPTarget,
    ISiteDirectory,
    Site,
    SiteDisabled,
    TCPResource,
)

log = Logger()

#: Seconds between checks of the database's configuration version.
DEFAULT_POLL_INTERVAL = 0.25
#: The same on PostgreSQL, where LISTEN/NOTIFY announces changes and the poll is a safety net.
LISTENING_POLL_INTERVAL = 2.0


class PostgresListener:
    """LISTENs for configuration changes on a connection of its own, in a thread of its own
    (it waits for notifications, so it must not hold one of the store's threads), and asks
    the reactor to refresh on each. Reconnects after a lost connection."""

    def __init__(self, url, reactor, on_change: Callable[[], object]) -> None:
        self.conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.reactor = reactor
        self.on_change = on_change
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kokoa-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def _run(self) -> None:
        import psycopg

        from kokoa.store import NOTIFY_CHANNEL

        while not self._stopping.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.reactor.callFromThread(self.on_change)  # catch up on what was missed
                    while not self._stopping.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=100):
                            self.reactor.callFromThread(self.on_change)
            except Exception as e:  # a lost connection: say so, wait, listen again
                if not self._stopping.is_set():
                    self.reactor.callFromThread(log.warn, "LISTEN connection lost ({e}); retrying", e=e)
                    self._stopping.wait(2.0)


@implementer(ISiteDirectory)
class StoreSiteDirectory:
    """ISiteDirectory over a :class:`kokoa.store.Store` snapshot."""

    def __init__(
        self, reactor, poll_interval: float = DEFAULT_POLL_INTERVAL, resource_interface: str = ""
    ) -> None:
        self.reactor = reactor
        self.resource_interface = resource_interface
        self.poll_interval = poll_interval
        self.store = None
        self.version: int | None = None
        self._credentials: dict = {}
        self._sites: dict[str, Site] = {}
        self._resources: list[TCPResource] = []
        self._http_resources: list[HTTPResource] = []
        self._policies = None
        self._subscribers: list[Callable[[], None]] = []
        self._dirty = False
        self._running: defer.Deferred | None = None
        self._waiters: list[defer.Deferred] = []
        self._poller: task.LoopingCall | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._listener: PostgresListener | None = None

    # ----------------------------------------------------------- lifecycle

    @defer.inlineCallbacks
    def attach(self, store):
        """Start serving from ``store``: load it, then follow its changes."""
        self.store = store
        yield self.refresh()
        self._unsubscribe = store.subscribe(lambda changes: self.refresh())
        interval = self.poll_interval
        if store.dialect == "postgresql":
            self._listener = PostgresListener(store.engine.url, self.reactor, self.refresh)
            self._listener.start()
            interval = LISTENING_POLL_INTERVAL  # the poll is only a safety net then
        self._poller = task.LoopingCall(self._poll)
        self._poller.clock = self.reactor
        self._poller.start(interval, now=False).addErrback(
            lambda f: log.failure("configuration poll stopped", f)
        )

    def detach(self) -> None:
        if self._poller is not None and self._poller.running:
            self._poller.stop()
        if self._listener is not None:
            self._listener.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.store = None

    def refresh(self) -> defer.Deferred:
        """Reload the snapshot and tell the subscribers if it moved. Calls that arrive while a
        reload runs make one more reload after it, not one each."""
        self._dirty = True
        waiter: defer.Deferred = defer.Deferred()
        self._waiters.append(waiter)
        if self._running is None:
            self._running = defer.Deferred()  # marks the loop as running before it starts
            self._reload_until_clean()
        return waiter

    @defer.inlineCallbacks
    def _reload_until_clean(self):
        try:
            while self._dirty and self.store is not None:
                self._dirty = False
                snapshot = yield self.store.snapshot()
                if snapshot.version != self.version:
                    self._apply(snapshot)
                    self._notify()
        except Exception as e:
            log.warn("cannot reload the configuration: {e}", e=e)
        finally:
            self._running = None
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def _notify(self) -> None:
        for callback in list(self._subscribers):
            try:
                callback()
            except Exception:  # one failing subscriber must not starve the others
                log.failure("a configuration subscriber failed")

    @defer.inlineCallbacks
    def _poll(self):
        if self.store is None or self._running is not None:
            return
        from kokoa.store import config_version

        try:
            version = yield self.store.run(config_version)
        except Exception as e:  # a database hiccup: keep serving what we have, say so
            log.warn("cannot check the configuration version: {e}", e=e)
            return
        if version != self.version:
            yield self.refresh()

    def _apply(self, snapshot) -> None:
        self.version = snapshot.version
        self._credentials = {c.id: c for c in snapshot.sites}
        self._sites = {c.id: Site(c.id, c.name, "", c.enabled) for c in snapshot.sites}
        resources = []
        http_resources = []
        for r in snapshot.resources:
            if r.kind == "http":
                http_resources.append(_http_resource(r, snapshot.targets_of(r.id)))
                continue
            if r.kind != "tcp" or r.public_port is None:
                continue  # UDP resources arrive with their own front end
            targets = [t for t in snapshot.targets_of(r.id) if t.enabled and t.weight > 0]
            if not targets:
                continue
            target = targets[0]  # several targets per resource: load balancing comes with HTTP
            resources.append(
                TCPResource(
                    r.name,
                    target.site_id,
                    _listen(r.public_port, self.resource_interface),
                    target.host,
                    target.port,
                    r.enabled,
                    id=r.id,
                    org_id=r.org_id,
                )
            )
        self._resources = resources
        self._http_resources = http_resources
        from kokoa.policy import PolicySet

        self._policies = PolicySet.build(
            snapshot.rules,
            snapshot.grants,
            [r.id for r in snapshot.resources if r.public],
            version=snapshot.version,
            resources=[r.id for r in snapshot.resources],
        )
        for error in self._policies.errors:
            log.error("access configuration error (the resource denies every request): {error}", error=error)

    # ----------------------------------------------------------- ISiteDirectory

    def authenticate(self, site_id: str, secret: str) -> Site:
        credentials = self._credentials.get(site_id)
        if credentials is None or not credentials.accepts(secret):
            raise AuthenticationFailed(f"site id {site_id!r} and secret do not match a site of this gateway")
        if not credentials.enabled:
            raise SiteDisabled(f"site {credentials.name!r} is disabled on this gateway")
        return self._sites[site_id]

    def site(self, site_id: str) -> Site | None:
        return self._sites.get(site_id)

    def site_org(self, site_id: str) -> str | None:
        """The organization of a site of the store (None: unknown here)."""
        credentials = self._credentials.get(site_id)
        return None if credentials is None else credentials.org_id

    def accepts_hash(self, site_id: str, secret_hash: str) -> bool:
        c = self._credentials.get(site_id)
        if c is None or not c.enabled:
            return False
        if hmac.compare_digest(c.secret_hash, secret_hash):
            return True
        return (
            c.previous_secret_hash is not None
            and c.previous_secret_expires_at is not None
            and datetime.now(UTC) < c.previous_secret_expires_at
            and hmac.compare_digest(c.previous_secret_hash, secret_hash)
        )

    def tcp_resources(self) -> list[TCPResource]:
        return list(self._resources)

    def http_resources(self) -> list[HTTPResource]:
        return list(self._http_resources)

    def targets_for(self, site_id: str) -> set[str]:
        found = {r.target for r in self._resources if r.site_id == site_id and r.enabled}
        for resource in self._http_resources:
            if resource.enabled:
                found.update(t.target for t in resource.targets if t.site_id == site_id)
        return found

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._subscribers.append(callback)

    def policies(self):
        from kokoa.policy import PolicySet

        return self._policies if self._policies is not None else PolicySet()


def _http_resource(resource, targets) -> HTTPResource:
    """The data plane's view of a store HTTP resource: its targets that may take requests (enabled,
    weight above 0), each with its health check when that is enabled. Listed even with no targets
    (the front answers 503 for it)."""
    return HTTPResource(
        resource.id,
        resource.name,
        resource.hostname,
        resource.path_prefix,
        tuple(_http_target(t) for t in targets if t.enabled and t.weight > 0),
        resource.enabled,
        lb_method=resource.lb_method,
        sticky=resource.sticky,
        redirect_https=resource.redirect_https,
        hsts_max_age=resource.hsts_max_age,
        org_id=resource.org_id,
        auth_methods=_auth_methods(resource),
    )


def _auth_methods(resource) -> tuple[str, ...]:
    methods = []
    if resource.has_password:
        methods.append("password")
    if resource.has_pin:
        methods.append("pin")
    if resource.auth_email_allow:
        methods.append("email")
    return tuple(methods)


def _http_target(target) -> HTTPTarget:
    check = target.health_check
    health_check = None
    if check.enabled:
        health_check = HealthCheck(
            path=check.path,
            interval=check.interval,
            timeout=check.timeout,
            healthy_threshold=check.healthy_threshold,
            unhealthy_threshold=check.unhealthy_threshold,
            expected_status=check.expected_status,
        )
    return HTTPTarget(
        target.id,
        target.site_id,
        target.host,
        target.port,
        scheme=target.scheme,
        weight=target.weight,
        tls_verify=target.tls_verify,
        tls_server_name=target.tls_server_name,
        health_check=health_check,
    )


def _listen(port: int, interface: str) -> str:
    if not interface:
        return f"tcp:{port}"
    escaped = interface.replace(":", "\\:")  # endpoint strings escape the colons of IPv6
    return f"tcp:{port}:interface={escaped}"


@implementer(ISiteDirectory)
class CombinedDirectory:
    """Sites and resources from several directories (the config file's and the store's)."""

    def __init__(self, *directories) -> None:
        self.directories = directories

    def authenticate(self, site_id: str, secret: str) -> Site:
        for directory in self.directories:
            if directory.site(site_id) is not None:
                return directory.authenticate(site_id, secret)
        return self.directories[0].authenticate(site_id, secret)  # raises the usual refusal

    def site(self, site_id: str) -> Site | None:
        return next((s for d in self.directories if (s := d.site(site_id)) is not None), None)

    def accepts_hash(self, site_id: str, secret_hash: str) -> bool:
        directory = next((d for d in self.directories if d.site(site_id) is not None), None)
        return directory is not None and directory.accepts_hash(site_id, secret_hash)

    def tcp_resources(self) -> list[TCPResource]:
        return [r for d in self.directories for r in d.tcp_resources()]

    def http_resources(self) -> list[HTTPResource]:
        return [r for d in self.directories for r in d.http_resources()]

    def targets_for(self, site_id: str) -> set[str]:
        return set().union(*(d.targets_for(site_id) for d in self.directories))

    def subscribe(self, callback: Callable[[], None]) -> None:
        for directory in self.directories:
            directory.subscribe(callback)

    def policies(self):
        """The store's policies (the file's resources have none: the gate leaves them be)."""
        return self.directories[-1].policies()
