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
        help=f"file with an API key of yours (default: ${API_KEY_ENV}; no browser sign-in yet)",
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
    if not key:
        raise ValueError(
            f"no API key: set {API_KEY_ENV} or pass --api-key-file FILE (an API key acting for your user). "
            "Signing in with a browser is not implemented yet."
        )
    if not key.isprintable() or " " in key:
        raise ValueError("the API key holds spaces or control characters: is it the right file?")
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

    task.react(_main, [settings, args.local_port, args.resource])  # exits with main's code
    return 0


async def _main(reactor: Any, settings: Any, local_port: int, resource: str) -> None:
    from twisted.internet import endpoints
    from twisted.internet.defer import Deferred
    from twisted.internet.error import CannotListenError

    from kokoa.auth._connect import ConnectClient, ConnectError

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
