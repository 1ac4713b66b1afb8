"""kokoa.policy's properties, with Hypothesis:

1. decide never raises, whatever the path, method, address and identity;
2. a deny rule on a prefix denies every request whose raw target normalizes (with the router's own
   normalize_target) under that prefix, however it is spelled: "//", "%61"-style escapes of
   unreserved characters, "./", "x/../" detours, ";parameters", leading "..", and encoded slashes
   in the rest of the path; and encoded slashes ("%2F", "%5C") inside the prefix get nowhere either;
3. adding a rule after the one that decided never changes the decision (and, for paths with
   encoded slashes, read both ways, never makes it looser);
4. with IPv4 network rules, the decision is what a brute-force reference decides;
5. path matching (prefixes by whole segments, "*" globs) is what a brute-force reference says.
"""

from __future__ import annotations

import ipaddress
import re
import time
from functools import lru_cache

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from kokoa.http._router import BadTarget, normalize_prefix, normalize_target
from kokoa.policy import ACTIONS, Identity, PolicyError, PolicySet, ResourcePolicy, Rule, decide, fold_path

pytestmark = pytest.mark.sans_io

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ALICE = Identity("u-alice", "alice@example.com", frozenset({"r-admin"}))  # granted by role
BOB = Identity("u-bob", "bob@example.com", frozenset({"r-member"}))  # not granted
CAROL = Identity("u-carol", "carol@example.com")  # granted by user
GRANTED = {None: False, "alice": True, "bob": False, "carol": True}
IDENTITIES = {None: None, "alice": ALICE, "bob": BOB, "carol": CAROL}
STRICTNESS = {"allow": 0, "authenticate": 1, "deny": 2}


def make_policy(rules, public: bool) -> ResourcePolicy:
    return ResourcePolicy(
        "res",
        tuple(rules),
        public=public,
        grants_roles=frozenset({"r-admin"}),
        grants_users=frozenset({"u-carol"}),
    )


# ---------------------------------------------------------------- random policies and requests

RULE_PATHS = [None, "/", "/a", "/a/", "/a/b", "/b", "/ab", "/a*", "/*/b", "/a%2Fb", "/%61", "/a;x", "//a/./b"]
RULE_METHODS = [None, "GET", "POST", "HEAD", "delete"]
RULE_CIDRS = [
    None,
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.2.3",
    "0.0.0.0/0",
    "2001:db8::/32",
    "::ffff:10.0.0.0/104",
]
REQUEST_PATHS = [
    "/",
    "/a",
    "/a/",
    "/a/b",
    "/a/b/c",
    "/ab",
    "/b",
    "/x/b",
    "/a%2Fb",
    "/x/..%2Fa",
    "/a%5Cb",
    "/A",
]
REQUEST_METHODS = ["GET", "HEAD", "POST", "DELETE", "get", "PATCH"]
REQUEST_IPS = ["10.0.0.1", "10.1.2.3", "11.0.0.1", "2001:db8::1", "::1", "::ffff:10.1.2.3", "bogus"]


@st.composite
def rules(draw, priorities=None, min_size=0, max_size=6):
    if priorities is None:
        priorities = draw(st.lists(st.integers(0, 60), unique=True, min_size=min_size, max_size=max_size))
    return [
        Rule(
            f"r{priority}",
            priority,
            draw(st.sampled_from(ACTIONS)),
            cidr=draw(st.sampled_from(RULE_CIDRS)),
            path=draw(st.sampled_from(RULE_PATHS)),
            method=draw(st.sampled_from(RULE_METHODS)),
        )
        for priority in priorities
    ]


identities = st.sampled_from(list(IDENTITIES))


# ---------------------------------------------------------------- 1. decide never raises

anything = st.one_of(
    st.none(),
    st.text(),
    st.text(alphabet="/%2FfA.;:*ab5C"),
    st.binary(max_size=8),
    st.integers(),
    st.sampled_from([ipaddress.ip_address("10.1.2.3"), ipaddress.ip_address("::ffff:10.0.0.1")]),
)


@SETTINGS
@given(rules(), st.booleans(), anything, anything, anything, identities)
def test_decide_never_raises(rule_list, public, path, method, ip, who):
    d = decide(make_policy(rule_list, public), path, method, ip, IDENTITIES[who])
    assert d.outcome in STRICTNESS and d.reason
    assert d.rule_id is None or d.rule_id in {r.id for r in rule_list}


