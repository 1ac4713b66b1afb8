"""kokoa.auth._redirects: the one check of a return URL (rd).

Examples of every rule, properties (whatever the input, the answer is a ReturnTo or BadReturnURL, and
a ReturnTo's URL leads, as a browser reads it, to a known host or the login host only), and the corpus
of attack payloads (redirect_payloads.txt) through the function and through the real router.
"""

from __future__ import annotations

import pytest
from ada_url import URL
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from redirect_corpus import LOGIN_HOST, allowed_host, known_host, load, unsafe_reason

from kokoa.auth._redirects import (
    MAX_LENGTH,
    BadReturnURL,
    ReturnTo,
    check_return_url,
    is_valid_dns_label,
    is_valid_dns_name,
)
from kokoa.gateway._model import HTTPResource
from kokoa.http._router import Router

pytestmark = pytest.mark.sans_io

PORT = 8443
SETTINGS = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(raw: str | None, known=known_host) -> ReturnTo:
    return check_return_url(raw, known_host=known, login_host=LOGIN_HOST)


def refused(raw: str, known=known_host) -> str:
    with pytest.raises(BadReturnURL) as caught:
        check(raw, known)
    return caught.value.message


def router() -> Router:
    return Router(
        [
            HTTPResource(id="app", name="app", hostname="app.localhost"),
            HTTPResource(id="wild", name="wild", hostname="*.wild.localhost"),
        ]
    )


# ---------------------------------------------------------------- nothing, and paths on the login host


@pytest.mark.parametrize("raw", [None, ""])
def test_nothing_is_the_login_hosts_root(raw):
    assert check(raw) == ReturnTo("/", None, "", "/")


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ("/", "/"),
        ("/account", "/account"),
        ("/account?x=1", "/account?x=1"),
        ("/account?x=1#frag", "/account?x=1"),  # the fragment is dropped
        ("/account#", "/account"),
        ("/a/../b", "/b"),  # re-serialized, not echoed
        ("/a/./b", "/a/b"),
        ("/%2e%2e/b", "/b"),
        ("/\u00e9?\u00e9", "/%C3%A9?%C3%A9"),
        ("/a b"[:2] + "b", "/ab"),
        ("/%2F/evil.example", "/%2F/evil.example"),  # one segment "%2F": a path, not a host
        ("/%5Cevil.example", "/%5Cevil.example"),
        ("/?//evil.example", "/?//evil.example"),
        ("/?\\evil.example", "/?\\evil.example"),  # a backslash in the query is only a character
        ("/x?a=<b>", "/x?a=%3Cb%3E"),
    ],
)
def test_a_path_on_the_login_host_is_re_serialized(raw, path):
    assert check(raw) == ReturnTo(path, None, "", path)


@pytest.mark.parametrize(
    "raw",
    [
        "//evil.example",
        "//evil.example/",
        "///evil.example",
        "/\\evil.example",
        "/x\\y",  # a backslash before the query, even inside the path
        "/.//evil.example",  # WHATWG drops ".": the path would be "//evil.example"
        "/a/..//evil.example",
        "/%2e//evil.example",
        "/..//evil.example",
        "/\tevil.example",
        "/\n/evil.example",
        "/\r/evil.example",
        "/\x00",
        "/ /evil.example",
        "/\x7f",
        " /x",
        "account",
        "?x=1",
        "#x",
        "./x",
        "../x",
        "evil.example",
        "\\\\evil.example",
        "\\/evil.example",
    ],
)
def test_a_path_that_is_not_one_path_on_the_login_host_is_refused(raw):
    refused(raw)


# ---------------------------------------------------------------- absolute URLs


