"""``twistd kokoa``: the gateway (tunnel endpoints, TCP resources, status API)."""

from __future__ import annotations

import gc
import json
import signal
import sys
from pathlib import Path

from twisted.application import internet, service
from twisted.internet import defer, endpoints, threads
from twisted.logger import Logger
from twisted.python import usage

from kokoa.config import ConfigError

from ._config import GatewayConfig, load_gateway_config

log = Logger()

#: Seconds the gateway waits for tunnels to drain on shutdown.
DRAIN_TIMEOUT = 5.0
#: Seconds between checks that connected edges' secrets are still accepted (grace periods end).
REVALIDATE_INTERVAL = 30.0


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = "Run a Kokoa gateway: accept edge tunnels and serve resources through them."
    optParameters = [
        ["config", "c", None, "TOML configuration file (flags override it)."],
        ["data-dir", "d", None, "Data directory (certificates, state). Default: ./data"],
        ["api", None, None, "Endpoint of the status/admin API. Default: tcp:7000:interface=127.0.0.1"],
        ["tls-cert", None, None, "PEM certificate (chain) for the tunnel listeners."],
        ["tls-key", None, None, "PEM private key for --tls-cert."],
        ["ws-path", None, None, "URL path of the WebSocket tunnel. Default: /tunnel"],
        ["database", None, None, "postgresql://... to share the store; default: SQLite in the data dir."],
    ]
    optFlags = [["no-migrate", None, "Refuse to start on a database that needs a migration."]]

    def __init__(self) -> None:
        super().__init__()
        self["tunnel"] = []
        self["tunnel-ws"] = []
        self["hostname"] = []
        self["http"] = []
        self["https"] = []

    def opt_http(self, endpoint: str) -> None:
        """Endpoint for plain HTTP requests, e.g. tcp:80 (repeatable; 'none' disables)."""
        self["http"].append(endpoint)

    def opt_https(self, endpoint: str) -> None:
        """Endpoint for HTTPS requests, e.g. tcp:443 (repeatable; 'none' disables)."""
        self["https"].append(endpoint)

    def opt_tunnel(self, endpoint: str) -> None:
        """Endpoint for TLS tunnels, e.g. tcp:7443 (repeatable; 'none' disables)."""
        self["tunnel"].append(endpoint)

    def opt_tunnel_ws(self, endpoint: str) -> None:
        """Endpoint for WebSocket (wss) tunnels, e.g. tcp:7444 (repeatable; 'none' disables)."""
        self["tunnel-ws"].append(endpoint)

    def opt_hostname(self, name: str) -> None:
        """A public name of this gateway, put in the development certificate (repeatable)."""
        self["hostname"].append(name)

    def postOptions(self) -> None:
        try:
            self.config = build_config(self)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None


def build_config(options: Options) -> GatewayConfig:
    config = load_gateway_config(options["config"])
    if options["data-dir"]:
        config.data_dir = Path(options["data-dir"])
    if options["tunnel"]:
        config.tunnel = [e for e in options["tunnel"] if e != "none"]
    if options["tunnel-ws"]:
        config.tunnel_ws = [e for e in options["tunnel-ws"] if e != "none"]
    if options["http"]:
        config.http = [e for e in options["http"] if e != "none"]
    if options["https"]:
        config.https = [e for e in options["https"] if e != "none"]
    if options["hostname"]:
        config.hostnames = options["hostname"]
    if options["api"]:
        config.api = None if options["api"] == "none" else options["api"]
    if options["ws-path"]:
        config.ws_path = options["ws-path"]
    if options["database"]:
        config.database = options["database"]
    if options["no-migrate"]:
        config.migrate = False
    if options["tls-cert"] or options["tls-key"]:
        if not (options["tls-cert"] and options["tls-key"]):
            raise ConfigError("--tls-cert and --tls-key go together")
        config.tls_cert, config.tls_key = Path(options["tls-cert"]), Path(options["tls-key"])
    return config


