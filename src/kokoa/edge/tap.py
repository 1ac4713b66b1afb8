"""``twistd kokoa-edge``: hold tunnels to the gateway and serve its streams."""

from __future__ import annotations

import gc
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from twisted.application import service
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python import usage
from zope.interface import implementer

from kokoa import __version__
from kokoa.config import ConfigError, check_keys, get_number, get_str, get_str_list, load_toml, parse_limits
from kokoa.tunnel import DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_PING_INTERVAL, DEFAULT_PING_TIMEOUT
from kokoa.wire import Limits

from ._handler import DEFAULT_CONNECT_TIMEOUT

log = Logger()

DEFAULT_CONNECTIONS = 2
#: Reconnection backoff: first delay, ceiling, growth factor; up to 1 s of random jitter is added.
BACKOFF_INITIAL, BACKOFF_MAX, BACKOFF_FACTOR = 1.0, 30.0, 2.0
SECRET_ENV = "KOKOA_SITE_SECRET"

_KEYS = {
    "gateway",
    "site",
    "secret_file",
    "connections",
    "ca_file",
    "fingerprint",
    "insecure",
    "allow",
    "connect_timeout",
    "health_ca_file",
    "limits",
    "keepalive",
}


@dataclass
class EdgeConfig:
    gateways: list[str] = field(default_factory=list)
    site: str | None = None
    secret: str | None = field(default=None, repr=False)
    connections: int = DEFAULT_CONNECTIONS
    ca_file: str | None = None
    fingerprint: str | None = None
    insecure: bool = False
    allow: list[str] = field(default_factory=list)
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    limits: Limits = field(default_factory=Limits)
    ping_interval: float = DEFAULT_PING_INTERVAL
    ping_timeout: float = DEFAULT_PING_TIMEOUT
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    secret_file: str | None = None
    health_ca_file: str | None = None  # CAs for https health checks (default: the system's)


class Options(usage.Options):
    synopsis = "--gateway URL --site ID [options]"
    longdesc = (
        "Run a Kokoa edge next to private services. The site secret comes from the "
        f"{SECRET_ENV} environment variable or --secret-file, never from the command line."
    )
    optParameters = [
        ["config", "c", None, "TOML configuration file (flags override it)."],
        ["site", "s", None, "Site id."],
        ["secret-file", None, None, f"File holding the site secret (else ${SECRET_ENV})."],
        ["connections", None, None, f"Tunnel connections per gateway (default {DEFAULT_CONNECTIONS})."],
        ["ca-file", None, None, "Trust this CA certificate (PEM) for the gateway instead of the system's."],
        ["fingerprint", None, None, "Trust exactly the gateway certificate with this sha256: fingerprint."],
        ["connect-timeout", None, None, f"Seconds to reach a target (default {DEFAULT_CONNECT_TIMEOUT:g})."],
        [
            "health-ca-file",
            None,
            None,
            "Trust these CA certificates (PEM) for https targets' health checks instead of the system's.",
        ],
    ]
    optFlags = [["insecure", None, "Do not verify the gateway's certificate (testing only)."]]

    def __init__(self) -> None:
        super().__init__()
        self["gateway"] = []
        self["allow"] = []

    def opt_gateway(self, url: str) -> None:
        """Gateway tunnel address: tls:HOST:PORT or wss://HOST[:PORT]/PATH (repeatable)."""
        self["gateway"].append(url)

    def opt_allow(self, rule: str) -> None:
        """Only ever connect to targets matching HOST:PORT, HOST:* or a CIDR (repeatable)."""
        self["allow"].append(rule)

    def postOptions(self) -> None:
        try:
            self.config = build_config(self, os.environ)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None


def build_config(options: Options, environ) -> EdgeConfig:
    config = EdgeConfig()
    if options["config"]:
        _apply_file(config, Path(options["config"]))
    if options["gateway"]:
        config.gateways = options["gateway"]
    for key in ("site", "ca-file", "fingerprint", "secret-file", "health-ca-file"):
        if options[key]:
            setattr(config, key.replace("-", "_"), options[key])
    if options["insecure"]:
        config.insecure = True
    if options["allow"]:
        config.allow = options["allow"]
    if options["connections"]:
        config.connections = _positive_int(options["connections"], "--connections")
    if options["connect-timeout"]:
        config.connect_timeout = get_number(
            {"t": _float(options["connect-timeout"])}, "t", "--connect-timeout", DEFAULT_CONNECT_TIMEOUT
        )
    if not config.gateways:
        raise ConfigError("--gateway is required (for example --gateway tls:gateway.example.com:7443)")
    if not config.site:
        raise ConfigError("--site is required (the site id the gateway gave you)")
    config.secret = _read_secret(config.secret_file, environ)
    from kokoa.transports import Trust, parse_gateway_url

    try:
        trust = Trust(ca_file=config.ca_file, fingerprint=config.fingerprint, insecure=config.insecure)
        for url in config.gateways:
            parse_gateway_url(url)
            trust.connection_creator(parse_gateway_url(url).host)  # loads and checks the CA file
        if config.health_ca_file:
            Trust(ca_file=config.health_ca_file).connection_creator("localhost")  # loads and checks it
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return config


