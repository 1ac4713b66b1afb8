"""A real OpenID Connect provider for tests: authlib's authorization server (Flask integration).

Nothing here is a canned HTTP answer: authlib's ``AuthorizationCodeGrant`` with the
``OpenIDCode`` extension and PKCE (``CodeChallenge``) issues codes and ID tokens signed with
RS256 (or, with ``--signing-alg``, an Ed25519 key under the JOSE name ``EdDSA`` or ``Ed25519``),
checks client credentials, redirect URIs, nonces and code verifiers, and serves userinfo to
bearer tokens. One client, users from a JSON file, everything in memory.

    python tests/auth/oidc_provider.py --port 0 --issuer-host 127.0.0.1 --users users.json \\
        --client-id X --client-secret Y --redirect-uri URI [--port-file F] [--signing-alg ALG]

users.json: ``[{"email": ..., "password": ..., "name": ..., "email_verified": true, "sub": ...}]``
(``name``, ``email_verified`` (default true) and ``sub`` (default derived from the email) optional).

Endpoints: ``/.well-known/openid-configuration``, ``/jwks``, ``/authorize`` (an HTML login form
with fields ``email`` and ``password``; a POST with only ``password`` takes the email from the
``login_hint`` query parameter), ``/token``, ``/userinfo``, ``/logout`` (its ``end_session_endpoint``:
checks ``client_id`` and redirects to ``post_logout_redirect_uri`` with ``state``, else says "signed
out"; ``--no-end-session`` leaves it out of discovery). It prints ``listening on PORT`` (and
writes PORT to --port-file) once it accepts connections.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import os
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, grants, list_to_scope, scope_to_list
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo, UserInfoEndpoint
from authlib.oidc.core.grants import OpenIDCode
from authlib.oidc.core.models import AuthorizationCodeMixin
from flask import Flask, Response, jsonify, request
from joserfc.jwk import OKPKey, RSAKey
from werkzeug.serving import make_server

SCOPES = ("openid", "email", "profile")
#: ID token signature algorithms it can use: RSA, or an Ed25519 key under either JOSE name (RFC 9864).
SIGNING_ALGORITHMS = ("RS256", "EdDSA", "Ed25519")


@dataclass(frozen=True)
class User:
    sub: str
    email: str
    password: str
    name: str | None
    email_verified: bool


@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str
    redirect_uri: str
    auth_method: str
    client_metadata: dict = field(default_factory=dict)

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_allowed_scope(self, scope: str) -> str:
        return list_to_scope([s for s in scope_to_list(scope or "") if s in SCOPES])

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri == self.redirect_uri

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret.encode(), self.client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.auth_method if endpoint == "token" else True

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class Code(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: User
    nonce: str | None
    auth_time: int
    code_challenge: str | None
    code_challenge_method: str | None

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time


@dataclass
class Token(TokenMixin):
    access_token: str
    scope: str
    client: Client
    user: User
    expires_at: float

    def check_client(self, client) -> bool:
        return client.get_client_id() == self.client.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.expires_at - time.time())

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return False

    def get_user(self) -> User:
        return self.user

    def get_client(self) -> Client:
        return self.client


class Provider:
    """The provider's state: its key, its one client, its users, codes and tokens issued."""

    def __init__(
        self,
        client: Client,
        users: list[User],
        *,
        email_in_id_token: bool,
        alg: str = "RS256",
        end_session: bool = True,
    ) -> None:
        self.issuer = ""  # set once the port is known
        self.client = client
        self.users = {u.email.lower(): u for u in users}
        self.email_in_id_token = email_in_id_token
        self.alg = alg
        self.end_session = end_session
        parameters = {"kid": secrets.token_hex(8), "use": "sig", "alg": alg}
        self.key: RSAKey | OKPKey = (
            RSAKey.generate_key(2048, parameters=parameters)
            if alg == "RS256"
            else OKPKey.generate_key("Ed25519", parameters=parameters)
        )
        self.codes: dict[str, Code] = {}
        self.tokens: dict[str, Token] = {}
        self.lock = threading.Lock()

    def user_info(self, user: User, scope: str, *, for_id_token: bool) -> UserInfo:
        scopes = scope_to_list(scope)
        info = UserInfo(sub=user.sub)
        if "profile" in scopes and user.name is not None:
            info["name"] = user.name
        if "email" in scopes and (self.email_in_id_token or not for_id_token):
            info["email"] = user.email
            info["email_verified"] = user.email_verified
        return info