@pytest.mark.parametrize(
    ("raw", "url", "host", "netloc", "path"),
    [
        (
            f"https://app.localhost:{PORT}/some/path?x=1",
            f"https://app.localhost:{PORT}/some/path?x=1",
            "app.localhost",
            f"app.localhost:{PORT}",
            "/some/path?x=1",
        ),
        ("https://app.localhost", "https://app.localhost/", "app.localhost", "app.localhost", "/"),
        ("https://app.localhost:443/x", "https://app.localhost/x", "app.localhost", "app.localhost", "/x"),
        ("https://app.localhost:00443/x", "https://app.localhost/x", "app.localhost", "app.localhost", "/x"),
        ("HTTPS://APP.localhost/A#f", "https://app.localhost/A", "app.localhost", "app.localhost", "/A"),
        (
            "https://app.localhost/a/../b?c#d",
            "https://app.localhost/b?c",
            "app.localhost",
            "app.localhost",
            "/b?c",
        ),
        (
            "https://app.localhost/x#@evil.example",
            "https://app.localhost/x",
            "app.localhost",
            "app.localhost",
            "/x",
        ),
        (
            "https://app.localhost/x?@evil.example",
            "https://app.localhost/x?@evil.example",
            "app.localhost",
            "app.localhost",
            "/x?@evil.example",
        ),
        (
            "https://app.localhost/search?q=a\\b",
            "https://app.localhost/search?q=a\\b",
            "app.localhost",
            "app.localhost",
            "/search?q=a\\b",
        ),
        (
            'https://app.localhost/q?a="<>"',
            "https://app.localhost/q?a=%22%3C%3E%22",
            "app.localhost",
            "app.localhost",
            "/q?a=%22%3C%3E%22",
        ),
        (
            "https://app.localhost/\u00e9",
            "https://app.localhost/%C3%A9",
            "app.localhost",
            "app.localhost",
            "/%C3%A9",
        ),
        (
            "https://a.wild.localhost/",
            "https://a.wild.localhost/",
            "a.wild.localhost",
            "a.wild.localhost",
            "/",
        ),
        (
            "https://b\u00fccher.wild.localhost:8443/",
            "https://xn--bcher-kva.wild.localhost:8443/",
            "xn--bcher-kva.wild.localhost",
            "xn--bcher-kva.wild.localhost:8443",
            "/",
        ),
        (
            "https://XN--BCHER-KVA.wild.localhost/",
            "https://xn--bcher-kva.wild.localhost/",
            "xn--bcher-kva.wild.localhost",
            "xn--bcher-kva.wild.localhost",
            "/",
        ),
    ],
)
def test_an_https_url_on_a_known_host_is_re_serialized(raw, url, host, netloc, path):
    assert check(raw) == ReturnTo(url, host, netloc, path)


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ("https://login.localhost/account", "/account"),
        (f"https://login.localhost:{PORT}/account?x#y", "/account?x"),
        ("https://LOGIN.localhost", "/"),
    ],
)
def test_an_https_url_on_the_login_host_is_a_path_there(raw, path):
    assert check(raw, known=lambda host: False) == ReturnTo(path, None, "", path)


def test_known_host_is_asked_about_the_lowercase_idna_host_only():
    asked = []

    def known(host):
        asked.append(host)
        return True

    with pytest.raises(BadReturnURL):
        check("https://B\u00fcCHER.example:8443/x", known)  # refused before anyone is asked
    with pytest.raises(BadReturnURL):
        check("https://evil.example@app.example/", known)
    check("https://APP.example:8443/x", known)
    check("https://b\u00fccher.example/x", known)
    assert asked == ["app.example", "xn--bcher-kva.example"]


def test_an_unknown_host_is_refused():
    assert refused("https://evil.example/") == (
        "The address to return to after signing in is not one of this gateway's resources."
    )
    refused("https://app.localhost/", known=lambda host: False)


