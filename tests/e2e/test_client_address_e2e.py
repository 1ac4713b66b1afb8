"""The real client address behind a load balancer, through real gateway processes: X-Forwarded-For
believed only from trusted_proxies, and the PROXY protocol accepted from them only."""

from __future__ import annotations

import json
import socket

import pytest

from .harness import wait_for
from .test_http_resources import HttpDeployment

pytestmark = pytest.mark.e2e


BALANCER = b"PROXY TCP4 203.0.113.9 10.0.0.1 51234 80\r\n"


def deployment(tmp_path, config: str, proxy_protocol: bool = False) -> HttpDeployment:
    d = HttpDeployment(tmp_path)
    d.extra_config = config
    if proxy_protocol:  # every connection must start with the balancer's header, the harness's too

        def get(host: str, path: str, *args, **kwargs):
            answer = exchange(d.http_port, BALANCER + request())
            return (int(answer.split(b" ", 2)[1]) if answer else 0), {}, answer

        d.get = get
    d.start_all()
    resource = d.add_http("app", "app.test", d.upstream_port)
    rules = f"/orgs/{d.org}/resources/{resource['id']}/rules"
    d.api("POST", rules, {"priority": 1, "action": "deny", "cidr": "198.51.100.0/24"})
    return d


def exchange(port: int, data: bytes) -> bytes:
    """What the gateway answers (b"" if it closed or reset the connection without a word)."""
    out = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        try:
            s.sendall(data)
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
    return out


def request(xff: str | None = None) -> bytes:
    forwarded = f"X-Forwarded-For: {xff}\r\n" if xff else ""
    return f"GET /who HTTP/1.1\r\nHost: app.test\r\n{forwarded}Connection: close\r\n\r\n".encode()


def seen_for(response: bytes) -> str:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    headers = {k.lower(): v for k, v in json.loads(body)["headers"]}
    return headers["x-forwarded-for"]


@pytest.fixture
def stop():
    made: list[HttpDeployment] = []
    yield made.append
    for d in made:
        d.upstream.stop()
        d.stop()


def test_x_forwarded_for_is_believed_from_trusted_proxies_only(tmp_path, stop):
    d = deployment(tmp_path, '[auth]\ntrusted_proxies = ["127.0.0.1"]')
    stop(d)
    wait_for(lambda: b" 403 " in exchange(d.http_port, request("198.51.100.7")), "the rule")
    # the loopback peer is a trusted proxy: the address it forwards decides, for rules and upstreams
    assert seen_for(exchange(d.http_port, request("203.0.113.9"))) == "203.0.113.9"
    assert b" 403 " in exchange(d.http_port, request("198.51.100.7"))
    # a client cannot hide behind an address it writes itself: the rightmost untrusted one counts
    assert b" 403 " in exchange(d.http_port, request("203.0.113.9, 198.51.100.7"))


def test_without_trusted_proxies_forwarded_addresses_are_ignored(tmp_path, stop):
    d = deployment(tmp_path, "")
    stop(d)
    assert seen_for(exchange(d.http_port, request("198.51.100.7"))) == "127.0.0.1"


def test_the_proxy_protocol_from_a_trusted_balancer(tmp_path, stop):
    d = deployment(tmp_path, '[auth]\ntrusted_proxies = ["127.0.0.1"]\nproxy_protocol = true', True)
    stop(d)
    assert seen_for(exchange(d.http_port, BALANCER + request("1.2.3.4"))) == "203.0.113.9"
    denied = b"PROXY TCP4 198.51.100.7 10.0.0.1 51234 80\r\n"
    assert b" 403 " in exchange(d.http_port, denied + request())
    # no header from the balancer: the connection is closed without an answer
    assert exchange(d.http_port, request()) == b""
