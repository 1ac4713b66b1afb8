"""Shared pieces of the benchmarks: processes that are always cleaned up, a real Kokoa
gateway and edges, a throwaway sshd with ``ssh -R``, nginx, tables and JSON results.

Nothing here runs a reactor: the benchmarks drive real processes (``twistd kokoa``,
``twistd kokoa-edge``, sshd, nginx, wrk, and the load workers in ``_workers.py``) from
plain Python, the same way ``tests/e2e/harness.py`` does.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
WORKERS = BENCH_DIR / "_workers.py"
PYTHON = sys.executable
TWISTD = str(Path(sys.executable).with_name("twistd"))
#: Seconds to wait for a process to reach a state (listening, connected) before giving up.
WAIT = 30.0
LOOPBACK = "127.0.0.1"

# The benchmarks import kokoa from the source tree when it is not installed in this Python.
_SRC = BENCH_DIR.parent / "src"
if _SRC.is_dir() and str(_SRC) not in sys.path:
    sys.path.append(str(_SRC))


class BenchError(RuntimeError):
    """A benchmark could not run (a process did not start, a transfer failed)."""


# ----------------------------------------------------------------------------- small helpers


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_for(
    predicate: Callable[[], Any], what: str, timeout: float = WAIT, logs: Sequence[Path] = ()
) -> Any:
    """Poll ``predicate`` until it returns something true; raise BenchError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    tails = "\n".join(f"--- {p}:\n{tail(p)}" for p in logs)
    raise BenchError(f"timed out after {timeout:g}s waiting for {what}\n{tails}")


def port_open(port: int, host: str = LOOPBACK) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc/PID/status (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def tree_cpu(pids: Sequence[int] = (), parents: Sequence[int] = ()) -> float:
    """CPU seconds used so far by ``pids`` and by every descendant of ``parents`` (processes
    that are gone count as 0, so take differences over one snapshot set)."""
    total = 0.0
    for pid in [*pids, *(d for parent in parents for d in descendants(parent))]:
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += cpu_seconds(pid)
    return total


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy so far (all cores, from /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_tree_seconds() -> float:
    """CPU seconds used so far by this process and everything it started, the finished ones
    included (their time moves to their parent's cutime/cstime when they are reaped)."""
    mine = os.times()
    total = mine.user + mine.system + mine.children_user + mine.children_system
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in descendants(os.getpid()):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15]) / ticks
    return total


class ForeignLoad:
    """How much CPU *other* processes on the machine used during a measurement (in % of one
    core): the benchmarks share the cores with their load generators already, anything else
    running (a test suite, a build) skews the figures. ``start()`` then ``stop()``."""

    def start(self) -> None:
        self._t, self._busy, self._own = time.monotonic(), machine_busy_seconds(), own_tree_seconds()

    def stop(self) -> float:
        elapsed = time.monotonic() - self._t
        foreign = (machine_busy_seconds() - self._busy) - (own_tree_seconds() - self._own)
        return max(0.0, 100 * foreign / elapsed) if elapsed > 0 else 0.0