@pytest.mark.parametrize(
    "raw",
    [
        "http://app.localhost/",
        "HTTP://app.localhost/",
        "javascript:alert(1)",
        "data:text/html,hi",
        "ftp://app.localhost/",
        "wss://app.localhost/",
        "https:app.localhost",
        "https:/app.localhost",
        "https:\\\\app.localhost",
        "https:///app.localhost",
        "https://",
        "https:",
        "app.localhost/x",
    ],
)
def test_anything_but_https_colon_slash_slash_is_refused(raw):
    refused(raw)


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        ("https://:@evil.example\\@app.localhost/", "backslash"),
        ("https://evil.example\\.app.localhost/", "backslash"),
        ("https://app.localhost\\@evil.example/", "backslash"),
        ("https://app.localhost/\\evil.example", "backslash"),
        ("https://evil%2eorg\\.wild.localhost/", "backslash"),
        ("https://evil.example@app.localhost/", "user name"),
        ("https://app.localhost@evil.example/", "user name"),
        ("https://app.localhost:443@evil.example/", "user name"),
        ("https://app.localhost:@evil.example", "user name"),
        ("https://@app.localhost/", "user name"),
        ("https://:@app.localhost/", "user name"),
        ("https://app.localhost\t@evil.example/", "control"),
        ("ht\ttps://app.localhost/", "control"),
        ("https://app.loc\nalhost/", "control"),
        ("https://app.localhost/\r", "control"),
        (" https://app.localhost/", "control"),
        ("https://app.localhost/ x", "control"),
        ("https://app.localhost/\x00", "control"),
        ("https://app.localhost/?\x7f", "control"),
        ("https://evil%2eorg.wild.localhost/", "host"),
        ("https://app%2elocalhost/", "host"),
        ("https://%61pp.localhost/", "host"),
        ("https://evil.example%40app.localhost/", "host"),
        ("https://[::1]/", "host"),
        ("https://[app.localhost]/", "host"),
        ("https://127.0.0.1/", "host"),
        ("https://0x7f.1/", "host"),
        ("https://2130706433/", "host"),
        ("https://app.localhost./", "host"),
        ("https://app..localhost/", "host"),
        ("https://.app.localhost/", "host"),
        ("https://a_b.wild.localhost/", "host"),
        ("https://-a.wild.localhost/", "host"),
        ("https://" + "a" * 64 + ".wild.localhost/", "host"),
        ("https://" + "a." * 127 + "localhost/", "host"),
        ("https://a;b.wild.localhost/", "host"),
        ("https://evil\u3002example/", "host"),  # full-width dots
        ("https://evil\uff0eexample/", "host"),
        ("https://evil\uff61example/", "host"),
        ("https://a\u3002wild.localhost/", "host"),
        ("https://\uff45vil.example/", "host"),  # full-width letters
        ("https://\uff41pp.localhost/", "host"),
        ("https://ap\u00adp.localhost/", "host"),  # ignored by IDNA: one reading only
        ("https://app\u200b.localhost/", "host"),
        ("https://\u0430pp.localhost/", "unknown"),  # a Cyrillic "a": a valid IDN, not a known host
        ("https://B\u00dcCHER.wild.localhost/", "host"),  # upper case outside ASCII is mapped
        ("https://xn--a.wild.localhost/", "host"),  # punycode that decodes to nothing valid
        ("https://xn--ls8h.wild.localhost/", "host"),  # an emoji: UTS 46 yes, IDNA 2008 no
        ("https://app.localhost:/", "port"),
        ("https://app.localhost:0/", "port"),
        ("https://app.localhost:65536/", "port"),
        ("https://app.localhost:+443/", "port"),
        ("https://app.localhost:0x1bb/", "port"),
        ("https://app.localhost:443:443/", "port"),
        ("https://app.localhost:\uff14\uff14\uff13/", "port"),
        ("https://app.localhost:\u0664\u0664\u0663/", "port"),
        ("https://app.localhost//evil.example", "path"),
        ("https://app.localhost/.//evil.example", "path"),
        ("https://app.localhost/" + "a" * MAX_LENGTH, "length"),
    ],
)
def test_each_rule_refuses(raw, rule):
    if rule == "unknown":
        assert "not one of" in refused(raw)
        assert check(raw, known=lambda host: True).host.startswith("xn--")
        return
    message = refused(raw, known=lambda host: True)
    words = {
        "backslash": "backslash",
        "user name": "user name",
        "control": "control characters",
        "host": "valid host",
        "port": "port",
        "path": "one /",
        "length": "too long",
    }
    assert words[rule] in message, message


