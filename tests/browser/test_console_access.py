"""A resource's access page in Chromium, against a real gateway: public or protected, grants to roles and
members, the resource's own password, PIN and email allow-list (refusals next to their fields), share
links (made, opened by a stranger's browser, counted, revoked) and rules (added, edited, reordered,
deleted) with the "test a request" box answering from the gateway's policy engine."""

from __future__ import annotations

import pytest
from console_helpers import allow_clipboard, checked, clipboard, console, field_error, open_page
from playwright.sync_api import Browser, BrowserContext, Page, expect

from e2e.harness import wait_for
from e2e.test_identity_e2e import IdentityDeployment

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def resource(d: IdentityDeployment, resource_id: str) -> dict:
    return d.api("GET", f"/orgs/{d.org}/resources/{resource_id}")


def rules(d: IdentityDeployment, resource_id: str) -> list[tuple]:
    items = d.api("GET", f"/orgs/{d.org}/resources/{resource_id}/rules")["items"]
    return [(r["priority"], r["action"], r["method"], r["path"]) for r in items]


@pytest.fixture
def access(d: IdentityDeployment, context: BrowserContext) -> tuple[Page, dict]:
    made = d.add_http("intranet", "intranet.localhost", d.upstream_port, public=False)
    page = console(context, d)
    open_page(page, d, "resources", made["id"], "access", title="intranet")
    yield page, made
    d.api("DELETE", f"/orgs/{d.org}/resources/{made['id']}")


def test_public_or_protected_and_grants(d: IdentityDeployment, access: tuple[Page, dict]) -> None:
    page, made = access
    checked(page, "the access page")
    exposure = page.get_by_role("form", name="Public or protected")
    exposure.get_by_label("Public").check()
    exposure.get_by_role("button", name="Save").click()
    wait_for(lambda: resource(d, made["id"])["public"], "the resource to be public")
    expect(page.locator(".lead")).to_contain_text("public")
    exposure.get_by_label("Protected").check()
    exposure.get_by_role("button", name="Save").click()
    wait_for(lambda: not resource(d, made["id"])["public"], "the resource to be protected")

    grants = page.get_by_role("region", name="Grants")
    grants.get_by_role("button", name="Give access").click()  # nobody chosen
    assert field_error(page, "Role or member")
    grants.get_by_label("Role or member").select_option(label="Role: Member")
    grants.get_by_role("button", name="Give access").click()
    expect(grants.locator("[data-grant]")).to_have_text(["Role: Member Take away the grant of Role: Member"])
    grants.get_by_label("Role or member").select_option(label=f"Member: {d.bob}")
    grants.get_by_role("button", name="Give access").click()
    expect(grants.locator("[data-grant]")).to_have_count(2)
    found = d.api("GET", f"/orgs/{d.org}/resources/{made['id']}/grants")["items"]
    assert {(g["role_id"], g["user_id"]) for g in found} == {(d.roles["Member"], None), (None, d.bob)}
    grants.get_by_role("button", name="Take away the grant of Role: Member").click()
    expect(grants.locator("[data-grant]")).to_have_count(1)
    assert [g["user_id"] for g in d.api("GET", f"/orgs/{d.org}/resources/{made['id']}/grants")["items"]] == [
        d.bob
    ]
    checked(page, "the access page with grants")


def test_password_pin_and_email_allow_list(d: IdentityDeployment, access: tuple[Page, dict]) -> None:
    page, made = access
    own = page.get_by_role("region", name="The resource's own sign-in")
    own.get_by_label("New password").fill("short")
    own.get_by_role("button", name="Set a password").click()
    assert field_error(page, "New password")
    own.get_by_label("New password").fill("a long enough password")
    own.get_by_role("button", name="Set a password").click()
    expect(own.get_by_role("button", name="Remove the password")).to_be_visible()
    assert resource(d, made["id"])["has_password"]
    own.get_by_label("New PIN").fill("12ab")
    own.get_by_role("button", name="Set a PIN").click()
    assert "pattern" in field_error(page, "New PIN")
    own.get_by_label("New PIN").fill("246810")
    own.get_by_role("button", name="Set a PIN").click()
    expect(own.get_by_role("button", name="Remove the PIN")).to_be_visible()
    own.get_by_role("button", name="Remove the password").click()
    expect(own.get_by_role("button", name="Set a password")).to_be_visible()
    after = resource(d, made["id"])
    assert (after["has_password"], after["has_pin"]) == (False, True)

    own.get_by_label("Addresses and @domains").fill("carol@example.com\nnot an address")
    own.get_by_role("button", name="Save the allow-list").click()
    assert "Item 2" in field_error(page, "Addresses and @domains")
    own.get_by_label("Addresses and @domains").fill("carol@example.com\n@example.org")
    own.get_by_role("button", name="Save the allow-list").click()
    wait_for(lambda: resource(d, made["id"])["auth_email_allow"], "the allow-list")
    assert resource(d, made["id"])["auth_email_allow"] == ["@example.org", "carol@example.com"]
    checked(page, "the resource's own sign-in")


