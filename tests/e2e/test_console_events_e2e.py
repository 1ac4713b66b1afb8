"""The console's live events through real processes: a gateway, an edge, and a client reading
``/api/v1/orgs/{org}/events`` on the login host over TLS (as the console's EventSource does), with an
organization's API key. An edge that connects, and one that dies, reach the stream within a second.
The login host serves the API without ``--api`` too."""

from __future__ import annotations

import http.client
import json
import queue
import signal
import socket
import ssl
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from .harness import Deployment, Process, wait_for

pytestmark = pytest.mark.e2e

LOGIN = "login.localhost"


class EventStream:
    """A Server-Sent Events client on its own thread: each event with the time it arrived."""

    def __init__(self, port: int, ca_file: Path, path: str, key: str) -> None:
        context = ssl.create_default_context(cafile=str(ca_file))
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock = context.wrap_socket(raw, server_hostname=LOGIN)
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {LOGIN}:{port}\r\nAccept: text/event-stream\r\n"
            f"Authorization: Bearer {key}\r\n\r\n".encode()
        )
        self.events: queue.Queue[tuple[float, str, dict]] = queue.Queue()
        self.head = b""
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        raw, data = b"", b""
        try:
            while chunk := self.sock.recv(65536):
                raw += chunk
                if not self.head:
                    if b"\r\n\r\n" not in raw:
                        continue
                    self.head, raw = raw.split(b"\r\n\r\n", 1)
                complete, raw = _chunks(raw)
                data += complete
                while b"\n\n" in data:
                    block, data = data.split(b"\n\n", 1)
                    self._event(block)
        except OSError:
            return

    def _event(self, block: bytes) -> None:
        fields = {}
        for line in block.decode().split("\n"):
            name, _, value = line.partition(": ")
            fields[name] = value
        if "data" in fields:
            self.events.put((time.time(), fields.get("event", "message"), json.loads(fields["data"])))

    def next(self, name: str, timeout: float = 30.0) -> tuple[float, dict]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                arrived, event, data = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {name!r} event within {timeout}s") from None
            if event == name:
                return arrived, data

    def close(self) -> None:
        self.sock.close()


def _chunks(buffer: bytes) -> tuple[bytes, bytes]:
    """The data of the complete chunks at the start of ``buffer`` (HTTP/1.1 chunked transfer coding),
    and what is left of it."""
    out = b""
    while b"\r\n" in buffer:
        size_line, rest = buffer.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        if len(rest) < size + 2:
            break
        out += rest[:size]
        buffer = rest[size + 2 :]
    return out, buffer


@pytest.fixture
def deployment(tmp_path):
    d = Deployment(tmp_path)
    yield d
    d.stop()


def test_an_edge_that_connects_or_dies_reaches_the_events_stream_within_a_second(deployment):
    d = deployment
    d.start_gateway()
    org = d.api("POST", "/orgs", {"name": "Acme"})["id"]
    made = d.api("POST", f"/orgs/{org}/sites", {"name": "home"})
    site, secret = made["site"]["id"], made["secret"]
    key = d.api("POST", f"/orgs/{org}/api-keys", {"name": "console", "scopes": ["read"]})["key"]
    stream = EventStream(d.https_port, d.data / "tls" / "ca.pem", f"/api/v1/orgs/{org}/events", key)
    try:
        _, overview = stream.next("overview")
        assert b"200 OK" in stream.head and b"text/event-stream" in stream.head.lower()
        assert overview["sites"] == [
            {"id": site, "name": "home", "enabled": True, "online": False, "tunnels": []}
        ]
        d.sites[site] = secret
        d.start_edge(site, "wss")
        arrived, up = stream.next("site")
        assert up["id"] == site and up["online"] is True
        tunnel = up["tunnels"][0]
        assert tunnel["transport"] == "wss" and tunnel["edge_version"] and tunnel["gateway"]
        since = datetime.fromisoformat(tunnel["since"]).timestamp()
        assert arrived - since < 1.0, f"the connect took {arrived - since:.3f}s to reach the stream"
        d.wait_tunnels(site, 2)
        # the RTT shows once the tunnel's first ping is answered (pinged at once when it comes up)
        wait_for(
            lambda: d.api("GET", f"/orgs/{org}/overview")["sites"][0]["tunnels"][0]["rtt_ms"] is not None,
            "a tunnel's round-trip time",
        )
        while not stream.events.empty():
            stream.events.get()
        killed = time.time()
        d.edges[0].kill(signal.SIGKILL)
        while True:
            arrived, down = stream.next("site", timeout=5)
            if not down["online"]:
                break
        assert down == {"id": site, "name": "home", "enabled": True, "online": False, "tunnels": []}
        assert arrived - killed < 1.0, f"the drop took {arrived - killed:.3f}s to reach the stream"
        # a configuration change reaches it too
        d.api("PATCH", f"/orgs/{org}/sites/{site}", {"name": "home lab"})
        _, changed = stream.next("changed", timeout=5)
        assert changed == {"kind": "site", "id": site, "op": "update"}
    finally:
        stream.close()


