"""The dashboard in Chromium, live, against a real gateway: an edge that connects and one killed with
SIGKILL show without a reload, as do a target turning unhealthy, a refused request in the last hour's
numbers and a sign-in; when the gateway restarts, the page says it is reconnecting and comes back live
by itself (the browser's EventSource, and ours after an error answer)."""

from __future__ import annotations

import signal

import pytest
from console_helpers import checked, console, open_page
from playwright.sync_api import Browser, BrowserContext, Page, expect

from e2e.harness import free_port, wait_for
from e2e.test_identity_e2e import IdentityDeployment

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
#: How long the page may take to show what the gateway already knows (the events say it at once).
LIVE = 3000


def stat(page: Page, label: str) -> int:
    card = page.locator(".stat").filter(has_text=label)
    return int(card.locator(".value").inner_text().split()[0].replace(",", ""))


def test_sites_come_online_and_drop_live(d: IdentityDeployment, context: BrowserContext) -> None:
    page = console(context, d)
    open_page(page, d, "dashboard", title="Dashboard")
    expect(page.get_by_text("Live", exact=True)).to_be_visible()
    made = d.api("POST", f"/orgs/{d.org}/sites", {"name": "depot"})
    depot = made["site"]["id"]
    d.sites[depot] = made["secret"]
    row = page.locator(f'tr[data-site="{depot}"]')
    expect(row).to_contain_text("offline")  # the new site appears (a configuration change)
    edge = d.start_edge(depot, "wss")
    d.wait_tunnels(depot, 1)
    expect(row).to_contain_text("online", timeout=LIVE)
    expect(row).to_contain_text("WSS to")
    expect(page.locator("#announcer")).to_have_text("Site depot is online.")
    checked(page, "the live dashboard", "dashboard")
    edge.kill(signal.SIGKILL)
    wait_for(lambda: d.tunnels(depot) == 0, "the gateway to see the edge gone")
    expect(row).to_contain_text("offline", timeout=LIVE)
    expect(page.locator("#announcer")).to_have_text("Site depot is offline.")


def test_health_requests_and_sign_ins_live(
    d: IdentityDeployment, context: BrowserContext, chromium: Browser
) -> None:
    page = console(context, d)
    open_page(page, d, "dashboard", title="Dashboard")
    made = d.add_http("checked", "checked.localhost", d.upstream_port, public=True)
    dead = free_port()  # nothing listens there: its health check fails
    d.api(
        "POST",
        f"/orgs/{d.org}/resources/{made['id']}/targets",
        {
            "site_id": d.site,
            "host": "127.0.0.1",
            "port": dead,
            "health_check": {"enabled": True, "interval": 1, "timeout": 1},
        },
    )
    target = page.locator(f'tr[data-resource="{made["id"]}"] li').filter(has_text=f"127.0.0.1:{dead}")
    expect(target).to_contain_text("unhealthy", timeout=15_000)

    d.api(
        "POST",
        f"/orgs/{d.org}/resources/{made['id']}/rules",
        {"priority": 1, "action": "deny", "path": "/no*"},
    )
    wait_for(lambda: d.get("checked.localhost", "/no")[0] == 403, "the rule")
    page.wait_for_timeout(1500)  # the refusals of the wait above reach the page first
    before = stat(page, "Denials, last hour")
    d.get("checked.localhost", "/nope")
    expect(page.locator(".stat").filter(has_text="Denials, last hour").locator(".value")).to_have_text(
        str(before + 1), timeout=LIVE
    )

    other = chromium.new_context()
    try:
        console(other, d, "ann@example.com")
    finally:
        other.close()
    signins = page.get_by_role("region", name="Recent sign-ins")
    expect(signins.locator("tbody tr").first).to_contain_text("ann@example.com", timeout=LIVE)


def test_the_page_reconnects_when_the_gateway_restarts(
    d: IdentityDeployment, context: BrowserContext
) -> None:
    page = console(context, d)
    open_page(page, d, "dashboard", title="Dashboard")
    state = page.locator(".live-state .badge")
    expect(state).to_have_text("Live")
    d.gateway.stop()
    expect(state).to_have_text("Reconnecting…", timeout=10_000)
    d.start_gateway()
    expect(state).to_have_text("Live", timeout=40_000)
    d.wait_tunnels(d.site, 1)  # the edge came back too, and the page says so without a reload
    expect(page.locator(f'tr[data-site="{d.site}"]')).to_contain_text("online", timeout=LIVE)
