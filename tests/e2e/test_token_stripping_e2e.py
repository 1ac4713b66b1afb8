"""Kokoa credentials never leave the gateway, end to end: a real gateway, edge and an upstream process
that echoes every header it received (as sent, repeated ones too), over real TLS.

Whatever credential the gate used (a session cookie, an API key, a share token, none) and whether the
resource is public, the upstream never sees a ``kk_`` API key or ``kks_`` share token, in any
Authorization header or any instance of the configured bearer header; a request with two
Authorization headers is refused with 400 before anything is forwarded; other Authorization values
pass unchanged; ``[auth] strip_headers`` (by default X-Forwarded-User, X-Remote-User,
X-Auth-Request-*) never reach the upstream.
"""

from __future__ import annotations

import json
import socket
import ssl

import pytest

from .harness import wait_for
from .test_identity_e2e import IdentityDeployment

pytestmark = pytest.mark.e2e


def start(root, extra_config: str = "") -> IdentityDeployment:
    deployment = IdentityDeployment(root)
    deployment.extra_config = extra_config
    deployment.start_all()
    org, ann = deployment.org, deployment.ann
    deployment.pub = deployment.add_http("pub", "pub.localhost", deployment.upstream_port)
    wait_for(lambda: deployment.status_of("pub.localhost", "/") == 200, "the public resource over HTTPS")
    deployment.key = deployment.api(
        "POST", f"/orgs/{org}/api-keys", {"name": "robot", "scopes": ["read"], "user_id": ann}
    )["key"]
    links = f"/orgs/{org}/resources/{deployment.app['id']}/share-links"
    deployment.share = deployment.api("POST", links, {"name": "for a script"})["token"]
    assert deployment.key.startswith("kk_") and deployment.share.startswith("kks_")
    return deployment


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    deployment = None
    try:
        deployment = start(tmp_path_factory.mktemp("tokens"))
        yield deployment
    finally:
        if deployment is not None:
            deployment.stop_all()


@pytest.fixture(scope="module")
def custom(tmp_path_factory):
    """A gateway that takes tokens in X-Kokoa-Token, and strips a list of its own."""
    deployment = None
    try:
        deployment = start(
            tmp_path_factory.mktemp("tokens-custom"),
            'bearer_header = "X-Kokoa-Token"\nstrip_headers = ["X-Who", "X-Secret-*"]\n',
        )
        yield deployment
    finally:
        if deployment is not None:
            deployment.stop_all()


# ---------------------------------------------------------------- helpers


def upstream_saw(response) -> list[tuple[str, str]]:
    """The headers the upstream received: (lower-case name, value), in order, repeats kept."""
    assert response.status == 200, (response.status, response.text[:300])
    return [(name.lower(), value) for name, value in json.loads(response.body)["headers"]]


def assert_no_kokoa_token(seen: list[tuple[str, str]]) -> None:
    for name, value in seen:
        assert "kk_" not in value.lower() and "kks_" not in value.lower(), (name, value)


def names(seen: list[tuple[str, str]]) -> list[str]:
    return [name for name, _ in seen]


def signed_in(d):
    browser = d.browser()
    done = d.sign_in(browser, d.url("app.localhost", "/"))
    assert done.status == 200, done.text[:300]
    return browser


def raw_https(d, host: str, headers: list[tuple[str, str]], path: str = "/raw") -> tuple[int, dict, bytes]:
    """A request with exactly these header lines (repeats too), over TLS: (status, headers, body)."""
    context = ssl.create_default_context(cafile=str(d.data / "tls" / "ca.pem"))
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Accept: application/json"]
    lines += [f"{name}: {value}" for name, value in headers]
    raw = socket.create_connection(("127.0.0.1", d.https_port), timeout=30)
    with context.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        answer = b""
        while b"\r\n\r\n" not in answer and (chunk := tls.recv(65536)):
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parsed = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
        length = int(parsed.get("content-length", "-1"))
        while (length < 0 or len(body) < length) and (chunk := tls.recv(65536)):
            body += chunk  # (without a length: until the gateway closes)
    return int(status_line.split()[1]), parsed, body


# ---------------------------------------------------------------- a session cookie and a token


def test_a_session_with_an_api_key_in_authorization(d):
    browser = signed_in(d)
    for value in (f"Bearer {d.key}", "Bearer kk_not_a_key_at_all", f"bearer {d.key.upper()}"):
        response = browser.request("GET", d.url("app.localhost", "/both"), headers={"Authorization": value})
        seen = upstream_saw(response)
        assert "authorization" not in names(seen), value
        assert ("remote-user", "ann@example.com") in seen  # the session's identity
        assert_no_kokoa_token(seen)


def test_a_session_with_a_share_token_in_authorization(d):
    browser = signed_in(d)
    for value in (f"Bearer {d.share}", f"BEARER {d.share}", f"Bearer {d.share.upper()}"):
        seen = upstream_saw(
            browser.request("GET", d.url("app.localhost", "/s"), headers={"Authorization": value})
        )
        assert "authorization" not in names(seen)
        assert_no_kokoa_token(seen)


def test_an_api_key_alone_is_used_and_not_forwarded(d):
    response = d.browser().request(
        "GET", d.url("app.localhost", "/key"), headers={"authorization": f"Bearer {d.key}"}
    )
    seen = upstream_saw(response)
    assert ("remote-user", "ann@example.com") in seen and "authorization" not in names(seen)
    assert_no_kokoa_token(seen)


# ---------------------------------------------------------------- public resources


