"""The real client address: X-Forwarded-For and the PROXY protocol, believed only from trusted proxies.

``trusted_proxies`` (IPs and CIDR networks) is the one setting: by default it is empty
and the client is the TCP peer. A trusted peer's X-Forwarded-For is walked from the
right (:meth:`TrustedProxies.client_address`); a listener configured for the PROXY
protocol takes its header only from trusted peers (:func:`proxy_protocol_factory`),
parsed by Twisted's own v1/v2 parsers within the spec's size limits.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Iterator, Sequence

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress, IDelayedCall, IProtocol, IProtocolFactory, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
from twisted.protocols.haproxy._info import ProxyInfo
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import directlyProvides, providedBy

log = Logger()

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_FORWARDED_HOPS = 32  # X-Forwarded-For entries considered, from the right
_MAX_ENTRY = 45  # the longest IPv6 text ("ffff:...:255.255.255.255")
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _ip(text: str) -> IPAddress | None:
    """``text`` as an address (IPv4-mapped IPv6 as its IPv4 form), or None."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _network(entry: object) -> IPNetwork:
    if not isinstance(entry, str):
        raise ValueError(f"trusted_proxies: {entry!r} is not an IP address or CIDR network (not a string)")
    try:
        network = ipaddress.ip_network(entry.strip(), strict=False)
    except ValueError:
        raise ValueError(f"trusted_proxies: {entry!r} is not an IP address or CIDR network") from None
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        # addresses are matched in their IPv4 form, so the network must be too
        return ipaddress.IPv4Network((int(network.network_address) & 0xFFFFFFFF, network.prefixlen - 96))
    return network


def _entries_from_right(values: Sequence[bytes], limit: int) -> Iterator[bytes]:
    """The comma-separated entries of header ``values``, rightmost first, at most ``limit``."""
    count = 0
    for value in reversed(values):
        for part in reversed(value.rsplit(b",", limit - count)):
            if count == limit:
                return
            count += 1
            yield part.strip(b" \t")


def _forwarded_entry(entry: bytes) -> IPAddress | None:
    """One X-Forwarded-For entry as an address: a bare IP, nothing else (no port, brackets, zone)."""
    if not entry or len(entry) > _MAX_ENTRY or b"%" in entry or not entry.isascii():
        return None
    return _ip(entry.decode("ascii"))