@SETTINGS
@given(
    st.text(max_size=12),
    st.text(max_size=12),
    st.one_of(st.none(), st.text(max_size=12)),
    st.sampled_from(ACTIONS),
    anything,
    anything,
    anything,
)
def test_any_rule_either_parses_or_is_refused(raw_path, raw_method, raw_cidr, action, path, method, ip):
    try:
        rule = Rule("r", 1, action, cidr=raw_cidr, path="/" + raw_path, method=raw_method)
    except PolicyError:
        return
    assert rule.path is not None and rule.path.startswith("/")
    decide(make_policy([rule], False), path, method, ip, ALICE)


@SETTINGS
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "id": st.text(max_size=3),
                "resource_id": st.sampled_from(["a", "b"]),
                "priority": st.one_of(st.integers(0, 3), st.booleans(), st.none()),
                "action": st.sampled_from([*ACTIONS, "nope"]),
                "cidr": st.sampled_from([None, "10.0.0.0/8", "10.0.0.1/8", "x"]),
                "path": st.sampled_from([None, "/a", "a", "/a b", "/a*"]),
                "method": st.sampled_from([None, "GET", "G T"]),
                "enabled": st.booleans(),
            }
        ),
        max_size=6,
    ),
    st.lists(
        st.fixed_dictionaries(
            {
                "resource_id": st.sampled_from(["a", "b"]),
                "role_id": st.sampled_from([None, "r-admin"]),
                "user_id": st.sampled_from([None, "u-carol"]),
            }
        ),
        max_size=3,
    ),
    st.lists(st.sampled_from(["a", "b", "c"])),
)
def test_building_from_any_rows_never_raises_and_broken_resources_deny(rule_rows, grant_rows, public):
    policies = PolicySet.build(rule_rows, grant_rows, public)
    for resource_id in ("a", "b", "c"):
        policy = policies.get(resource_id)
        d = policies.decide(resource_id, "/a", "GET", "10.0.0.1", ALICE)
        if policy.error is not None:
            assert d.outcome == "deny"
            assert any(e.startswith(f"resource {resource_id}:") for e in policies.errors)


# ---------------------------------------------------------------- 2. no normalization bypass

UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
# Characters a prefix segment may hold: unreserved and sub-delims but ";" (parameters), "*" (glob).
SEGMENT_CHARS = "abcAZ09-._~!$&'()+,=:@"
segment = st.text(alphabet=SEGMENT_CHARS, min_size=1, max_size=5).filter(lambda s: s not in (".", ".."))
TAIL_SEGMENTS = ["x", "admin", "a%2Fb", "%2F", "%2f..%2f", "..%2F", "%5C", "y;p", "%3B", "*", "z.html"]
# What may stand between two segments without changing the path.
SEPARATORS = [
    "/",
    "/",
    "//",
    "///",
    "/./",
    "/%2e/",
    "/%2E/",
    "/zz/../",
    "/zz;q/..;r/",
    "/;p/",
    "/.;p/",
    "/z/y/../../",
]
LEADING = ["", "/..", "/../..", "/%2e%2e", "/..;x", "/zz/.."]
TRAILING = ["", "/", "//", "/.", "/%2E", "/zz/..", ";p", ";p/"]
QUERIES = ["", "?", "?a=/admin", "?x=%2F..%2F"]


@st.composite
def spell_segment(draw, text: str, params: bool = True) -> str:
    """``text`` with some unreserved characters percent-encoded, maybe with parameters."""
    out = []
    for token in re.findall("%..|.", text, re.DOTALL):
        if len(token) == 3:  # an escape already: its case may change, not its meaning
            out.append(draw(st.sampled_from([token, token.lower()])))
            continue
        how = draw(st.sampled_from(["raw", "raw", "lower", "upper"])) if token in UNRESERVED else "raw"
        out.append(
            token if how == "raw" else f"%{ord(token):02x}" if how == "lower" else f"%{ord(token):02X}"
        )
    if not params:
        return "".join(out)
    return "".join(out) + draw(st.sampled_from(["", "", "", ";", ";x", ";v=1", ";a;b", ";..", ";."]))


