"""kokoa.http._client_address in isolation: trusted proxies and X-Forwarded-For."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kokoa.http._client_address import MAX_FORWARDED_HOPS, TrustedProxies

pytestmark = pytest.mark.sans_io

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

LB = TrustedProxies(["10.0.0.0/8", "192.168.1.1", "2001:db8:1::/48"])


# ---------------------------------------------------------------- TrustedProxies


def test_nothing_is_trusted_by_default():
    proxies = TrustedProxies()
    assert not proxies
    assert not proxies.trusts("127.0.0.1")
    assert proxies.client_address("127.0.0.1", [b"1.2.3.4"]) == "127.0.0.1"


def test_ips_and_networks_are_trusted():
    assert LB
    assert LB.trusts("10.1.2.3") and LB.trusts("192.168.1.1") and LB.trusts("2001:db8:1::5")
    assert not LB.trusts("192.168.1.2") and not LB.trusts("11.0.0.1") and not LB.trusts("2001:db8:2::1")


def test_host_bits_in_a_network_are_allowed():
    assert TrustedProxies(["10.1.2.3/8"]).trusts("10.200.0.1")


def test_ipv4_mapped_addresses_count_as_ipv4():
    assert LB.trusts("::ffff:10.0.0.1")
    assert not LB.trusts("::ffff:11.0.0.1")
    assert TrustedProxies(["::ffff:10.0.0.0/104"]).trusts("10.9.9.9")


def test_what_is_not_an_ip_is_not_trusted():
    for text in ["", "unknown", "10.0.0.1:80", "[::1]", "010.0.0.1", " 10.0.0.1"]:
        assert not LB.trusts(text), text


@pytest.mark.parametrize("bad", ["10.0.0.300", "example.com", "10.0.0.0/33", "", "::1/129"])
def test_a_bad_entry_is_named_in_the_error(bad):
    with pytest.raises(ValueError, match=repr(bad)):
        TrustedProxies(["10.0.0.1", bad])


def test_a_bare_string_is_not_a_list():
    with pytest.raises(ValueError, match="list"):
        TrustedProxies("10.0.0.0/8")


# ---------------------------------------------------------------- X-Forwarded-For


def test_an_untrusted_peer_is_the_client():
    assert LB.client_address("203.0.113.9", [b"1.2.3.4"]) == "203.0.113.9"


def test_the_first_untrusted_entry_from_the_right_is_the_client():
    assert LB.client_address("10.0.0.2", [b"6.6.6.6, 203.0.113.7, 10.0.0.3"]) == "203.0.113.7"


def test_several_headers_are_one_list():
    assert LB.client_address("10.0.0.2", [b"6.6.6.6", b"203.0.113.7,10.0.0.3", b"10.0.0.4"]) == "203.0.113.7"


def test_no_header_from_a_trusted_peer_leaves_the_peer():
    assert LB.client_address("10.0.0.2", []) == "10.0.0.2"


def test_all_trusted_gives_the_leftmost():
    assert LB.client_address("10.0.0.2", [b"10.0.0.9, 192.168.1.1"]) == "10.0.0.9"


def test_garbage_stops_the_walk_at_the_last_trusted_hop():
    assert LB.client_address("10.0.0.2", [b"1.1.1.1, bogus, 10.0.0.3"]) == "10.0.0.3"
    assert LB.client_address("10.0.0.2", [b"1.1.1.1, , 10.0.0.3"]) == "10.0.0.3"
    assert LB.client_address("10.0.0.2", [b""]) == "10.0.0.2"


@pytest.mark.parametrize(
    "entry",
    [b"1.2.3.4:5678", b"[::1]:80", b"[::1]", b"unknown", b"fe80::1%eth0", b"1.2.3.4\xff", b"01.2.3.4"],
)
def test_only_bare_ips_are_entries(entry):
    assert LB.client_address("10.0.0.2", [b"9.9.9.9, " + entry]) == "10.0.0.2"


def test_the_result_is_canonical():
    assert LB.client_address("10.0.0.2", [b" 2001:DB8:0:0::7 \t"]) == "2001:db8::7"
    assert LB.client_address("10.0.0.2", [b"::ffff:203.0.113.7"]) == "203.0.113.7"
    assert LB.client_address("::ffff:10.0.0.2", []) == "10.0.0.2"


def test_ipv6_proxies():
    assert LB.client_address("2001:db8:1::1", [b"2001:db8:99::1, 2001:db8:1::2"]) == "2001:db8:99::1"


def test_at_most_32_entries_are_considered():
    trusted_hops = [b"10.0.0.%d" % i for i in range(1, MAX_FORWARDED_HOPS + 5)]
    header = b", ".join([b"203.0.113.7", *trusted_hops])
    # the client is beyond the cap: the leftmost entry considered is the answer
    assert LB.client_address("10.0.0.2", [header]) == "10.0.0.5"
    within = b", ".join([b"203.0.113.7", *trusted_hops[-(MAX_FORWARDED_HOPS - 1) :]])
    assert LB.client_address("10.0.0.2", [within]) == "203.0.113.7"
    split = [b"203.0.113.7", *trusted_hops[-(MAX_FORWARDED_HOPS - 1) :]]
    assert LB.client_address("10.0.0.2", split) == "203.0.113.7"
    assert LB.client_address("10.0.0.2", [b"203.0.113.7", *trusted_hops[-MAX_FORWARDED_HOPS:]]) == (
        "10.0.0.5"
    )


# ---------------------------------------------------------------- properties

ipv4 = st.ip_addresses(v=4)
ip = st.ip_addresses()
networks = st.lists(
    st.tuples(ip, st.integers(0, 128)).map(
        lambda t: str(ipaddress.ip_network(f"{t[0]}/{min(t[1], t[0].max_prefixlen)}", strict=False))
    ),
    max_size=4,
)
entry = st.one_of(
    ip.map(lambda a: str(a).encode()),
    st.binary(max_size=20),
    st.sampled_from([b"", b" ", b"unknown", b"[::1]:80", b"1.2.3.4:5", b"10.0.0.1"]),
)
header = st.lists(entry, max_size=6).map(lambda entries: b", ".join(entries)) | st.binary(max_size=60)
headers = st.lists(header, max_size=4)


@SETTINGS
@given(networks, ip, headers)
def test_property_an_untrusted_peer_is_always_the_client(nets, peer, values):
    proxies = TrustedProxies(nets)
    assume(not proxies.trusts(str(peer)))
    assert proxies.client_address(str(peer), values) == str(peer)


@SETTINGS
@given(
    attacker=headers,
    client=ip,
    hops=st.lists(st.integers(0, 2**24 - 1), max_size=5),
    peer=st.integers(0, 2**24 - 1),
    appended=st.booleans(),
)
def test_property_prepended_entries_never_change_the_client(attacker, client, hops, peer, appended):
    """Whatever a client sends, proxies that append to the header report the client's address."""
    proxies = TrustedProxies(["10.0.0.0/8"])
    assume(not proxies.trusts(str(client)))
    proxy_hops = [ipaddress.IPv4Address(0x0A000000 + h) for h in hops]
    chain = b", ".join(str(a).encode() for a in [client, *proxy_hops])
    # nginx's $proxy_add_x_forwarded_for appends to the client's last header; others add their own
    values = [*attacker[:-1], attacker[-1] + b", " + chain] if appended and attacker else [*attacker, chain]
    result = proxies.client_address(str(ipaddress.IPv4Address(0x0A000000 + peer)), values)
    expected = client.ipv4_mapped if client.version == 6 and client.ipv4_mapped else client
    assert result == str(expected)


@SETTINGS
@given(
    networks,
    st.one_of(ip, st.sampled_from([ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("::1")])),
    headers,
)
def test_property_results_are_valid_canonical_ips(nets, peer, values):
    proxies = TrustedProxies([*nets, "10.0.0.0/8", "::1"])
    result = proxies.client_address(str(peer), values)
    parsed = ipaddress.ip_address(result)
    if proxies.trusts(str(peer)):
        assert str(parsed) == result
        assert "%" not in result
    else:
        assert result == str(peer)
