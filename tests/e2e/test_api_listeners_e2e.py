"""Where the admin API answers, end to end (a real gateway process): never over plain HTTP on the public
front (403 before any credential is looked at); on the login host over HTTPS for console sessions and
organizations' keys, not the instance-wide key; the instance-wide key on the --api listener."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request

import pytest

from .browserless import Browser
from .harness import Deployment, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    deployment = Deployment(tmp_path_factory.mktemp("api-listeners"))
    try:
        deployment.start_gateway()
        deployment.login = f"https://login.localhost:{deployment.https_port}"
        deployment.org = deployment.api("GET", "/orgs")["items"][0]["id"]
        deployment.org_key = deployment.api(
            "POST", f"/orgs/{deployment.org}/api-keys", {"name": "a script", "scopes": ["*"]}
        )["key"]
        wait_for(lambda: https(deployment, "GET", "/login")[0] == 200, "the login host's certificate")
        yield deployment
    finally:
        deployment.stop()


def https(d, method: str, path: str, key: str | None = None, body: dict | None = None):
    """A request to the login host over HTTPS (the development CA's certificate, SNI login.localhost)."""
    headers = {"Accept": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        headers["Content-Type"] = "application/json"
    try:
        response = Browser(d.https_port, str(d.data / "tls" / "ca.pem")).request(
            method, f"{d.login}{path}", data, headers
        )
    except OSError:  # its certificate is being issued
        return None, {}, b""
    return response.status, {k.lower(): v for k, v in response.headers}, response.body


def plain(d, method: str, path: str, key: str | None = None, host: str = "login.localhost"):
    """A request to the public plain-HTTP front, as curl -H 'Host: login.localhost' would send it."""
    headers = {"Host": host, "Accept": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    conn = http.client.HTTPConnection("127.0.0.1", d.http_port, timeout=30)
    try:
        conn.request(method, path, body=b"{}" if method == "POST" else None, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def on_api_listener(d, path: str, key: str) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{d.api_port}/api/v1{path}", headers={"Authorization": f"Bearer {key}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def problem(status: int, headers: dict, body: bytes, expected: int) -> dict:
    assert status == expected, body
    assert headers["content-type"] == "application/problem+json"
    return json.loads(body)


def test_the_api_over_plain_http_on_the_public_front_is_403_whatever_the_credentials(d):
    orgs_before = d.api("GET", "/orgs")["items"]
    for key in (d.admin_key, d.org_key, None, "kk_wrong_0123456789abcdef"):
        for method, path in (("GET", "/api/v1/orgs"), ("POST", "/api/v1/orgs"), ("GET", "/api/v1/users")):
            for host in ("login.localhost", f"login.localhost:{d.http_port}"):
                refused = problem(*plain(d, method, path, key, host), 403)
                assert "HTTPS on the login host" in refused["detail"] and "--api" in refused["detail"]
        # kokoa connect's WebSocket is refused the same way: bearer keys never in clear text
        refused = problem(*plain(d, "GET", "/connect/ssh", key), 403)
        assert "wss://" in refused["detail"]
    assert d.api("GET", "/orgs")["items"] == orgs_before  # the POSTs made nothing


def test_the_instance_key_is_refused_on_the_login_host_and_accepted_on_the_api_listener(d):
    refused = problem(*https(d, "GET", "/api/v1/orgs", d.admin_key), 403)
    assert "--api listener" in refused["detail"]
    refused = problem(*https(d, "POST", "/api/v1/orgs", d.admin_key, {"name": "Not made"}), 403)
    assert "--api listener" in refused["detail"]
    status, body = on_api_listener(d, "/orgs", d.admin_key)
    assert status == 200 and [o["id"] for o in json.loads(body)["items"]] == [d.org]
    assert on_api_listener(d, "/users", d.admin_key)[0] == 200


def test_an_organizations_key_works_on_the_login_host_over_https(d):
    status, _, body = https(d, "GET", "/api/v1/orgs", d.org_key)
    assert status == 200 and [o["id"] for o in json.loads(body)["items"]] == [d.org]
    status, _, body = https(d, "GET", f"/api/v1/orgs/{d.org}/api-keys", d.org_key)
    assert status == 200 and any(k["name"] == "a script" for k in json.loads(body)["items"])
    # no credential at all: 401, as before
    problem(*https(d, "GET", "/api/v1/orgs"), 401)
