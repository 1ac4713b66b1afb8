"""How the edge reaches a target."""

from __future__ import annotations

import ipaddress

from twisted.internet import endpoints


def target_endpoint(reactor, host: str, port: int, timeout: float):
    """A client endpoint for a target: IP addresses directly (no resolver round trip through
    the thread pool for every stream), names through HostnameEndpoint (happy eyeballs)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return endpoints.HostnameEndpoint(reactor, host, port, timeout=timeout)
    if address.version == 4:
        return endpoints.TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    return endpoints.TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
