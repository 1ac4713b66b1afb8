"""The Klein app: one route per entry of the route table, each going through the same steps.

For every request: match the route (404, 405 with ``Allow``), authenticate (401), authorize (403),
check the path ids (404), read the body (413, 415, 400, 422) and the query (422), run the handler,
and render its reply, or the problem it raised (a store refusal becomes 404, 409 or 422).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from klein import Klein
from klein.resource import KleinResource
from sqlalchemy.exc import OperationalError, StatementError
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource

from kokoa.store import Store, StoreError

from ._auth import ApiKeyAuthenticator, Authenticator, authenticate, authorize
from ._call import Call, Reply, Services, read_body, read_query
from ._jsonschema import Validator, compiled
from ._openapi import PATH_PARAMETER, openapi_document
from ._problems import (
    PROBLEM_CONTENT_TYPE,
    FieldError,
    Problem,
    bad_request,
    from_store_error,
    internal_error,
    invalid,
    method_not_allowed,
    not_found,
    reason_phrase,
    unavailable,
)
from ._routes import ROUTES, Route
from ._schemas import SCHEMAS
from ._sse import Stream, StreamLimits

#: Request bodies above this many bytes are refused (413) unless told otherwise.
DEFAULT_MAX_BODY = 1024 * 1024

_JSON = b"application/json"
_ID = compiled(PATH_PARAMETER["pattern"])
_log = Logger()


def _respond(request: IRequest, status: int, content_type: bytes | None, body: bytes) -> bytes:
    request.setResponseCode(status, reason_phrase(status).encode())
    if content_type is not None:
        request.setHeader(b"content-type", content_type)
    if status != 204:
        request.setHeader(b"content-length", str(len(body)).encode())
    return body


def render_problem(request: IRequest, problem: Problem) -> bytes:
    for name, value in problem.headers.items():
        request.setHeader(name.encode(), value.encode())
    return _respond(request, problem.status, PROBLEM_CONTENT_TYPE, problem.body())


def render_reply(request: IRequest, reply: Reply) -> bytes:
    if reply.location is not None:
        request.setHeader(b"location", reply.location.encode())
    if reply.body is None:
        return _respond(request, reply.status, None, b"")
    body = json.dumps(reply.body, ensure_ascii=False, separators=(",", ":")).encode()
    return _respond(request, reply.status, _JSON, body)


def source_address(request: IRequest) -> str | None:
    host = getattr(request.getClientAddress(), "host", None)
    return host if isinstance(host, str) else None


class APIResource(KleinResource):
    """Klein's resource, except that a URL (or Host header) that is not UTF-8 gets a problem document
    (Klein answers it in plain text and logs it as an error), and so does a Host that werkzeug cannot
    bind the routes to (a label over 63 characters or an empty one: werkzeug raises BadHost, a 500)."""

    def render(self, request: IRequest) -> Any:
        try:
            for part in (request.getRequestHostname(), *request.prepath, *request.postpath):
                part.decode("utf-8")
        except UnicodeDecodeError:
            return render_problem(request, bad_request("the URL (or the Host header) is not UTF-8"))
        try:
            request.getRequestHostname().decode("utf-8").encode("idna")
        except UnicodeError:
            return render_problem(request, bad_request("the Host header is not a valid host name"))
        return super().render(request)


class AdminAPI:
    """The admin API over ``store``; ``resource()`` is what to serve (in a :class:`CappedSite`)."""

    app = Klein()

    def __init__(
        self,
        store: Store,
        reactor: IReactorTime,
        *,
        status: Callable[[], dict[str, Any]] | None = None,
        port_available: Callable[[str, int], bool] | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        authenticators: Sequence[Authenticator] | None = None,
        console: Any = None,
        streams: StreamLimits | None = None,
    ) -> None:
        self.services = Services(store, status, port_available, console)
        self.reactor = reactor
        self.streams = streams if streams is not None else StreamLimits(reactor)
        self.max_body = max_body
        self.authenticators = (
            list(authenticators) if authenticators is not None else [ApiKeyAuthenticator(store)]
        )
        self.validator = Validator(SCHEMAS)
        self.openapi = json.dumps(openapi_document(max_body=max_body), separators=(",", ":")).encode()

    def resource(self) -> IResource:
        return APIResource(self.app)

    async def dispatch(self, route: Route, request: IRequest, params: dict[str, str]) -> bytes:
        """Serve ``request`` on ``route``: a reply, or a problem document (never an exception)."""
        request.setHeader(b"cache-control", b"no-store")
        try:
            reply = await self._handle(route, request, params)
            if route.handler is None:  # the OpenAPI document
                return _respond(request, 200, _JSON, self.openapi)
            if isinstance(reply, Stream):  # Server-Sent Events, until the client goes or we stop
                return await self.streams.serve(request, reply)
            return render_reply(request, reply)
        except CancelledError:
            raise  # the client went away: nothing to answer
        except Problem as problem:
            return render_problem(request, problem)
        except OperationalError as e:
            _log.warn("The database is unavailable: {error}", error=e.orig)
            return render_problem(request, unavailable("the database is unavailable; try again later"))
        except Exception:
            _log.failure("Admin API: {method} {path} failed", method=route.method, path=route.path)
            return render_problem(request, internal_error())

    async def _handle(self, route: Route, request: IRequest, params: dict[str, str]) -> Reply | Stream:
        principal = None
        if route.auth:
            principal = await authenticate(self.authenticators, request)
            authorize(
                principal,
                route.method,
                params.get("org"),
                instance_only=route.instance_only,
                members=route.members,
            )
        for name, value in params.items():
            if not _ID.match(value) or len(value) > PATH_PARAMETER["maxLength"]:
                raise not_found(f"no {name} with id {value!r}")
        if route.handler is None:
            return Reply()
        body = read_body(
            request, SCHEMAS[route.body], self.validator, self.max_body, required=route.body_required
        ) if route.body else {}  # fmt: skip
        query = read_query(request, route.query, self.validator)
        host = request.getRequestHostname().decode("utf-8", "replace")
        call = Call(self.services, principal, params, query, body, source_address(request), host)
        try:
            return await route.handler(call)
        except StoreError as e:
            references = {name: body[name] for name in route.references if name in body}
            raise from_store_error(e, references) from e
        except (OverflowError, StatementError) as e:
            # The store decodes cursors but leaves some bad ones to fail in SQL (out-of-range numbers
            # or dates, NUL characters on PostgreSQL): the cursor is at fault, not the server.
            if "cursor" in query:
                raise invalid([FieldError("cursor", "not a cursor from a previous page")]) from e
            raise

    @app.handle_errors(Exception)
    def routing_error(self, request: IRequest, failure: Failure) -> bytes:
        """No route for the path (werkzeug's 404) or for the method (405, with Allow)."""
        error = failure.value
        code = getattr(error, "code", None)
        request.setHeader(b"cache-control", b"no-store")
        if code == 405:
            allowed = getattr(error, "valid_methods", None) or ()
            problem = method_not_allowed(request.method.decode("latin-1"), allowed)
        elif code == 404:
            problem = not_found("there is nothing at this path; see /api/v1/openapi.json")
        elif isinstance(code, int) and 400 <= code < 500:
            problem = Problem(code, str(getattr(error, "description", None) or "cannot route the request"))
        else:
            _log.failure("Admin API: {method} {uri} failed", failure, method=request.method, uri=request.uri)
            problem = internal_error()
        return render_problem(request, problem)


def _endpoint(route: Route) -> Callable[..., Deferred[bytes]]:
    def endpoint(self: AdminAPI, request: IRequest, **params: str) -> Deferred[bytes]:
        return Deferred.fromCoroutine(self.dispatch(route, request, params))

    endpoint.__name__ = route.name
    return endpoint


AdminAPI.app.url_map.merge_slashes = False  # "//orgs" is not found, rather than redirected
for _route in ROUTES:
    AdminAPI.app.route(_route.werkzeug_path, methods=[_route.method], endpoint=_route.operation_id)(
        _endpoint(_route)
    )


def make_api_resource(
    store: Store,
    reactor: IReactorTime,
    *,
    status: Callable[[], dict[str, Any]] | None = None,
    port_available: Callable[[str, int], bool] | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    authenticators: Sequence[Authenticator] | None = None,
    console: Any = None,
    streams: StreamLimits | None = None,
) -> IResource:
    """The admin API (``/api/v1/...``) over ``store``, as a Klein resource to serve at the root of a
    :class:`CappedSite` with the same ``max_body``.

    ``status()`` gives the gateway's live status (``GET /api/v1/status``); ``port_available(kind,
    port)`` says whether a TCP or UDP resource could listen on ``port`` on this gateway; both are
    called on the reactor thread. ``authenticators`` default to API keys only. ``console`` is the
    gateway's live view for the console's routes (see :class:`~kokoa.api._call.Services`);
    ``streams`` bounds its event streams (share one between the listeners of a gateway).
    """
    api = AdminAPI(
        store,
        reactor,
        status=status,
        port_available=port_available,
        max_body=max_body,
        authenticators=authenticators,
        console=console,
        streams=streams,
    )
    return api.resource()
