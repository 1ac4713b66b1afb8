"""Sign-in methods that need a peer: a one-time code by email (a real SMTP server on loopback,
aiosmtpd), single sign-on against a real OpenID Connect provider (authlib's authorization server in
its own process), the TOTP second factor with backup codes, and password links."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pyotp
import pytest

from .harness import wait_for
from .identity_config import CLIENT_ID, CLIENT_SECRET, mail_config, oidc_config
from .test_identity_e2e import PASSWORD, IdentityDeployment

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "auth"))
from oidc_fixtures import post_login, running_provider
from smtp_server import SmtpServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    root = tmp_path_factory.mktemp("extras")
    deployment = IdentityDeployment(root)
    smtp = SmtpServer().start()
    login = f"https://login.localhost:{deployment.https_port}"
    try:
        with running_provider(
            root / "oidc",
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            redirect_uri=f"{login}/oidc/corp/callback",
        ) as issuer:
            deployment.extra_config = mail_config(smtp) + "\n" + oidc_config("corp", issuer)
            deployment.smtp = smtp
            deployment.start_all()
            yield deployment
    finally:
        deployment.stop_all()
        smtp.stop()


def csrf_of(browser, d) -> str:
    if "__Host-kokoa_csrf" not in browser.jar.get("login.localhost", {}):
        browser.go(f"{d.login}/login")
    return browser.jar["login.localhost"]["__Host-kokoa_csrf"]


def test_an_email_code_lets_an_allowed_address_in(d):
    d.api("PATCH", f"/orgs/{d.org}/resources/{d.app['id']}", {"auth_email_allow": ["@guests.example"]})
    rd = d.url("app.localhost", "/mail")
    browser = d.browser()
    form = browser.go(rd)
    assert "/resource/email" in form.text
    nonce = parse_qs(urlsplit(form.url).query)["n"][0]
    csrf = csrf_of(browser, d)
    sent = browser.go(
        f"{d.login}/resource/email",
        "POST",
        {"csrf": csrf, "rd": rd, "n": nonce, "email": "Gus@Guests.example"},
    )
    assert sent.status == 200 and "a code is on its way" in sent.text
    (mail,) = d.smtp.wait_for(1)
    assert mail.rcpt_tos == ("gus@guests.example",)
    code = re.search(r"\b(\d{6})\b", mail.message.get_content()).group(1)
    wrong = browser.go(
        f"{d.login}/resource-code",
        "POST",
        {"csrf": csrf, "rd": rd, "n": nonce, "email": "gus@guests.example", "code": "000000"},
    )
    assert wrong.status == 401
    done = browser.go(
        f"{d.login}/resource-code",
        "POST",
        {"csrf": csrf, "rd": rd, "n": nonce, "email": "gus@guests.example", "code": code},
    )
    assert done.status == 200 and json.loads(done.body)["uri"] == "/mail"
    headers = {k.lower(): v for k, v in json.loads(done.body)["headers"]}
    assert headers["remote-email"] == "gus@guests.example"
    # an address outside the list gets the same page, and no mail
    other = d.browser()
    other_nonce = parse_qs(urlsplit(other.go(rd).url).query)["n"][0]
    page = other.go(
        f"{d.login}/resource/email",
        "POST",
        {"csrf": csrf_of(other, d), "rd": rd, "n": other_nonce, "email": "eve@evil.example"},
    )
    assert page.status == 200 and "a code is on its way" in page.text
    assert len(d.smtp.messages) == 1
    d.api("PATCH", f"/orgs/{d.org}/resources/{d.app['id']}", {"auth_email_allow": []})


def sso(d, browser, rd: str, email: str, password: str):
    page = browser.go(rd)  # the resource's host sends the browser to sign in, bound to its nonce
    nonce = parse_qs(urlsplit(page.url).query)["n"][0]
    start = browser.request("GET", f"{d.login}/oidc/corp/start?rd={quote(rd, safe='')}&n={nonce}")
    assert start.status == 302
    status, back = post_login(start.header("Location"), email, password)
    assert status == 302 and back.startswith(f"{d.login}/oidc/corp/callback?")
    return browser.go(back)


def test_single_sign_on_provisions_a_verified_user_with_the_default_role(d):
    browser = d.browser()
    page = browser.go(d.url("app.localhost", "/sso"))
    assert "Sign in with Corp SSO" in page.text
    done = sso(d, browser, d.url("app.localhost", "/sso"), "ada@example.com", "correct horse")
    assert done.status == 200, done.text[:300]
    headers = {k.lower(): v for k, v in json.loads(done.body)["headers"]}
    assert headers["remote-user"] == "ada@example.com" and headers["remote-groups"] == "Member"
    users = {u["email"]: u for u in d.api("GET", "/users?limit=100")["items"]}
    assert "ada@example.com" in users
    # the second time, the same user (linked by the provider's subject)
    again = sso(d, d.browser(), d.url("app.localhost", "/"), "ada@example.com", "correct horse")
    assert again.status == 200
    assert len([u for u in d.api("GET", "/users?limit=100")["items"] if u["email"] == "ada@example.com"]) == 1


def test_single_sign_on_refuses_an_unverified_email_and_a_forged_state(d):
    refused = sso(d, d.browser(), d.url("app.localhost", "/"), "bob@example.org", "hunter22")
    assert refused.status == 403 and "did not vouch" in refused.text
    forged = d.browser().request("GET", f"{d.login}/oidc/corp/callback?code=abc&state=forged")
    assert forged.status == 400


def test_totp_second_factor_with_backup_codes_and_no_replay(d):
    email = "tess@example.com"
    user = d.user(email, "Member")
    browser = d.browser()
    assert d.sign_in(browser, d.url("app.localhost", "/"), email).status == 200
    setup = browser.go(f"{d.login}/account/totp")
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', setup.text).group(1).replace(" ", "")
    csrf = csrf_of(browser, d)
    code = pyotp.TOTP(secret).now()
    enabled = browser.go(f"{d.login}/account/totp", "POST", {"csrf": csrf, "code": code})
    assert enabled.status == 200
    backups = re.findall(r"<li><code>([a-z2-7-]+)</code></li>", enabled.text)
    assert len(backups) == 10
    # signing in again asks for the second factor
    fresh = d.browser()
    asked = d.sign_in(fresh, d.url("app.localhost", "/t"), email)
    assert asked.status == 200 and 'id="totp"' in asked.text
    csrf = csrf_of(fresh, d)
    replay = fresh.go(f"{d.login}/login/totp", "POST", {"csrf": csrf, "code": code})
    assert replay.status == 401  # the enrolment's code was used: no replay
    done = fresh.go(f"{d.login}/login/totp", "POST", {"csrf": csrf, "code": backups[0]})
    assert done.status == 200 and json.loads(done.body)["uri"] == "/t"
    # a backup code works once
    third = d.browser()
    d.sign_in(third, d.url("app.localhost", "/"), email)
    used = third.go(f"{d.login}/login/totp", "POST", {"csrf": csrf_of(third, d), "code": backups[0]})
    assert used.status == 401

    def outcomes() -> set[str]:
        access = d.api("GET", f"/access-log?kind=signin&user_id={user}")["items"]
        return {e["outcome"] for e in access}

    wait_for(lambda: outcomes() >= {"success", "failure"}, "the sign-in events in the access log")


def test_a_password_reset_link_sets_a_new_password_once(d):
    email = "rita@example.com"
    user = d.user(email, "Member")
    made = d.api("POST", f"/orgs/{d.org}/users/{user}/password-reset")
    link = f"{d.login}{made['path']}"
    browser = d.browser()
    page = browser.go(link)
    assert page.status == 200 and email in page.text
    token = parse_qs(urlsplit(link).query)["token"][0]
    csrf = csrf_of(browser, d)
    short = browser.go(f"{d.login}/reset", "POST", {"csrf": csrf, "token": token, "password": "short"})
    assert short.status == 400
    done = browser.go(
        f"{d.login}/reset", "POST", {"csrf": csrf, "token": token, "password": "a brand new one"}
    )
    assert done.status == 200 and 'name="kokoa-csrf"' in done.text  # the console, signed in
    assert email in browser.go(f"{d.login}/account").text
    assert browser.go(link).status == 404  # used
    assert d.sign_in(d.browser(), d.url("app.localhost", "/"), email, "a brand new one").status == 200
    assert d.sign_in(d.browser(), d.url("app.localhost", "/"), email, PASSWORD).status == 401


def test_an_invitation_link_sets_the_password_and_signs_in(d):
    made = d.api(
        "POST", f"/orgs/{d.org}/invitations", {"email": "ivy@example.com", "role_id": d.roles["Member"]}
    )
    browser = d.browser()
    page = browser.go(f"{d.login}{made['path']}")
    assert page.status == 200 and "ivy@example.com" in page.text
    token = parse_qs(urlsplit(made["path"]).query)["token"][0]
    done = browser.go(
        f"{d.login}/invite",
        "POST",
        {"csrf": csrf_of(browser, d), "token": token, "password": "ivy's password"},
    )
    assert done.status == 200 and 'name="kokoa-csrf"' in done.text  # the console
    assert "Signed in as ivy@example.com" in browser.go(f"{d.login}/account").text
    assert browser.go(d.url("app.localhost", "/ivy")).status == 200  # signed in already: no form
    assert d.api("GET", f"/users/{made['user']['id']}")["status"] == "active"