class TrustedProxies:
    """The proxies whose word on the client's address is believed (``trusted_proxies``)."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        if isinstance(networks, str | bytes):
            raise ValueError(f"trusted_proxies must be a list of IPs and CIDR networks, not {networks!r}")
        self.networks: tuple[IPNetwork, ...] = tuple(_network(entry) for entry in networks)
        self._v4 = [n for n in self.networks if n.version == 4]
        self._v6 = [n for n in self.networks if n.version == 6]

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __repr__(self) -> str:
        return f"TrustedProxies({[str(n) for n in self.networks]!r})"

    def _trusts_ip(self, ip: IPAddress) -> bool:
        networks = self._v4 if ip.version == 4 else self._v6
        return any(ip in network for network in networks)

    def trusts(self, address: str) -> bool:
        """Whether ``address`` (an IP's text; anything else is not trusted) is a trusted proxy."""
        ip = _ip(address)
        return ip is not None and self._trusts_ip(ip)

    def client_address(self, peer: str, forwarded_for: Sequence[bytes]) -> str:
        """The client of a request from ``peer`` carrying these X-Forwarded-For header values.

        An untrusted peer is the client (returned as given). Otherwise the entries are
        walked from the right, skipping trusted proxies: the first untrusted one is the
        client; if all are trusted, the leftmost; at an entry that is not a bare IP the
        walk stops at the last trusted hop (nothing left of garbage is believed). At most
        :data:`MAX_FORWARDED_HOPS` entries are considered. The result is canonical text.
        """
        ip = _ip(peer)
        if ip is None or not self._trusts_ip(ip):
            return peer
        last = ip
        for entry in _entries_from_right(forwarded_for, MAX_FORWARDED_HOPS):
            hop = _forwarded_entry(entry)
            if hop is None:
                break
            last = hop
            if not self._trusts_ip(hop):
                break
        return str(last)


# ---------------------------------------------------------------- PROXY protocol

_V1_PREFIX = b"PROXY "
_V1_MAX = 107  # the longest v1 line, CRLF included
_V2_PREFIX = V2Parser.PREFIX  # 12 bytes; then version/command, family/protocol, length (2)
_V2_MAX_LENGTH = 216  # the address block of the largest family (two UNIX paths)
_MALFORMED = (InvalidProxyHeader, ValueError, LookupError, struct.error)

_Endpoints = tuple[IAddress | None, IAddress | None]  # proxied (source, destination); None: the real ones


def _tcp_address(address: IAddress | None) -> IAddress:
    """A proxied TCP address checked (the v1 parser takes any text) and canonical."""
    if not isinstance(address, IPv4Address | IPv6Address) or address.type != "TCP":
        raise InvalidProxyHeader()  # UNIX sockets and datagrams make no sense here
    ip = ipaddress.ip_address(address.host)  # ValueError if not an IP
    if (ip.version == 4) != isinstance(address, IPv4Address) or "%" in address.host:
        raise InvalidProxyHeader()
    if not 0 <= address.port <= 65535:
        raise InvalidProxyHeader()
    unmapped = _ip(address.host)
    assert unmapped is not None
    if unmapped.version == 4:
        return IPv4Address("TCP", str(unmapped), address.port)
    return IPv6Address("TCP", str(unmapped), address.port)


def _endpoints(info: ProxyInfo) -> _Endpoints:
    if info.source is None:  # v2 LOCAL or UNSPEC, v1 UNKNOWN: the real connection's endpoints
        return None, None
    return _tcp_address(info.source), _tcp_address(info.destination)


def _v1_line(line: bytes) -> ProxyInfo:
    fields = line.split(b" ")
    # Twisted's parser ignores extra fields and lets int() read "+1" or "1_0" as ports
    tcp = len(fields) > 1 and fields[1] != V1Parser.UNKNOWN_PROTO
    if tcp and (len(fields) != 6 or not all(f.isdigit() and len(f) <= 5 for f in fields[4:])):
        raise InvalidProxyHeader()
    return V1Parser.parse(line)


def _read_header(buffer: bytes) -> tuple[_Endpoints, bytes] | None:
    """The PROXY header at the start of ``buffer`` and the bytes after it; None while incomplete.

    Raises one of ``_MALFORMED`` for anything but a well-formed v1 or v2 header within
    the spec's size limits (Twisted's parsers neither bound v2 nor check v1's addresses).
    """
    if _V2_PREFIX.startswith(buffer[:12]):
        if len(buffer) > 12 and buffer[12] >> 4 != 2:
            raise InvalidProxyHeader()  # not version 2
        if len(buffer) < 16:
            return None
        end = 16 + int.from_bytes(buffer[14:16], "big")
        if end > 16 + _V2_MAX_LENGTH:
            raise InvalidProxyHeader()
        if len(buffer) < end:
            return None
        return _endpoints(V2Parser.parse(buffer[:end])), buffer[end:]
    if _V1_PREFIX.startswith(buffer[:6]):
        end = buffer.find(b"\r\n", 0, _V1_MAX)
        if end < 0:
            if len(buffer) >= _V1_MAX:
                raise InvalidProxyHeader()
            return None
        return _endpoints(_v1_line(buffer[:end])), buffer[end + 2 :]
    raise InvalidProxyHeader()


def _describe(address: object) -> str:
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    return str(address) if host is None else f"{host}:{port}"


class _Rejected(Protocol):
    """A connection from a peer not trusted to send a PROXY header: closed at once."""

    def connectionMade(self) -> None:
        self.transport.abortConnection()


class _ProxyHeaderProtocol(ProtocolWrapper):
    """Reads the PROXY header, then builds the wrapped protocol for the proxied client.

    Until the header is complete there is no wrapped protocol; once it is, the wrapped
    factory's ``buildProtocol`` gets the proxied source address, and so does
    ``getPeer()`` (``getHost()`` gives the proxied destination).
    """

    factory: _ProxyHeaderFactory

    def __init__(self, factory: _ProxyHeaderFactory) -> None:
        super().__init__(factory, None)  # type: ignore[arg-type]  # built after the header
        self._buffer = b""
        self._source: IAddress | None = None
        self._destination: IAddress | None = None
        self._timer: IDelayedCall | None = None
        self._failed = False

    def logPrefix(self) -> str:
        if self.wrappedProtocol is None:
            return f"{type(self).__name__} (PROXY header)"
        return super().logPrefix()

    def makeConnection(self, transport) -> None:
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)
        self._timer = self.factory.reactor.callLater(self.factory.timeout, self._timed_out)

    def getPeer(self) -> IAddress:
        return self._source or self.transport.getPeer()

    def getHost(self) -> IAddress:
        return self._destination or self.transport.getHost()

    def dataReceived(self, data: bytes) -> None:
        if self.wrappedProtocol is not None:
            self.wrappedProtocol.dataReceived(data)
            return
        if self._failed:
            return
        self._buffer += data
        try:
            parsed = _read_header(self._buffer)
        except _MALFORMED:
            log.warn(
                "closing a connection from {peer}: malformed PROXY header", peer=_describe(self.getPeer())
            )
            self._fail()
            return
        if parsed is None:
            return  # bounded: an incomplete header is shorter than the limits
        (self._source, self._destination), rest = parsed
        self._buffer = b""
        self._cancel_timer()
        protocol = self.factory.wrappedFactory.buildProtocol(self.getPeer())
        if protocol is None:
            self._failed = True
            self.transport.loseConnection()
            return
        self.wrappedProtocol = protocol
        protocol.makeConnection(self)
        if rest and self.wrappedProtocol is protocol:
            protocol.dataReceived(rest)

    def connectionLost(self, reason: Failure) -> None:
        self._cancel_timer()
        self.factory.unregisterProtocol(self)
        protocol, self.wrappedProtocol = self.wrappedProtocol, None
        if protocol is not None:
            protocol.connectionLost(reason)

    def _timed_out(self) -> None:
        self._timer = None
        log.info(
            "closing a connection from {peer}: no PROXY header within {timeout}s",
            peer=_describe(self.transport.getPeer()),
            timeout=self.factory.timeout,
        )
        self._fail()

    def _fail(self) -> None:
        self._failed = True
        self._buffer = b""
        self._cancel_timer()
        self.transport.abortConnection()

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()


