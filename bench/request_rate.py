"""Small request/response rate and latency through a Kokoa TCP resource, against nginx
reached directly and through ``ssh -R``.

nginx (one worker, keep-alive, no access log) serves a ~100-byte static file; ``wrk -t1
-c50 --latency`` hammers it over 50 keep-alive connections, first directly, then through
the Kokoa TCP resource (tls and wss transports), then through ``ssh -R``. Reported: the
requests per second, the ratio to direct and to ssh -R, and the p50/p99 latency.
Targets from the issue: p99 <= 10 ms and a rate >= 2.5x ssh -R.

    .venv/bin/python bench/request_rate.py          # 10 s per run, 3 runs per path
    .venv/bin/python bench/request_rate.py --quick  # 3 s, 1 run (a smoke test)

Writes bench/results/request_rate.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    SMALL_BODY,
    BenchError,
    Kokoa,
    Processes,
    SshTunnel,
    find_tool,
    fmt,
    format_table,
    guarded,
    median,
    ratio,
    run_wrk,
    skip,
    ssh_missing,
    start_nginx,
    temp_dir,
    tree_cpu,
    write_result,
)

DIRECT, SSH = "direct", "ssh -R"
TARGET_P99_MS = 10.0
TARGET_X_SSH = 2.5


# ----------------------------------------------------------------------------- the benchmark


@dataclass
class Route:
    """One way to reach nginx, and the processes that carry it (for their CPU use)."""

    name: str
    port: int
    cpu_pids: list[int] = field(default_factory=list)
    cpu_parents: list[int] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: 3 s runs, 1 per path")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 10, --quick 3)")
    parser.add_argument("--repeat", type=int, help="wrk runs per path; medians reported (default 3)")
    parser.add_argument("--connections", type=int, default=50, help="concurrent connections (50)")
    parser.add_argument(
        "--threads", type=int, default=1, help="wrk threads (1: a 2nd takes CPU from the tunnel)"
    )
    parser.add_argument("--transports", default="tls,wss", help="Kokoa transports (default tls,wss)")
    parser.add_argument("--no-ssh", action="store_true", help="skip the ssh -R column")
    args = parser.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.transports = [t for t in args.transports.split(",") if t]
    if set(args.transports) - {"tls", "wss"}:
        parser.error("--transports takes tls, wss or both")
    if not 1 <= args.duration <= 600 or not 1 <= args.repeat <= 20 or not 1 <= args.connections <= 1000:
        parser.error("--duration must be 1..600 s, --repeat 1..20, --connections 1..1000")
    return args


def run(args: argparse.Namespace) -> dict:
    notes: list[str] = []
    wrk = find_tool("wrk")
    if not wrk:
        notes.append(skip("the whole request-rate benchmark", "wrk not found (Debian: apt-get install wrk)"))
        return {"params": vars(args), "results": [], "table": "", "summary": notes, "notes": notes}
    if not find_tool("nginx"):
        why = "nginx not found (Debian: apt-get install nginx-light)"
        notes.append(skip("the whole request-rate benchmark", why))
        return {"params": vars(args), "results": [], "table": "", "summary": notes, "notes": notes}

    with temp_dir("kokoa-bench-rate-") as root, Processes() as procs:
        nginx_port = start_nginx(procs, root)
        paths = [Route(DIRECT, nginx_port)]

        kokoa = Kokoa(procs, root)
        ports = {}
        for transport in args.transports:
            kokoa.add_site(f"bench-{transport}")
            ports[transport] = kokoa.add_tcp_resource(f"nginx-{transport}", f"bench-{transport}", nginx_port)
        kokoa.start_gateway()
        assert kokoa.gateway is not None
        for transport in args.transports:
            edge = kokoa.start_edge(f"bench-{transport}", transport)
            kokoa.wait_tunnels(f"bench-{transport}", 2)
            paths.append(Route(f"kokoa {transport}", ports[transport], [kokoa.gateway.pid, edge.pid]))

        ssh_note = "disabled with --no-ssh" if args.no_ssh else ssh_missing()
        if ssh_note:
            notes.append(skip("the ssh -R column", ssh_note))
        else:
            ssh = SshTunnel(procs, root)
            try:
                forwarded = ssh.start([nginx_port])
            except (BenchError, OSError, subprocess.CalledProcessError) as e:
                notes.append(skip("the ssh -R column", f"could not start sshd / ssh -R: {e}"))
            else:
                assert ssh.client is not None and ssh.sshd is not None
                paths.append(Route(SSH, forwarded[nginx_port], [ssh.client.pid], [ssh.sshd.pid]))

        warmup = 1.0 if args.quick else 2.0
        print(f"warming up ({warmup:g} s through each path)...", flush=True)
        for path in paths:
            try:
                run_wrk(wrk, path.port, warmup, args.threads, args.connections)
            except (BenchError, subprocess.TimeoutExpired) as e:
                path.errors.append(f"warm-up: {e}")

        for round_no in range(args.repeat):
            for path in paths:
                cpu_before = tree_cpu(path.cpu_pids, path.cpu_parents)
                try:
                    result = run_wrk(wrk, path.port, args.duration, args.threads, args.connections)
                except (BenchError, subprocess.TimeoutExpired) as e:
                    path.errors.append(str(e))
                    print(f"  {path.name:10}: FAILED {e}", flush=True)
                    continue
                cpu = tree_cpu(path.cpu_pids, path.cpu_parents) - cpu_before
                run_info = vars(result) | {
                    "tunnel_cpu_pct": 100 * cpu / args.duration if path.cpu_pids else None
                }
                path.runs.append(run_info)
                print(
                    f"  round {round_no + 1}/{args.repeat} {path.name:10}"
                    f" {result.requests_per_sec:10.0f} req/s"
                    f"  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms"
                    + (f"  errors: {result.error_detail}" if result.errors else ""),
                    flush=True,
                )
    return summarize(args, paths, notes)


def summarize(args: argparse.Namespace, paths: list[Route], notes: list[str]) -> dict:
    by_name = {p.name: p for p in paths}

    def med(name: str, key: str) -> float | None:
        path = by_name.get(name)
        return median([r[key] for r in path.runs if r[key] is not None]) if path else None

    rows, results, summary = [], [], []
    for path in paths:
        rate = med(path.name, "requests_per_sec")
        x_ssh = ratio(rate, med(SSH, "requests_per_sec")) if SSH in by_name else None
        p99 = med(path.name, "p99_ms")
        entry = {
            "path": path.name,
            "median_requests_per_sec": rate,
            "ratio_to_direct": ratio(rate, med(DIRECT, "requests_per_sec")),
            "ratio_to_ssh": x_ssh,
            "p50_ms": med(path.name, "p50_ms"),
            "p99_ms": p99,
            "tunnel_cpu_pct": med(path.name, "tunnel_cpu_pct"),
            "errors": sum(r["errors"] for r in path.runs),
            "runs": path.runs,
            "failures": path.errors,
        }
        if path.name.startswith("kokoa"):
            entry["target_p99_met"] = None if p99 is None else p99 <= TARGET_P99_MS
            entry["target_x_ssh_met"] = None if x_ssh is None else x_ssh >= TARGET_X_SSH
            line = f"request rate {path.name}: {fmt(rate, 0)} req/s"
            line += f" = {fmt(entry['ratio_to_direct'], 2)}x direct"
            if SSH in by_name:
                line += f", {fmt(x_ssh, 2)}x ssh -R (target >= {TARGET_X_SSH:g}x)"
            line += f"; p50 {fmt(entry['p50_ms'], 2)} ms, p99 {fmt(p99, 2)} ms"
            summary.append(line + f" (target <= {TARGET_P99_MS:g} ms)")
        results.append(entry)
        rows.append(
            [
                path.name,
                rate,
                entry["ratio_to_direct"],
                x_ssh,
                entry["p50_ms"],
                p99,
                entry["tunnel_cpu_pct"],
                entry["errors"],
            ]
        )
    headers = ["path", "req/s", "x direct", "x ssh -R", "p50 ms", "p99 ms", "tunnel CPU %", "errors"]
    return {
        "params": {
            "duration_s": args.duration,
            "repeat": args.repeat,
            "connections": args.connections,
            "wrk_threads": args.threads,
            "body_bytes": len(SMALL_BODY),
            "quick": args.quick,
            "transports": args.transports,
            "targets": {"p99_ms_max": TARGET_P99_MS, "rate_x_ssh_min": TARGET_X_SSH},
            "unit": "medians over the repeats of wrk's Requests/sec and latency percentiles",
        },
        "results": results,
        "table": format_table(headers, rows),
        "summary": summary,
        "notes": notes,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"request rate: wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s --latency, "
        f"{args.repeat} run(s) per path, {len(SMALL_BODY)}-byte static file from nginx",
        flush=True,
    )
    result = run(args)
    if result["table"]:
        print()
        print(result["table"])
        print("\nCPU % is the tunnel's own processes (gateway + edge, or ssh + sshd) as % of one core.")
        print(f"Targets: p99 <= {TARGET_P99_MS:g} ms, rate >= {TARGET_X_SSH:g}x ssh -R.")
        for note in result["notes"]:
            print(note)
    path = write_result("request_rate", result)
    print(f"\nwrote {path}")
    failed = any(r["median_requests_per_sec"] is None for r in result["results"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(guarded(main))
