"""The login host's root (``LoginRoot``) over plain HTTP and over TLS: ``/api/...`` and ``/connect/...``
are refused over plain HTTP before their credentials are looked at; everything else goes where it did."""

from __future__ import annotations

import json

import pytest
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import alsoProvides

from kokoa.auth._connect import PLAIN_API_REFUSAL, PLAIN_CONNECT_REFUSAL, LoginRoot


class Spy(Resource):
    isLeaf = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.seen: list[bytes | None] = []

    def render(self, request):
        self.seen.append(request.getHeader(b"authorization"))
        return self.name.encode()


def serve(path: str, *, secure: bool, headers: str = "") -> tuple[bytes, dict[str, Spy]]:
    spies = {name: Spy(name) for name in ("app", "connect", "api")}
    site = Site(LoginRoot(spies["app"], spies["connect"], spies["api"]))
    channel = site.buildProtocol(None)
    transport = StringTransport()
    if secure:
        alsoProvides(transport, ISSLTransport)  # (a TCP transport too, to HTTPChannel)
        transport.setTcpNoDelay = lambda enabled: None
    channel.makeConnection(transport)
    channel.dataReceived(f"GET {path} HTTP/1.1\r\nHost: login.localhost\r\n{headers}\r\n".encode())
    return transport.value(), spies


def status_and_body(response: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


KEY = "Authorization: Bearer kk_abcdefgh_0123456789\r\n"


@pytest.mark.parametrize("headers", ["", KEY, "Cookie: __Host-kokoa_login=abc\r\n"])
@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/api/v1/orgs", PLAIN_API_REFUSAL),
        ("/api/v1/openapi.json", PLAIN_API_REFUSAL),
        ("/api", PLAIN_API_REFUSAL),
        ("/%61pi/v1/orgs", PLAIN_API_REFUSAL),  # the path as it is dispatched (decoded)
        ("/connect/ssh", PLAIN_CONNECT_REFUSAL),
    ],
)
def test_plain_http_gets_403_for_the_api_and_connect_without_looking_at_credentials(path, detail, headers):
    response, spies = serve(path, secure=False, headers=headers)
    status, sent, body = status_and_body(response)
    assert status == 403
    assert sent["content-type"] == "application/problem+json" and sent["cache-control"] == "no-store"
    problem = json.loads(body)
    assert problem["status"] == 403 and problem["detail"] == detail
    assert all(not spy.seen for spy in spies.values())  # no authenticator ran


def test_the_refusals_say_where_to_go():
    assert "HTTPS on the login host" in PLAIN_API_REFUSAL and "--api listener" in PLAIN_API_REFUSAL
    assert "wss://" in PLAIN_CONNECT_REFUSAL


def test_over_tls_the_api_and_connect_are_dispatched_and_plain_pages_still_go_to_the_app():
    for path, name in (("/api/v1/orgs", "api"), ("/connect/ssh", "connect"), ("/login", "app")):
        response, spies = serve(path, secure=True, headers=KEY)
        assert status_and_body(response)[2] == name.encode()
        assert spies[name].seen == [KEY.split(": ", 1)[1].strip().encode()]
    # the login pages over plain HTTP are the app's (it redirects them to https)
    response, spies = serve("/login", secure=False)
    assert status_and_body(response)[2] == b"app" and len(spies["app"].seen) == 1
