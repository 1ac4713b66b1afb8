"""The sign-in settings of a gateway: the ``[auth]`` table of its TOML file, with sane defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kokoa.config import ConfigError, check_keys, get_number, get_str, get_str_list

#: The cookie of a resource's host session, and of the login host's session (host-only, Secure).
SESSION_COOKIE = "__Host-kokoa_session"
LOGIN_COOKIE = "__Host-kokoa_login"
#: Paths on every resource host that the gateway answers itself.
INTERNAL_PREFIX = "/.kokoa/"
CALLBACK_PATH = "/.kokoa/auth/callback"
START_PATH = "/.kokoa/auth/start"  # gives the browser its nonce cookie, then off to the login host
NONCE_COOKIE = "__Host-kokoa_nonce"
SHARE_PREFIX = "/.kokoa/share/"
SIGNOUT_PATH = "/.kokoa/auth/signout"

DAY = 86400.0


@dataclass
class AuthSettings:
    """Sessions, headers to the upstream, who to believe about client addresses, and the extras
    (mail, single sign-on). Every limit has a default here and a key in ``[auth]``."""

    login_url: str | None = None  # https://login.example.com; None: https://login.localhost[:port]
    session_lifetime: float = 7 * DAY  # seconds a session lasts at most
    idle_timeout: float = DAY  # seconds without a request that end a session
    header_user: str = "Remote-User"
    header_email: str = "Remote-Email"
    header_groups: str = "Remote-Groups"
    header_name: str = "Remote-Name"
    bearer_header: str = "Authorization"  # "Authorization" takes "Bearer <token>"; any other: the token
    # Client headers never forwarded, besides the identity headers; "X-Auth-Request-*" is a prefix.
    strip_headers: list[str] = field(default_factory=lambda: list(DEFAULT_STRIP_HEADERS))
    trusted_proxies: list[str] = field(default_factory=list)
    proxy_protocol: bool = False  # the HTTP(S) listeners take PROXY headers from trusted_proxies only
    access_log_retention_days: float = 30.0
    access_log_buffer: int = 10_000  # decisions waiting to be written; more are counted and dropped
    session_cache_size: int = 100_000  # sessions and tokens kept in memory
    # Sign-in throttling (kokoa.auth._ratelimit.SignInThrottle; docs/identity.md has the model):
    attempts_per_account_address: int = 5  # per account and client address, refused beyond ...
    account_address_refill_seconds: float = 60.0  # ... then one more per this many seconds
    attempts_per_address: int = 20  # per client address, refused beyond ...
    address_refill_seconds: float = 3.0
    attempts_per_account: int = 10  # per account from unknown browsers, *delayed* beyond ...
    account_refill_seconds: float = 30.0  # ... to one per this many seconds,
    max_signin_delay: float = 10.0  # ... by at most this many seconds (never refused)
    reset_link_lifetime: float = 3600.0
    invite_link_lifetime: float = 7 * DAY
    email_code_lifetime: float = 600.0
    mail: dict[str, Any] | None = None  # MailSettings fields
    oidc: list[dict[str, Any]] = field(default_factory=list)  # OIDCProviderConfig fields

    def login_origin(self, https_port: int | None) -> str:
        """The login host's origin: ``login_url`` without its path, or the development default."""
        if self.login_url is not None:
            parts = urlsplit(self.login_url)
            return f"{parts.scheme}://{parts.netloc}"
        port = "" if https_port in (None, 443) else f":{https_port}"
        return f"https://login.localhost{port}"


_NUMBERS = {
    "session_lifetime": 60.0,
    "idle_timeout": 60.0,
    "access_log_retention_days": 0.0,
    "account_refill_seconds": 0.0,
    "address_refill_seconds": 0.0,
    "account_address_refill_seconds": 0.0,
    "max_signin_delay": 0.0,
    "reset_link_lifetime": 60.0,
    "invite_link_lifetime": 60.0,
    "email_code_lifetime": 60.0,
}
_INTS = {
    "access_log_buffer": 1,
    "session_cache_size": 100,
    "attempts_per_account": 1,
    "attempts_per_address": 1,
    "attempts_per_account_address": 1,
}
_HEADERS = ("header_user", "header_email", "header_groups", "header_name", "bearer_header")


