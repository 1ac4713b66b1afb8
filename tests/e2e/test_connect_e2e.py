"""``kokoa connect`` end to end: a real gateway, edge and TCP targets; a TCP resource that is not public,
granted to a role through the admin API; the CLI as a subprocess relaying a local port over the login
host's ``/connect/`` WebSocket (wss, the development CA verified)."""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from .harness import KOKOA, EchoTarget, HashTarget, free_port, tail, transfer, wait_for
from .test_identity_e2e import IdentityDeployment

pytestmark = pytest.mark.e2e
MiB = 1 << 20


class ConnectDeployment(IdentityDeployment):
    """The identity deployment, plus an echo target next to the edge behind a non-public TCP resource
    that the Member role (ann's, not bob's) is granted, and an API key for each of them."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.runs: list[Connect] = []

    def start_all(self) -> None:
        super().start_all()
        self.echo = EchoTarget()
        self.echo_resource = self.tcp_resource("echo-connect", self.echo.port)
        self.ann_key = self.key_for(self.ann)
        self.bob_key = self.key_for(self.bob)

    def tcp_resource(self, name: str, target_port: int) -> dict:
        """A non-public TCP resource granted to Member; returns once its port listens (its grant, made
        before its target, is live by then)."""
        resource = self.api(
            "POST",
            f"/orgs/{self.org}/resources",
            {"name": name, "kind": "tcp", "public_port": free_port(), "public": False},
        )
        self.grant(resource, role=self.roles["Member"])
        self.api(
            "POST",
            f"/orgs/{self.org}/resources/{resource['id']}/targets",
            {"site_id": self.site, "host": "127.0.0.1", "port": target_port, "scheme": "tcp"},
        )
        wait_for(lambda: _accepts(resource["public_port"]), f"the port of {name}")
        return resource

    def key_for(self, user_id: str) -> str:
        body = {"name": f"connect-{user_id}", "scopes": ["read"], "user_id": user_id}
        return self.api("POST", f"/orgs/{self.org}/api-keys", body)["key"]

    @property
    def ca_file(self) -> str:
        return str(self.data / "tls" / "ca.pem")

    def connect(self, resource: str, key: str | None, *extra: str, ca: bool = True) -> Connect:
        args = ["--gateway", self.login, *(["--ca-file", self.ca_file] if ca else []), *extra]
        self.runs.append(Connect(self.root, len(self.runs) + 1, resource, args, key))
        return self.runs[-1]


class Connect:
    """``kokoa connect`` in a subprocess, its output in files."""

    def __init__(self, root: Path, n: int, resource: str, args: list[str], key: str | None) -> None:
        self.resource = resource
        self.local_port = free_port()
        self.out, self.err = root / f"connect{n}.out", root / f"connect{n}.err"
        env = {k: v for k, v in os.environ.items() if k not in ("KOKOA_API_KEY", "KOKOA_GATEWAY")}
        if key is not None:
            env["KOKOA_API_KEY"] = key
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen(
                [KOKOA, "connect", resource, *args, "--local-port", str(self.local_port)],
                stdout=out,
                stderr=err,
                env=env,
                cwd=root,
                start_new_session=True,
            )

    @property
    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def ready(self) -> Connect:
        wait_for(
            lambda: "listening on" in self.stdout or self.proc.poll() is not None,
            "kokoa connect to listen",
            logs=[self.out, self.err],
        )
        assert self.proc.poll() is None, self.stderr
        line = self.stdout.strip()
        assert line.startswith(f"listening on 127.0.0.1:{self.local_port} ") and line.endswith(
            f" resource {self.resource}"
        ), line
        return self

    def failure(self) -> tuple[int, str]:
        """The exit code and stderr of a run that must fail."""
        code = self.proc.wait(timeout=60)
        return code, self.stderr

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        return True
    except OSError:
        return False


def echo_once(port: int, payload: bytes = b"hello kokoa") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    deployment = ConnectDeployment(tmp_path_factory.mktemp("connect"))
    try:
        deployment.start_all()
        yield deployment
    finally:
        for run in deployment.runs:
            run.stop(signal.SIGKILL)
        upstream = getattr(deployment, "upstream", None)
        if upstream is not None:
            upstream.stop()
        echo = getattr(deployment, "echo", None)
        if echo is not None:
            echo.close()
        deployment.stop()


@pytest.fixture
def ann(d):
    run = d.connect(d.echo_resource["id"], d.ann_key).ready()
    yield run
    run.stop()


# ---------------------------------------------------------------- bytes through


def test_bytes_come_back_echoed_and_a_mebibyte_goes_both_ways(d, ann):
    assert echo_once(ann.local_port) == b"hello kokoa"
    # bytes and the end of input, sent before the WebSocket is even open, arrive in order
    with socket.create_connection(("127.0.0.1", ann.local_port), timeout=30) as s:
        s.sendall(b"early")
        s.shutdown(socket.SHUT_WR)
        assert s.makefile("rb").read() == b"early"
    result = transfer(ann.local_port, MiB)  # sends 1 MiB, half-closes, reads to the end
    assert result["bytes"] == MiB and result["received"] == result["sent"]
    # several at once, each on its own WebSocket and stream
    results: list[dict] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(transfer(ann.local_port, MiB, seed=b"%d" % i)))
        for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == 4 and all(r["received"] == r["sent"] and r["bytes"] == MiB for r in results)


def test_the_resource_may_be_named_and_ctrl_c_stops_cleanly(d):
    run = d.connect("echo-connect", d.ann_key).ready()
    held = socket.create_connection(("127.0.0.1", run.local_port), timeout=30)
    held.sendall(b"ping")
    assert held.recv(100) == b"ping"
    assert run.stop() == 0
    assert held.recv(100) == b""  # closed cleanly (FIN), not reset
    held.close()
    assert "stopped" in run.stderr and "Traceback" not in run.stderr


def test_a_slow_local_reader_holds_the_target_back(d):
    """Backpressure end to end: a client that does not read stalls the stream at the gateway (its
    window fills) instead of piling up what the target sends in the gateway or in the CLI."""
    flood = HashTarget(send_size=512 * MiB)
    try:
        resource = d.tcp_resource("flood-connect", flood.port)
        run = d.connect(resource["id"], d.ann_key).ready()
        gateway_before, cli_before = d.gateway.rss_kib(), _rss_kib(run.proc.pid)
        stalled = socket.create_connection(("127.0.0.1", run.local_port))
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)

        def buffered() -> int:
            tunnels = d.status()["sites"][d.site]["tunnels"]
            return max((s["buffered_inbound"] for t in tunnels for s in t["stream_detail"]), default=0)

        wait_for(lambda: buffered() > 0, "the gateway to hold the stream back for the stalled reader")
        # Nothing like the 512 MiB the target tries to send piles up anywhere on the way.
        assert d.gateway.rss_kib() - gateway_before < 48 * 1024
        assert _rss_kib(run.proc.pid) - cli_before < 48 * 1024
        other = d.connect(d.echo_resource["id"], d.ann_key).ready()
        assert echo_once(other.local_port) == b"hello kokoa"  # other connections flow meanwhile
        other.stop()
        stalled.close()
        run.stop()
    finally:
        flood.close()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


# ---------------------------------------------------------------- refusals


def test_a_user_without_a_grant_is_refused_with_403(d):
    code, err = d.connect(d.echo_resource["id"], d.bob_key).failure()
    assert code == 1 and "refused the connection (403)" in err and "bob@example.com" in err, err


def test_a_bad_key_gets_401(d):
    code, err = d.connect(d.echo_resource["id"], "kk_nothing_x").failure()
    assert code == 1 and "refused the connection (401)" in err and "Sign in first" in err, err


def test_an_unknown_resource_gets_404(d):
    code, err = d.connect("no-such-resource", d.ann_key).failure()
    assert code == 1 and "(404)" in err and "no-such-resource" in err, err


def test_without_a_key_it_signs_in_with_a_browser(d):
    run = d.connect(d.echo_resource["id"], None, "--no-browser")
    wait_for(
        lambda: "sign in to the gateway in a browser: " in run.stderr, "the sign-in address", logs=[run.err]
    )
    url = run.stderr.split("sign in to the gateway in a browser: ", 1)[1].split()[0]
    assert url.startswith(f"{d.login}/cli?port=")
    browser = d.browser()
    asked = d.sign_in(browser, url)  # the login form, then back to /cli: "Allow"
    assert asked.status == 200 and 'id="cli-allow"' in asked.text, asked.text[:300]
    fields = dict(re.findall(r'name="(port|state)" value="([^"]+)"', asked.text))
    csrf = browser.jar["login.localhost"]["__Host-kokoa_csrf"]
    done = browser.go(f"{d.login}/cli", "POST", {"csrf": csrf, **fields})  # to the CLI's loopback
    assert done.status == 200 and b"Signed in" in done.body
    run.ready()
    try:
        assert echo_once(run.local_port) == b"hello kokoa"
    finally:
        run.stop()
    # the CLI traded the code for its session: the code is spent
    location = next(
        r.header("Location")
        for r in browser.history
        if r.status == 302 and "/callback?" in (r.header("Location") or "")
    )
    code = parse_qs(urlsplit(location).query)["code"][0]
    assert location.startswith("http://127.0.0.1:")
    spent = browser.request(
        "POST",
        f"{d.login}/cli/token",
        f"code={code}".encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert spent.status == 400 and b"unknown, used or expired" in spent.body
    # the loopback port and the state are checked: the code goes nowhere but this machine's loopback
    for query in (f"port=1&state={'s' * 20}", "port=40000&state=short", "port=x&state=" + "s" * 20):
        assert d.browser().request("GET", f"{d.login}/cli?{query}").status == 400, query


def test_an_untrusted_certificate_and_an_unreachable_gateway_are_clear_errors(d):
    code, err = d.connect(d.echo_resource["id"], d.ann_key, ca=False).failure()  # the system's CAs
    assert code == 1 and "cannot verify the certificate of login.localhost" in err and "--ca-file" in err, err
    closed = free_port()
    code, err = d.connect(d.echo_resource["id"], d.ann_key, "--connect-to", f"127.0.0.1:{closed}").failure()
    assert code == 1 and f"cannot reach the gateway at 127.0.0.1:{closed}" in err, err


def test_a_target_that_refuses_closes_the_local_connection_with_the_reason(d):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]  # nothing listens here once closed
    resource = d.tcp_resource("nothing-there", closed_port)
    run = d.connect(resource["id"], d.ann_key).ready()
    try:
        with socket.create_connection(("127.0.0.1", run.local_port), timeout=30) as s:
            s.sendall(b"anyone?")
            try:
                got = s.recv(100)
            except ConnectionError:
                got = b""
        assert got == b""
        wait_for(lambda: "(code 4011)" in run.stderr, "the CLI to say why", logs=[run.err])
        assert "stream reset by peer" in run.stderr, run.stderr
    finally:
        run.stop()


def test_the_raw_port_of_a_resource_that_is_not_public_refuses(d):
    port = d.echo_resource["public_port"]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"hello")
            got = s.recv(100)
    except ConnectionError:  # reset: the gate aborts it
        got = b""
    assert got == b""


def test_the_access_log_has_the_decisions(d):
    d.connect(d.echo_resource["id"], d.bob_key).failure()
    d.connect(d.echo_resource["id"], d.ann_key).ready().stop()

    def entries() -> list[dict]:
        path = f"/orgs/{d.org}/access-log?kind=connect&resource_id={d.echo_resource['id']}"
        return d.api("GET", path)["items"]

    def seen() -> bool:
        found = {(e["outcome"], e["subject"]) for e in entries()}
        return ("allow", "ann@example.com") in found and ("deny", "bob@example.com") in found

    wait_for(seen, "the connect decisions in the access log")
    ann_row = next(e for e in entries() if e["subject"] == "ann@example.com")
    assert ann_row["user_id"] == d.ann and ann_row["host"] == "login.localhost"


# ---------------------------------------------------------------- the login session, in a browser's place


def _handshake(d, path: str, headers: dict[str, str]) -> tuple[int, ssl.SSLSocket, bytes]:
    context = ssl.create_default_context(cafile=d.ca_file)
    raw = socket.create_connection(("127.0.0.1", d.https_port), timeout=30)
    sock = context.wrap_socket(raw, server_hostname="login.localhost")
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: login.localhost:{d.https_port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    return int(head.split(b" ", 2)[1]), sock, head


def _frame(payload: bytes) -> bytes:
    """A masked binary frame (clients mask)."""
    mask = os.urandom(4)
    size = len(payload)
    head = bytes([0x82]) + (bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + size.to_bytes(2))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_the_login_session_cookie_works_from_the_login_site_only(d):
    browser = d.browser()
    assert d.sign_in(browser, d.url("app.localhost", "/")).status == 200
    cookie = f"__Host-kokoa_login={browser.jar['login.localhost']['__Host-kokoa_login']}"
    path = f"/connect/{d.echo_resource['id']}"
    status, sock, _ = _handshake(d, path, {"Cookie": cookie, "Origin": d.login})
    assert status == 101
    sock.sendall(_frame(b"from a browser"))
    data = sock.recv(100)  # an unmasked binary frame: 0x82, length, payload
    assert data[0] == 0x82 and data[2:] == b"from a browser"
    sock.close()
    status, sock, _ = _handshake(d, path, {"Cookie": cookie, "Origin": "https://evil.example"})
    assert status == 401  # another site's page cannot ride on the cookie
    sock.close()
    status, sock, head = _handshake(d, path, {})
    assert status == 401 and b'WWW-Authenticate: Bearer realm="kokoa"' in head
    sock.close()


def test_no_tracebacks_in_the_logs(d):
    for err in d.root.glob("connect*.err"):
        assert "Traceback" not in err.read_text(errors="replace"), tail(err)
    assert "auth/_connect.py" not in d.gateway.log_text(), tail(d.gateway.log, 80)
