"""The operator's path: kokoa init, the gateway, kokoa site add, the printed edge command,
kokoa resource add, and bytes through the resource, without restarting anything."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .harness import KOKOA, Deployment, EchoTarget, free_port, wait_for
from .test_tcp_resources import echo_once

pytestmark = pytest.mark.e2e
VENV_BIN = str(Path(sys.executable).parent)


def kokoa(data: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([KOKOA, "-d", str(data), *args], capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_init_site_add_edge_resource_add_and_bytes_flow(tmp_path):
    echo = EchoTarget()
    d = Deployment(tmp_path)
    edge = None
    try:
        out = kokoa(d.data, "init", "--email", "owner@example.com").stdout
        assert "admin API key" in out and (d.data / "admin.key").stat().st_mode & 0o777 == 0o600
        d.start_gateway()

        out = kokoa(d.data, "site", "add", "home").stdout
        site_id = re.search(r"id (site_\w+)", out).group(1)
        command = next(line.strip() for line in out.splitlines() if "kokoa-edge" in line)
        assert "KOKOA_SITE_SECRET=" in command and f"--site {site_id}" in command
        # Run the printed command as an operator would paste it into a shell.
        log = (tmp_path / "edge.log").open("wb")
        edge = subprocess.Popen(
            command,
            shell=True,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}"),
            start_new_session=True,
            cwd=tmp_path,
        )
        wait_for(lambda: d.tunnels(site_id) == 2, "the edge to connect", logs=[tmp_path / "edge.log"])

        port = free_port()
        out = kokoa(
            d.data,
            "resource",
            "add",
            "echo",
            "--site",
            "home",
            "--tcp-port",
            str(port),
            "--target",
            f"127.0.0.1:{echo.port}",
        ).stdout
        assert f"tcp port {port}" in out
        wait_for(lambda: echo_once(port) == b"hello kokoa", "bytes through the new resource")

        status = kokoa(d.data, "status").stdout
        assert "site home" in status and "online, 2 tunnel(s)" in status
        assert f"resource echo: tcp:{port}" in status
    finally:
        if edge is not None:
            os.killpg(edge.pid, signal.SIGKILL)
            edge.wait()
        d.stop()
        echo.close()


def test_cli_errors_are_clear(tmp_path):
    d = Deployment(tmp_path)
    try:
        result = kokoa(d.data, "status", check=False)
        assert result.returncode == 2 and "no API address" in result.stderr
        d.start_gateway()
        result = kokoa(
            d.data,
            "resource",
            "add",
            "x",
            "--site",
            "nowhere",
            "--tcp-port",
            "1",
            "--target",
            "h:1",
            check=False,
        )
        assert result.returncode == 2 and "no site 'nowhere'" in result.stderr
        kokoa(d.data, "site", "add", "home")
        result = kokoa(d.data, "site", "add", "home", check=False)
        assert result.returncode == 2 and "409" in result.stderr
        result = kokoa(
            d.data,
            "resource",
            "add",
            "x",
            "--site",
            "home",
            "--tcp-port",
            "70000",
            "--target",
            "h:1",
            check=False,
        )
        assert result.returncode == 2 and "422" in result.stderr and "public_port" in result.stderr
        with socket.socket() as squatter:  # a port another program holds
            squatter.bind(("", 0))
            squatter.listen(1)
            taken = squatter.getsockname()[1]
            result = kokoa(
                d.data,
                "resource",
                "add",
                "y",
                "--site",
                "home",
                "--tcp-port",
                str(taken),
                "--target",
                "h:1",
                check=False,
            )
        assert result.returncode == 2 and "409" in result.stderr and "already in use" in result.stderr
        result = kokoa(d.data, "init", "--email", "a@example.com", check=False)
        assert result.returncode == 2 and "initialized already" in result.stderr
    finally:
        d.stop()


KOKOA_YAML = """\
sites:
  - name: home
resources:
  - name: echo
    port: {port}
    targets:
      - site: home
        target: 127.0.0.1:{echo}