class ListeningService(service.Service):
    """Listens on an endpoint while running. A port that cannot be had stops the start
    with the reason; the port it got is kept (for tcp:0 and for what the CLI reads)."""

    def __init__(self, endpoint, factory, description: str) -> None:
        self.endpoint = endpoint
        self.factory = factory
        self.description = description
        self.port = None

    def startService(self):
        super().startService()
        failures = []
        self.endpoint.listen(self.factory).addCallbacks(self._listening, failures.append)
        if failures:  # TCP endpoints answer at once: stop the start, saying why
            raise SystemExit(f"kokoa: cannot listen on {self.description}: {failures[0].getErrorMessage()}")

    def _listening(self, port) -> None:
        self.port = port

    def address(self) -> tuple[str, int] | None:
        if self.port is None:
            return None
        host = self.port.getHost()
        return host.host, host.port

    def stopService(self):
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None


class RuntimeInfo(service.Service):
    """Writes DATA_DIR/gateway.json once listening: where the API and the tunnels are, for
    ``kokoa`` commands on this machine. (A small file, once, at start.)"""

    def __init__(self, config: GatewayConfig, creds, listeners: dict) -> None:
        self.config = config
        self.creds = creds
        self.listeners = listeners

    def startService(self):
        super().startService()
        info = {"api": None, "tunnel": [], "tunnel_ws": [], "http": [], "https": [], "ca_file": None}
        for kind, services in self.listeners.items():
            for svc in services:
                address = svc.address()
                if address is None:
                    continue
                host, port = address
                host = "127.0.0.1" if host in ("0.0.0.0", "") else host
                host = f"[{host}]" if ":" in host else host
                if kind == "api":
                    info["api"] = f"http://{host}:{port}"
                elif kind == "tunnel":
                    info["tunnel"].append(f"tls:{host}:{port}")
                elif kind in ("http", "https"):
                    info[kind].append(f"{kind}://{host}:{port}")
                else:
                    info["tunnel_ws"].append(f"wss://{host}:{port}{self.config.ws_path}")
        if self.creds.ca_path:
            info["ca_file"] = str(Path(self.creds.ca_path).absolute())
        path = self.config.data_dir / "gateway.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        tmp.replace(path)


class ConfigReloader(service.Service):
    """``kill -HUP`` reloads sites and resources from the config file, without a restart."""

    def __init__(self, path: Path | None, options: Options, directory, reactor, certificates=None) -> None:
        self.path = path
        self.options = options
        self.directory = directory
        self.reactor = reactor
        self.certificates = certificates  # re-read its certificate files too
        self._previous = None

    def startService(self):
        super().startService()
        self._previous = signal.signal(signal.SIGHUP, self._on_signal)

    def stopService(self):
        super().stopService()
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)

    def _on_signal(self, signum, frame) -> None:
        self.reactor.callFromThread(self.reload)

    def reload(self) -> defer.Deferred:
        """Read the file in a thread; apply it on the reactor, or keep the old one on error.
        Without a file, re-read the certificate files only."""
        if self.path is None:
            log.info("SIGHUP: no --config file to reload; re-reading the certificate files")
            return self.certificates.reload().addCallback(_log_certificate_problems)
        log.info("reloading {path}", path=str(self.path))
        d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), build_config, self.options)

        def apply(config: GatewayConfig) -> None:
            self.directory.replace(config.sites, config.resources)
            if self.certificates is not None:
                self.certificates.reload().addCallback(_log_certificate_problems)
            log.info(
                "configuration reloaded: {s} site(s), {r} resource(s) (listeners for tunnels and the "
                "API change only with a restart)",
                s=len(config.sites),
                r=len(config.resources),
            )

        def failed(failure) -> None:
            if failure.check(ConfigError):
                why = failure.getErrorMessage()
                log.error("configuration not reloaded, the old one stays: {why}", why=why)
            else:
                log.failure("configuration reload failed", failure)

        return d.addCallback(apply).addErrback(failed)


def _log_certificate_problems(problems: list[str]) -> None:
    for problem in problems:
        log.error("certificate not reloaded, the old one stays: {problem}", problem=problem)


