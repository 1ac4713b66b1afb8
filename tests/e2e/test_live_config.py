"""Configuration changes reach the running gateway and its edges without a restart (SIGHUP)."""

from __future__ import annotations

import socket

import pytest

from .harness import Deployment, EchoTarget, wait_for
from .test_tcp_resources import echo_once

pytestmark = pytest.mark.e2e


@pytest.fixture
def deployment(tmp_path):
    d = Deployment(tmp_path)
    yield d
    d.stop()


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_reload_adds_and_removes_resources_and_pushes_targets(deployment):
    first, second = EchoTarget(), EchoTarget()
    try:
        deployment.add_site("home")
        old_port = deployment.add_tcp_resource("old", "home", first.port)
        deployment.start_gateway()
        deployment.start_edge("home", "tls")
        deployment.wait_tunnels("home", 2)
        held = socket.create_connection(("127.0.0.1", old_port), timeout=10)
        held.sendall(b"x")
        assert held.recv(1) == b"x"

        deployment.resources.clear()
        new_port = deployment.add_tcp_resource("new", "home", second.port)
        deployment.reload()

        # The removed resource: its listener is closed, and so is its open connection.
        assert held.recv(1) == b""
        held.close()
        assert refused(old_port)
        deployment.gateway.wait_log("resource 'old' removed or disabled: listener on")
        # The added one works at once: the edge was told about its new target.
        assert echo_once(new_port) == b"hello kokoa"
        deployment.edges[0].wait_log("configuration updated")
        assert deployment.tunnels("home") == 2  # the edge never reconnected
    finally:
        first.close()
        second.close()


def test_reload_that_disables_a_site_disconnects_its_edge(deployment):
    deployment.add_site("home")
    deployment.start_gateway()
    edge = deployment.start_edge("home", "tls")
    deployment.wait_tunnels("home", 2)
    deployment.disabled_sites.add("home")
    deployment.reload()
    wait_for(lambda: deployment.tunnels("home") == 0, "the edge to be disconnected")
    edge.wait_log("SITE_DISABLED")


def test_a_bad_reload_keeps_the_running_configuration(deployment):
    echo = EchoTarget()
    try:
        deployment.add_site("home")
        port = deployment.add_tcp_resource("svc", "home", echo.port)
        deployment.start_gateway()
        deployment.start_edge("home", "tls")
        deployment.wait_tunnels("home", 2)
        deployment.extra_config = "bogus_key = 1"
        deployment.reload()
        deployment.gateway.wait_log("configuration not reloaded, the old one stays")
        assert "unknown key(s) bogus_key" in deployment.gateway.log_text()
        assert echo_once(port) == b"hello kokoa"
    finally:
        echo.close()