def test_the_login_host_serves_the_api_without_an_api_listener(deployment):
    d = deployment
    d.init_store()
    config = d.write_config()
    text = config.read_text().replace(f'api = "tcp:{d.api_port}:interface=127.0.0.1"', 'api = "none"')
    config.write_text(text)
    d.gateway = Process("gateway", ["kokoa", "--config", str(config)], d.root / "gateway.log").start()
    d.gateway.wait_log("store open")
    context = ssl.create_default_context(cafile=str(d.data / "tls" / "ca.pem"))

    def me() -> tuple[int, bytes]:
        connection = http.client.HTTPSConnection("127.0.0.1", d.https_port, context=context, timeout=10)
        connection.sock = context.wrap_socket(
            socket.create_connection(("127.0.0.1", d.https_port), timeout=10), server_hostname=LOGIN
        )
        connection.request("GET", "/api/v1/me", headers={"Host": f"{LOGIN}:{d.https_port}"})
        response = connection.getresponse()
        body = response.read()
        connection.close()
        return response.status, body

    def answered() -> tuple[int, bytes] | None:
        try:
            answer = me()
        except (OSError, ssl.SSLError):  # the login host's certificate is being made
            return None
        return answer if answer[0] != 503 else None

    status, body = wait_for(answered, "the login host's API")
    assert status == 401 and json.loads(body)["status"] == 401  # the API answers: sign in first
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", d.api_port)) != 0  # and there is no --api listener


def test_a_request_to_a_resource_shows_in_its_inspector_and_on_the_events_stream(tmp_path):
    from .test_http_resources import HttpDeployment

    d = HttpDeployment(tmp_path)
    try:
        d.start_all()
        resource = d.add_http("app", "app.localhost", d.upstream_port)
        key = d.api("POST", f"/orgs/{d.org}/api-keys", {"name": "console", "scopes": ["read"]})["key"]
        ca = d.data / "tls" / "ca.pem"
        inspect = EventStream(
            d.https_port, ca, f"/api/v1/orgs/{d.org}/resources/{resource['id']}/inspect", key
        )
        events = EventStream(d.https_port, ca, f"/api/v1/orgs/{d.org}/events", key)
        try:
            events.next("overview")
            wait_for(lambda: inspect.head, "the inspector's stream")  # watching once its head is out
            assert b"200 OK" in inspect.head
            # from an address of its own: its access row is not aggregated with the /ready requests
            connection = http.client.HTTPConnection(
                "127.0.0.1", d.http_port, timeout=30, source_address=("127.0.0.2", 0)
            )
            connection.request("GET", "/hello?x=1", headers={"Host": "app.localhost", "Cookie": "secret=1"})
            assert connection.getresponse().status == 200
            connection.close()
            _, seen = inspect.next("request", timeout=10)
            assert seen["method"] == "GET" and seen["path"] == "/hello?x=1" and seen["status"] == 200
            assert ["cookie", "[redacted]"] in seen["request_headers"]
            while True:  # (the /ready requests made before may come first)
                _, access = events.next("access", timeout=5)
                if access["client_address"] == "127.0.0.2":
                    break
            assert access["resource_id"] == resource["id"] and access["outcome"] == "allow"
            assert access["path"] == "/hello" and access["count"] == 1 and access["id"] is None
        finally:
            inspect.close()
            events.close()
    finally:
        d.stop_all()