class StoreService(service.Service):
    """Opens the store (migrating it unless told not to) and serves the directory from it.

    The store opens in its thread pool once the reactor runs; a store that cannot be
    opened stops the gateway with the reason."""

    def __init__(self, url: str, migrate: bool, directory, reactor) -> None:
        self.url = url
        self.migrate = migrate
        self.directory = directory
        self.reactor = reactor
        self.store = None
        self.ready = defer.Deferred()

    def startService(self):
        super().startService()
        from kokoa.store import Store

        d = Store.open(self.url, self.reactor, migrate=self.migrate)
        d.addCallback(self._opened)
        d.addErrback(self._failed)

    @defer.inlineCallbacks
    def _opened(self, store):
        if not self.running:  # stopped while the store was opening
            yield store.close()
            return
        self.store = store
        yield self.directory.attach(store)
        log.info("store open: {url}, schema {rev}", url=_shown(self.url), rev=store.revision)
        self.ready.callback(store)

    def _failed(self, failure) -> None:
        log.error("cannot open the store {url}: {why}", url=_shown(self.url), why=failure.getErrorMessage())
        if self.reactor.running:
            self.reactor.stop()

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        self.directory.detach()
        if self.store is not None:
            yield self.store.close()


def _shown(url: str) -> str:
    """The URL without its password, for logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


class DrainService(service.Service):
    """On shutdown, ask every edge to go away and wait (bounded) for the tunnels to close."""

    def __init__(self, registry, reactor) -> None:
        self.registry = registry
        self.reactor = reactor

    def stopService(self):
        super().stopService()
        waits = []
        for _, tunnel in self.registry.all():
            tunnel.go_away("gateway shutting down")
            waits.append(tunnel.lost)
        if not waits:
            return None
        done = defer.DeferredList(waits, consumeErrors=True)
        timeout = self.reactor.callLater(DRAIN_TIMEOUT, done.cancel)
        done.addBoth(lambda _: timeout.active() and timeout.cancel())
        return done


def _record_presence(store_service: StoreService, site_id: str, online: bool) -> None:
    """Note in the store that a site's edge came or went (sites of the file are not there)."""
    store = store_service.store
    if store is None or not site_id.startswith("site_"):
        return
    from kokoa.store import NotFound, mark_site_seen

    def failed(failure):
        if not failure.check(NotFound):
            log.warn("cannot record presence of {site}: {why}", site=site_id, why=failure.getErrorMessage())

    store.run(mark_site_seen, site_id, online=online).addErrback(failed)


def _certificate_manager(config: GatewayConfig, creds, reactor):
    """Certificates per host for the HTTPS front: files, ACME, the development CA (in that
    order); the gateway's own certificate for clients without SNI and unknown names."""
    from kokoa.http._acme import AcmeSettings
    from kokoa.http._certs import CertificateManager

    try:
        return CertificateManager(
            config.data_dir,
            reactor,
            files=config.certificates,
            dev_ca=config.https_dev_ca,
            acme=AcmeSettings(**config.acme) if config.acme else None,
            default=creds,
        )
    except ValueError as e:
        raise usage.UsageError(str(e)) from None


def _access_gate(config: GatewayConfig, front, store_service: StoreService, reactor):
    """The gate in front of every resource, and the login host's pages (handed the connections for it)."""
    from kokoa.auth._gate import AccessGate
    from kokoa.auth._sealed import new_key
    from kokoa.auth.login import LoginApp
    from kokoa.store import instance_key

    settings = config.auth
    gate = AccessGate(settings, lambda: store_service.store, reactor, https_port=_port_of(config.https))
    mailer = None
    if settings.mail is not None:
        from kokoa.auth._mail import Mailer, MailSettings

        mailer = Mailer(MailSettings(**settings.mail), reactor)
    clients = []
    for provider in settings.oidc:
        from kokoa.auth._oidc import OIDCClient, OIDCProviderConfig

        clients.append(OIDCClient(OIDCProviderConfig(**provider), reactor))
    login = LoginApp(gate, front, reactor, mailer=mailer, oidc=clients)

    def cookie_key(store):
        """The key that seals the login host's cookies: the instance's, shared by every gateway."""
        d = store.run(instance_key, "cookie", new_key)
        d.addCallback(login.set_cookie_key)
        d.addErrback(lambda f: log.failure("cannot read the instance's cookie key", f))
        return store

    store_service.ready.addCallback(cookie_key)
    front.gate = gate
    front.login_host = gate.login_host
    front.login_site = login.site()
    front.login_app = login
    return gate


