"""OIDCClient against a real OpenID Connect provider (authlib's, in a subprocess), and its refusals."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import time
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Callable
from urllib.parse import parse_qs, urlsplit

import pytest
import pytest_twisted
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from oidc_fixtures import USERS, running_provider, sign_in
from twisted.internet import reactor, threads
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from kokoa.auth._oidc import (
    OIDCClaims,
    OIDCClient,
    OIDCError,
    OIDCProviderConfig,
    new_code_verifier,
    new_nonce,
    new_state,
)
from kokoa.pki import ensure_dev_ca

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # authlib.jose: joserfc will replace it
    from authlib.jose import JsonWebKey, JsonWebToken

CLIENT_ID = "kokoa-gateway"
CLIENT_SECRET = "s3cret with spaces & symbols"
REDIRECT_URI = "http://127.0.0.1:9/auth/oidc/test/callback"
ADA, BOB = USERS


@pytest.fixture(scope="module")
def issuer(tmp_path_factory) -> str:
    with running_provider(
        tmp_path_factory.mktemp("oidc"),
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri=REDIRECT_URI,
    ) as url:
        yield url


def make_client(issuer: str, **overrides) -> OIDCClient:
    options = {k: overrides.pop(k) for k in ("timeout", "now") if k in overrides}
    fields = {"name": "test", "issuer": issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    return OIDCClient(OIDCProviderConfig(**(fields | overrides)), reactor, **options)


async def sign_in_and_exchange(
    client: OIDCClient, user: dict = ADA, *, ca_file: str | None = None, **exchange_overrides
) -> OIDCClaims:
    """The whole code flow, with the login form posted as a browser would post it."""
    state, nonce, verifier = new_state(), new_nonce(), new_code_verifier()
    await client.discover()
    url = client.authorization_url(REDIRECT_URI, state, nonce, verifier)
    callback = await sign_in(url, user["email"], user["password"], ca_file=ca_file)
    assert callback["state"] == state
    arguments = {"redirect_uri": REDIRECT_URI, "code_verifier": verifier, "nonce": nonce} | exchange_overrides
    return await client.exchange(callback["code"], **arguments)


# -- the flow ---------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_the_code_flow_yields_the_verified_claims_of_who_signed_in(issuer):
    client = make_client(issuer, display_name="Test IdP")
    claims = await sign_in_and_exchange(client)
    assert claims.email == ADA["email"]
    assert claims.email_verified is True
    assert claims.name == "Ada Lovelace"
    assert claims.subject.startswith("u-")
    # The subject is stable; another user is another subject, and an unverified email says so.
    assert (await sign_in_and_exchange(client)).subject == claims.subject
    bob = await sign_in_and_exchange(client, BOB)
    assert (bob.email, bob.email_verified, bob.name) == (BOB["email"], False, "Bob")
    assert bob.subject != claims.subject


@pytest_twisted.ensureDeferred
async def test_the_authorization_url_asks_for_a_code_with_pkce_s256(issuer):
    client = make_client(issuer, scopes=("openid", "email"))
    with pytest.raises(RuntimeError, match="discover"):
        client.authorization_url(REDIRECT_URI, "s", "n", "v" * 43)
    await client.discover()
    verifier = new_code_verifier()
    url = client.authorization_url(REDIRECT_URI, "the-state", "the-nonce", verifier)
    assert url.startswith(issuer + "/authorize?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query == {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid email",
        "state": "the-state",
        "nonce": "the-nonce",
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
    }
    assert verifier not in url
    assert len({new_state(), new_state(), new_nonce(), new_code_verifier()}) == 4


@pytest_twisted.ensureDeferred
async def test_client_secret_post_when_the_provider_supports_only_that(tmp_path):
    with running_provider(
        tmp_path,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri=REDIRECT_URI,
        extra_args=["--token-auth-method=client_secret_post"],
    ) as issuer:
        client = make_client(issuer)
        assert (await sign_in_and_exchange(client)).email == ADA["email"]
        assert client.metadata["token_endpoint_auth_methods_supported"] == ["client_secret_post"]


@pytest_twisted.ensureDeferred
async def test_the_email_comes_from_userinfo_when_the_id_token_lacks_it(tmp_path):
    with running_provider(
        tmp_path,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri=REDIRECT_URI,
        extra_args=["--no-email-in-id-token"],
    ) as issuer:
        client = make_client(issuer)
        id_tokens = record_id_tokens(client)
        claims = await sign_in_and_exchange(client, BOB)
        assert "email" not in payload_of(id_tokens[0])
        assert (claims.email, claims.email_verified, claims.name) == (BOB["email"], False, "Bob")


@pytest_twisted.ensureDeferred
async def test_https_provider_trusted_through_ca_file_and_refused_without(tmp_path):
    creds = ensure_dev_ca(tmp_path / "pki")
    with running_provider(
        tmp_path,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri=REDIRECT_URI,
        tls=(creds.cert_path, creds.key_path, creds.ca_path),
    ) as issuer:
        assert issuer.startswith("https://127.0.0.1:")
        client = make_client(issuer, ca_file=creds.ca_path)
        assert (await sign_in_and_exchange(client, ca_file=creds.ca_path)).email == ADA["email"]
        with pytest.raises(OIDCError, match="TLS handshake failed"):
            await make_client(issuer).discover()  # the system's CAs do not know the development CA


@pytest_twisted.ensureDeferred
async def test_id_tokens_signed_with_ed25519_under_either_jose_name_are_accepted(tmp_path):
    for alg in ("EdDSA", "Ed25519"):  # RFC 9864 named it Ed25519; providers may still say EdDSA
        with running_provider(
            tmp_path / alg,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            redirect_uri=REDIRECT_URI,
            extra_args=[f"--signing-alg={alg}"],
        ) as issuer:
            client = make_client(issuer)
            id_tokens = record_id_tokens(client)
            claims = await sign_in_and_exchange(client)
            assert claims.email == ADA["email"] and claims.email_verified
            assert header_of(id_tokens[0])["alg"] == alg
            assert client.metadata["id_token_signing_alg_values_supported"] == [alg]
            (published,) = client._keys.keys
            assert (published.tokens["kty"], published.tokens["crv"]) == ("OKP", "Ed25519")


# -- refusals by the provider -----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_wrong_client_secret_is_refused(issuer):
    with pytest.raises(OIDCError, match=r"refused the sign-in code.*invalid_client") as caught:
        await sign_in_and_exchange(make_client(issuer, client_secret="not the secret"))
    assert str(caught.value).startswith("Signing in with test failed: ")


@pytest_twisted.ensureDeferred
async def test_a_wrong_code_verifier_or_a_reused_code_is_refused(issuer):
    client = make_client(issuer)
    with pytest.raises(OIDCError, match="invalid_grant"):
        await sign_in_and_exchange(client, code_verifier=new_code_verifier())
    state, nonce, verifier = new_state(), new_nonce(), new_code_verifier()
    await client.discover()
    callback = await sign_in(
        client.authorization_url(REDIRECT_URI, state, nonce, verifier), **credentials(ADA)
    )
    await client.exchange(callback["code"], REDIRECT_URI, verifier, nonce)
    with pytest.raises(OIDCError, match="invalid_grant"):
        await client.exchange(callback["code"], REDIRECT_URI, verifier, nonce)


# -- refusals by the client -------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_wrong_nonce_is_refused(issuer):
    with pytest.raises(OIDCError, match="wrong nonce"):
        await sign_in_and_exchange(make_client(issuer), nonce=new_nonce())


@pytest_twisted.ensureDeferred
async def test_an_expired_or_future_id_token_is_refused(issuer):
    later = make_client(issuer, now=lambda: time.time() + 3600 + 120)  # the provider's tokens last 1 h
    with pytest.raises(OIDCError, match="expired"):
        await sign_in_and_exchange(later)
    earlier = make_client(issuer, now=lambda: time.time() - 300)
    with pytest.raises(OIDCError, match="issued in the future"):
        await sign_in_and_exchange(earlier)
    # Within the leeway of 60 s, both are fine.
    assert (await sign_in_and_exchange(make_client(issuer, now=lambda: time.time() + 3600 + 30))).email
    assert (await sign_in_and_exchange(make_client(issuer, now=lambda: time.time() - 30))).email


@pytest_twisted.ensureDeferred
async def test_a_tampered_id_token_is_refused(issuer):
    client = make_client(issuer)
    id_tokens = record_id_tokens(client)
    await sign_in_and_exchange(client)
    genuine = id_tokens[0]
    nonce = payload_of(genuine)["nonce"]
    assert (await client.verify_id_token(genuine, nonce))["email"] == ADA["email"]
    provider_kid = header_of(genuine)["kid"]

    header, _, signature = genuine.split(".")
    forged_payload = _b64(json.dumps(payload_of(genuine) | {"email": "mallory@example.com"}).encode())
    own_key = JsonWebKey.generate_key("RSA", 2048, {"kid": "not-published"}, is_private=True)
    impostor = JsonWebKey.import_key(own_key.as_dict(is_private=True) | {"kid": provider_kid})
    payload = payload_of(genuine)
    for token, reason in (
        (f"{header}.{forged_payload}.{signature}", "bad signature"),
        (sign(payload, own_key), "key it does not publish"),
        (sign(payload, impostor), "bad signature"),
        (sign(payload, CLIENT_SECRET.encode(), kid=provider_kid, alg="HS256"), "unaccepted algorithm"),
        (unsigned(payload, kid=provider_kid), "unaccepted algorithm"),
        (genuine[:-4], "bad signature"),
        ("not.a-token", "malformed"),
    ):
        with pytest.raises(OIDCError, match=reason):
            await client.verify_id_token(token, nonce)


@pytest_twisted.ensureDeferred
async def test_issuer_mismatch_in_discovery_is_refused(issuer):
    # Same server, other name: the document it serves names 127.0.0.1, not localhost.
    port = urlsplit(issuer).port
    with pytest.raises(OIDCError, match=rf"names the issuer 'http://127\.0\.0\.1:{port}', not the"):
        await make_client(f"http://localhost:{port}").discover()
    with pytest.raises(OIDCError, match="names the issuer"):
        await make_client(issuer + "/").discover()  # issuers compare exactly


@pytest_twisted.ensureDeferred
async def test_an_unreachable_provider_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(OIDCError, match=rf"cannot reach its discovery document at http://127.0.0.1:{port} "):
        await make_client(f"http://127.0.0.1:{port}").discover()


# -- ID token checks against a provider whose key we hold ---------------------------------------

KEY = JsonWebKey.generate_key("RSA", 2048, {"kid": "k1"}, is_private=True)
NEW_KEY = JsonWebKey.generate_key("RSA", 2048, {"kid": "k2"}, is_private=True)


@pytest_twisted.ensureDeferred
async def test_id_token_claims_are_checked_one_by_one():
    async with static_provider() as (url, _):
        client = make_client(url, now=lambda: 1_000_000)
        good = {"iss": url, "aud": CLIENT_ID, "sub": "s1", "iat": 1_000_000, "exp": 1_000_300, "nonce": "n"}
        assert (await client.verify_id_token(sign(good, KEY), "n"))["sub"] == "s1"
        assert await client.verify_id_token(
            sign(good | {"aud": [CLIENT_ID, "x"], "azp": CLIENT_ID}, KEY), "n"
        )
        for claims, reason in (
            (good | {"iss": "https://evil.example"}, "issued by 'https://evil.example'"),
            (good | {"aud": "someone-else"}, "another application"),
            (good | {"aud": ["someone-else"]}, "another application"),
            (good | {"azp": "someone-else"}, "authorized party"),
            (good | {"aud": [CLIENT_ID, "x"]}, "several audiences"),
            (good | {"sub": ""}, "no subject"),
            (good | {"exp": 1_000_000 - 61}, "expired"),
            (good | {"iat": 1_000_061}, "in the future"),
            (good | {"exp": "soon"}, "valid expiry"),
            ({k: v for k, v in good.items() if k != "nonce"}, "wrong nonce"),
        ):
            with pytest.raises(OIDCError, match=reason):
                await client.verify_id_token(sign(claims, KEY), "n")


@pytest_twisted.ensureDeferred
async def test_an_unknown_key_refetches_the_key_set_once():
    async with static_provider() as (url, server):
        client = make_client(url, now=lambda: 1_000_000)
        await client.discover()
        assert server.hits[b"/jwks"] == 1
        claims = {"iss": url, "aud": CLIENT_ID, "sub": "s", "iat": 1_000_000, "exp": 1_000_300, "nonce": "n"}
        server.routes[b"/jwks"] = {"keys": [jwk(NEW_KEY)]}  # the provider rotated its key
        assert await client.verify_id_token(sign(claims, NEW_KEY), "n")
        assert server.hits[b"/jwks"] == 2
        assert await client.verify_id_token(sign(claims, NEW_KEY), "n")
        assert server.hits[b"/jwks"] == 2  # known now: no refetch
        with pytest.raises(OIDCError, match="key it does not publish"):
            await client.verify_id_token(sign(claims, KEY), "n")  # the old key is gone
        assert server.hits[b"/jwks"] == 3


ED_KEY = JsonWebKey.generate_key("OKP", "Ed25519", {"kid": "ed1"}, is_private=True)
ED448_KEY = JsonWebKey.generate_key("OKP", "Ed448", {"kid": "ed448"}, is_private=True)


@pytest_twisted.ensureDeferred
async def test_ed25519_and_eddsa_name_one_algorithm_for_an_ed25519_key_only():
    async with static_provider() as (url, server):
        claims = {"iss": url, "aud": CLIENT_ID, "sub": "s", "iat": 1_000_000, "exp": 1_000_300, "nonce": "n"}
        for published_as in ("EdDSA", "Ed25519", None):
            published = ED_KEY.as_dict(is_private=False, use="sig")
            if published_as is not None:
                published["alg"] = published_as
            server.routes[b"/jwks"] = {"keys": [published, jwk(KEY)]}
            client = make_client(url, now=lambda: 1_000_000)
            for alg in ("EdDSA", "Ed25519"):
                assert (await client.verify_id_token(sign(claims, ED_KEY, alg=alg), "n"))["sub"] == "s"
            # an RS256 token under the Ed25519 key's kid: that key cannot have signed it
            with pytest.raises(OIDCError, match="does not match the signing key"):
                await client.verify_id_token(relabel(sign(claims, KEY), alg="RS256", kid="ed1"), "n")
        # Ed25519 means that curve only: an Ed448 key signs EdDSA tokens, never Ed25519 ones
        server.routes[b"/jwks"] = {"keys": [ED448_KEY.as_dict(is_private=False, use="sig")]}
        client = make_client(url, now=lambda: 1_000_000)
        assert await client.verify_id_token(sign(claims, ED448_KEY, alg="EdDSA"), "n")
        with pytest.raises(OIDCError, match="bad signature"):
            await client.verify_id_token(
                relabel(sign(claims, ED448_KEY, alg="EdDSA"), alg="Ed25519", kid="ed448"), "n"
            )
        # and an RSA key never verifies a token that says Ed25519
        as_ed25519 = relabel(sign(claims, KEY), alg="Ed25519", kid="k1")
        server.routes[b"/jwks"] = {"keys": [jwk(KEY)]}
        with pytest.raises(OIDCError, match="does not match the signing key"):
            await make_client(url, now=lambda: 1_000_000).verify_id_token(as_ed25519, "n")
        server.routes[b"/jwks"] = {"keys": [{k: v for k, v in jwk(KEY).items() if k != "alg"}]}
        with pytest.raises(OIDCError, match="does not match the signing key"):  # (by its type)
            await make_client(url, now=lambda: 1_000_000).verify_id_token(as_ed25519, "n")


# -- ending the provider's session at sign-out ------------------------------------------------

SIGNED_OUT = "https://login.example.com/signed-out"


@pytest_twisted.ensureDeferred
async def test_the_end_session_url_ends_the_providers_session_and_comes_back(issuer):
    off = make_client(issuer)  # end_session defaults to false: no URL, nothing fetched
    assert await off.end_session_url(SIGNED_OUT) is None and off.metadata is None
    client = make_client(issuer, end_session=True)
    url = await client.end_session_url(SIGNED_OUT)  # discovers first
    assert client.metadata["end_session_endpoint"] == issuer + "/logout"
    assert url.startswith(issuer + "/logout?")
    assert query_of(url) == {"client_id": CLIENT_ID, "post_logout_redirect_uri": SIGNED_OUT}
    url = await client.end_session_url(SIGNED_OUT, id_token_hint="the.id.token", state="st")
    assert query_of(url) == {
        "client_id": CLIENT_ID,
        "post_logout_redirect_uri": SIGNED_OUT,
        "id_token_hint": "the.id.token",
        "state": "st",
    }
    # the provider takes it and sends the browser back
    status, location = await threads.deferToThread(get_location, url)
    assert (status, location) == (302, SIGNED_OUT + "?state=st")
    with pytest.raises(ValueError, match="post_logout_redirect_uri"):
        await client.end_session_url("http://login.example.com/signed-out")


@pytest_twisted.ensureDeferred
async def test_no_end_session_url_without_the_endpoint_and_none_that_is_unsafe():
    async with static_provider() as (url, server):
        discovery = server.routes[b"/.well-known/openid-configuration"]
        assert await make_client(url, end_session=True).end_session_url(SIGNED_OUT) is None
        server.routes[b"/.well-known/openid-configuration"] = discovery | {
            "end_session_endpoint": "https://idp.example.com/logout?tenant=t1&client_id=forged#x"
        }
        made = await make_client(url, end_session=True).end_session_url(SIGNED_OUT, state="s")
        assert made.startswith("https://idp.example.com/logout?") and "#" not in made
        assert query_of(made) == {
            "tenant": "t1",
            "client_id": CLIENT_ID,
            "post_logout_redirect_uri": SIGNED_OUT,
            "state": "s",
        }
        for endpoint, reason in (
            ("http://idp.example.com/logout", "unsafe.*must use https"),
            (42, "no valid end_session_endpoint"),
        ):
            server.routes[b"/.well-known/openid-configuration"] = discovery | {
                "end_session_endpoint": endpoint
            }
            with pytest.raises(OIDCError, match=reason):
                await make_client(url, end_session=True).end_session_url(SIGNED_OUT)
            assert await make_client(url).end_session_url(SIGNED_OUT) is None  # off: not even looked at


@pytest_twisted.ensureDeferred
async def test_bad_discovery_documents_are_refused():
    async with static_provider() as (url, server):
        discovery = server.routes[b"/.well-known/openid-configuration"]
        for document, reason in (
            (discovery | {"token_endpoint": "http://idp.example.com/token"}, "unsafe.*must use https"),
            (discovery | {"jwks_uri": None}, "no valid jwks_uri"),
            (discovery | {"response_types_supported": ["id_token"]}, "authorization code flow"),
            (discovery | {"token_endpoint_auth_methods_supported": ["private_key_jwt"]}, "neither"),
            (["not", "an", "object"], "not a JSON object"),
            (b"<html>", "did not answer with JSON"),
        ):
            server.routes[b"/.well-known/openid-configuration"] = document
            with pytest.raises(OIDCError, match=reason):
                await make_client(url).discover()
        server.routes[b"/.well-known/openid-configuration"] = None
        with pytest.raises(OIDCError, match="HTTP 404"):
            await make_client(url).discover()


@pytest_twisted.ensureDeferred
async def test_oversized_or_slow_responses_are_refused():
    async with static_provider() as (url, server):
        route = b"/.well-known/openid-configuration"
        server.routes[route] = b" " * (1024 * 1024 + 1)  # with a Content-Length
        with pytest.raises(OIDCError, match="more than 1024 KiB"):
            await make_client(url).discover()
        server.routes[route] = chunked(b" " * (64 * 1024), times=17)  # chunked, no length
        with pytest.raises(OIDCError, match="more than 1024 KiB"):
            await make_client(url).discover()
        server.routes[route] = never
        with pytest.raises(OIDCError, match=r"did not answer within 0\.2 s"):
            await make_client(url, timeout=0.2).discover()


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.sans_io
def test_the_configuration_is_validated():
    base = {"name": "corp-sso", "client_id": "id", "client_secret": "secret"}
    for issuer in (
        "https://idp.example.com",
        "http://localhost:8080",
        "http://127.0.0.1:1/x",
        "http://[::1]:9",
    ):
        assert OIDCProviderConfig(issuer=issuer, **base).issuer == issuer
    config = OIDCProviderConfig(
        issuer="https://idp.example.com/realms/x", **base, allowed_domains=("Example.COM",)
    )
    assert config.display_name == "corp-sso"
    assert config.scopes == ("openid", "email", "profile")
    assert config.discovery_url == "https://idp.example.com/realms/x/.well-known/openid-configuration"
    assert (config.provision_org, config.default_role, config.ca_file) == (None, "Member", None)
    assert config.accepts_email("ada@example.com") and not config.accepts_email("ada@example.org")
    assert "secret" not in repr(config)
    assert config.end_session is False
    assert OIDCProviderConfig(issuer="https://idp.example.com", **base, end_session=True).end_session
    with pytest.raises(ValueError, match="end_session"):
        OIDCProviderConfig(issuer="https://idp.example.com", **base, end_session="yes")
    with pytest.raises(ValueError, match="must use https: plain http is only allowed to a loopback host"):
        OIDCProviderConfig(issuer="http://idp.example.com", **base)
    for issuer in ("ftp://idp.example.com", "https://", "idp.example.com", "https://idp.example.com?x=1"):
        with pytest.raises(ValueError, match="issuer"):
            OIDCProviderConfig(issuer=issuer, **base)
    for bad in ({"name": "Corp SSO"}, {"name": "x" * 33}, {"client_secret": ""}, {"scopes": ("email",)}):
        with pytest.raises(ValueError):
            OIDCProviderConfig(**(base | {"issuer": "https://idp.example.com"} | bad))


# -- helpers ----------------------------------------------------------------------------------


def credentials(user: dict) -> dict:
    return {"email": user["email"], "password": user["password"]}


def query_of(url: str) -> dict[str, str]:
    pairs = parse_qs(urlsplit(url).query, keep_blank_values=True)
    assert all(len(values) == 1 for values in pairs.values()), url
    return {k: v[0] for k, v in pairs.items()}


def get_location(url: str) -> tuple[int, str]:
    """GET ``url`` without following a redirect (blocking): (status, Location header)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("GET", f"{parts.path}?{parts.query}")
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("Location", "")
    finally:
        connection.close()