def test_a_refusal_is_a_value_error_with_a_sentence():
    with pytest.raises(ValueError) as caught:
        check("https://evil.example/")
    assert isinstance(caught.value, BadReturnURL)
    assert caught.value.message.endswith(".") and str(caught.value) == caught.value.message


# ---------------------------------------------------------------- DNS names


@pytest.mark.parametrize(
    "name", ["a", "app.localhost", "xn--bcher-kva.example", "a-b.c", "0a.example", "a" * 63 + ".b", "1.2.3.a"]
)
def test_valid_dns_names(name):
    assert is_valid_dns_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "a.",
        ".a",
        "a..b",
        "-a.b",
        "a-.b",
        "A.b",
        "a_b.c",
        "a b.c",
        "a%2eb.c",
        "a\\.b",
        "a" * 64 + ".b",
        ("a" * 63 + ".") * 4,
        ".".join(["a" * 63] * 4),  # 255 characters
        "\u00e9.example",
        "1.2.3.4",
        "127.1",
        "[::1]",
        "*.example.com",
    ],
)
def test_invalid_dns_names(name):
    assert not is_valid_dns_name(name)


def test_a_dns_name_is_at_most_253_characters():
    name = ".".join(["a" * 63] * 3 + ["a" * 61])
    assert len(name) == 253 and is_valid_dns_name(name)
    assert not is_valid_dns_name(name + "a")


@pytest.mark.parametrize(
    ("label", "valid"), [("a", True), ("a-1", True), ("-a", False), ("", False), ("a.b", False)]
)
def test_dns_labels(label, valid):
    assert is_valid_dns_label(label) is valid


# ---------------------------------------------------------------- properties

FRAGMENTS = [
    "https:",
    "https://",
    "http:",
    "//",
    "/",
    "\\",
    "@",
    ":",
    ":443",
    ":8443",
    "app.localhost",
    "login.localhost",
    "evil.example",
    "a.wild.localhost",
    ".wild.localhost",
    "evil%2eorg",
    ".",
    "..",
    "%2e",
    "%40",
    "%5C",
    "%2F",
    "?",
    "#",
    "\t",
    "\n",
    " ",
    "\x00",
    "\u3002",
    "\uff0e",
    "\uff45",
    "\u00ad",
    "\u00fc",
    "[",
    "]",
    "::1",
    "xn--",
    ";",
    "%",
    "0x7f",
    "A",
    "-",
    "*",
]
fragment_urls = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=3), max_size=14).map("".join)


@st.composite
def near_misses(draw) -> str:
    """A URL of scheme, userinfo, host, port and path, most parts good, some tricky, and now and
    then a fragment slipped in anywhere: many are accepted, and those near them are not."""
    part = st.sampled_from
    scheme = draw(
        part(["https://"] * 20 + ["HTTPS://", "https:", "https:/", "https:\\\\", "http://", "//", ""])
    )
    userinfo = draw(part([""] * 30 + ["evil.example@", ":@", "evil.example\\@", "app.localhost:443@", "@"]))
    host = draw(
        part(
            [
                "app.localhost",
                "APP.localhost",
                "a.wild.localhost",
                "login.localhost",
                "b\u00fccher.wild.localhost",
            ]
            * 6
            + ["evil.example", "a.b.wild.localhost", "evil%2eorg.wild.localhost", "evil.org\\.wild.localhost"]
            + ["app.localhost.", "app\u3002localhost", "\uff41pp.localhost", "[::1]", "127.0.0.1"]
        )
    )
    port = draw(part(["", "", "", ":443", ":8443", ":8443", ":", ":0", ":x", ":65536"]))
    path = draw(
        part(["", "/", "/", "/x", "/x", "/a/../b", "//evil.example", "/.//evil.example", "/\\evil.example"])
    )
    query = draw(part(["", "", "?q=1", "?@evil.example", "?\\", "#x", "#@evil.example"]))
    url = scheme + userinfo + host + port + path + query
    if draw(st.integers(0, 3)) == 0:
        at = draw(st.integers(0, len(url)))
        url = url[:at] + draw(st.sampled_from(FRAGMENTS)) + url[at:]
    return url


