"""Time from an admin API write to a routable resource, on SQLite and on PostgreSQL.

For each of N changes (default 100): POST a TCP resource and its target to the gateway's admin
API, then measure until the new public port accepts a connection (polled every 0.5 ms). The
baseline, measured in the same run, is the API call alone (the time the write takes to be
acknowledged): the ratio says how much of the delay is propagation to the data plane.

    .venv/bin/python bench/config_latency.py            # 100 changes per database
    .venv/bin/python bench/config_latency.py --quick    # 10

Writes bench/results/config_latency.json.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    LOOPBACK,
    BenchError,
    Kokoa,
    Processes,
    format_table,
    free_port,
    guarded,
    skip,
    temp_dir,
    write_result,
)

POSTGRES = os.environ.get("KOKOA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def accepts(port: int) -> bool:
    try:
        socket.create_connection((LOOPBACK, port), timeout=1).close()
        return True
    except OSError:
        return False


def measure(kokoa: Kokoa, changes: int) -> tuple[list[float], list[float]]:
    """(API call times, write-to-routable times) in milliseconds."""
    org = kokoa.api("GET", "/orgs")["items"][0]["id"]
    site = kokoa.api("POST", f"/orgs/{org}/sites", {"name": "bench"})["site"]["id"]
    api_ms, routable_ms = [], []
    for n in range(changes):
        port = free_port()
        start = time.perf_counter()
        resource = kokoa.api(
            "POST", f"/orgs/{org}/resources", {"name": f"r{n}", "kind": "tcp", "public_port": port}
        )
        kokoa.api(
            "POST",
            f"/orgs/{org}/resources/{resource['id']}/targets",
            {"site_id": site, "host": LOOPBACK, "port": 9},
        )
        written = time.perf_counter()
        deadline = written + 10
        while not accepts(port):
            if time.perf_counter() > deadline:
                raise BenchError(f"resource on port {port} not routable after 10 s")
            time.sleep(0.0005)
        done = time.perf_counter()
        api_ms.append((written - start) * 1000)
        routable_ms.append((done - start) * 1000)
    return api_ms, routable_ms


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def postgres_database() -> tuple[str | None, str | None]:
    """A fresh database on the test server, or why there is none."""
    try:
        import psycopg

        admin = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3)
    except Exception as e:  # any reason the server is unusable
        return None, str(e)
    name = "kokoa_bench_" + secrets.token_hex(4)
    admin.execute(f"CREATE DATABASE {name}")
    admin.close()
    return POSTGRES.rsplit("/", 1)[0] + "/" + name, None


def drop_database(url: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 changes per database")
    parser.add_argument("--changes", type=int, default=None, help="changes per database (default 100)")
    args = parser.parse_args()
    changes = args.changes or (10 if args.quick else 100)
    rows, result = [], {"changes": changes, "databases": {}}
    for backend in ("sqlite", "postgresql"):
        database = None
        if backend == "postgresql":
            database, why = postgres_database()
            if database is None:
                skip("PostgreSQL", why)
                continue
        try:
            with Processes() as procs, temp_dir("kokoa-config-latency") as root:
                kokoa = Kokoa(procs, root)
                kokoa.database = database
                kokoa.start_gateway()
                api_ms, routable_ms = measure(kokoa, changes)
        finally:
            if database:
                drop_database(database)
        stats = {
            "api_p50_ms": statistics.median(api_ms),
            "api_p99_ms": percentile(api_ms, 99),
            "routable_p50_ms": statistics.median(routable_ms),
            "routable_p99_ms": percentile(routable_ms, 99),
        }
        result["databases"][backend] = stats
        rows.append(
            [
                backend,
                f"{stats['api_p50_ms']:.1f}",
                f"{stats['api_p99_ms']:.1f}",
                f"{stats['routable_p50_ms']:.1f}",
                f"{stats['routable_p99_ms']:.1f}",
                f"{stats['routable_p50_ms'] / stats['api_p50_ms']:.2f}",
            ]
        )
    print(f"\nAPI write to routable TCP resource, {changes} changes per database")
    print(
        format_table(["database", "API p50 ms", "API p99 ms", "routable p50", "routable p99", "x API"], rows)
    )
    print("Target: within 100 ms (issue 3).")
    print(f"\nwrote {write_result('config_latency', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