def record_id_tokens(client: OIDCClient) -> list[str]:
    """Keep every ID token the client verifies."""
    seen: list[str] = []
    verify = client.verify_id_token

    async def recording(id_token: str, nonce: str):
        seen.append(id_token)
        return await verify(id_token, nonce)

    client.verify_id_token = recording  # type: ignore[method-assign]
    return seen


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def header_of(token: str) -> dict:
    return _unb64(token.split(".")[0])


def payload_of(token: str) -> dict:
    return _unb64(token.split(".")[1])


def sign(payload: dict, key, *, kid: str | None = None, alg: str = "RS256") -> str:
    header = {"alg": alg, "kid": kid or key.kid}
    return JsonWebToken([alg]).encode(header, payload, key).decode()


def relabel(token: str, **header: str) -> str:
    """``token`` with another header (its signature, of the old one, no longer fits)."""
    _, payload, signature = token.split(".")
    return f"{_b64(json.dumps(header).encode())}.{payload}.{signature}"


def unsigned(payload: dict, *, kid: str) -> str:
    return f"{_b64(json.dumps({'alg': 'none', 'kid': kid}).encode())}.{_b64(json.dumps(payload).encode())}."


def jwk(key) -> dict:
    return key.as_dict(is_private=False, use="sig", alg="RS256")


