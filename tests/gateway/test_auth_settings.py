"""The [auth] table of the gateway's TOML file: defaults, and a clear error for every bad value."""

from __future__ import annotations

import pytest

from kokoa.config import ConfigError
from kokoa.gateway._config import load_gateway_config

pytestmark = pytest.mark.sans_io


def load(tmp_path, text: str):
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return load_gateway_config(path).auth


def test_defaults(tmp_path):
    auth = load(tmp_path, "")
    assert auth.login_url is None and auth.login_origin(8443) == "https://login.localhost:8443"
    assert auth.login_origin(443) == "https://login.localhost"
    assert (auth.session_lifetime, auth.idle_timeout, auth.trusted_proxies) == (7 * 86400, 86400, [])
    assert auth.header_user == "Remote-User" and not auth.proxy_protocol


def test_every_setting(tmp_path):
    auth = load(
        tmp_path,
        """
[auth]
login_url = "https://login.example.com/"
session_lifetime = 3600
idle_timeout = 600
header_user = "X-User"
bearer_header = "X-Kokoa-Token"
trusted_proxies = ["10.0.0.0/8", "::1"]
proxy_protocol = true
access_log_retention_days = 7
attempts_per_account = 3

[auth.mail]
host = "smtp.example.com"
from_address = "kokoa@example.com"

[[auth.oidc]]
name = "corp"
issuer = "https://id.example.com"
client_id = "kokoa"
client_secret = "s"
""",
    )
    assert auth.login_url == "https://login.example.com" and auth.login_origin(8443) == auth.login_url
    assert (auth.session_lifetime, auth.idle_timeout, auth.header_user) == (3600, 600, "X-User")
    assert auth.proxy_protocol and auth.trusted_proxies == ["10.0.0.0/8", "::1"]
    assert auth.mail["host"] == "smtp.example.com" and auth.oidc[0]["name"] == "corp"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[auth]\nlogin_url = 'http://login.example.com'", "login_url must be an https URL"),
        ("[auth]\nlogin_url = 'https://login.example.com/path'", "without a path"),
        ("[auth]\nsurprise = 1", "surprise"),
        ("[auth]\nsession_lifetime = 5", "session_lifetime"),
        ("[auth]\nattempts_per_account = 0", "attempts_per_account"),
        ("[auth]\nheader_user = 'Remote User'", "header_user must be an HTTP header name"),
        ("[auth]\ntrusted_proxies = ['10.0.0.0/33']", "trusted_proxies"),
        ("[auth]\nproxy_protocol = true", "proxy_protocol needs trusted_proxies"),
        ("[auth]\nproxy_protocol = 'yes'", "proxy_protocol must be true or false"),
        ("[auth.mail]\nhost = 'smtp.example.com'", "from_address"),
        ("[auth.mail]\nhost = 'h'\nfrom_address = 'a@b.c'\nport = 70000", "port"),
        (
            "[[auth.oidc]]\nname='x'\nissuer='http://id.example.com'\nclient_id='c'\nclient_secret='s'",
            "http",
        ),
        (
            "[[auth.oidc]]\nname='a'\nissuer='https://i.example'\nclient_id='c'\nclient_secret='s'\n"
            "[[auth.oidc]]\nname='a'\nissuer='https://j.example'\nclient_id='c'\nclient_secret='s'",
            "same name",
        ),
    ],
)
def test_bad_values_are_clear_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, text)
