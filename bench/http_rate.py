"""Small request/response rate and latency through a Kokoa HTTP resource, against nginx
reached directly and through ``ssh -R``.

nginx (one worker, keep-alive, no access log) serves a 100-byte static file; ``wrk -t1
-c50 --latency -H "Host: app.bench"`` hammers it over 50 keep-alive connections:

- directly;
- through the gateway's HTTP front: an HTTP resource (hostname app.bench, made through the
  admin API) whose target is nginx next to an edge (tls transport, 2 tunnel connections).
  The front parses each request, routes it by its Host header and forwards it over a pooled
  upstream connection (a tunnel stream);
- through a TCP resource of the same gateway and edge (context: the same tunnel without the
  HTTP layer; ``--no-tcp`` skips it);
- through ``ssh -R``.

Every path gets the same Host header. Reported: requests per second, the ratios to direct and
to ssh -R, p50/p99 latency, and the CPU of the tunnel's processes. Before the load, the body
that comes back through the front is checked byte for byte; after it, the gateway's log is
scanned for errors. Targets from the issue: p99 <= 10 ms and a rate >= 1.5x ssh -R.

Also recorded per run: the CPU of the gateway and of the edge apart, how many requests made the
front open a new upstream stream (from the gateway's status API), and the CPU that processes
the benchmark did not start used meanwhile ("others": >= 10% of a core marks a disturbed run).

    .venv/bin/python bench/http_rate.py          # 10 s per run, 3 runs per path
    .venv/bin/python bench/http_rate.py --quick  # 3 s, 1 run (a smoke test)
    .venv/bin/python bench/http_rate.py --front-setting pool_max_idle=64 --profile 10  # diagnostics

Writes bench/results/http_rate.json.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    LOOPBACK,
    PYTHON,
    RESULTS_DIR,
    SMALL_BODY,
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
    ratio,
    run_wrk,
    skip,
    ssh_missing,
    start_nginx,
    temp_dir,
    tree_cpu,
    wait_for,
    write_result,
)

DIRECT, HTTP, TCP, SSH = "direct", "kokoa http", "kokoa tcp", "ssh -R"
HOSTNAME = "app.bench"
TARGET_P99_MS = 10.0
TARGET_X_SSH = 1.5
#: Other processes using more than this (% of a core) during a run mark it as disturbed.
DISTURBED_PCT = 10.0


# ----------------------------------------------------------------------------- settings and checks


def add_front_setting_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--front-setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an [http_front] setting for the gateway, e.g. pool_max_idle=64 (a diagnostic; repeatable;"
        " the published figures use the defaults)",
    )


def check_front_settings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for setting in args.front_setting:
        if not re.fullmatch(r"[a-z_]+=[\w.\"]+", setting):
            parser.error(f"--front-setting takes KEY=VALUE (a TOML value), not {setting!r}")


def apply_front_settings(kokoa: Kokoa, settings: list[str]) -> None:
    """Put ``--front-setting`` values into the gateway's config, as its [http_front] table."""
    if settings:
        kokoa.extra_config = ["[http_front]", *(s.replace("=", " = ", 1) for s in settings)]


def fetch(port: int, path: str, host: str = HOSTNAME, count: int = 1) -> list[tuple[int, bytes]]:
    """``count`` GETs on one keep-alive connection: (status, body) of each."""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    try:
        answers = []
        for _ in range(count):
            connection.request("GET", path, headers={"Host": host})
            response = connection.getresponse()
            answers.append((response.status, response.read()))
        return answers
    finally:
        connection.close()


def check_front(port: int, logs: list[Path]) -> None:
    """Wait until the HTTP resource answers 200 (the front reloads its routes after the API
    write), then check three answers on one connection byte for byte."""

    def routed() -> bool:
        try:
            return fetch(port, "/small.txt")[0][0] == 200
        except OSError:
            return False

    try:
        wait_for(routed, f"the HTTP resource {HOSTNAME} to answer 200", WAIT, logs)
    except BenchError:
        try:
            status, body = fetch(port, "/small.txt")[0]
            seen = f"last answer: {status} {body[:300]!r}"
        except OSError as e:
            seen = f"last attempt: {e}"
        raise BenchError(f"the HTTP front never answered 200 for {HOSTNAME}/small.txt ({seen})") from None
    for n, (status, body) in enumerate(fetch(port, "/small.txt", count=3), 1):
        if status != 200 or body != SMALL_BODY:
            raise BenchError(
                f"wrong answer #{n} through the HTTP front: {status}, {len(body)} bytes {body[:200]!r}"
            )


