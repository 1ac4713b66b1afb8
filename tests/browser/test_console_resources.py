"""Resources in Chromium, against a real gateway and edge: an HTTP resource made with its first target
(refusals shown next to the fields, nothing half-made), edited, disabled, its targets added, edited and
deleted with their health shown; a TCP resource; deleting one says what goes with it."""

from __future__ import annotations

import pytest
from console_helpers import checked, console, field_error, open_page
from playwright.sync_api import BrowserContext, Page, expect

from e2e.harness import free_port, wait_for
from e2e.test_identity_e2e import IdentityDeployment

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def resources(d: IdentityDeployment) -> dict[str, dict]:
    return {r["name"]: r for r in d.api("GET", f"/orgs/{d.org}/resources")["items"]}


def fill_new_http(page: Page, name: str, hostname: str, port: str) -> None:
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Hostname").fill(hostname)
    page.get_by_label("Site").select_option(label="home")
    page.get_by_label("Target host").fill("127.0.0.1")
    page.get_by_label("Target port").fill(port)


def test_create_an_http_resource_with_errors_at_their_fields(
    d: IdentityDeployment, context: BrowserContext
) -> None:
    page = console(context, d)
    open_page(page, d, "resources", title="Resources")
    page.get_by_role("link", name="Add a resource").click()
    expect(page.locator("#page-title")).to_have_text("Add a resource")
    checked(page, "the new resource form")

    fill_new_http(page, "docs", "not a hostname!", str(d.upstream_port))
    page.get_by_role("button", name="Create resource").click()
    assert "hostname" in field_error(page, "Hostname").lower() or field_error(page, "Hostname")
    expect(page.get_by_label("Hostname")).to_be_focused()
    checked(page, "the new resource form with an error")

    page.get_by_label("Hostname").fill("docs.localhost")
    page.get_by_label("Target port").fill("")  # the target is refused: the resource must not stay
    page.get_by_role("button", name="Create resource").click()
    assert field_error(page, "Target port")
    assert "docs" not in resources(d)

    page.get_by_label("Target port").fill(str(d.upstream_port))
    page.get_by_role("button", name="Create resource").click()
    expect(page.locator("#page-title")).to_have_text("docs")
    docs = resources(d)["docs"]
    assert (docs["hostname"], docs["public"]) == ("docs.localhost", False)
    row = page.locator("[data-target]")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(f"http://127.0.0.1:{d.upstream_port}")
    expect(row).to_contain_text("site online")  # its site's edge is connected
    checked(page, "a resource's settings and targets", "resource")


def test_edit_disable_and_manage_targets(d: IdentityDeployment, context: BrowserContext) -> None:
    made = d.add_http("wiki", "wiki.localhost", d.upstream_port)
    page = console(context, d)
    open_page(page, d, "resources", made["id"], title="wiki")
    page.get_by_label("Path prefix").fill("/w")
    page.get_by_label("Sticky sessions (a cookie keeps each client on one target)").check()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status").filter(has_text="Saved.")).to_have_count(1)
    wait_for(lambda: resources(d)["wiki"]["path_prefix"] == "/w", "the change")
    assert resources(d)["wiki"]["sticky"] is True
    page.get_by_label("Path prefix").fill("no-slash")
    page.get_by_role("button", name="Save", exact=True).click()
    assert field_error(page, "Path prefix")
    page.get_by_label("Path prefix").fill("/")
    page.get_by_label("Enabled", exact=True).first.uncheck()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".lead")).to_contain_text("disabled")
    assert resources(d)["wiki"]["enabled"] is False

    # a second target, edited, disabled, then deleted
    page.get_by_label("Site", exact=True).select_option(label="home")
    page.get_by_label("Host", exact=True).fill("127.0.0.2")
    page.get_by_label("Port", exact=True).fill("70000")
    page.get_by_role("button", name="Add target").click()
    assert field_error(page, "Port")
    page.get_by_label("Port", exact=True).fill("8089")
    page.get_by_role("button", name="Add target").click()
    second = page.locator("[data-target]").filter(has_text="127.0.0.2:8089")
    expect(second).to_have_count(1)
    second.get_by_role("button", name="Edit http://127.0.0.2:8089").click()
    editor = page.get_by_role("form", name="Edit the target http://127.0.0.2:8089")
    editor.get_by_label("Weight").fill("5")
    checked(page, "a target being edited")
    editor.get_by_role("button", name="Save target").click()
    expect(second.locator("td.num")).to_have_text("5")
    second.get_by_role("button", name="Disable http://127.0.0.2:8089").click()
    expect(second).to_contain_text("disabled")
    second.get_by_role("button", name="Delete http://127.0.0.2:8089").click()
    dialog = page.get_by_role("dialog", name="Delete the target http://127.0.0.2:8089?")
    dialog.get_by_role("button", name="Delete target").click()
    expect(second).to_have_count(0)
    targets = d.api("GET", f"/orgs/{d.org}/resources/{made['id']}/targets")["items"]
    assert [t["port"] for t in targets] == [d.upstream_port]


def test_a_tcp_resource_and_deleting_one(d: IdentityDeployment, context: BrowserContext) -> None:
    page = console(context, d)
    open_page(page, d, "resources", "new", title="Add a resource")
    page.get_by_label("TCP").check()
    port = free_port()
    page.get_by_label("Name", exact=True).fill("db")
    page.get_by_label("Public port").fill(str(port))
    page.get_by_label("Site").select_option(label="home")
    page.get_by_label("Target host").fill("127.0.0.1")
    page.get_by_label("Target port").fill(str(d.upstream_port))
    page.get_by_role("button", name="Create resource").click()
    expect(page.locator("#page-title")).to_have_text("db")
    expect(page.locator(".lead")).to_contain_text(f"port {port}")
    db = resources(d)["db"]
    assert (db["kind"], db["public_port"], db["public"]) == ("tcp", port, True)
    page.get_by_role("button", name="Delete resource").click()
    dialog = page.get_by_role("dialog", name="Delete db?")
    expect(dialog).to_contain_text("1 target(s), 0 grant(s), 0 rule(s)")
    checked(page, "the delete dialog of a resource")
    dialog.get_by_role("button", name="Delete resource").click()
    expect(page.locator("#page-title")).to_have_text("Resources")
    expect(page.locator("[data-resource]").filter(has_text="db")).to_have_count(0)
    assert "db" not in resources(d)
    checked(page, "the resource list", "resources")
