"""The cost of authorization: small requests through a protected HTTP resource with a valid session,
against the same upstream through a public resource, in one run.

One gateway and one edge, nginx (one worker) serving a 100-byte file behind both:

- ``public``: an HTTP resource anyone may reach (``public: true``);
- ``protected``: an HTTP resource that needs a signed-in user with a grant. The user signs in for
  real: a login session is made in the store, a one-time code for the resource's host is
  exchanged at ``/.kokoa/auth/callback`` over HTTPS, and wrk sends the ``__Host-kokoa_session``
  cookie that came back. Every request is then decided by the gate: cookie parsed, session found in
  the gateway's memory, policy decided, identity headers added, the Kokoa cookie removed, the
  decision counted in the access log.

Both over HTTPS (session cookies are Secure), ``wrk -t1 -c50 --latency``, alternated, several
rounds. Reported: requests per second and p50/p99 of each, and protected / public (target >= 0.9x).
Before the load, a request with the cookie must reach nginx (200) and one without it must not (302).

    .venv/bin/python bench/http_auth.py           # 10 s per run, 3 rounds
    .venv/bin/python bench/http_auth.py --quick   # 3 s, 1 round

Writes bench/results/http_auth.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import ssl
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    RESULTS_DIR,
    BenchError,
    ForeignLoad,
    Kokoa,
    Processes,
    find_tool,
    fmt,
    format_table,
    machine_info,
    median,
    ratio,
    run_wrk,
    start_nginx,
    temp_dir,
    tree_cpu,
)

PUBLIC_HOST, PROTECTED_HOST = "open.bench", "app.bench"
PASSWORD = "bench password 1"


def https_get(port: int, host: str, path: str, ca_file: Path, cookie: str | None = None) -> tuple[int, dict]:
    """One GET to the gateway's HTTPS port with ``host`` as SNI and Host; (status, headers)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock = context.wrap_socket(raw, server_hostname=host)
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.sock = sock
    try:
        headers = {"Host": host, "Accept": "text/html"}
        if cookie:
            headers["Cookie"] = cookie
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


def sign_in(kokoa: Kokoa, user_id: str) -> str:
    """A real host session for ``user_id`` on the protected host: a login session and a one-time
    code made in the store, the code exchanged at the gateway. Returns the cookie to send."""
    from kokoa import store as st

    engine, _ = st.open_engine(st.database_url(kokoa.data, None), migrate=False)
    try:
        with engine.begin() as conn:
            from datetime import timedelta

            login, _ = st.create_session(
                conn, method="password", user_id=user_id, lifetime=timedelta(hours=1)
            )
            code = st.create_auth_code(
                conn,
                host=PROTECTED_HOST,
                path="/small.txt",
                method="password",
                parent_id=login.id,
                user_id=user_id,
            )
    finally:
        engine.dispose()
    status, headers = https_get(
        kokoa.https_port, PROTECTED_HOST, f"/.kokoa/auth/callback?code={code}", kokoa.ca_file
    )
    cookie = headers.get("set-cookie", "")
    if status != 302 or not cookie.startswith("__Host-kokoa_session="):
        raise BenchError(f"the code exchange failed: {status} {headers}")
    return cookie.split(";", 1)[0]