@st.composite
def spell_path(draw, segments: list[str], slashes=SEPARATORS) -> str:
    """A raw spelling of ``/segments...`` (no trailing slash)."""
    out = draw(st.sampled_from(LEADING))
    for seg in segments:
        out += draw(st.sampled_from(slashes)) + draw(spell_segment(seg))
    return out


def under(match_path: str, prefix: str) -> bool:
    """The router's own test of a prefix (kokoa.http._router.Router.route)."""
    return prefix == "/" or match_path == prefix or match_path.startswith(prefix + "/")


@st.composite
def deny_prefix_case(draw):
    prefix_segments = draw(st.lists(segment, min_size=1, max_size=3))
    prefix = "/" + "/".join(prefix_segments)
    # the rule's path itself, spelled any way (the store keeps paths normalized, but the engine does
    # not rely on it)
    rule_path = draw(spell_path(prefix_segments, ["/", "//", "/./", "/zz/../"])) + draw(
        st.sampled_from(["", "/"])
    )
    assume(rule_path.startswith("/"))
    priority = draw(st.integers(0, 30))
    others = draw(rules(priorities=draw(st.lists(st.integers(31, 60), unique=True, max_size=4))))
    tail = draw(st.lists(st.sampled_from(TAIL_SEGMENTS), max_size=3))
    raw = (
        draw(spell_path(prefix_segments))
        + "".join("/" + draw(spell_segment(t)) for t in tail)
        + draw(st.sampled_from(TRAILING))
        + draw(st.sampled_from(QUERIES))
    )
    return prefix, rule_path, priority, others, raw


@SETTINGS
@given(
    deny_prefix_case(),
    st.booleans(),
    identities,
    st.sampled_from(REQUEST_METHODS),
    st.sampled_from(REQUEST_IPS),
)
def test_a_deny_rule_on_a_prefix_denies_every_spelling_under_it(case, public, who, method, ip):
    prefix, rule_path, priority, others, raw = case
    deny = Rule("deny", priority, "deny", path=rule_path)
    assert deny.path == normalize_prefix(prefix)
    match_path = normalize_target(raw.encode("ascii")).match_path
    assert under(match_path, deny.path), (raw, match_path)
    d = decide(make_policy([deny, *others], public), match_path, method, ip, IDENTITIES[who])
    assert (d.outcome, d.rule_id) == ("deny", "deny"), (raw, match_path, d)


@SETTINGS
@given(
    st.data(),
    st.lists(segment, min_size=2, max_size=4),
    st.booleans(),
    identities,
)
def test_encoded_slashes_inside_a_denied_prefix_get_nowhere(data, prefix_segments, public, who):
    deny = Rule("deny", 0, "deny", path="/" + "/".join(prefix_segments))
    others = data.draw(rules(priorities=data.draw(st.lists(st.integers(1, 60), unique=True, max_size=4))))
    encoded = ["%2F", "%2f", "%5C", "%5c", "/zz%2F..%2F", "%2Fzz%2F..%2F", "%2F.%2F", "%2F%2F"]
    # (no ";parameters" here: the router drops a parameter with the encoded slashes in it, and so do
    # the servers that honour parameters)
    raw = data.draw(st.sampled_from(LEADING)) + "/" + data.draw(spell_segment(prefix_segments[0], False))
    for seg in prefix_segments[1:]:
        raw += data.draw(st.sampled_from(["/", *encoded])) + data.draw(spell_segment(seg, False))
    raw += data.draw(st.sampled_from(["", "/x", "%2Fx", "/"]))
    try:
        match_path = normalize_target(raw.encode("ascii")).match_path
    except BadTarget:  # "/zz%2F.." glued to a leading "/.." and so on: nothing to route
        assume(False)
    d = decide(make_policy([deny, *others], public), match_path, "GET", "10.0.0.1", IDENTITIES[who])
    # (when both readings deny, the router's reading gives the reason: maybe a missing grant)
    assert d.outcome == "deny", (raw, match_path, d)


def fold_reference(segments: list[str]) -> list[str]:
    out: list[str] = []
    for seg in segments:
        trimmed = seg.lower().rstrip(".")
        if not trimmed and seg.startswith(".."):
            trimmed = ".."
        if trimmed == "..":
            out = out[:-1]
        elif trimmed:
            out.append(trimmed)
    return out


