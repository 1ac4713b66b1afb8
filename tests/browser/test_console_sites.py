"""The Sites page in Chromium, against a real gateway: a site is added (a bad name is refused next to
its field), its edge command is copied from the page and run, and the site turns online without a
reload; its secret is rotated, it is disabled and enabled, and deleting it names the targets it
takes down before it does."""

from __future__ import annotations

import shlex

import pytest
from console_helpers import (
    allow_clipboard,
    checked,
    clipboard,
    console,
    field_error,
    open_page,
    run_copied_edge,
)
from playwright.sync_api import BrowserContext, Page, expect

from e2e.harness import wait_for
from e2e.test_identity_e2e import IdentityDeployment

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def where_edges_dial(page: Page, d: IdentityDeployment) -> None:
    """Tell the page where this test's gateway takes tunnels (random loopback ports) and where its
    development CA is: what a newcomer types in once."""
    page.get_by_text("Where edges reach this gateway").click()
    page.get_by_label("Tunnel address (TLS)").fill(d.gateway_url("tls"))
    page.get_by_label("Tunnel address (WebSocket)").fill(d.gateway_url("wss"))
    page.get_by_label("The gateway's CA file on the edge").fill(str(d.data / "tls" / "ca.pem"))


def add_site(page: Page, name: str) -> str:
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_role("button", name="Add site").click()
    panel = page.get_by_role("region", name=f"Site {name} created")
    expect(panel).to_be_visible()
    return panel.locator("pre").first.inner_text()


def site_id(d: IdentityDeployment, name: str) -> str:
    return next(s["id"] for s in d.api("GET", f"/orgs/{d.org}/sites")["items"] if s["name"] == name)


def test_a_bad_name_is_refused_next_to_its_field(d: IdentityDeployment, context: BrowserContext) -> None:
    page = console(context, d)
    open_page(page, d, "sites", title="Sites")
    page.get_by_role("button", name="Add site").click()  # no name
    assert "empty" in field_error(page, "Name")
    expect(page.get_by_label("Name", exact=True)).to_be_focused()
    checked(page, "the sites page with an error")


def test_add_a_site_run_its_copied_wss_command_and_see_it_online(
    d: IdentityDeployment, context: BrowserContext
) -> None:
    allow_clipboard(context, d)
    page = console(context, d)
    open_page(page, d, "sites", title="Sites")
    secret = add_site(page, "lab")
    lab = site_id(d, "lab")
    row = page.locator(f'tr[data-site="{lab}"]')
    expect(row).to_contain_text("offline")
    where_edges_dial(page, d)
    page.get_by_role("button", name="Copy the edge command (wss)").click()
    command = clipboard(page)
    assert f"KOKOA_SITE_SECRET={shlex.quote(secret)} twistd --pidfile= -n kokoa-edge" in command
    assert f"--gateway {d.gateway_url('wss')} --site {lab}" in command
    page.get_by_role("button", name="Copy the edge command (TLS)").click()
    assert f"--gateway {d.gateway_url('tls')} --site {lab}" in clipboard(page)
    checked(page, "a new site's secret and commands", "site-created")

    edge = run_copied_edge(d, command)
    expect(page.get_by_text("Its edge is connected.")).to_be_visible(timeout=20_000)
    expect(row).to_contain_text("online")
    expect(row).to_contain_text("WSS to")  # the tunnel, with its transport
    edge.stop()
    expect(row).to_contain_text("offline", timeout=10_000)
    page.get_by_role("button", name="Done: hide the secret").click()
    expect(page.get_by_text(secret)).to_have_count(0)
    checked(page, "the site list")


def test_rotate_disable_enable_and_delete_naming_what_it_takes_down(
    d: IdentityDeployment, context: BrowserContext
) -> None:
    page = console(context, d)
    open_page(page, d, "sites", title="Sites")
    old = add_site(page, "branch")
    branch = site_id(d, "branch")
    row = page.locator(f'tr[data-site="{branch}"]')

    row.get_by_role("button", name="Rotate secret of branch").click()
    dialog = page.get_by_role("dialog", name="Rotate the secret of branch?")
    expect(dialog).to_be_visible()
    dialog.get_by_label("The old secret stays valid for").select_option(
        label="none: the old secret stops now"
    )
    checked(page, "the rotation dialog")
    dialog.get_by_role("button", name="Rotate secret").click()
    panel = page.get_by_role("region", name="Site branch has a new secret")
    expect(panel).to_be_visible()
    new = panel.locator("pre").first.inner_text()
    assert new != old
    assert d.api("GET", f"/orgs/{d.org}/sites/{branch}")["previous_secret_expires_at"] is None

    row.get_by_role("button", name="Disable branch").click()
    page.get_by_role("dialog", name="Disable branch?").get_by_role("button", name="Disable").click()
    expect(row).to_contain_text("disabled")
    assert d.api("GET", f"/orgs/{d.org}/sites/{branch}")["enabled"] is False
    row.get_by_role("button", name="Enable branch").click()
    expect(row).to_contain_text("offline")

    # a resource with its only target at branch, another with one of its two targets there
    only = d.api(
        "POST",
        f"/orgs/{d.org}/resources",
        {"name": "only-here", "kind": "http", "hostname": "only.localhost"},
    )
    both = d.add_http("both", "both.localhost", d.upstream_port)
    for resource, port in ((only, 8081), (both, 8082)):
        d.api(
            "POST",
            f"/orgs/{d.org}/resources/{resource['id']}/targets",
            {"site_id": branch, "host": "10.0.0.5", "port": port},
        )
    row.get_by_role("button", name="Delete branch").click()
    dialog = page.get_by_role("dialog", name="Delete branch?")
    expect(dialog).to_contain_text("only-here: 10.0.0.5:8081 (its only target: the resource goes offline)")
    expect(dialog.get_by_role("listitem").filter(has_text="both")).to_have_text("both: 10.0.0.5:8082")
    checked(page, "the delete dialog")
    dialog.get_by_role("button", name="Cancel").click()
    expect(row).to_be_visible()
    row.get_by_role("button", name="Delete branch").click()
    page.get_by_role("dialog", name="Delete branch?").get_by_role("button", name="Delete site").click()
    expect(row).to_have_count(0)
    wait_for(
        lambda: branch not in {s["id"] for s in d.api("GET", f"/orgs/{d.org}/sites")["items"]}, "the delete"
    )
    targets = d.api("GET", f"/orgs/{d.org}/resources/{both['id']}/targets")["items"]
    assert [t["port"] for t in targets] == [d.upstream_port]
