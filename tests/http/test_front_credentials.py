"""Kokoa credentials never leave the gateway, and identity-style headers from clients never reach an
upstream: the head checks and the forwarded head (pure code), then the front with a real AccessGate
through a real tunnel and edge to a twisted.web upstream that echoes what it received.

- a request with more than one Authorization header is refused (400, the connection closed) before
  anything is forwarded;
- a Kokoa token (``kk_`` API key, ``kks_`` share token, any case) in the Authorization header, or in
  any instance of the configured bearer header (``_`` spelled or not), is not forwarded, whatever
  credential the gate used and whether the resource is public;
- other Authorization values pass unchanged;
- ``[auth] strip_headers`` (exact names and ``*`` prefixes) are removed from every request.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted as pt
from http_rig import Echo, exchange, http_resource, listen_upstream, parse_responses, start_rig, target
from twisted.internet import defer, reactor, threads

from kokoa.auth._gate import AccessGate
from kokoa.auth._settings import AuthSettings
from kokoa.http._messages import BadRequest, check_request, holds_kokoa_token, upstream_request_head
from kokoa.policy import PolicySet

HOST = (b"Host", b"app.test")
KEY = "kk_0123456789abcdef_0123456789abcdefghij"
SHARE = "kks_0123456789abcdefghijklmnopqrstuv"


def check(headers) -> object:
    return check_request(b"GET", b"/", "1.1", [HOST, *headers], True)


def forwarded_headers(head, **kw) -> list[tuple[bytes, bytes]]:
    raw = upstream_request_head(head, "192.0.2.7", "https", **kw)
    lines = raw.split(b"\r\n")[1:-2]
    return [tuple(line.split(b": ", 1)) for line in lines]


# ---------------------------------------------------------------- the request head (pure code)


@pytest.mark.sans_io
def test_one_authorization_header_is_kept_on_the_head():
    head = check([(b"authorization", b"Basic dTpw")])
    assert head.authorization == b"Basic dTpw"
    assert check([]).authorization is None


@pytest.mark.sans_io
@pytest.mark.parametrize(
    "pair",
    [
        [(b"Authorization", b"Basic dTpw"), (b"Authorization", b"Bearer " + KEY.encode())],
        [(b"Authorization", b"Bearer a"), (b"authorization", b"Bearer b")],
        [(b"AUTHORIZATION", b""), (b"Authorization", b"")],
    ],
)
def test_two_authorization_headers_are_refused(pair):
    with pytest.raises(BadRequest) as refused:
        check([pair[0], (b"Accept", b"*/*"), pair[1]])
    assert refused.value.status == 400 and "more than one Authorization" in refused.value.detail


@pytest.mark.sans_io
@pytest.mark.parametrize(
    ("value", "kokoa"),
    [
        (b"Bearer " + KEY.encode(), True),
        (b"Bearer " + SHARE.encode(), True),
        (b"bearer KK_abc", True),
        (b"BEARER Kks_abc", True),
        (b"Bearer\tkk_abc", True),
        (b"  Bearer   kk_abc  ", True),
        (b"kk_abc", True),  # (the value of a custom bearer header)
        (b'Token token="kk_abc"', True),
        (b"Basic dTpw, Bearer kk_abc", True),
        (b"Basic dTpw", False),
        (b"Basic a2tfYWJj", False),  # base64 of "kk_abc": not a token the upstream could use as one
        (b"Bearer eyJhbGciOi.eyJzdWIi.kk_sig", False),  # a JWT whose signature starts so
        (b"Bearer other_kk_token", False),
        (b"Bearer mykk_x", False),
        (b"", False),
    ],
)
def test_what_counts_as_a_kokoa_token(value, kokoa):
    assert holds_kokoa_token(value) is kokoa


@pytest.mark.sans_io
def test_headers_with_kokoa_tokens_are_not_forwarded():
    tokens = frozenset({b"authorization", b"x-kokoa-token"})
    head = check(
        [
            (b"Authorization", b"bearer KK_x"),
            (b"X-Kokoa-Token", KEY.encode()),
            (b"x_kokoa_token", SHARE.encode()),  # many servers read it as X-Kokoa-Token
            (b"X-Kokoa-Token", b"not-ours"),
            (b"X-Other", KEY.encode()),  # not a header the gate reads tokens from: as it is
        ]
    )
    headers = forwarded_headers(head, token_headers=tokens)
    assert (b"X-Kokoa-Token", b"not-ours") in headers
    assert (b"X-Other", KEY.encode()) in headers
    assert not any(n.lower() in (b"authorization", b"x_kokoa_token") for n, _ in headers)
    assert [v for n, v in headers if n.lower() == b"x-kokoa-token"] == [b"not-ours"]
    # other Authorization values pass unchanged
    assert (b"Authorization", b"Basic dTpw") in forwarded_headers(
        check([(b"Authorization", b"Basic dTpw")]), token_headers=tokens
    )


@pytest.mark.sans_io
def test_stripped_headers_by_name_and_prefix_in_any_spelling():
    head = check(
        [
            (b"X-Forwarded-User", b"admin"),
            (b"x_remote_user", b"admin"),
            (b"X-Auth-Request-Email", b"x"),
            (b"x-auth-request-user", b"x"),
            (b"X_Auth_Request_Groups", b"x"),
            (b"X-Auth-Requested", b"kept"),  # not under the prefix "x-auth-request-"
            (b"X-Kept", b"1"),
        ]
    )
    headers = forwarded_headers(
        head, drop=frozenset({b"x-forwarded-user", b"x-remote-user"}), drop_prefixes=(b"x-auth-request-",)
    )
    names = [n.lower() for n, _ in headers]
    assert b"x-auth-requested" in names and b"x-kept" in names
    assert not {b"x-forwarded-user", b"x_remote_user", b"x-auth-request-email"} & set(names)
    assert not any(n.replace(b"_", b"-").startswith(b"x-auth-request-") for n in names)


# ---------------------------------------------------------------- the front with a real gate


def make_gate(**settings) -> AccessGate:
    gate = AccessGate(AuthSettings(**settings), lambda: None, reactor, https_port=None)
    gate.reload(PolicySet.build(public=["res_app"]))
    return gate


@pt.async_yield_fixture
async def rig():
    echo = Echo()

    async def resources(rig):
        port, number = await listen_upstream(echo)
        rig.ports.append(port)
        rig.upstreams["echo"] = echo
        return [http_resource("app", "app.test", target("a", number))]

    rig = await start_rig(lambda rig: defer.ensureDeferred(resources(rig)))
    rig.front.gate = make_gate()
    yield rig
    await rig.stop()


def request(port: int, *headers: tuple[str, str], path: str = "/x") -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: app.test", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    return exchange(port, ("\r\n".join(lines) + "\r\n\r\n").encode())


async def seen_by_upstream(rig, *headers: tuple[str, str]) -> dict[str, list[str]]:
    raw = await threads.deferToThread(request, rig.http_port, *headers)
    ((status, _, body),) = parse_responses(raw)
    assert status == 200, raw
    return json.loads(body)["headers"]


def no_kokoa_token(seen: dict[str, list[str]]) -> bool:
    values = " ".join(v for vs in seen.values() for v in vs).lower()
    return "kk_" not in values and "kks_" not in values


@pt.ensureDeferred
async def test_a_kokoa_token_on_a_public_resource_is_not_forwarded(rig):
    for value in (f"Bearer {KEY}", f"Bearer {SHARE}", "bearer KK_x", "BEARER kks_X", "Bearer\tkk_x"):
        seen = await seen_by_upstream(rig, ("Authorization", value))
        assert "authorization" not in seen and no_kokoa_token(seen), value
    seen = await seen_by_upstream(rig, ("authorization", "Basic dTpw"))
    assert seen["authorization"] == ["Basic dTpw"]
    seen = await seen_by_upstream(rig, ("Authorization", "Bearer someone-elses-token"))
    assert seen["authorization"] == ["Bearer someone-elses-token"]


@pt.ensureDeferred
async def test_two_authorization_headers_are_refused_before_anything_is_forwarded(rig):
    echo = rig.upstreams["echo"]
    before = len(echo.requests)
    for pair in (
        (("Authorization", "Basic dTpw"), ("Authorization", f"Bearer {KEY}")),
        (("Authorization", f"Bearer {KEY}"), ("authorization", f"Bearer {KEY}")),
    ):
        raw = await threads.deferToThread(request, rig.http_port, *pair)
        ((status, headers, body),) = parse_responses(raw)
        assert status == 400 and headers["connection"] == "close"
        assert b"more than one Authorization" in body
    assert len(echo.requests) == before


@pt.ensureDeferred
async def test_identity_style_headers_are_stripped(rig):
    seen = await seen_by_upstream(
        rig,
        ("X-Forwarded-User", "admin"),
        ("X-Remote-User", "admin"),
        ("x-auth-request-email", "x"),
        ("X_Auth_Request_User", "x"),
        ("Remote-User", "root"),
        ("X-Kept", "1"),
    )
    assert seen["x-kept"] == ["1"]
    for name in ("x-forwarded-user", "x-remote-user", "x-auth-request-email", "x_auth_request_user"):
        assert name not in seen, name
    assert "remote-user" not in seen


@pt.ensureDeferred
async def test_a_configured_bearer_header_and_strip_list(rig):
    rig.front.gate = make_gate(bearer_header="X-Kokoa-Token", strip_headers=["X-Secret-*", "X-Who"])
    seen = await seen_by_upstream(
        rig,
        ("X-Kokoa-Token", KEY),
        ("X_Kokoa_Token", SHARE),
        ("Authorization", f"Bearer {KEY}"),  # not the bearer header here, and still not forwarded
        ("X-Secret-Thing", "1"),
        ("X-Who", "admin"),
        ("X-Forwarded-User", "admin"),  # not in this list: it passes
    )
    assert no_kokoa_token(seen)
    assert "x-secret-thing" not in seen and "x-who" not in seen
    assert seen["x-forwarded-user"] == ["admin"]
    seen = await seen_by_upstream(rig, ("X-Kokoa-Token", "not-ours"), ("Authorization", "Basic dTpw"))
    assert seen["x-kokoa-token"] == ["not-ours"] and seen["authorization"] == ["Basic dTpw"]
