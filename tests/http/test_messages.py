"""kokoa.http._messages in isolation: the strict request checks and the heads Kokoa writes.

The property that matters most: whatever headers a client sends, in whatever case or
``_``/``-`` spelling, none of the headers only the gateway may set reaches the upstream
from the client.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kokoa.http._messages import (
    GATEWAY_SET,
    HOP_BY_HOP,
    BadRequest,
    RequestHead,
    check_request,
    client_response_head,
    connection_listed,
    cookie_value,
    format_for,
    switching_protocols_head,
    upstream_request_head,
)
from kokoa.http._router import Target

pytestmark = pytest.mark.sans_io

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HOST = (b"Host", b"app.test")


def check(
    headers: list[tuple[bytes, bytes]] | None = None,
    method: bytes = b"GET",
    target: bytes = b"/",
    version: str = "1.1",
    keep_alive: bool = True,
) -> RequestHead:
    return check_request(method, target, version, [HOST] if headers is None else headers, keep_alive)


def refused(status: int = 400, **kw) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        check(**kw)
    assert info.value.status == status
    assert info.value.detail == str(info.value)
    return info.value


def parse_head(raw: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """(start line, [(name, value)]) of a head Kokoa wrote."""
    assert raw.endswith(b"\r\n\r\n")
    lines = raw[:-4].split(b"\r\n")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b": ")
        assert sep and name and b":" not in name and b"\n" not in line, line
        headers.append((name, value))
    return lines[0], headers


def names(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    return [name.lower() for name, _ in headers]


def values(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [v for n, v in headers if n.lower() == name]


def forwarded(head: RequestHead, client: str = "192.0.2.7", scheme: str = "https", **kw):
    return parse_head(upstream_request_head(head, client, scheme, **kw))


# ---------------------------------------------------------------- check_request: what passes


def test_a_plain_request():
    head = check([HOST, (b"Accept", b"text/html"), (b"Cookie", b"a=1"), (b"Cookie", b"b=2")])
    assert head.host == "app.test" and head.host_header == b"app.test"
    assert head.target == Target("/", "/", "")
    assert head.content_length is None and not head.chunked and not head.has_body
    assert head.upgrade is None and head.keep_alive
    assert head.accept == b"text/html"
    assert head.cookie_headers == [b"a=1", b"b=2"]


def test_header_names_are_case_insensitive():
    head = check([(b"hOST", b"App.Test:8080"), (b"content-LENGTH", b"3")], method=b"POST")
    assert head.host == "app.test" and head.host_header == b"App.Test:8080"
    assert head.content_length == 3 and head.has_body


@pytest.mark.parametrize(("value", "length"), [(b"0", 0), (b"7", 7), (b"007", 7), (b"9" * 18, int("9" * 18))])
def test_content_length(value, length):
    head = check([HOST, (b"Content-Length", value)], method=b"POST")
    assert head.content_length == length and head.has_body == bool(length)


@pytest.mark.parametrize("value", [b"chunked", b"Chunked", b" CHUNKED ", b"chunked\t"])
def test_chunked(value):
    head = check([HOST, (b"Transfer-Encoding", value)], method=b"POST")
    assert head.chunked and head.has_body and head.content_length is None


def test_the_target_is_normalized():
    head = check(target=b"//a/./b/../%63;x?q=%2f")
    assert head.target == Target("/a/c;x", "/a/c", "?q=%2f")


@pytest.mark.parametrize(
    ("target", "path"),
    [
        (b"http://app.test/a?b", "/a?b"),
        (b"HTTP://APP.TEST/a", "/a"),
        (b"https://app.test:8443/a/../b", "/b"),
        (b"http://app.test", "/"),
        (b"http://app.test.:80/x", "/x"),
    ],
)
def test_an_absolute_form_target_for_the_same_host(target, path):
    assert check(target=target).target.forwarded == path


def test_an_absolute_form_target_with_a_query_and_no_path():
    assert check(target=b"http://app.test?x=1").target.forwarded == "/?x=1"


def test_options_star():
    head = check(method=b"OPTIONS", target=b"*")
    assert head.target == Target("*", "/", "")
    assert head.target.forwarded == "*"


def test_an_upgrade_request():
    head = check([HOST, (b"Connection", b"keep-alive, Upgrade"), (b"Upgrade", b"websocket")])
    assert head.upgrade == b"websocket"


@pytest.mark.parametrize(
    "headers",
    [
        [HOST, (b"Upgrade", b"websocket")],  # no "upgrade" token in Connection
        [HOST, (b"Connection", b"keep-alive"), (b"Upgrade", b"websocket")],
        [HOST, (b"Connection", b"upgrade")],  # no Upgrade header
    ],
)
def test_not_an_upgrade_request(headers):
    assert check(headers).upgrade is None


def test_keep_alive_is_as_given():
    assert not check(keep_alive=False).keep_alive


# ---------------------------------------------------------------- check_request: what is refused


def test_both_content_length_and_transfer_encoding():
    refused(headers=[HOST, (b"Content-Length", b"3"), (b"Transfer-Encoding", b"chunked")], method=b"POST")
    refused(headers=[HOST, (b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"0")], method=b"POST")


@pytest.mark.parametrize("second", [b"3", b"4"])
def test_duplicate_content_length(second):
    refused(headers=[HOST, (b"Content-Length", b"3"), (b"content-length", second)], method=b"POST")


@pytest.mark.parametrize(
    "value", [b"", b" ", b"+3", b"-1", b"0x3", b"1 2", b"3,3", b"3.0", b"1e3", b"\xd9\xa3", b"9" * 19]
)
def test_malformed_content_length(value):
    refused(headers=[HOST, (b"Content-Length", value)], method=b"POST")


@pytest.mark.parametrize(
    "value", [b"gzip", b"gzip, chunked", b"chunked, gzip", b"chunked, chunked", b"identity", b"", b"xchunked"]
)
def test_transfer_encoding_other_than_exactly_chunked(value):
    refused(headers=[HOST, (b"Transfer-Encoding", value)], method=b"POST")


def test_two_transfer_encoding_headers():
    refused(headers=[HOST, (b"Transfer-Encoding", b"chunked"), (b"Transfer-Encoding", b"chunked")])


def test_transfer_encoding_in_http_1_0():
    refused(headers=[HOST, (b"Transfer-Encoding", b"chunked")], method=b"POST", version="1.0")


def test_a_missing_host():
    assert "missing" in str(refused(headers=[]))
    assert "missing" in str(refused(headers=[(b"X-Host", b"app.test")]))


def test_a_duplicate_host():
    refused(headers=[HOST, HOST])
    refused(headers=[HOST, (b"host", b"other.test")])


@pytest.mark.parametrize("value", [b"", b"a b", b"app.test:x", b"app.test/x", b"\xc3\xa9.test", b"[::1]x"])
def test_a_malformed_host(value):
    refused(headers=[(b"Host", value)])


@pytest.mark.parametrize(
    "target",
    [
        b"http://other.test/",
        b"http://app.test.other/",
        b"http://b.app.test/",
        b"https://user@app.test/",
        b"http://user:pw@app.test/",
        b"http://other.test@app.test/",
        b"http:///a",
        b"http://\xc3\xa9/",
        b"ftp://app.test/",
        b"app.test/a",
        b"http://app.test/a#b",
    ],
)
def test_an_absolute_form_target_that_does_not_match(target):
    refused(target=target)


def test_connect_is_not_allowed():
    refused(405, method=b"CONNECT", target=b"app.test:443")
    refused(405, method=b"CONNECT", target=b"app.test:443", headers=[])  # before anything else


@pytest.mark.parametrize("version", ["0.9", "2.0", "1.2", "2", ""])
def test_versions_other_than_1_0_and_1_1(version):
    refused(505, version=version)


@pytest.mark.parametrize("method", [b"GET", b"HEAD", b"POST", b"options"])
def test_star_is_for_options_only(method):
    refused(method=method, target=b"*")


def test_a_bad_path_is_refused():
    refused(target=b"/a%zz")
    refused(target=b"/a b")


# ---------------------------------------------------------------- upstream_request_head


def test_the_forwarded_head():
    head = check([HOST, (b"Accept", b"*/*"), (b"X-Custom", b"1")], target=b"/a/../b?q=1")
    line, headers = forwarded(head)
    assert line == b"GET /b?q=1 HTTP/1.1"
    assert headers == [
        (b"Host", b"app.test"),
        (b"Accept", b"*/*"),
        (b"X-Custom", b"1"),
        (b"X-Forwarded-For", b"192.0.2.7"),
        (b"X-Forwarded-Proto", b"https"),
        (b"X-Forwarded-Host", b"app.test"),
        (b"Forwarded", b'for=192.0.2.7;proto=https;host="app.test"'),
    ]


def test_http_1_0_is_forwarded_as_1_1():
    line, _ = forwarded(check(version="1.0"))
    assert line == b"GET / HTTP/1.1"


def test_an_absolute_form_target_is_forwarded_in_origin_form():
    line, _ = forwarded(check(target=b"http://app.test:80/x/./y"))
    assert line == b"GET /x/y HTTP/1.1"


def test_x_forwarded_host_is_the_host_header_as_sent():
    head = check([(b"Host", b"App.Test:8443")])
    _, headers = forwarded(head)
    assert values(headers, b"x-forwarded-host") == [b"App.Test:8443"]
    assert values(headers, b"forwarded") == [b'for=192.0.2.7;proto=https;host="App.Test:8443"']


def test_ipv6_clients_in_forwarded_are_quoted():
    _, headers = forwarded(check(), client="2001:db8::1", scheme="http")
    assert values(headers, b"x-forwarded-for") == [b"2001:db8::1"]
    assert values(headers, b"forwarded") == [b'for="[2001:db8::1]";proto=http;host="app.test"']
    assert format_for("10.0.0.1") == "10.0.0.1"
    assert format_for("::1") == '"[::1]"'


def test_hop_by_hop_headers_are_removed():
    head = check(
        [
            HOST,
            (b"Connection", b"keep-alive"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Proxy-Connection", b"keep-alive"),
            (b"Proxy-Authorization", b"Basic eA=="),
            (b"Proxy-Authenticate", b"Basic"),
            (b"TE", b"trailers"),
            (b"Trailer", b"X-Sum"),
            (b"Upgrade", b"websocket"),  # not an upgrade request: no "upgrade" in Connection
            (b"X-Kept", b"1"),
        ]
    )
    _, headers = forwarded(head)
    assert not set(names(headers)) & HOP_BY_HOP
    assert values(headers, b"x-kept") == [b"1"]


def test_headers_listed_in_connection_are_removed():
    head = check(
        [
            HOST,
            (b"Connection", b"X-Secret, , x-other "),
            (b"Connection", b"X-Third"),
            (b"X-Secret", b"1"),
            (b"x-secret", b"2"),
            (b"X-Other", b"3"),
            (b"X-Third", b"4"),
            (b"X-Kept", b"5"),
        ]
    )
    _, headers = forwarded(head)
    assert [v for n, v in headers if n.lower().startswith(b"x-") and not n.lower().startswith(b"x-forw")] == [
        b"5"
    ]
    assert connection_listed(head.headers) == {b"x-secret", b"x-other", b"x-third"}


@pytest.mark.parametrize(
    "name",
    [
        b"X-Forwarded-For",
        b"x-forwarded-for",
        b"X_Forwarded_For",
        b"x_forwarded-for",
        b"X-FORWARDED-PROTO",
        b"X_Forwarded_Host",
        b"X-Forwarded-Port",
        b"x_forwarded_prefix",
        b"x-real-ip",
        b"X_Real_IP",
        b"Forwarded",
        b"FORWARDED",
        b"Remote-User",
        b"Remote_User",
        b"remote_email",
        b"REMOTE-GROUPS",
    ],
)
def test_gateway_set_headers_from_the_client_are_removed(name):
    head = check([HOST, (name, b"evil"), (b"X-Kept", b"1")])
    _, headers = forwarded(head)
    assert all(value != b"evil" for _, value in headers)
    assert b"evil" not in upstream_request_head(head, "192.0.2.7", "https")


def test_extra_headers_are_added():
    head = check([HOST, (b"Remote-User", b"evil")])
    _, headers = forwarded(head, extra=[(b"Remote-User", b"alice")])
    assert values(headers, b"remote-user") == [b"alice"]


def test_chunked_framing_is_kept():
    head = check([HOST, (b"Transfer-Encoding", b" Chunked "), (b"X-A", b"1")], method=b"POST")
    _, headers = forwarded(head)
    assert values(headers, b"transfer-encoding") == [b"chunked"]
    assert b"content-length" not in names(headers)


def test_content_length_framing_is_kept():
    head = check([HOST, (b"Content-Length", b"12")], method=b"POST")
    _, headers = forwarded(head)
    assert values(headers, b"content-length") == [b"12"]
    assert b"transfer-encoding" not in names(headers)


@pytest.mark.parametrize(
    ("listed", "header"),
    [
        (b"content-length", (b"Content-Length", b"5")),
        (b"host", HOST),
        (b"transfer-encoding", (b"Transfer-Encoding", b"chunked")),
    ],
)
def test_connection_cannot_remove_what_frames_or_routes_the_request(listed, header):
    """Either the request is refused or the upstream gets the framing and Host it was routed by."""
    headers = [HOST] if header == HOST else [HOST, header]
    try:
        head = check([*headers, (b"Connection", b"keep-alive, " + listed)], method=b"POST")
    except BadRequest:
        return
    _, sent = forwarded(head)
    if head.content_length is not None:
        assert values(sent, b"content-length") == [b"%d" % head.content_length]
    if head.chunked:
        assert values(sent, b"transfer-encoding") == [b"chunked"]
    assert values(sent, b"host") == [head.host_header]


def test_upgrade_headers_only_for_upgrade_requests():
    head = check(
        [
            HOST,
            (b"Connection", b"Upgrade, X-Gone"),
            (b"Upgrade", b"websocket"),
            (b"Sec-WebSocket-Key", b"k"),
            (b"X-Gone", b"1"),
        ]
    )
    _, headers = forwarded(head)
    assert values(headers, b"connection") == [b"upgrade"]
    assert values(headers, b"upgrade") == [b"websocket"]
    assert values(headers, b"sec-websocket-key") == [b"k"]
    assert b"x-gone" not in names(headers)
    head = check([HOST, (b"Upgrade", b"websocket")])
    _, headers = forwarded(head)
    assert b"upgrade" not in names(headers) and b"connection" not in names(headers)


def test_only_the_named_cookies_are_stripped():
    head = check(
        [
            HOST,
            (b"Cookie", b"a=1; kokoa_sticky=abc; b=2"),
            (b"Cookie", b"kokoa_sticky=only"),
            (b"Cookie", b"kokoa_sticky_x=3; x=kokoa_sticky=4; KOKOA_STICKY=5"),
        ]
    )
    _, headers = forwarded(head, strip_cookies=frozenset({b"kokoa_sticky"}))
    assert values(headers, b"cookie") == [b"a=1; b=2", b"kokoa_sticky_x=3; x=kokoa_sticky=4; KOKOA_STICKY=5"]
    _, headers = forwarded(head)  # nothing to strip: cookies pass untouched
    assert len(values(headers, b"cookie")) == 3


def test_cookie_value():
    head = check([HOST, (b"Cookie", b"a=1; kokoa_sticky=abc"), (b"Cookie", b"b=\xff")])
    assert cookie_value(head, b"kokoa_sticky") == "abc"
    assert cookie_value(head, b"a") == "1"
    assert cookie_value(head, b"b") is None  # not ASCII
    assert cookie_value(head, b"missing") is None
    assert cookie_value(check(), b"a") is None


# ---------------------------------------------------------------- the property

DANGEROUS = sorted(GATEWAY_SET)
HOP = sorted(HOP_BY_HOP - {b"transfer-encoding"})  # that one is checked (refused unless chunked)
BENIGN = [b"accept", b"cookie", b"x-custom", b"user-agent", b"x-forwarded", b"forwarded-for", b"remote"]


@st.composite
def spelled(draw, name: bytes) -> bytes:
    out = bytearray()
    for byte in name:
        char = bytes([byte])
        if char == b"-" and draw(st.booleans()):
            char = b"_"
        elif draw(st.booleans()):
            char = char.upper()
        out += char
    return bytes(out)


@st.composite
def client_headers(draw) -> list[tuple[bytes, bytes]]:
    headers = []
    for i in range(draw(st.integers(0, 12))):
        base = draw(st.sampled_from(DANGEROUS + HOP + BENIGN + [b"connection"]))
        name = draw(spelled(base))
        if base == b"connection":
            listed = draw(
                st.lists(st.sampled_from(DANGEROUS + BENIGN + [b"upgrade", b"x-custom"]), max_size=3)
            )
            value = b", ".join(draw(spelled(n)) for n in listed) or b"keep-alive"
        else:
            value = b"client-%d" % i
        headers.append((name, value))
    position = draw(st.integers(0, len(headers)))
    headers.insert(position, HOST)
    return headers


def _canonical(name: bytes) -> bytes:
    return name.lower().replace(b"_", b"-")


@SETTINGS
@given(client_headers(), st.sampled_from(["192.0.2.7", "2001:db8::7"]), st.sampled_from(["http", "https"]))
def test_no_client_supplied_gateway_set_header_reaches_the_upstream(headers, client, scheme):
    head = check(headers)
    raw = upstream_request_head(head, client, scheme)
    _, sent = parse_head(raw)
    ours = {
        b"x-forwarded-for": [client.encode()],
        b"x-forwarded-proto": [scheme.encode()],
        b"x-forwarded-host": [b"app.test"],
        b"forwarded": [b'for=%s;proto=%s;host="app.test"' % (format_for(client).encode(), scheme.encode())],
    }
    for name in GATEWAY_SET:
        assert [v for n, v in sent if _canonical(n) == name] == ours.get(name, []), name
    # no hop-by-hop header of the client's, and nothing listed in its Connection
    listed = connection_listed(headers)
    gateway_lines = 4 + (2 if head.upgrade is not None else 0)
    from_client, from_gateway = sent[:-gateway_lines], sent[-gateway_lines:]
    for name, _ in from_client:
        assert _canonical(name) not in GATEWAY_SET and name.lower() not in HOP_BY_HOP | listed, name
    upgrade = [(b"Connection", b"upgrade"), (b"Upgrade", head.upgrade)] if head.upgrade is not None else []
    assert from_gateway[4:] == upgrade
    # everything else passes, in order
    expected = [
        (n, v)
        for n, v in headers
        if n.lower() not in HOP_BY_HOP | listed and _canonical(n) not in GATEWAY_SET
    ]
    assert [(n, v) for n, v in sent if (n, v) in expected] == expected


# ---------------------------------------------------------------- client_response_head


UPSTREAM = [
    (b"Content-Type", b"text/plain"),
    (b"Content-Length", b"5"),
    (b"Connection", b"keep-alive, X-Internal"),
    (b"Keep-Alive", b"timeout=5"),
    (b"Transfer-Encoding", b"chunked"),
    (b"Trailer", b"X-Sum"),
    (b"Upgrade", b"h2c"),
    (b"Proxy-Authenticate", b"Basic"),
    (b"Proxy-Connection", b"close"),
    (b"TE", b"trailers"),
    (b"X-Internal", b"secret"),
    (b"x-internal", b"secret"),
    (b"Set-Cookie", b"a=1"),
    (b"Set-Cookie", b"b=2"),
]


def test_hop_by_hop_and_connection_listed_response_headers_are_dropped():
    line, headers = parse_head(client_response_head(200, b"OK", UPSTREAM, "length", False))
    assert line == b"HTTP/1.1 200 OK"
    assert headers == [
        (b"Content-Type", b"text/plain"),
        (b"Content-Length", b"5"),
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
    ]


@pytest.mark.parametrize(
    ("framing", "length", "chunked"),
    [("length", True, False), ("none", True, False), ("chunked", False, True), ("close", False, False)],
)
@pytest.mark.parametrize("close", [False, True])
def test_response_framing(framing, length, chunked, close):
    _, headers = parse_head(client_response_head(200, b"OK", UPSTREAM, framing, close))
    assert values(headers, b"content-length") == ([b"5"] if length else [])
    assert values(headers, b"transfer-encoding") == ([b"chunked"] if chunked else [])
    assert values(headers, b"connection") == ([b"close"] if close else [])
    assert b"x-internal" not in names(headers) and b"keep-alive" not in names(headers)


def test_response_status_line_and_extra_headers():
    raw = client_response_head(
        404, b"", [], "none", False, extra=[(b"Strict-Transport-Security", b"max-age=1")]
    )
    assert raw == b"HTTP/1.1 404 -\r\nStrict-Transport-Security: max-age=1\r\n\r\n"
    raw = client_response_head(503, b"Busy", [], "chunked", True)
    assert raw == b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"


def test_a_length_framed_response_keeps_its_length():
    headers = [(b"Content-Length", b"5"), (b"Connection", b"content-length")]
    _, sent = parse_head(client_response_head(200, b"OK", headers, "length", False))
    assert values(sent, b"content-length") == [b"5"]


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.sampled_from([*sorted(HOP_BY_HOP), b"content-length", b"x-a", b"x-b", b"set-cookie"]).flatmap(
                spelled
            ),
            st.sampled_from([b"1", b"x-a", b"x-b, x-a", b"keep-alive"]),
        ),
        max_size=10,
    ),
    st.sampled_from(["length", "chunked", "none", "close"]),
    st.booleans(),
)
def test_client_response_head_never_passes_hop_by_hop_headers(headers, framing, close):
    # spelled() may turn "-" into "_": such names are simply other headers here
    _, sent = parse_head(client_response_head(200, b"OK", headers, framing, close))
    listed = connection_listed(headers)
    ours = {b"transfer-encoding": [b"chunked"] if framing == "chunked" else [], b"connection": []}
    if close:
        ours[b"connection"] = [b"close"]
    for name in HOP_BY_HOP:
        assert values(sent, name) == ours.get(name, []), name
    for name, _ in sent:
        assert name.lower() not in listed or name.lower() in (b"transfer-encoding", b"connection")
    if framing in ("chunked", "close"):
        assert b"content-length" not in names(sent)


# ---------------------------------------------------------------- switching_protocols_head


def test_switching_protocols_keeps_connection_and_upgrade():
    headers = [
        (b"Connection", b"Upgrade, X-Internal"),
        (b"Upgrade", b"websocket"),
        (b"Sec-WebSocket-Accept", b"abc"),
        (b"Keep-Alive", b"timeout=5"),
        (b"X-Internal", b"1"),
    ]
    line, sent = parse_head(switching_protocols_head(101, b"", headers))
    assert line == b"HTTP/1.1 101 Switching Protocols"
    assert sent == [
        (b"Connection", b"Upgrade, X-Internal"),
        (b"Upgrade", b"websocket"),
        (b"Sec-WebSocket-Accept", b"abc"),
    ]
