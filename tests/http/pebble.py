"""Pebble (Let's Encrypt's ACME test server) and its DNS, started on loopback for the ACME tests.

`pebble-challtestsrv` answers every DNS name with 127.0.0.1 (and no AAAA), and pebble validates
HTTP-01 challenges on 127.0.0.1:HTTP_PORT, where the test serves them. Pebble's own TLS uses a
CA made for the test (the Debian package ships no test certificate); the directory is
``https://127.0.0.1:PORT/dir`` and `Pebble.ca_bundle` verifies it.

Without /usr/bin/pebble the tests skip, saying why, unless KOKOA_REQUIRE_PEBBLE=1 (then they
fail): CI sets it so that a missing package cannot turn the tests silently into skips.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kokoa import pki

PEBBLE = "/usr/bin/pebble"
CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"


def require_pebble() -> None:
    missing = [path for path in (PEBBLE, CHALLTESTSRV) if not os.access(path, os.X_OK)]
    if not missing:
        return
    why = f"{' and '.join(missing)} not installed (Debian: apt-get install pebble)"
    if os.environ.get("KOKOA_REQUIRE_PEBBLE") == "1":
        pytest.fail(f"{why}, and KOKOA_REQUIRE_PEBBLE=1 requires it", pytrace=False)
    pytest.skip(why)


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


@dataclass
class Pebble:
    folder: Path
    directory: str  # the ACME directory URL
    ca_bundle: str  # verifies pebble's HTTPS (directory and management)
    management: str  # https://127.0.0.1:PORT of pebble's management interface
    processes: list[subprocess.Popen] = field(default_factory=list)

    def root_pem(self) -> bytes:
        """The root that signed pebble's issued certificates (a new one at every start)."""
        ctx = ssl.create_default_context(cafile=self.ca_bundle)
        with urllib.request.urlopen(f"{self.management}/roots/0", context=ctx, timeout=10) as response:
            return response.read()

    def log_tail(self) -> str:
        parts = []
        for name in ("pebble.log", "challtestsrv.log"):
            path = self.folder / name
            if path.exists():
                parts.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-30:]))
        return "\n".join(parts)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.processes.clear()


def start_pebble(folder: Path, http_port: int, validity_seconds: int | None = None) -> Pebble:
    """Start challtestsrv and pebble (blocking, a fraction of a second); stop() them after."""
    require_pebble()
    folder.mkdir(parents=True, exist_ok=True)
    tls = pki.ensure_dev_ca(folder / "tls")
    dns_port, dns_management, acme_port, management_port, tls_port = (free_port() for _ in range(5))
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{acme_port}",
            "managementListenAddress": f"127.0.0.1:{management_port}",
            "certificate": tls.cert_path,
            "privateKey": tls.key_path,
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    if validity_seconds is not None:
        config["pebble"]["certificateValidityPeriod"] = validity_seconds
    config_path = folder / "pebble-config.json"
    config_path.write_text(json.dumps(config, indent=2))
    pebble = Pebble(
        folder=folder,
        directory=f"https://127.0.0.1:{acme_port}/dir",
        ca_bundle=str(tls.ca_path),
        management=f"https://127.0.0.1:{management_port}",
    )
    env = {
        **os.environ,
        "PEBBLE_VA_NOSLEEP": "1",  # no random sleeps before validating
        "PEBBLE_WFE_NONCEREJECT": "0",  # no random badNonce rejections
        "PEBBLE_AUTHZREUSE": "0",  # orders validate again (pebble still reuses about 1 in 100)
    }
    try:
        with open(folder / "challtestsrv.log", "wb") as out:
            pebble.processes.append(
                subprocess.Popen(
                    [
                        CHALLTESTSRV,
                        *("-dns01", f"127.0.0.1:{dns_port}"),
                        *("-http01", "", "-https01", "", "-tlsalpn01", ""),  # DNS only
                        *("-management", f"127.0.0.1:{dns_management}"),
                        *("-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""),  # every name: 127.0.0.1
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            )
        _wait_for_port(pebble, dns_management)
        with open(folder / "pebble.log", "wb") as out:
            pebble.processes.append(
                subprocess.Popen(
                    [PEBBLE, "-config", str(config_path), "-dnsserver", f"127.0.0.1:{dns_port}"],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            )
        _wait_for_port(pebble, acme_port)
        _wait_for_port(pebble, management_port)
    except BaseException:
        pebble.stop()
        raise
    return pebble


def _wait_for_port(pebble: Pebble, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in pebble.processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args[0]} exited ({process.returncode}):\n{pebble.log_tail()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s:\n{pebble.log_tail()}")