"""


def test_apply_is_idempotent_and_dry_run_changes_nothing(tmp_path):
    echo = EchoTarget()
    d = Deployment(tmp_path)
    try:
        d.start_gateway()
        port = free_port()
        spec = tmp_path / "kokoa.yaml"
        spec.write_text(KOKOA_YAML.format(port=port, echo=echo.port))
        dry = kokoa(d.data, "apply", "-f", str(spec), "--dry-run").stdout
        assert "3 change(s)" in dry and "+ site home" in dry and f"+ resource echo (tcp:{port})" in dry
        assert d.api("GET", "/orgs/" + d.api("GET", "/orgs")["items"][0]["id"] + "/sites")["items"] == []

        out = kokoa(d.data, "apply", "-f", str(spec)).stdout
        assert "secret (shown once)" in out and "+ target home 127.0.0.1" in out
        assert "nothing to change" in kokoa(d.data, "apply", "-f", str(spec)).stdout

        moved = free_port()
        spec.write_text(KOKOA_YAML.format(port=moved, echo=echo.port))
        out = kokoa(d.data, "apply", "-f", str(spec)).stdout
        assert f"~ resource echo: public_port {port} -> {moved}" in out

        spec.write_text("sites:\n  - name: home\nresources: []\n")
        out = kokoa(d.data, "apply", "-f", str(spec), "--prune").stdout
        assert "- resource echo" in out
    finally:
        d.stop()
        echo.close()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sites:\n  - name: home\n    color: red\n", "kokoa.yaml:3: unknown key 'color'"),
        ("resources:\n  - name: r\n    port: 99999\n", "kokoa.yaml:3: port must be a whole number"),
        (
            "resources:\n  - name: r\n    port: 22\n    targets:\n      - {site: x, target: h:1}\n",
            "kokoa.yaml:5: site 'x' is not listed under sites",
        ),
        ("sites: [\n", "kokoa.yaml:2: not valid YAML"),
        ("resources:\n  - name: r\n    kind: udp\n    port: 5\n", "kokoa.yaml:3: kind must be tcp or http"),
        ("sites:\n  - name: a\n  - name: a\n", "kokoa.yaml:3: site 'a' is listed twice"),
    ],
)
def test_apply_errors_name_the_line(tmp_path, text, message):
    from kokoa.cli._apply import ApplyError, parse

    with pytest.raises(ApplyError) as e:
        parse(text, "kokoa.yaml")
    assert message in str(e.value)


def test_apply_grants_and_rules_exactly(tmp_path):
    d = Deployment(tmp_path)
    try:
        d.start_gateway()
        spec = tmp_path / "kokoa.yaml"
        spec.write_text(
            """\
sites:
  - name: home
resources:
  - name: db
    kind: http
    host: db.example.com
    grants:
      - role: Admin
      - user: admin@example.com
    rules:
      - {priority: 10, action: allow, cidr: 10.0.0.0/8}
      - {priority: 20, action: deny, path: "/admin*", method: POST}
"""
        )
        out = kokoa(d.data, "apply", "-f", str(spec)).stdout
        assert "+ grant Admin on db" in out and "+ grant admin@example.com on db" in out
        assert "+ rule 10 allow cidr=10.0.0.0/8 on db" in out
        assert "nothing to change" in kokoa(d.data, "apply", "-f", str(spec)).stdout
        spec.write_text(
            spec.read_text()
            .replace("      - user: admin@example.com\n", "")
            .replace("action: deny", "action: bypass")
        )
        out = kokoa(d.data, "apply", "-f", str(spec)).stdout
        assert "- grant" in out and "~ rule 20 deny path=/admin* method=POST -> 20 bypass" in out
        assert "nothing to change" in kokoa(d.data, "apply", "-f", str(spec)).stdout
        spec.write_text(spec.read_text().replace("role: Admin", "role: Nobody"))
        result = kokoa(d.data, "apply", "-f", str(spec), check=False)
        assert result.returncode == 2 and "no role 'Nobody'" in result.stderr
    finally:
        d.stop()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("resources:\n  - name: r\n    port: 022\n", "kokoa.yaml:3: port must be a whole number"),
        ("resources:\n  - name: r\n    port: 1:10\n", "kokoa.yaml:3: port must be a whole number"),
        (
            "resources:\n  - name: r\n    kind: http\n    host: a.example.com\n    rules:\n"
            "      - {priority: 1, action: allow}\n      - {priority: 1, action: deny}\n",
            "kokoa.yaml:7: another rule of 'r' has priority 1",
        ),
    ],
)
def test_apply_refuses_ambiguous_numbers(text, message):
    from kokoa.cli._apply import ApplyError, parse

    with pytest.raises(ApplyError) as e:
        parse(text, "kokoa.yaml")
    assert message in str(e.value)