def front_stats(kokoa: Kokoa) -> dict | None:
    """The HTTP front's counters from the gateway's status (None when the status has none)."""
    try:
        return kokoa.status().get("http")
    except (OSError, ValueError):
        return None


def front_delta(before: dict | None, after: dict | None) -> dict | None:
    """Requests and new upstream streams during a run: how often the pool had to open a stream."""
    keys = ("requests", "upstream_streams_opened")
    if not before or not after or not all(isinstance(before.get(k), int) for k in keys):
        return None
    requests = after["requests"] - before["requests"]
    opened = after["upstream_streams_opened"] - before["upstream_streams_opened"]
    return {
        "requests": requests,
        "upstream_streams_opened": opened,
        "new_stream_share": opened / max(requests, 1),
    }


_LOG_PROBLEMS = re.compile(r"Traceback|Unhandled|#error\]|#warn\]|#critical\]")


def log_problems(path: Path | None, limit: int = 20) -> list[str]:
    """Lines of a twistd log that look like trouble (tracebacks, errors, warnings)."""
    if path is None or not path.exists():
        return []
    found = [line for line in path.read_text(errors="replace").splitlines() if _LOG_PROBLEMS.search(line)]
    if len(found) > limit:
        found = [*found[:limit], f"... and {len(found) - limit} more such lines"]
    return found


# ----------------------------------------------------------------------------- the benchmark


@dataclass
class Route:
    """One way to reach nginx, and the processes that carry it (for their CPU use)."""

    name: str
    port: int
    cpu_pids: list[int] = field(default_factory=list)
    cpu_parents: list[int] = field(default_factory=list)
    labels: dict[int, str] = field(default_factory=dict)  # pid -> name, for a CPU split
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
    parser.add_argument("--no-tcp", action="store_true", help="skip the kokoa tcp (context) row")
    parser.add_argument("--no-ssh", action="store_true", help="skip the ssh -R row")
    add_front_setting_argument(parser)
    parser.add_argument(
        "--profile",
        type=float,
        metavar="SECONDS",
        help="after the runs, profile the gateway and the edge with py-spy (if installed) during one more"
        " wrk run through the HTTP resource; writes bench/results/http_rate_profile_*.txt",
    )
    args = parser.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.repeat = args.repeat or (1 if args.quick else 3)
    if not 1 <= args.duration <= 600 or not 1 <= args.repeat <= 20 or not 1 <= args.connections <= 1000:
        parser.error("--duration must be 1..600 s, --repeat 1..20, --connections 1..1000")
    check_front_settings(parser, args)
    return args