@SETTINGS
@given(st.lists(segment, min_size=1, max_size=3), st.data())
def test_a_deny_rule_denies_nothing_outside_its_prefix(prefix_segments, data):
    """The other side of 2: no false positives (on paths without encoded slashes) but those that
    fold alike."""
    deny = Rule("deny", 0, "deny", path="/" + "/".join(prefix_segments))
    request_segments = data.draw(st.lists(st.one_of(segment, st.sampled_from(prefix_segments)), max_size=4))
    raw = data.draw(spell_path(request_segments)) or "/"
    match_path = normalize_target(raw.encode("ascii")).match_path
    # under the prefix as the router reads it, or once both are folded (a reference of fold_path for
    # these segments: lower case, trailing dots gone, then "" dropped and ".." resolved)
    folded_prefix = fold_reference(prefix_segments)
    expected = request_segments[: len(prefix_segments)] == prefix_segments or (
        fold_reference(request_segments)[: len(folded_prefix)] == folded_prefix
    )
    assert (
        decide(make_policy([deny], True), match_path, "GET", "10.0.0.1", None).outcome == "deny"
    ) is expected


# ---------------------------------------------------------------- 3. priority


@SETTINGS
@given(
    rules(min_size=1, max_size=6),
    st.data(),
    st.booleans(),
    st.sampled_from(REQUEST_PATHS),
    st.sampled_from(REQUEST_METHODS),
    st.sampled_from(REQUEST_IPS),
    identities,
)
def test_a_later_rule_never_changes_a_rule_decision(rule_list, data, public, path, method, ip, who):
    before = decide(make_policy(rule_list, public), path, method, ip, IDENTITIES[who])
    assume(before.rule_id is not None)
    decided_at = next(r.priority for r in rule_list if r.id == before.rule_id)
    taken = {r.priority for r in rule_list}
    priority = data.draw(st.sampled_from([p for p in range(decided_at + 1, 100) if p not in taken]))
    (extra,) = data.draw(rules(priorities=[priority]))
    after = decide(make_policy([*rule_list, extra], public), path, method, ip, IDENTITIES[who])
    one_reading = (
        not re.search("%(2F|5C)", path, re.IGNORECASE)
        and fold_path(path) == path
        and all(r.path is None or r.folded == r.path for r in [*rule_list, extra])
    )
    if one_reading:
        assert after == before
    else:  # decided on several readings of the path: the new rule may only tighten another reading
        assert STRICTNESS[after.outcome] >= STRICTNESS[before.outcome]


@SETTINGS
@given(
    rules(max_size=6),
    st.booleans(),
    st.sampled_from(REQUEST_PATHS),
    st.sampled_from(REQUEST_METHODS),
    identities,
)
def test_the_order_rules_are_given_in_does_not_matter(rule_list, public, path, method, who):
    forward = decide(make_policy(rule_list, public), path, method, "10.1.2.3", IDENTITIES[who])
    backward = decide(make_policy(rule_list[::-1], public), path, method, "10.1.2.3", IDENTITIES[who])
    assert forward == backward


# ---------------------------------------------------------------- 4. IPv4 networks: a brute-force reference


@st.composite
def ipv4_networks(draw) -> tuple[int, int]:
    prefixlen = draw(st.integers(0, 32))
    address = draw(st.integers(0, 2**32 - 1))
    mask = ((1 << prefixlen) - 1) << (32 - prefixlen)
    return address & mask, prefixlen


def in_network(address: int, network: tuple[int, int]) -> bool:
    base, prefixlen = network
    return address >> (32 - prefixlen) == base >> (32 - prefixlen)


def reference(rule_list, public: bool, address: int, method: str, who) -> tuple[str, str | None]:
    granted = GRANTED[who]
    for rid, _, action, network, rule_method in sorted(rule_list, key=lambda r: r[1]):
        if (
            rule_method is not None
            and rule_method != method
            and not (rule_method == "GET" and method == "HEAD")
        ):
            continue
        if not in_network(address, network):
            continue
        if action == "deny":
            return "deny", rid
        if action == "bypass":
            return "allow", rid
        return ("authenticate" if who is None else "allow" if granted else "deny"), rid
    if public:
        return "allow", None
    return ("authenticate" if who is None else "allow" if granted else "deny"), None