def raise_nofile(wanted: int = 8192) -> int:
    """Raise this process's open-file limit to ``wanted`` (as far as allowed); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    for limits in ((wanted, max(hard, wanted)), (min(wanted, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            return limits[0]
        except (ValueError, OSError):
            continue
    return soft


def find_tool(name: str, *extra_dirs: str) -> str | None:
    """The path of an executable, looking in PATH and then in ``extra_dirs`` (sbin)."""
    found = shutil.which(name)
    if found:
        return found
    for directory in (*extra_dirs, "/usr/sbin", "/usr/local/sbin", "/sbin"):
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return value / base


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory, removed afterwards unless KOKOA_BENCH_KEEP is set."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if os.environ.get("KOKOA_BENCH_KEEP"):
            print(f"(kept {path})", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------- processes


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, grandchildren...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


class Proc:
    """A started process in its own process group, with its output in a log file."""

    def __init__(self, name: str, popen: subprocess.Popen, log: Path | None) -> None:
        self.name = name
        self.popen = popen
        self.log = log

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group (and any descendant that left it), SIGKILL after ``grace``."""
        if self.popen.poll() is not None and self.popen.returncode is not None:
            self._signal_group(signal.SIGKILL)  # leftovers of an exited leader
            return
        strays = descendants(self.pid)
        self._signal_group(signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        self._signal_group(signal.SIGKILL)
        for pid in strays:  # e.g. sshd's per-connection children, which call setsid()
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(OSError):
            os.killpg(self.pid, sig)


class Processes:
    """Every process a benchmark starts; ``close()`` (or leaving the ``with``) stops them all,
    newest first, whatever happened. SIGTERM/SIGINT/SIGHUP to the benchmark unwind into it."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []

    def __enter__(self) -> Processes:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _raise_interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        log: Path | None = None,
        env: dict[str, str] | None = None,
        nofile: int | None = None,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = None,
        cwd: Path | None = None,
    ) -> Proc:
        """Start ``argv`` in a new session (so its whole group can be signalled)."""
        full_env = dict(os.environ, **(env or {}))
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        out = log.open("ab") if log else subprocess.DEVNULL
        preexec = (lambda: _set_nofile(nofile)) if nofile else None
        try:
            popen = subprocess.Popen(
                list(argv),
                stdin=stdin,
                stdout=stdout if stdout is not None else out,
                stderr=out if stdout is not None else subprocess.STDOUT,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=preexec,
            )
        finally:
            if log:
                out.close()  # type: ignore[union-attr]
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> None:
        # A second Ctrl-C or SIGTERM must not cut the cleanup short: hold signals until the
        # end (each stop is bounded), then let a pending one act.
        held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
        try:
            while self.procs:
                proc = self.procs.pop()
                try:
                    proc.stop()
                except Exception as e:  # keep stopping the others
                    print(f"warning: could not stop {proc.name} ({proc.pid}): {e}", file=sys.stderr)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _set_nofile(wanted: int) -> None:
    """In the child before exec: raise RLIMIT_NOFILE (as root the hard limit too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


# ----------------------------------------------------------------------------- Kokoa


class Kokoa:
    """A gateway (``twistd kokoa``) with sites and TCP resources, and its edges."""

    def __init__(self, procs: Processes, root: Path) -> None:
        from kokoa.secrets import generate_secret, hash_secret

        self._generate_secret = generate_secret
        self._hash_secret = hash_secret
        self.procs = procs
        self.root = root
        self.data = root / "gw-data"
        self.tunnel_port = free_port()
        self.ws_port = free_port()
        self.api_port = free_port()
        self.http_port = free_port()
        self.https_port = free_port()
        self.sites: dict[str, str] = {}  # the config file's sites: id -> secret
        self.store_sites: dict[str, str] = {}  # sites made through the admin API: id -> secret
        self.resources: list[dict[str, str | int]] = []
        self.gateway: Proc | None = None
        self.edges: list[Proc] = []
        self.database: str | None = None  # None: SQLite in the data directory
        #: Lines appended to the gateway's TOML config as they are (e.g. an [http_front] table).
        self.extra_config: list[str] = []

    @property
    def ca_file(self) -> Path:
        return self.data / "tls" / "ca.pem"

    def add_site(self, site_id: str) -> str:
        self.sites[site_id] = self._generate_secret()
        return self.sites[site_id]

    def add_tcp_resource(self, name: str, site: str, target_port: int) -> int:
        """A public port on the gateway forwarded to 127.0.0.1:``target_port`` next to the edge."""
        port = free_port()
        self.resources.append(
            {"name": name, "site": site, "port": port, "target": f"{LOOPBACK}:{target_port}"}
        )
        return port

    def write_config(self) -> Path:
        lines = [
            f'data_dir = "{self.data}"',
            f'tunnel = ["tcp:{self.tunnel_port}:interface={LOOPBACK}"]',
            f'tunnel_ws = ["tcp:{self.ws_port}:interface={LOOPBACK}"]',
            f'api = "tcp:{self.api_port}:interface={LOOPBACK}"',
            f'http = ["tcp:{self.http_port}:interface={LOOPBACK}"]',
            f'https = ["tcp:{self.https_port}:interface={LOOPBACK}"]',
            f'resource_interface = "{LOOPBACK}"',
        ]
        if self.database:
            lines.append(f'database = "{self.database}"')
        for site_id, secret in self.sites.items():
            lines += ["", "[[sites]]", f'id = "{site_id}"', f'secret_hash = "{self._hash_secret(secret)}"']
        for r in self.resources:
            lines += [
                "",
                "[[resources]]",
                f'name = "{r["name"]}"',
                f'site = "{r["site"]}"',
                f'listen = "tcp:{r["port"]}:interface={LOOPBACK}"',
                f'target = "{r["target"]}"',
            ]
        if self.extra_config:
            lines += ["", *self.extra_config]
        path = self.root / "gateway.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start_gateway(self, nofile: int | None = None) -> Proc:
        if not (self.data / "admin.key").exists():  # the store and an admin key for the API
            kokoa = str(Path(sys.executable).with_name("kokoa"))
            database = [f"--database={self.database}"] if self.database else []
            subprocess.run(
                [kokoa, "-d", str(self.data), "init", "--email", "bench@example.com", *database],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        config = self.write_config()
        log = self.root / "gateway.log"
        self.gateway = self.procs.start(
            "gateway",
            [TWISTD, "-n", "--pidfile=", "-l", "-", "kokoa", "--config", str(config)],
            log=log,
            nofile=nofile,
            cwd=self.root,
        )
        wait_for(self._api_ready, "the gateway's status API", logs=[log])
        return self.gateway

    def _api_ready(self) -> bool:
        if self.gateway and not self.gateway.alive():
            raise BenchError(f"the gateway exited:\n{tail(self.gateway.log or Path())}")
        try:
            self.status()
            return True
        except OSError:
            return False

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """A call to the gateway's admin API with the admin key written by ``kokoa init``."""
        key = (self.data / "admin.key").read_text().strip()
        request = urllib.request.Request(
            f"http://{LOOPBACK}:{self.api_port}/api/v1{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def org_id(self) -> str:
        """The organization ``kokoa init`` created (the first one)."""
        return self.api("GET", "/orgs")["items"][0]["id"]

    def create_site(self, name: str) -> str:
        """A site made through the admin API (in the store); its secret is kept for ``start_edge``.
        Returns the site's id."""
        made = self.api("POST", f"/orgs/{self.org_id()}/sites", {"name": name})
        site_id = made["site"]["id"]
        self.store_sites[site_id] = made["secret"]
        return site_id

    def create_http_resource(
        self,
        name: str,
        hostname: str,
        site_id: str,
        target_port: int,
        path_prefix: str = "/",
        public: bool = True,
    ) -> dict[str, Any]:
        """An HTTP resource (routed by ``hostname``) through the admin API, with one http target
        127.0.0.1:``target_port`` next to the edge of ``site_id``. Returns the resource (public
        unless told otherwise: protected ones need a session or a token)."""
        org = self.org_id()
        resource = self.api(
            "POST",
            f"/orgs/{org}/resources",
            {
                "name": name,
                "kind": "http",
                "hostname": hostname,
                "path_prefix": path_prefix,
                "public": public,
            },
        )
        self.api(
            "POST",
            f"/orgs/{org}/resources/{resource['id']}/targets",
            {"site_id": site_id, "host": LOOPBACK, "port": target_port, "scheme": "http"},
        )
        return resource

    def create_tcp_resource(self, name: str, site_id: str, target_port: int) -> int:
        """A TCP resource through the admin API (in the store): a new public port on the gateway
        forwarded to 127.0.0.1:``target_port`` next to the edge of ``site_id``. Returns the port."""
        org = self.org_id()
        port = free_port()
        resource = self.api(
            "POST", f"/orgs/{org}/resources", {"name": name, "kind": "tcp", "public_port": port}
        )
        self.api(
            "POST",
            f"/orgs/{org}/resources/{resource['id']}/targets",
            {"site_id": site_id, "host": LOOPBACK, "port": target_port},
        )
        return port

    def status(self) -> dict[str, Any]:
        return self.api("GET", "/status")

    def tunnels(self, site: str) -> int:
        """How many tunnels the gateway's status page shows for ``site`` (0 if unreachable)."""
        try:
            return len(self.status()["sites"].get(site, {}).get("tunnels", []))
        except (OSError, ValueError):
            return 0

    def total_tunnels(self, prefix: str = "") -> int:
        """Tunnels of every site whose id starts with ``prefix`` (0 if the API is unreachable)."""
        try:
            sites = self.status()["sites"]
        except (OSError, ValueError):
            return 0
        return sum(len(s.get("tunnels", [])) for site, s in sites.items() if site.startswith(prefix))

    def gateway_url(self, transport: str) -> str:
        if transport == "tls":
            return f"tls:{LOOPBACK}:{self.tunnel_port}"
        if transport == "wss":
            return f"wss://{LOOPBACK}:{self.ws_port}/tunnel"
        raise ValueError(f"unknown transport {transport!r}")

    def start_edge(self, site: str, transport: str, connections: int = 2) -> Proc:
        n = len(self.edges)
        log = self.root / f"edge{n}-{site}.log"
        edge = self.procs.start(
            f"edge {site}",
            [
                TWISTD,
                "-n",
                "--pidfile=",
                "-l",
                "-",
                "kokoa-edge",
                "--gateway",
                self.gateway_url(transport),
                "--site",
                site,
                "--ca-file",
                str(self.ca_file),
                "--connections",
                str(connections),
            ],
            log=log,
            env={"KOKOA_SITE_SECRET": self.sites.get(site) or self.store_sites[site]},
            cwd=self.root,
        )
        self.edges.append(edge)
        return edge

    def wait_tunnels(self, site: str, count: int, timeout: float = WAIT) -> None:
        logs = [p.log for p in [self.gateway, *self.edges] if p and p.log]
        wait_for(lambda: self.tunnels(site) >= count, f"{count} tunnel(s) for site {site!r}", timeout, logs)


# ----------------------------------------------------------------------------- ssh -R


SSH_CIPHER = "aes128-gcm@openssh.com"


def ssh_missing() -> str | None:
    """Why the ``ssh -R`` baseline cannot run here, or None when it can."""
    missing = [n for n in ("sshd", "ssh", "ssh-keygen") if not find_tool(n)]
    if missing:
        return f"{', '.join(missing)} not found (Debian: apt-get install openssh-server openssh-client)"
    return None


class SshTunnel:
    """A throwaway sshd on loopback (fresh host and user keys) and one ``ssh -N -R`` client
    forwarding sshd-side ports to local targets: the classic "reverse tunnel" baseline."""

    def __init__(self, procs: Processes, root: Path) -> None:
        self.procs = procs
        self.root = root / "ssh"
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.sshd: Proc | None = None
        self.client: Proc | None = None

    def start(self, forwards: Sequence[int]) -> dict[int, int]:
        """Forward a new loopback port to each 127.0.0.1 target port; returns target -> port."""
        sshd_bin, ssh_bin, keygen = find_tool("sshd"), find_tool("ssh"), find_tool("ssh-keygen")
        if not (sshd_bin and ssh_bin and keygen):
            raise BenchError(ssh_missing() or "ssh tools missing")
        root = self.root
        host_key, user_key = root / "host_ed25519", root / "user_ed25519"
        for key in (host_key, user_key):
            subprocess.run(
                [keygen, "-q", "-t", "ed25519", "-N", "", "-C", "kokoa-bench", "-f", str(key)],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        authorized = root / "authorized_keys"
        authorized.write_text(Path(f"{user_key}.pub").read_text())
        authorized.chmod(0o600)
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)  # privilege separation dir
        config = root / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {LOOPBACK}",
                    f"Port {self.port}",
                    f"HostKey {host_key}",
                    f"PidFile {root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized}",
                    f"Ciphers {SSH_CIPHER}",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "AllowTcpForwarding yes",
                    "GatewayPorts no",
                    "PrintMotd no",
                    "UseDNS no",
                    "Compression no",
                    "LogLevel ERROR",
                ]
            )
            + "\n"
        )
        self.sshd = self.procs.start(
            "sshd", [sshd_bin, "-D", "-e", "-f", str(config)], log=root / "sshd.log", cwd=root
        )
        wait_for(lambda: port_open(self.port), "sshd to listen", logs=[root / "sshd.log"])
        mapping = {target: free_port() for target in forwards}
        argv = [
            ssh_bin,
            "-N",
            "-F",
            "/dev/null",
            "-i",
            str(user_key),
            "-p",
            str(self.port),
            "-c",
            SSH_CIPHER,
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "LogLevel=ERROR",
        ]
        for target, port in mapping.items():
            argv += ["-R", f"{LOOPBACK}:{port}:{LOOPBACK}:{target}"]
        argv.append(f"root@{LOOPBACK}")
        self.client = self.procs.start("ssh -R", argv, log=root / "ssh.log", cwd=root)
        logs = [root / "sshd.log", root / "ssh.log"]
        for port in mapping.values():
            wait_for(lambda p=port: self._forward_ready(p), f"ssh -R to forward port {port}", logs=logs)
        return mapping

    def _forward_ready(self, port: int) -> bool:
        if self.client and not self.client.alive():
            raise BenchError(f"ssh -R exited:\n{tail(self.root / 'ssh.log')}\n{tail(self.root / 'sshd.log')}")
        return _listening(port)

    def stop(self) -> None:
        for proc in (self.client, self.sshd):  # the client first: its sshd child then exits
            if proc:
                self.procs.stop(proc)


def _listening(port: int) -> bool:
    """Whether a socket listens on 127.0.0.1:``port`` (from /proc/net/tcp, without connecting,
    so that no stray connection reaches the target behind a forward)."""
    wanted = f"0100007F:{port:04X}"
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return port_open(port)
    return any(line.split()[1] == wanted and line.split()[3] == "0A" for line in lines)


# ----------------------------------------------------------------------------- nginx and wrk
# (shared by request_rate.py, http_rate.py and http_download.py)

#: The static file: about 100 bytes, like a small API answer.
SMALL_BODY = (
    b'{"status":"ok","service":"kokoa-bench","note":"a small static answer of exactly 100 bytes, ok :-)"}\n'
)
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def start_nginx(procs: Processes, root: Path) -> int:
    """A throwaway single-process nginx on loopback serving /small.txt; returns its port."""
    nginx = find_tool("nginx")
    if not nginx:
        raise BenchError("nginx not found (Debian: apt-get install nginx-light)")
    prefix = root / "nginx"
    (prefix / "www").mkdir(parents=True)
    (prefix / "tmp").mkdir()
    (prefix / "www" / "small.txt").write_bytes(SMALL_BODY)
    port = free_port()
    error_log = prefix / "error.log"
    temp_paths = [
        f"{kind}_temp_path {prefix / 'tmp' / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    ]
    config = prefix / "nginx.conf"
    # Builds without some modules reject their *_temp_path directive: retry with fewer.
    for paths in (temp_paths, temp_paths[:2], []):
        config.write_text(_nginx_config(prefix, port, error_log, paths))
        check = subprocess.run(
            [nginx, "-t", "-q", "-p", str(prefix), "-c", str(config), "-e", str(error_log)],
            capture_output=True,
            text=True,
        )
        if check.returncode == 0:
            break
    else:
        raise BenchError(f"nginx rejects the configuration: {check.stderr.strip()}")
    proc = procs.start(
        "nginx",
        [nginx, "-p", str(prefix), "-c", str(config), "-e", str(error_log)],
        log=prefix / "stdout.log",
    )

    def ready() -> bool:
        if not proc.alive():
            raise BenchError(f"nginx exited: {error_log.read_text(errors='replace')[-800:]}")
        return port_open(port)

    wait_for(ready, "nginx to listen", logs=[error_log])
    return port


def nginx_www(root: Path) -> Path:
    """The directory the nginx of ``start_nginx(procs, root)`` serves (files added later are served)."""
    return root / "nginx" / "www"


def _nginx_config(prefix: Path, port: int, error_log: Path, temp_paths: list[str]) -> str:
    temp = "\n".join(f"    {line}" for line in temp_paths)
    return f"""daemon off;
master_process off;
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {error_log} warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    keepalive_requests 100000;
    keepalive_timeout 75s;
    default_type text/plain;
{temp}
    server {{
        listen {LOOPBACK}:{port} backlog=1024;
        root {prefix / "www"};
    }}
}}
"""


# ----------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    requests_per_sec: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    error_detail: str

    @classmethod
    def parse(cls, text: str) -> WrkResult:
        """Requests/sec, the 50% and 99% lines of the latency distribution, and errors."""
        rate = re.search(r"^Requests/sec:\s*([\d.]+)", text, re.M)
        p50 = re.search(r"^\s*50%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
        p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
        total = re.search(r"^\s*(\d+) requests in", text, re.M)
        if not (rate and p50 and p99 and total):
            raise BenchError(f"cannot parse wrk's output:\n{text[-1500:]}")
        socket_errors = re.search(
            r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
        )
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
        errors = sum(int(g) for g in socket_errors.groups()) if socket_errors else 0
        errors += int(non2xx.group(1)) if non2xx else 0
        detail = "; ".join(m.group(0) for m in (socket_errors, non2xx) if m)
        return cls(
            requests_per_sec=float(rate.group(1)),
            p50_ms=float(p50.group(1)) * _UNITS[p50.group(2)],
            p99_ms=float(p99.group(1)) * _UNITS[p99.group(2)],
            requests=int(total.group(1)),
            errors=errors,
            error_detail=detail,
        )


def run_wrk(
    wrk: str,
    port: int,
    seconds: float,
    threads: int,
    connections: int,
    path: str = "/small.txt",
    host: str | None = None,
    scheme: str = "http",
    headers: Sequence[str] = (),
) -> WrkResult:
    """``wrk --latency`` against 127.0.0.1:``port``; ``host`` sets the Host header (HTTP routing),
    ``headers`` are more ("Name: value"). Over https, wrk does not verify the certificate."""
    url = f"{scheme}://{LOOPBACK}:{port}{path}"
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "--latency"]
    if host:
        argv += ["-H", f"Host: {host}"]
    for header in headers:
        argv += ["-H", header]
    done = subprocess.run([*argv, url], capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return WrkResult.parse(done.stdout)


# ----------------------------------------------------------------------------- output


def fmt(value: float | None, digits: int = 1) -> str:
    """A number for a table: thousands separated, "-" when missing."""
    return "-" if value is None else f"{value:,.{digits}f}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table; numbers are right-aligned, None shows as '-'."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
        return str(value)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) if text else len(h) for i, h in enumerate(headers)]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in rows) for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in text)])


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "loadavg_at_start": list(os.getloadavg()),
    }


def write_result(name: str, result: dict[str, Any]) -> Path:
    """bench/results/<name>.json, with the machine it ran on."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    result = {"benchmark": name, "machine": machine_info(), **result}
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def guarded(main: Callable[[], int]) -> int:
    """Run a benchmark's main: an interrupt or a BenchError ends it with a short message
    (the processes it started are stopped by then) instead of a traceback."""
    try:
        return main()
    except KeyboardInterrupt as e:
        print(f"\ninterrupted ({e or 'Ctrl-C'}); the processes it started were stopped", file=sys.stderr)
        return 130
    except BenchError as e:
        print(f"\nbenchmark failed: {e}", file=sys.stderr)
        return 2


def skip(what: str, why: str) -> str:
    """Print and return a clear 'skipped' message."""
    message = f"SKIPPED {what}: {why}"
    print(message, flush=True)
    return message