def run(args: argparse.Namespace) -> dict:
    notes: list[str] = []
    args.loadavg_at_start = list(os.getloadavg())  # other work on the machine skews every figure
    wrk = find_tool("wrk")
    missing = None if wrk else "wrk not found (Debian: apt-get install wrk)"
    if not find_tool("nginx"):
        missing = "nginx not found (Debian: apt-get install nginx-light)"
    if missing:
        notes.append(skip("the whole HTTP request-rate benchmark", missing))
        return {"params": vars(args), "results": [], "table": "", "summary": notes, "notes": notes}

    with temp_dir("kokoa-bench-http-rate-") as root, Processes() as procs:
        nginx_port = start_nginx(procs, root)
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
        labels = {kokoa.gateway.pid: "gateway", edge.pid: "edge"}
        paths.append(Route(HTTP, kokoa.http_port, [kokoa.gateway.pid, edge.pid], labels=labels))
        if tcp_port is not None:
            wait_for(lambda: _answers(tcp_port), "the TCP resource to answer", WAIT, logs)
            paths.append(Route(TCP, tcp_port, [kokoa.gateway.pid, edge.pid], labels=labels))

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

        warmup = 1.0 if args.quick else 2.0
        print(f"warming up ({warmup:g} s through each path)...", flush=True)
        for path in paths:
            try:
                run_wrk(wrk, path.port, warmup, args.threads, args.connections, host=HOSTNAME)
            except (BenchError, subprocess.TimeoutExpired) as e:
                path.errors.append(f"warm-up: {e}")

        for round_no in range(args.repeat):
            for path in paths:
                cpu_before = tree_cpu(path.cpu_pids, path.cpu_parents)
                each_before = {pid: tree_cpu([pid]) for pid in path.labels}
                front_before = front_stats(kokoa)
                foreign = ForeignLoad()
                foreign.start()
                try:
                    result = run_wrk(
                        wrk, path.port, args.duration, args.threads, args.connections, host=HOSTNAME
                    )
                except (BenchError, subprocess.TimeoutExpired) as e:
                    path.errors.append(str(e))
                    print(f"  {path.name:10}: FAILED {e}", flush=True)
                    continue
                others = foreign.stop()
                cpu = tree_cpu(path.cpu_pids, path.cpu_parents) - cpu_before
                run_info = vars(result) | {
                    "tunnel_cpu_pct": 100 * cpu / args.duration if path.cpu_pids else None,
                    "cpu_pct_by_process": {
                        path.labels[pid]: 100 * (tree_cpu([pid]) - before) / args.duration
                        for pid, before in each_before.items()
                    },
                    "other_processes_cpu_pct": others,
                }
                if path.name == HTTP:
                    run_info["front"] = front_delta(front_before, front_stats(kokoa))
                path.runs.append(run_info)
                print(
                    f"  round {round_no + 1}/{args.repeat} {path.name:10}"
                    f" {result.requests_per_sec:10.0f} req/s"
                    f"  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms"
                    + "".join(f"  {n} CPU {v:.0f}%" for n, v in run_info["cpu_pct_by_process"].items())
                    + (f"  OTHER PROCESSES {others:.0f}% of a core" if others >= DISTURBED_PCT else "")
                    + (f"  errors: {result.error_detail}" if result.errors else ""),
                    flush=True,
                )
        if args.profile:
            profile_path(wrk, args, kokoa.http_port, {"gateway": kokoa.gateway.pid, "edge": edge.pid}, notes)
        # The front must still answer correctly after the load.
        try:
            check_front(kokoa.http_port, logs)
            after = "ok"
        except (BenchError, OSError) as e:
            after = f"FAILED: {e}"
        gateway_log = log_problems(kokoa.gateway.log)
    if after != "ok":
        notes.append(f"check of the HTTP front after the load: {after}")
    if gateway_log:
        notes.append("the gateway's log has errors or warnings:\n    " + "\n    ".join(gateway_log))
    return summarize(args, paths, notes, after, gateway_log)


def profile_path(
    wrk: str, args: argparse.Namespace, port: int, pids: dict[str, int], notes: list[str]
) -> None:
    """py-spy on the tunnel's processes during one wrk run; the top functions by own time."""
    py_spy = find_tool("py-spy", str(Path(PYTHON).parent))
    if not py_spy:
        notes.append(skip("the profile", "py-spy not found (pip install py-spy)"))
        return
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    outputs = {name: RESULTS_DIR / f"http_rate_profile_{name}.txt" for name in pids}
    spies = []
    for name, pid in pids.items():
        argv = [py_spy, "record", "--format", "raw", "--rate", "250", "--nonblocking", "--pid", str(pid)]
        argv += ["--duration", f"{args.profile:g}", "--output", str(outputs[name])]
        spies.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    result = run_wrk(wrk, port, args.profile, args.threads, args.connections, host=HOSTNAME)
    for spy in spies:
        spy.wait(timeout=args.profile + 60)
    print(f"\nprofile during {result.requests_per_sec:,.0f} req/s through {HTTP} (py-spy, own time):")
    for name, output in outputs.items():
        if output.exists():
            print(f"  {name} (collapsed stacks in {output}):")
            for share, function in top_functions(output, 12):
                print(f"    {share:5.1f}%  {function}")


def top_functions(collapsed: Path, count: int) -> list[tuple[float, str]]:
    """The functions with the most samples at the top of the stack (own time), in % of samples."""
    own: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        own[leaf] = own.get(leaf, 0) + int(samples)
        total += int(samples)
    ranked = sorted(own.items(), key=lambda item: -item[1])[:count]
    return [(100 * n / total, function) for function, n in ranked] if total else []


def _answers(port: int) -> bool:
    try:
        return fetch(port, "/small.txt")[0] == (200, SMALL_BODY)
    except OSError:
        return False


