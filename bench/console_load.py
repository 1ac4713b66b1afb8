"""The console's first load: the bytes of JavaScript and CSS a browser fetches to draw the dashboard
(as sent, gzip, and as they are), and the time from navigation to the dashboard drawn with the
organization's numbers, in Debian's Chromium on loopback against a real gateway, edge and upstream
(the browser tests' deployment). Several runs, each in a fresh browser profile (nothing cached); the
median is printed, with the repeat visit (a reload: 304s) for comparison.

    .venv/bin/python bench/console_load.py [--runs 7]

Prints a table and writes bench/results/console_load.json. It asserts nothing.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import socket
import ssl
import statistics
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from e2e.test_identity_e2e import PASSWORD, IdentityDeployment  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
RESULTS = BENCH_DIR / "results" / "console_load.json"
#: Set in the page before any of its scripts run (an init script is not subject to the page's CSP):
#: the time, from the navigation's start, at which the dashboard shows its numbers.
DRAWN = """
new MutationObserver((_, observer) => {
  if (document.querySelector(".stats .stat .value")) {
    window.__kokoaDrawn = performance.now();
    observer.disconnect();
  }
}).observe(document, { childList: true, subtree: true });
"""

#: When, from the navigation's start, the shell, the last script or stylesheet and GET /me arrived.
PHASES = """() => {
  const entries = performance.getEntriesByType("resource");
  const last = (test) => Math.max(0, ...entries.filter((e) => test(e.name)).map((e) => e.responseEnd));
  return {
    shell_ms: performance.getEntriesByType("navigation")[0].responseEnd,
    files_ms: last((name) => name.includes("/static/")),
    me_ms: last((name) => name.endsWith("/api/v1/me")),
  };
}"""


def pin(port: int, host: str, ca_file: Path) -> str:
    context = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    key = x509.load_der_x509_certificate(der).public_key()
    return base64.b64encode(
        hashlib.sha256(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).digest()
    ).decode()


def load_once(browser, d: IdentityDeployment, state: dict) -> dict:
    """One cold load of the console in a fresh profile signed in (cookies only), then a reload."""
    context = browser.new_context(storage_state=state)
    context.add_init_script(DRAWN)
    sent: dict[str, dict] = {}

    cold_load = True

    def seen(response) -> None:
        url = response.url
        if not cold_load or "/static/" not in url or not url.endswith((".js", ".css")):
            return  # (the reload's answers are 304s, without a body)
        headers = response.all_headers()
        body = response.body()
        sent[url.split("/static/", 1)[1]] = {
            "encoding": headers.get("content-encoding", "identity"),
            "wire": int(headers.get("content-length", len(body))),
            "bytes": len(body),
        }

    page = context.new_page()
    page.on("response", seen)
    page.goto(f"{d.login}/#/{d.org}/dashboard")
    page.wait_for_function("() => window.__kokoaDrawn !== undefined", timeout=30_000)
    cold = page.evaluate("window.__kokoaDrawn")
    phases = page.evaluate(PHASES)
    cold_load = False
    page.reload()
    page.wait_for_function("() => window.__kokoaDrawn !== undefined", timeout=30_000)
    warm = page.evaluate("window.__kokoaDrawn")
    context.close()
    return {"cold_ms": cold, "warm_ms": warm, "phases": phases, "files": sent}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="kokoa-console-bench-"))
    d = IdentityDeployment(root)
    try:
        d.start_all()
        owner = d.api("POST", "/users", {"email": "owner@example.com", "password": PASSWORD})
        d.api("POST", f"/orgs/{d.org}/members", {"user_id": owner["id"], "role_id": d.roles["Owner"]})
        ca_file = d.data / "tls" / "ca.pem"
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                args=[
                    f"--ignore-certificate-errors-spki-list={pin(d.https_port, 'login.localhost', ca_file)}"
                ],
            )
            first = browser.new_context()
            page = first.new_page()
            page.goto(f"{d.login}/login")
            page.get_by_label("Email").fill("owner@example.com")
            page.get_by_label("Password").fill(PASSWORD)
            with page.expect_navigation():
                page.locator("form#signin").get_by_role("button", name="Sign in").click()
            state = first.storage_state()
            first.close()
            load_once(browser, d, state)  # one to warm the gateway (its store, its first TLS handshakes)
            runs = [load_once(browser, d, state) for _ in range(args.runs)]
            browser.close()
    finally:
        d.stop_all()

    files = runs[0]["files"]
    total = {
        kind: {
            "files": sum(1 for name in files if name.endswith(kind)),
            "bytes": sum(f["bytes"] for name, f in files.items() if name.endswith(kind)),
            "sent": sum(f["wire"] for name, f in files.items() if name.endswith(kind)),
        }
        for kind in (".js", ".css")
    }
    cold = statistics.median(r["cold_ms"] for r in runs)
    warm = statistics.median(r["warm_ms"] for r in runs)
    print(f"Console first load, {args.runs} runs (Chromium, loopback, fresh profile each run)")
    print(f"{'':<6} {'files':>6} {'bytes':>10} {'sent (gzip)':>12}")
    for kind, t in total.items():
        print(f"{kind[1:]:<6} {t['files']:>6} {t['bytes']:>10,} {t['sent']:>12,}")
    both = {k: sum(t[k] for t in total.values()) for k in ("files", "bytes", "sent")}
    print(f"{'total':<6} {both['files']:>6} {both['bytes']:>10,} {both['sent']:>12,}")
    print(
        f"time to the dashboard drawn: median {cold:.0f} ms cold (min {min(r['cold_ms'] for r in runs):.0f}, "
        f"max {max(r['cold_ms'] for r in runs):.0f}); {warm:.0f} ms on a reload"
    )
    phases = {name: statistics.median(r["phases"][name] for r in runs) for name in runs[0]["phases"]}
    print(
        f"  (medians: the shell at {phases['shell_ms']:.0f} ms, the last script or stylesheet at "
        f"{phases['files_ms']:.0f} ms, GET /me at {phases['me_ms']:.0f} ms; then the events' overview)"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"runs": runs, "total": total, "cold_ms": cold, "warm_ms": warm, "phases": phases}, indent=1
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