def _console(config: GatewayConfig, handler, store_directory, store_service, front, gate):
    """What the console's API routes see of this gateway, fed with its tunnels, health, configuration
    changes and access log; and the bounds of its event streams (``[console]``)."""
    from kokoa.api._sse import StreamLimits

    from ._console import ConsoleView
    from ._events import EventHub

    first_name = config.hostnames[0] if config.hostnames else None
    view = ConsoleView(
        registry=handler.registry,
        tunnels=handler,
        health=handler.health,
        directory=handler.directory,
        store_directory=store_directory,
        store=lambda: store_service.store,
        events=EventHub(),
        front=front,
        name=first_name,
        public_host=first_name or gate.login_host,
        https_port=lambda: gate.https_port,
    )
    handler.on_tunnels_changed = view.tunnels_changed
    handler.health.subscribe(view.health_changed)
    gate.recorder.observer = view.access_row
    settings = config.console
    streams = StreamLimits(
        store_service.reactor, max_streams=settings.max_streams, max_buffer=settings.max_buffer
    )
    return view, streams


class ConsoleStreamsService(service.Service):
    """Ends the console's open event streams when the gateway stops."""

    def __init__(self, streams) -> None:
        self.streams = streams

    def stopService(self):
        super().stopService()
        self.streams.close_all()


def _behind_proxy(config: GatewayConfig, factory, reactor):
    """With ``[auth] proxy_protocol``, the HTTP(S) listeners take a PROXY protocol header (v1 or v2)
    from the ``trusted_proxies`` first, and refuse every other peer."""
    if not config.auth.proxy_protocol:
        return factory
    from kokoa.http._client_address import TrustedProxies, proxy_protocol_factory

    return proxy_protocol_factory(factory, TrustedProxies(config.auth.trusted_proxies), reactor=reactor)


def _port_of(descriptions: list[str]) -> int | None:
    for description in descriptions:
        parts = description.split(":")
        if len(parts) > 1 and parts[0] in ("tcp", "ssl") and parts[1].isdigit() and int(parts[1]):
            return int(parts[1])
    return None


class HTTPFrontService(service.Service):
    """Loads the routing table at start; on stop, closes client and pooled upstream connections."""

    def __init__(self, front, gate=None, https_listeners=()) -> None:
        self.front = front
        self.gate = gate
        self.https_listeners = https_listeners

    def startService(self):
        super().startService()
        self.front.reload()
        self.front.start()
        if self.gate is not None:
            for listener in self.https_listeners:
                address = listener.address()
                if address is not None:
                    self.gate.https_port = address[1]  # the links it makes name the real port
                    break
            self.gate.reload(self.front.directory.policies())
            self.gate.start()
        # Everything loaded so far lives as long as the process: keep it out of the cyclic
        # collector's full passes, which otherwise stall requests for tens of ms on big heaps.
        gc.freeze()

    def stopService(self):
        super().stopService()
        self.front.stop()
        self.front.close_all()
        if self.gate is not None:
            return self.gate.stop()
        return None