@pytest.mark.parametrize(
    "value",
    [
        "Bearer {key}",
        "Bearer {share}",
        "bearer KK_{key}",
        "Bearer kk_unknown_token_1234",
        "  Bearer\tkks_x  ",
        "Token token={key}",
    ],
)
def test_a_kokoa_token_on_a_public_resource_is_not_forwarded(d, value):
    value = value.format(key=d.key, share=d.share)
    seen = upstream_saw(
        d.browser().request("GET", d.url("pub.localhost", "/p"), headers={"Authorization": value})
    )
    assert "authorization" not in names(seen)
    assert_no_kokoa_token(seen)


def test_other_authorization_values_pass_unchanged(d):
    for value in ("Basic dTpw", "Bearer eyJhbGciOiJub25lIn0.e30.", "Bearer someone-elses-token"):
        seen = upstream_saw(
            d.browser().request("GET", d.url("pub.localhost", "/p"), headers={"Authorization": value})
        )
        assert [v for n, v in seen if n == "authorization"] == [value]
    browser = signed_in(d)
    seen = upstream_saw(
        browser.request("GET", d.url("app.localhost", "/b"), headers={"Authorization": "Basic dTpw"})
    )
    assert [v for n, v in seen if n == "authorization"] == ["Basic dTpw"]


# ---------------------------------------------------------------- two Authorization headers


@pytest.mark.parametrize(
    "pair",
    [
        ("Basic dTpw", "Bearer {key}"),
        ("Bearer {key}", "Basic dTpw"),
        ("Bearer {key}", "Bearer {share}"),
        ("Bearer {key}", "Bearer {key}"),
        ("Basic dTpw", "Basic dTpw"),
    ],
)
@pytest.mark.parametrize("host", ["pub.localhost", "app.localhost"])
def test_two_authorization_headers_are_refused(d, pair, host):
    first, second = (v.format(key=d.key, share=d.share) for v in pair)
    status, headers, body = raw_https(d, host, [("Authorization", first), ("authorization", second)])
    assert status == 400 and headers.get("connection") == "close"
    assert b"more than one Authorization header" in body  # the gateway's answer, not the upstream's
    assert b'"headers"' not in body


def test_two_authorization_headers_are_refused_with_a_session_too(d):
    browser = signed_in(d)
    cookie = "; ".join(f"{k}={v}" for k, v in browser.jar["app.localhost"].items())
    status, headers, _ = raw_https(
        d,
        "app.localhost",
        [("Cookie", cookie), ("Authorization", "Basic dTpw"), ("Authorization", f"Bearer {d.key}")],
    )
    assert status == 400 and headers.get("connection") == "close"
    # the same request with one of them goes through (the cookie is good)
    status, _, body = raw_https(
        d, "app.localhost", [("Cookie", cookie), ("Authorization", f"Bearer {d.key}")]
    )
    seen = [(n.lower(), v) for n, v in json.loads(body)["headers"]]
    assert status == 200 and "authorization" not in names(seen)
    assert_no_kokoa_token(seen)


# ---------------------------------------------------------------- identity-style headers


def test_identity_style_headers_from_clients_are_stripped(d):
    sent = {
        "X-Forwarded-User": "admin",
        "x-auth-request-email": "x",
        "X-Auth-Request-User": "admin",
        "X_Remote_User": "admin",
        "X-Kept": "1",
    }
    for browser, host in ((d.browser(), "pub.localhost"), (signed_in(d), "app.localhost")):
        seen = upstream_saw(browser.request("GET", d.url(host, "/who"), headers=sent))
        assert ("x-kept", "1") in seen
        for name in ("x-forwarded-user", "x-auth-request-email", "x-auth-request-user", "x_remote_user"):
            assert name not in names(seen), (host, name)


# ---------------------------------------------------------------- a configured bearer header


def test_a_configured_bearer_header_is_used_and_never_forwarded(custom):
    d = custom
    headers = {"X-Kokoa-Token": d.key, "Accept": "application/json"}
    seen = upstream_saw(d.browser().request("GET", d.url("app.localhost", "/c"), headers=headers))
    assert ("remote-user", "ann@example.com") in seen and "x-kokoa-token" not in names(seen)
    assert_no_kokoa_token(seen)
    # with a session; the _ spelling; an Authorization header that is not the bearer header here
    browser = signed_in(d)
    for sent in (
        {"X-Kokoa-Token": d.share},
        {"X_Kokoa_Token": d.key},
        {"x-kokoa-token": d.key.upper()},
        {"Authorization": f"Bearer {d.key}"},
    ):
        seen = upstream_saw(browser.request("GET", d.url("app.localhost", "/c"), headers=sent))
        assert_no_kokoa_token(seen)
        assert not {"x-kokoa-token", "x_kokoa_token", "authorization"} & set(names(seen)), sent
    # every instance of it, on a public resource: a value that is no Kokoa token passes
    status, _, body = raw_https(
        d,
        "pub.localhost",
        [("X-Kokoa-Token", "theirs"), ("X-Kokoa-Token", d.key), ("x_kokoa_token", d.share)],
    )
    seen = [(n.lower(), v) for n, v in json.loads(body)["headers"]]
    assert status == 200 and [v for n, v in seen if n == "x-kokoa-token"] == ["theirs"]
    assert_no_kokoa_token(seen)


def test_a_configured_strip_list_replaces_the_default(custom):
    d = custom
    sent = {"X-Who": "admin", "X-Secret-Team": "ops", "X-Forwarded-User": "admin", "X-Kept": "1"}
    seen = upstream_saw(d.browser().request("GET", d.url("pub.localhost", "/who"), headers=sent))
    assert "x-who" not in names(seen) and "x-secret-team" not in names(seen)
    assert ("x-forwarded-user", "admin") in seen and ("x-kept", "1") in seen
