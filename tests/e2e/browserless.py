"""A small HTTPS client that behaves like a browser where sign-in cares: a cookie jar per host that
honours Secure/HttpOnly/Max-Age, redirects followed by hand, and every connection to the gateway's
loopback port with the virtual host in SNI and Host (so ``*.localhost`` needs no resolver)."""

from __future__ import annotations

import http.client
import socket
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlencode, urljoin, urlsplit


class _Connection(http.client.HTTPSConnection):
    def __init__(
        self,
        port: int,
        server_name: str,
        context: ssl.SSLContext,
        source: str = "127.0.0.1",
        timeout: float = 30.0,
    ) -> None:
        super().__init__("127.0.0.1", port, context=context, timeout=timeout)
        self.server_name = server_name
        self.source = source
        self._ctx = context

    def connect(self) -> None:
        raw = socket.create_connection(
            ("127.0.0.1", self.port), timeout=self.timeout, source_address=(self.source, 0)
        )
        self.sock = self._ctx.wrap_socket(raw, server_hostname=self.server_name)


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    url: str

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass
class Browser:
    port: int  # the gateway's HTTPS port (every host is served there)
    ca_file: str
    jar: dict[str, dict[str, str]] = field(default_factory=dict)
    history: list[Response] = field(default_factory=list)
    #: The client address its connections to the gateway come from (any of 127.0.0.0/8: distinct,
    #: real client addresses on loopback), and how long a request may take.
    source: str = "127.0.0.1"
    timeout: float = 30.0
    context: ssl.SSLContext | None = None

    def _context(self) -> ssl.SSLContext:
        if self.context is None:
            self.context = ssl.create_default_context(cafile=self.ca_file)
        return self.context

    def request(
        self, method: str, url: str, body: bytes | None = None, headers: dict | None = None
    ) -> Response:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host.endswith(".localhost"):
            conn: http.client.HTTPConnection = _Connection(
                self.port, host, self._context(), self.source, self.timeout
            )
        elif parts.scheme == "http":  # another server (an identity provider): reached as it is
            conn = http.client.HTTPConnection(host, parts.port or 80, timeout=self.timeout)
        else:
            conn = http.client.HTTPSConnection(host, parts.port or 443, timeout=30)
        sent = {"Host": parts.netloc, "Accept": "text/html", **(headers or {})}
        cookies = self.jar.get(host)
        if cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request(method, path, body=body, headers=sent)
            raw = conn.getresponse()
            response = Response(raw.status, raw.getheaders(), raw.read(), url)
        finally:
            conn.close()
        for cookie in response.all("Set-Cookie"):
            self._store(host, cookie)
        self.history.append(response)
        return response

    def _store(self, host: str, header: str) -> None:
        pair, *attributes = [p.strip() for p in header.split(";")]
        name, _, value = pair.partition("=")
        flags = {a.split("=", 1)[0].lower(): [*a.split("=", 1), ""][1] for a in attributes}
        assert "secure" in flags and "httponly" in flags, f"cookie without Secure/HttpOnly: {header}"
        if name.startswith("__Host-"):
            assert "domain" not in flags and flags.get("path") == "/", header
        jar = self.jar.setdefault(host, {})
        if flags.get("max-age") == "0" or not value:
            jar.pop(name, None)
        else:
            jar[name] = value

    def go(
        self, url: str, method: str = "GET", form: dict | None = None, max_redirects: int = 10
    ) -> Response:
        body = None
        headers = {}
        if form is not None:
            body = urlencode(form).encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            origin = urlsplit(url)
            headers["Origin"] = f"{origin.scheme}://{origin.netloc}"
        response = self.request(method, url, body, headers)
        for _ in range(max_redirects):
            if response.status not in (301, 302, 303, 307, 308):
                return response
            url = urljoin(url, response.header("Location") or "/")
            response = self.request("GET", url)
        return response
