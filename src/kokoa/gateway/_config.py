"""The gateway's settings: defaults, overridden by the TOML file, overridden by flags."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from kokoa.auth._settings import AuthSettings, parse_auth
from kokoa.config import (
    ConfigError,
    check_keys,
    get_number,
    get_str,
    get_str_list,
    load_toml,
    parse_host_port,
    parse_limits,
)
from kokoa.http._front import FrontSettings
from kokoa.secrets import PREFIX
from kokoa.tunnel import DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_PING_INTERVAL, DEFAULT_PING_TIMEOUT
from kokoa.wire import Limits

from ._console import ConsoleSettings, parse_console
from ._model import SITE_ID, Site, TCPResource
from ._tunnels import DEFAULT_MAX_TUNNELS_PER_SITE

_HEX64 = re.compile(r"^[0-9a-f]{64}$")

DEFAULT_TUNNEL = "tcp:7443"
DEFAULT_TUNNEL_WS = "tcp:7444"
DEFAULT_API = "tcp:7000:interface=127.0.0.1"
DEFAULT_WS_PATH = "/tunnel"
DEFAULT_HTTP = "tcp:80"
DEFAULT_HTTPS = "tcp:443"

_TOP_KEYS = {
    "data_dir",
    "tunnel",
    "tunnel_ws",
    "ws_path",
    "api",
    "tls_cert",
    "tls_key",
    "hostnames",
    "limits",
    "keepalive",
    "sites",
    "resources",
    "max_tunnels_per_site",
    "database",
    "migrate",
    "resource_interface",
    "http",
    "https",
    "http_front",
    "https_dev_ca",
    "certificate",
    "acme",
    "auth",
    "console",
}


@dataclass
class GatewayConfig:
    data_dir: Path = Path("data")
    tunnel: list[str] = field(default_factory=lambda: [DEFAULT_TUNNEL])
    tunnel_ws: list[str] = field(default_factory=lambda: [DEFAULT_TUNNEL_WS])
    ws_path: str = DEFAULT_WS_PATH
    api: str | None = DEFAULT_API
    tls_cert: Path | None = None
    tls_key: Path | None = None
    hostnames: list[str] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    ping_interval: float = DEFAULT_PING_INTERVAL
    ping_timeout: float = DEFAULT_PING_TIMEOUT
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    max_tunnels_per_site: int = DEFAULT_MAX_TUNNELS_PER_SITE
    database: str | None = None  # None: SQLite in the data directory
    migrate: bool = True
    resource_interface: str = ""  # the address resource ports of the store listen on ("" = all)
    http: list[str] = field(default_factory=lambda: [DEFAULT_HTTP])
    https: list[str] = field(default_factory=lambda: [DEFAULT_HTTPS])
    http_front: FrontSettings = field(default_factory=FrontSettings)
    https_dev_ca: bool = True  # HTTPS hosts without another certificate get one from the dev CA
    certificates: list[tuple[Path, Path]] = field(default_factory=list)  # (cert, key) PEM files
    acme: dict | None = None  # AcmeSettings fields; None: no ACME
    auth: AuthSettings = field(default_factory=AuthSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    sites: list[Site] = field(default_factory=list)
    resources: list[TCPResource] = field(default_factory=list)


def load_gateway_config(path: str | Path | None) -> GatewayConfig:
    """Read a gateway TOML file (paths in it are relative to the file)."""
    config = GatewayConfig()
    if path is None:
        return config
    path = Path(path)
    raw = load_toml(path)
    where = str(path)
    check_keys(raw, _TOP_KEYS, where)
    base = path.parent

    def rel(value: str | None) -> Path | None:
        return None if value is None else base / value

    if "data_dir" in raw:
        config.data_dir = rel(get_str(raw, "data_dir", where))
    for key in ("tunnel", "tunnel_ws", "hostnames", "http", "https"):
        value = get_str_list(raw, key, where)
        if value is not None:
            setattr(config, key, [v for v in value if v != "none"])
    config.ws_path = get_str(raw, "ws_path", where, DEFAULT_WS_PATH)
    if not config.ws_path.startswith("/"):
        raise ConfigError(f"{where}: ws_path must start with /")
    if "api" in raw:
        api = get_str(raw, "api", where)
        config.api = None if api == "none" else api
    config.tls_cert = rel(get_str(raw, "tls_cert", where))
    config.tls_key = rel(get_str(raw, "tls_key", where))
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ConfigError(f"{where}: tls_cert and tls_key go together")
    config.limits = parse_limits(raw.get("limits"), f"{where} [limits]")
    keepalive = raw.get("keepalive", {})
    check_keys(keepalive, {"ping_interval", "ping_timeout", "handshake_timeout"}, f"{where} [keepalive]")
    config.ping_interval = get_number(
        keepalive, "ping_interval", f"{where} [keepalive]", DEFAULT_PING_INTERVAL
    )
    config.ping_timeout = get_number(keepalive, "ping_timeout", f"{where} [keepalive]", DEFAULT_PING_TIMEOUT)
    config.handshake_timeout = get_number(
        keepalive, "handshake_timeout", f"{where} [keepalive]", DEFAULT_HANDSHAKE_TIMEOUT
    )
    config.max_tunnels_per_site = raw.get("max_tunnels_per_site", DEFAULT_MAX_TUNNELS_PER_SITE)
    if type(config.max_tunnels_per_site) is not int or config.max_tunnels_per_site < 1:
        raise ConfigError(f"{where}: max_tunnels_per_site must be a whole number of at least 1")
    config.database = get_str(raw, "database", where)
    config.resource_interface = raw.get("resource_interface", "")
    if not isinstance(config.resource_interface, str):
        raise ConfigError(f'{where}: resource_interface must be an IP address, or "" for all')
    config.migrate = raw.get("migrate", True)
    if not isinstance(config.migrate, bool):
        raise ConfigError(f"{where}: migrate must be true or false")
    config.http_front = _parse_front(raw.get("http_front", {}), base, f"{where} [http_front]")
    config.https_dev_ca = raw.get("https_dev_ca", True)
    if not isinstance(config.https_dev_ca, bool):
        raise ConfigError(f"{where}: https_dev_ca must be true or false")
    config.certificates = _parse_certificates(raw.get("certificate", []), base, where)
    if "acme" in raw:
        config.acme = _parse_acme(raw["acme"], base, f"{where} [acme]")
    if "auth" in raw:
        config.auth = parse_auth(raw["auth"], base, f"{where} [auth]")
    if "console" in raw:
        config.console = parse_console(raw["console"], f"{where} [console]")
    config.sites = _parse_sites(raw.get("sites", []), where)
    config.resources = _parse_resources(raw.get("resources", []), config.sites, where)
    return config


def _parse_sites(entries, where: str) -> list[Site]:
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: [[sites]] must be an array of tables")
    sites, ids = [], set()
    for i, entry in enumerate(entries):
        at = f"{where} sites[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{at}: must be a table")
        check_keys(entry, {"id", "name", "secret_hash", "enabled"}, at)
        site_id = get_str(entry, "id", at, required=True)
        if not SITE_ID.match(site_id):
            raise ConfigError(f"{at}: id {site_id!r} must be 1-63 lowercase letters, digits, '-' or '_'")
        secret_hash = get_str(entry, "secret_hash", at, required=True)
        digest = secret_hash[len(PREFIX) :]
        if not secret_hash.startswith(PREFIX) or not _HEX64.match(digest):
            raise ConfigError(
                f"{at}: secret_hash must be '{PREFIX}' and 64 hex digits (make one with `kokoa site-secret`)"
            )
        if site_id in ids:
            raise ConfigError(f"{at}: duplicate site id {site_id!r}")
        ids.add(site_id)
        enabled = entry.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{at}: enabled must be true or false")
        sites.append(Site(site_id, get_str(entry, "name", at, site_id), secret_hash, enabled))
    return sites


def _parse_resources(entries, sites: list[Site], where: str) -> list[TCPResource]:
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: [[resources]] must be an array of tables")
    site_ids = {s.id for s in sites}
    resources, names = [], set()
    for i, entry in enumerate(entries):
        at = f"{where} resources[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{at}: must be a table")
        check_keys(entry, {"name", "site", "listen", "port", "target", "enabled"}, at)
        name = get_str(entry, "name", at, required=True)
        if name in names:
            raise ConfigError(f"{at}: duplicate resource name {name!r}")
        names.add(name)
        site = get_str(entry, "site", at, required=True)
        if site not in site_ids:
            raise ConfigError(f"{at}: site {site!r} is not defined in [[sites]]")
        if "port" in entry and "listen" in entry:
            raise ConfigError(f"{at}: give either port or listen, not both")
        if "port" in entry:
            port = entry["port"]
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise ConfigError(f"{at}: port must be an integer from 1 to 65535")
            listen = f"tcp:{port}"
        else:
            listen = get_str(entry, "listen", at, required=True)
        host, target_port = parse_host_port(get_str(entry, "target", at, required=True), f"{at} target")
        enabled = entry.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{at}: enabled must be true or false")
        resources.append(TCPResource(name, site, listen, host, target_port, enabled))
    return resources


_FRONT_INTS = {
    "max_request_line": 256,
    "max_header_bytes": 1024,
    "max_headers": 8,
    "max_body": 0,
    "max_response_header_bytes": 1024,
    "max_connections": 1,
    "max_pipelined": 1,
    "pool_max_idle": 0,
}
_FRONT_SECONDS = ("header_timeout", "idle_timeout", "upstream_timeout", "pool_idle_timeout")
#: Whole numbers with an upper bound too: (least, most).
_FRONT_RANGES = {
    "inspector_ring_size": (1, 100_000),  # requests kept per watched resource
    "inspector_max_watchers": (0, 10_000),  # 0: nobody may watch (the inspector is off)
}


def _parse_front(table, base: Path, where: str) -> FrontSettings:
    """The [http_front] table: limits and timeouts of the HTTP front."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    check_keys(
        table, set(_FRONT_INTS) | set(_FRONT_SECONDS) | set(_FRONT_RANGES) | {"upstream_ca_file"}, where
    )
    settings = FrontSettings()
    for key, minimum in _FRONT_INTS.items():
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"{where}: {key} must be a whole number of at least {minimum}")
            setattr(settings, key, value)
    for key, (least, most) in _FRONT_RANGES.items():
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
                raise ConfigError(f"{where}: {key} must be a whole number from {least} to {most}")
            setattr(settings, key, value)
    for key in _FRONT_SECONDS:
        if key in table:
            setattr(settings, key, get_number(table, key, where, 0))
    ca_file = get_str(table, "upstream_ca_file", where)
    if ca_file is not None:
        settings.upstream_ca_file = str(_existing(base / ca_file, f"{where}: upstream_ca_file"))
    return settings


