"""Gateway mode: accept edge tunnels and serve resources through them."""

from ._model import AuthenticationFailed, ISiteDirectory, Site, StaticSiteDirectory, TCPResource
from ._registry import TunnelRegistry

__all__ = [
    "AuthenticationFailed",
    "ISiteDirectory",
    "Site",
    "StaticSiteDirectory",
    "TCPResource",
    "TunnelRegistry",
]
