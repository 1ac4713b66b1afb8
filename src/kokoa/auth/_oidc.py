"""OpenID Connect single sign-on: the gateway as a relying party (authorization code flow with PKCE).

`OIDCClient` discovers a provider, builds the URL the browser is sent to, and turns the code the
browser brings back into verified `OIDCClaims`; with ``end_session`` on, it also gives the URL that
ends the provider's own session at sign-out (`OIDCClient.end_session_url`). Every failure is an
`OIDCError` whose message can be shown to the person signing in.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
import secrets
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import treq
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from twisted.internet import error as net_error
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import TLSVersion, optionsForClientTLS
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from kokoa.transports._trust import load_trust_root

with warnings.catch_warnings():
    # authlib.jose announces its future replacement by joserfc on import; it works as it is.
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.jose import JsonWebKey, JsonWebSignature, JsonWebToken, KeySet
    from authlib.jose.errors import JoseError
    from authlib.jose.rfc7515 import JWSAlgorithm
    from authlib.jose.rfc8037 import OKPKey

#: Largest provider response read (discovery, JWKS, token, userinfo).
MAX_RESPONSE_BYTES = 1024 * 1024
#: Tolerated clock difference with the provider when checking ``exp`` and ``iat``.
CLOCK_LEEWAY = 60.0
#: Signature algorithms accepted for ID tokens: asymmetric only (never ``none`` nor HMAC).
ID_TOKEN_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
    "Ed25519",  # RFC 9864's name for EdDSA over Ed25519 (it deprecates the polymorphic "EdDSA")
)
#: Names of one signature algorithm: a key published as one verifies tokens signed as the other.
_ED25519_NAMES = frozenset({"EdDSA", "Ed25519"})
#: The key type (JWK ``kty``) each accepted algorithm signs with.
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}

_NAME = re.compile(r"[a-z0-9-]{1,32}")
_DOMAIN = re.compile(
    r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
)


class _Ed25519Algorithm(JWSAlgorithm):
    """JWS ``Ed25519`` (RFC 9864): EdDSA with an Ed25519 key only. authlib.jose knows the older,
    polymorphic name ``EdDSA`` only; joserfc, which will replace it, knows both."""

    name = "Ed25519"
    description = "EdDSA using the Ed25519 parameter set"

    def prepare_key(self, raw_data: Any) -> OKPKey:
        key = raw_data if isinstance(raw_data, OKPKey) else OKPKey.import_key(raw_data)
        if key.tokens.get("crv") != "Ed25519":
            raise ValueError("the Ed25519 algorithm takes an OKP key on the Ed25519 curve only")
        return key

    def sign(self, msg: bytes, key: OKPKey) -> bytes:
        op_key = key.get_op_key("sign")
        if not isinstance(op_key, Ed25519PrivateKey):
            raise ValueError("the Ed25519 algorithm needs an Ed25519 private key")
        return op_key.sign(msg)

    def verify(self, msg: bytes, sig: bytes, key: OKPKey) -> bool:
        op_key = key.get_op_key("verify")
        if not isinstance(op_key, Ed25519PublicKey):
            return False
        try:
            op_key.verify(sig, msg)
        except InvalidSignature:
            return False
        return True


if "Ed25519" not in JsonWebSignature.ALGORITHMS_REGISTRY:  # (a later authlib may know it)
    JsonWebSignature.register_algorithm(_Ed25519Algorithm())


class OIDCError(Exception):
    """Single sign-on failed; the message says why in words fit for the person signing in."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def new_state() -> str:
    """A fresh ``state`` value (binds the callback to the browser that started the sign-in)."""
    return secrets.token_urlsafe(32)


def new_nonce() -> str:
    """A fresh ``nonce`` value (binds the ID token to this sign-in)."""
    return secrets.token_urlsafe(32)


def new_code_verifier() -> str:
    """A fresh PKCE code verifier (43 characters of the allowed alphabet)."""
    return secrets.token_urlsafe(32)


