"""Large-download throughput through a Kokoa HTTP resource, against nginx reached directly,
and the gateway's peak memory while it streams.

nginx (the same throwaway single-worker config as request_rate.py) serves a 1 GiB static file
(``--quick``: 128 MiB), created sparse so that it costs no disk and no time to make, then read
once so that every path gets it from the page cache. One client at a time downloads it, reading
and discarding (``curl -s -o /dev/null``, or a small Python socket client when curl is missing:
the same client for every path):

- directly from nginx;
- through the gateway's HTTP front: an HTTP resource (hostname app.bench, made through the admin
  API) whose target is nginx next to an edge (tls transport, 2 tunnel connections);
- through a TCP resource of the same gateway and edge (context: the same tunnel without the
  HTTP layer; ``--no-tcp`` skips it);
- through ``ssh -R`` (``--no-ssh`` skips it).

Reported: MB/s (10^6 bytes per second, curl's size_download / time_total), the ratio to direct,
and the peak RSS of the gateway (and of the edge) during each download through Kokoa: VmRSS from
/proc/PID/status sampled every 5 ms, cross-checked with VmHWM (the kernel's high-water mark,
reset before each download through /proc/PID/clear_refs when allowed). Before the timed runs an
8 MiB random file is fetched through every path and its SHA-256 compared; each download's status
and byte count are checked. A failed download (an error status, a short body) is counted in the
"failures" column, printed, and tried once more; the exit code is 1 when there was any.

    .venv/bin/python bench/http_download.py          # 1 GiB, 3 rounds
    .venv/bin/python bench/http_download.py --quick  # 128 MiB, 1 round

Writes bench/results/http_download.json.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    LOOPBACK,
    PYTHON,
    WAIT,
    BenchError,
    ForeignLoad,
    Kokoa,
    Processes,
    SshTunnel,
    find_tool,
    fmt,
    format_table,
    guarded,
    median,
    nginx_www,
    ratio,
    skip,
    ssh_missing,
    start_nginx,
    temp_dir,
    tree_cpu,
    wait_for,
    write_result,
)
from http_rate import (
    DISTURBED_PCT,
    HOSTNAME,
    add_front_setting_argument,
    apply_front_settings,
    check_front,
    check_front_settings,
    log_problems,
)

DIRECT, HTTP, TCP, SSH = "direct", "kokoa http", "kokoa tcp", "ssh -R"
MiB = 1024 * 1024
BIG, VERIFY = "/big.bin", "/verify.bin"
VERIFY_BYTES = 8 * MiB
#: Tries per round and path: a failed download is counted, reported, and tried once more, so that
#: one failure does not leave a path without a figure (the failures stay in the table and JSON).
ATTEMPTS = 2

#: The fallback client (no curl): GET, read the head, then recv_into a 1 MiB buffer until
#: Content-Length bytes arrived; prints "status bytes seconds" like the curl command below.
PY_CLIENT = r"""
import socket, sys, time
port, path, host = int(sys.argv[1]), sys.argv[2], sys.argv[3]
start = time.perf_counter()
s = socket.create_connection(("127.0.0.1", port))
s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
head = b""
while b"\r\n\r\n" not in head:
    piece = s.recv(65536)
    if not piece:
        break
    head += piece
head, _, rest = head.partition(b"\r\n\r\n")
lines = head.split(b"\r\n")
status = int(lines[0].split()[1])
length = next((int(l.split(b":", 1)[1]) for l in lines[1:] if l.lower().startswith(b"content-length:")), None)
got = len(rest)
buf = memoryview(bytearray(1 << 20))
while length is None or got < length:
    n = s.recv_into(buf)
    if not n:
        break
    got += n