def summarize(
    args: argparse.Namespace, paths: list[Route], notes: list[str], after: str, gateway_log: list[str]
) -> dict:
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
            "ratio_to_kokoa_tcp": ratio(rate, med(TCP, "requests_per_sec")) if TCP in by_name else None,
            "p50_ms": med(path.name, "p50_ms"),
            "p99_ms": p99,
            "tunnel_cpu_pct": med(path.name, "tunnel_cpu_pct"),
            "other_processes_cpu_pct_max": max(
                (r["other_processes_cpu_pct"] for r in path.runs), default=None
            ),
            "cpu_pct_by_process": {
                name: median([r["cpu_pct_by_process"][name] for r in path.runs])
                for name in (path.runs[0]["cpu_pct_by_process"] if path.runs else {})
            },
            "errors": sum(r["errors"] for r in path.runs),
            "runs": path.runs,
            "failures": path.errors,
        }
        if path.name == HTTP:
            entry["target_p99_met"] = None if p99 is None else p99 <= TARGET_P99_MS
            entry["target_x_ssh_met"] = None if x_ssh is None else x_ssh >= TARGET_X_SSH
            line = f"HTTP request rate {path.name}: {fmt(rate, 0)} req/s"
            line += f" = {fmt(entry['ratio_to_direct'], 2)}x direct"
            if SSH in by_name:
                line += f", {fmt(x_ssh, 2)}x ssh -R (target >= {TARGET_X_SSH:g}x"
                line += f": {'met' if entry['target_x_ssh_met'] else 'NOT met'})"
            line += f"; p50 {fmt(entry['p50_ms'], 2)} ms, p99 {fmt(p99, 2)} ms"
            line += f" (target <= {TARGET_P99_MS:g} ms: {'met' if entry['target_p99_met'] else 'NOT met'})"
            if entry["errors"]:
                line += f"; {entry['errors']} wrk errors"
            shares = [r["front"]["new_stream_share"] for r in path.runs if r.get("front")]
            if shares:
                entry["new_upstream_stream_share"] = median(shares)
                line += f"; a new upstream stream for {100 * median(shares):.0f}% of the requests"
            summary.append(line)
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
                entry["other_processes_cpu_pct_max"],
                entry["errors"],
            ]
        )
    headers = [
        "path",
        "req/s",
        "x direct",
        "x ssh -R",
        "p50 ms",
        "p99 ms",
        "tunnel CPU %",
        "others CPU %",
        "errors",
    ]
    return {
        "params": {
            "duration_s": args.duration,
            "repeat": args.repeat,
            "connections": args.connections,
            "wrk_threads": args.threads,
            "body_bytes": len(SMALL_BODY),
            "host_header": HOSTNAME,
            "transport": "tls",
            "edge_connections": 2,
            "front_settings": args.front_setting,
            "loadavg_at_start": args.loadavg_at_start,
            "quick": args.quick,
            "targets": {"p99_ms_max": TARGET_P99_MS, "rate_x_ssh_min": TARGET_X_SSH},
            "unit": "medians over the repeats of wrk's Requests/sec and latency percentiles",
        },
        "results": results,
        "check_after_load": after,
        "gateway_log_problems": gateway_log,
        "table": format_table(headers, rows),
        "summary": summary,
        "notes": notes,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"HTTP request rate: wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s --latency"
        f' -H "Host: {HOSTNAME}", {args.repeat} run(s) per path, {len(SMALL_BODY)}-byte static file',
        flush=True,
    )
    result = run(args)
    if result["table"]:
        print()
        print(result["table"])
        print("\nCPU % is the tunnel's own processes (gateway + edge, or ssh + sshd) as % of one core;")
        print(f"others CPU %: the most that other processes used during one run (>= {DISTURBED_PCT:g}%: a")
        print("disturbed run, not for publication).")
        print(f"Targets for {HTTP}: p99 <= {TARGET_P99_MS:g} ms, rate >= {TARGET_X_SSH:g}x ssh -R.")
        for line in result["summary"]:
            print(line)
        for note in result["notes"]:
            print(note)
    path = write_result("http_rate", result)
    print(f"\nwrote {path}")
    failed = any(r["median_requests_per_sec"] is None for r in result["results"])
    return 1 if failed or result.get("check_after_load", "ok") != "ok" else 0


if __name__ == "__main__":
    sys.exit(guarded(main))
