"""The admin JSON API (``/api/v1/...``), with Klein, and its OpenAPI 3.1 document.

Serving it
    ``CappedSite(make_api_resource(store, reactor, status=..., port_available=..., max_body=N),
    max_body=N)`` is a twisted.web Site to listen with (``--api ENDPOINT``, default ``tcp:7000``).
    The site refuses request bodies above ``max_body`` bytes (1 MiB by default) with 413 before
    buffering them. Every database call goes through ``store.run``: nothing blocks the reactor.

What it serves
    CRUD and lists, scoped to an organization, for organizations, roles, members, users (instance
    keys only), sites (secrets shown once), resources, targets, access grants and rules, API keys
    (shown once) and the audit log; ``GET /api/v1/status`` (the gateway's live status) and
    ``GET /api/v1/openapi.json`` (no authentication). The route table is
    :data:`kokoa.api._routes.ROUTES`; :func:`openapi_document` describes it.

Errors
    RFC 9457 problem documents (``application/problem+json``): 400 malformed JSON, 401 no or bad API
    key (with ``WWW-Authenticate: Bearer``), 403 not allowed, 404, 405 (with ``Allow``), 409 conflict
    naming the field (a duplicate, a port in use), 413, 415, 422 with ``errors: [{field, message}]``.

Authentication and authorization
    ``Authorization: Bearer <API key>``; see :mod:`kokoa.api._auth`. Authenticators are pluggable
    (:class:`Authenticator`): the console's cookie sessions, with a CSRF token on writes, will be
    one more when sessions exist (issue 5).

Audit
    Every write appends an audit entry (actor ``key:<prefix>``, action such as ``site.create``, the
    object before and after, never a secret, and the client's address) in the write's transaction.
"""

from ._app import DEFAULT_MAX_BODY, AdminAPI, make_api_resource
from ._auth import ApiKeyAuthenticator, Authenticator, Principal, SessionCookieAuthenticator
from ._openapi import openapi_document
from ._problems import FieldError, Problem
from ._site import CappedRequest, CappedSite

__all__ = [
    "DEFAULT_MAX_BODY",
    "AdminAPI",
    "ApiKeyAuthenticator",
    "Authenticator",
    "CappedRequest",
    "CappedSite",
    "FieldError",
    "Principal",
    "Problem",
    "SessionCookieAuthenticator",
    "make_api_resource",
    "openapi_document",
]
