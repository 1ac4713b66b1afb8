"""Rule paths are not bypassed by case and trailing characters: ``deny`` and ``allow`` rules also match
the folded path (kokoa.policy.fold_path), ``bypass`` rules never match more for it.

By example, then as Hypothesis properties: for any path under a denied prefix, any case, trailing-dot
or trailing-whitespace variant of it (spelled with percent-escapes too) is denied; under a bypass rule,
such a variant is not let in without signing in; under an allow rule on a public resource, it still
needs signing in.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kokoa.http._router import BadTarget, normalize_target
from kokoa.policy import Identity, ResourcePolicy, Rule, decide, fold_path
from kokoa.policy._rules import _fold_segments

pytestmark = pytest.mark.sans_io

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALICE = Identity("u-alice", "alice@example.com", frozenset({"r-admin"}))
BOB = Identity("u-bob", "bob@example.com", frozenset({"r-member"}))
STRICTNESS = {"allow": 0, "authenticate": 1, "deny": 2}


def policy(*rules: Rule, public: bool = False) -> ResourcePolicy:
    return ResourcePolicy("res", rules, public=public, grants_roles=frozenset({"r-admin"}))


def match_path(raw: str) -> str:
    return normalize_target(raw.encode("ascii")).match_path


def decide_raw(p: ResourcePolicy, raw: str, who: Identity | None = None, method: str = "GET"):
    return decide(p, match_path(raw), method, "192.0.2.1", who)


# ---------------------------------------------------------------- fold_path


@pytest.mark.parametrize(
    ("path", "folded"),
    [
        ("/", "/"),
        ("/admin", "/admin"),
        ("/ADMIN", "/admin"),
        ("/Admin/X", "/admin/x"),
        ("/admin.", "/admin"),
        ("/admin..", "/admin"),
        ("/admin%20", "/admin"),
        ("/admin%09", "/admin"),
        ("/admin%0D%0A", "/admin"),
        ("/admin.%20.%20", "/admin"),
        ("/admin./x", "/admin/x"),
        ("/admin%20/x/", "/admin/x/"),
        ("/a.b", "/a.b"),  # only trailing characters go
        ("/.well-known", "/.well-known"),  # leading ones stay
        ("/%20admin", "/%20admin"),
        ("/administrator", "/administrator"),
        ("/caf%C3%89", "/café"),  # UTF-8 escapes decoded, then case-folded
        ("/STRA%C3%9FE", "/strasse"),
        ("/a%C2%A0", "/a"),  # a non-breaking space is whitespace
        ("/a%E3%80%80/b", "/a/b"),  # so is an ideographic space
        ("/a%FF", "/a%ff"),  # not UTF-8: left encoded
        ("/A%2Fb", "/a%2fb"),  # an encoded slash stays one
        ("/a%2A", "/a%2a"),  # an encoded "*" stays one
        ("/x/%20/y", "/x/y"),  # a segment left empty goes
        ("/x/.%20/y", "/x/y"),
        ("/x/..%20/y", "/y"),  # "..%20" is "..": it removes the segment before it
        ("/x/.../y", "/y"),
        ("/..%20/y", "/y"),
    ],
)
def test_fold_path(path, folded):
    assert fold_path(path) == folded
    assert fold_path(folded) == folded  # folding is idempotent


def test_rules_keep_their_exact_path_and_know_their_folded_one():
    rule = Rule("r", 1, "deny", path="/Admin./X%20/")
    assert rule.path == "/Admin./X%20"  # as the router normalizes it: the router is case-sensitive
    assert rule.folded == "/admin/x"
    assert rule.path_matches("/Admin./X%20/y") and not rule.path_matches("/admin/x")
    assert rule.folded_path_matches("/admin/x/y") and not rule.folded_path_matches("/admin/xy")
    glob = Rule("g", 2, "deny", path="/API/*.PHP")
    assert glob.folded == "/api/*.php"
    assert glob.folded_path_matches("/api/v1/a.php") and not glob.folded_path_matches("/api/a.phpx")


# ---------------------------------------------------------------- deny


ADMIN_VARIANTS = [
    "/ADMIN",
    "/Admin",
    "/%41DMIN",
    "/%41dmin",
    "/admin.",
    "/admin..",
    "/admin%20",
    "/admin%09",
    "/admin.%20",
    "/Admin/x",
    "/admin./x",
    "/ADMIN%20/x/y",
    "/x/../ADMIN.",
    "/public/..%2FADMIN",  # an encoded slash and a case variant at once
    "/public/..%20/admin",  # a trimmed ".." that leaves /public
]


@pytest.mark.parametrize("raw", ["/admin", "/admin/x", *ADMIN_VARIANTS])
@pytest.mark.parametrize("public", [True, False])
def test_a_deny_rule_denies_case_and_trailing_variants(raw, public):
    p = policy(Rule("r1", 10, "deny", path="/admin"), public=public)
    d = decide_raw(p, raw, ALICE)
    assert (d.outcome, d.rule_id) == ("deny", "r1"), (raw, d)


@pytest.mark.parametrize("raw", ["/administrator", "/admin-x", "/x/admin", "/adm", "/%20admin", "/admin%3B"])
def test_a_deny_rule_still_matches_whole_segments_only(raw):
    p = policy(Rule("r1", 10, "deny", path="/admin"), public=True)
    assert decide_raw(p, raw).outcome == "allow", raw


def test_the_reason_says_which_reading_denied():
    p = policy(Rule("r1", 10, "deny", path="/admin"), public=True)
    d = decide_raw(p, "/ADMIN./x")
    assert "denied by rule 10" in d.reason
    assert "without case and trailing dots or spaces: /admin/x" in d.reason
    assert "without case" not in decide_raw(p, "/admin/x").reason  # the exact reading needs no note


def test_a_deny_rule_written_in_capitals_denies_lower_case_too():
    p = policy(Rule("r1", 10, "deny", path="/Admin"), public=True)
    for raw in ("/Admin", "/admin", "/ADMIN/x", "/admin."):
        assert decide_raw(p, raw).outcome == "deny", raw


def test_deny_globs_fold_too():
    p = policy(Rule("r1", 10, "deny", path="/*.php"), public=True)
    for raw in ("/a.php", "/A.PHP", "/a.php.", "/a.Php%20", "/d/A.PHP/x", "/a.php./x"):
        assert decide_raw(p, raw).outcome == "deny", raw
    assert decide_raw(p, "/a.phpx").outcome == "allow"


def test_a_deny_after_a_bypass_is_not_reached_through_the_bypass():
    # the bypass decides first for its own paths (the order the operator chose) ...
    p = policy(Rule("b", 1, "bypass", path="/public"), Rule("d", 2, "deny", path="/admin"))
    assert decide_raw(p, "/public/x").outcome == "allow"
    # ... but a folded path the bypass does not cover reaches the deny
    assert decide_raw(p, "/ADMIN").outcome == "deny"
    assert decide_raw(p, "/public/..%20/ADMIN").outcome == "deny"


# ---------------------------------------------------------------- bypass


@pytest.mark.parametrize("raw", ["/PUBLIC", "/Public/x", "/public.", "/public%20", "/public./x"])
def test_a_bypass_rule_does_not_open_case_or_trailing_variants(raw):
    p = policy(Rule("r1", 10, "bypass", path="/public"))
    assert decide_raw(p, raw).outcome == "authenticate", raw
    assert decide_raw(p, raw, ALICE).outcome == "allow"  # signed in with a grant, as anywhere else


@pytest.mark.parametrize("raw", ["/public", "/public/", "/public/x", "/public/x.css", "/public/a/b."])
def test_a_bypass_rule_still_opens_its_own_paths(raw):
    p = policy(Rule("r1", 10, "bypass", path="/public"))
    d = decide_raw(p, raw)
    assert (d.outcome, d.rule_id) == ("allow", "r1"), raw


def test_a_bypass_rule_does_not_stretch_to_where_a_trimmed_dot_dot_leads():
    p = policy(Rule("r1", 10, "bypass", path="/public"))
    for raw in ("/public/..%20/admin", "/public/.../admin", "/public/..%09"):
        assert decide_raw(p, raw).outcome == "authenticate", raw


def test_a_bypass_rule_in_capitals_opens_only_its_exact_spelling():
    p = policy(Rule("r1", 10, "bypass", path="/Public"))
    assert decide_raw(p, "/Public/x").outcome == "allow"
    assert decide_raw(p, "/public/x").outcome == "authenticate"


# ---------------------------------------------------------------- allow


@pytest.mark.parametrize("raw", ["/api", "/API", "/Api/x", "/api.", "/api%20/x"])
def test_an_allow_rule_on_a_public_resource_protects_every_variant(raw):
    p = policy(Rule("r1", 10, "allow", path="/api"), public=True)
    assert decide_raw(p, raw).outcome == "authenticate", raw
    assert decide_raw(p, raw, BOB).outcome == "deny"
    assert decide_raw(p, raw, ALICE).outcome == "allow"
    assert decide_raw(p, "/apix").outcome == "allow"


def test_folding_never_loosens_a_decision():
    # read exactly, rule 1 denies "/A"; folded, rule 2 would let the request in first
    p = policy(Rule("r1", 1, "deny", path="/A"), public=True)
    assert decide_raw(p, "/A").outcome == "deny"
    p = policy(Rule("r1", 1, "bypass", path="/a"), Rule("r2", 2, "deny", path="/A"))
    assert decide_raw(p, "/A").outcome == "deny"  # the bypass does not match "/A" exactly


def test_paths_that_fold_to_themselves_are_read_once():
    p = policy(Rule("r1", 10, "deny", path="/admin"), public=True)
    assert p._folds and p._folded_alike
    assert decide_raw(p, "/other").reason == "no rule matches and the resource is public"
    assert not policy(Rule("r1", 10, "deny", method="POST"))._folds  # no path: nothing to fold
    assert not policy(Rule("r1", 10, "deny", path="/Admin"))._folded_alike


# ---------------------------------------------------------------- properties

SEGMENT = st.text(alphabet="abcxyz019-_~", min_size=1, max_size=6)
TRAILERS = ["", "", ".", "..", "%20", "%09", "%0A", "%0d", ".%20", "%20.", "%C2%A0", "%2E"]


@st.composite
def variant(draw, segment: str) -> str:
    """``segment`` in any case, letters maybe percent-encoded, with trailing dots or whitespace."""
    out = []
    for char in segment:
        if char.isalpha():
            char = draw(st.sampled_from([char.lower(), char.upper()]))
        if draw(st.integers(0, 4)) == 0:
            char = draw(st.sampled_from([f"%{ord(char):02X}", f"%{ord(char):02x}"]))
        out.append(char)
    return "".join(out) + draw(st.sampled_from(TRAILERS))


@st.composite
def path_under(draw, prefix: list[str]) -> tuple[str, str]:
    """(the exact path, a variant of it) for a path under ``prefix``."""
    tail = draw(st.lists(SEGMENT, max_size=3))
    exact = "/" + "/".join(prefix + tail)
    spelled = "/" + "/".join([draw(variant(s)) for s in prefix] + [draw(variant(s)) for s in tail])
    spelled += draw(st.sampled_from(["", "/", "?q=1"]))
    return exact, spelled


@st.composite
def other_rules(draw, after: int) -> list[Rule]:
    priorities = draw(st.lists(st.integers(after + 1, after + 40), unique=True, max_size=3))
    return [
        Rule(
            f"o{p}",
            p,
            draw(st.sampled_from(["allow", "deny", "bypass"])),
            path=draw(st.sampled_from([None, "/", "/x", "/A", "/a/b", "/*"])),
        )
        for p in priorities
    ]


@SETTINGS
@given(
    st.lists(SEGMENT, min_size=1, max_size=3),
    st.data(),
    st.booleans(),
    st.sampled_from([None, ALICE, BOB]),
)
def test_any_variant_of_a_path_under_a_denied_prefix_is_denied(prefix, data, public, who):
    # the rule itself may be written in any case, with trailing dots: the same prefix, folded
    rule_path = "/" + "/".join(data.draw(variant(s)) for s in prefix)
    deny = Rule("deny", 5, "deny", path=rule_path)
    others = data.draw(other_rules(5))
    _, spelled = data.draw(path_under(prefix))
    try:
        path = match_path(spelled)
    except BadTarget:
        assume(False)
    d = decide(policy(deny, *others, public=public), path, "GET", "192.0.2.1", who)
    # (when another rule denies the exact reading, that reading's rule is the one named)
    assert d.outcome == "deny", (deny.path, spelled, path, d)


@SETTINGS
@given(st.lists(SEGMENT, min_size=1, max_size=3), st.data(), st.sampled_from([None, BOB]))
def test_no_variant_of_a_path_under_a_bypass_prefix_is_let_in_without_its_exact_spelling(prefix, data, who):
    bypass = Rule("bypass", 5, "bypass", path="/" + "/".join(prefix))
    exact, spelled = data.draw(path_under(prefix))
    path = match_path(spelled)
    p = policy(bypass, public=False)
    d = decide(p, path, "GET", "192.0.2.1", who)
    exactly_under = path == bypass.path or path.startswith(bypass.path + "/")
    if not exactly_under:  # a variant spelling: not bypassed, and nobody unentitled gets in
        assert d.outcome != "allow", (spelled, path, d)
        assert d.rule_id is None
    else:
        # spelled exactly as the rule at the prefix (trailing characters at most in later segments)
        assert (d.outcome, d.rule_id) == ("allow", "bypass")
    assert decide(p, match_path(exact), "GET", "192.0.2.1", who).outcome == "allow"


@SETTINGS
@given(st.lists(SEGMENT, min_size=1, max_size=3), st.data())
def test_any_variant_of_a_path_under_an_allow_rule_needs_signing_in(prefix, data):
    allow = Rule("allow", 5, "allow", path="/" + "/".join(prefix))
    others = data.draw(other_rules(5))
    _, spelled = data.draw(path_under(prefix))
    p = policy(allow, *others, public=True)
    path = match_path(spelled)
    # (a later deny rule may deny on another reading of the path: stricter still)
    assert decide(p, path, "GET", "192.0.2.1", None).outcome != "allow", (spelled, path)
    assert decide(p, path, "GET", "192.0.2.1", BOB).outcome == "deny"


@SETTINGS
@given(st.text(max_size=30), st.text(alphabet="/.%aA20C9\t ", max_size=20))
def test_fold_path_never_raises_and_is_idempotent(anything, shaped):
    for text in (anything, "/" + anything, "/" + shaped):
        folded = fold_path(text)
        assert folded.startswith("/")
        assert fold_path(folded) == folded


@SETTINGS
@given(st.lists(st.sampled_from(["a", "B", ".", "..", "/", "//", "x.y", "%20", "%41", " ", "\t", "é"])))
def test_the_quick_way_of_folding_agrees_with_the_long_way(pieces):
    path = "/" + "".join(pieces)
    assert fold_path(path) == _fold_segments(path), path
