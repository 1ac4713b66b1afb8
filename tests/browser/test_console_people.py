"""The People page in Chromium, against a real gateway: an invitation's link (copied, opened, a password
chosen), roles changed, created and deleted, a password-reset link, a member's sessions seen and
ended, API keys created (shown once, working) and revoked; refusals next to their fields."""

from __future__ import annotations

import pytest
from console_helpers import allow_clipboard, checked, clipboard, console, field_error, open_page
from playwright.sync_api import Browser, BrowserContext, expect

from e2e.harness import wait_for
from e2e.test_identity_e2e import PASSWORD, IdentityDeployment

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def members(d: IdentityDeployment) -> dict[str, str]:
    return {m["user_id"]: m["role_name"] for m in d.api("GET", f"/orgs/{d.org}/members")["items"]}


def api_status(d: IdentityDeployment, key: str) -> int:
    """GET /api/v1/me with an API key, over the login host's HTTPS (as a program would)."""
    answer = d.browser().request("GET", f"{d.login}/api/v1/me", headers={"Authorization": f"Bearer {key}"})
    return answer.status


def test_invite_someone_who_then_chooses_a_password(
    d: IdentityDeployment, context: BrowserContext, chromium: Browser
) -> None:
    allow_clipboard(context, d)
    page = console(context, d)
    open_page(page, d, "people", title="People")
    checked(page, "the people page", "people")
    invite = page.get_by_role("form", name="Invite someone")
    invite.get_by_label("Email").fill("carol at example.com")
    invite.get_by_label("Role").select_option(label="Member")
    invite.get_by_role("button", name="Invite").click()
    assert field_error(page, "Email")
    invite.get_by_label("Email").fill("carol@example.com")
    invite.get_by_role("button", name="Invite").click()
    shown = page.get_by_role("region", name="Invitation for carol@example.com")
    expect(shown).to_be_visible()
    shown.get_by_role("button", name="Copy the invitation link").click()
    link = clipboard(page)
    assert link.startswith(f"{d.login}/invite?token=")
    expect(page.locator("[data-member]")).to_have_count(len(members(d)))  # one more, listed at once

    newcomer = chromium.new_context()
    try:
        tab = newcomer.new_page()
        tab.goto(link)
        tab.get_by_label("New password").fill(PASSWORD)
        with tab.expect_navigation():
            tab.get_by_role("button", name="Set the password").click()
        tab.goto(f"{d.login}/")
        expect(tab.locator("#page-title")).to_have_text("Your resources")  # a Member: the launcher
    finally:
        newcomer.close()


def test_roles_of_members_and_custom_roles(d: IdentityDeployment, context: BrowserContext) -> None:
    page = console(context, d)
    open_page(page, d, "people", title="People")
    page.get_by_label(f"Role of {d.bob}").select_option(label="Admin")
    wait_for(lambda: members(d)[d.bob] == "Admin", "bob to be an Admin")
    page.get_by_label(f"Role of {d.bob}").select_option(label="Member")
    wait_for(lambda: members(d)[d.bob] == "Member", "bob to be a Member")

    roles = page.get_by_role("region", name="Roles")
    roles.get_by_role("button", name="Create role").click()
    assert field_error(page, "Role name")
    roles.get_by_label("Role name").fill("Contractors")
    roles.get_by_label("Description").fill("outside help")
    roles.get_by_role("button", name="Create role").click()
    expect(roles.locator("[data-role]").filter(has_text="Contractors")).to_contain_text("outside help")
    roles.get_by_role("button", name="Delete the role Contractors").click()
    page.get_by_role("dialog", name="Delete the role Contractors?").get_by_role(
        "button", name="Delete role"
    ).click()
    expect(roles.locator("[data-role]").filter(has_text="Contractors")).to_have_count(0)
    assert "Contractors" not in {r["name"] for r in d.api("GET", f"/orgs/{d.org}/roles")["items"]}


def test_a_members_sessions_are_seen_and_ended_and_a_reset_link_made(
    d: IdentityDeployment, context: BrowserContext, chromium: Browser
) -> None:
    other = chromium.new_context()
    try:
        ann = console(other, d, "ann@example.com")
        page = console(context, d)
        open_page(page, d, "people", title="People")
        row = page.locator(f'[data-member="{d.ann}"]')
        name = row.locator("th").inner_text()  # her email once the members API gives it; her id today
        row.get_by_role("button", name=f"Reset link for {name}").click()
        expect(page.get_by_role("region", name=f"Password reset link for {name}")).to_contain_text(
            f"{d.login}/reset?token="
        )
        row.get_by_role("button", name=f"Sessions of {name}").click()
        sessions = page.get_by_role("group", name=f"Sessions of {name}")
        expect(sessions.locator("[data-session]").first).to_contain_text("the login host")
        checked(page, "a member's sessions")
        sessions.get_by_role("button", name=f"End every session of {name}").click()
        expect(sessions.get_by_text("No active session.")).to_be_visible()
        ann.reload()  # her console's session has ended: back to the sign-in page
        expect(ann.locator("form#signin")).to_be_visible()
    finally:
        other.close()


def test_api_keys_are_shown_once_work_and_are_revoked(d: IdentityDeployment, context: BrowserContext) -> None:
    allow_clipboard(context, d)
    page = console(context, d)
    open_page(page, d, "people", title="People")
    keys = page.get_by_role("region", name="API keys")
    keys.get_by_label("Key name").fill("backup")
    keys.get_by_label("Key expires").fill("1999-01-01T00:00")
    keys.get_by_role("button", name="Create key").click()
    assert field_error(page, "Key expires")
    keys.get_by_label("Key expires").fill("")
    keys.get_by_label("Scope").select_option(label="Read and write")
    keys.get_by_role("button", name="Create key").click()
    shown = keys.get_by_role("region", name="API key backup")
    shown.get_by_role("button", name="Copy the API key").click()
    key = clipboard(page)
    assert key.startswith("kk_")
    checked(page, "a new API key")
    assert api_status(d, key) == 200
    row = keys.locator("[data-key]").filter(has_text="backup")
    expect(row).to_contain_text("write")
    row.get_by_role("button", name="Revoke backup").click()
    page.get_by_role("dialog", name="Revoke the API key backup?").get_by_role(
        "button", name="Revoke key"
    ).click()
    expect(row).to_have_count(0)
    assert api_status(d, key) == 401