def run(args: argparse.Namespace) -> dict:
    wrk = find_tool("wrk")
    if not wrk or not find_tool("nginx"):
        return {"skipped": "wrk and nginx are needed (Debian: apt-get install wrk nginx-light)"}
    with temp_dir("kokoa-bench-http-auth-") as root, Processes() as procs:
        nginx_port = start_nginx(procs, root)
        kokoa = Kokoa(procs, root)
        kokoa.start_gateway()
        assert kokoa.gateway is not None
        site = kokoa.create_site("bench-auth")
        kokoa.create_http_resource("open", PUBLIC_HOST, site, nginx_port, public=True)
        protected = kokoa.create_http_resource("app", PROTECTED_HOST, site, nginx_port, public=False)
        org = kokoa.org_id()
        roles = {r["name"]: r["id"] for r in kokoa.api("GET", f"/orgs/{org}/roles")["items"]}
        user = kokoa.api("POST", "/users", {"email": "reader@example.com", "password": PASSWORD})
        kokoa.api("POST", f"/orgs/{org}/members", {"user_id": user["id"], "role_id": roles["Member"]})
        kokoa.api("POST", f"/orgs/{org}/resources/{protected['id']}/grants", {"role_id": roles["Member"]})
        edge = kokoa.start_edge(site, "tls")
        kokoa.wait_tunnels(site, 2)
        from _common import wait_for

        def ready() -> bool:
            try:
                return https_get(kokoa.https_port, PROTECTED_HOST, "/small.txt", kokoa.ca_file)[0] == 302
            except OSError:
                return False

        wait_for(ready, "the protected resource (and its certificate)")
        cookie = sign_in(kokoa, user["id"])
        status, _ = https_get(kokoa.https_port, PROTECTED_HOST, "/small.txt", kokoa.ca_file, cookie)
        if status != 200:
            raise BenchError(f"with the session cookie the protected resource answered {status}")
        paths = {
            "public": {"host": PUBLIC_HOST, "headers": ()},
            "protected": {"host": PROTECTED_HOST, "headers": (f"Cookie: {cookie}",)},
        }
        runs: dict[str, list[dict]] = {name: [] for name in paths}
        pids = [kokoa.gateway.pid, edge.pid]
        for path in paths.values():  # warm-up
            run_wrk(wrk, kokoa.https_port, 2.0, 1, args.connections, scheme="https", **path)
        for round_no in range(args.repeat):
            for name, path in paths.items():
                before = tree_cpu(pids)
                foreign = ForeignLoad()
                foreign.start()
                result = run_wrk(
                    wrk, kokoa.https_port, args.duration, 1, args.connections, scheme="https", **path
                )
                others = foreign.stop()
                cpu = 100 * (tree_cpu(pids) - before) / args.duration
                runs[name].append(vars(result) | {"tunnel_cpu_pct": cpu, "other_processes_cpu_pct": others})
                print(
                    f"  round {round_no + 1}/{args.repeat} {name:9} {result.requests_per_sec:9.0f} req/s"
                    f"  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  gateway+edge CPU {cpu:.0f}%"
                    + (f"  errors: {result.error_detail}" if result.errors else ""),
                    flush=True,
                )
        status, _ = https_get(kokoa.https_port, PROTECTED_HOST, "/small.txt", kokoa.ca_file)
        if status != 302:
            raise BenchError(f"without the cookie the protected resource answered {status} after the load")
        log = kokoa.gateway.log_text() if hasattr(kokoa.gateway, "log_text") else ""
        problems = [line for line in log.splitlines() if re.search(r"#(error|critical)\]|Traceback", line)][
            :10
        ]
    summary = {
        name: {
            "rate": median([r["requests_per_sec"] for r in rs]),
            "p50_ms": median([r["p50_ms"] for r in rs]),
            "p99_ms": median([r["p99_ms"] for r in rs]),
            "errors": sum(r["errors"] for r in rs),
        }
        for name, rs in runs.items()
    }
    summary["ratio"] = ratio(summary["protected"]["rate"], summary["public"]["rate"])
    return {
        "machine": machine_info(),
        "params": vars(args),
        "runs": runs,
        "summary": summary,
        "log": problems,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="3 s, 1 round: a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.repeat = 3.0, 1
    result = run(args)
    if "skipped" in result:
        print("skipped:", result["skipped"])
        return 0
    s = result["summary"]
    rows = [
        [
            name,
            fmt(s[name]["rate"], 0),
            fmt(s[name]["p50_ms"], 2),
            fmt(s[name]["p99_ms"], 2),
            s[name]["errors"],
        ]
        for name in ("public", "protected")
    ]
    print()
    print(format_table(["resource", "req/s", "p50 ms", "p99 ms", "errors"], rows))
    print(f"\nprotected / public: {fmt(s['ratio'], 2)}x (target >= 0.9x)")
    if result["log"]:
        print("gateway log problems:\n  " + "\n  ".join(result["log"]))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "http_auth.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
