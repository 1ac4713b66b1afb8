"""Bulk throughput of a Kokoa TCP resource (tls and wss transports) against a direct
loopback connection and against ``ssh -R``.

One stream at a time. *Upload*: the client sends N MiB in 256 KiB ``sendall`` blocks
through the tunnel to a sink that reads and discards, half-closes, and the clock stops
when the sink has confirmed the byte count and closed. *Download*: the target sends N MiB,
the client reads until EOF. Sender, receiver and sink are separate processes
(``_workers.py``), so nothing shares a GIL with the orchestrator.

    .venv/bin/python bench/throughput.py            # 1 GiB x 3 repeats per cell
    .venv/bin/python bench/throughput.py --quick    # 128 MiB x 1 (a smoke test)

Writes bench/results/throughput.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    PYTHON,
    WORKERS,
    BenchError,
    Kokoa,
    Processes,
    SshTunnel,
    format_table,
    guarded,
    median,
    ratio,
    skip,
    ssh_missing,
    temp_dir,
    tree_cpu,
    write_result,
)

MiB = 1 << 20
DIRECTIONS = {"up": "upload (client -> target)", "down": "download (target -> client)"}
DIRECT, SSH = "direct", "ssh -R"


@dataclass
class Variant:
    """One way to reach the sink and the source: directly, through Kokoa, or through ssh -R."""

    name: str
    ports: dict[str, int]  # direction -> port the client connects to
    cpu_pids: list[int] = field(default_factory=list)  # the tunnel's own processes
    cpu_parent: int | None = None  # count this process's descendants too (sshd's sessions)
    samples: dict[str, list[dict]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def tunnel_cpu(self) -> float:
        return tree_cpu(self.cpu_pids, [self.cpu_parent] if self.cpu_parent is not None else [])


def transfer(port: int, direction: str, size: int) -> dict:
    """One measured transfer in a fresh worker process; returns bytes and seconds."""
    timeout = max(60.0, size / 2e6)  # even at 2 MB/s it finishes; anything slower is broken
    command = "send" if direction == "up" else "recv"
    argv = [PYTHON, str(WORKERS), command, "--port", str(port), "--size", str(size)]
    argv += ["--timeout", str(timeout)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 30)
    if done.returncode != 0:
        raise BenchError(f"{command} failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)


def measure(variant: Variant, direction: str, size: int) -> dict:
    cpu_before = variant.tunnel_cpu()
    result = transfer(variant.ports[direction], direction, size)
    cpu = variant.tunnel_cpu() - cpu_before
    return {
        "mbps": result["bytes"] / result["seconds"] / 1e6,
        "seconds": result["seconds"],
        "tunnel_cpu_pct": 100 * cpu / result["seconds"] if variant.cpu_pids or variant.cpu_parent else None,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: 128 MiB, 1 repeat")
    parser.add_argument("--size", type=int, help="MiB per transfer (default 1024, --quick 128)")
    parser.add_argument("--repeat", type=int, help="transfers per cell; the median is reported (default 3)")
    parser.add_argument("--transports", default="tls,wss", help="Kokoa transports (default tls,wss)")
    parser.add_argument("--directions", default="up,down", help="up, down or both (default up,down)")
    parser.add_argument("--no-ssh", action="store_true", help="skip the ssh -R column")
    args = parser.parse_args(argv)
    args.size = args.size or (128 if args.quick else 1024)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.transports = [t for t in args.transports.split(",") if t]
    if set(args.transports) - {"tls", "wss"}:
        parser.error("--transports takes tls, wss or both")
    args.directions = [d for d in args.directions.split(",") if d]
    for d in args.directions:
        if d not in DIRECTIONS:
            parser.error(f"unknown direction {d!r}")
    if not 1 <= args.size <= 64 * 1024 or not 1 <= args.repeat <= 50:
        parser.error("--size must be 1..65536 MiB and --repeat 1..50")
    return args


def run(args: argparse.Namespace) -> dict:
    size = args.size * MiB
    notes: list[str] = []
    with temp_dir("kokoa-bench-throughput-") as root, Processes() as procs:
        server = procs.start(
            "sink/source",
            [PYTHON, str(WORKERS), "serve", "--size", str(size), "--lifetime", "7200"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            log=root / "workers.log",
        )
        assert server.popen.stdout is not None
        ports = json.loads(server.popen.stdout.readline())
        targets = {"up": ports["sink"], "down": ports["source"]}
        variants = [Variant(DIRECT, dict(targets))]

        kokoa = Kokoa(procs, root)
        resource_ports: dict[str, dict[str, int]] = {}
        for transport in args.transports:
            site = f"bench-{transport}"
            kokoa.add_site(site)
            resource_ports[transport] = {
                d: kokoa.add_tcp_resource(f"{d}-{transport}", site, port) for d, port in targets.items()
            }
        kokoa.start_gateway()
        assert kokoa.gateway is not None
        for transport in args.transports:
            edge = kokoa.start_edge(f"bench-{transport}", transport)
            kokoa.wait_tunnels(f"bench-{transport}", 2)
            variants.append(
                Variant(f"kokoa {transport}", resource_ports[transport], [kokoa.gateway.pid, edge.pid])
            )

        ssh_note = "disabled with --no-ssh" if args.no_ssh else ssh_missing()
        if ssh_note:
            notes.append(skip("the ssh -R column", ssh_note))
        else:
            ssh = SshTunnel(procs, root)
            try:
                forwarded = ssh.start([targets["up"], targets["down"]])
            except (BenchError, OSError, subprocess.CalledProcessError) as e:
                notes.append(skip("the ssh -R column", f"could not start sshd / ssh -R: {e}"))
            else:
                assert ssh.client is not None and ssh.sshd is not None
                variants.append(
                    Variant(
                        SSH,
                        {d: forwarded[p] for d, p in targets.items()},
                        [ssh.client.pid],
                        cpu_parent=ssh.sshd.pid,
                    )
                )

        warmup = min(size, 16 * MiB)
        print(f"warming up ({warmup // MiB} MiB through each path)...", flush=True)
        for variant in variants:
            for direction in args.directions:
                try:
                    transfer(variant.ports[direction], direction, warmup)
                except (BenchError, subprocess.TimeoutExpired) as e:
                    variant.errors.append(f"warm-up {direction}: {e}")

        # Rounds interleave the paths, so a burst of other load on the machine spreads over all.
        for round_no in range(args.repeat):
            for variant in variants:
                for direction in args.directions:
                    try:
                        sample = measure(variant, direction, size)
                    except (BenchError, subprocess.TimeoutExpired, ValueError) as e:
                        variant.errors.append(f"{direction}: {e}")
                        print(f"  {variant.name:10} {direction:4}: FAILED {e}", flush=True)
                        continue
                    variant.samples.setdefault(direction, []).append(sample)
                    cpu = sample["tunnel_cpu_pct"]
                    print(
                        f"  round {round_no + 1}/{args.repeat} {variant.name:10} {direction:4} "
                        f"{sample['mbps']:9.1f} MB/s"
                        + (f"  (tunnel CPU {cpu:.0f}%)" if cpu is not None else ""),
                        flush=True,
                    )
        server.popen.stdin.close()  # type: ignore[union-attr]
    return summarize(args, variants, notes)


def summarize(args: argparse.Namespace, variants: list[Variant], notes: list[str]) -> dict:
    by_name = {v.name: v for v in variants}

    def med(name: str, direction: str, key: str = "mbps") -> float | None:
        v = by_name.get(name)
        values = [s[key] for s in v.samples.get(direction, []) if s[key] is not None] if v else []
        return median(values)

    rows, results = [], []
    for direction in args.directions:
        for v in variants:
            mbps = med(v.name, direction)
            samples = [s["mbps"] for s in v.samples.get(direction, [])]
            entry = {
                "path": v.name,
                "direction": direction,
                "median_mbps": mbps,
                "samples_mbps": [round(x, 1) for x in samples],
                "ratio_to_direct": ratio(mbps, med(DIRECT, direction)),
                "ratio_to_ssh": ratio(mbps, med(SSH, direction)) if SSH in by_name else None,
                "tunnel_cpu_pct": med(v.name, direction, "tunnel_cpu_pct"),
                "errors": v.errors,
            }
            results.append(entry)
            rows.append(
                [
                    v.name,
                    direction,
                    mbps,
                    min(samples) if samples else None,
                    max(samples) if samples else None,
                    entry["ratio_to_direct"],
                    entry["ratio_to_ssh"],
                    entry["tunnel_cpu_pct"],
                ]
            )
    headers = ["path", "dir", "median MB/s", "min", "max", "x direct", "x ssh -R", "tunnel CPU %"]
    table = format_table(headers, rows)
    summary = []
    for direction in args.directions:
        for transport in args.transports:
            name = f"kokoa {transport}"
            line = f"throughput {direction:4} {name}: {_fmt(med(name, direction))} MB/s"
            line += f" = {_fmt(ratio(med(name, direction), med(DIRECT, direction)), 2)}x direct"
            if SSH in by_name:
                line += f", {_fmt(ratio(med(name, direction), med(SSH, direction)), 2)}x ssh -R"
            summary.append(line)
    return {
        "params": {
            "size_mib": args.size,
            "repeat": args.repeat,
            "block_kib": 256,
            "quick": args.quick,
            "transports": args.transports,
            "directions": {d: DIRECTIONS[d] for d in args.directions},
            "unit": "MB/s = 10^6 bytes per second, median of the repeats",
        },
        "results": results,
        "table": table,
        "summary": summary,
        "notes": notes,
    }


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"throughput: {args.size} MiB per transfer, {args.repeat} repeat(s), one stream, "
        f"directions: {', '.join(DIRECTIONS[d] for d in args.directions)}",
        flush=True,
    )
    result = run(args)
    print()
    print(result["table"])
    print("\nCPU % is the tunnel's own processes (gateway + edge, or ssh + sshd) as % of one core.")
    for note in result["notes"]:
        print(note)
    path = write_result("throughput", result)
    print(f"\nwrote {path}")
    failed = any(r["median_mbps"] is None for r in result["results"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(guarded(main))