def _check_url(url: str, what: str) -> None:
    """An https URL, or plain http to a loopback host (tests, development); ValueError otherwise."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ValueError(f"{what} {url!r} is not a valid URL") from None
    if not host:
        raise ValueError(f"{what} {url!r} is not an absolute URL with a host")
    if parts.scheme == "https":
        return
    if parts.scheme == "http":
        if _is_loopback(host):
            return
        raise ValueError(
            f"{what} {url!r} must use https: plain http is only allowed to a loopback host "
            "(localhost, 127.0.0.1, ::1) for tests and development"
        )
    raise ValueError(f"{what} {url!r} must be an https URL")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class OIDCProviderConfig:
    """One OpenID Connect provider people may sign in with."""

    name: str  # slug used in URLs
    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    display_name: str = ""  # empty: the name
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    provision_org: str | None = None  # organization id or name that new users join
    default_role: str = "Member"
    ca_file: str | None = None  # extra CA bundle (PEM) trusted for the provider's TLS
    allowed_domains: tuple[str, ...] = ()  # email domains accepted; empty: any
    end_session: bool = False  # at sign-out, end the provider's session too (RP-Initiated Logout)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(
                f"provider name {self.name!r} must be 1 to 32 lowercase letters, digits or hyphens"
            )
        _check_url(self.issuer, f"issuer of provider {self.name!r}")
        parts = urlsplit(self.issuer)
        if parts.query or parts.fragment:
            raise ValueError(f"issuer {self.issuer!r} must not have a query or a fragment")
        if not self.client_id:
            raise ValueError(f"provider {self.name!r} needs a client_id")
        if not self.client_secret:
            raise ValueError(f"provider {self.name!r} needs a client_secret")
        if not self.display_name:
            object.__setattr__(self, "display_name", self.name)
        scopes = (self.scopes,) if isinstance(self.scopes, str) else tuple(self.scopes)
        if "openid" not in scopes:
            raise ValueError(f"the scopes of provider {self.name!r} must include 'openid'")
        object.__setattr__(self, "scopes", scopes)
        if not self.default_role:
            raise ValueError(f"provider {self.name!r} needs a default_role")
        domains = (self.allowed_domains,) if isinstance(self.allowed_domains, str) else self.allowed_domains
        domains = tuple(d.strip().lower().lstrip("@") for d in domains)
        for domain in domains:
            if not _DOMAIN.fullmatch(domain):
                raise ValueError(f"allowed domain {domain!r} of provider {self.name!r} is not a domain name")
        object.__setattr__(self, "allowed_domains", domains)
        if not isinstance(self.end_session, bool):
            raise ValueError(f"end_session of provider {self.name!r} must be true or false")

    @property
    def discovery_url(self) -> str:
        """Where the provider's metadata is published (OpenID Connect Discovery 1.0, section 4)."""
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"

    def accepts_email(self, email: str) -> bool:
        """Whether `email` is in one of the allowed domains (any email when none is set)."""
        if not self.allowed_domains:
            return True
        _, at, domain = email.rpartition("@")
        return bool(at) and domain.lower() in self.allowed_domains


@dataclass(frozen=True)
class OIDCClaims:
    """Who signed in, as the provider vouches."""

    subject: str  # ``sub``: stable and unique at this provider
    email: str | None
    email_verified: bool
    name: str | None


@implementer(IPolicyForHTTPS)
class _TLSPolicy:
    """Certificates verified against the system's CAs, or only those of a CA bundle; TLS 1.2 minimum."""

    def __init__(self, ca_file: str | None) -> None:
        self._trust_root = load_trust_root(ca_file) if ca_file is not None else None

    def creatorForNetloc(self, hostname: bytes, port: int):
        return optionsForClientTLS(
            hostname.decode("ascii"),
            trustRoot=self._trust_root,
            extraCertificateOptions={"raiseMinimumTo": TLSVersion.TLSv1_2},
        )