print(status, got, time.perf_counter() - start)
"""


# ----------------------------------------------------------------------------- the client


def download(port: int, path: str, curl: str | None, timeout: float) -> tuple[int, int, float]:
    """One download that reads and discards: (HTTP status, bytes, seconds)."""
    if curl:
        argv = [curl, "-s", "-o", "/dev/null", "-H", f"Host: {HOSTNAME}"]
        argv += ["-w", "%{http_code} %{size_download} %{time_total}", f"http://{LOOPBACK}:{port}{path}"]
    else:
        argv = [PYTHON, "-c", PY_CLIENT, str(port), path, HOSTNAME]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise BenchError(f"the download client failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    status, size, seconds = done.stdout.split()
    return int(status), int(float(size)), float(seconds)


def sha256_through(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=30)
    try:
        connection.request("GET", path, headers={"Host": HOSTNAME})
        response = connection.getresponse()
        digest = hashlib.sha256()
        while piece := response.read(MiB):
            digest.update(piece)
        return response.status, digest.hexdigest()
    finally:
        connection.close()


# ----------------------------------------------------------------------------- memory


class RssSampler:
    """VmRSS of some processes every ``interval`` seconds in a thread; ``peak_kib`` per pid.
    Also resets and then reads the kernel's high-water mark (VmHWM) when allowed."""

    def __init__(self, pids: dict[str, int], interval: float = 0.005) -> None:
        self.pids = pids
        self.interval = interval
        self.peak_kib = dict.fromkeys(pids, 0)
        self.samples = 0
        self.hwm_reset = {name: _reset_hwm(pid) for name, pid in pids.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                with contextlib.suppress(OSError, ValueError):
                    self.peak_kib[name] = max(self.peak_kib[name], _status_kib(pid, "VmRSS"))
            self.samples += 1
            self._stop.wait(self.interval)

    def hwm_kib(self) -> dict[str, int | None]:
        """VmHWM of each process (None where it could not be reset before the transfer)."""
        found: dict[str, int | None] = {}
        for name, pid in self.pids.items():
            try:
                found[name] = _status_kib(pid, "VmHWM") if self.hwm_reset[name] else None
            except (OSError, ValueError):
                found[name] = None
        return found


def _status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise ValueError(f"no {key} for pid {pid}")


def _reset_hwm(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0, needs the right to write clear_refs)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# ----------------------------------------------------------------------------- the benchmark


@dataclass
class Route:
    name: str
    port: int
    cpu_pids: list[int] = field(default_factory=list)
    cpu_parents: list[int] = field(default_factory=list)
    rss_pids: dict[str, int] = field(default_factory=dict)
    runs: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: 128 MiB, 1 round")
    parser.add_argument("--size", type=int, help="file size in MiB (default 1024, --quick 128)")
    parser.add_argument("--repeat", type=int, help="rounds; medians reported (default 3, --quick 1)")
    parser.add_argument("--no-tcp", action="store_true", help="skip the kokoa tcp (context) row")
    parser.add_argument("--no-ssh", action="store_true", help="skip the ssh -R row")
    parser.add_argument("--python-client", action="store_true", help="use the Python client even with curl")
    add_front_setting_argument(parser)
    args = parser.parse_args(argv)
    check_front_settings(parser, args)
    args.size = args.size or (128 if args.quick else 1024)
    args.repeat = args.repeat or (1 if args.quick else 3)
    if not 1 <= args.size <= 64 * 1024 or not 1 <= args.repeat <= 20:
        parser.error("--size must be 1..65536 MiB, --repeat 1..20")
    return args


def run(args: argparse.Namespace) -> dict:
    notes: list[str] = []
    args.loadavg_at_start = list(os.getloadavg())  # other work on the machine skews every figure
    if not find_tool("nginx"):
        notes.append(
            skip("the HTTP download benchmark", "nginx not found (Debian: apt-get install nginx-light)")
        )
        return {"params": vars(args), "results": [], "table": "", "summary": notes, "notes": notes}
    curl = None if args.python_client else find_tool("curl")
    client = "curl -s -o /dev/null" if curl else "a Python socket client (recv_into, 1 MiB buffer)"
    size = args.size * MiB
    timeout = 60 + size / (5 * 10**6)  # even 5 MB/s finishes

    with temp_dir("kokoa-bench-http-download-") as root, Processes() as procs:
        nginx_port = start_nginx(procs, root)
        www = nginx_www(root)
        with open(www / BIG.lstrip("/"), "wb") as f:
            f.truncate(size)  # sparse: no disk, and fast to make
        # The first read of a hole fills the page cache with zero pages (300 MB/s here, against
        # 2 GB/s once cached): read it once so that every path gets it from the cache.
        with open(www / BIG.lstrip("/"), "rb", buffering=0) as f:
            buffer = bytearray(4 * MiB)
            while f.readinto(buffer):
                pass
        verify_data = os.urandom(VERIFY_BYTES)
        (www / VERIFY.lstrip("/")).write_bytes(verify_data)
        verify_digest = hashlib.sha256(verify_data).hexdigest()
        paths = [Route(DIRECT, nginx_port)]

        kokoa = Kokoa(procs, root)
        apply_front_settings(kokoa, args.front_setting)
        kokoa.start_gateway()
        assert kokoa.gateway is not None
        site = kokoa.create_site("bench-http")
        kokoa.create_http_resource("nginx-http", HOSTNAME, site, nginx_port)
        tcp_port = None
        if not args.no_tcp:
            tcp_port = kokoa.create_tcp_resource("nginx-tcp", site, nginx_port)
        edge = kokoa.start_edge(site, "tls")
        kokoa.wait_tunnels(site, 2)
        logs = [p for p in (kokoa.gateway.log, edge.log) if p]
        check_front(kokoa.http_port, logs)
        tunnel = {
            "cpu_pids": [kokoa.gateway.pid, edge.pid],
            "rss_pids": {"gateway": kokoa.gateway.pid, "edge": edge.pid},
        }
        paths.append(Route(HTTP, kokoa.http_port, **tunnel))
        if tcp_port is not None:
            wait_for(lambda: _answers(tcp_port), "the TCP resource to answer", WAIT, logs)
            paths.append(Route(TCP, tcp_port, **tunnel))

        ssh_note = "disabled with --no-ssh" if args.no_ssh else ssh_missing()
        if ssh_note:
            notes.append(skip("the ssh -R row", ssh_note))
        else:
            ssh = SshTunnel(procs, root)
            try:
                forwarded = ssh.start([nginx_port])
            except (BenchError, OSError, subprocess.CalledProcessError) as e:
                notes.append(skip("the ssh -R row", f"could not start sshd / ssh -R: {e}"))
            else:
                assert ssh.client is not None and ssh.sshd is not None
                paths.append(Route(SSH, forwarded[nginx_port], [ssh.client.pid], [ssh.sshd.pid]))

        print(f"checking an {VERIFY_BYTES // MiB} MiB random file through each path (SHA-256)...", flush=True)
        for path in paths:
            status, digest = sha256_through(path.port, VERIFY)
            if status != 200 or digest != verify_digest:
                raise BenchError(f"{path.name}: {VERIFY} came back as {status} with a different SHA-256")
        idle_rss = {name: _status_kib(pid, "VmRSS") for name, pid in paths[1].rss_pids.items()}

        for round_no in range(args.repeat):
            for path in paths:
                # A failed download is recorded, reported, and tried once more (see ATTEMPTS).
                for _attempt in range(ATTEMPTS):
                    if measure_once(path, round_no, args, size, curl, timeout):
                        break
        settled_rss = {name: _status_kib(pid, "VmRSS") for name, pid in paths[1].rss_pids.items()}
        gateway_log = log_problems(kokoa.gateway.log)
    if gateway_log:
        notes.append("the gateway's log has errors or warnings:\n    " + "\n    ".join(gateway_log))
    return summarize(args, paths, notes, client, idle_rss, settled_rss, gateway_log)


def measure_once(
    path: Route, round_no: int, args: argparse.Namespace, size: int, curl: str | None, timeout: float
) -> bool:
    """One timed download through ``path``; False (and the failure in ``path.errors``) if it failed."""
    cpu_before = tree_cpu(path.cpu_pids, path.cpu_parents)
    rss_before = {name: _status_kib(pid, "VmRSS") for name, pid in path.rss_pids.items()}
    sampler = RssSampler(path.rss_pids)
    foreign = ForeignLoad()
    foreign.start()
    started = time.perf_counter()
    try:
        with sampler:
            status, got, seconds = download(path.port, BIG, curl, timeout)
    except (BenchError, subprocess.TimeoutExpired, ValueError) as e:
        path.errors.append(f"round {round_no + 1}: {e}")
        print(f"  round {round_no + 1}/{args.repeat} {path.name:10} FAILED {e}", flush=True)
        return False
    wall = time.perf_counter() - started
    others = foreign.stop()
    cpu = tree_cpu(path.cpu_pids, path.cpu_parents) - cpu_before
    if status != 200 or got != size:
        problem = f"round {round_no + 1}: status {status}, {got:,} of {size:,} bytes after {wall:.1f} s"
        path.errors.append(problem)
        print(f"  round {round_no + 1}/{args.repeat} {path.name:10} WRONG ANSWER: {problem}", flush=True)
        return False
    hwm = sampler.hwm_kib()
    run_info = {
        "round": round_no + 1,
        "mb_per_s": size / seconds / 1e6,
        "seconds": seconds,
        "wall_seconds": wall,
        "tunnel_cpu_pct": 100 * cpu / wall if path.cpu_pids else None,
        "rss_before_kib": rss_before,
        "peak_rss_kib": dict(sampler.peak_kib) if path.rss_pids else {},
        "rss_rise_kib": {name: sampler.peak_kib[name] - rss_before[name] for name in rss_before},
        "hwm_kib": hwm,
        "rss_samples": sampler.samples,
        "other_processes_cpu_pct": others,
    }
    path.runs.append(run_info)
    peak = ""
    if path.rss_pids:
        peak = "  peak RSS " + ", ".join(
            f"{name} {kib / 1024:.1f} MiB (HWM {_mib(hwm[name])})" for name, kib in sampler.peak_kib.items()
        )
    print(
        f"  round {round_no + 1}/{args.repeat} {path.name:10} {run_info['mb_per_s']:9.1f} MB/s"
        f"  {seconds:6.2f} s{peak}"
        + (f"  OTHER PROCESSES {others:.0f}% of a core" if others >= DISTURBED_PCT else ""),
        flush=True,
    )
    return True


def _answers(port: int) -> bool:
    try:
        return sha256_through(port, VERIFY)[0] == 200
    except OSError:
        return False


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f} MiB"


