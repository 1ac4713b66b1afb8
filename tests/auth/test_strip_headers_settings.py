"""``[auth] strip_headers``: parsed and checked, and what the gate makes of it (the names and prefixes the
front removes from every client request, and the headers it never forwards a Kokoa token in)."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet import task

from kokoa.auth._gate import AccessGate
from kokoa.auth._settings import DEFAULT_STRIP_HEADERS, AuthSettings, parse_auth
from kokoa.config import ConfigError

pytestmark = pytest.mark.sans_io


def parse(**table) -> AuthSettings:
    return parse_auth(table, Path("."), "gateway.toml [auth]")


def test_the_default_list():
    assert parse().strip_headers == ["X-Forwarded-User", "X-Remote-User", "X-Auth-Request-*"]
    assert AuthSettings().strip_headers == list(DEFAULT_STRIP_HEADERS)
    assert AuthSettings().strip_headers is not AuthSettings().strip_headers  # no shared list


@pytest.mark.parametrize(
    "names",
    [
        [],
        ["X-Forwarded-User"],
        ["X-Auth-Request-*", "x-whoever", "X-Team*", "X1"],
        ["Context-Id", "Hosted-By"],  # names that only begin like Content-Length and Host
    ],
)
def test_good_lists(names):
    assert parse(strip_headers=names).strip_headers == names


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("X-Forwarded-User", "must be a list of header names"),
        ([1], "must be a list of header names"),
        ([""], "'' is not a header name"),
        (["*"], "'*' is not a header name"),
        (["X_Forwarded_User"], "no _"),
        (["X-Forwarded User"], "is not a header name"),
        (["X-*-User"], "is not a header name"),
        (["-X"], "is not a header name"),
        (["X-Us\u00e9r"], "is not a header name"),
        (["X-A**"], "is not a header name"),
        (["Content-Length"], "would remove Host, Content-Length or Transfer-Encoding"),
        (["host"], "would remove"),
        (["Transfer-*"], "would remove"),
        (["Content-*"], "would remove"),
        (["C*"], "would remove"),
    ],
)
def test_bad_lists_are_refused_with_a_clear_message(value, message):
    with pytest.raises(ConfigError) as refused:
        parse(strip_headers=value)
    assert str(refused.value).startswith("gateway.toml [auth]: strip_headers")
    assert message in str(refused.value)


def gate(**settings) -> AccessGate:
    return AccessGate(AuthSettings(**settings), lambda: None, task.Clock(), https_port=None)


def test_the_gate_splits_names_and_prefixes():
    default = gate()
    assert {b"x-forwarded-user", b"x-remote-user", b"remote-user", b"remote-groups"} <= default.drop_headers
    assert default.drop_prefixes == (b"x-auth-request-",)
    assert default.token_headers == {b"authorization"} and not default.custom_bearer
    custom = gate(strip_headers=["X-Who", "X-Team-*"], bearer_header="X-Kokoa-Token")
    assert b"x-who" in custom.drop_headers and b"x-forwarded-user" not in custom.drop_headers
    assert custom.drop_prefixes == (b"x-team-",)
    assert custom.token_headers == {b"authorization", b"x-kokoa-token"} and custom.custom_bearer
    assert gate(strip_headers=[]).drop_prefixes == ()