def makeService(options: Options, reactor=None) -> service.MultiService:
    if reactor is None:
        from twisted.internet import reactor
    from twisted.protocols.tls import TLSMemoryBIOFactory

    from kokoa import pki, transports
    from kokoa.http._front import HTTPFront
    from kokoa.store import database_url

    from ._api import AdminApiRoot, port_available
    from ._api import site as _api_site
    from ._model import StaticSiteDirectory
    from ._registry import TunnelRegistry
    from ._status import status_snapshot
    from ._store_directory import CombinedDirectory, StoreSiteDirectory
    from ._tcp import TCPResourceService
    from ._tunnels import GatewayTunnelHandler, tunnel_server_factory

    config: GatewayConfig = options.config
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        if config.tls_cert:
            creds = pki.load_credentials(config.tls_cert, config.tls_key)
        else:
            creds = pki.ensure_dev_ca(config.data_dir, config.hostnames)
            print(pki.edge_trust_hint(creds), file=sys.stderr)
    except ValueError as e:
        raise usage.UsageError(str(e)) from None

    top = service.MultiService()
    file_directory = StaticSiteDirectory(config.sites, config.resources)
    store_directory = StoreSiteDirectory(reactor, resource_interface=config.resource_interface)
    directory = CombinedDirectory(file_directory, store_directory)
    store_service = StoreService(
        database_url(config.data_dir, config.database), config.migrate, store_directory, reactor
    )
    registry = TunnelRegistry()
    handler = GatewayTunnelHandler(directory, registry, config.max_tunnels_per_site)
    handler.on_presence = lambda site_id, online: _record_presence(store_service, site_id, online)
    factory = tunnel_server_factory(
        handler,
        reactor,
        config.limits,
        ping_interval=config.ping_interval,
        ping_timeout=config.ping_timeout,
        handshake_timeout=config.handshake_timeout,
    )

    listeners: dict[str, list[ListeningService]] = {
        "tunnel": [],
        "tunnel_ws": [],
        "api": [],
        "http": [],
        "https": [],
    }

    def listen(kind: str, description: str, wrapped) -> None:
        svc = ListeningService(endpoints.serverFromString(reactor, description), wrapped, description)
        svc.setServiceParent(top)
        listeners[kind].append(svc)

    front = HTTPFront(directory, registry, reactor, config.http_front, health=handler.health)
    gate = _access_gate(config, front, store_service, reactor)
    console, streams = _console(config, handler, store_directory, store_service, front, gate)
    ConsoleStreamsService(streams).setServiceParent(top)
    for description in config.tunnel:
        listen("tunnel", description, transports.tls_server_factory(factory, creds))
    for description in config.tunnel_ws:
        ws_factory = transports.websocket_server_factory(factory, creds, path=config.ws_path)
        listen("tunnel_ws", description, ws_factory)
    api_root = None
    if config.api:
        api_root = AdminApiRoot()
        listen("api", config.api, _api_site(api_root))

    def attach_api(store):
        from kokoa.api import ApiKeyAuthenticator, SessionCookieAuthenticator, make_api_resource

        options = {
            "status": lambda: status_snapshot(directory, registry, front),
            "port_available": lambda kind, port: port_available(kind, port, config.resource_interface),
            "console": console,
            "streams": streams,
        }
        if api_root is not None:
            api_root.attach(store, reactor, **options)
        # The same API on the login host (over HTTPS only), for the console, with or without --api:
        # the user's session cookie, or an organization's API key; instance-wide keys only on the
        # --api listener.
        cookies = [
            ApiKeyAuthenticator(store, instance_keys=False),
            SessionCookieAuthenticator(store, gate),
        ]
        front.login_app.attach_api(make_api_resource(store, reactor, authenticators=cookies, **options))
        return store

    store_service.ready.addCallback(attach_api)
    for description in config.http:
        listen("http", description, _behind_proxy(config, front.factory("http"), reactor))
    certificates = _certificate_manager(config, creds, reactor)
    certificates.setServiceParent(top)
    front.acme_responder = certificates.challenge_response
    https_context = certificates.server_context_factory()
    for description in config.https:
        tls = TLSMemoryBIOFactory(https_context, False, front.factory("https"))
        listen("https", description, _behind_proxy(config, tls, reactor))
    store_service.setServiceParent(top)  # after the listeners: a port in use stops the start first
    tcp = TCPResourceService(directory, registry, reactor, DRAIN_TIMEOUT)
    tcp.gate = gate
    tcp.setServiceParent(top)

    def configuration_changed() -> None:
        try:
            front.reload()
            gate.reload(directory.policies())
            hostnames = {r.hostname for r in directory.http_resources() if r.enabled}
            certificates.set_hostnames(hostnames | {gate.login_host})
            handler.configuration_changed()
        finally:
            tcp.reconcile()
            try:
                console.configuration_changed()
            except Exception:  # the console's events must not stop a configuration change
                log.failure("the console's view of the configuration change failed")

    directory.subscribe(configuration_changed)
    revalidation = internet.TimerService(REVALIDATE_INTERVAL, handler.revalidate)
    revalidation.clock = reactor
    revalidation.setServiceParent(top)
    # SIGHUP reloads the file (if any) and the certificate files; it never kills the gateway.
    config_path = Path(options["config"]) if options["config"] else None
    ConfigReloader(config_path, options, file_directory, reactor, certificates).setServiceParent(top)
    RuntimeInfo(config, creds, listeners).setServiceParent(top)
    DrainService(registry, reactor).setServiceParent(top)
    HTTPFrontService(front, gate, listeners["https"]).setServiceParent(top)
    top.front = front
    top.gate = gate
    top.registry = registry
    top.directory = directory
    top.store_service = store_service
    return top
