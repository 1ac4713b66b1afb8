"""Errors as RFC 9457 problem documents (``application/problem+json``).

Every refusal of the API is a :class:`Problem`: an exception carrying the HTTP status, a ``type``
(``about:blank`` when the status says it all, else one of the stable URIs below), a human ``detail``,
and for validation errors a list of ``errors``, each naming the field at fault (``health_check.interval``,
``scopes[0]``; ``null`` for the body as a whole).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from kokoa.store import Conflict, Invalid, NotFound, StoreError

PROBLEM_CONTENT_TYPE = b"application/problem+json"

#: Stable problem types (URNs: they name a kind of error, they are not meant to be fetched).
VALIDATION = "urn:kokoa:problem:validation"
CONFLICT = "urn:kokoa:problem:conflict"
PORT_IN_USE = "urn:kokoa:problem:port-in-use"
PROBLEM_TYPES = ("about:blank", VALIDATION, CONFLICT, PORT_IN_USE)

#: Reason phrases as RFC 9110 names them (Python 3.11's http.HTTPStatus has older names for these).
_PHRASES = {413: "Content Too Large", 422: "Unprocessable Content"}


def reason_phrase(status: int) -> str:
    return _PHRASES.get(status) or HTTPStatus(status).phrase


@dataclass(frozen=True, slots=True)
class FieldError:
    """One field at fault: ``field`` is a dotted path (None: the whole body), ``message`` says why."""

    field: str | None
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"field": self.field, "message": self.message}


class Problem(Exception):
    """A refusal, rendered as a problem document with ``status``."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type: str = "about:blank",
        title: str | None = None,
        errors: Sequence[FieldError] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.type = type
        self.title = title or reason_phrase(status)
        self.errors = tuple(errors)
        self.headers = dict(headers or {})

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            doc["errors"] = [e.to_json() for e in self.errors]
        return doc

    def body(self) -> bytes:
        return json.dumps(self.document(), ensure_ascii=False, separators=(",", ":")).encode()


def bad_request(detail: str) -> Problem:
    return Problem(400, detail)


def unauthorized(detail: str, *, invalid_token: bool = False) -> Problem:
    challenge = 'Bearer realm="kokoa"'
    if invalid_token:
        challenge += ', error="invalid_token"'
    return Problem(401, detail, headers={"WWW-Authenticate": challenge})


def forbidden(detail: str) -> Problem:
    return Problem(403, detail)


def not_found(detail: str) -> Problem:
    return Problem(404, detail)


def method_not_allowed(method: str, allowed: Iterable[str]) -> Problem:
    allow = ", ".join(sorted(set(allowed)))
    return Problem(405, f"{method} is not allowed here; use {allow}", headers={"Allow": allow})


def conflict(field: str | None, message: str, *, type: str = CONFLICT) -> Problem:
    detail = f"{field}: {message}" if field else message
    return Problem(409, detail, type=type, title="Conflict", errors=[FieldError(field, message)])


def port_in_use(port: int) -> Problem:
    return conflict("public_port", f"port {port} is already in use on this gateway", type=PORT_IN_USE)


def content_too_large(limit: int) -> Problem:
    return Problem(413, f"the request body is larger than the limit of {limit} bytes")


def unsupported_media_type(detail: str) -> Problem:
    return Problem(415, detail)


def invalid(errors: Sequence[FieldError]) -> Problem:
    if len(errors) == 1:
        e = errors[0]
        detail = f"{e.field}: {e.message}" if e.field else e.message
    else:
        detail = f"{len(errors)} fields are invalid"
    return Problem(422, detail, type=VALIDATION, title="Invalid request", errors=errors)


def unavailable(detail: str) -> Problem:
    return Problem(503, detail)


def internal_error() -> Problem:
    return Problem(500, "the server failed to handle the request; the error is in its log")


def from_store_error(error: StoreError, references: Mapping[str, Any] | None = None) -> Problem:
    """The problem for a store refusal.

    ``references`` maps the body fields that name other objects to their values (``{"site_id":
    "site_..."}``): an unknown object named there is a bad field (422), not a missing resource (404).
    """
    if isinstance(error, NotFound):
        for field, value in (references or {}).items():
            if value == error.id:
                return invalid([FieldError(field, error.message)])
        return not_found(error.message)
    if isinstance(error, Conflict):
        return conflict(error.field, error.message)
    if isinstance(error, Invalid):
        return invalid([FieldError(error.field, error.message)])
    return unavailable(error.message)
