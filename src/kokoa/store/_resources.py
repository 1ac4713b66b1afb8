"""Resources (what the gateway publishes: HTTP by hostname and path, TCP and UDP by port) and their
targets (where, next to which site's edge, the traffic goes)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, func, insert, select, update

from . import _schema as s
from . import _validate as v
from ._common import (
    DEFAULT_LIMIT,
    UNSET,
    Page,
    Unset,
    atomic,
    get_row,
    new_id,
    paginate,
    record_change,
    resolve_now,
    where_equal,
)
from ._errors import Conflict, Invalid

RESOURCE_KINDS = ("http", "tcp", "udp")
#: The target schemes each kind of resource may use; the first is the default.
TARGET_SCHEMES: dict[str, tuple[str, ...]] = {"http": ("http", "https"), "tcp": ("tcp",), "udp": ("udp",)}
DEFAULT_WEIGHT = 100
MAX_WEIGHT = 1000
LB_METHODS = s.LB_METHODS
MAX_HSTS_MAX_AGE = s.MAX_HSTS_MAX_AGE
DEFAULT_EXPECTED_STATUS = s.DEFAULT_EXPECTED_STATUS


@dataclass(frozen=True, slots=True)
class Resource:
    id: str
    org_id: str
    name: str
    kind: str  # "http", "tcp" or "udp"
    hostname: str | None  # HTTP only: ASCII (IDNA) form, maybe "*.example.com"
    path_prefix: str | None  # HTTP only, starts with "/"
    public_port: int | None  # TCP and UDP only
    enabled: bool
    created_at: datetime
    updated_at: datetime
    # HTTP only (TCP and UDP resources always have the defaults):
    lb_method: str = "round_robin"  # or "least_connections"
    sticky: bool = False  # pin a client to a target by cookie
    redirect_https: bool = False  # answer plain-HTTP requests with a redirect to https
    hsts_max_age: int = 0  # seconds of Strict-Transport-Security on HTTPS answers; 0: none
    # Who may reach it without a grant (revision 0003):
    public: bool = False  # anyone, without signing in
    has_password: bool = False  # a shared password signs a visitor in to this resource only
    has_pin: bool = False  # likewise a PIN (digits)
    auth_email_allow: tuple[str, ...] = ()  # addresses and @domains that may get an email code


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """How the edge checks a target: a connection (TCP), or a GET of ``path`` (HTTP), every
    ``interval`` seconds, each given ``timeout`` seconds; the target goes unhealthy after
    ``unhealthy_threshold`` failures in a row and healthy again after ``healthy_threshold`` successes.
    An HTTP check passes when the status is in ``expected_status`` (codes and ranges: "200-399",
    "200,204"); a TCP check (no path) has no status, and keeps the default."""

    enabled: bool = False
    path: str | None = None
    interval: int = 30
    timeout: int = 5
    healthy_threshold: int = 2
    unhealthy_threshold: int = 3
    expected_status: str = DEFAULT_EXPECTED_STATUS


@dataclass(frozen=True, slots=True)
class Target:
    id: str
    resource_id: str
    site_id: str
    host: str  # an IP address (no brackets) or a hostname
    port: int
    scheme: str  # "http" or "https" for HTTP resources; "tcp" or "udp" otherwise
    weight: int  # share of new connections among the resource's targets; 0 drains the target
    enabled: bool
    health_check: HealthCheck
    created_at: datetime
    updated_at: datetime
    # https targets only (others always have the defaults):
    tls_verify: bool = True  # verify the target's certificate
    tls_server_name: str | None = None  # SNI and the name verified; None: the host

    @property
    def address(self) -> str:
        """``host:port``, with an IPv6 address in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _resource(row: Row[Any]) -> Resource:
    return Resource(
        row.id,
        row.org_id,
        row.name,
        row.kind,
        row.hostname,
        row.path_prefix,
        row.public_port,
        row.enabled,
        row.created_at,
        row.updated_at,
        lb_method=row.lb_method,
        sticky=row.sticky,
        redirect_https=row.redirect_https,
        hsts_max_age=row.hsts_max_age,
        public=row.public,
        has_password=row.auth_password_hash is not None,
        has_pin=row.auth_pin_hash is not None,
        auth_email_allow=tuple(row.auth_email_allow or ()),
    )


