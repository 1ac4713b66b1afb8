"""What a handler gets (:class:`Call`) and gives back (:class:`Reply`), and the reading of request
bodies and query strings into checked values."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from twisted.web.iweb import IRequest

from kokoa.store import Page, Store, append_audit, jsonable

from ._auth import Principal
from ._jsonschema import Schema, Validator, parse_datetime
from ._problems import FieldError, bad_request, content_too_large, invalid, unsupported_media_type

#: The API prefix: every route lives under it.
PREFIX = "/api/v1"


@dataclass(frozen=True, slots=True)
class Services:
    """What the handlers work with (one per API instance).

    ``console`` is the gateway's live view for the console's routes (``kokoa.gateway._console.
    ConsoleView``: tunnels, health, the event hub, the request inspector); None where the API runs
    without a gateway (tests, the dev server): those routes answer 503 then."""

    store: Store
    status: Callable[[], dict[str, Any]] | None
    port_available: Callable[[str, int], bool] | None
    console: Any = None


@dataclass(slots=True)
class Call:
    """One request, authenticated and checked: path parameters, query values and the JSON body."""

    services: Services
    principal: Principal | None
    params: dict[str, str]
    query: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)
    source_address: str | None = None
    #: The Host the request was sent to, without the port (where the caller reached this gateway).
    host: str | None = None

    @property
    def store(self) -> Store:
        return self.services.store

    def audit(
        self,
        conn: Connection,
        action: str,
        *,
        org_id: str | None,
        kind: str,
        object_id: str,
        before: Any = None,
        after: Any = None,
    ) -> None:
        """Append the audit entry of a write, in the write's own transaction (run this in ``store.run``)."""
        assert self.principal is not None
        append_audit(
            conn,
            self.principal.actor,
            action,
            org_id=org_id,
            object_kind=kind,
            object_id=object_id,
            before=before,
            after=after,
            source_address=self.source_address,
        )


@dataclass(frozen=True, slots=True)
class Reply:
    """A handler's answer: ``body`` is JSON data (None: no body); ``location`` a path under the API."""

    status: int = 200
    body: Any = None
    location: str | None = None


NO_CONTENT = Reply(204)


def ok(body: Any) -> Reply:
    return Reply(200, body)


def created(body: Any, location: str) -> Reply:
    return Reply(201, body, PREFIX + location)


def page(p: Page[Any]) -> dict[str, Any]:
    return {"items": [jsonable(item) for item in p.items], "next_cursor": p.next_cursor}


# -- request bodies ----------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {key!r} appears twice")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _strings_ok(value: Any, path: str = "") -> FieldError | None:
    """The first string (key or value) the database could not store: NUL characters, lone surrogates."""
    if isinstance(value, str):
        if "\x00" in value:
            return FieldError(path or None, "must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return FieldError(path or None, "must be valid Unicode (no lone surrogates)")
    elif isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else key
            problem = _strings_ok(key, here) or _strings_ok(item, here)
            if problem:
                return problem
    elif isinstance(value, list):
        for i, item in enumerate(value):
            problem = _strings_ok(item, f"{path}[{i}]")
            if problem:
                return problem
    return None


def is_json_media_type(content_type: bytes | None) -> bool:
    if content_type is None:
        return False
    media, *params = content_type.decode("latin-1").split(";")
    media = media.strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        return False
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


def read_body(
    request: IRequest, schema: Schema, validator: Validator, max_body: int, *, required: bool
) -> dict[str, Any]:
    """The request's JSON object body, checked against ``schema``: 413 above ``max_body`` bytes, 415
    without a JSON content type, 400 for malformed JSON, 422 for a body breaking the schema.

    An empty body is ``{}`` when the body is optional (no content type needed then)."""
    content = request.content
    raw = b"" if content is None else content.read(max_body + 1)
    if len(raw) > max_body:
        raise content_too_large(max_body)
    if not raw and not required:
        return {}
    if not is_json_media_type(request.getHeader(b"content-type")):
        raise unsupported_media_type("send the body as JSON, with Content-Type: application/json")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("the body is not UTF-8 text") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except ValueError as e:
        raise bad_request(f"the body is not valid JSON: {e}") from None
    except RecursionError:
        raise bad_request("the body is nested too deeply") from None
    if not isinstance(value, dict):
        raise invalid([FieldError(None, "the body must be a JSON object")])
    errors = validator.errors(schema, value)
    bad_string = _strings_ok(value)
    if bad_string is not None:
        errors.append(bad_string)
    if errors:
        raise invalid(errors)
    return value


# -- query strings -----------------------------------------------------------------------------------


def read_query(request: IRequest, parameters: Mapping[str, Schema], validator: Validator) -> dict[str, Any]:
    """The query parameters named in ``parameters``, converted (integers, date-times) and checked;
    others are ignored. A repeated parameter counts once (the first)."""
    values: dict[str, Any] = {}
    errors: list[FieldError] = []
    args: Mapping[bytes, list[bytes]] = request.args or {}
    for name, schema in parameters.items():
        raw = args.get(name.encode())
        if not raw:
            continue
        try:
            text = raw[0].decode("utf-8")
        except UnicodeDecodeError:
            errors.append(FieldError(name, "must be UTF-8 text"))
            continue
        value: Any = text
        kind = schema.get("type")
        if "\x00" in text:
            errors.append(FieldError(name, "must not contain NUL characters"))
            continue
        if kind == "integer":
            if not re.fullmatch(r"-?[0-9]{1,18}", text):
                errors.append(FieldError(name, "must be an integer"))
                continue
            value = int(text)
        field_errors = validator.errors(schema, value, name)
        if field_errors:
            errors += field_errors
            continue
        if schema.get("format") == "date-time":
            when: datetime | None = parse_datetime(text)
            value = when
        values[name] = value
    if errors:
        raise invalid(errors)
    return values