class _ProxyHeaderFactory(WrappingFactory):
    """Connections of a ``proxy_protocol = true`` listener (see :func:`proxy_protocol_factory`)."""

    def __init__(
        self, factory: IProtocolFactory, trusted: TrustedProxies, timeout: float, reactor: IReactorTime
    ) -> None:
        super().__init__(factory)
        self.trusted = trusted
        self.timeout = timeout
        self.reactor = reactor

    def logPrefix(self) -> str:
        wrapped = self.wrappedFactory
        prefix = wrapped.logPrefix() if hasattr(wrapped, "logPrefix") else type(wrapped).__name__
        return f"{prefix} (PROXY)"

    def buildProtocol(self, addr: IAddress) -> IProtocol:  # type: ignore[override]
        host = getattr(addr, "host", None)
        if not (isinstance(host, str) and self.trusted.trusts(host)):
            log.info(
                "closing a connection from {peer}: not in trusted_proxies (PROXY protocol listener)",
                peer=_describe(addr),
            )
            return _Rejected()
        return _ProxyHeaderProtocol(self)


def proxy_protocol_factory(
    factory: IProtocolFactory,
    trusted: TrustedProxies,
    *,
    timeout: float = 10.0,
    reactor: IReactorTime | None = None,
) -> WrappingFactory:
    """Wrap ``factory`` for a listener behind a load balancer speaking the PROXY protocol (v1 or v2).

    A connection from a peer that is not in ``trusted`` is closed at once. A trusted
    peer must send a valid header within ``timeout`` seconds (else it is closed); then
    ``factory.buildProtocol`` is called with the proxied client's address, which is
    also what the protocol's ``transport.getPeer()`` returns. A v2 LOCAL header (the
    balancer's health checks) keeps the real peer. Wrap outside TLS: the header comes first.
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor  # type: ignore[assignment]
    assert reactor is not None
    return _ProxyHeaderFactory(factory, trusted, timeout, reactor)
