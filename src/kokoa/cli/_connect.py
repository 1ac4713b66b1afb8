"""``kokoa connect RESOURCE --local-port N``: a TCP resource of the gateway on a local port, through the
login host's ``/connect/`` WebSocket (wss, the certificate verified).

Each connection accepted on ``127.0.0.1:N`` opens its own WebSocket with the API key as a bearer token
(``$KOKOA_API_KEY`` or ``--api-key-file``); bytes go both ways with backpressure and half-close (see
:mod:`kokoa.auth._connect`). Before listening, one handshake with ``?check=1`` makes sure the gateway is
reachable, trusted, and lets this key in (no stream is opened for it).

Names under ``.localhost`` are dialled at 127.0.0.1 (loopback names, RFC 6761) while TLS and the Host
header keep the name: ``--gateway https://login.localhost:8443`` works on the gateway's machine.
``--connect-to HOST:PORT`` (hidden, for tests and odd networks) does the same for any name.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from ._client import API_KEY_ENV, gateway_info

GATEWAY_ENV = "KOKOA_GATEWAY"


@dataclass(frozen=True)
class Gateway:
    """Where the login host is: its name (TLS, Host header) and where to dial it."""

    host: str
    port: int
    connect_host: str
    connect_port: int

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 443 else f"{host}:{self.port}"

    def url(self, resource: str) -> str:
        return f"wss://{self.netloc}/connect/{quote(resource, safe='')}"


def parse_gateway(url: str, connect_to: str | None = None) -> Gateway:
    """``https://login.example.com[:port]`` (or ``wss://``), and where to dial it."""
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if parts.scheme not in ("https", "wss"):
        raise ValueError(f"--gateway must be an https:// URL of the login host, not {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.username:
        raise ValueError(
            f"--gateway is the login host's origin, https://login.example.com[:port], not {url!r}"
        )
    try:
        host, port = (parts.hostname or "").lower(), parts.port or 443
    except ValueError:
        raise ValueError(f"--gateway {url!r} has a bad port") from None
    if not host:
        raise ValueError(f"--gateway {url!r} names no host")
    connect_host, connect_port = host, port
    if connect_to:
        name, _, number = connect_to.rpartition(":")
        if not name or not number.isdigit() or not 0 < int(number) < 65536:
            raise ValueError(f"--connect-to wants HOST:PORT, not {connect_to!r}")
        connect_host, connect_port = name.strip("[]"), int(number)
    elif host == "localhost" or host.endswith(".localhost"):
        connect_host = "127.0.0.1"
    return Gateway(host, port, connect_host, connect_port)


def add_parser(commands: Any) -> None:
    """Register ``connect`` on the ``kokoa`` command line."""
    connect = commands.add_parser(
        "connect",
        help="reach a TCP resource on a local port, through the gateway's login host",
        description="Listen on 127.0.0.1:N and carry each connection to a TCP resource over a WebSocket "
        "to the login host, as the user of an API key. Names under .localhost are dialled at 127.0.0.1.",
    )
    connect.add_argument("resource", metavar="RESOURCE", help="the TCP resource's id (or its name)")
    connect.add_argument("--local-port", type=int, required=True, metavar="N", help="local port to listen on")
    connect.add_argument(
        "--gateway",
        help=f"the login host, https://login.example.com[:port] (default: ${GATEWAY_ENV}, else "
        "https://login.localhost:<https port> of the running gateway of --data-dir)",
    )
    connect.add_argument("--ca-file", help="PEM file of the CA to trust (default: the system's)")
    connect.add_argument(
        "--api-key-file",
        help=f"file with an API key of yours (default: ${API_KEY_ENV}; without one, sign in with a browser)",
    )
    connect.add_argument(
        "--no-browser", action="store_true", help="print the sign-in address instead of opening a browser"
    )
    connect.add_argument("--connect-to", help=argparse.SUPPRESS)
    connect.set_defaults(run=run)


def _settings(args: argparse.Namespace) -> Any:
    from kokoa.auth._connect import ClientSettings
    from kokoa.transports._trust import Trust

    if not 0 <= args.local_port < 65536:
        raise ValueError(f"--local-port {args.local_port} is not a port")
    info = gateway_info(getattr(args, "data_dir", None))
    url = args.gateway or os.environ.get(GATEWAY_ENV)
    ca_file = args.ca_file
    if not url and info.get("https"):
        url = "https://login.localhost:" + info["https"][0].rsplit(":", 1)[1]
        ca_file = ca_file or info.get("ca_file")
    if not url:
        raise ValueError(f"no gateway: pass --gateway https://login.example.com or set ${GATEWAY_ENV}")
    gateway = parse_gateway(url, args.connect_to)
    if args.api_key_file:
        try:
            key = Path(args.api_key_file).read_text().strip()
        except OSError as e:
            raise ValueError(f"cannot read the API key file {args.api_key_file}: {e.strerror}") from None
    else:
        key = os.environ.get(API_KEY_ENV, "").strip()
    if key and (not key.isprintable() or " " in key):
        raise ValueError("the API key holds spaces or control characters: is it the right file?")
    if not key:
        args.browser_sign_in = (gateway, ca_file)  # no key: a browser sign-in, once the reactor runs
    return ClientSettings(
        url=gateway.url(args.resource),
        key=key,
        creator=Trust(ca_file=ca_file).connection_creator(gateway.host),  # a bad CA file fails here
        host=gateway.netloc,
        connect_host=gateway.connect_host,
        connect_port=gateway.connect_port,
    )


def run(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args)
    except ValueError as e:
        _say(str(e))
        return 2
    from twisted.internet import task

    sign_in = getattr(args, "browser_sign_in", None)
    task.react(
        _main, [settings, args.local_port, args.resource, sign_in, args.no_browser]
    )  # exits with main's code
    return 0


async def _main(
    reactor: Any, settings: Any, local_port: int, resource: str, sign_in: Any = None, no_browser: bool = False
) -> None:
    import dataclasses

    from twisted.internet import endpoints
    from twisted.internet.defer import Deferred
    from twisted.internet.error import CannotListenError

    from kokoa.auth._connect import ConnectClient, ConnectError

    if sign_in is not None:
        gateway, ca_file = sign_in
        try:
            token = await _browser_sign_in(reactor, gateway, ca_file, no_browser)
        except ValueError as e:
            _say(str(e))
            raise SystemExit(1) from None
        settings = dataclasses.replace(settings, key=token, scheme="Session")
    client = ConnectClient(reactor, settings, _say)
    try:
        await client.check()
    except ConnectError as e:
        if e.status != 503:
            _say(str(e))
            raise SystemExit(1) from None
        _say(f"{e} (listening anyway)")
    endpoint = endpoints.TCP4ServerEndpoint(reactor, local_port, interface="127.0.0.1")
    try:
        port = await endpoint.listen(client)
    except CannotListenError as e:
        _say(f"cannot listen on 127.0.0.1:{local_port}: {e.socketError}")
        raise SystemExit(1) from None
    client.port = port
    reactor.addSystemEventTrigger("before", "shutdown", client.stop)
    ready = f"listening on 127.0.0.1:{port.getHost().port} → resource {resource}"
    try:
        print(ready, flush=True)
    except UnicodeEncodeError:  # a terminal that is not UTF-8
        print(ready.replace("→", "->"), flush=True)
    await Deferred()  # until Ctrl-C (or SIGTERM) stops the reactor


def _say(message: str) -> None:
    print(f"kokoa connect: {message}", file=sys.stderr, flush=True)


#: Seconds the browser sign-in may take.
SIGN_IN_TIMEOUT = 300.0


async def _browser_sign_in(reactor: Any, gateway: Any, ca_file: str | None, no_browser: bool) -> str:
    """Sign in with a browser (RFC 8252, for native apps): listen on loopback, send the browser to the
    login host's /cli page, receive a one-time code there, and trade it for a session token."""
    import secrets
    import webbrowser
    from urllib.parse import urlencode

    from twisted.internet import endpoints, threads
    from twisted.internet.defer import Deferred
    from twisted.web import resource, server

    state = secrets.token_urlsafe(24)
    got: Deferred[str] = Deferred()

    class Callback(resource.Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> bytes:
            code = (request.args.get(b"code") or [b""])[0].decode("ascii", "replace")
            sent_state = (request.args.get(b"state") or [b""])[0].decode("ascii", "replace")
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            if request.path != b"/callback" or sent_state != state or not code:
                request.setResponseCode(400)
                return b"This is not the sign-in kokoa connect is waiting for.\n"
            if not got.called:
                got.callback(code)
            return b"Signed in: you may close this tab and go back to the terminal.\n"

    site = server.Site(Callback())
    site.noisy = False
    port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
    origin = f"https://{gateway.netloc}"
    url = f"{origin}/cli?" + urlencode({"port": port.getHost().port, "state": state})
    _say(f"sign in to the gateway in a browser: {url}")
    if not no_browser:
        threads.deferToThread(webbrowser.open, url).addErrback(lambda _: None)
    timeout = reactor.callLater(SIGN_IN_TIMEOUT, lambda: got.called or got.cancel())
    try:
        code = await got
    except Exception:
        raise ValueError(f"no sign-in within {SIGN_IN_TIMEOUT:.0f} s") from None
    finally:
        if timeout.active():
            timeout.cancel()
        await port.stopListening()
    return await threads.deferToThread(_trade_code, gateway, ca_file, code)


def _trade_code(gateway: Any, ca_file: str | None, code: str) -> str:
    """Blocking (in a thread): POST the code to the login host's /cli/token; the session token."""
    import http.client
    import json
    import socket
    import ssl
    from urllib.parse import urlencode

    context = ssl.create_default_context(cafile=ca_file)
    try:
        raw = socket.create_connection((gateway.connect_host, gateway.connect_port), timeout=30)
        conn = http.client.HTTPConnection(gateway.host, gateway.connect_port, timeout=30)
        conn.sock = context.wrap_socket(raw, server_hostname=gateway.host)
        conn.request(
            "POST",
            "/cli/token",
            urlencode({"code": code}),
            {"Host": gateway.netloc, "Content-Type": "application/x-www-form-urlencoded"},
        )
        response = conn.getresponse()
        body = response.read(65536)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"cannot reach the gateway to finish signing in: {e}") from None
    try:
        answer = json.loads(body)
    except ValueError:
        answer = {}
    if response.status != 200 or "token" not in answer:
        raise ValueError(
            f"the gateway refused the sign-in ({response.status}): {answer.get('error', body[:200])}"
        )
    return str(answer["token"])
