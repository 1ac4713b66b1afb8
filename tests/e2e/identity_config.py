"""The ``[auth]`` tables the identity e2e modules give their gateways: mail through a test SMTP
server, single sign-on with the test OpenID Connect provider."""

from __future__ import annotations

CLIENT_ID, CLIENT_SECRET = "kokoa-gateway", "s3cret-for-tests"


def mail_config(smtp) -> str:
    """``[auth.mail]`` for the aiosmtpd server ``smtp`` (tests/auth/smtp_server.py)."""
    return "\n".join(
        [
            "[auth.mail]",
            f'host = "{smtp.host}"',
            f"port = {smtp.port}",
            'security = "none"',
            'from_address = "kokoa@example.com"',
        ]
    )


def oidc_config(name: str, issuer: str, *, provision: bool = True, end_session: bool | None = None) -> str:
    """An ``[[auth.oidc]]`` provider ``name`` (shown as "<Name> SSO") at ``issuer``; ``provision``:
    new users join the default organization as Members."""
    lines = [
        "[[auth.oidc]]",
        f'name = "{name}"',
        f'display_name = "{name.title()} SSO"',
        f'issuer = "{issuer}"',
        f'client_id = "{CLIENT_ID}"',
        f'client_secret = "{CLIENT_SECRET}"',
    ]
    if provision:
        lines += ['provision_org = "default"', 'default_role = "Member"']
    if end_session is not None:
        lines.append(f"end_session = {'true' if end_session else 'false'}")
    return "\n".join(lines)
