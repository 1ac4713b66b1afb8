"""A small blocking client for the admin API (a command line has no reactor)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

API_KEY_ENV = "KOKOA_API_KEY"
#: Seconds to wait for an API answer.
TIMEOUT = 30


class ApiError(Exception):
    """The API refused a request (its problem document), or could not be reached."""

    def __init__(self, message: str, status: int | None = None, errors: list | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors or []

    def __str__(self) -> str:
        details = "".join(f"\n  {e.get('field', '?')}: {e.get('message', '')}" for e in self.errors)
        return super().__str__() + details


@dataclass
class Api:
    url: str  # http://host:port (without /api/v1)
    key: str

    def call(self, method: str, path: str, body: dict | None = None) -> dict | None:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url.rstrip("/") + "/api/v1" + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.key}", "Accept": "application/json"}
            | ({"Content-Type": "application/json"} if data is not None else {}),
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            raise _problem(e) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ApiError(
                f"cannot reach the API at {self.url}: {reason} (is the gateway running?)"
            ) from None
        return json.loads(raw) if raw else None

    def get(self, path: str) -> dict:
        return self.call("GET", path)

    def post(self, path: str, body: dict) -> dict:
        return self.call("POST", path, body)

    def patch(self, path: str, body: dict) -> dict:
        return self.call("PATCH", path, body)

    def delete(self, path: str) -> None:
        self.call("DELETE", path)

    def all(self, path: str) -> list[dict]:
        """Every item of a paginated list."""
        items, cursor = [], None
        while True:
            sep = "&" if "?" in path else "?"
            page = self.get(path + (f"{sep}cursor={cursor}" if cursor else ""))
            items += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return items


def _problem(error: urllib.error.HTTPError) -> ApiError:
    try:
        problem = json.loads(error.read() or b"{}")
    except ValueError:
        problem = {}
    title = problem.get("detail") or problem.get("title") or error.reason
    return ApiError(f"{error.code} {title}", error.code, problem.get("errors"))


def connect(api_url: str | None, key_file: str | None, data_dir: str | None) -> Api:
    """The API to talk to: flags first, then the environment, then what the gateway of
    ``data_dir`` wrote (gateway.json, admin.key)."""
    info = _gateway_info(data_dir)
    url = api_url or os.environ.get("KOKOA_API_URL") or info.get("api")
    if not url:
        raise ApiError(
            "no API address: pass --api URL, or --data-dir DIR of a running gateway (it writes "
            "DIR/gateway.json)"
        )
    key = None
    if key_file:
        key = _read_key(Path(key_file))
    elif os.environ.get(API_KEY_ENV):
        key = os.environ[API_KEY_ENV].strip()
    elif data_dir and (Path(data_dir) / "admin.key").exists():
        key = _read_key(Path(data_dir) / "admin.key")
    if not key:
        raise ApiError(
            f"no API key: set {API_KEY_ENV}, pass --key-file FILE, or --data-dir DIR with DIR/admin.key"
        )
    return Api(url, key)


def gateway_info(data_dir: str | None) -> dict:
    """What the gateway of ``data_dir`` says about itself (tunnel addresses, CA file)."""
    return _gateway_info(data_dir)


def _gateway_info(data_dir: str | None) -> dict:
    if not data_dir:
        return {}
    try:
        return json.loads((Path(data_dir) / "gateway.json").read_text())
    except (OSError, ValueError):
        return {}


def _read_key(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as e:
        raise ApiError(f"cannot read the API key file {path}: {e.strerror}") from None
