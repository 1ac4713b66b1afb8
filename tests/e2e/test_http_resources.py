"""HTTP resources end to end: real gateway and edge processes, a real upstream process,
resources made through the admin API, clients on raw sockets and http.client."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from .harness import Deployment, Process, wait_for

pytestmark = pytest.mark.e2e
GiB = 1 << 30
UPSTREAM = Path(__file__).with_name("http_upstream.py")
sys.path.insert(0, str(UPSTREAM.parent))
from http_upstream import pattern_sha256  # noqa: E402


class Command(Process):
    """A process that is not twistd (the upstream)."""

    def start(self) -> Command:
        import os
        import subprocess

        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ), start_new_session=True
            )
        return self


class HttpDeployment(Deployment):
    """A gateway, one site with an edge, and the upstream process."""

    def stop_all(self) -> None:
        """Stop the upstream (if it started) and everything :meth:`Deployment.stop` stops."""
        upstream = getattr(self, "upstream", None)
        if upstream is not None:
            upstream.stop()
        self.stop()

    def start_all(self) -> None:
        self.start_gateway()
        self.org = self.api("GET", "/orgs")["items"][0]["id"]
        created = self.api("POST", f"/orgs/{self.org}/sites", {"name": "home"})
        self.site = created["site"]["id"]
        self.sites[self.site] = created["secret"]
        port_file = self.root / "upstream.port"
        self.upstream = Command(
            "upstream", [sys.executable, str(UPSTREAM), str(port_file)], self.root / "upstream.log"
        ).start()
        wait_for(port_file.exists, "the upstream to listen", logs=[self.upstream.log])
        self.upstream_port = int(port_file.read_text())
        self.start_edge(self.site, "tls")
        self.wait_tunnels(self.site, 2)

    def add_http(self, name: str, hostname: str, *ports: int, **fields) -> dict:
        resource = self.api(
            "POST",
            f"/orgs/{self.org}/resources",
            {"name": name, "kind": "http", "hostname": hostname, "public": True, **fields},
        )
        for port in ports:
            self.api(
                "POST",
                f"/orgs/{self.org}/resources/{resource['id']}/targets",
                {"site_id": self.site, "host": "127.0.0.1", "port": port, "scheme": "http"},
            )
        wait_for(lambda: self.get(hostname, "/ready")[0] not in (404, 503), f"{hostname} to be routable")
        return resource

    def get(self, host: str, path: str, method: str = "GET", body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=30)
        try:
            conn.request(method, path, body=body, headers={"Host": host, **(headers or {})})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()


@pytest.fixture
def d(tmp_path):
    deployment = HttpDeployment(tmp_path)
    try:
        deployment.start_all()
        deployment.add_http("app", "app.test", deployment.upstream_port)
        yield deployment
    finally:
        deployment.stop_all()


def raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_get_and_post_with_bodies_and_forwarding_headers(d):
    status, _, body = d.get("app.test", "/hello?x=1", headers={"X-Forwarded-For": "6.6.6.6"})
    seen = json.loads(body)
    assert status == 200 and seen["uri"] == "/hello?x=1"
    headers = {k.lower(): v for k, v in seen["headers"]}
    assert headers["x-forwarded-for"] == "127.0.0.1" and headers["x-forwarded-proto"] == "http"
    payload = bytes(range(256)) * 10_000
    status, _, body = d.get("app.test", "/sha256", "POST", payload)
    assert json.loads(body)["sha256"] == hashlib.sha256(payload).hexdigest()


def test_chunked_both_ways(d):
    request = (
        b"POST /sha256 HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        b"GET /chunked/100 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"
    )
    answer = raw(d.http_port, request)
    assert json.dumps(hashlib.sha256(b"hello world").hexdigest())[1:-1].encode() in answer
    second = answer[answer.index(b"HTTP/1.1 200", 10) :]
    assert b"Transfer-Encoding: chunked" in second and second.count(b"chunk;") == 100


def test_keep_alive_reuses_the_upstream_connection_and_pipelining_keeps_order(d):
    conn = http.client.HTTPConnection("127.0.0.1", d.http_port, timeout=30)
    upstream_connections = set()
    for i in range(5):
        conn.request("GET", f"/k/{i}", headers={"Host": "app.test"})
        upstream_connections.add(json.loads(conn.getresponse().read())["conn"])
    conn.close()
    assert len(upstream_connections) == 1
    pipelined = b"".join(b"GET /p/%d HTTP/1.1\r\nHost: app.test\r\n\r\n" % i for i in range(10))
    answer = raw(
        d.http_port, pipelined + b"GET /p/last HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"
    )
    order = [int(x) for x in __import__("re").findall(rb'"uri": "/p/(\d+)"', answer)]
    assert order == list(range(10)) and answer.rstrip().endswith(b"}")


def test_an_unknown_host_gets_a_404_and_an_offline_site_a_502(d):
    status, headers, body = d.get("nowhere.test", "/", headers={"Accept": "text/html"})
    assert status == 404 and headers["Content-Type"].startswith("text/html") and b"nowhere.test" in body
    d.edges[0].stop()
    wait_for(lambda: d.tunnels(d.site) == 0, "the edge to disconnect")
    status, headers, body = d.get("app.test", "/")
    assert status == 502 and "offline" in json.loads(body)["detail"]


class RssSampler(threading.Thread):
    """Samples a process's RSS until stopped; keeps the peak."""

    def __init__(self, process: Process) -> None:
        super().__init__(daemon=True)
        self.process = process
        self.peak = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.peak = max(self.peak, self.process.rss_kib())
            time.sleep(0.05)