def test_share_links_are_made_opened_counted_and_revoked(
    d: IdentityDeployment, context: BrowserContext, chromium: Browser
) -> None:
    allow_clipboard(context, d)
    page = console(context, d)
    app = next(r for r in d.api("GET", f"/orgs/{d.org}/resources")["items"] if r["name"] == "app")
    open_page(page, d, "resources", app["id"], "access", title="app")
    links = page.get_by_role("region", name="Share links")
    links.get_by_label("Link name").fill("auditor")
    links.get_by_label("Uses allowed").fill("0")
    links.get_by_role("button", name="Create link").click()
    assert field_error(page, "Uses allowed")
    links.get_by_label("Uses allowed").fill("2")
    links.get_by_label("Expires").fill("2099-01-01T12:00")
    links.get_by_role("button", name="Create link").click()
    shown = links.get_by_role("region", name="Share link auditor")
    expect(shown).to_be_visible()
    shown.get_by_role("button", name="Copy the share link").click()
    url = clipboard(page)
    assert url.startswith(d.url("app.localhost", "/.kokoa/share/"))
    checked(page, "a new share link")

    stranger = chromium.new_context()
    try:
        visit = stranger.new_page()
        visit.goto(url)
        expect(visit.locator("pre").first).to_contain_text('"uri": "/"')  # the upstream's echo
    finally:
        stranger.close()
    page.reload()
    row = page.locator("[data-link]").filter(has_text="auditor")
    expect(row).to_contain_text("1 of 2")
    expect(row).to_contain_text("active")
    row.get_by_role("button", name="Revoke auditor").click()
    expect(row).to_contain_text("revoked")
    stranger = chromium.new_context()
    try:
        visit = stranger.new_page()
        visit.goto(url)
        expect(visit.locator("pre")).to_have_count(0)  # refused: not the upstream
    finally:
        stranger.close()


def test_rules_added_edited_reordered_and_tested(d: IdentityDeployment, access: tuple[Page, dict]) -> None:
    page, made = access
    section = page.get_by_role("region", name="Rules")
    add = section.get_by_role("form", name="Add a rule")
    add.get_by_label("Action").select_option("deny")
    add.get_by_label("Path").fill("/admin/*")
    add.get_by_label("Client network").fill("10.0.0.300/8")
    add.get_by_role("button", name="Add rule").click()
    assert field_error(page, "Client network")
    add.get_by_label("Client network").fill("")
    add.get_by_role("button", name="Add rule").click()
    expect(section.locator("[data-rule]")).to_have_count(1)
    add.get_by_label("Action").select_option("bypass")
    add.get_by_label("Method").fill("GET")
    add.get_by_label("Path").fill("/public/*")
    add.get_by_role("button", name="Add rule").click()
    expect(section.locator("[data-rule]")).to_have_count(2)
    assert rules(d, made["id"]) == [(10, "deny", None, "/admin/*"), (20, "bypass", "GET", "/public/*")]

    section.get_by_role("button", name="Move rule 1 down").click()
    expect(section.locator("[data-rule]").first).to_contain_text("bypass")
    assert rules(d, made["id"]) == [(10, "bypass", "GET", "/public/*"), (20, "deny", None, "/admin/*")]
    section.get_by_role("button", name="Edit rule 2").click()
    editor = section.get_by_role("form", name="Edit rule 2")
    editor.get_by_label("Path").fill("/admin*")
    editor.get_by_role("button", name="Save rule").click()
    expect(section.locator("[data-rule]").nth(1)).to_contain_text("path /admin*")

    tester = section.get_by_role("form", name="Test a request")
    tester.get_by_label("Request path").fill("/public/report.pdf")
    tester.get_by_role("button", name="Test").click()
    result = section.locator(".test-result")
    expect(result).to_contain_text("Decision: bypass")
    expect(result).to_contain_text("by the rule at priority 10")
    expect(section.locator("[data-rule]").first).to_contain_text("decides the test")
    tester.get_by_label("Request path").fill("/admin/users")
    tester.get_by_role("button", name="Test").click()
    expect(result).to_contain_text("Decision: deny")
    expect(section.locator("[data-rule]").nth(1)).to_contain_text("decides the test")
    tester.get_by_label("Request path").fill("/other")
    tester.get_by_role("button", name="Test").click()
    expect(result).to_contain_text("Decision: authenticate")
    expect(result).to_contain_text("by the resource's default")
    tester.get_by_label("Client address").fill("not an address")
    tester.get_by_role("button", name="Test").click()
    assert field_error(page, "Client address")
    checked(page, "the rules and the tester", "rules")

    section.get_by_role("button", name="Delete rule 1").click()
    page.get_by_role("dialog", name="Delete this rule?").get_by_role("button", name="Delete rule").click()
    expect(section.locator("[data-rule]")).to_have_count(1)
    assert rules(d, made["id"]) == [(20, "deny", None, "/admin*")]
