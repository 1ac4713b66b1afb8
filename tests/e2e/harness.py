"""Real processes on loopback: a gateway (`twistd -n kokoa`), edges, and TCP targets.

These tests use no reactor in the test process: plain sockets and threads drive
real `twistd` processes, so they exercise exactly what an operator runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from kokoa.secrets import generate_secret, hash_secret

TWISTD = str(Path(sys.executable).with_name("twistd"))
KOKOA = str(Path(sys.executable).with_name("kokoa"))
#: How long to wait for a process to reach a state before failing the test.
WAIT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], object], what: str, timeout: float = WAIT, logs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    tails = "\n".join(f"--- {p}:\n{tail(p)}" for p in logs)
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def established_connections(port: int) -> int:
    """TCP connections in state ESTABLISHED whose local or remote port is ``port``."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            ports = {int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)}
            if state == "01" and port in ports:
                count += 1
    return count


class Process:
    """A twistd process with its log in a file."""

    def __init__(self, name: str, args: list[str], log: Path, env: dict | None = None) -> None:
        self.name = name
        self.args = args
        self.log = log
        self.env = env
        self.proc: subprocess.Popen | None = None

    def start(self) -> Process:
        out = self.log.open("ab")
        env = dict(os.environ, **(self.env or {}))
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "-l", "-", *self.args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        out.close()
        return self

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_log(self, text: str, timeout: float = WAIT) -> None:
        wait_for(lambda: text in self.log_text(), f"{self.name} to log {text!r}", timeout, [self.log])

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=WAIT)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def exited_within(self, seconds: float) -> int | None:
        """The exit code if the process ends within ``seconds``, else None."""
        try:
            return self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


class Deployment:
    """One gateway and its edges in a temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "gw-data"
        self.tunnel_port = free_port()
        self.ws_port = free_port()
        self.api_port = free_port()
        self.http_port = free_port()
        self.https_port = free_port()
        self.sites: dict[str, str] = {}  # id -> secret
        self.disabled_sites: set[str] = set()
        self.resources: list[dict] = []
        self.gateway: Process | None = None
        self.edges: list[Process] = []
        self.extra_config = ""
        self.database: str | None = None  # None: SQLite in the data directory

    def add_site(self, site_id: str) -> str:
        self.sites[site_id] = generate_secret()
        return self.sites[site_id]

    def add_tcp_resource(self, name: str, site: str, target_port: int, target_host: str = "127.0.0.1") -> int:
        port = free_port()
        self.resources.append(
            {"name": name, "site": site, "port": port, "target": f"{target_host}:{target_port}"}
        )
        return port

    def write_config(self) -> Path:
        lines = [
            f'data_dir = "{self.data}"',
            f'tunnel = ["tcp:{self.tunnel_port}:interface=127.0.0.1"]',
            f'tunnel_ws = ["tcp:{self.ws_port}:interface=127.0.0.1"]',
            f'api = "tcp:{self.api_port}:interface=127.0.0.1"',
            f'http = ["tcp:{self.http_port}:interface=127.0.0.1"]',
            f'https = ["tcp:{self.https_port}:interface=127.0.0.1"]',
            f'database = "{self.database}"' if self.database else "",
            self.extra_config,
        ]
        for site_id, secret in self.sites.items():
            lines += ["[[sites]]", f'id = "{site_id}"', f'secret_hash = "{hash_secret(secret)}"']
            if site_id in self.disabled_sites:
                lines.append("enabled = false")
        for r in self.resources:
            lines += [
                "[[resources]]",
                f'name = "{r["name"]}"',
                f'site = "{r["site"]}"',
                f'listen = "tcp:{r["port"]}:interface=127.0.0.1"',
                f'target = "{r["target"]}"',
            ]
        path = self.root / "gateway.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def reload(self) -> None:
        """Rewrite the config file and tell the gateway (SIGHUP)."""
        self.write_config()
        before = self.gateway.log_text().count("configuration ")
        self.gateway.proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: self.gateway.log_text().count("configuration ") > before,
            "the gateway to reload its configuration",
            logs=[self.gateway.log],
        )

    def init_store(self) -> None:
        """``kokoa init`` on the data directory (once): the store and an admin key."""
        if (self.data / "admin.key").exists():
            return
        database = [f"--database={self.database}"] if self.database else []
        subprocess.run(
            [KOKOA, "-d", str(self.data), "init", "--email", "admin@example.com", *database],
            check=True,
            capture_output=True,
        )

    @property
    def admin_key(self) -> str:
        return (self.data / "admin.key").read_text().strip()

    def start_gateway(self) -> Process:
        self.init_store()
        config = self.write_config()
        self.gateway = Process(
            "gateway", ["kokoa", "--config", str(config)], self.root / "gateway.log"
        ).start()
        wait_for(self.api_ready, "the gateway's API", logs=[self.gateway.log])
        return self.gateway

    def api_ready(self) -> bool:
        try:
            self.status()
            return True
        except OSError:
            return False

    def api(self, method: str, path: str, body: dict | None = None) -> dict | None:
        """A call to the gateway's admin API with the admin key."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}/api/v1{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.admin_key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def status(self) -> dict:
        return self.api("GET", "/status")

    def tunnels(self, site: str) -> int:
        try:
            return len(self.status()["sites"].get(site, {}).get("tunnels", []))
        except OSError:
            return 0

    def gateway_url(self, transport: str) -> str:
        if transport == "tls":
            return f"tls:127.0.0.1:{self.tunnel_port}"
        return f"wss://127.0.0.1:{self.ws_port}/tunnel"

    def start_edge(self, site: str, transport: str = "tls", secret: str | None = None, extra=()) -> Process:
        n = len(self.edges)
        env = {"KOKOA_SITE_SECRET": secret if secret is not None else self.sites[site]}
        args = [
            "kokoa-edge",
            "--gateway",
            self.gateway_url(transport),
            "--site",
            site,
            "--ca-file",
            str(self.data / "tls" / "ca.pem"),
            *extra,
        ]
        edge = Process(f"edge{n}", args, self.root / f"edge{n}.log", env).start()
        self.edges.append(edge)
        return edge

    def wait_tunnels(self, site: str, count: int) -> None:
        logs = [self.gateway.log] + [e.log for e in self.edges]
        wait_for(lambda: self.tunnels(site) >= count, f"{count} tunnel(s) for site {site}", logs=logs)

    def stop(self) -> None:
        for edge in self.edges:
            edge.kill()
        if self.gateway:
            self.gateway.kill()


