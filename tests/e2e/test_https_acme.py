"""ACME end to end: a real gateway process, configured with [acme] against a real pebble,
gets a certificate for an HTTP resource's hostname (HTTP-01 answered by its own HTTP front)
and serves it by SNI."""

from __future__ import annotations

import socket
import ssl
import sys
from pathlib import Path

import pytest

from .harness import wait_for
from .test_http_resources import HttpDeployment

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "http"))
from pebble import start_pebble

pytestmark = pytest.mark.e2e
HOST = "app.kokoa-acme.net"  # challtestsrv resolves every name to 127.0.0.1


def served_names(port: int, host: str, cafile: str) -> list[str] | None:
    context = ssl.create_default_context(cafile=cafile)
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        with raw, context.wrap_socket(raw, server_hostname=host) as s:
            return [value for kind, value in s.getpeercert()["subjectAltName"] if kind == "DNS"]
    except (ssl.SSLError, OSError):
        return None  # not issued yet: the gateway's default certificate does not verify here


def test_a_resource_hostname_gets_a_certificate_from_acme(tmp_path):
    d = HttpDeployment(tmp_path)
    pebble = start_pebble(tmp_path / "pebble", d.http_port)
    try:
        d.extra_config = (
            f'[acme]\ndirectory = "{pebble.directory}"\nca_bundle = "{pebble.ca_bundle}"\n'
            'email = "ops@example.com"\nagree_tos = true\n'
        )
        d.start_all()
        d.add_http("acme", HOST, d.upstream_port)
        root = tmp_path / "pebble-root.pem"
        root.write_bytes(pebble.root_pem())
        wait_for(
            lambda: served_names(d.https_port, HOST, str(root)) == [HOST],
            f"a certificate for {HOST} issued by pebble",
            timeout=60,
            logs=[d.gateway.log, pebble.folder / "pebble.log"],
        )
        assert (d.data / "acme").is_dir()
    finally:
        pebble.stop()
        upstream = getattr(d, "upstream", None)
        if upstream is not None:
            upstream.stop()
        d.stop()