def build_app(provider: Provider) -> Flask:
    app = Flask("oidc_provider")

    class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

        def save_authorization_code(self, code: str, req) -> None:
            data = req.payload.data
            with provider.lock:
                provider.codes[code] = Code(
                    code=code,
                    client_id=req.client.client_id,
                    redirect_uri=req.payload.redirect_uri,
                    scope=req.scope,
                    user=req.user,
                    nonce=data.get("nonce"),
                    auth_time=int(time.time()),
                    code_challenge=data.get("code_challenge"),
                    code_challenge_method=data.get("code_challenge_method"),
                )

        def query_authorization_code(self, code: str, client: Client) -> Code | None:
            with provider.lock:
                item = provider.codes.get(code)
            return item if item is not None and item.client_id == client.client_id else None

        def delete_authorization_code(self, authorization_code: Code) -> None:
            with provider.lock:
                provider.codes.pop(authorization_code.code, None)

        def authenticate_user(self, authorization_code: Code) -> User:
            return authorization_code.user

    class OpenIDCodeExtension(OpenIDCode):
        def resolve_client_private_key(self, client: Client) -> RSAKey | OKPKey:
            return provider.key

        def get_client_algorithm(self, client: Client) -> str:
            return provider.alg

        def get_encode_header(self, client: Client) -> dict[str, str]:
            return {"alg": provider.alg, "kid": provider.key.kid, "typ": "JWT"}

        def get_client_claims(self, client: Client) -> dict[str, Any]:
            return {"iss": provider.issuer, "aud": [client.client_id]}

        def exists_nonce(self, nonce: str, req) -> bool:
            with provider.lock:
                return any(c.nonce == nonce for c in provider.codes.values())

        def generate_user_info(self, user: User, scope: str) -> UserInfo:
            return provider.user_info(user, scope, for_id_token=True)

    class ProviderUserInfo(UserInfoEndpoint):
        def get_issuer(self) -> str:
            return provider.issuer

        def generate_user_info(self, user: User, scope: str) -> UserInfo:
            return provider.user_info(user, scope, for_id_token=False)

    class Bearer(BearerTokenValidator):
        def authenticate_token(self, token_string: str) -> Token | None:
            with provider.lock:
                return provider.tokens.get(token_string)

    def save_token(token: dict, req) -> None:
        with provider.lock:
            provider.tokens[token["access_token"]] = Token(
                access_token=token["access_token"],
                scope=token.get("scope", ""),
                client=req.client,
                user=req.user,
                expires_at=time.time() + token.get("expires_in", 3600),
            )

    server = AuthorizationServer(
        app,
        query_client=lambda client_id: provider.client if client_id == provider.client.client_id else None,
        save_token=save_token,
    )
    server.register_grant(
        AuthorizationCodeGrant, [OpenIDCodeExtension(require_nonce=True), CodeChallenge(required=True)]
    )
    protector = ResourceProtector()
    protector.register_token_validator(Bearer())
    server.register_endpoint(ProviderUserInfo(resource_protector=protector))

    @app.get("/.well-known/openid-configuration")
    def discovery() -> Response:
        base = provider.issuer
        logout = {"end_session_endpoint": f"{base}/logout"} if provider.end_session else {}
        return jsonify(
            **logout,
            issuer=base,
            authorization_endpoint=f"{base}/authorize",
            token_endpoint=f"{base}/token",
            userinfo_endpoint=f"{base}/userinfo",
            jwks_uri=f"{base}/jwks",
            response_types_supported=["code"],
            grant_types_supported=["authorization_code"],
            subject_types_supported=["public"],
            id_token_signing_alg_values_supported=[provider.alg],
            scopes_supported=list(SCOPES),
            token_endpoint_auth_methods_supported=[provider.client.auth_method],
            code_challenge_methods_supported=["S256"],
            claims_supported=["sub", "iss", "aud", "exp", "iat", "nonce", "email", "email_verified", "name"],
        )

    @app.get("/jwks")
    def jwks() -> Response:
        return jsonify(keys=[provider.key.as_dict(private=False)])

    @app.route("/authorize", methods=["GET", "POST"])
    def authorize():
        try:
            server.get_consent_grant(end_user=None)  # the request itself is valid?
        except OAuth2Error as error:
            if error.redirect_uri:
                return server.handle_error_response(None, error)
            return Response(f"Bad authorization request: {error.error}: {error.description}\n", 400)
        if request.method == "GET":
            return login_page(request.args.get("login_hint", ""), None)
        email = (request.form.get("email") or request.args.get("login_hint") or "").strip()
        user = provider.users.get(email.lower())
        if user is None or not secrets.compare_digest(
            request.form.get("password", "").encode(), user.password.encode()
        ):
            return login_page(email, "Wrong email or password."), 401
        grant = server.get_consent_grant(end_user=user)
        return server.create_authorization_response(grant_user=user, grant=grant)

    @app.get("/logout")
    def logout() -> Response:
        if not provider.end_session:
            return Response("Not found\n", 404)
        if request.args.get("client_id") != provider.client.client_id:
            return Response("Unknown client\n", 400)
        back = request.args.get("post_logout_redirect_uri")
        if not back:
            return Response("You are signed out of the test provider.\n", 200)
        state = request.args.get("state")
        target = back + ("?" + urlencode({"state": state}) if state is not None else "")
        return Response("", 302, {"Location": target})

    @app.post("/token")
    def token() -> Response:
        return server.create_token_response()

    @app.route("/userinfo", methods=["GET", "POST"])
    def userinfo() -> Response:
        return server.create_endpoint_response("userinfo")

    return app


