"""The OpenAPI 3.1 document, built from the route table and the schemas (so it describes exactly what
is served and checked)."""

from __future__ import annotations

from typing import Any

from ._routes import ROUTES, Route
from ._schemas import SCHEMAS, ref

PATH_PARAMETER: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": 40,
    "pattern": "^[A-Za-z0-9_-]+$",
    "description": "An id given by the server",
}

DESCRIPTION = """\
The admin API of a Kokoa gateway: organizations, their users, roles, sites, resources, targets,
access grants and rules, share links, members' sessions, API keys, and the audit and access logs.

**Authentication**: `Authorization: Bearer <API key>`. An instance-wide key may do everything; an
organization's key acts only under `/orgs/{its org}`. Scopes: `read` allows GET only, `write` and `*`
allow everything in the key's reach. On the login host (`https://login.<domain>/api/v1`) the web
console's session cookie works too, with an `X-CSRF-Token` header on writes: Owners and Admins of an
organization may do everything under it; Members (and custom roles) only `/me`, `/me/resources`,
`GET /orgs` and `GET /orgs/{org}`.

**Errors** are RFC 9457 problem documents (`application/problem+json`); a 422 lists every field at
fault in `errors`, a 409 names the conflicting field. Request bodies are JSON objects sent with
`Content-Type: application/json`; unknown fields are refused.

**Lists** take `?limit=` (1 to 1000, default 100) and `?cursor=` (the previous page's
`next_cursor`) and answer `{"items": [...], "next_cursor": ... | null}`.

**Secrets** (a site's secret, an API key, a share link's or a reset link's token) are in the response
that creates them, and never again.

**Every write** is recorded in the audit log, in the same transaction.
"""


STREAM_DESCRIPTION = """\
Server-Sent Events until the client goes or the gateway stops: `event:` names the event, `data:` is
one line of JSON, `id:` increases; a `: keepalive` comment every 15 seconds. A client that falls more
than the gateway's buffer behind is disconnected (browsers reconnect by themselves). 503 with
Retry-After when the gateway holds as many streams as it allows."""


def _problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/problem+json": {"schema": ref("Problem")}},
    }
    if headers:
        response["headers"] = headers
    return response


ERROR_RESPONSES: dict[str, tuple[int, dict[str, Any]]] = {
    "BadRequest": (400, _problem("The body is not JSON, or not UTF-8.")),
    "Unauthorized": (
        401,
        _problem(
            "No API key, or an unknown, expired or revoked one.",
            {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
        ),
    ),
    "Forbidden": (403, _problem("The key may not do this (read-only scope, another organization).")),
    "NotFound": (404, _problem("No such object (in this organization).")),
    "Conflict": (409, _problem("A duplicate (name, hostname, port...), a port in use, or a broken rule.")),
    "ContentTooLarge": (413, _problem("The body is larger than the limit.")),
    "UnsupportedMediaType": (415, _problem("The body is not sent as application/json.")),
    "Invalid": (422, _problem("Invalid fields: each is named in errors.")),
    "Unavailable": (503, _problem("The store (or the gateway status) is unavailable.")),
}


#: Where the id of a created object is in the response body (JSON pointer), by response schema.
ID_POINTERS = {
    "SiteWithSecret": "/site/id",
    "ApiKeyWithKey": "/api_key/id",
    "ShareLinkWithToken": "/share_link/id",
    "Membership": "/user_id",
}


def _links(route: Route) -> dict[str, Any]:
    """OpenAPI links from a create operation to the operations on what it created (for tools such as
    schemathesis, which then follow them: create, then read, change and delete)."""
    if route.method != "POST" or route.status != 201 or route.response is None:
        return {}
    items = [r for r in ROUTES if r.path.startswith(route.path + "/{") and r is not route]
    if not items:
        return {}
    new = items[0].parameters[len(route.parameters)]
    pointer = ID_POINTERS.get(route.response, "/id")
    links: dict[str, Any] = {}
    parameters = {name: f"$request.path.{name}" for name in route.parameters}
    parameters[new] = f"$response.body#{pointer}"
    for target in items:
        if not set(target.parameters) <= set(parameters):
            continue  # deeper down: needs ids this response does not give
        links[target.operation_id[0].upper() + target.operation_id[1:]] = {
            "operationId": target.operation_id,
            "parameters": {name: parameters[name] for name in target.parameters},
        }
    return links


def _errors_of(route: Route) -> list[str]:
    names: list[str] = []
    if route.auth:
        names += ["Unauthorized", "Forbidden", "Unavailable"]
    if route.parameters:
        names.append("NotFound")
    if route.body:
        names += ["BadRequest", "ContentTooLarge", "UnsupportedMediaType"]
    if route.method != "GET":
        names.append("Conflict")
    if route.body or route.query or route.method != "GET":
        names.append("Invalid")
    return names


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": route.operation_id, "summary": route.summary, "tags": [route.tag]}
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": PATH_PARAMETER} for name in route.parameters
    ]
    parameters += [
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in route.query.items()
    ]
    if parameters:
        op["parameters"] = parameters
    if route.body:
        op["requestBody"] = {
            "required": route.body_required,
            "content": {"application/json": {"schema": ref(route.body)}},
        }
    success: dict[str, Any] = {"description": "OK" if route.status == 200 else "Created"}
    if route.status == 204:
        success["description"] = "Done"
    elif route.stream:
        success["description"] = STREAM_DESCRIPTION
        success["content"] = {"text/event-stream": {"schema": {"type": "string"}}}
    else:
        schema = ref(route.response) if route.response else {"type": "object"}
        success["content"] = {"application/json": {"schema": schema}}
    if route.status == 201:
        success["headers"] = {
            "Location": {"schema": {"type": "string"}, "description": "The path of the new object"}
        }
        if links := _links(route):
            success["links"] = links
    responses: dict[str, Any] = {str(route.status): success}
    for name in _errors_of(route):
        status, _ = ERROR_RESPONSES[name]
        responses[str(status)] = {"$ref": f"#/components/responses/{name}"}
    op["responses"] = dict(sorted(responses.items()))
    if not route.auth:
        op["security"] = []
    return op


def openapi_document(*, max_body: int | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API (``max_body``: the body size limit, to state it)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    description = DESCRIPTION
    if max_body is not None:
        description += f"\nRequest bodies above {max_body} bytes are refused with 413.\n"
    return {
        "openapi": "3.1.0",
        "info": {"title": "Kokoa admin API", "version": "1", "description": description},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "tags": [{"name": name} for name in dict.fromkeys(route.tag for route in ROUTES)],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "responses": {name: response for name, (_, response) in ERROR_RESPONSES.items()},
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "kk_<8 characters>_<secret>",
                    "description": "An API key",
                }
            },
        },
    }
