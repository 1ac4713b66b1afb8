"""Forms and their safety: refusals as pages, query arguments, the CSRF token, POSTed forms."""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import parse_qsl

from twisted.web.iweb import IRequest

CSRF_COOKIE = "__Host-kokoa_csrf"
#: Form bodies larger than this are refused before they are parsed.
MAX_FORM_BYTES = 16 * 1024
#: The longest query argument read (longer ones are cut: every argument we take is far shorter).
MAX_ARG = 4096


class Refused(Exception):
    """A step that cannot go on, with the status and the sentence for the person."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Redirect(Exception):
    """A step that sends the browser elsewhere first (``location``: a URL this code built)."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


def arg(request: IRequest, name: str) -> str | None:
    """A query argument as text (None when missing; a malformed one is a 400)."""
    values = request.args.get(name.encode())
    if not values:
        return None
    try:
        value = values[0].decode("utf-8")[:MAX_ARG]
    except UnicodeDecodeError:
        raise Refused(400, f"The address's {name} parameter is not valid text.") from None
    if "\x00" in value:  # (no database takes it, and no real value holds it)
        raise Refused(400, f"The address's {name} parameter is not valid text.")
    return value


def cookie(request: IRequest, name: str) -> str | None:
    """A cookie's value, if it is ASCII."""
    value = request.getCookie(name.encode())
    if value is None:
        return None
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        return None


def set_cookie(request: IRequest, name: str, value: str, max_age: int | None) -> None:
    """A host-only cookie: Secure, HttpOnly, SameSite=Lax, Path=/ (``max_age`` 0 deletes it)."""
    request.addCookie(
        name.encode(),
        value.encode(),
        path=b"/",
        max_age=None if max_age is None else str(max_age).encode(),
        secure=True,
        httpOnly=True,
        sameSite="lax",
    )


def csrf_token(request: IRequest) -> str:
    """The browser's CSRF token (a new one in its cookie when it has none)."""
    token = cookie(request, CSRF_COOKIE)
    if not token or len(token) != 43:
        token = secrets.token_urlsafe(32)
        set_cookie(request, CSRF_COOKIE, token, None)
    return token


def read_form(request: IRequest, login_origin: str) -> dict[str, str]:
    """The POSTed form, after the CSRF checks: its token equals the cookie's, and an Origin, if sent
    and not ``null`` (what browsers send under ``Referrer-Policy: no-referrer``), is ours."""
    origin = request.getHeader(b"origin")
    if origin is not None and origin not in (b"null", login_origin.encode("ascii")):
        raise Refused(403, "This form was sent from another site: refused (CSRF protection).")
    length = request.getHeader(b"content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_FORM_BYTES):
        raise Refused(413, "The form is too large.")
    raw = request.content.read(MAX_FORM_BYTES + 1) if request.content is not None else b""
    if len(raw) > MAX_FORM_BYTES:
        raise Refused(413, "The form is too large.")
    try:
        pairs = parse_qsl(raw.decode("utf-8"), max_num_fields=20)
    except UnicodeDecodeError:
        raise Refused(400, "The form is not valid text.") from None
    except ValueError:
        raise Refused(400, "The form has too many fields.") from None
    fields = dict(pairs)
    if any("\x00" in k or "\x00" in v for k, v in pairs):
        raise Refused(400, "The form is not valid text.")
    expected = cookie(request, CSRF_COOKIE)
    if not expected or not hmac.compare_digest(fields.get("csrf", "").encode(), expected.encode()):
        raise Refused(403, "The form's security token is missing or stale: reload the page and try again.")
    return fields
