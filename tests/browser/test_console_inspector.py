"""The request inspector in Chromium, against a real gateway: requests to a resource appear live with
their method, path, status, decision, rule and target; one chosen shows its heads with cookies and
Authorization redacted; pausing holds new requests until resumed."""

from __future__ import annotations

import pytest
from console_helpers import checked, console, open_page
from playwright.sync_api import BrowserContext, expect

from e2e.harness import wait_for
from e2e.test_identity_e2e import IdentityDeployment

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_requests_show_live_with_their_heads_redacted(d: IdentityDeployment, context: BrowserContext) -> None:
    made = d.add_http("shop", "shop.localhost", d.upstream_port, public=True)
    d.api(
        "POST",
        f"/orgs/{d.org}/resources/{made['id']}/rules",
        {"priority": 5, "action": "deny", "path": "/admin*"},
    )
    wait_for(lambda: d.get("shop.localhost", "/admin")[0] == 403, "the rule")
    page = console(context, d)
    open_page(page, d, "inspector", title="Inspector")
    page.get_by_role("navigation", name="HTTP resources").get_by_role("link", name="shop").click()
    expect(page.locator("#page-title")).to_have_text("Inspector: shop")
    expect(page.get_by_text("Watching", exact=True)).to_be_visible()

    d.get(
        "shop.localhost",
        "/cart?item=7",
        headers={"Cookie": "session=s3cret", "Authorization": "Bearer t0ken"},
    )
    row = page.locator("[data-request]").filter(has_text="GET /cart?item=7")
    expect(row).to_have_count(1, timeout=5000)
    expect(row).to_contain_text("200")
    expect(row).to_contain_text("allow")
    expect(row).to_contain_text(f"127.0.0.1:{d.upstream_port}")
    d.get("shop.localhost", "/admin/users")
    denied = page.locator("[data-request]").filter(has_text="GET /admin/users")
    expect(denied).to_contain_text("403", timeout=5000)
    expect(denied).to_contain_text("deny")
    expect(page.locator("[data-request]").first).to_contain_text("/admin/users")  # newest first

    row.get_by_role("button", name="GET /cart?item=7").click()
    details = page.get_by_role("region", name="GET /cart?item=7")
    heads = details.locator("dl.headers").first
    expect(heads).to_contain_text("host")
    cookie = heads.locator("dt", has_text="cookie").locator("xpath=following-sibling::dd[1]")
    expect(cookie).to_have_text("[redacted]")
    auth = heads.locator("dt", has_text="authorization").locator("xpath=following-sibling::dd[1]")
    expect(auth).to_have_text("[redacted]")
    assert "s3cret" not in page.content() and "t0ken" not in page.content()
    checked(page, "the inspector with a request chosen", "inspector")

    page.get_by_role("button", name="Pause").click()
    d.get("shop.localhost", "/while-paused")
    expect(page.get_by_text("1 held while paused", exact=False)).to_be_visible(timeout=5000)
    expect(page.locator("[data-request]").filter(has_text="/while-paused")).to_have_count(0)
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("[data-request]").first).to_contain_text("/while-paused")
