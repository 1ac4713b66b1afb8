"""The cost of the request inspector: small requests through an HTTP resource while someone watches
it, against the same resource while nobody does, in one run.

One gateway and one edge (tls, 2 tunnel connections), nginx (one worker) serving a 100-byte file
behind a public HTTP resource (the gate decides every request: public, no rule). wrk sends
browser-like requests (``wrk -t1 -c50 --latency``, a User-Agent, Accept, Accept-Language, a Cookie and
a Referer, so the inspector has heads to copy and redact):

- ``closed``: nobody watches the resource (the request path asks the inspector one lookup);
- ``open``: a watcher on that resource, as the console's live view is: ``GET
  /api/v1/orgs/{org}/resources/{resource}/inspect`` (Server-Sent Events) held open by curl on the
  admin API's port, with the inspector's defaults: it notes up to 500 requests a second (a flood is
  sampled), keeps them in its ring (200) and hands the stream a burst of 100 and then 25 entries a
  second;
- ``open-all``: the same, but the inspector notes every request (``max_inspected`` 0): what a
  watched request costs without sampling (context, not the target).

The gateway runs as ``bench/_inspected_gateway.py``, which is ``twistd kokoa`` (the real twistd and
service) plus a signal that turns the sampling off for ``open-all`` and says how many watchers the
gateway has (none between the runs, or the benchmark stops). The states take turns in a rotating order over
several rounds. Reported: requests per second, p50/p99 of each, the gateway's CPU per request
(less sensitive than the rate to other load on the machine), how many entries the stream carried
(against the requests wrk made), and open / closed (target >= 0.95x).

    .venv/bin/python bench/http_inspector.py           # 10 s per run, 5 rounds
    .venv/bin/python bench/http_inspector.py --quick   # 3 s, 1 round

Writes bench/results/http_inspector.json.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BENCH_DIR,
    LOOPBACK,
    PYTHON,
    BenchError,
    ForeignLoad,
    Kokoa,
    Proc,
    Processes,
    cpu_seconds,
    find_tool,
    fmt,
    format_table,
    guarded,
    median,
    ratio,
    run_wrk,
    skip,
    start_nginx,
    temp_dir,
    tree_cpu,
    wait_for,
    write_result,
)

HOSTNAME = "app.bench"
TARGET = 0.95
CLOSED, OPEN, OPEN_ALL = "closed", "open", "open-all"
STATES = (CLOSED, OPEN, OPEN_ALL)
HEADERS = (
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language: en-GB,en;q=0.5",
    "Cookie: theme=dark; _ga=GA1.1.123456789.1700000000; csrftoken=abcdefghijklmnopqrstuvwxyz012345",
    f"Referer: http://{HOSTNAME}/index.html",
)


class InspectedKokoa(Kokoa):
    """The gateway started by ``_inspected_gateway.py`` (twistd kokoa with a sampling switch), and
    watchers of a resource through the admin API's inspector route (``curl -N``, its Server-Sent
    Events to a file)."""

    def __init__(self, procs: Processes, root: Path) -> None:
        super().__init__(procs, root)
        self.control = root / "inspect"
        self.control.write_text("")
        self.watches = 0

    def start_gateway(self, nofile: int | None = None) -> Proc:
        if not (self.data / "admin.key").exists():
            kokoa = str(Path(sys.executable).with_name("kokoa"))
            subprocess.run(
                [kokoa, "-d", str(self.data), "init", "--email", "bench@example.com"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        config = self.write_config()
        log = self.root / "gateway.log"
        runner = str(BENCH_DIR / "_inspected_gateway.py")
        self.gateway = self.procs.start(
            "gateway",
            [PYTHON, runner, "-n", "--pidfile=", "-l", "-", "kokoa", "--config", str(config)],
            log=log,
            env={"KOKOA_BENCH_INSPECT": str(self.control)},
            cwd=self.root,
        )
        wait_for(self._api_ready, "the gateway's status API", logs=[log])
        return self.gateway

    def sampling(self, mode: str) -> int:
        """Set the inspector's sampling ("all": note every request; "": the default); returns how
        many watchers the gateway has."""
        assert self.gateway is not None
        pattern = r"bench inspector: max_inspected=\S+ watchers=(\d+)"
        before = len(re.findall(pattern, self.gateway.log_text()))
        self.control.write_text(mode)
        os.kill(self.gateway.pid, signal.SIGUSR2)
        wait_for(
            lambda: len(re.findall(pattern, self.gateway.log_text())) > before,
            "the gateway to switch its inspector",
            logs=[self.gateway.log],
        )
        return int(re.findall(pattern, self.gateway.log_text())[-1])

    def watch(self, resource_id: str, procs: Processes) -> tuple[Proc, Path]:
        """A console's watch of the resource: ``GET .../inspect`` held open by curl; returns once the
        stream has begun (the gateway has the watcher)."""
        self.watches += 1
        out = self.root / f"inspect-{self.watches}.sse"
        key = (self.data / "admin.key").read_text().strip()
        url = f"http://{LOOPBACK}:{self.api_port}/api/v1/orgs/{self.org_id()}/resources/{resource_id}/inspect"
        with out.open("wb") as sink:
            curl = procs.start(
                "curl (inspector stream)",
                [find_tool("curl") or "curl", "-sN", "-H", f"Authorization: Bearer {key}", url],
                stdout=sink.fileno(),
            )
        wait_for(lambda: out.exists() and b"retry:" in out.read_bytes(), "the inspector stream to begin")
        return curl, out


def events(path: Path) -> int:
    """``request`` events a watcher got."""
    return path.read_bytes().count(b"\nevent: request\n")


def fetch(port: int, path: str = "/small.txt") -> int:
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": HOSTNAME})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def run(args: argparse.Namespace) -> dict:
    wrk = find_tool("wrk")
    if not wrk or not find_tool("nginx"):
        return {
            "skipped": skip("http_inspector", "wrk and nginx are needed (apt-get install wrk nginx-light)")
        }
    with temp_dir("kokoa-bench-http-inspector-") as root, Processes() as procs:
        nginx_port = start_nginx(procs, root)
        kokoa = InspectedKokoa(procs, root)
        kokoa.start_gateway()
        assert kokoa.gateway is not None
        site = kokoa.create_site("bench-inspector")
        resource = kokoa.create_http_resource("app", HOSTNAME, site, nginx_port, public=True)
        edge = kokoa.start_edge(site, "tls")
        kokoa.wait_tunnels(site, 2)

        def ready() -> bool:
            try:
                return fetch(kokoa.http_port) == 200
            except OSError:
                return False

        wait_for(ready, "the resource through the gateway", logs=[kokoa.gateway.log])
        # The watch works: a request while watched comes down the stream, and the watch ends with it.
        curl, stream = kokoa.watch(resource["id"], procs)
        fetch(kokoa.http_port)
        wait_for(lambda: events(stream) == 1, "the request in the inspector stream")
        procs.stop(curl)
        wait_for(lambda: kokoa.sampling("") == 0, "the watch to end with its stream")

        runs: dict[str, list[dict]] = {state: [] for state in STATES}
        pids = [kokoa.gateway.pid, edge.pid]
        load = {"host": HOSTNAME, "headers": HEADERS}
        run_wrk(wrk, kokoa.http_port, 2.0, 1, args.connections, **load)  # warm-up
        for round_no in range(args.repeat):
            order = STATES[round_no % 3 :] + STATES[: round_no % 3]
            for state in order:
                if kokoa.sampling("all" if state == OPEN_ALL else "") != 0:
                    raise BenchError("a watcher is left from the previous run")
                if state != CLOSED:
                    curl, stream = kokoa.watch(resource["id"], procs)
                before = tree_cpu(pids)
                gateway_before = cpu_seconds(kokoa.gateway.pid)
                foreign = ForeignLoad()
                foreign.start()
                result = run_wrk(wrk, kokoa.http_port, args.duration, 1, args.connections, **load)
                others = foreign.stop()
                cpu = 100 * (tree_cpu(pids) - before) / args.duration
                gateway_us = 1e6 * (cpu_seconds(kokoa.gateway.pid) - gateway_before) / max(1, result.requests)
                entries = None
                if state != CLOSED:
                    time.sleep(0.5)  # the last responses' entries
                    procs.stop(curl)
                    entries = events(stream)
                    wait_for(lambda: kokoa.sampling("") == 0, "the watch to end with its stream")
                runs[state].append(
                    vars(result)
                    | {
                        "tunnel_cpu_pct": cpu,
                        "gateway_cpu_us_per_request": gateway_us,
                        "other_processes_cpu_pct": others,
                        "entries": entries,
                    }
                )
                print(
                    f"  round {round_no + 1}/{args.repeat} {state:8} {result.requests_per_sec:7.0f} req/s"
                    f"  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms"
                    f"  gateway {gateway_us:4.0f} us/req  gateway+edge {cpu:.0f}%  others {others:.0f}%"
                    + (f"  entries {entries} of {result.requests}" if entries is not None else "")
                    + (f"  errors: {result.error_detail}" if result.errors else ""),
                    flush=True,
                )
        log = kokoa.gateway.log_text()
        problems = [line for line in log.splitlines() if re.search(r"#(error|critical)\]|Traceback", line)][
            :10
        ]
    summary: dict = {
        state: {
            "rate": median([r["requests_per_sec"] for r in rs]),
            "p50_ms": median([r["p50_ms"] for r in rs]),
            "p99_ms": median([r["p99_ms"] for r in rs]),
            "gateway_us": median([r["gateway_cpu_us_per_request"] for r in rs]),
            "errors": sum(r["errors"] for r in rs),
        }
        for state, rs in runs.items()
    }
    summary["ratio"] = ratio(summary[OPEN]["rate"], summary[CLOSED]["rate"])
    summary["ratio_all"] = ratio(summary[OPEN_ALL]["rate"], summary[CLOSED]["rate"])
    summary["round_ratios"] = [
        ratio(o["requests_per_sec"], c["requests_per_sec"])
        for o, c in zip(runs[OPEN], runs[CLOSED], strict=True)
    ]
    summary["gateway_us_ratio"] = ratio(summary[OPEN]["gateway_us"], summary[CLOSED]["gateway_us"])
    summary["gateway_us_ratio_all"] = ratio(summary[OPEN_ALL]["gateway_us"], summary[CLOSED]["gateway_us"])
    return {"params": vars(args), "headers": list(HEADERS), "runs": runs, "summary": summary, "log": problems}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="3 s, 1 round: a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.repeat = 3.0, 1
    result = run(args)
    if "skipped" in result:
        write_result("http_inspector", result)
        return 0
    s = result["summary"]
    rows = [
        [
            state,
            fmt(s[state]["rate"], 0),
            fmt(s[state]["p50_ms"], 2),
            fmt(s[state]["p99_ms"], 2),
            fmt(s[state]["gateway_us"], 0),
            s[state]["errors"],
        ]
        for state in STATES
    ]
    print()
    print(format_table(["inspector", "req/s", "p50 ms", "p99 ms", "gateway us/req", "errors"], rows))
    rounds = ", ".join(fmt(r, 3) for r in s["round_ratios"])
    print(f"\nopen / closed: {fmt(s['ratio'], 3)}x (target >= {TARGET}x; per round: {rounds})")
    print(f"open-all / closed: {fmt(s['ratio_all'], 3)}x (every request noted: no sampling)")
    print(
        f"gateway CPU per request, open / closed: {fmt(s['gateway_us_ratio'], 3)}x,"
        f" open-all / closed: {fmt(s['gateway_us_ratio_all'], 3)}x"
    )
    if result["log"]:
        print("gateway log problems:\n  " + "\n  ".join(result["log"]))
    write_result("http_inspector", result)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(guarded(main))