def _target(row: Row[Any]) -> Target:
    check = HealthCheck(
        row.hc_enabled,
        row.hc_path,
        row.hc_interval,
        row.hc_timeout,
        row.hc_healthy_threshold,
        row.hc_unhealthy_threshold,
        row.hc_expected_status,
    )
    return Target(
        row.id,
        row.resource_id,
        row.site_id,
        row.host,
        row.port,
        row.scheme,
        row.weight,
        row.enabled,
        check,
        row.created_at,
        row.updated_at,
        tls_verify=row.tls_verify,
        tls_server_name=row.tls_server_name,
    )


# -- resources ---------------------------------------------------------------------------------------


def _kind_fields(kind: str, hostname: Any, path_prefix: Any, public_port: Any) -> dict[str, Any]:
    """The kind-dependent fields, checked: HTTP needs a hostname (path prefix defaults to "/");
    TCP and UDP need a public port and have neither."""
    if kind == "http":
        if public_port is not None:
            raise Invalid("public_port", "only TCP and UDP resources have a public port")
        if hostname is None:
            raise Invalid("hostname", "is required for HTTP resources")
        return {
            "hostname": v.hostname(hostname, "hostname", wildcard=True),
            "path_prefix": v.path("/" if path_prefix is None else path_prefix, "path_prefix"),
            "public_port": None,
        }
    if hostname is not None:
        raise Invalid("hostname", "only HTTP resources have a hostname")
    if path_prefix is not None:
        raise Invalid("path_prefix", "only HTTP resources have a path prefix")
    if public_port is None:
        raise Invalid("public_port", f"is required for {kind.upper()} resources")
    return {"hostname": None, "path_prefix": None, "public_port": v.port(public_port, "public_port")}


#: The HTTP-only settings of a resource, their defaults, and what to say when another kind is given one.
_HTTP_SETTINGS: dict[str, tuple[Any, str]] = {
    "lb_method": ("round_robin", "only HTTP resources have a load-balancing method"),
    "sticky": (False, "only HTTP resources have sticky sessions"),
    "redirect_https": (False, "only HTTP resources redirect to HTTPS"),
    "hsts_max_age": (0, "only HTTP resources send Strict-Transport-Security"),
}


def _http_settings(
    kind: str, lb_method: Any, sticky: Any, redirect_https: Any, hsts_max_age: Any
) -> dict[str, Any]:
    """The HTTP-only settings, checked: TCP and UDP resources keep the defaults (any other value is
    refused, as a hostname is)."""
    given = {
        "lb_method": lb_method,
        "sticky": sticky,
        "redirect_https": redirect_https,
        "hsts_max_age": hsts_max_age,
    }
    if kind != "http":
        for field, value in given.items():
            default, message = _HTTP_SETTINGS[field]
            if value is not None and (value != default or type(value) is not type(default)):
                raise Invalid(field, message)
        return {field: default for field, (default, _) in _HTTP_SETTINGS.items()}
    return {
        "lb_method": v.one_of(lb_method, "lb_method", LB_METHODS),
        "sticky": v.boolean(sticky, "sticky"),
        "redirect_https": v.boolean(redirect_https, "redirect_https"),
        "hsts_max_age": v.integer(hsts_max_age, "hsts_max_age", 0, MAX_HSTS_MAX_AGE),
    }


#: PINs: digits only, this many of them.
PIN_LENGTHS = (6, 12)  # 6 digits at least: a guesser gets a few tries a minute per gateway
#: At most this many addresses and domains may receive email codes for one resource.
MAX_EMAIL_ALLOW = 100


