"""kokoa.policy by example: each rule kind with an allowed and a denied case, priority order, the
defaults, rule parsing, and building a PolicySet from store rows.

The properties (no normalization bypass, priority, a brute-force reference) are in
test_policy_properties.py.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import pytest

from kokoa.gateway._model import HTTPResource
from kokoa.http._router import Route, normalize_target
from kokoa.policy import (
    Decision,
    Identity,
    PolicyError,
    PolicySet,
    ResourcePolicy,
    Rule,
    decide,
    parse_address,
    parse_network,
)

pytestmark = pytest.mark.sans_io

ALICE = Identity("u-alice", "alice@example.com", frozenset({"r-admin"}), ("Admin",))
BOB = Identity("u-bob", "bob@example.com", frozenset({"r-member"}), ("Member",))
CAROL = Identity("u-carol", "carol@example.com")  # no roles at all


def policy(*rules: Rule, public: bool = False, roles=("r-admin",), users=("u-carol",)) -> ResourcePolicy:
    return ResourcePolicy(
        "res", rules, public=public, grants_roles=frozenset(roles), grants_users=frozenset(users)
    )


def outcome(p: ResourcePolicy, path="/", method="GET", ip="203.0.113.9", who: Identity | None = None) -> str:
    return decide(p, path, method, ip, who).outcome


def match_path(raw: bytes) -> str:
    return normalize_target(raw).match_path


# ---------------------------------------------------------------- defaults


def test_a_public_resource_lets_everyone_in():
    p = policy(public=True, roles=(), users=())
    for who in (None, ALICE, BOB, CAROL):
        d = decide(p, "/x", "POST", "198.51.100.1", who)
        assert d == Decision("allow", "no rule matches and the resource is public", None)


def test_a_protected_resource_asks_the_anonymous_to_sign_in():
    d = decide(policy(), "/x", "GET", "198.51.100.1", None)
    assert d.outcome == "authenticate" and d.rule_id is None
    assert "not public" in d.reason


def test_a_grant_to_one_of_the_users_roles_lets_it_in():
    d = decide(policy(), "/x", "GET", "198.51.100.1", ALICE)
    assert d.outcome == "allow" and d.allowed
    assert "r-admin" in d.reason and "alice@example.com" in d.reason


def test_a_grant_to_the_user_lets_it_in():
    d = decide(policy(), "/x", "GET", "198.51.100.1", CAROL)
    assert d.outcome == "allow"
    assert "carol@example.com" in d.reason


def test_without_a_grant_a_signed_in_user_is_denied():
    d = decide(policy(), "/x", "GET", "198.51.100.1", BOB)
    assert d.outcome == "deny" and not d.allowed and d.rule_id is None
    assert "bob@example.com" in d.reason and "no grant" in d.reason and "r-member" in d.reason


def test_a_resource_without_grants_lets_no_one_in():
    p = policy(roles=(), users=())
    assert [outcome(p, who=w) for w in (None, ALICE, BOB, CAROL)] == ["authenticate"] + ["deny"] * 3


def test_a_resource_scoped_credential_opens_that_resource_only():
    visitor = Identity("share:shl_1", "", resources=frozenset({"res"}))
    assert outcome(policy(roles=(), users=()), who=visitor) == "allow"
    other = ResourcePolicy("other")
    assert outcome(other, who=visitor) == "deny"
    # its own rules still apply to it
    denied = policy(Rule("r1", 1, "deny", path="/admin"), roles=(), users=())
    assert outcome(denied, path="/admin", who=visitor) == "deny"


def test_every_known_resource_gets_its_own_entry():
    policies = PolicySet.build(resources=["res-a"])
    visitor = Identity("pin:res-a", "", resources=frozenset({"res-a"}))
    assert policies.decide("res-a", "/", "GET", "192.0.2.1", visitor).outcome == "allow"
    assert policies.decide("res-b", "/", "GET", "192.0.2.1", visitor).outcome == "deny"


# ---------------------------------------------------------------- each rule kind


def test_deny_on_a_path():
    p = policy(Rule("r1", 10, "deny", path="/admin"), public=True)
    assert decide(p, "/admin/users", "GET", "192.0.2.1", ALICE) == Decision(
        "deny", "denied by rule 10 (deny /admin)", "r1"
    )
    assert outcome(p, "/app", who=ALICE) == "allow"
    assert outcome(p, "/administrator") == "allow"


def test_deny_on_a_method():
    p = policy(Rule("r1", 10, "deny", method="DELETE"), public=True)
    assert outcome(p, "/x", "DELETE") == "deny"
    assert outcome(p, "/x", "delete") == "deny"  # method tokens compared case-insensitively
    assert outcome(p, "/x", "GET") == "allow"


def test_deny_on_an_ipv4_network():
    p = policy(Rule("r1", 10, "deny", cidr="192.0.2.0/24"), public=True)
    assert outcome(p, ip="192.0.2.77") == "deny"
    assert outcome(p, ip="::ffff:192.0.2.77") == "deny"
    assert outcome(p, ip="192.0.3.1") == "allow"


def test_deny_on_an_ipv6_network():
    p = policy(Rule("r1", 10, "deny", cidr="2001:db8::/32"), public=True)
    assert outcome(p, ip="2001:db8:1::5") == "deny"
    assert outcome(p, ip="[2001:db8::1]") == "deny"
    assert outcome(p, ip="2001:db9::1") == "allow"
    assert outcome(p, ip="192.0.2.1") == "allow"  # an IPv4 client is not in an IPv6 network


def test_deny_with_every_condition_needs_all_of_them():
    p = policy(Rule("r1", 10, "deny", cidr="10.0.0.0/8", path="/admin", method="POST"), public=True)
    assert outcome(p, "/admin/x", "POST", "10.1.1.1") == "deny"
    assert outcome(p, "/admin/x", "POST", "11.1.1.1") == "allow"
    assert outcome(p, "/admin/x", "PUT", "10.1.1.1") == "allow"
    assert outcome(p, "/other", "POST", "10.1.1.1") == "allow"


def test_bypass_lets_the_anonymous_in_on_a_protected_resource():
    p = policy(Rule("r1", 10, "bypass", path="/health", method="GET"))
    d = decide(p, "/health", "GET", "192.0.2.1", None)
    assert d == Decision(
        "allow", "rule 10 (bypass GET /health) lets the request through without authentication", "r1"
    )
    assert outcome(p, "/health", "POST") == "authenticate"
    assert outcome(p, "/healthz") == "authenticate"
    assert outcome(p, "/health", who=BOB) == "allow"  # bypass: whoever asks, grant or not


def test_bypass_from_a_network():
    p = policy(Rule("r1", 10, "bypass", cidr="10.0.0.0/8"))
    assert outcome(p, ip="10.9.8.7") == "allow"
    assert outcome(p, ip="11.9.8.7") == "authenticate"
    assert outcome(p, ip="11.9.8.7", who=BOB) == "deny"


def test_allow_requires_authentication_and_a_grant():
    p = policy(Rule("r1", 10, "allow", path="/app"))
    d = decide(p, "/app", "GET", "192.0.2.1", None)
    assert d == Decision("authenticate", "rule 10 (allow /app) requires signing in", "r1")
    d = decide(p, "/app", "GET", "192.0.2.1", ALICE)
    assert d.outcome == "allow" and d.rule_id == "r1" and "rule 10" in d.reason
    d = decide(p, "/app", "GET", "192.0.2.1", BOB)
    assert d.outcome == "deny" and d.rule_id == "r1"
    assert d.reason.startswith("rule 10 (allow /app) requires a grant: user bob@example.com")


def test_allow_on_a_public_resource_protects_that_part():
    p = policy(Rule("r1", 10, "allow", path="/admin"), public=True)
    assert outcome(p, "/admin") == "authenticate"
    assert outcome(p, "/admin", who=BOB) == "deny"
    assert outcome(p, "/admin", who=ALICE) == "allow"
    assert outcome(p, "/blog") == "allow"


def test_allow_stops_the_rules_after_it():
    p = policy(Rule("r1", 10, "allow", cidr="10.0.0.0/8"), Rule("r2", 20, "deny", path="/"))
    assert outcome(p, ip="10.0.0.1", who=ALICE) == "allow"
    assert outcome(p, ip="11.0.0.1", who=ALICE) == "deny"


# ---------------------------------------------------------------- priority


def test_the_lowest_priority_decides_whatever_the_order_given():
    deny = Rule("d", 20, "deny", path="/api")
    bypass = Rule("b", 10, "bypass", path="/api/public")
    for rules in ((deny, bypass), (bypass, deny)):
        p = policy(*rules)
        assert [r.id for r in p.rules] == ["b", "d"]
        assert decide(p, "/api/public/x", "GET", "192.0.2.1", None).rule_id == "b"
        assert decide(p, "/api/private", "GET", "192.0.2.1", ALICE).rule_id == "d"


def test_swapping_priorities_swaps_the_decision():
    first = policy(Rule("d", 1, "deny", cidr="10.0.0.0/8"), Rule("b", 2, "bypass", path="/x"))
    second = policy(Rule("d", 2, "deny", cidr="10.0.0.0/8"), Rule("b", 1, "bypass", path="/x"))
    assert decide(first, "/x", "GET", "10.0.0.1", None).outcome == "deny"
    assert decide(second, "/x", "GET", "10.0.0.1", None).outcome == "allow"


def test_two_rules_with_one_priority_are_refused():
    with pytest.raises(PolicyError, match="priority 5"):
        policy(Rule("a", 5, "deny"), Rule("b", 5, "bypass"))


def test_a_rule_without_conditions_matches_everything():
    p = policy(Rule("r", 0, "deny"), public=True)
    assert decide(p, "/", "GET", "192.0.2.1", ALICE).reason == "denied by rule 0 (deny on every request)"
    assert decide(p, None, None, None, None).outcome == "deny"


# ---------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("rule_path", "normalized"),
    [
        ("/admin", "/admin"),
        ("/admin/", "/admin"),
        ("/%61dmin", "/admin"),
        ("//admin//", "/admin"),
        ("/x/../admin", "/admin"),
        ("/./admin", "/admin"),
        ("/admin;jsessionid=1", "/admin"),
        ("/Admin", "/Admin"),
        ("/a%2fb", "/a%2Fb"),
        ("/", "/"),
        ("/api/**/x", "/api/*/x"),
        ("/a%2A", "/a%2A"),
    ],
)
def test_rule_paths_are_normalized_as_the_router_does(rule_path, normalized):
    assert Rule("r", 1, "deny", path=rule_path).path == normalized


@pytest.mark.parametrize(
    ("rule_path", "yes", "no"),
    [
        (
            "/admin",
            ["/admin", "/admin/", "/admin/x", "/admin/x/y"],
            ["/administrator", "/Admin", "/adm", "/", "/x/admin"],
        ),
        ("/admin/", ["/admin", "/admin/", "/admin/x"], ["/administrator", "/admin%2Fx"]),
        ("/", ["/", "/a", "/a/b/"], []),
        ("/a/b", ["/a/b", "/a/b/c"], ["/a", "/a/bc", "/a%2Fb"]),
        # "*" (the store's glob) matches any run of characters, "/" included; whole segments still
        ("/admin*", ["/admin", "/administrator", "/admin/x", "/admin-x/y"], ["/adm", "/Admin"]),
        ("/*.php", ["/a.php", "/d/a.php", "/a.php/x", "/.php"], ["/a.phpx", "/a.ph", "/a.PHP"]),
        (
            "/api/*/admin",
            ["/api/v1/admin", "/api/v1/x/admin", "/api/v1/admin/y"],
            ["/api/admin", "/api/v1/administrator"],
        ),
        ("/api/*", ["/api/", "/api/x", "/api/x/y"], ["/api", "/apix"]),
        ("/*", ["/", "/x", "/x/y"], []),
        ("/a*b*c", ["/abc", "/aXbYc", "/a/b/c", "/abc/d", "/abbc"], ["/ab", "/acb", "/abcd"]),
        ("/a%2A", ["/a%2A", "/a%2A/x"], ["/ab", "/a*"]),  # an encoded "*" is a literal
    ],
)
def test_path_matching(rule_path, yes, no):
    rule = Rule("r", 1, "deny", path=rule_path)
    assert [p for p in yes if not rule.path_matches(p)] == []
    assert [p for p in no if rule.path_matches(p)] == []


@pytest.mark.parametrize(
    ("raw", "denied"),
    [
        (b"/admin", True),
        (b"/admin/", True),
        (b"/admin/x?y=1", True),
        (b"//admin", True),
        (b"///admin//x", True),
        (b"/%61dmin", True),
        (b"/%61%64%6D%69%6e/x", True),
        (b"/a/../admin", True),
        (b"/x/y/../../admin", True),
        (b"/./admin", True),
        (b"/%2e/admin", True),
        (b"/x/%2E%2E/admin", True),
        (b"/../admin", True),
        (b"/..;/admin", True),
        (b"/x/..;y/admin", True),
        (b"/admin;x", True),
        (b"/admin;x/secret", True),
        (b"/;x/admin", True),
        # the router is case-sensitive, but deny rules also match the folded path (see
        # test_rule_folding.py): an upstream may well be case-insensitive
        (b"/Admin", True),
        (b"/ADMIN/x", True),
        (b"/administrator", False),
        (b"/admin%3Bx", False),  # an encoded ";" is no parameter: another segment name
        (b"/adm/in", False),
    ],
)
def test_requests_are_matched_as_the_router_matched_them(raw, denied):
    p = policy(Rule("r1", 10, "deny", path="/admin"), public=True)
    assert (outcome(p, match_path(raw)) == "deny") is denied, match_path(raw)


# ---------------------------------------------------------------- encoded slashes


def test_an_encoded_slash_does_not_get_around_a_deny_rule():
    p = policy(Rule("r1", 10, "deny", path="/admin/secret"), public=True)
    for raw in (b"/admin%2Fsecret", b"/admin%2fsecret/x", b"/admin%5Csecret", b"/x%2F..%2Fadmin/secret"):
        d = decide(p, match_path(raw), "GET", "192.0.2.1", ALICE)
        assert d.outcome == "deny", raw
        assert d.rule_id == "r1" and "reading the encoded slashes in the path: /admin/secret" in d.reason


def test_an_encoded_slash_does_not_stretch_a_bypass_rule():
    p = policy(Rule("r1", 10, "bypass", path="/public"))
    # the router sees /public and a segment "..%2Fadmin"; nginx upstream would serve /admin
    path = match_path(b"/public/..%2Fadmin")
    assert path == "/public/..%2Fadmin"
    d = decide(p, path, "GET", "192.0.2.1", None)
    assert d.outcome == "authenticate" and d.rule_id is None
    assert outcome(p, match_path(b"/public/a%2Fb")) == "allow"  # both readings are under /public


def test_an_encoded_slash_never_loosens_a_decision():
    p = policy(Rule("r1", 10, "deny", path="/a%2Fb"), Rule("r2", 20, "bypass", path="/a/b"), public=True)
    # read as the router reads it, rule 10 denies; the other reading would be allowed by rule 20
    assert decide(p, "/a%2Fb", "GET", "192.0.2.1", None).rule_id == "r1"


# ---------------------------------------------------------------- methods


@pytest.mark.parametrize(
    ("rule_method", "request_method", "matches"),
    [
        ("POST", "POST", True),
        ("post", "POST", True),
        ("POST", "post", True),
        ("POST", "PUT", False),
        ("GET", "HEAD", True),  # HEAD is answered as GET without a body
        ("HEAD", "GET", False),
        ("PROPFIND", "propfind", True),
        ("GET", "GETX", False),
        ("GET", "", False),
    ],
)
def test_method_matching(rule_method, request_method, matches):
    p = policy(Rule("r", 1, "deny", method=rule_method), public=True)
    assert (outcome(p, "/", request_method) == "deny") is matches


# ---------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("cidr", "ip", "matches"),
    [
        ("1.2.3.0/24", "1.2.3.4", True),
        ("1.2.3.0/24", "::ffff:1.2.3.4", True),
        ("1.2.3.0/24", "[::ffff:1.2.3.4]", True),
        ("1.2.3.0/24", "::ffff:102:304", True),
        ("1.2.3.0/24", " 1.2.3.4 ", True),
        ("1.2.3.0/24", "1.2.4.4", False),
        ("1.2.3.0/24", "::1.2.3.4", False),  # IPv4-compatible (deprecated) is not IPv4-mapped
        ("1.2.3.4", "1.2.3.4", True),
        ("1.2.3.4", "1.2.3.5", False),
        ("0.0.0.0/0", "255.255.255.255", True),
        ("0.0.0.0/0", "::1", False),
        ("::ffff:1.2.3.0/120", "1.2.3.9", True),  # a mapped network is the IPv4 network
        ("::ffff:0:0/96", "8.8.8.8", True),
        ("::/0", "8.8.8.8", False),
        ("::/0", "::ffff:8.8.8.8", False),  # a mapped client is an IPv4 client
        ("::/0", "2001:db8::1", True),
        ("fe80::/10", "fe80::1%eth0", True),
        ("2001:db8::/128", "2001:db8::", True),
        ("2001:db8::/128", "2001:db8::1", False),
    ],
)
def test_address_matching(cidr, ip, matches):
    p = policy(Rule("r", 1, "deny", cidr=cidr), public=True)
    assert (outcome(p, ip=ip) == "deny") is matches


def test_addresses_may_be_ipaddress_objects():
    p = policy(Rule("r", 1, "deny", cidr=ipaddress.ip_network("10.0.0.0/8")), public=True)
    assert outcome(p, ip=ipaddress.ip_address("10.1.2.3")) == "deny"
    assert outcome(p, ip=ipaddress.ip_address("::ffff:10.1.2.3")) == "deny"
    assert outcome(p, ip=ipaddress.ip_address("11.1.2.3")) == "allow"


def test_parse_helpers():
    assert parse_network("::ffff:10.0.0.0/104") == ipaddress.ip_network("10.0.0.0/8")
    # wider than the mapped range: stays IPv6 (and so does not match IPv4 clients)
    assert parse_network("::fffe:0:0/95") == ipaddress.ip_network("::fffe:0:0/95")
    assert parse_address("::ffff:10.0.0.1") == ipaddress.ip_address("10.0.0.1")
    assert parse_address("nope") is None and parse_address(None) is None and parse_address(7) is None


@pytest.mark.parametrize("ip", ["", "unknown", "1.2.3", "1.2.3.4:80", "unix:/tmp/s", None, 42, b"1.2.3.4"])
def test_an_address_that_is_not_one_fails_closed(ip):
    # a bypass rule on a network cannot be checked: deny, not a fall-through to the default
    p = policy(Rule("r", 1, "bypass", cidr="10.0.0.0/8"), public=True)
    d = decide(p, "/", "GET", ip, ALICE)
    assert d.outcome == "deny" and d.rule_id == "r" and "address" in d.reason


def test_an_unknown_address_matters_only_to_rules_that_look_at_it():
    p = policy(
        Rule("a", 1, "deny", path="/x"), Rule("b", 2, "deny", method="POST", cidr="10.0.0.0/8"), public=True
    )
    assert outcome(p, "/x", ip="?") == "deny"  # rule a decides before the address is needed
    assert outcome(p, "/y", "GET", ip="?") == "allow"  # rule b's method does not match anyway
    assert outcome(p, "/y", "POST", ip="?") == "deny"
    assert outcome(policy(public=True), ip="?") == "allow"  # no address rules at all


def test_a_tcp_connection_has_no_path_or_method():
    p = policy(Rule("a", 1, "bypass", cidr="10.0.0.0/8"), Rule("b", 2, "deny", cidr="0.0.0.0/0"))
    assert decide(p, None, None, "10.0.0.1", None).outcome == "allow"
    assert decide(p, None, None, "11.0.0.1", None).rule_id == "b"
    with_path = policy(Rule("a", 1, "bypass", path="/x"), public=True)
    d = decide(with_path, None, None, "10.0.0.1", None)
    assert d.outcome == "deny" and "path" in d.reason


# ---------------------------------------------------------------- rule parsing


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"action": "accept"}, "action"),
        ({"priority": True}, "priority"),
        ({"priority": "1"}, "priority"),
        ({"cidr": "10.0.0.1/8"}, "not a network"),
        ({"cidr": "10.0.0.0/33"}, "not a network"),
        ({"cidr": "example.com"}, "not a network"),
        ({"cidr": 10}, "not a network"),
        ({"path": "admin"}, "start with '/'"),
        ({"path": "/a?b"}, "query"),
        ({"path": "/a#b"}, "query"),
        ({"path": "/a b"}, "not a URL path"),
        ({"path": "/caf\u00e9"}, "not a URL path"),
        ({"path": "/a%zz"}, "not a URL path"),
        ({"path": 5}, "start with '/'"),
        ({"method": "GE T"}, "HTTP method"),
        ({"method": ""}, "HTTP method"),
        ({"method": 1}, "HTTP method"),
    ],
)
def test_bad_rules_are_refused(kwargs, message):
    fields = {"id": "r", "priority": 1, "action": "deny"} | kwargs
    with pytest.raises(PolicyError, match=message):
        Rule(**fields)


def test_rules_are_parsed_once():
    rule = Rule("r", 7, "allow", cidr="::ffff:10.0.0.0/104", path="/%61pi//v1/", method=" get ")
    assert rule.cidr == ipaddress.ip_network("10.0.0.0/8")
    assert (rule.path, rule.method) == ("/api/v1", "GET")
    assert rule.label == "rule 7 (allow GET /api/v1 from 10.0.0.0/8)"
    assert rule == Rule("r", 7, "allow", cidr="10.0.0.0/8", path="/api/v1", method="GET")


def test_a_broken_policy_denies_everything():
    p = ResourcePolicy("res", public=True, error="rule r: bad")
    d = decide(p, "/", "GET", "192.0.2.1", ALICE)
    assert d.outcome == "deny" and "rule r: bad" in d.reason


def test_identity_roles_become_a_frozenset():
    who = Identity("u", "u@example.com", {"r-admin"}, ["A"])  # type: ignore[arg-type]
    assert who.roles == frozenset({"r-admin"}) and who.groups == ("A",)
    assert outcome(policy(), who=who) == "allow"


# ---------------------------------------------------------------- PolicySet


def _rule_row(rid, resource_id, priority, action, **kw):
    return {"id": rid, "resource_id": resource_id, "priority": priority, "action": action} | kw


def test_policy_set_from_dicts():
    rules = [
        _rule_row("r2", "web", 20, "deny", path="/admin"),
        _rule_row("r1", "web", 10, "bypass", path="/health", method="get"),
        _rule_row("r3", "web", 30, "deny", enabled=False),
        _rule_row("r4", "blog", 5, "deny", cidr="10.0.0.0/8"),
    ]
    grants = [
        {"id": "g1", "resource_id": "web", "role_id": "r-admin", "user_id": None},
        {"id": "g2", "resource_id": "web", "role_id": None, "user_id": "u-carol"},
    ]
    policies = PolicySet.build(rules, grants, public=["blog"], version=42)
    assert policies.version == 42 and policies.errors == ()
    web = policies.get("web")
    assert [r.id for r in web.rules] == ["r1", "r2"]  # sorted; the disabled one left out
    assert web.grants_roles == {"r-admin"} and web.grants_users == {"u-carol"} and not web.public
    assert policies.get("blog").public
    assert policies.decide("web", "/health", "GET", "192.0.2.1", None).outcome == "allow"
    assert policies.decide("web", "/admin", "GET", "192.0.2.1", ALICE).rule_id == "r2"
    assert policies.decide("web", "/app", "GET", "192.0.2.1", CAROL).outcome == "allow"
    assert policies.decide("web", "/app", "GET", "192.0.2.1", BOB).outcome == "deny"
    assert policies.decide("blog", "/", "GET", "10.0.0.1", None).outcome == "deny"
    assert policies.decide("blog", "/", "GET", "11.0.0.1", None).outcome == "allow"


def test_an_unknown_resource_gets_the_closed_default():
    policies = PolicySet.build()
    assert policies.get("nope") == ResourcePolicy("nope")
    assert policies.decide("nope", "/", "GET", "192.0.2.1", None).outcome == "authenticate"
    assert policies.decide("nope", "/", "GET", "192.0.2.1", ALICE).outcome == "deny"


def test_a_bad_row_closes_its_resource_only():
    rules = [
        _rule_row("bad", "web", 10, "deny", cidr="10.0.0.1/8"),
        _rule_row("ok", "web", 20, "bypass"),
        _rule_row("dup1", "api", 1, "deny"),
        _rule_row("dup2", "api", 1, "bypass"),
        _rule_row("fine", "blog", 1, "bypass"),
    ]
    grants = [{"id": "g", "resource_id": "app", "role_id": "x", "user_id": "y"}]
    policies = PolicySet.build(rules, grants, public=["web", "api", "app"])
    for resource_id in ("web", "api", "app"):
        d = policies.decide(resource_id, "/", "GET", "192.0.2.1", ALICE)
        assert d.outcome == "deny" and "broken" in d.reason, resource_id
    assert policies.decide("blog", "/", "GET", "192.0.2.1", None).outcome == "allow"
    assert len(policies.errors) == 3
    assert any("rule bad" in e and e.startswith("resource web:") for e in policies.errors)
    assert any("priority 1" in e for e in policies.errors)


def test_rows_without_a_resource_are_refused():
    with pytest.raises(PolicyError):
        PolicySet.build([{"id": "r", "priority": 1, "action": "deny"}])
    with pytest.raises(PolicyError):
        PolicySet.build(grants=[{"id": "g", "role_id": "x"}])


def test_policy_set_from_store_rows():
    from kokoa.store import Grant
    from kokoa.store import Rule as StoredRule

    now = datetime(2024, 1, 1, tzinfo=UTC)
    rules = [
        StoredRule("r1", "web", 10, "deny", None, "/admin*", "POST", True, now, now),
        StoredRule("r2", "web", 20, "bypass", "192.0.2.0/24", None, None, True, now, now),
        StoredRule("r3", "web", 30, "deny", None, None, None, False, now, now),
    ]
    grants = [Grant("g1", "web", "r-admin", None, now), Grant("g2", "web", None, "u-bob", now)]
    policies = PolicySet.build(rules, grants)
    web = policies.get("web")
    assert [r.id for r in web.rules] == ["r1", "r2"]
    assert web.grants_roles == {"r-admin"} and web.grants_users == {"u-bob"}
    assert policies.decide("web", "/administrators", "post", "192.0.2.1", ALICE).rule_id == "r1"
    assert policies.decide("web", "/x", "GET", "192.0.2.1", None).rule_id == "r2"
    assert policies.decide("web", "/x", "GET", "198.51.100.1", BOB).outcome == "allow"


def test_decide_route_uses_the_routers_decision():
    policies = PolicySet.build([_rule_row("r", "res-1", 1, "deny", path="/admin")], public=["res-1"])
    resource = HTTPResource("res-1", "web", "app.example.com", "/")
    route = Route(resource, "app.example.com", normalize_target(b"/x/..;/%61dmin;p/users?q"))
    assert policies.decide_route(route, "GET", "192.0.2.1", None).rule_id == "r"
    route = Route(resource, "app.example.com", normalize_target(b"/app"))
    assert policies.decide_route(route, "GET", "192.0.2.1", None).outcome == "allow"


def test_a_policy_set_cannot_be_changed():
    policies = PolicySet.build(public=["a"])
    with pytest.raises(TypeError):
        policies.policies["b"] = ResourcePolicy("b")  # type: ignore[index]
