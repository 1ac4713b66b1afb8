"""The admin API as the gateway serves it: listening from the start, answering once the store
is open, and checking resource ports against this machine."""

from __future__ import annotations

import json
import socket

from twisted.web.resource import Resource


class AdminApiRoot(Resource):
    """Answers 503 until the store is open, then hands every request to the admin API."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.api = None

    def attach(self, store, reactor, **options) -> None:
        from kokoa.api import make_api_resource

        self.api = make_api_resource(store, reactor, **options)

    def render(self, request):
        if self.api is not None:
            return self.api.render(request)
        request.setResponseCode(503)
        request.setHeader(b"content-type", b"application/problem+json")
        request.setHeader(b"retry-after", b"1")
        problem = {
            "type": "about:blank",
            "title": "Service Unavailable",
            "status": 503,
            "detail": "the gateway is opening its store; try again in a moment",
        }
        return json.dumps(problem).encode()


def site(root: Resource):
    """A web site for the API that refuses oversized bodies before buffering them."""
    from kokoa.api import CappedSite

    return CappedSite(root)


def port_available(kind: str, port: int, interface: str = "") -> bool:
    """Whether this machine would let a resource listen on ``port`` (``kind`` tcp or udp)."""
    sock_type = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    with socket.socket(family, sock_type) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((interface, port))
        except OSError:  # in use, below 1024 without the right, an address not on this machine
            return False
    return True