def parse_auth(table: Any, base: Path, where: str) -> AuthSettings:
    """The ``[auth]`` table (with ``[auth.mail]`` and ``[[auth.oidc]]``)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    check_keys(
        table,
        {"login_url", "trusted_proxies", "proxy_protocol", "mail", "oidc", *_NUMBERS, *_INTS, *_HEADERS}
        | {"strip_headers"},
        where,
    )
    settings = AuthSettings()
    login_url = get_str(table, "login_url", where)
    if login_url is not None:
        parts = urlsplit(login_url)
        if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/"):
            raise ConfigError(
                f"{where}: login_url must be an https URL without a path, such as https://login.example.com"
            )
        settings.login_url = login_url.rstrip("/")
    for key, minimum in _NUMBERS.items():
        if key in table:
            setattr(settings, key, get_number(table, key, where, minimum, minimum=minimum))
    for key, minimum in _INTS.items():
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"{where}: {key} must be a whole number of at least {minimum}")
            setattr(settings, key, value)
    for key in _HEADERS:
        value = get_str(table, key, where)
        if value is not None:
            if not value.replace("-", "").isalnum() or not value.isascii():
                # (no "_": clients could send the "-" spelling, which many servers read the same)
                raise ConfigError(f"{where}: {key} must be an HTTP header name of letters, digits and -")
            setattr(settings, key, value)
    if "strip_headers" in table:
        settings.strip_headers = _parse_strip_headers(table["strip_headers"], where)
    proxies = get_str_list(table, "trusted_proxies", where)
    if proxies is not None:
        from kokoa.http._client_address import TrustedProxies

        try:
            TrustedProxies(proxies)
        except ValueError as e:
            raise ConfigError(f"{where}: trusted_proxies: {e}") from None
        settings.trusted_proxies = proxies
    if "proxy_protocol" in table:
        if not isinstance(table["proxy_protocol"], bool):
            raise ConfigError(f"{where}: proxy_protocol must be true or false")
        if table["proxy_protocol"] and not settings.trusted_proxies:
            raise ConfigError(
                f"{where}: proxy_protocol needs trusted_proxies (the load balancers' addresses)"
            )
        settings.proxy_protocol = table["proxy_protocol"]
    if "mail" in table:
        settings.mail = _parse_mail(table["mail"], base, f"{where} mail")
    if "oidc" in table:
        settings.oidc = _parse_oidc(table["oidc"], base, f"{where} oidc")
    return settings


def _parse_mail(table: Any, base: Path, where: str) -> dict[str, Any]:
    from ._mail import MailSettings

    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    keys = {"host", "port", "from_address", "security", "username", "password", "ca_file", "timeout"}
    check_keys(table, keys, where)
    values = dict(table)
    if "ca_file" in values:
        values["ca_file"] = str(base / str(values["ca_file"]))
    try:
        MailSettings(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None
    return values


def _parse_oidc(entries: Any, base: Path, where: str) -> list[dict[str, Any]]:
    from ._oidc import OIDCProviderConfig

    if not isinstance(entries, list):
        raise ConfigError(f"{where}: must be an array of tables ([[auth.oidc]])")
    providers = []
    for i, entry in enumerate(entries):
        at = f"{where}[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{at}: must be a table")
        values = dict(entry)
        for key in ("scopes", "allowed_domains"):
            if key in values:
                values[key] = tuple(values[key])
        if "ca_file" in values:
            values["ca_file"] = str(base / str(values["ca_file"]))
        try:
            OIDCProviderConfig(**values)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{at}: {e}") from None
        providers.append(values)
    names = [p["name"] for p in providers]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: two providers have the same name")
    return providers


# -- strip_headers ------------------------------------------------------------------------------------

#: What ``strip_headers`` is unless set: identity headers other proxies and auth middlewares use, which
#: an upstream might believe if a client sent them.
DEFAULT_STRIP_HEADERS = ("X-Forwarded-User", "X-Remote-User", "X-Auth-Request-*")
#: Headers that frame or route a request: never stripped (a body without its length is smuggling).
_FRAMING = ("host", "content-length", "transfer-encoding")


def _parse_strip_headers(value: Any, where: str) -> list[str]:
    """``strip_headers``: header names of letters, digits and "-", each maybe ending in "*" (a
    prefix); none may remove Host, Content-Length or Transfer-Encoding."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: strip_headers must be a list of header names")
    for name in value:
        bare = name.removesuffix("*")
        if not bare or not bare.isascii() or not bare.replace("-", "").isalnum() or bare.startswith("-"):
            raise ConfigError(
                f"{where}: strip_headers: {name!r} is not a header name of letters, digits and - (with"
                " maybe a * at its end, for every header that starts so; no _: clients could send the -"
                " spelling, which many servers read the same, and both are stripped)"
            )
        prefix = name.endswith("*")
        lower = bare.lower()
        if any(f == lower or (prefix and f.startswith(lower)) for f in _FRAMING):
            raise ConfigError(
                f"{where}: strip_headers: {name!r} would remove Host, Content-Length or"
                " Transfer-Encoding, which the upstream needs to read the request"
            )
    return list(value)