def _auth_alternatives(kind: str, password: Any, pin: Any, email_allow: Any) -> dict[str, Any]:
    """The hashed password and PIN, and the checked email allow-list (HTTP resources only)."""
    from ._users import PASSWORD_HASHER

    if kind != "http":
        for field, value in (("auth_password", password), ("auth_pin", pin)):
            if value is not None:
                raise Invalid(field, "only HTTP resources have a sign-in page")
        if email_allow:
            raise Invalid("auth_email_allow", "only HTTP resources have a sign-in page")
        return {"auth_password_hash": None, "auth_pin_hash": None, "auth_email_allow": None}
    values: dict[str, Any] = {"auth_password_hash": None, "auth_pin_hash": None}
    if password is not None:
        values["auth_password_hash"] = PASSWORD_HASHER.hash(v.password(password, "auth_password"))
    if pin is not None:
        low, high = PIN_LENGTHS
        if not isinstance(pin, str) or not pin.isascii() or not pin.isdigit() or not low <= len(pin) <= high:
            raise Invalid("auth_pin", f"must be {low} to {high} digits")
        values["auth_pin_hash"] = PASSWORD_HASHER.hash(pin)
    if not isinstance(email_allow, list | tuple):
        raise Invalid("auth_email_allow", "must be a list of email addresses and @domains")
    if len(email_allow) > MAX_EMAIL_ALLOW:
        raise Invalid("auth_email_allow", f"at most {MAX_EMAIL_ALLOW} entries")
    entries: list[str] = []
    for i, entry in enumerate(email_allow):
        field = f"auth_email_allow[{i}]"
        if isinstance(entry, str) and entry.startswith("@"):
            entries.append("@" + v.hostname(entry[1:], field))
        else:
            entries.append(v.email(entry, field))
    values["auth_email_allow"] = sorted(set(entries)) or None
    return values


#: A resource's own credentials, and the method of the sessions each signs visitors in with.
_CREDENTIAL_METHODS = {"auth_password_hash": "password", "auth_pin_hash": "pin", "auth_email_allow": "email"}


