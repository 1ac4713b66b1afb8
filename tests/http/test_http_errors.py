"""kokoa.http._errors in isolation: HTML for browsers, problem+json for everything else."""

from __future__ import annotations

import html
import json
from http import HTTPStatus

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kokoa.http._errors import error_body, error_response, wants_html

pytestmark = pytest.mark.sans_io


def parse(raw: bytes, head_request: bool = False) -> tuple[int, dict[bytes, bytes], bytes]:
    """(status, lower-cased headers, body) of one response, as a client parses it."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b": ")
        assert name.lower() not in headers, name
        headers[name.lower()] = value
    if not head_request:  # a real parser agrees on where the body ends
        got: list[bytes] = []
        done: list[bool] = []

        class Sink:
            def on_body(self, data: bytes) -> None:
                got.append(data)

            def on_message_complete(self) -> None:
                done.append(True)

        httptools.HttpResponseParser(Sink()).feed_data(raw)
        assert done and b"".join(got) == body
    return status, headers, body


@pytest.mark.parametrize(
    "accept",
    [
        b"text/html",
        b"TEXT/HTML",
        b"text/html,application/xhtml+xml,*/*;q=0.8",
        b"application/json, text/html",
    ],
)
def test_browsers_get_html(accept):
    assert wants_html(accept)
    status, headers, body = parse(error_response(404, "No resource here.", accept))
    assert status == 404
    assert headers[b"content-type"] == b"text/html; charset=utf-8"
    assert headers[b"content-length"] == b"%d" % len(body)
    text = body.decode()
    assert text.startswith("<!doctype html>")
    assert "<title>404 Not Found</title>" in text and "<h1>Not Found</h1>" in text
    assert "<p>No resource here.</p>" in text


@pytest.mark.parametrize(
    "accept", [None, b"", b"*/*", b"application/json", b"application/xhtml+xml", b"text/*"]
)
def test_everything_else_gets_problem_json(accept):
    assert not wants_html(accept)
    status, headers, body = parse(error_response(502, "The site is offline.", accept))
    assert status == 502
    assert headers[b"content-type"] == b"application/problem+json"
    assert headers[b"content-length"] == b"%d" % len(body)
    assert json.loads(body) == {
        "type": "about:blank",
        "title": "Bad Gateway",
        "status": 502,
        "detail": "The site is offline.",
    }


def test_the_detail_and_title_are_escaped_in_html():
    detail = "<script>alert('x')</script> & \"more\""
    _, _, body = parse(error_response(400, detail, b"text/html", title="<b>Bad</b>"))
    text = body.decode()
    assert "<script>" not in text and "<b>" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;more&quot;" in text
    assert "&lt;b&gt;Bad&lt;/b&gt;" in text


def test_json_carries_the_detail_verbatim():
    detail = "<script>alert('x')</script> \"quoted\" \u00e9"
    _, headers, body = parse(error_response(400, detail))
    assert json.loads(body)["detail"] == detail
    assert headers[b"content-length"] == b"%d" % len(body)


def test_a_custom_title():
    _, _, body = parse(error_response(503, "Nothing left.", title="No healthy target"))
    assert json.loads(body)["title"] == "No healthy target"


@pytest.mark.parametrize("accept", [None, b"text/html"])
def test_head_has_no_body_but_the_length_of_one(accept):
    raw = error_response(404, "No resource here.", accept, head=True)
    assert raw.endswith(b"\r\n\r\n")
    status, headers, body = parse(raw, head_request=True)
    assert status == 404 and body == b""
    _, full_body = error_body(404, "Not Found", "No resource here.", accept)
    assert headers[b"content-length"] == b"%d" % len(full_body)


def test_connection_close_when_asked():
    _, headers, _ = parse(error_response(400, "x", close=True))
    assert headers[b"connection"] == b"close"
    _, headers, _ = parse(error_response(400, "x"))
    assert b"connection" not in headers


def test_the_fixed_headers_and_extra_ones():
    raw = error_response(405, "No.", headers=((b"Allow", b"GET, HEAD"),), close=True)
    assert raw.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    _, headers, _ = parse(raw)
    assert headers[b"cache-control"] == b"no-store"
    assert headers[b"x-content-type-options"] == b"nosniff"
    assert headers[b"allow"] == b"GET, HEAD"


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([400, 404, 405, 408, 413, 414, 429, 431, 500, 502, 503, 504, 505]),
    st.text(max_size=80),
    st.sampled_from([None, b"text/html", b"application/json"]),
    st.booleans(),
)
def test_any_detail_makes_a_well_formed_response(status, detail, accept, close):
    raw = error_response(status, detail, accept, close=close)
    got_status, headers, body = parse(raw)
    assert got_status == status
    assert headers[b"content-length"] == b"%d" % len(body)
    assert (headers.get(b"connection") == b"close") == close
    if accept == b"text/html":
        # the page is the page of an empty detail with the escaped detail in its place
        empty = error_body(status, HTTPStatus(status).phrase, "", accept)[1].decode()
        assert body.decode() == empty.replace("<p></p>", f"<p>{html.escape(detail)}</p>", 1)
        assert "<" not in html.escape(detail) and ">" not in html.escape(detail)
    else:
        assert json.loads(body)["detail"] == detail
