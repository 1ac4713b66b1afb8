"""Shared by the API tests: the API served on a real port with a treq client (``serving``), whose every
response is checked against the OpenAPI document (status documented, content type, body matching its
schema); making objects through the API, and counting rows behind its back."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from kokoa import store as st
from kokoa.api import CappedSite, make_api_resource, openapi_document
from kokoa.api._jsonschema import Validator
from kokoa.api._schemas import SCHEMAS
from kokoa.store import _schema as s

#: The body limit of the API under test: small, so that the 413 tests send little.
MAX_BODY = 16 * 1024


DOCUMENT = openapi_document(max_body=MAX_BODY)
VALIDATOR = Validator(SCHEMAS)


def _operation(method: str, path: str) -> dict[str, Any] | None:
    for template, operations in DOCUMENT["paths"].items():
        pattern = "^/api/v1" + re.sub(r"\\{\w+\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in operations:
            return operations[method.lower()]
    return None


def check_conformance(method: str, path: str, status: int, headers: Headers, body: bytes) -> None:
    """The response is one the OpenAPI document describes: a documented status, the content type
    and a body matching the schema (skipped for undocumented routes, such as unknown paths)."""
    operation = _operation(method, path.split("?")[0])
    if operation is None:
        return
    assert str(status) in operation["responses"], f"{method} {path}: {status} is not documented"
    response = operation["responses"][str(status)]
    if "$ref" in response:
        response = DOCUMENT["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    content = response.get("content")
    if content is None:
        assert body == b"", f"{method} {path}: {status} should have no body"
        return
    (media_type, spec) = next(iter(content.items()))
    assert (headers.getRawHeaders(b"content-type") or [b""])[0].decode() == media_type
    errors = VALIDATOR.errors(spec["schema"], json.loads(body))
    assert not errors, f"{method} {path} -> {status}: the body breaks its schema: {errors}"


@dataclass
class Response:
    status: int
    headers: Headers
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name.encode())
        return values[0].decode() if values else None

    @property
    def fields(self) -> dict[str | None, str]:
        """A problem's field errors, by field."""
        return {e["field"]: e["message"] for e in self.json.get("errors", [])}


@dataclass
class Api:
    """The API under test: its store, its address, an instance-wide key, and a client."""

    store: st.Store
    port: int
    key: str
    client: HTTPClient
    taken_ports: set[tuple[str, int]] = field(default_factory=set)
    status: dict[str, Any] = field(default_factory=lambda: {"sites": {}, "resources": []})

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | bool | None = True,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
        check: bool = True,
    ) -> Response:
        """``method path`` under /api/v1 with ``body`` as JSON (or raw ``data``), authenticated with the
        instance key (``key=False``: none; a string: that key)."""
        full = "/api/v1" + path
        sent: dict[str, list[str]] = {k: [v] for k, v in (headers or {}).items()}
        if key is True:
            key = self.key
        if key:
            sent.setdefault("Authorization", [f"Bearer {key}"])
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", ["application/json"])
        response = await self.client.request(method, self.base + full, headers=sent, data=data)
        raw = await response.content()
        if check:
            check_conformance(method, full, response.code, response.headers, raw)
        return Response(response.code, response.headers, raw)

    async def get(self, path: str, **kw: Any) -> Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Response:
        return await self.request("POST", path, body, **kw)

    async def patch(self, path: str, body: Any = None, **kw: Any) -> Response:
        return await self.request("PATCH", path, body, **kw)

    async def delete(self, path: str, **kw: Any) -> Response:
        return await self.request("DELETE", path, **kw)

    async def audit(self, org: str | None = None, /, **filters: str) -> list[dict[str, Any]]:
        """The audit log (an organization's, or the whole), newest first, read through the API."""
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        path = (f"/orgs/{org}/audit" if org else "/audit") + (f"?{query}" if query else "")
        response = await self.get(path)
        assert response.status == 200, response.json
        return response.json["items"]

    async def create_key(self, org_id: str | None, scopes: list[str]) -> str:
        _, key = await self.store.run(st.create_api_key, "test", org_id=org_id, scopes=scopes)
        return key


@asynccontextmanager
async def serving(store: st.Store, key: str, **options: Any) -> AsyncIterator[Api]:
    """The API over ``store`` on a port of its own, with a client (``options``: for make_api_resource;
    by default the status and the ports in use are the Api object's)."""
    holder: list[Api] = []
    options.setdefault("status", lambda: holder[0].status)
    options.setdefault("port_available", lambda kind, port: (kind, port) not in holder[0].taken_ports)
    resource = make_api_resource(store, reactor, max_body=MAX_BODY, **options)
    listening = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        CappedSite(resource, max_body=MAX_BODY)
    )
    pool = HTTPConnectionPool(reactor, persistent=True)
    holder.append(Api(store, listening.getHost().port, key, HTTPClient(Agent(reactor, pool=pool))))
    try:
        yield holder[0]
    finally:
        await pool.closeCachedConnections()
        await listening.stopListening()


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    """``response`` is a problem document with ``status``; returns it."""
    assert response.status == status, response.raw
    assert response.header("content-type") == "application/problem+json"
    problem = response.json
    assert problem["status"] == status and problem["title"] and problem["detail"] and problem["type"]
    return problem


async def make(api: Any, path: str, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """POST ``body`` to ``path`` and return the created object (asserting 201 and its Location)."""
    response = await api.post(path, body, **kw)
    assert response.status == 201, response.raw
    assert response.header(
        "location",
    ).startswith("/api/v1" + path.split("?")[0])
    return response.json


async def org_with_site_and_resource(api: Any, name: str = "Acme") -> tuple[str, str, str]:
    """A new organization with a site ("home") and an HTTP resource ("wiki"): their ids."""
    org = await make(api, "/orgs", {"name": name})
    site = await make(api, f"/orgs/{org['id']}/sites", {"name": "home"})
    resource = await make(
        api,
        f"/orgs/{org['id']}/resources",
        {"name": "wiki", "kind": "http", "hostname": f"wiki.{name.lower()}.example"},
    )
    return org["id"], site["site"]["id"], resource["id"]


async def count(api: Any, table: str) -> int:
    """Rows in ``table``, read straight from the store."""
    t = s.metadata.tables[table]
    return await api.store.run(lambda conn: conn.execute(select(func.count()).select_from(t)).scalar_one())
