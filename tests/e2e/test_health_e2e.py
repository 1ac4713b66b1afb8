"""Health checks end to end: a real gateway and edge, an HTTP resource made through the admin API
with a checked target; the edge checks it and the gateway stops (and resumes) sending it requests."""

from __future__ import annotations

import http.client
import http.server
import subprocess
import threading

import pytest

from .harness import KOKOA, Deployment, wait_for

pytestmark = pytest.mark.e2e


class Upstream:
    """An HTTP server next to the edge: /health answers ``health_status``, anything else 200."""

    def __init__(self) -> None:
        self.health_status = 200
        self.hits = 0  # requests other than the health checks'
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status = upstream.health_status if self.path == "/health" else 200
                if self.path != "/health":
                    upstream.hits += 1
                body = b"hello" if status == 200 else b"no"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def deployment(tmp_path):
    d = Deployment(tmp_path)
    upstream = Upstream()
    try:
        d.start_gateway()
        d.org = d.api("GET", "/orgs")["items"][0]["id"]
        created = d.api("POST", f"/orgs/{d.org}/sites", {"name": "home"})
        d.site = created["site"]["id"]
        d.sites[d.site] = created["secret"]
        d.upstream = upstream
        yield d
    finally:
        upstream.close()
        d.stop()


def get(d: Deployment, host: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", d.http_port, timeout=30)
    try:
        conn.request("GET", "/", headers={"Host": host})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_an_unhealthy_target_gets_no_requests_until_it_recovers(deployment):
    d = deployment
    d.start_edge(d.site)
    d.wait_tunnels(d.site, 2)
    resource = d.api(
        "POST",
        f"/orgs/{d.org}/resources",
        {"name": "app", "kind": "http", "hostname": "app.test", "public": True},
    )
    check = {"enabled": True, "path": "/health", "interval": 1, "timeout": 1}
    check |= {"healthy_threshold": 1, "unhealthy_threshold": 2}
    target = d.api(
        "POST",
        f"/orgs/{d.org}/resources/{resource['id']}/targets",
        {"site_id": d.site, "host": "127.0.0.1", "port": d.upstream.port, "health_check": check},
    )
    logs = [d.gateway.log, d.edges[0].log]
    # The check arrives with the configuration push; the first result decides.
    d.gateway.wait_log(f"target {target['id']} is now healthy: HTTP 200")
    wait_for(lambda: get(d, "app.test") == 200, "app.test to answer", logs=logs)

    d.upstream.health_status = 500
    d.edges[0].wait_log(f"target {target['id']} (127.0.0.1:{d.upstream.port}) is now unhealthy: HTTP 500")
    d.gateway.wait_log(f"target {target['id']} is now unhealthy: HTTP 500")
    assert get(d, "app.test") == 503

    d.upstream.health_status = 200
    wait_for(lambda: get(d, "app.test") == 200, "app.test to recover", logs=logs)

    # A new edge process: its states arrive on its first tunnel (after the gateway forgot them).
    d.upstream.health_status = 503
    d.gateway.wait_log(f"target {target['id']} is now unhealthy: HTTP 503")
    d.edges[0].stop()
    d.gateway.wait_log("forgetting the health of 1 target(s)")
    d.start_edge(d.site)
    d.wait_tunnels(d.site, 1)
    wait_for(
        lambda: d.gateway.log_text().count(f"target {target['id']} is now unhealthy: HTTP 503") >= 2,
        "the new edge to report the target unhealthy",
        logs=[d.gateway.log, d.edges[1].log],
    )
    assert get(d, "app.test") == 503


def test_failover_to_the_healthy_target_of_two(deployment):
    d = deployment
    spare = Upstream()
    try:
        d.start_edge(d.site)
        d.wait_tunnels(d.site, 2)
        resource = d.api(
            "POST",
            f"/orgs/{d.org}/resources",
            {"name": "app", "kind": "http", "hostname": "app.test", "public": True},
        )
        check = {"enabled": True, "path": "/health", "interval": 1, "timeout": 1}
        check |= {"healthy_threshold": 1, "unhealthy_threshold": 1}
        targets = [
            d.api(
                "POST",
                f"/orgs/{d.org}/resources/{resource['id']}/targets",
                {"site_id": d.site, "host": "127.0.0.1", "port": upstream.port, "health_check": check},
            )
            for upstream in (d.upstream, spare)
        ]
        for target in targets:
            d.gateway.wait_log(f"target {target['id']} is now healthy: HTTP 200")
        d.upstream.health_status = 500
        d.gateway.wait_log(f"target {targets[0]['id']} is now unhealthy: HTTP 500")
        d.upstream.hits = spare.hits = 0
        assert [get(d, "app.test") for _ in range(6)] == [200] * 6
        assert (d.upstream.hits, spare.hits) == (0, 6)  # the spare answered them all
        status = d.api("GET", "/status")
        (entry,) = [r for r in status["resources"] if r["name"] == "app"]
        available = {t["id"]: t["available"] for t in entry["targets"]}
        assert available == {targets[0]["id"]: False, targets[1]["id"]: True}
        shown = subprocess.run(
            [KOKOA, "-d", str(d.data), "status"], check=True, capture_output=True, text=True
        ).stdout
        assert f"target http://127.0.0.1:{d.upstream.port}: unhealthy (HTTP 500)" in shown
        assert f"target http://127.0.0.1:{spare.port}: healthy (HTTP 200)" in shown
    finally:
        spare.close()
