"""What the gateway serves: sites, TCP resources, and the directory they come from.

``ISiteDirectory`` is the seam between the data plane and wherever the
configuration lives: the config file today (:class:`StaticSiteDirectory`), the
store later. The data plane reads it from memory only.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass

from twisted.logger import Logger
from zope.interface import Interface, implementer

from kokoa.secrets import verify_secret

#: What a site id may look like.
SITE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True, slots=True)
class Site:
    """A private network whose edge dials in."""

    id: str
    name: str
    secret_hash: str
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class TCPResource:
    """A public TCP listener forwarded to ``target`` next to the site's edge."""

    name: str
    site_id: str
    listen: str  # a Twisted server endpoint string, e.g. "tcp:2222"
    target_host: str
    target_port: int
    enabled: bool = True
    id: str = ""  # the store's id; config-file resources have none
    org_id: str | None = None

    @property
    def key(self) -> str:
        """What tells this resource apart from every other (names repeat across organizations)."""
        return self.id or self.name

    @property
    def target(self) -> str:
        host = f"[{self.target_host}]" if ":" in self.target_host else self.target_host
        return f"{host}:{self.target_port}"


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """How the edge that owns a target checks it: HTTP GET ``path`` when a path is set
    (healthy when the status is in ``expected_status``), else a TCP connect."""

    path: str | None = None
    interval: int = 10
    timeout: int = 5
    healthy_threshold: int = 2
    unhealthy_threshold: int = 3
    expected_status: str = "200-399"  # ranges and codes: "200-399", "200,204"

    @property
    def kind(self) -> str:
        return "tcp" if self.path is None else "http"


@dataclass(frozen=True, slots=True)
class HTTPTarget:
    """One upstream of an HTTP resource, reached through ``site_id``'s edge."""

    id: str
    site_id: str
    host: str
    port: int
    scheme: str = "http"  # http or https (TLS from the gateway, through the tunnel)
    weight: int = 1
    tls_verify: bool = True
    tls_server_name: str | None = None  # SNI and the name verified; default: host
    health_check: HealthCheck | None = None

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class HTTPResource:
    """Requests for ``hostname`` (exact, or ``*.example.com``) under ``path_prefix``."""

    id: str
    name: str
    hostname: str
    path_prefix: str = "/"
    targets: tuple[HTTPTarget, ...] = ()
    enabled: bool = True
    lb_method: str = "round_robin"  # or "least_connections"
    sticky: bool = False  # pin a client to a target by cookie
    redirect_https: bool = False  # answer plain-HTTP requests with a redirect to https
    hsts_max_age: int = 0  # seconds; 0 sends no Strict-Transport-Security
    org_id: str | None = None
    #: How visitors without an account may sign in to it: "password", "pin", "email" (its own).
    auth_methods: tuple[str, ...] = ()


class AuthenticationFailed(Exception):
    """A site's credentials were refused; the message is safe to show the edge."""


class SiteDisabled(AuthenticationFailed):
    """The credentials are right, but the site is disabled."""


class ISiteDirectory(Interface):
    """Sites and resources, as the data plane sees them."""

    def authenticate(site_id, secret):
        """Return the Site for valid credentials, or raise AuthenticationFailed."""

    def site(site_id):
        """The Site with this id, or None."""

    def accepts_hash(site_id, secret_hash):
        """Whether an edge that authenticated with the secret of this hash may stay connected
        (the site is enabled and the secret is current, or previous and in its grace period)."""

    def tcp_resources():
        """Every TCP resource, enabled or not."""

    def http_resources():
        """Every HTTP resource, enabled or not."""

    def targets_for(site_id):
        """The set of "host:port" targets that the site's edge may be asked to reach."""

    def subscribe(callback):
        """Call ``callback()`` after every change."""

    def policies():
        """The access policies of the resources (a kokoa.policy.PolicySet)."""


@implementer(ISiteDirectory)
class StaticSiteDirectory:
    """Sites and resources fixed at start (from the config file)."""

    def __init__(self, sites: list[Site], resources: list[TCPResource]) -> None:
        self._sites = {s.id: s for s in sites}
        self._resources = list(resources)
        self._subscribers: list[Callable[[], None]] = []

    def replace(self, sites: list[Site], resources: list[TCPResource]) -> None:
        """Swap in a new configuration (a reloaded file) and tell the subscribers."""
        self._sites = {s.id: s for s in sites}
        self._resources = list(resources)
        for callback in list(self._subscribers):
            try:
                callback()
            except Exception:  # one failing subscriber must not starve the others
                Logger().failure("a configuration subscriber failed")

    def authenticate(self, site_id: str, secret: str) -> Site:
        site = self._sites.get(site_id)
        # Same message for an unknown site and a wrong secret: no site enumeration.
        if site is None or not verify_secret(secret, site.secret_hash):
            raise AuthenticationFailed(f"site id {site_id!r} and secret do not match a site of this gateway")
        if not site.enabled:
            raise SiteDisabled(f"site {site.name!r} is disabled on this gateway")
        return site

    def site(self, site_id: str) -> Site | None:
        return self._sites.get(site_id)

    def accepts_hash(self, site_id: str, secret_hash: str) -> bool:
        site = self._sites.get(site_id)
        return site is not None and site.enabled and hmac.compare_digest(site.secret_hash, secret_hash)

    def tcp_resources(self) -> list[TCPResource]:
        return list(self._resources)

    def http_resources(self) -> list[HTTPResource]:
        return []

    def targets_for(self, site_id: str) -> set[str]:
        return {r.target for r in self._resources if r.site_id == site_id and r.enabled}

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._subscribers.append(callback)

    def policies(self):
        from kokoa.policy import PolicySet

        return PolicySet()  # the file's resources are not in the store: the gate leaves them be
