"""Start the real test OpenID Connect provider (``oidc_provider.py``) in a subprocess, and sign in to it.

``running_provider(tmp_path, client_id=..., client_secret=..., redirect_uri=...)`` is a context
manager yielding the provider's issuer URL (``http://127.0.0.1:PORT``) once its discovery answers;
``sign_in(authorize_url, email, password)`` posts the login form as a browser would and returns
the query of the redirect back (``code``, ``state``).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

from twisted.internet import threads

PROVIDER_SCRIPT = Path(__file__).with_name("oidc_provider.py")

#: Users for tests that need nothing special.
USERS = (
    {"email": "ada@example.com", "password": "correct horse", "name": "Ada Lovelace"},
    {"email": "bob@example.org", "password": "hunter22", "name": "Bob", "email_verified": False},
)


@contextlib.contextmanager
def running_provider(
    workdir: Path,
    users: Sequence[dict] = USERS,
    *,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    host: str = "127.0.0.1",
    extra_args: Sequence[str] = (),
    tls: tuple[str, str, str] | None = None,  # (cert, key, CA file that trusts it)
    startup_timeout: float = 20.0,
) -> Iterator[str]:
    """Run the provider on a free port until the block ends; yield its issuer URL once discovery answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    users_file = workdir / "oidc-users.json"
    users_file.write_text(json.dumps(list(users)))
    port_file = workdir / "oidc-port"
    port_file.unlink(missing_ok=True)
    log_path = workdir / "oidc-provider.log"
    command = [
        sys.executable,
        str(PROVIDER_SCRIPT),
        "--port=0",
        f"--issuer-host={host}",
        f"--users={users_file}",
        f"--client-id={client_id}",
        f"--client-secret={client_secret}",
        f"--redirect-uri={redirect_uri}",
        f"--port-file={port_file}",
        *extra_args,
    ]
    if tls is not None:
        command += [f"--tls-cert={tls[0]}", f"--tls-key={tls[1]}"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        issuer = _wait_until_ready(
            process, port_file, host, tls[2] if tls else None, startup_timeout, log_path
        )
        yield issuer
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_ready(process, port_file: Path, host: str, ca_file, timeout: float, log_path: Path) -> str:
    deadline = time.monotonic() + timeout
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    scheme = "https" if ca_file else "http"
    netloc = f"[{host}]" if ":" in host else host
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the OIDC provider exited ({process.returncode}):\n{log_path.read_text()}")
        if port_file.exists():
            issuer = f"{scheme}://{netloc}:{int(port_file.read_text())}"
            try:
                with urllib.request.urlopen(
                    issuer + "/.well-known/openid-configuration", timeout=2, context=context
                ) as response:
                    if json.load(response)["issuer"] == issuer:
                        return issuer
            except OSError as e:
                last_error = e
        time.sleep(0.05)
    raise RuntimeError(f"the OIDC provider did not start ({last_error}):\n{log_path.read_text()}")


def post_login(authorize_url: str, email: str, password: str, ca_file: str | None = None) -> tuple[int, str]:
    """Submit the provider's login form as a browser would (blocking): (status, Location header)."""
    parts = urlsplit(authorize_url)
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=ca_file)
        connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=10, context=context)
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    body = urlencode({"email": email, "password": password})
    try:
        connection.request(
            "POST",
            f"{parts.path}?{parts.query}",
            body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("Location", "")
    finally:
        connection.close()


async def sign_in(
    authorize_url: str, email: str, password: str, ca_file: str | None = None
) -> dict[str, str]:
    """Log in at the provider (in a thread) and return the query of the redirect back: ``code``, ``state``."""
    status, location = await threads.deferToThread(post_login, authorize_url, email, password, ca_file)
    if status != 302:
        raise AssertionError(f"the provider did not redirect after the login form (HTTP {status})")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
