"""Memory of idle tunnels: the gateway's RSS per idle tunnel, and an idle edge's RSS.

Gateway: a real ``twistd kokoa``. Its RSS with no tunnel is the baseline; then one
load-generator process (``_tunnel_loadgen.py``: Kokoa's own client endpoint and
TunnelProtocol, TLS, one Twisted process) opens 1,000 tunnel sessions, and once the
gateway's status page shows them all and a few seconds have passed the RSS is read again.
The gateway caps tunnels per site (``max_tunnels_per_site``), so the sessions are spread
over configured sites, 2 per site like an edge with the default ``--connections 2``
(``--per-site`` changes it; every site is configured from the start, so the baseline
includes them and the difference is the tunnels alone):

    KiB per tunnel = (RSS with N tunnels - RSS with none) / N        target <= 64 KiB

(and, for information, the marginal cost from N/10 to N tunnels, which leaves out one-time
costs such as the first TLS connection, and the RSS after all are closed again).

Edge: a real ``twistd kokoa-edge`` with 2 tunnel connections, idle for a few seconds,
against a bare ``python -c "from twisted.internet import reactor; reactor.run()"`` as the
baseline. Target <= 40 MiB.

    .venv/bin/python bench/idle_memory.py           # 1,000 tunnels
    .venv/bin/python bench/idle_memory.py --quick   # 200 tunnels, shorter settling (smoke test)

RSS is VmRSS from /proc/PID/status. Writes bench/results/idle_memory.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BENCH_DIR,
    PYTHON,
    BenchError,
    Kokoa,
    Proc,
    Processes,
    format_table,
    guarded,
    raise_nofile,
    ratio,
    rss_kib,
    temp_dir,
    wait_for,
    write_result,
)

LOADGEN = BENCH_DIR / "_tunnel_loadgen.py"
TARGET_GATEWAY_KIB_PER_TUNNEL = 64.0
TARGET_EDGE_MIB = 40.0
NOFILE = 8192
BARE_REACTOR = "from twisted.internet import reactor; reactor.callLater(3600, reactor.stop); reactor.run()"
#: For context only: the interpreter alone, no import.
BARE_PYTHON = "import time; time.sleep(3600)"


def settled_rss(pid: int, settle: float, samples: int = 3) -> int:
    """VmRSS after ``settle`` seconds: the median of a few readings half a second apart."""
    time.sleep(settle)
    readings = []
    for i in range(samples):
        if i:
            time.sleep(0.5)
        readings.append(rss_kib(pid))
    return int(statistics.median(readings))


class LoadGen:
    """Talks to ``_tunnel_loadgen.py`` over its stdin/stdout, one command per line."""

    def __init__(self, proc: Proc) -> None:
        self.proc = proc

    def command(self, line: str, timeout: float = 360.0) -> str:
        stdin, stdout = self.proc.popen.stdin, self.proc.popen.stdout
        assert stdin is not None and stdout is not None
        stdin.write(line.encode() + b"\n")
        stdin.flush()
        # The load generator bounds every command by its own timeout (300 s) and answers.
        answer = stdout.readline().decode().strip()
        if not answer:
            raise BenchError(f"the load generator exited (command {line!r}):\n{self.proc.log_text()[-2000:]}")
        if answer.startswith("error"):
            raise BenchError(f"load generator: {answer}")
        return answer


def gateway_memory(args: argparse.Namespace, procs: Processes, root: Path) -> dict:
    kokoa = Kokoa(procs, root / "gw")
    kokoa.root.mkdir()
    site_count = -(-args.tunnels // args.per_site)
    sites = [(f"idle-{i:04d}", kokoa.add_site(f"idle-{i:04d}")) for i in range(site_count)]
    sites_file = root / "sites.json"
    sites_file.touch(mode=0o600)
    sites_file.write_text(json.dumps(sites))
    kokoa.add_site("edge")
    gateway = kokoa.start_gateway(nofile=NOFILE)
    kokoa.status()  # the status page has been served once before the baseline
    rss_0 = settled_rss(gateway.pid, args.settle)
    print(f"  gateway RSS with 0 tunnels: {rss_0 / 1024:.1f} MiB", flush=True)

    loadgen = LoadGen(
        procs.start(
            "load generator",
            [
                PYTHON,
                str(LOADGEN),
                "--gateway",
                kokoa.gateway_url("tls"),
                "--ca-file",
                str(kokoa.ca_file),
                "--sites-file",
                str(sites_file),
                "--per-site",
                str(args.per_site),
                "--nofile",
                str(NOFILE),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            log=root / "loadgen.log",
            nofile=NOFILE,
        )
    )
    loadgen_rss_0 = int(loadgen.command("rss").split()[1])
    steps = sorted({max(1, args.tunnels // 10), args.tunnels})
    rss: dict[int, int] = {}
    loadgen_rss: dict[int, int] = {}
    for count in steps:
        started = time.monotonic()
        loadgen.command(f"open {count}")
        wait_for(
            lambda c=count: kokoa.total_tunnels("idle-") >= c,
            f"the gateway to show {count} tunnels",
            timeout=120,
            logs=[gateway.log] if gateway.log else [],
        )
        took = time.monotonic() - started
        rss[count] = settled_rss(gateway.pid, args.settle)
        loadgen_rss[count] = int(loadgen.command("rss").split()[1])
        print(
            f"  gateway RSS with {count} tunnels: {rss[count] / 1024:.1f} MiB "
            f"(opened in {took:.1f} s; status shows {kokoa.total_tunnels('idle-')})",
            flush=True,
        )
    loadgen.command("close")
    wait_for(lambda: kokoa.total_tunnels("idle-") == 0, "the gateway to show 0 tunnels", timeout=60)
    rss_closed = settled_rss(gateway.pid, args.settle)
    print(f"  gateway RSS after closing them all: {rss_closed / 1024:.1f} MiB", flush=True)
    procs.stop(loadgen.proc)

    n, small = args.tunnels, steps[0]
    per_tunnel = (rss[n] - rss_0) / n
    marginal = (rss[n] - rss[small]) / (n - small) if n > small else None
    return {
        "kokoa": kokoa,
        "tunnels": n,
        "sites": site_count,
        "tunnels_per_site": args.per_site,
        "rss_kib": {"0": rss_0, **{str(k): v for k, v in rss.items()}, "after_close": rss_closed},
        "kib_per_tunnel": per_tunnel,
        "marginal_kib_per_tunnel": marginal,
        "marginal_from": small,
        "client_kib_per_tunnel": (loadgen_rss[n] - loadgen_rss_0) / n,
        "target_kib_per_tunnel": TARGET_GATEWAY_KIB_PER_TUNNEL,
        "target_met": per_tunnel <= TARGET_GATEWAY_KIB_PER_TUNNEL,
    }


def edge_memory(args: argparse.Namespace, procs: Processes, kokoa: Kokoa) -> dict:
    edge = kokoa.start_edge("edge", "tls", connections=2)
    kokoa.wait_tunnels("edge", 2)
    edge_rss = settled_rss(edge.pid, args.edge_idle)
    procs.stop(edge)
    bare = procs.start("bare reactor", [PYTHON, "-c", BARE_REACTOR])
    bare_rss = settled_rss(bare.pid, args.edge_idle)
    procs.stop(bare)
    interpreter = procs.start("bare python", [PYTHON, "-c", BARE_PYTHON])
    interpreter_rss = settled_rss(interpreter.pid, 1.0)
    procs.stop(interpreter)
    return {
        "connections": 2,
        "idle_seconds": args.edge_idle,
        "rss_kib": edge_rss,
        "baseline_rss_kib": bare_rss,
        "baseline": f"{PYTHON} -c {BARE_REACTOR!r}",
        "ratio_to_baseline": ratio(edge_rss, bare_rss),
        "python_only_rss_kib": interpreter_rss,
        "target_mib": TARGET_EDGE_MIB,
        "target_met": edge_rss / 1024 <= TARGET_EDGE_MIB,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: 200 tunnels, short settling")
    parser.add_argument("--tunnels", type=int, help="idle tunnels to open (default 1000, --quick 200)")
    parser.add_argument("--settle", type=float, help="seconds to wait before reading RSS (5, --quick 2)")
    parser.add_argument("--edge-idle", type=float, help="seconds the edge idles first (5, --quick 3)")
    parser.add_argument("--per-site", type=int, default=2, help="tunnels per configured site (2)")
    args = parser.parse_args(argv)
    args.tunnels = args.tunnels or (200 if args.quick else 1000)
    args.settle = args.settle if args.settle is not None else (2.0 if args.quick else 5.0)
    args.edge_idle = args.edge_idle if args.edge_idle is not None else (3.0 if args.quick else 5.0)
    if not 2 <= args.tunnels <= 5000 or not 1 <= args.per_site <= 64:
        parser.error("--tunnels must be 2..5000 and --per-site 1..64")
    return args


def run(args: argparse.Namespace) -> dict:
    raise_nofile(NOFILE)
    with temp_dir("kokoa-bench-memory-") as root, Processes() as procs:
        print(
            f"gateway: opening {args.tunnels} idle TLS tunnels ({args.per_site} per site) "
            "from one load-generator process",
            flush=True,
        )
        gateway = gateway_memory(args, procs, root)
        print("edge: a real kokoa-edge with 2 tunnel connections, idle", flush=True)
        edge = edge_memory(args, procs, gateway.pop("kokoa"))
    n = gateway["tunnels"]
    rows = [
        ["gateway RSS, no tunnel (baseline)", gateway["rss_kib"]["0"] / 1024, "MiB", None, None],
        [f"gateway RSS, {n} idle tunnels", gateway["rss_kib"][str(n)] / 1024, "MiB", None, None],
        [
            "gateway per tunnel (vs baseline)",
            gateway["kib_per_tunnel"],
            "KiB",
            TARGET_GATEWAY_KIB_PER_TUNNEL,
            _yes(gateway["target_met"]),
        ],
        [
            f"gateway per tunnel ({gateway['marginal_from']} -> {n})",
            gateway["marginal_kib_per_tunnel"],
            "KiB",
            None,
            None,
        ],
        ["gateway RSS after closing all", gateway["rss_kib"]["after_close"] / 1024, "MiB", None, None],
        ["client (load generator) per tunnel", gateway["client_kib_per_tunnel"], "KiB", None, None],
        [
            "edge RSS, 2 connections, idle",
            edge["rss_kib"] / 1024,
            "MiB",
            TARGET_EDGE_MIB,
            _yes(edge["target_met"]),
        ],
        ["bare Twisted reactor (baseline)", edge["baseline_rss_kib"] / 1024, "MiB", None, None],
        ["edge / bare reactor", edge["ratio_to_baseline"], "x", None, None],
        ["bare python interpreter (context)", edge["python_only_rss_kib"] / 1024, "MiB", None, None],
    ]
    table = format_table(["measure", "value", "unit", "target", "met"], rows)
    summary = [
        f"idle memory: gateway {gateway['kib_per_tunnel']:.1f} KiB per idle tunnel with {n} tunnels "
        f"(target <= {TARGET_GATEWAY_KIB_PER_TUNNEL:g} KiB)",
        f"idle memory: edge {edge['rss_kib'] / 1024:.1f} MiB idle with 2 connections "
        f"= {edge['ratio_to_baseline']:.2f}x a bare reactor (target <= {TARGET_EDGE_MIB:g} MiB)",
    ]
    return {
        "params": {
            "tunnels": args.tunnels,
            "transport": "tls",
            "settle_s": args.settle,
            "edge_idle_s": args.edge_idle,
            "quick": args.quick,
            "unit": "VmRSS from /proc/PID/status, KiB unless stated",
        },
        "gateway": gateway,
        "edge": edge,
        "table": table,
        "summary": summary,
        "notes": [],
    }


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print()
    print(result["table"])
    path = write_result("idle_memory", result)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