def summarize(
    args: argparse.Namespace,
    paths: list[Route],
    notes: list[str],
    client: str,
    idle_rss: dict[str, int],
    settled_rss: dict[str, int],
    gateway_log: list[str],
) -> dict:
    by_name = {p.name: p for p in paths}

    def med(name: str, key: str) -> float | None:
        path = by_name.get(name)
        return median([r[key] for r in path.runs if r[key] is not None]) if path else None

    def peak(name: str, process: str, key: str = "peak_rss_kib") -> int | None:
        path = by_name.get(name)
        values = [r[key].get(process) for r in path.runs] if path else []
        values = [v for v in values if v is not None]
        return max(values) if values else None

    rows, results, summary = [], [], []
    notes = notes + [f"{p.name}: FAILED {error}" for p in paths for error in p.errors]
    direct = med(DIRECT, "mb_per_s")
    for path in paths:
        rate = med(path.name, "mb_per_s")
        entry = {
            "path": path.name,
            "median_mb_per_s": rate,
            "min_mb_per_s": min((r["mb_per_s"] for r in path.runs), default=None),
            "max_mb_per_s": max((r["mb_per_s"] for r in path.runs), default=None),
            "ratio_to_direct": ratio(rate, direct),
            "ratio_to_ssh": ratio(rate, med(SSH, "mb_per_s")) if SSH in by_name else None,
            "tunnel_cpu_pct": med(path.name, "tunnel_cpu_pct"),
            "other_processes_cpu_pct_max": max(
                (r["other_processes_cpu_pct"] for r in path.runs), default=None
            ),
            "gateway_peak_rss_kib": peak(path.name, "gateway") if path.rss_pids else None,
            "gateway_peak_hwm_kib": peak(path.name, "gateway", "hwm_kib") if path.rss_pids else None,
            "gateway_max_rise_kib": peak(path.name, "gateway", "rss_rise_kib") if path.rss_pids else None,
            "edge_peak_rss_kib": peak(path.name, "edge") if path.rss_pids else None,
            "runs": path.runs,
            "failures": path.errors,
        }
        results.append(entry)
        gw = entry["gateway_peak_rss_kib"]
        rows.append(
            [
                path.name,
                rate,
                entry["ratio_to_direct"],
                entry["ratio_to_ssh"],
                entry["tunnel_cpu_pct"],
                entry["other_processes_cpu_pct_max"],
                None if gw is None else gw / 1024,
                None if gw is None else entry["gateway_max_rise_kib"] / 1024,
                None if entry["edge_peak_rss_kib"] is None else entry["edge_peak_rss_kib"] / 1024,
                len(path.errors),
            ]
        )
        if path.name == HTTP:
            line = f"HTTP download {path.name}: {fmt(rate)} MB/s = {fmt(entry['ratio_to_direct'], 2)}x direct"
            if entry["ratio_to_ssh"] is not None:
                line += f", {fmt(entry['ratio_to_ssh'], 2)}x ssh -R"
            if TCP in by_name:
                line += f", {fmt(ratio(rate, med(TCP, 'mb_per_s')), 2)}x the kokoa tcp resource"
            if gw is not None:
                line += f"; gateway peak RSS {gw / 1024:.1f} MiB (idle {idle_rss['gateway'] / 1024:.1f} MiB)"
            if path.errors:
                line += f"; {len(path.errors)} failed download(s)"
            summary.append(line)
    headers = [
        "path",
        "MB/s",
        "x direct",
        "x ssh -R",
        "tunnel CPU %",
        "others CPU %",
        "gw peak RSS MiB",
        "gw rise MiB",
        "edge peak MiB",
        "failures",
    ]
    return {
        "params": {
            "size_mib": args.size,
            "repeat": args.repeat,
            "client": client,
            "host_header": HOSTNAME,
            "transport": "tls",
            "edge_connections": 2,
            "front_settings": args.front_setting,
            "loadavg_at_start": args.loadavg_at_start,
            "quick": args.quick,
            "unit": "MB/s = 10^6 bytes/s (client-side size / time), median over the rounds; RSS in KiB",
        },
        "idle_rss_kib": idle_rss,
        "settled_rss_kib": settled_rss,
        "results": results,
        "gateway_log_problems": gateway_log,
        "table": format_table(headers, rows),
        "summary": summary,
        "notes": notes,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"HTTP download: {args.size} MiB static file from nginx, {args.repeat} round(s) per path", flush=True
    )
    result = run(args)
    if result["table"]:
        print()
        print(result["table"])
        print(
            f"\nclient: {result['params']['client']}. CPU % is the tunnel's own processes as % of one core;"
            " peak RSS: VmRSS sampled every 5 ms during the download (max over the rounds);"
            " rise: the most the gateway's RSS grew during one download."
        )
        print(
            f"others CPU %: the most other processes used in one download (>= {DISTURBED_PCT:g}%: disturbed)."
        )
        print(
            f"gateway RSS idle {result['idle_rss_kib']['gateway'] / 1024:.1f} MiB before the downloads,"
            f" {result['settled_rss_kib']['gateway'] / 1024:.1f} MiB after them."
        )
        for line in result["summary"]:
            print(line)
        for note in result["notes"]:
            print(note)
    path = write_result("http_download", result)
    print(f"\nwrote {path}")
    failed = any(r["median_mb_per_s"] is None or r["failures"] for r in result["results"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(guarded(main))