@SETTINGS
@given(st.data(), st.lists(ipv4_networks(), min_size=1, max_size=6), st.booleans(), identities)
def test_ipv4_rules_agree_with_a_brute_force_reference(data, networks, public, who):
    priorities = data.draw(
        st.lists(st.integers(0, 1000), unique=True, min_size=len(networks), max_size=len(networks))
    )
    rule_list = [
        (
            f"r{i}",
            priority,
            data.draw(st.sampled_from(ACTIONS)),
            network,
            data.draw(st.sampled_from([None, None, "GET", "POST"])),
        )
        for i, (priority, network) in enumerate(zip(priorities, networks, strict=True))
    ]
    policy = make_policy(
        [
            Rule(rid, priority, action, cidr=f"{ipaddress.IPv4Address(base)}/{plen}", method=m)
            for rid, priority, action, (base, plen), m in rule_list
        ],
        public,
    )
    # addresses at and around the networks' edges, and anywhere
    base, prefixlen = data.draw(st.sampled_from(networks))
    size = 1 << (32 - prefixlen)
    near = st.sampled_from([base - 1, base, base + 1, base + size - 1, base + size, base + size // 2])
    address = data.draw(st.one_of(near, st.integers(0, 2**32 - 1)).filter(lambda a: 0 <= a < 2**32))
    dotted = str(ipaddress.IPv4Address(address))
    hex_groups = f"::FFFF:{address >> 16:x}:{address & 0xFFFF:X}"  # mapped, in hex groups
    spelled = data.draw(st.sampled_from([dotted, f"::ffff:{dotted}", f"[::ffff:{dotted}]", hex_groups]))
    method = data.draw(st.sampled_from(["GET", "HEAD", "POST", "PUT"]))
    d = decide(policy, "/", method, spelled, IDENTITIES[who])
    assert (d.outcome, d.rule_id) == reference(rule_list, public, address, method, who)


# ---------------------------------------------------------------- 5. paths: a brute-force reference


@lru_cache(maxsize=4096)
def glob_reference(pattern: str, text: str) -> bool:
    """Does ``text`` match ``pattern`` whole, "*" matching any run of characters? (recursive)"""
    if not pattern:
        return not text
    if pattern[0] == "*":
        return any(glob_reference(pattern[1:], text[i:]) for i in range(len(text) + 1))
    return bool(text) and text[0] == pattern[0] and glob_reference(pattern[1:], text[1:])


def path_reference(pattern: str, match_path: str) -> bool:
    """The path, or a part of it that ends before a "/", matches the pattern whole."""
    candidates = [match_path] + [match_path[:i] for i, char in enumerate(match_path) if char == "/"]
    return pattern == "/" or any(glob_reference(pattern, c) for c in candidates)


PATTERN_PIECES = ["a", "b", "/", "/a", "/b", "*", "/*", ".", "ab"]
PATH_PIECES = ["a", "b", "/", "/a", "/b", "ab", "ba", ".", "*", "%2F", ";x", "/a/b"]


@SETTINGS
@given(
    st.lists(st.sampled_from(PATTERN_PIECES), max_size=6).map("".join),
    st.lists(st.sampled_from(PATH_PIECES), max_size=8).map("".join),
)
@example("*a", "a/b")  # a glob ending in a literal still matches whole segments
@example("a*b*a", "aba/ab")
@example("a", "ab")
def test_path_matching_agrees_with_a_brute_force_reference(raw_pattern, raw_path):
    try:
        rule = Rule("r", 1, "deny", path="/" + raw_pattern)
        match_path = normalize_target(("/" + raw_path).encode("ascii")).match_path
    except (PolicyError, BadTarget):
        assume(False)
    assert rule.path is not None
    assert rule.path_matches(match_path) is path_reference(rule.path, match_path), (rule.path, match_path)


def test_a_pathological_glob_stays_fast():
    rule = Rule("r", 1, "deny", path="/" + "*a" * 30 + "*b")
    path = "/" + "a" * 20_000
    start = time.perf_counter()
    assert not rule.path_matches(path)
    assert not rule.path_matches(path + "/")
    assert rule.path_matches(path + "b/x")
    assert time.perf_counter() - start < 1.0