def test_a_1_gib_upload_and_download_stream_with_flat_gateway_memory(d):
    baseline = d.gateway.rss_kib()
    sampler = RssSampler(d.gateway)
    sampler.start()
    try:
        # Download: read and hash as it arrives.
        with socket.create_connection(("127.0.0.1", d.http_port), timeout=60) as s:
            s.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n" % GiB)
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(1)
            assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: %d" % GiB in head
            digest, received = hashlib.sha256(), 0
            buffer = bytearray(1 << 20)
            while n := s.recv_into(buffer):
                digest.update(memoryview(buffer)[:n])
                received += n
        assert received == GiB and digest.hexdigest() == pattern_sha256(GiB)
        # Upload: generated as it goes, hashed by the upstream as it arrives.
        from http_upstream import PATTERN

        with socket.create_connection(("127.0.0.1", d.http_port), timeout=60) as s:
            s.sendall(
                b"POST /sha256 HTTP/1.1\r\nHost: app.test\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                % GiB
            )
            for _ in range(GiB // len(PATTERN)):
                s.sendall(PATTERN)
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        result = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert (result.get("length"), result.get("sha256")) == (GiB, pattern_sha256(GiB)), answer[:500]
    finally:
        sampler.stopped.set()
        sampler.join()
    # 2 GiB went through; the gateway grew by a bounded amount (windows and buffers), not by GiBs.
    growth_mib = (sampler.peak - baseline) / 1024
    assert growth_mib < 64, f"gateway RSS grew by {growth_mib:.1f} MiB while streaming 2 GiB"


def https_get(d, host: str, path: str = "/"):
    """A verified HTTPS request (the development CA) with SNI ``host``; the certificate's names too."""
    import ssl

    context = ssl.create_default_context(cafile=str(d.data / "tls" / "ca.pem"))
    raw_sock = socket.create_connection(("127.0.0.1", d.https_port), timeout=30)
    with raw_sock, context.wrap_socket(raw_sock, server_hostname=host) as s:
        names = [value for kind, value in s.getpeercert()["subjectAltName"] if kind == "DNS"]
        s.sendall(
            b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path.encode(), host.encode())
        )
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return names, answer


def test_https_chooses_a_certificate_per_host_by_sni_and_sends_hsts(d):
    d.add_http("secure", "secure.test", d.upstream_port, hsts_max_age=600, redirect_https=True)

    def verified(host: str) -> bool:
        try:
            return host in https_get(d, host)[0]
        except OSError:  # ssl.SSLCertVerificationError while the host's certificate is prepared
            return False

    wait_for(lambda: verified("app.test"), "a certificate for app.test")
    wait_for(lambda: verified("secure.test"), "a certificate for secure.test")
    names, answer = https_get(d, "secure.test", "/tls")
    assert "secure.test" in names and "app.test" not in names
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Strict-Transport-Security: max-age=600" in head
    headers = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert headers["x-forwarded-proto"] == "https"
    status, headers, _ = d.get("secure.test", "/a?b=1")
    assert status == 308 and headers["Location"] == "https://secure.test/a?b=1"


def test_a_websocket_echo_through_the_tunnel_with_autobahn_on_both_ends(d):
    import subprocess

    script = str(UPSTREAM.with_name("ws_echo.py"))
    port_file = d.root / "ws.port"
    server = Command("ws", [sys.executable, script, "serve", str(port_file)], d.root / "ws.log").start()
    try:
        wait_for(port_file.exists, "the WebSocket server to listen", logs=[server.log])
        d.add_http("ws", "ws.test", int(port_file.read_text()))
        messages = ["hello", "kokoa " * 1000, "bye"]
        result = subprocess.run(
            [sys.executable, script, "client", str(d.http_port), "ws.test", *messages],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.split("\n")[:-1] == messages
    finally:
        server.stop()