def login_page(email: str, error: str | None) -> str:
    """The login form; it posts back to the same URL, which carries the authorization request."""
    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Test provider: sign in</title></head>
<body>
<h1>Sign in to the test provider</h1>
{message}
<form method="post">
  <label>Email <input type="email" name="email" value="{html.escape(email)}" autocomplete="username"></label>
  <label>Password <input type="password" name="password" autocomplete="current-password"></label>
  <button type="submit">Sign in</button>
</form>
</body></html>
"""


def load_users(path: str) -> list[User]:
    entries = json.loads(Path(path).read_text())
    return [
        User(
            sub=e.get("sub") or "u-" + hashlib.sha256(e["email"].lower().encode()).hexdigest()[:16],
            email=e["email"],
            password=e["password"],
            name=e.get("name"),
            email_verified=e.get("email_verified", True),
        )
        for e in entries
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--issuer-host", default="127.0.0.1", help="host to listen on and to name in the issuer"
    )
    parser.add_argument("--users", required=True, help="JSON file: a list of users")
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--redirect-uri", required=True)
    parser.add_argument("--port-file", help="write the port listened on to this file")
    parser.add_argument(
        "--token-auth-method",
        default="client_secret_basic",
        choices=["client_secret_basic", "client_secret_post"],
    )
    parser.add_argument(
        "--no-email-in-id-token", action="store_true", help="email only from userinfo, not in ID tokens"
    )
    parser.add_argument(
        "--signing-alg", default="RS256", choices=SIGNING_ALGORITHMS, help="ID token signature algorithm"
    )
    parser.add_argument(
        "--no-end-session", action="store_true", help="no end_session_endpoint (RP-Initiated Logout)"
    )
    parser.add_argument("--tls-cert", help="serve https with this certificate (PEM)")
    parser.add_argument("--tls-key", help="and this private key (PEM)")
    args = parser.parse_args(argv)

    client = Client(args.client_id, args.client_secret, args.redirect_uri, args.token_auth_method)
    provider = Provider(
        client,
        load_users(args.users),
        email_in_id_token=not args.no_email_in_id_token,
        alg=args.signing_alg,
        end_session=not args.no_end_session,
    )
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    if tls is None:
        os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # plain http: tests on loopback only
    httpd = make_server(args.issuer_host, args.port, build_app(provider), threaded=True, ssl_context=tls)
    port = httpd.server_port
    host = f"[{args.issuer_host}]" if ":" in args.issuer_host else args.issuer_host
    provider.issuer = f"{'https' if tls else 'http'}://{host}:{port}"
    if args.port_file:
        tmp = Path(args.port_file + ".tmp")
        tmp.write_text(f"{port}\n")
        tmp.replace(args.port_file)
    print(f"listening on {port}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


if __name__ == "__main__":
    sys.exit(main())
