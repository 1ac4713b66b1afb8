"""Why the HTTP front parses with httptools and not h11: per-request cost and strictness.

**Cost.** Microseconds per request head, in this process, no sockets (the best and the median of
``--rounds`` timed loops of N requests each):

- httptools alone: one ``HttpRequestParser`` fed a typical browser/wrk request head over and over
  (a keep-alive connection), with the front's callbacks (URL, headers, method/version/keep-alive);
- httptools + ``check_request``: what the front does per request head (the parse above, then
  Kokoa's own checks: framing, Host, target normalization);
- h11, parse only: ``receive_data`` + ``next_event`` until EndOfMessage, on a fresh
  ``h11.Connection`` per request (h11 reads no second request before a response is sent);
- h11, full server cycle: parse, send a 200 response and EndOfMessage, ``start_next_cycle``;
- a whole proxy exchange's head work, both ways: Kokoa's (request parse + checks + the upstream
  request head + a fresh ``HttpResponseParser`` for the upstream's response + the client's
  response head) against h11's (a server ``Connection`` for the client and a client
  ``Connection`` for the upstream, each a full cycle).

**Strictness.** A list of malformed requests (request smuggling and framing ambiguities:
Content-Length with Transfer-Encoding, duplicate or malformed Content-Length, unknown or
non-final Transfer-Encoding, bare LF, whitespace before a colon, obs-fold, control characters,
bad chunk extensions) and a few valid controls, each fed whole to httptools, to h11, and to
httptools + ``check_request`` (what Kokoa's front does). A cell says whether the request was
refused, accepted (a complete message), or left waiting for more data.

    .venv/bin/python bench/http_parsers.py          # 200,000 httptools / 20,000 h11 requests x 5
    .venv/bin/python bench/http_parsers.py --quick  # a tenth

Writes bench/results/http_parsers.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import h11
import httptools

from _common import ForeignLoad, format_table, guarded, write_result  # also puts src/ on the path for kokoa
from kokoa.http._messages import (
    BadRequest,
    check_request,
    client_response_head,
    upstream_request_head,
)

#: A typical request head (what a browser sends: 7 fields, 278 bytes).
REQUEST = (
    b"GET /api/items?page=2&sort=name HTTP/1.1\r\n"
    b"Host: app.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101\r\n"
    b"Accept: application/json\r\n"
    b"Accept-Encoding: gzip, deflate\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\n"
    b"Cookie: session=3kq9x7f2\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n"
)
#: The upstream's answer: a small JSON response (head and body).
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: nginx\r\n"
    b"Date: Sun, 29 Nov 2026 10:00:00 GMT\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: 16\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n"
    b'{"items": [1,2]}'
)
RESPONSE_HEADERS = [
    ("Server", "nginx"),
    ("Date", "Sun, 29 Nov 2026 10:00:00 GMT"),
    ("Content-Type", "application/json"),
    ("Content-Length", "16"),
]
RESPONSE_BODY = b'{"items": [1,2]}'


# ----------------------------------------------------------------------------- cost


class FrontCallbacks:
    """The request callbacks of the front (``FrontProtocol``), reduced to what they collect."""

    __slots__ = ("check", "done", "head", "headers", "keep_alive", "method", "parser", "url", "version")

    def __init__(self, check: bool) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.check = check
        self.head = None
        self.done = 0

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []

    def on_url(self, piece: bytes) -> None:
        self.url += piece

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        method, version_, keep_alive = (
            parser.get_method(),
            parser.get_http_version(),
            parser.should_keep_alive(),
        )
        if self.check:
            self.head = check_request(method, self.url, version_, self.headers, keep_alive)

    def on_message_complete(self) -> None:
        self.done += 1


class UpstreamCallbacks:
    """The response callbacks of ``UpstreamConnection``, reduced to what they collect."""

    __slots__ = ("body", "complete", "headers", "keep_alive", "parser", "reason", "status")

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.reason = b""
        self.headers = []
        self.body = []
        self.complete = False

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, data: bytes) -> None:
        self.body.append(data)

    def on_message_complete(self) -> None:
        self.complete = True


def httptools_parse(n: int, check: bool = False) -> None:
    callbacks = FrontCallbacks(check)
    feed = callbacks.parser.feed_data
    for _ in range(n):
        feed(REQUEST)
    assert callbacks.done == n


def h11_parse(n: int) -> None:
    for _ in range(n):
        connection = h11.Connection(h11.SERVER)
        connection.receive_data(REQUEST)
        request = connection.next_event()
        end = connection.next_event()
    assert isinstance(request, h11.Request) and isinstance(end, h11.EndOfMessage)


def h11_server_cycle(n: int) -> None:
    connection = h11.Connection(h11.SERVER)
    response = h11.Response(status_code=200, headers=RESPONSE_HEADERS)
    for _ in range(n):
        connection.receive_data(REQUEST)
        request = connection.next_event()
        connection.next_event()  # EndOfMessage
        connection.send(response)
        connection.send(h11.Data(data=RESPONSE_BODY))
        connection.send(h11.EndOfMessage())
        connection.start_next_cycle()
    assert isinstance(request, h11.Request)


def kokoa_proxy_cycle(n: int) -> None:
    """The head work of one proxied exchange in the front, with httptools (no sockets)."""
    callbacks = FrontCallbacks(check=True)
    feed = callbacks.parser.feed_data
    for _ in range(n):
        feed(REQUEST)
        head = callbacks.head
        upstream_request_head(head, "203.0.113.7", "http")
        upstream = UpstreamCallbacks()
        upstream.parser.feed_data(RESPONSE)
        client_response_head(upstream.status, upstream.reason, upstream.headers, "length", False)
        b"".join(upstream.body)
    assert upstream.complete


def h11_proxy_cycle(n: int) -> None:
    """The same exchange with h11: a server Connection for the client, a client Connection for
    the upstream (kept alive, like the pool), each through a full cycle."""
    server = h11.Connection(h11.SERVER)
    client = h11.Connection(h11.CLIENT)
    for _ in range(n):
        server.receive_data(REQUEST)
        request = server.next_event()
        server.next_event()  # EndOfMessage
        headers = [(k, v) for k, v in request.headers if k not in (b"connection",)]
        headers += [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-proto", b"http")]
        client.send(h11.Request(method=request.method, target=request.target, headers=headers))
        client.send(h11.EndOfMessage())
        client.receive_data(RESPONSE)
        response = client.next_event()
        data = client.next_event()
        client.next_event()  # EndOfMessage
        server.send(h11.Response(status_code=response.status_code, headers=response.headers))
        server.send(h11.Data(data=data.data))
        server.send(h11.EndOfMessage())
        server.start_next_cycle()
        client.start_next_cycle()


def time_per_call(function: Callable[[int], None], n: int, rounds: int) -> dict[str, float]:
    """Microseconds per request: best and median of ``rounds`` loops of ``n``."""
    function(max(1, n // 20))  # warm-up
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        function(n)
        samples.append((time.perf_counter() - start) / n * 1e6)
    return {"best_us": min(samples), "median_us": statistics.median(samples), "samples_us": samples}


# ----------------------------------------------------------------------------- strictness

_POST = b"POST / HTTP/1.1\r\nHost: a\r\n"
CASES: list[tuple[str, bytes, bool]] = [
    # (name, request, malformed?)
    ("valid: GET", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", False),
    ("valid: POST, Content-Length", _POST + b"Content-Length: 3\r\n\r\nabc", False),
    ("valid: POST, chunked", _POST + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", False),
    ("valid: chunk extension", _POST + b"Transfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n0\r\n\r\n", False),
    (
        "Content-Length and Transfer-Encoding",
        _POST + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        True,
    ),
    ("duplicate Content-Length", _POST + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", True),
    ("Content-Length with a sign (+3)", _POST + b"Content-Length: +3\r\n\r\nabc", True),
    ("Content-Length in hex (0x3)", _POST + b"Content-Length: 0x3\r\n\r\nabc", True),
    ("Content-Length with a space (1 2)", _POST + b"Content-Length: 1 2\r\n\r\nabc", True),
    ("Content-Length list (3,3)", _POST + b"Content-Length: 3,3\r\n\r\nabc", True),
    ("Transfer-Encoding: gzip", _POST + b"Transfer-Encoding: gzip\r\n\r\nabc", True),
    ("Transfer-Encoding: gzip, chunked", _POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", True),
    ("Transfer-Encoding: xchunked", _POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", True),
    (
        "Transfer-Encoding in HTTP/1.0",
        b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        True,
    ),
    ("bare LF in a chunk-size line", _POST + b"Transfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", True),
    ("bare LF in the head", b"GET / HTTP/1.1\nHost: a\n\n", True),
    ("whitespace before the colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", True),
    ("obs-fold (continuation line)", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", True),
    ("control char (0x01) in a name", b"GET / HTTP/1.1\r\nHost: a\r\nX\x01: ab\r\n\r\n", True),
    ("control char (0x01) in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", True),
    ("NUL in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", True),
    (
        "bad chunk extension (0x01)",
        _POST + b"Transfer-Encoding: chunked\r\n\r\n3;\x01\r\nabc\r\n0\r\n\r\n",
        True,
    ),
    ("no Host header", b"GET / HTTP/1.1\r\n\r\n", True),
    ("two Host headers", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", True),
]

REFUSED, ACCEPTED, WAITING = "refused", "accepted", "waiting"


class _Collect:
    def __init__(self, check: bool) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.check = check
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.done = 0

    def on_url(self, piece: bytes) -> None:
        self.url += piece

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.check:
            p = self.parser
            check_request(p.get_method(), self.url, p.get_http_version(), self.headers, p.should_keep_alive())

    def on_message_complete(self) -> None:
        self.done += 1


def httptools_verdict(data: bytes, check: bool) -> tuple[str, str]:
    collect = _Collect(check)
    try:
        collect.parser.feed_data(data)
    except httptools.HttpParserCallbackError as e:
        cause = e.__context__
        if isinstance(cause, BadRequest):
            return REFUSED, f"Kokoa: {cause.detail}"
        return REFUSED, f"{type(cause).__name__}: {cause}"
    except httptools.HttpParserError as e:
        return REFUSED, f"llhttp: {e}"
    return (ACCEPTED, "") if collect.done else (WAITING, "no error, no complete message")


def h11_verdict(data: bytes) -> tuple[str, str]:
    connection = h11.Connection(h11.SERVER)
    try:
        connection.receive_data(data)
        while True:
            event = connection.next_event()
            if isinstance(event, h11.EndOfMessage):
                return ACCEPTED, ""
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return WAITING, "no error, no complete message"
    except h11.RemoteProtocolError as e:
        return REFUSED, str(e)


def strictness() -> list[dict]:
    rows = []
    for name, data, malformed in CASES:
        ht, ht_why = httptools_verdict(data, check=False)
        hh, hh_why = h11_verdict(data)
        kk, kk_why = httptools_verdict(data, check=True)
        rows.append(
            {
                "case": name,
                "malformed": malformed,
                "request": data.decode("latin-1"),
                "httptools": ht,
                "httptools_detail": ht_why,
                "h11": hh,
                "h11_detail": hh_why,
                "kokoa_front": kk,
                "kokoa_front_detail": kk_why,
            }
        )
    return rows


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a tenth of the requests")
    parser.add_argument("--requests", type=int, help="httptools requests per loop (default 200000)")
    parser.add_argument("--rounds", type=int, default=5, help="timed loops per measure (default 5)")
    args = parser.parse_args(argv)
    n_fast = args.requests or (20_000 if args.quick else 200_000)
    n_slow = max(1, n_fast // 10)
    if not 1 <= args.rounds <= 50:
        parser.error("--rounds must be 1..50")
    versions = {"httptools": version("httptools"), "h11": version("h11"), "python": sys.version.split()[0]}
    print(
        f"HTTP parsers: httptools {versions['httptools']} vs h11 {versions['h11']} on Python"
        f" {versions['python']}; a {len(REQUEST)}-byte request head; best/median of {args.rounds} loops",
        flush=True,
    )

    measures = [
        ("httptools: parse a request head", httptools_parse, n_fast),
        (
            "httptools + check_request (the front's head work)",
            lambda n: httptools_parse(n, check=True),
            n_fast,
        ),
        ("h11: parse a request (fresh Connection)", h11_parse, n_slow),
        ("h11: full server cycle (parse + 200 response)", h11_server_cycle, n_slow),
        ("kokoa proxy exchange, heads both ways (httptools)", kokoa_proxy_cycle, n_fast),
        ("h11 proxy exchange, heads both ways (2 Connections)", h11_proxy_cycle, n_slow),
    ]
    cost = []
    for name, function, n in measures:
        foreign = ForeignLoad()
        foreign.start()
        timing = time_per_call(function, n, args.rounds)
        cost.append(
            {"measure": name, "requests_per_loop": n, **timing, "other_processes_cpu_pct": foreign.stop()}
        )
        print(f"  {name:55} {timing['best_us']:8.2f} us (median {timing['median_us']:.2f})", flush=True)
    by = {c["measure"]: c["best_us"] for c in cost}
    parse_ratio = by[measures[3][0]] / by[measures[0][0]]
    proxy_ratio = by[measures[5][0]] / by[measures[4][0]]
    cost_rows = [
        [
            c["measure"],
            c["best_us"],
            c["median_us"],
            c["best_us"] / by[measures[0][0]],
            c["other_processes_cpu_pct"],
        ]
        for c in cost
    ]
    headers = ["measure", "best us", "median us", "x httptools parse", "others CPU %"]
    cost_table = format_table(headers, cost_rows)

    verdicts = strictness()
    mark = {REFUSED: "refuses", ACCEPTED: "ACCEPTS", WAITING: "waits"}
    strict_rows = [
        [
            v["case"],
            mark[v["httptools"]],
            mark[v["h11"]],
            mark[v["kokoa_front"]],
        ]
        for v in verdicts
    ]
    strict_table = format_table(["request", "httptools", "h11", "kokoa front"], strict_rows)
    malformed = [v for v in verdicts if v["malformed"]]
    refused = {lib: sum(v[lib] == REFUSED for v in malformed) for lib in ("httptools", "h11", "kokoa_front")}
    valid_ok = all(
        v[lib] == ACCEPTED
        for v in verdicts
        if not v["malformed"]
        for lib in ("httptools", "h11", "kokoa_front")
    )
    summary = [
        f"HTTP parsers: httptools parses a request head in {by[measures[0][0]]:.2f} us"
        f" ({by[measures[1][0]]:.2f} us with Kokoa's checks); an h11 server cycle takes"
        f" {by[measures[3][0]]:.1f} us ({parse_ratio:.0f}x); a proxied exchange's head work"
        f" {by[measures[4][0]]:.1f} us vs {by[measures[5][0]]:.1f} us with h11 ({proxy_ratio:.0f}x)",
        f"HTTP parsers: of {len(malformed)} malformed requests httptools refuses {refused['httptools']},"
        f" h11 {refused['h11']}, Kokoa's front {refused['kokoa_front']}"
        f"; every valid control accepted by all three: {'yes' if valid_ok else 'NO'}",
    ]
    print()
    print(cost_table)
    print()
    print(strict_table)
    print("\nrefuses: an error before any request is forwarded; ACCEPTS: a complete request came out;")
    print("waits: no error, the parser wants more bytes (the framing was taken as valid).")
    for v in verdicts:
        if v["malformed"] and (v["httptools"] != REFUSED or v["h11"] != REFUSED):
            print(f"  {v['case']}: kokoa front: {v['kokoa_front_detail'] or v['kokoa_front']}")
    for line in summary:
        print(line)
    result = {
        "params": {
            "requests_per_loop": n_fast,
            "h11_requests_per_loop": n_slow,
            "rounds": args.rounds,
            "quick": args.quick,
            "versions": versions,
            "request_head_bytes": len(REQUEST),
        },
        "cost": cost,
        "strictness": verdicts,
        "table": cost_table + "\n\n" + strict_table,
        "summary": summary,
        "notes": [],
    }
    print(f"\nwrote {write_result('http_parsers', result)}")
    return 0 if valid_ok else 1


if __name__ == "__main__":
    sys.exit(guarded(main))