def assert_safe(raw: str, result: ReturnTo) -> None:
    """A ReturnTo as documented: safe, consistent, and the same when checked again."""
    assert unsafe_reason(result.url) is None, (raw, result)
    assert result.url.isascii()
    assert result.path.startswith("/") and not result.path.startswith("//")
    if result.host is None:
        assert result.url == result.path and result.netloc == ""
    else:
        assert known_host(result.host)
        assert result.url == f"https://{result.netloc}{result.path}"
        parsed = URL(result.url)
        assert parsed.hostname == result.host and parsed.host == result.netloc
        assert parsed.hash == "" and "#" not in result.url
    assert check(result.url) == result  # re-serialized once and for all


@SETTINGS
@given(st.text(max_size=60))
@example("https://:@evil.example\\@app.localhost/")
@example("https://app.localhost\u3002evil.example/")
def test_any_text_is_a_safe_return_to_or_refused(raw):
    try:
        result = check(raw)
    except BadReturnURL as e:
        assert e.message
        return
    assert_safe(raw, result)


@SETTINGS
@given(fragment_urls | near_misses())
@example("https://evil%2eorg\\.wild.localhost/")
@example("/.//evil.example")
def test_urls_made_of_tricky_parts_are_safe_or_refused(raw):
    try:
        result = check(raw)
    except BadReturnURL:
        event("refused")
        return
    event("accepted " + ("on the login host" if result.host is None else "on a resource host"))
    assert_safe(raw, result)


@SETTINGS
@given(
    st.sampled_from(["app.localhost", "a.wild.localhost", "zz-9.wild.localhost"]),
    st.sampled_from(["", ":443", ":8443", ":1"]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="\\#?"), max_size=20),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"), max_size=20),
)
def test_an_ordinary_url_on_a_known_host_is_accepted(host, port, path, query):
    raw = f"https://{host}{port}/{path.lstrip('/')}" + (f"?{query}" if query else "")
    result = check(raw)
    assert result.host == host
    assert_safe(raw, result)


# ---------------------------------------------------------------- the corpus

PAYLOADS = load(PORT)


def test_the_corpus_is_large_and_its_escapes_are_read():
    assert len(PAYLOADS) >= 300
    assert len(set(PAYLOADS)) == len(PAYLOADS)
    assert "https://:@evil.example\\@app.localhost/" in PAYLOADS
    assert "ht\ttps://evil.example/" in PAYLOADS
    assert f"https://app.localhost:{PORT}/" in PAYLOADS
    assert not any("{U+" in p or "{PORT}" in p for p in PAYLOADS)


@pytest.mark.parametrize("known", [known_host, router().knows_host], ids=["reference", "router"])
def test_every_corpus_payload_is_refused_or_leads_to_an_allowed_host(known):
    accepted = []
    for raw in PAYLOADS:
        try:
            result = check(raw, known)
        except BadReturnURL:
            continue
        accepted.append(raw)
        reason = unsafe_reason(result.url)
        assert reason is None, f"{raw!r} -> {reason}"
        parsed = URL(result.url, f"https://{LOGIN_HOST}/")
        assert parsed.protocol == "https:" and not parsed.username and not parsed.password
        assert allowed_host(parsed.hostname)
        assert not result.path.startswith("//")
    # the corpus holds real return URLs too: they must get through
    for raw in [
        f"https://app.localhost:{PORT}/some/path?x=1",
        "https://a.wild.localhost/",
        "/account?x=1#frag",
        f"https://login.localhost:{PORT}/account",
    ]:
        assert raw in accepted
    assert 20 <= len(accepted) <= len(PAYLOADS) // 5, len(accepted)  # nearly all are attacks