def _parse_certificates(entries, base: Path, where: str) -> list[tuple[Path, Path]]:
    """[[certificate]] tables: a PEM certificate (chain) and its key, served for the names in it."""
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: [[certificate]] must be an array of tables")
    pairs = []
    for i, entry in enumerate(entries):
        at = f"{where} certificate[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{at}: must be a table")
        check_keys(entry, {"cert", "key"}, at)
        cert = _existing(base / get_str(entry, "cert", at, required=True), f"{at}: cert")
        key = _existing(base / get_str(entry, "key", at, required=True), f"{at}: key")
        pairs.append((cert, key))
    return pairs


_ACME_STRINGS = ("directory", "email", "ca_bundle")
_ACME_NUMBERS = ("renew_before_days", "retry_initial", "retry_max", "order_timeout", "network_timeout")


def _parse_acme(table, base: Path, where: str) -> dict:
    """The [acme] table: certificates from an ACME CA (HTTP-01) for the resources' hostnames."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    check_keys(table, {*_ACME_STRINGS, *_ACME_NUMBERS, "agree_tos"}, where)
    settings: dict = {"directory": get_str(table, "directory", where, required=True)}
    for key in ("email", "ca_bundle"):
        value = get_str(table, key, where)
        if value is not None:
            settings[key] = str(base / value) if key == "ca_bundle" else value
    for key in _ACME_NUMBERS:
        if key in table:
            settings[key] = get_number(table, key, where, 0, minimum=-1 if key == "renew_before_days" else 0)
    if "agree_tos" in table:
        if not isinstance(table["agree_tos"], bool):
            raise ConfigError(f"{where}: agree_tos must be true or false")
        settings["agree_tos"] = table["agree_tos"]
    from kokoa.http._acme import AcmeSettings

    try:
        AcmeSettings(**settings)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None
    return settings


def _existing(path: Path, what: str) -> Path:
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} is not a readable file")
    return path