def chunked(piece: bytes, times: int) -> Callable:
    def render(request) -> int:
        for _ in range(times):
            request.write(piece)
        request.finish()
        return NOT_DONE_YET

    return render


def never(request) -> int:
    return NOT_DONE_YET


class _Documents(Resource):
    """Serves what `routes` says: JSON-able values, bytes, or a render function."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.routes: dict[bytes, object] = {}
        self.hits: Counter = Counter()

    def render_GET(self, request):
        self.hits[request.path] += 1
        document = self.routes.get(request.path)
        if document is None:
            request.setResponseCode(404)
            return b""
        if callable(document):
            return document(request)
        request.setHeader(b"content-type", b"application/json")
        return document if isinstance(document, bytes) else json.dumps(document).encode()


@contextlib.asynccontextmanager
async def static_provider() -> AsyncIterator[tuple[str, _Documents]]:
    """Discovery and a JWKS holding `KEY`, from an in-process server, to test ID token checks."""
    server = _Documents()
    port = reactor.listenTCP(0, Site(server), interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}"
    server.routes[b"/.well-known/openid-configuration"] = {
        "issuer": url,
        "authorization_endpoint": f"{url}/authorize",
        "token_endpoint": f"{url}/token",
        "jwks_uri": f"{url}/jwks",
        "response_types_supported": ["code"],
    }
    server.routes[b"/jwks"] = {"keys": [jwk(KEY)]}
    try:
        yield url, server
    finally:
        await port.stopListening()