def _end_visitor_sessions(conn: Connection, resource_id: str, changed: dict[str, Any], now: datetime) -> None:
    """A new (or removed) password, PIN or email list ends the sessions the old one opened."""
    methods = [method for column, method in _CREDENTIAL_METHODS.items() if column in changed]
    if methods:
        sessions = s.sessions.c
        conn.execute(
            update(s.sessions)
            .where(
                sessions.resource_id == resource_id,
                sessions.method.in_(methods),
                sessions.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )


def email_allowed(resource: Resource, email: str) -> bool:
    """Whether ``email`` (already normalized) may receive a one-time code for ``resource``."""
    domain = "@" + email.rpartition("@")[2]
    return email in resource.auth_email_allow or domain in resource.auth_email_allow


def _check_resource_free(conn: Connection, values: dict[str, Any], exclude: str | None = None) -> None:
    r = s.resources
    others = select(r.c.id).where(r.c.id != exclude) if exclude else select(r.c.id)
    if conn.execute(
        others.where(r.c.org_id == values["org_id"], func.lower(r.c.name) == values["name"].lower())
    ).first():
        raise Conflict("name", s.CONSTRAINT_FIELDS["uq_resources_org_name"][1])
    if values["kind"] == "http":
        clash = others.where(r.c.hostname == values["hostname"], r.c.path_prefix == values["path_prefix"])
        if conn.execute(clash).first():
            raise Conflict("hostname", s.CONSTRAINT_FIELDS["uq_resources_hostname_path_prefix"][1])
    elif values["enabled"]:
        clash = others.where(
            r.c.kind == values["kind"], r.c.public_port == values["public_port"], r.c.enabled
        )
        if conn.execute(clash).first():
            raise Conflict("public_port", s.CONSTRAINT_FIELDS["uq_resources_enabled_port"][1])


@atomic
def create_resource(
    conn: Connection,
    org_id: str,
    name: str,
    kind: str,
    *,
    hostname: str | None = None,
    path_prefix: str | None = None,
    public_port: int | None = None,
    enabled: bool = True,
    lb_method: str = "round_robin",
    sticky: bool = False,
    redirect_https: bool = False,
    hsts_max_age: int = 0,
    public: bool | None = None,
    auth_password: str | None = None,
    auth_pin: str | None = None,
    auth_email_allow: list[str] | tuple[str, ...] = (),
    now: datetime | None = None,
) -> Resource:
    """A new resource: ``kind="http"`` with a ``hostname`` (and ``path_prefix``, "/" by default), or
    ``"tcp"``/``"udp"`` with a ``public_port``. ``lb_method``, ``sticky``, ``redirect_https`` and
    ``hsts_max_age`` are for HTTP resources: other kinds refuse any value but the default.

    ``public`` defaults to False for HTTP resources (sign-in required) and True for TCP and UDP ones
    (a port cannot show a sign-in page: restrict it with rules, or reach it with ``kokoa connect``).
    ``auth_password``, ``auth_pin`` and ``auth_email_allow`` (HTTP only) let visitors without an
    account in, to this resource alone; the password and PIN are kept as argon2id hashes."""
    now = resolve_now(now)
    get_row(conn, s.organizations, "organization", org_id)
    values = {
        "org_id": org_id,
        "name": v.name(name),
        "kind": v.one_of(kind, "kind", RESOURCE_KINDS),
        "enabled": v.boolean(enabled, "enabled"),
    }
    values |= _kind_fields(kind, hostname, path_prefix, public_port)
    values |= _http_settings(kind, lb_method, sticky, redirect_https, hsts_max_age)
    values["public"] = v.boolean(kind != "http" if public is None else public, "public")
    values |= _auth_alternatives(kind, auth_password, auth_pin, auth_email_allow)
    _check_resource_free(conn, values)
    resource_id = new_id("res")
    conn.execute(insert(s.resources).values(id=resource_id, created_at=now, updated_at=now, **values))
    record_change(conn, "resource", resource_id, "create", org_id, now)
    return get_resource(conn, resource_id)


def get_resource(conn: Connection, resource_id: str) -> Resource:
    return _resource(get_row(conn, s.resources, "resource", resource_id))


def list_resources(
    conn: Connection,
    *,
    org_id: str | None = None,
    kind: str | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[Resource]:
    query = select(s.resources)
    query = where_equal(query, s.resources, org_id=org_id)
    if kind is not None:
        query = query.where(s.resources.c.kind == v.one_of(kind, "kind", RESOURCE_KINDS))
    return paginate(conn, query, s.resources, _resource, limit, cursor)


@atomic
def update_resource(
    conn: Connection,
    resource_id: str,
    *,
    name: str | Unset = UNSET,
    hostname: str | Unset = UNSET,
    path_prefix: str | Unset = UNSET,
    public_port: int | Unset = UNSET,
    enabled: bool | Unset = UNSET,
    lb_method: str | Unset = UNSET,
    sticky: bool | Unset = UNSET,
    redirect_https: bool | Unset = UNSET,
    hsts_max_age: int | Unset = UNSET,
    public: bool | Unset = UNSET,
    auth_password: str | Unset | None = UNSET,
    auth_pin: str | Unset | None = UNSET,
    auth_email_allow: list[str] | tuple[str, ...] | Unset = UNSET,
    now: datetime | None = None,
) -> Resource:
    """Change some of a resource's fields (its kind is fixed: make a new resource instead).
    ``auth_password=None`` (or ``auth_pin=None``) removes it."""
    now = resolve_now(now)
    current = get_resource(conn, resource_id)

    def pick(new: Any, old: Any) -> Any:
        return old if new is UNSET else new

    values = {
        "org_id": current.org_id,
        "name": v.name(pick(name, current.name)),
        "kind": current.kind,
        "enabled": v.boolean(pick(enabled, current.enabled), "enabled"),
    }
    values |= _kind_fields(
        current.kind,
        pick(hostname, current.hostname),
        pick(path_prefix, current.path_prefix),
        pick(public_port, current.public_port),
    )
    values |= _http_settings(
        current.kind,
        pick(lb_method, current.lb_method),
        pick(sticky, current.sticky),
        pick(redirect_https, current.redirect_https),
        pick(hsts_max_age, current.hsts_max_age),
    )
    values["public"] = v.boolean(pick(public, current.public), "public")
    _check_resource_free(conn, values, exclude=resource_id)
    changed = {k: val for k, val in values.items() if getattr(current, k) != val}
    secrets = _auth_alternatives(
        current.kind,
        None if auth_password is UNSET else auth_password,
        None if auth_pin is UNSET else auth_pin,
        current.auth_email_allow if auth_email_allow is UNSET else auth_email_allow,
    )
    if auth_password is not UNSET:
        changed["auth_password_hash"] = secrets["auth_password_hash"]
    if auth_pin is not UNSET:
        changed["auth_pin_hash"] = secrets["auth_pin_hash"]
    if tuple(secrets["auth_email_allow"] or ()) != current.auth_email_allow:
        changed["auth_email_allow"] = secrets["auth_email_allow"]
    _end_visitor_sessions(conn, resource_id, changed, now)
    if changed:
        conn.execute(
            update(s.resources).where(s.resources.c.id == resource_id).values(updated_at=now, **changed)
        )
        record_change(conn, "resource", resource_id, "update", current.org_id, now)
    return get_resource(conn, resource_id)


@atomic
def delete_resource(conn: Connection, resource_id: str, *, now: datetime | None = None) -> None:
    """Delete a resource with its targets, grants and rules."""
    now = resolve_now(now)
    current = get_resource(conn, resource_id)
    conn.execute(delete(s.resources).where(s.resources.c.id == resource_id))
    record_change(conn, "resource", resource_id, "delete", current.org_id, now)


# -- targets -----------------------------------------------------------------------------------------


def _health_check(value: Any, scheme: str) -> dict[str, Any]:
    if value is None:
        value = HealthCheck()
    elif isinstance(value, Mapping):
        unknown = set(value) - {f.name for f in fields(HealthCheck)}
        if unknown:
            raise Invalid("health_check", f"unknown setting(s): {', '.join(sorted(unknown))}")
        value = HealthCheck(**value)
    elif not isinstance(value, HealthCheck):
        raise Invalid("health_check", "must be a HealthCheck or a mapping of its settings")
    interval = v.integer(value.interval, "health_check.interval", 1, 3600)
    timeout = v.integer(value.timeout, "health_check.timeout", 1, 300)
    if timeout > interval:
        raise Invalid("health_check.timeout", "must not be longer than the interval")
    path = value.path
    if path is not None:
        if scheme not in ("http", "https"):
            raise Invalid("health_check.path", "only HTTP targets are checked by path")
        path = v.path(path, "health_check.path")
    elif scheme in ("http", "https"):
        path = "/"
    if path is None:  # a TCP check: a connection, no status
        if value.expected_status != DEFAULT_EXPECTED_STATUS:
            raise Invalid(
                "health_check.expected_status", "only HTTP health checks (with a path) check a status"
            )
        expected_status = DEFAULT_EXPECTED_STATUS
    else:
        expected_status = v.expected_status(value.expected_status, "health_check.expected_status")
    return {
        "hc_enabled": v.boolean(value.enabled, "health_check.enabled"),
        "hc_path": path,
        "hc_interval": interval,
        "hc_timeout": timeout,
        "hc_healthy_threshold": v.integer(value.healthy_threshold, "health_check.healthy_threshold", 1, 100),
        "hc_unhealthy_threshold": v.integer(
            value.unhealthy_threshold, "health_check.unhealthy_threshold", 1, 100
        ),
        "hc_expected_status": expected_status,
    }


def _tls_settings(scheme: str, tls_verify: Any, tls_server_name: Any) -> dict[str, Any]:
    """TLS to the target: for https targets only (others refuse any value but the defaults)."""
    if scheme != "https":
        if tls_verify is not True:
            raise Invalid("tls_verify", "only https targets use TLS (verification is on by default)")
        if tls_server_name is not None:
            raise Invalid("tls_server_name", "only https targets use TLS")
        return {"tls_verify": True, "tls_server_name": None}
    return {
        "tls_verify": v.boolean(tls_verify, "tls_verify"),
        "tls_server_name": None
        if tls_server_name is None
        else v.hostname(tls_server_name, "tls_server_name", underscore=True),
    }


def _target_values(
    conn: Connection,
    resource: Resource,
    site_id: Any,
    host: Any,
    port: Any,
    scheme: Any,
    weight: Any,
    enabled: Any,
    health_check: Any,
    tls_verify: Any,
    tls_server_name: Any,
) -> dict[str, Any]:
    site = get_row(conn, s.sites, "site", site_id)
    if site.org_id != resource.org_id:
        raise Invalid("site_id", "the site belongs to another organization than the resource")
    schemes = TARGET_SCHEMES[resource.kind]
    scheme = schemes[0] if scheme is None else v.one_of(scheme, "scheme", schemes)
    return {
        "resource_id": resource.id,
        "site_id": site_id,
        "host": v.host(host),
        "port": v.port(port),
        "scheme": scheme,
        "weight": v.integer(weight, "weight", 0, MAX_WEIGHT),
        "enabled": v.boolean(enabled, "enabled"),
        **_health_check(health_check, scheme),
        **_tls_settings(scheme, tls_verify, tls_server_name),
    }


def _check_target_free(conn: Connection, values: dict[str, Any], exclude: str | None = None) -> None:
    t = s.targets
    query = select(t.c.id).where(
        t.c.resource_id == values["resource_id"],
        t.c.site_id == values["site_id"],
        t.c.host == values["host"],
        t.c.port == values["port"],
    )
    if exclude is not None:
        query = query.where(t.c.id != exclude)
    if conn.execute(query).first():
        raise Conflict("port", s.CONSTRAINT_FIELDS["uq_targets_endpoint"][1])


@atomic
def create_target(
    conn: Connection,
    resource_id: str,
    site_id: str,
    host: str,
    port: int,
    *,
    scheme: str | None = None,
    weight: int = DEFAULT_WEIGHT,
    enabled: bool = True,
    health_check: HealthCheck | Mapping[str, Any] | None = None,
    tls_verify: bool = True,
    tls_server_name: str | None = None,
    now: datetime | None = None,
) -> Target:
    """A new target of the resource, reached through the site's edge (scheme defaults to the kind's).
    ``tls_verify`` and ``tls_server_name`` (SNI and the name verified, default the host) are for
    https targets: others refuse any value but the defaults."""
    now = resolve_now(now)
    resource = get_resource(conn, resource_id)
    values = _target_values(
        conn,
        resource,
        site_id,
        host,
        port,
        scheme,
        weight,
        enabled,
        health_check,
        tls_verify,
        tls_server_name,
    )
    _check_target_free(conn, values)
    target_id = new_id("tgt")
    conn.execute(insert(s.targets).values(id=target_id, created_at=now, updated_at=now, **values))
    record_change(conn, "target", target_id, "create", resource.org_id, now)
    return get_target(conn, target_id)


def get_target(conn: Connection, target_id: str) -> Target:
    return _target(get_row(conn, s.targets, "target", target_id))


def list_targets(
    conn: Connection,
    *,
    resource_id: str | None = None,
    site_id: str | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[Target]:
    query = select(s.targets)
    query = where_equal(query, s.targets, resource_id=resource_id, site_id=site_id)
    return paginate(conn, query, s.targets, _target, limit, cursor)


@atomic
def update_target(
    conn: Connection,
    target_id: str,
    *,
    site_id: str | Unset = UNSET,
    host: str | Unset = UNSET,
    port: int | Unset = UNSET,
    scheme: str | Unset = UNSET,
    weight: int | Unset = UNSET,
    enabled: bool | Unset = UNSET,
    health_check: HealthCheck | Mapping[str, Any] | Unset = UNSET,
    tls_verify: bool | Unset = UNSET,
    tls_server_name: str | Unset | None = UNSET,
    now: datetime | None = None,
) -> Target:
    """Change some of a target's settings. Moving a target off https resets its TLS settings
    (unless given: then they are refused)."""
    now = resolve_now(now)
    current = get_target(conn, target_id)
    resource = get_resource(conn, current.resource_id)

    def pick(new: Any, old: Any) -> Any:
        return old if new is UNSET else new

    if pick(scheme, current.scheme) != "https":  # TLS settings left over from https mean nothing now
        current = dataclasses.replace(current, tls_verify=True, tls_server_name=None)
    values = _target_values(
        conn,
        resource,
        pick(site_id, current.site_id),
        pick(host, current.host),
        pick(port, current.port),
        pick(scheme, current.scheme),
        pick(weight, current.weight),
        pick(enabled, current.enabled),
        pick(health_check, current.health_check),
        pick(tls_verify, current.tls_verify),
        pick(tls_server_name, current.tls_server_name),
    )
    _check_target_free(conn, values, exclude=target_id)
    row = get_row(conn, s.targets, "target", target_id)._mapping
    changed = {k: val for k, val in values.items() if row[k] != val}
    if changed:
        conn.execute(update(s.targets).where(s.targets.c.id == target_id).values(updated_at=now, **changed))
        record_change(conn, "target", target_id, "update", resource.org_id, now)
    return get_target(conn, target_id)


@atomic
def delete_target(conn: Connection, target_id: str, *, now: datetime | None = None) -> None:
    now = resolve_now(now)
    current = get_target(conn, target_id)
    resource = get_resource(conn, current.resource_id)
    conn.execute(delete(s.targets).where(s.targets.c.id == target_id))
    record_change(conn, "target", target_id, "delete", resource.org_id, now)
