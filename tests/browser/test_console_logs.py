"""The Logs page in Chromium, against a real gateway: the access log filtered by outcome and resource,
its live tail showing a refusal as it happens, the audit log filtered by action with an entry's
changes, and the charts of requests per resource (uPlot, with the numbers in a table)."""

from __future__ import annotations

import pytest
from console_helpers import checked, console, open_page
from playwright.sync_api import BrowserContext, Page, expect

from e2e.harness import wait_for
from e2e.test_identity_e2e import IdentityDeployment

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture(scope="module")
def pub(d: IdentityDeployment) -> dict:
    """A public resource that denies /secret*, and traffic to it: 3 allowed requests and 2 denied."""
    made = d.add_http("pub", "pub.localhost", d.upstream_port, public=True)
    d.api(
        "POST",
        f"/orgs/{d.org}/resources/{made['id']}/rules",
        {"priority": 10, "action": "deny", "path": "/secret*"},
    )
    for path in ("/a", "/b", "/c", "/secret", "/secret/2"):
        wait_for(lambda path=path: d.get("pub.localhost", path)[0] in (200, 403), f"{path} to be answered")
    wait_for(
        lambda: (
            len(d.api("GET", f"/orgs/{d.org}/access-log?resource_id={made['id']}&outcome=deny")["items"]) >= 2
        ),
        "the refusals in the access log",
    )
    return made


def outcomes(page: Page) -> list[str]:
    return page.locator("table.access-log tbody tr td:nth-child(2) .badge").all_inner_texts()


def test_the_access_log_filters_and_tails(d: IdentityDeployment, context: BrowserContext, pub: dict) -> None:
    page = console(context, d)
    open_page(page, d, "logs", title="Logs")
    expect(page.locator("table.access-log tbody tr").first).to_be_visible()
    checked(page, "the access log", "logs")
    filters = page.get_by_role("form", name="Filter the access log")
    filters.get_by_label("Resource").select_option(label="pub")
    filters.get_by_label("Outcome").select_option("deny")
    filters.get_by_role("button", name="Apply filters").click()
    expect(page.locator("table.access-log tbody tr")).to_have_count(2)
    assert set(outcomes(page)) == {"deny"}
    expect(page.locator("table.access-log tbody")).to_contain_text("GET pub.localhost/secret/2")

    page.get_by_label("Live tail: show new entries as they happen").check()
    expect(page.get_by_text("live", exact=True)).to_be_visible()
    d.get("pub.localhost", "/secret/live")
    expect(page.locator("table.access-log tbody tr").first).to_contain_text("/secret/live", timeout=5000)
    d.get("pub.localhost", "/allowed")  # another outcome: filtered out of the tail
    page.wait_for_timeout(1500)
    assert set(outcomes(page)) == {"deny"}
    checked(page, "the access log's live tail")


def test_the_audit_log_and_its_changes(d: IdentityDeployment, context: BrowserContext, pub: dict) -> None:
    page = console(context, d)
    open_page(page, d, "logs", "audit", title="Logs")
    page.get_by_text("Filters", exact=True).click()
    page.get_by_label("Action").fill("rule.*")
    page.get_by_role("button", name="Apply filters").click()
    rows = page.locator("table.audit-log tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("rule.create")
    rows.first.get_by_text("Changes").click()
    expect(rows.first.locator("pre")).to_contain_text('"path": "/secret*"')
    checked(page, "the audit log", "audit")


def test_charts_of_requests_per_resource(d: IdentityDeployment, context: BrowserContext, pub: dict) -> None:
    page = console(context, d)
    open_page(page, d, "logs", "charts", title="Logs")
    chart = page.get_by_role("figure", name="pub")
    expect(chart.locator(".hint")).to_contain_text("denied")
    expect(chart.locator("canvas")).to_have_count(1)
    chart.get_by_text("The numbers").click()
    numbers = chart.locator("tbody tr td.num")
    assert sum(int(n) for n in numbers.all_inner_texts()) >= 5
    page.get_by_label("Period").select_option(label="Last 7 days")
    expect(page.get_by_role("figure", name="pub").locator("canvas")).to_have_count(1)
    checked(page, "the charts", "charts")