class _BoundedBody(Protocol):
    """Collects a response body, giving up past `limit` bytes."""

    def __init__(self, limit: int, finished: Deferred) -> None:
        self._limit = limit
        self._finished = finished
        self._parts: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:
        if self._finished.called:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._finished.errback(_TooLarge())
            self.transport.stopProducing()
            return
        self._parts.append(data)

    def connectionLost(self, reason: Failure) -> None:
        if self._finished.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self._finished.callback(b"".join(self._parts))
        else:
            self._finished.errback(reason)


class _TooLarge(Exception):
    pass


class OIDCClient:
    """A relying party for one provider: discovery, authorization URL, code exchange, ID token checks."""

    def __init__(
        self,
        config: OIDCProviderConfig,
        reactor,
        *,
        timeout: float = 10.0,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._reactor = reactor
        self._timeout = timeout
        self._now = now
        # Not persistent: no idle connection outlives a sign-in, nothing to close.
        agent = Agent(
            reactor,
            contextFactory=_TLSPolicy(config.ca_file),
            connectTimeout=timeout,
            pool=HTTPConnectionPool(reactor, persistent=False),
        )
        self._http = treq.client.HTTPClient(agent)
        self._jwt = JsonWebToken(list(ID_TOKEN_ALGORITHMS))
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None

    @property
    def metadata(self) -> Mapping[str, Any] | None:
        """The provider's discovery document, once `discover` has fetched it."""
        return self._metadata

    async def discover(self) -> None:
        """Fetch (again) the provider's discovery document and its signing keys."""
        status, document = await self._get_json(self.config.discovery_url, "discovery document")
        if status != 200:
            raise self._error(f"its discovery document answered HTTP {status}")
        if not isinstance(document, dict):
            raise self._error("its discovery document is not a JSON object")
        if document.get("issuer") != self.config.issuer:
            raise self._error(
                f"its discovery document names the issuer {_short(document.get('issuer'))}, "
                f"not the configured {self.config.issuer!r}"
            )
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            self._check_endpoint(document, key, required=True)
        self._check_endpoint(document, "userinfo_endpoint", required=False)
        response_types = document.get("response_types_supported")
        if isinstance(response_types, list) and "code" not in response_types:
            raise self._error("it does not support the authorization code flow")
        self._token_auth_method(document)  # fails early if no method fits
        self._keys = await self._fetch_keys(document["jwks_uri"])
        self._metadata = document

    def authorization_url(self, redirect_uri: str, state: str, nonce: str, code_verifier: str) -> str:
        """The provider URL to send the browser to (``response_type=code``, PKCE S256)."""
        if self._metadata is None:
            raise RuntimeError("call discover() before authorization_url()")
        params = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(self.config.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": create_s256_code_challenge(code_verifier),
            "code_challenge_method": "S256",
        }
        parts = urlsplit(self._metadata["authorization_endpoint"])
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
        return urlunsplit(parts._replace(query=urlencode([*query, *params.items()]), fragment=""))

    async def exchange(self, code: str, redirect_uri: str, code_verifier: str, nonce: str) -> OIDCClaims:
        """Redeem the authorization code and return the verified claims of who signed in."""
        if self._metadata is None:
            await self.discover()
        assert self._metadata is not None
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        }
        headers = {"Accept": "application/json"}
        if self._token_auth_method(self._metadata) == "client_secret_basic":
            # RFC 6749 section 2.3.1: both parts are form-encoded before base64.
            pair = f"{quote(self.config.client_id, safe='')}:{quote(self.config.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        else:
            form |= {"client_id": self.config.client_id, "client_secret": self.config.client_secret}
        status, body = await self._request_json(
            "POST", self._metadata["token_endpoint"], "token endpoint", headers=headers, data=form
        )
        if status != 200:
            raise self._error(f"it refused the sign-in code ({_oauth_error(status, body)})")
        if not isinstance(body, dict):
            raise self._error("its token endpoint did not answer with a JSON object")
        id_token = body.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise self._error("it returned no ID token (is the 'openid' scope allowed for this client?)")
        claims = await self.verify_id_token(id_token, nonce)
        email, verified, name = claims.get("email"), claims.get("email_verified"), claims.get("name")
        if email is None:
            access_token = body.get("access_token")
            if isinstance(access_token, str) and access_token and self._metadata.get("userinfo_endpoint"):
                info = await self._userinfo(access_token, claims["sub"])
                email, verified = info.get("email"), info.get("email_verified")
                name = name if name is not None else info.get("name")
        if email is not None and not isinstance(email, str):
            raise self._error("it returned an email address that is not a string")
        if name is not None and not isinstance(name, str):
            name = None
        return OIDCClaims(
            subject=claims["sub"],
            email=email,
            email_verified=verified is True or verified == "true",
            name=name,
        )

    async def verify_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        """Check an ID token's signature and claims; return its claims."""
        if self._metadata is None or self._keys is None:
            await self.discover()
        assert self._keys is not None
        header = _jose_header(id_token)
        if header is None:
            raise self._error("its ID token is malformed")
        if header.get("alg") not in ID_TOKEN_ALGORITHMS:
            raise self._error(
                f"its ID token is signed with an unaccepted algorithm {_short(header.get('alg'))}"
            )
        kid = header.get("kid")
        key = _find_key(self._keys, kid)
        if key is None:
            # Keys rotate: a key never seen before may have been published since.
            assert self._metadata is not None
            self._keys = await self._fetch_keys(self._metadata["jwks_uri"])
            key = _find_key(self._keys, kid)
        if key is None:
            raise self._error("its ID token is signed with a key it does not publish")
        key_alg = key.tokens.get("alg")
        if key_alg and key_alg != header.get("alg") and not _same_ed25519(key, key_alg, header.get("alg")):
            raise self._error("its ID token's signature algorithm does not match the signing key")
        if key.tokens.get("kty") != _KEY_TYPES[header["alg"][:2]]:
            raise self._error("its ID token's signature algorithm does not match the signing key")
        try:
            claims = dict(self._jwt.decode(id_token, lambda _header, _payload: key))
        except (JoseError, ValueError, TypeError, KeyError):
            raise self._error("its ID token has a bad signature") from None
        self._check_claims(claims, nonce)
        return claims

    async def end_session_url(
        self, post_logout_redirect_uri: str, *, id_token_hint: str | None = None, state: str | None = None
    ) -> str | None:
        """Where to send the browser at sign-out so that the provider ends its own session too
        (OpenID Connect RP-Initiated Logout 1.0), or None: ``end_session`` is off for this provider
        (the default; then nothing is fetched), or its discovery document has no
        ``end_session_endpoint``.

        The URL is the provider's ``end_session_endpoint`` with ``client_id``,
        ``post_logout_redirect_uri`` (where the provider sends the browser back: the login host's
        ``https://login.../signed-out``; it must be registered at the provider) and, if given,
        ``id_token_hint`` (the ID token of the session, which some providers want) and ``state``
        (returned to ``post_logout_redirect_uri``). The endpoint's own query parameters are kept.

        Discovers the provider first if that has not happened yet; raises :class:`OIDCError` if that
        fails or the endpoint is not a safe URL (https, or http to loopback). ``ValueError`` if
        ``post_logout_redirect_uri`` is not such a URL either (a caller's bug)."""
        if not self.config.end_session:
            return None
        _check_url(post_logout_redirect_uri, "post_logout_redirect_uri")
        if self._metadata is None:
            await self.discover()
        assert self._metadata is not None
        if self._metadata.get("end_session_endpoint") is None:
            return None
        self._check_endpoint(self._metadata, "end_session_endpoint", required=True)
        params = {"client_id": self.config.client_id, "post_logout_redirect_uri": post_logout_redirect_uri}
        if id_token_hint is not None:
            params["id_token_hint"] = id_token_hint
        if state is not None:
            params["state"] = state
        parts = urlsplit(self._metadata["end_session_endpoint"])
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
        return urlunsplit(parts._replace(query=urlencode([*query, *params.items()]), fragment=""))

    # -- checks -----------------------------------------------------------------------------

    def _check_claims(self, claims: dict[str, Any], nonce: str) -> None:
        config = self.config
        if claims.get("iss") != config.issuer:
            raise self._error(
                f"its ID token was issued by {_short(claims.get('iss'))}, not by {config.issuer!r}"
            )
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list) or config.client_id not in audiences:
            raise self._error("its ID token is meant for another application (audience)")
        azp = claims.get("azp")
        if azp is not None and azp != config.client_id:
            raise self._error("its ID token was issued to another application (authorized party)")
        if len(audiences) > 1 and azp is None:
            raise self._error("its ID token has several audiences and no authorized party")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise self._error("its ID token does not say who signed in (no subject)")
        now = self._now()
        expires, issued = claims.get("exp"), claims.get("iat")
        if not _is_number(expires) or not _is_number(issued):
            raise self._error("its ID token lacks a valid expiry or issue time")
        if now > expires + CLOCK_LEEWAY:
            raise self._error("its ID token has expired (check the clocks of the gateway and the provider)")
        if issued > now + CLOCK_LEEWAY:
            raise self._error("its ID token was issued in the future (check the clocks)")
        got = claims.get("nonce")
        if not isinstance(got, str) or not secrets.compare_digest(got.encode(), nonce.encode()):
            raise self._error("its ID token does not belong to this sign-in (wrong nonce); please try again")

    def _check_endpoint(self, document: dict[str, Any], key: str, *, required: bool) -> None:
        url = document.get(key)
        if url is None and not required:
            return
        if not isinstance(url, str):
            raise self._error(f"its discovery document has no valid {key}")
        try:
            _check_url(url, key)
        except ValueError as e:
            raise self._error(f"its discovery document is unsafe: {e}") from None

    def _token_auth_method(self, document: Mapping[str, Any]) -> str:
        methods = document.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        for method in ("client_secret_basic", "client_secret_post"):
            if method in methods:
                return method
        raise self._error("it supports neither client_secret_basic nor client_secret_post")

    # -- HTTP -------------------------------------------------------------------------------

    async def _fetch_keys(self, url: str) -> KeySet:
        status, document = await self._get_json(url, "signing keys")
        if status != 200:
            raise self._error(f"its signing keys (JWKS) answered HTTP {status}")
        raw = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(raw, list):
            raise self._error("its signing keys (JWKS) are not a key set")
        keys = []
        for entry in raw:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                keys.append(JsonWebKey.import_key(entry))
            except (JoseError, ValueError, TypeError, KeyError):
                continue  # a key type we do not know cannot have signed a token we accept
        return KeySet(keys)

    async def _userinfo(self, access_token: str, subject: str) -> dict[str, Any]:
        assert self._metadata is not None
        status, info = await self._request_json(
            "GET",
            self._metadata["userinfo_endpoint"],
            "userinfo endpoint",
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        )
        if status != 200:
            raise self._error(f"its userinfo endpoint answered {_oauth_error(status, info)}")
        if not isinstance(info, dict):
            raise self._error("its userinfo endpoint did not answer with a JSON object")
        if info.get("sub") != subject:  # OpenID Connect Core 1.0, section 5.3.2
            raise self._error("its userinfo endpoint describes someone else than the ID token")
        return info

    async def _get_json(self, url: str, what: str) -> tuple[int, Any]:
        return await self._request_json("GET", url, what, headers={"Accept": "application/json"})

    async def _request_json(self, method: str, url: str, what: str, **kwargs: Any) -> tuple[int, Any]:
        """One request, bounded in time and size; (status, parsed JSON or None)."""
        request = Deferred.fromCoroutine(self._request(method, url, **kwargs))
        expired = []

        def expire() -> None:
            expired.append(True)
            request.cancel()  # the Agent wraps the CancelledError: remember why it came

        deadline = self._reactor.callLater(self._timeout, expire)
        try:
            status, body = await request
        except _TooLarge:
            raise self._error(f"its {what} sent more than {MAX_RESPONSE_BYTES // 1024} KiB") from None
        except Exception as e:  # connection refused, DNS, TLS, reset...
            if expired:
                raise self._error(f"its {what} did not answer within {self._timeout:g} s") from None
            raise self._error(f"cannot reach its {what} at {_origin(url)} ({_describe(e)})") from None
        finally:
            if deadline.active():
                deadline.cancel()
        try:
            return status, json.loads(body) if body else None
        except ValueError:
            if status != 200:
                return status, None
            raise self._error(f"its {what} did not answer with JSON") from None

    async def _request(self, method: str, url: str, **kwargs: Any) -> tuple[int, bytes]:
        response = await self._http.request(method, url, allow_redirects=False, **kwargs)
        finished: Deferred[bytes] = Deferred()
        body = _BoundedBody(MAX_RESPONSE_BYTES, finished)
        response.deliverBody(body)
        if isinstance(response.length, int) and response.length > MAX_RESPONSE_BYTES:
            if not finished.called:
                finished.errback(_TooLarge())
            body.transport.stopProducing()
        return response.code, await finished

    def _error(self, detail: str) -> OIDCError:
        return OIDCError(f"Signing in with {self.config.display_name} failed: {detail}.")


