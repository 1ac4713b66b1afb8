"""Run every Kokoa benchmark and print one combined summary.

    .venv/bin/python bench/run_all.py            # the full runs (make bench); a quiet machine, please
    .venv/bin/python bench/run_all.py --quick    # smoke versions of each, a couple of minutes

Each benchmark runs as its own process (a failure in one does not stop the others) and
writes bench/results/<name>.json; this script adds bench/results/summary.json with the
machine (nproc, CPU model, kernel, Python) and the date.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_DIR, PYTHON, RESULTS_DIR, machine_info

BENCHMARKS = [
    "throughput",
    "request_rate",
    "idle_memory",
    "config_latency",
    "http_rate",
    "http_download",
    "http_parsers",
    "http_auth",
    "http_inspector",
]
#: Upper bound for one benchmark process, seconds.
TIMEOUT = 3 * 3600


def run_one(name: str, quick: bool) -> dict:
    """Run bench/<name>.py (output passes through); returns its status and its JSON result."""
    result_file = RESULTS_DIR / f"{name}.json"
    started = time.time()
    argv = [PYTHON, str(BENCH_DIR / f"{name}.py"), *(["--quick"] if quick else [])]
    print(f"\n===== {name}: {' '.join(argv[1:])}", flush=True)
    child = subprocess.Popen(argv)
    try:
        code = child.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        print(f"{name}: timed out after {TIMEOUT} s", flush=True)
        code = _stop(child)
    except KeyboardInterrupt:
        _stop(child)  # SIGTERM: the benchmark stops what it started, then exits
        raise
    result = None
    if result_file.exists() and result_file.stat().st_mtime >= started:
        result = json.loads(result_file.read_text())
    return {"name": name, "exit_code": code, "seconds": round(time.time() - started, 1), "result": result}


def _stop(child: subprocess.Popen) -> int:
    """SIGTERM a benchmark (it cleans up on it), SIGKILL if it is still there after 60 s."""
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return child.returncode


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke versions (small sizes, short runs)")
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    args = parser.parse_args(argv)
    names = BENCHMARKS if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")

    signal.signal(signal.SIGTERM, _interrupt)
    machine = machine_info()
    try:
        runs = [run_one(name, args.quick) for name in names]
    except KeyboardInterrupt as e:
        print(f"\ninterrupted ({e or 'Ctrl-C'})", file=sys.stderr)
        return 130

    print("\n" + "=" * 78)
    print("Kokoa benchmarks" + (" (QUICK smoke runs: not for publication)" if args.quick else ""))
    print(
        f"date {machine['date']}  |  {machine['nproc']} CPU(s): {machine['cpu_model']}  |  "
        f"kernel {machine['kernel']}  |  Python {machine['python']}  |  "
        f"load average at start {', '.join(f'{x:.2f}' for x in machine['loadavg_at_start'])}"
    )
    for run in runs:
        result = run["result"]
        status = "ok" if run["exit_code"] == 0 else f"exit code {run['exit_code']}"
        print(f"\n--- {run['name']}: {status}, {run['seconds']:.0f} s")
        if result is None:
            print("    (no result written)")
            continue
        if result.get("table"):
            print(result["table"])
        for line in result.get("notes", []):
            print(line)
    print("\nSummary:")
    for run in runs:
        for line in (run["result"] or {}).get("summary", []) or [f"{run['name']}: no result"]:
            print(f"  {line}")

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    summary_path = RESULTS_DIR / "summary.json"
    summary_path.write_text(
        json.dumps(
            {
                "machine": machine,
                "quick": args.quick,
                "benchmarks": {
                    r["name"]: {
                        "exit_code": r["exit_code"],
                        "seconds": r["seconds"],
                        "summary": (r["result"] or {}).get("summary"),
                    }
                    for r in runs
                },
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {summary_path}")
    return 0 if all(r["exit_code"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
