"""kokoa.http._router in isolation: target and host normalization, and the routing decision.

The properties matter more than the examples: whatever a client spells, the path that
is matched (and that access rules will see) is one canonical form, normalizing it
again changes nothing, and the router picks what a brute-force reference picks.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kokoa.gateway._model import HTTPResource
from kokoa.http._router import BadTarget, Router, Target, normalize_host, normalize_prefix, normalize_target

pytestmark = pytest.mark.sans_io

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
# pchar and "/" of RFC 3986, plus "%" for escapes: all a normalized path may hold.
CLEAN_PATH = re.compile(r"\A[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*\Z")
ESCAPE = re.compile(r"%(..)")


# ---------------------------------------------------------------- normalize_target: examples


@pytest.mark.parametrize(
    ("raw", "path", "match_path"),
    [
        (b"/", "/", "/"),
        (b"//a", "/a", "/a"),
        (b"///a///b//", "/a/b/", "/a/b/"),
        (b"/%61", "/a", "/a"),
        (b"/%41%7e%7E%2d%2E%5f", "/A~~-._", "/A~~-._"),
        (b"/a/../b", "/b", "/b"),
        (b"/a/./b/", "/a/b/", "/a/b/"),
        (b"/a/b/.", "/a/b/", "/a/b/"),
        (b"/a/b/..", "/a/", "/a/"),
        (b"/..", "/", "/"),
        (b"/../../a", "/a", "/a"),
        (b"/%2e%2E/a/%2e/b", "/a/b", "/a/b"),
        (b"/..;/admin", "/admin", "/admin"),
        (b"/x/..;y/admin", "/admin", "/admin"),
        (b"/admin;x/secret", "/admin;x/secret", "/admin/secret"),
        (b"/admin;x=1;y=2/", "/admin;x=1;y=2/", "/admin/"),
        (b"/;x/admin", "/admin", "/admin"),
        (b"/a%2fb", "/a%2Fb", "/a%2Fb"),
        (b"/a%2Fb/%2f", "/a%2Fb/%2F", "/a%2Fb/%2F"),
        (b"/%3b/%3f/%25", "/%3B/%3F/%25", "/%3B/%3F/%25"),
        (b"/%2561", "/%2561", "/%2561"),  # decoded once only: "%25" is "%", not a new escape
        (b"/a:b@c!$&'()*+,=", "/a:b@c!$&'()*+,=", "/a:b@c!$&'()*+,="),
    ],
)
def test_normalize_target_examples(raw, path, match_path):
    target = normalize_target(raw)
    assert (target.path, target.match_path, target.query) == (path, match_path, "")
    assert target.forwarded == path


@pytest.mark.parametrize(
    ("raw", "query"),
    [
        (b"/a?b=%2f&c=%61", "?b=%2f&c=%61"),
        (b"/a?", "?"),
        (b"/a??x", "??x"),
        (b"/a?x=/../y&z=//", "?x=/../y&z=//"),
        (b'/a?q=[1]|{2}<3>^`"\\', '?q=[1]|{2}<3>^`"\\'),
        (b"/a?%zz", "?%zz"),  # the query is the target's business, passed verbatim
    ],
)
def test_the_query_is_kept_verbatim(raw, query):
    target = normalize_target(raw)
    assert target.path == "/a" and target.query == query
    assert target.forwarded == "/a" + query


def test_a_query_after_dot_segments():
    assert normalize_target(b"/a/./b/../c?x=1") == Target("/a/c", "/a/c", "?x=1")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"a",
        b"*",
        b"http://app.test/",
        b"/a#b",
        b"/a?b#c",
        b"/#",
        b"/a%00b",
        b"/a\x00b",
        b"/%",
        b"/a%",
        b"/a%2",
        b"/a%zz",
        b"/a%2g",
        b"/a%%41",
        b"/a b",
        b"/a\tb",
        b"/a\rb",
        b"/a?b c",
        b"/\xc3\xa9",
        b"/a?\xc3\xa9",
        b"/a\x7f",
        b"/a\\b",
        b'/a"b',
        b"/a<b>",
        b"/a[b]",
        b"/a{b}",
        b"/a|b",
        b"/a^b",
        b"/a`b",
    ],
)
def test_normalize_target_refuses(raw):
    with pytest.raises(BadTarget):
        normalize_target(raw)


@pytest.mark.parametrize("raw", [b"/a\n", b"/a\n?x", b"/?x\n", b"/a?x=1\n"])
def test_a_trailing_newline_is_refused(raw):
    with pytest.raises(BadTarget):
        normalize_target(raw)


# ---------------------------------------------------------------- normalize_target: properties

# Pieces that exercise every rule: dot segments (plain, encoded, with parameters),
# parameters, empty segments, escapes of unreserved and reserved characters, a query.
PIECES = [
    b"/", b"//", b"a", b"b", b"ab", b".", b"..", b";", b";p", b"=1", b"%2e", b"%2E", b"%2e%2e",
    b"%61", b"%41", b"%7e", b"%2f", b"%2F", b"%3b", b"%25", b"%00", b"%", b"%g", b"~", b"-", b"_",
    b"?", b"q=1", b"&", b"#", b" ", b"\xff", b"@", b":",
]  # fmt: skip
pathish = st.lists(st.sampled_from(PIECES), max_size=16).map(lambda parts: b"/" + b"".join(parts))
path_alphabet = st.binary(max_size=40).map(lambda b: b"/" + b)
raw_targets = st.one_of(pathish, path_alphabet, st.binary(max_size=40))


def _normalized_or_none(raw: bytes) -> Target | None:
    try:
        return normalize_target(raw)
    except BadTarget:
        return None


@SETTINGS
@given(raw_targets)
def test_normalize_target_raises_nothing_but_bad_target(raw):
    _normalized_or_none(raw)  # any other exception fails the test


@SETTINGS
@given(st.one_of(pathish, path_alphabet))
def test_normalize_target_is_idempotent(raw):
    target = _normalized_or_none(raw)
    if target is None:
        return
    again = normalize_target(target.forwarded.encode("ascii"))
    assert again == target
    # and the match path is a fixed point too
    assert normalize_target(target.match_path.encode("ascii")).match_path == target.match_path


def _check_clean(target: Target) -> None:
    for path in (target.path, target.match_path):
        assert path.startswith("/")
        assert "//" not in path
        for bad in ("/./", "/../"):
            assert bad not in path
        assert not path.endswith("/.") and not path.endswith("/..")
        segments = path.split("/")[1:]
        for segment in segments[:-1]:  # the last one is "" for a trailing slash
            bare = segment.split(";", 1)[0]
            assert bare not in ("", ".", ".."), path
        for escape in ESCAPE.findall(path):
            assert escape == escape.upper() and all(c in "0123456789ABCDEF" for c in escape), path
            assert chr(int(escape, 16)) not in UNRESERVED, path
            assert escape != "00"
    assert ";" not in target.match_path
    # the match path is the forwarded path without its parameters
    assert target.match_path == re.sub(r";[^/]*", "", target.path)


@SETTINGS
@given(raw_targets)
def test_the_normalized_path_is_canonical(raw):
    target = _normalized_or_none(raw)
    if target is None:
        return
    _check_clean(target)
    assert CLEAN_PATH.match(target.path)
    assert "\n" not in target.query and "#" not in target.query


@SETTINGS
@given(raw_targets)
def test_the_query_is_the_raw_query(raw):
    target = _normalized_or_none(raw)
    if target is None:
        return
    _, sep, query = raw.partition(b"?")
    assert target.query == (("?" + query.decode("ascii")) if sep else "")


# ---------------------------------------------------------------- spellings of one path

SEGMENTS = ["a", "b", "ab", "api", "apix", "v1", "x-y", "a.b", "~u", "%2F", "a%2Fb", "..."]


def _spell_segment(draw, segment: str) -> str:
    out = []
    i = 0
    while i < len(segment):
        if segment[i] == "%":
            escape = segment[i : i + 3]
            out.append(draw(st.sampled_from([escape, escape.lower()])))
            i += 3
            continue
        char = segment[i]
        how = draw(st.sampled_from(["raw", "raw", "lower", "upper"]))
        out.append(char if how == "raw" else f"%{ord(char):02x}" if how == "lower" else f"%{ord(char):02X}")
        i += 1
    params = draw(st.sampled_from(["", "", "", ";", ";x", ";v=1", ";a;b", ";..", ";."]))
    return "".join(out) + params


# Segments that vanish wherever they stand (a detour "zz/.." undoes itself).
JUNK = ["", ".", "%2e", "%2E", ";p", ".;p", "zz/..", "zz;q/..;r", "z/y/../..", "%7A%7a/%2E%2E"]
# Only at the very start (nothing to pop yet): a ".." there is a no-op.
LEADING = ["", "..", "%2e%2e", "..;x", "../.."]
TRAILING = ["/", "/.", "/%2E", "/zz/..", "/zz/%2e%2e", "//"]


@st.composite
def spellings(draw, segments: list[str], trailing: bool) -> bytes:
    parts = [draw(st.sampled_from(LEADING))]
    for segment in segments:
        parts += draw(st.lists(st.sampled_from(JUNK), max_size=2))
        parts.append(_spell_segment(draw, segment))
    path = "/" + "/".join(p for p in parts if p or draw(st.booleans()))
    if trailing:
        path += draw(st.sampled_from(TRAILING))
    return path.encode("ascii")


def canonical(segments: list[str], trailing: bool) -> str:
    return "/" + "/".join(segments) + ("/" if trailing and segments else "")


paths = st.tuples(st.lists(st.sampled_from(SEGMENTS), max_size=4), st.booleans())


@SETTINGS
@given(st.data(), paths)
def test_every_spelling_of_a_path_has_one_match_path(data, path):
    segments, trailing = path
    raw = data.draw(spellings(segments, trailing))
    target = normalize_target(raw)
    assert target.match_path == canonical(segments, trailing), raw
    assert normalize_target(canonical(segments, trailing).encode()).match_path == target.match_path


# ---------------------------------------------------------------- normalize_host


@pytest.mark.parametrize(
    ("value", "host"),
    [
        ("app.test", "app.test"),
        ("App.TEST", "app.test"),
        ("app.test:8080", "app.test"),
        ("app.test:0", "app.test"),
        ("app.test:65535", "app.test"),
        ("app.test.", "app.test"),
        ("APP.test.:443", "app.test"),
        ("  app.test  ", "app.test"),
        ("localhost", "localhost"),
        ("a_b.test", "a_b.test"),
        ("0-9.test", "0-9.test"),
        ("10.0.0.1", "10.0.0.1"),
        ("10.0.0.1:80", "10.0.0.1"),
        ("[::1]", "[::1]"),
        ("[::1]:8443", "[::1]"),
        ("[2001:DB8::1]", "[2001:db8::1]"),
        ("[::ffff:10.0.0.1]:80", "[::ffff:10.0.0.1]"),
        ("a" * 63 + ".test", "a" * 63 + ".test"),
    ],
)
def test_normalize_host_examples(value, host):
    assert normalize_host(value) == host


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        ".",
        "..",
        ":80",
        "a..b",
        ".a.test",
        "a.test..",
        "-a.test",
        "a-.test",
        "a b.test",
        "a/b",
        "a@b.test",
        "user:pass@a.test",
        "a.test:",
        "a.test:x",
        "a.test:-1",
        "a.test:+80",
        "a.test:65536",
        "a.test:123456",
        "a.test:80:80",
        "*.app.test",
        "a%2e.test",
        "\u00e9.test",
        "a" * 64 + ".test",
        ".".join(["a" * 63] * 4) + ".ab",  # 254 characters
        "[]",
        "[]:80",
        "[::1]x",
        "[::1]:",
        "[::1]:http",
        "[::g]",
        "[::1%25eth0]",
        "[fe80::1%eth0]",
        "[a.test]x",
    ],
)
def test_normalize_host_refuses(value):
    with pytest.raises(BadTarget):
        normalize_host(value)


@pytest.mark.parametrize("value", ["[::1", "[::1:80", "[2001:db8::1"])
def test_an_unclosed_ipv6_literal_is_refused(value):
    with pytest.raises(BadTarget):
        normalize_host(value)


@pytest.mark.parametrize("value", ["a\n.test", "\u212a.test", "a:\u00b2", "a:\u0663"])
def test_normalize_host_refuses_control_and_non_ascii(value):
    with pytest.raises(BadTarget):
        normalize_host(value)


@SETTINGS
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=30))
def test_normalize_host_raises_nothing_but_bad_target_on_ascii(value):
    try:
        host = normalize_host(value)
    except BadTarget:
        return
    assert host == host.lower() and not host.endswith(".")
    assert normalize_host(host) == host
    if "\n" not in value:  # see test_normalize_host_refuses_control_and_non_ascii
        assert re.fullmatch(r"[a-z0-9_.\-]+|\[[0-9a-f:.]+\]", host)


# ---------------------------------------------------------------- normalize_prefix


@pytest.mark.parametrize(
    ("prefix", "normalized"),
    [
        ("/", "/"),
        ("", None),
        ("/api", "/api"),
        ("/api/", "/api"),
        ("//api//", "/api"),
        ("/%61pi", "/api"),
        ("/api;v=1/", "/api"),
        ("/a/./b/../c", "/a/c"),
        ("/a%2fb", "/a%2Fb"),
        ("/..", "/"),
    ],
)
def test_normalize_prefix(prefix, normalized):
    if normalized is None:
        with pytest.raises(BadTarget):
            normalize_prefix(prefix)
    else:
        assert normalize_prefix(prefix) == normalized


# ---------------------------------------------------------------- Router: examples


def resource(rid: str, hostname: str, prefix: str = "/", enabled: bool = True) -> HTTPResource:
    return HTTPResource(id=rid, name=rid, hostname=hostname, path_prefix=prefix, enabled=enabled)


def routed(router: Router, host: str, raw: bytes) -> str | None:
    route = router.route(host, normalize_target(raw))
    return None if route is None else route.resource.id


def test_an_exact_host_beats_a_wildcard():
    router = Router([resource("wild", "*.app.test"), resource("exact", "b.app.test")])
    assert routed(router, "b.app.test", b"/") == "exact"
    assert routed(router, "c.app.test", b"/") == "wild"
    router = Router([resource("exact", "b.app.test"), resource("wild", "*.app.test")])
    assert routed(router, "b.app.test", b"/") == "exact"


def test_a_wildcard_matches_exactly_one_label():
    router = Router([resource("wild", "*.app.test")])
    assert routed(router, "a.app.test", b"/") == "wild"
    assert routed(router, "app.test", b"/") is None
    assert routed(router, "a.b.app.test", b"/") is None
    assert routed(router, "aapp.test", b"/") is None
    assert router.knows_host("a.app.test") and not router.knows_host("a.b.app.test")
    assert not router.knows_host("app.test")


def test_an_exact_host_without_a_matching_prefix_does_not_fall_back_to_the_wildcard():
    """As documented: exact host, else a wildcard; then the path."""
    router = Router([resource("wild", "*.app.test"), resource("api", "b.app.test", "/api")])
    assert routed(router, "b.app.test", b"/api/x") == "api"
    assert routed(router, "b.app.test", b"/other") is None


def test_the_longest_prefix_wins():
    router = Router(
        [
            resource("root", "app.test", "/"),
            resource("v1", "app.test", "/api/v1"),
            resource("api", "app.test", "/api"),
        ]
    )
    assert routed(router, "app.test", b"/api/v1/users") == "v1"
    assert routed(router, "app.test", b"/api/v1") == "v1"
    assert routed(router, "app.test", b"/api/v1/") == "v1"
    assert routed(router, "app.test", b"/api/v2") == "api"
    assert routed(router, "app.test", b"/api") == "api"
    assert routed(router, "app.test", b"/api/") == "api"
    assert routed(router, "app.test", b"/other") == "root"
    assert routed(router, "app.test", b"/") == "root"


def test_prefixes_match_whole_segments_only():
    router = Router([resource("api", "app.test", "/api")])
    assert routed(router, "app.test", b"/api") == "api"
    assert routed(router, "app.test", b"/api/x") == "api"
    assert routed(router, "app.test", b"/api;x/y") == "api"
    assert routed(router, "app.test", b"/apix") is None
    assert routed(router, "app.test", b"/api-x/y") is None
    assert routed(router, "app.test", b"/ap") is None
    assert routed(router, "app.test", b"/") is None
    assert routed(router, "app.test", b"/api%2Fx") is None  # an encoded slash is not a separator


def test_prefix_spellings_are_normalized():
    router = Router([resource("api", "app.test", "/%61pi;v=1//")])
    assert routed(router, "app.test", b"/api/x") == "api"
    assert routed(router, "app.test", b"/apix") is None


def test_dot_segments_cannot_escape_a_prefix():
    router = Router([resource("public", "app.test", "/public"), resource("admin", "app.test", "/admin")])
    for raw in (b"/public/../admin", b"/public/..;/admin", b"/public/%2e%2e/admin", b"/..;/admin"):
        assert routed(router, "app.test", raw) == "admin"
    assert routed(router, "app.test", b"/public/..%2Fadmin") == "public"  # one segment "..%2Fadmin"


def test_disabled_resources_are_ignored():
    router = Router(
        [
            resource("off", "app.test", "/api", enabled=False),
            resource("root", "app.test", "/"),
            resource("wild-off", "*.other.test", enabled=False),
        ]
    )
    assert routed(router, "app.test", b"/api/x") == "root"
    assert not router.knows_host("a.other.test")
    assert len(router) == 1


def test_hostnames_of_resources_are_case_and_dot_insensitive():
    router = Router([resource("r", "App.Test."), resource("w", "*.Wild.Test")])
    assert routed(router, "app.test", b"/") == "r"
    assert routed(router, "x.wild.test", b"/") == "w"


def test_an_unknown_host_routes_nowhere():
    router = Router([resource("r", "app.test")])
    assert router.route("other.test", normalize_target(b"/")) is None
    assert not router.knows_host("other.test")


def test_a_route_carries_the_host_and_target():
    router = Router([resource("r", "app.test")])
    target = normalize_target(b"/a;x/b?q")
    route = router.route("app.test", target)
    assert route is not None and route.host == "app.test" and route.target is target


def test_the_first_of_two_identical_prefixes_wins():
    router = Router([resource("first", "app.test", "/api"), resource("second", "app.test", "/api/")])
    assert routed(router, "app.test", b"/api/x") == "first"


# ---------------------------------------------------------------- Router: properties

HOSTNAMES = ["app.test", "*.app.test", "b.app.test", "*.b.app.test", "other.test"]
REQUEST_HOSTS = [
    "app.test",
    "b.app.test",
    "c.app.test",
    "x.b.app.test",
    "y.x.b.app.test",
    "other.test",
    "n.test",
]
PREFIX_SEGMENTS = ["a", "b", "api", "apix", "%2F"]


@st.composite
def resource_sets(draw):
    specs = draw(
        st.lists(
            st.tuples(
                st.sampled_from(HOSTNAMES),
                st.lists(st.sampled_from(PREFIX_SEGMENTS), max_size=3),
                st.booleans(),  # trailing slash in the prefix
                st.booleans(),  # enabled
                st.booleans(),  # hostname in upper case
            ),
            min_size=1,
            max_size=8,
        )
    )
    resources: list[tuple[HTTPResource, list[str]]] = []
    for i, (hostname, segments, trailing, enabled, upper) in enumerate(specs):
        spelled = draw(spellings(segments, trailing)).decode("ascii")
        name = hostname.upper() if upper else hostname
        resources.append((resource(f"r{i}", name, spelled, enabled), segments))
    return resources


def reference_entries(resources: list[tuple[HTTPResource, list[str]]], host: str) -> list:
    """The exact host's enabled resources, else the wildcard's one label up."""
    enabled = [(r, prefix) for r, prefix in resources if r.enabled]

    def of(name: str):
        return [(r, prefix) for r, prefix in enabled if r.hostname.lower() == name]

    entries = of(host)
    if not entries and "." in host:
        entries = of("*." + host.split(".", 1)[1])
    return entries


def reference(resources: list[tuple[HTTPResource, list[str]]], host: str, segments: list[str]) -> str | None:
    """Brute force: among the host's resources, the longest prefix that is a segment-prefix
    of the path (the first of equals)."""
    entries = reference_entries(resources, host)
    matching = [(r, prefix) for r, prefix in entries if segments[: len(prefix)] == prefix]
    if not matching:
        return None
    longest = max(len(prefix) for _, prefix in matching)
    return next(r.id for r, prefix in matching if len(prefix) == longest)


request_segments = st.lists(st.sampled_from([*PREFIX_SEGMENTS, "c"]), max_size=4)


@st.composite
def requests(draw, resources: list[tuple[HTTPResource, list[str]]]) -> tuple[str, list[str]]:
    """A host and a path, most often near a resource: its host (or one under its wildcard)
    and its prefix, extended, cut short or with its last segment grown ("/api" -> "/apix")."""
    if not resources or draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(REQUEST_HOSTS)), draw(request_segments)
    chosen, prefix = draw(st.sampled_from(resources))
    host = chosen.hostname.lower()
    if host.startswith("*."):
        host = draw(st.sampled_from(["c", "x"])) + host[1:]
    how = draw(st.sampled_from(["same", "extend", "cut", "grow"]))
    if how == "extend":
        segments = prefix + draw(request_segments)
    elif how == "cut":
        segments = prefix[: draw(st.integers(0, len(prefix)))]
    elif how == "grow" and prefix:
        segments = [*prefix[:-1], prefix[-1] + "x", *draw(request_segments)]
    else:
        segments = list(prefix)
    return host, segments


@SETTINGS
@given(st.data(), resource_sets(), st.booleans())
def test_the_router_agrees_with_a_brute_force_reference(data, resources, trailing):
    router = Router([r for r, _ in resources])
    host, segments = data.draw(requests(resources))
    raw = data.draw(spellings(segments, trailing))
    assert routed(router, host, raw) == reference(resources, host, segments)
    assert router.knows_host(host) == bool(reference_entries(resources, host))
    assert len(router) == sum(r.enabled for r, _ in resources)


@SETTINGS
@given(st.data(), resource_sets(), st.booleans())
def test_two_spellings_of_one_path_route_to_the_same_resource(data, resources, trailing):
    """The "one routing decision" guarantee: access rules keyed on a path cannot be dodged
    by spelling it differently."""
    router = Router([r for r, _ in resources])
    host, segments = data.draw(requests(resources))
    first = data.draw(spellings(segments, trailing))
    second = data.draw(spellings(segments, data.draw(st.booleans())))
    a, b = normalize_target(first), normalize_target(second)
    assert a.match_path.rstrip("/") == b.match_path.rstrip("/")
    assert routed(router, host, first) == routed(router, host, second)