def _read_secret(secret_file: str | None, environ) -> str:
    if secret_file:
        try:
            secret = Path(secret_file).read_text().strip()
        except OSError as e:
            raise ConfigError(f"cannot read the secret file {secret_file}: {e.strerror}") from None
        if not secret:
            raise ConfigError(f"the secret file {secret_file} is empty")
        return secret
    secret = environ.get(SECRET_ENV, "").strip()
    if not secret:
        raise ConfigError(f"no site secret: set {SECRET_ENV} or pass --secret-file")
    return secret


def _apply_file(config: EdgeConfig, path: Path) -> None:
    raw = load_toml(path)
    where = str(path)
    check_keys(raw, _KEYS, where)
    config.gateways = get_str_list(raw, "gateway", where) or []
    config.site = get_str(raw, "site", where)
    secret_file = get_str(raw, "secret_file", where)
    config.secret_file = str(path.parent / secret_file) if secret_file else None
    if "connections" in raw:
        config.connections = _positive_int(raw["connections"], f"{where}: connections")
    ca_file = get_str(raw, "ca_file", where)
    config.ca_file = str(path.parent / ca_file) if ca_file else None
    config.fingerprint = get_str(raw, "fingerprint", where)
    health_ca_file = get_str(raw, "health_ca_file", where)
    config.health_ca_file = str(path.parent / health_ca_file) if health_ca_file else None
    insecure = raw.get("insecure", False)
    if not isinstance(insecure, bool):
        raise ConfigError(f"{where}: insecure must be true or false")
    config.insecure = insecure
    config.allow = get_str_list(raw, "allow", where) or []
    config.connect_timeout = get_number(raw, "connect_timeout", where, DEFAULT_CONNECT_TIMEOUT)
    config.limits = parse_limits(raw.get("limits"), f"{where} [limits]")
    keepalive = raw.get("keepalive", {})
    at = f"{where} [keepalive]"
    check_keys(keepalive, {"ping_interval", "ping_timeout", "handshake_timeout"}, at)
    config.ping_interval = get_number(keepalive, "ping_interval", at, DEFAULT_PING_INTERVAL)
    config.ping_timeout = get_number(keepalive, "ping_timeout", at, DEFAULT_PING_TIMEOUT)
    config.handshake_timeout = get_number(keepalive, "handshake_timeout", at, DEFAULT_HANDSHAKE_TIMEOUT)


def _positive_int(value, what: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, bool) or number < 1 or number > 64:
        raise ConfigError(f"{what} must be a whole number from 1 to 64")
    return number


def _float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"not a number: {value!r}") from None


class _EdgeShutdown(service.Service):
    """On stop, say goodbye on every tunnel before ClientService closes them."""

    def __init__(self, handler) -> None:
        self.handler = handler

    def startService(self):
        super().startService()
        # What is loaded at start lives as long as the process: keep it out of the cyclic
        # collector's full passes (they stall relayed requests for tens of ms otherwise).
        gc.freeze()

    def stopService(self):
        super().stopService()
        self.handler.stop()
        for tunnel in list(self.handler.tunnels):
            tunnel.shutdown("edge shutting down")


@implementer(IStreamClientEndpoint)
class _LoggingEndpoint:
    """Says why a connection attempt failed (ClientService only says it will retry)."""

    def __init__(self, endpoint: IStreamClientEndpoint, url: str) -> None:
        self._endpoint = endpoint
        self._url = url

    def connect(self, factory):
        def failed(failure):
            log.warn(
                "cannot connect to the gateway {url}: {why}", url=self._url, why=failure.getErrorMessage()
            )
            return failure

        return self._endpoint.connect(factory).addErrback(failed)


def makeService(options: Options, reactor=None) -> service.MultiService:
    if reactor is None:
        from twisted.internet import reactor
    from kokoa import transports
    from kokoa.tunnel import TunnelProtocol
    from kokoa.wire import Role

    from ._handler import EdgeHandler, TargetPolicy

    config: EdgeConfig = options.config
    top = service.MultiService()
    handler = EdgeHandler(
        reactor, TargetPolicy(config.allow), config.connect_timeout, health_ca_file=config.health_ca_file
    )
    trust = transports.Trust(ca_file=config.ca_file, fingerprint=config.fingerprint, insecure=config.insecure)
    secret = config.secret
    config.secret = None
    for url in config.gateways:
        endpoint = _LoggingEndpoint(transports.client_endpoint(reactor, url, trust), url)
        for index in range(config.connections):
            hello = {"site": config.site, "secret": secret, "edge_version": __version__, "connection": index}

            def make(hello=hello) -> TunnelProtocol:
                return TunnelProtocol(
                    Role.CLIENT,
                    handler,
                    reactor,
                    limits=config.limits,
                    hello=dict(hello),
                    ping_interval=config.ping_interval,
                    ping_timeout=config.ping_timeout,
                    handshake_timeout=config.handshake_timeout,
                    local_name=f"edge {config.site}",
                )

            client = ClientService(
                endpoint,
                Factory.forProtocol(make),
                retryPolicy=backoffPolicy(BACKOFF_INITIAL, BACKOFF_MAX, BACKOFF_FACTOR, jitter=random.random),
                clock=reactor,
                prepareConnection=lambda tunnel: tunnel.ready,
            )
            client.setServiceParent(top)
    _EdgeShutdown(handler).setServiceParent(top)  # added last: stopped first
    top.handler = handler
    log.info(
        "edge for site {site!r}: {n} connection(s) to each of {gateways}",
        site=config.site,
        n=config.connections,
        gateways=", ".join(config.gateways),
    )
    return top