def _jose_header(token: str) -> dict[str, Any] | None:
    """The (unverified) header of a compact JWS, or None if it is not one."""
    segments = token.split(".")
    if len(segments) != 3:
        return None
    encoded = segments[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (ValueError, binascii.Error):
        return None
    return header if isinstance(header, dict) else None


def _same_ed25519(key: Any, key_alg: str, token_alg: Any) -> bool:
    """Whether a key published for ``key_alg`` may verify a token signed as ``token_alg``: only
    ``EdDSA`` and ``Ed25519`` (RFC 9864's new name) with an Ed25519 key."""
    names = {key_alg, token_alg}
    return names <= _ED25519_NAMES and key.tokens.get("crv") == "Ed25519"


def _find_key(keys: KeySet, kid: Any):
    if kid is None:
        return keys.keys[0] if len(keys.keys) == 1 else None
    return next((k for k in keys.keys if k.kid == kid), None)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _oauth_error(status: int, body: Any) -> str:
    """A short description of an OAuth error response (RFC 6749 section 5.2)."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        text = body["error"]
        if isinstance(body.get("error_description"), str):
            text += f": {body['error_description']}"
        return f"HTTP {status}, {_clean(text)}"
    return f"HTTP {status}"


def _clean(text: str, limit: int = 200) -> str:
    """Provider text made safe to show: printable, bounded."""
    text = "".join(c if c.isprintable() else " " for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short(value: Any) -> str:
    return repr(_clean(value, 100)) if isinstance(value, str) else "nothing valid"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _describe(e: BaseException) -> str:
    """What went wrong with a connection, briefly."""
    reasons = getattr(e, "reasons", None)  # the Agent's ResponseNeverReceived and co.
    if reasons:
        inner = reasons[0].value
        if type(inner).__module__.startswith("OpenSSL"):
            return "TLS handshake failed: is its certificate trusted?"
        return _describe(inner)
    if isinstance(e, net_error.ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, net_error.DNSLookupError):
        return "unknown host"
    if isinstance(e, net_error.ConnectingCancelledError | net_error.TCPTimedOutError):
        return "connection timed out"
    return _clean(str(e) or type(e).__name__, 120)
