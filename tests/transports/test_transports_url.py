"""Gateway addresses: the forms an edge accepts and the ones it refuses."""

from __future__ import annotations

import pytest

from kokoa.transports import GatewayAddress, canonical_origin, parse_gateway_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("tls:gw.example.com:8443", GatewayAddress("tls", "gw.example.com", 8443)),
        ("tls://gw.example.com:8443", GatewayAddress("tls", "gw.example.com", 8443)),
        ("TLS:GW.Example.com:8443/", GatewayAddress("tls", "gw.example.com", 8443)),
        ("tls:127.0.0.1:1", GatewayAddress("tls", "127.0.0.1", 1)),
        ("tls:[::1]:8443", GatewayAddress("tls", "::1", 8443)),
        ("tls://[2001:db8::1]:65535", GatewayAddress("tls", "2001:db8::1", 65535)),
        ("wss://gw.example.com", GatewayAddress("wss", "gw.example.com", 443, "/tunnel")),
        ("wss://gw.example.com/", GatewayAddress("wss", "gw.example.com", 443, "/")),
        (
            "wss://gw.example.com:8443/edge/tunnel",
            GatewayAddress("wss", "gw.example.com", 8443, "/edge/tunnel"),
        ),
        ("wss://[::1]/t", GatewayAddress("wss", "::1", 443, "/t")),
        ("wss://[::1]:9000", GatewayAddress("wss", "::1", 9000, "/tunnel")),
        ("ws://127.0.0.1:8080/tunnel", GatewayAddress("ws", "127.0.0.1", 8080, "/tunnel")),
        ("ws://localhost", GatewayAddress("ws", "localhost", 80, "/tunnel")),
    ],
)
def test_accepted_forms(url, expected):
    assert parse_gateway_url(url) == expected


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("gw.example.com:8443", "unsupported"),
        ("https://gw.example.com/tunnel", "unsupported"),
        ("tcp:gw.example.com:8443", "unsupported"),
        ("", "unsupported"),
        ("tls:gw.example.com", "needs a port"),
        ("tls:gw.example.com:", "port must be"),
        ("tls:gw.example.com:0", "port must be"),
        ("tls:gw.example.com:65536", "port must be"),
        ("tls:gw.example.com:https", "port must be"),
        ("tls::8443", "missing host"),
        ("tls:::1:8443", "brackets"),
        ("tls:[gw.example.com]:8443", "not an IPv6"),
        ("tls:[::1]8443", "expected tls:"),
        ("tls:gw.example.com:8443/tunnel", "only HOST:PORT"),
        ("tls:user@gw.example.com:8443", "only HOST:PORT"),
        ("wss://", "missing host"),
        ("wss://:443/t", "missing host"),
        ("wss://gw.example.com:99999/t", "port must be"),
        ("wss://gw.example.com/t?x=1", "no query"),
        ("wss://gw.example.com/t#frag", "no query"),
        ("wss://user:pw@gw.example.com/t", "no user"),
        ("wss://::1/t", "brackets"),
        ("wss://[zz]/t", "IPv6"),
    ],
)
def test_rejected_forms(url, why):
    with pytest.raises(ValueError, match=why) as info:
        parse_gateway_url(url)
    assert "tls:HOST:PORT" in str(info.value) and "wss://HOST" in str(info.value)


def test_round_trip_text():
    for url in [
        "tls:gw.example.com:8443",
        "tls:[::1]:8443",
        "wss://gw.example.com:443/tunnel",
        "ws://[::1]:80/x",
    ]:
        assert str(parse_gateway_url(url)) == url
    assert parse_gateway_url("ws://h:1/").secure is False
    assert parse_gateway_url("wss://h/").secure is True
    assert parse_gateway_url("tls:h:1").is_websocket is False


def test_canonical_origin():
    assert canonical_origin("https://Console.Example.com") == "https://console.example.com:443"
    assert canonical_origin("http://localhost:8080/") == "http://localhost:8080"
    for bad in ["*", "https://*.example.com", "console.example.com", "https://x.example/path"]:
        with pytest.raises(ValueError, match="invalid allowed origin"):
            canonical_origin(bad)
