"""Where a browser may be sent back to after signing in: the one check of a return URL (``rd``).

Pure code (no Twisted). Browsers follow a ``Location`` by the WHATWG URL Standard, which reads
some strings differently from RFC 3986 parsers such as :func:`urllib.parse.urlsplit`:
``https://:@evil.example\\@app.localhost/`` is a URL for ``app.localhost`` to ``urlsplit`` but
for ``evil.example`` to Chromium (``\\`` ends the authority), and ``https://evil%2eorg\\.x.test/``
is a label under ``*.x.test`` to one and ``evil.org`` to the other. So a return URL is

1. parsed by a WHATWG-conformant parser (ada, the parser of Node.js), which is what decides the
   host, and
2. read again by a strict parser (below); anything the two could read differently is refused
   rather than guessed at: a backslash before the query, userinfo (``@`` in the authority), an
   ASCII control character or space anywhere, ``%`` or brackets in the host, a port that is not
   digits, non-ASCII in the host unless it is an IDNA label both readings agree on (full-width
   dots, full-width letters and ignored characters such as a soft hyphen are refused),
3. and the URL handed back is re-serialized from the WHATWG parse, never the input string.

What is accepted:

- nothing (``None`` or ``""``): the path ``/`` on the login host;
- a path on the login host: ``/`` then anything that, resolved against ``https://<login host>/``,
  stays on the login host; the result is the re-serialized path and query;
- an absolute ``https`` URL whose host is a DNS name (:func:`is_valid_dns_name`) that
  ``known_host`` accepts (the router's ``knows_host``), or the login host (then it is taken as the
  path on the login host: the login host's own origin is the caller's business, not the input's).

The fragment is dropped. The path handed back never starts with ``//`` (a relative ``Location``
of ``//host`` is another site), so :attr:`ReturnTo.path` is safe as a relative redirect on its
host.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import idna
from ada_url import URL, HostType

__all__ = ["BadReturnURL", "ReturnTo", "check_return_url", "is_valid_dns_label", "is_valid_dns_name"]

#: Longer return URLs are refused (a request line is at most a few KiB anyway).
MAX_LENGTH = 8192

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
# ASCII controls, DEL and space: WHATWG strips them at the ends and drops tab/LF/CR anywhere.
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
_PORT = re.compile(r"[0-9]{1,5}")

_NOT_KNOWN = "The address to return to after signing in is not one of this gateway's resources."
_NOT_A_URL = "The address to return to after signing in is not a valid URL."
_BAD_HOST = "The address to return to after signing in does not name a valid host."
_BAD_PATH = "The address to return to after signing in must be a path starting with one /."


class BadReturnURL(ValueError):
    """A return URL that is refused; ``message`` is a sentence that may be shown to the user."""

    def __init__(self, message: str = _NOT_KNOWN) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class ReturnTo:
    """Where to send the browser, re-serialized from the parse.

    ``url``: what to put in ``Location`` (ASCII): ``https://host[:port]/path?query`` for a
    resource, the path (``/...``) for the login host.
    ``host``: the resource's host (lowercase ASCII, IDNA form), or None for the login host.
    ``netloc``: ``host[:port]`` as serialized (no default port), or ``""`` for the login host.
    ``path``: path and ``?query`` as serialized; starts with ``/``, never with ``//``.
    """

    url: str
    host: str | None
    netloc: str
    path: str


def is_valid_dns_label(label: str) -> bool:
    """One DNS label as the gateway compares them: 1-63 lowercase ASCII letters, digits and
    hyphens, not starting or ending with a hyphen."""
    return _LABEL.fullmatch(label) is not None


def is_valid_dns_name(host: str) -> bool:
    """A DNS name as the gateway compares them: lowercase ASCII (the IDNA form), labels of
    :func:`is_valid_dns_label`, no empty label, no trailing dot, at most 253 characters, and not
    all digits in the last label (that would be read as an IPv4 address)."""
    if not host or len(host) > 253 or not host.isascii():
        return False
    labels = host.split(".")
    return all(_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


def check_return_url(raw: str | None, *, known_host: Callable[[str], bool], login_host: str) -> ReturnTo:
    """Where to send the browser for the return URL ``raw`` (``rd``, already percent-decoded
    from the query), or :class:`BadReturnURL`.

    ``known_host(host)`` says whether ``host`` (lowercase, IDNA form, no port) is a resource's
    host; ``login_host`` is the login host's name (no port).
    """
    login = login_host.lower()
    if not raw:
        return ReturnTo("/", None, "", "/")
    if not isinstance(raw, str) or len(raw) > MAX_LENGTH:
        raise BadReturnURL("The address to return to after signing in is too long.")
    if _CONTROL_OR_SPACE.search(raw):
        raise BadReturnURL("The address to return to after signing in holds spaces or control characters.")
    head = re.split(r"[?#]", raw, maxsplit=1)[0]  # scheme, authority and path
    if "\\" in head:
        raise BadReturnURL("The address to return to after signing in holds a backslash.")
    if raw.startswith("/"):
        if raw.startswith("//"):
            raise BadReturnURL(_BAD_PATH)
        return _login_path(raw, login)
    if raw[:8].lower() != "https://":
        raise BadReturnURL("The address to return to after signing in must start with https://.")
    authority = re.split(r"[/?#]", raw[8:], maxsplit=1)[0]
    host, port = _strict_authority(authority)
    try:
        parsed = URL(raw)
    except ValueError:
        raise BadReturnURL(_NOT_A_URL) from None
    if (
        parsed.protocol != "https:"
        or parsed.username
        or parsed.password
        or parsed.host_type != HostType.DEFAULT
        or parsed.hostname != host
        or parsed.port != port
    ):
        raise BadReturnURL(_NOT_A_URL)  # the two readings differ: never guess which a browser takes
    if host == login:
        return _login_path(_path_of(parsed), login)
    if not known_host(host):
        raise BadReturnURL()
    parsed.hash = ""  # the empty string removes the fragment, "#" and all
    url = parsed.href
    netloc = parsed.host
    prefix = f"https://{netloc}"
    path = url[len(prefix) :]
    if not url.startswith(prefix) or not _is_safe_path(path) or not url.isascii():
        raise BadReturnURL(_BAD_PATH)
    return ReturnTo(url, host, netloc, path)


def _strict_authority(authority: str) -> tuple[str, str]:
    """(host, port) of an authority read strictly: a DNS name and digits, nothing else; the
    port as the WHATWG parser serializes it ("" for none or 443)."""
    if "@" in authority:
        raise BadReturnURL("The address to return to after signing in must not hold a user name.")
    if "%" in authority or "[" in authority or "]" in authority:
        raise BadReturnURL(_BAD_HOST)
    name, colon, port = authority.partition(":")
    if colon:
        if not _PORT.fullmatch(port) or not 0 < int(port) <= 65535:
            raise BadReturnURL("The address to return to after signing in has a malformed port.")
        port = "" if int(port) == 443 else str(int(port))
    labels = []
    for label in name.split("."):
        if label.isascii():
            label = label.lower()
            if label.startswith("xn--") and not _round_trips(idna.decode, idna.encode, label):
                raise BadReturnURL(_BAD_HOST)
        elif not _round_trips(idna.encode, idna.decode, label):
            # full-width letters or dots, ignored or mapped characters: read one way only
            raise BadReturnURL(_BAD_HOST)
        else:
            label = idna.encode(label).decode("ascii")
        labels.append(label)
    host = ".".join(labels)
    if not is_valid_dns_name(host):
        raise BadReturnURL(_BAD_HOST)
    return host, port


def _round_trips(there: Callable, back: Callable, label: str) -> bool:
    """Whether IDNA 2008 (no mapping) takes ``label`` there and back to itself."""
    try:
        other = there(label)
        again = back(other)
    except (idna.IDNAError, UnicodeError, ValueError):
        return False
    if isinstance(again, bytes):
        again = again.decode("ascii")
    return again == label


def _login_path(raw: str, login: str) -> ReturnTo:
    """A path on the login host: resolved against its origin, it must stay there."""
    try:
        parsed = URL(raw, f"https://{login}/")
    except ValueError:
        raise BadReturnURL(_NOT_A_URL) from None
    if parsed.protocol != "https:" or parsed.host != login or parsed.username or parsed.password:
        raise BadReturnURL(_BAD_PATH)
    path = _path_of(parsed)
    if not _is_safe_path(path) or not path.isascii():
        raise BadReturnURL(_BAD_PATH)
    return ReturnTo(path, None, "", path)


def _path_of(parsed: URL) -> str:
    """Path and query of a parsed URL, as serialized (the fragment dropped)."""
    parsed.hash = ""
    href = parsed.href
    return href[len(parsed.origin) :] if href.startswith(parsed.origin) else ""


def _is_safe_path(path: str) -> bool:
    return path.startswith("/") and not path.startswith("//") and not path.startswith("/\\")