class HashTarget:
    """A TCP service next to the edge: hashes what it reads, sends ``send_size``
    deterministic random bytes, half-closes, and records both digests."""

    def __init__(self, send_size: int = 0) -> None:
        self.send_size = send_size
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.results: list[dict] = []
        self.connections = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        result = {"received": None, "sent": None, "bytes": 0}
        writer = threading.Thread(target=self._send, args=(conn, result), daemon=True)
        writer.start()
        digest = hashlib.sha256()
        try:
            while chunk := conn.recv(1 << 16):
                digest.update(chunk)
                result["bytes"] += len(chunk)
        except OSError:
            pass
        writer.join()
        result["received"] = digest.hexdigest()
        conn.close()
        with self._lock:
            self.results.append(result)

    def _send(self, conn: socket.socket, result: dict) -> None:
        digest = hashlib.sha256()
        try:
            for block in random_blocks(self.send_size, seed=b"target"):
                conn.sendall(block)
                digest.update(block)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        result["sent"] = digest.hexdigest()

    def close(self) -> None:
        self.sock.close()


class EchoTarget(HashTarget):
    """Echoes every byte back, then closes when the client half-closes."""

    def _serve(self, conn: socket.socket) -> None:
        try:
            while chunk := conn.recv(1 << 16):
                conn.sendall(chunk)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        conn.close()


def random_blocks(total: int, seed: bytes, block: int = 1 << 16):
    """Deterministic pseudo-random bytes (SHAKE-256 of the seed), in blocks."""
    stream = hashlib.shake_256(seed).digest(1 << 20)
    sent = 0
    while sent < total:
        n = min(block, total - sent)
        offset = sent % len(stream)
        chunk = (stream[offset:] + stream)[:n]
        yield chunk
        sent += n


def transfer(port: int, send_size: int, seed: bytes = b"client", timeout: float = 120) -> dict:
    """Send ``send_size`` bytes to a resource and read until EOF; returns both digests."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sent = hashlib.sha256()

    def send() -> None:
        for block in random_blocks(send_size, seed):
            sock.sendall(block)
            sent.update(block)
        sock.shutdown(socket.SHUT_WR)

    writer = threading.Thread(target=send, daemon=True)
    writer.start()
    received = hashlib.sha256()
    count = 0
    while chunk := sock.recv(1 << 16):
        received.update(chunk)
        count += len(chunk)
    writer.join()
    sock.close()
    return {"sent": sent.hexdigest(), "received": received.hexdigest(), "bytes": count}
