"""A wildcard resource's ``*`` stands for one DNS label and nothing else: not a string that a browser
reads as several labels (``evil%2eorg``), as another host (``evil.org\\``), or as anything but letters,
digits and inner hyphens."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kokoa.gateway._model import HTTPResource
from kokoa.http._router import Router, normalize_target

pytestmark = pytest.mark.sans_io


def router() -> Router:
    return Router(
        [
            HTTPResource(id="wild", name="wild", hostname="*.wild.test", path_prefix="/", enabled=True),
            HTTPResource(id="exact", name="exact", hostname="a_b.wild.test", path_prefix="/", enabled=True),
        ]
    )


@pytest.mark.parametrize("label", ["a", "z9", "0", "a-b", "xn--bcher-kva", "a" * 63, "1-2-3"])
def test_a_dns_label_under_a_wildcard_is_known_and_routed(label):
    r = router()
    host = f"{label}.wild.test"
    assert r.knows_host(host)
    route = r.route(host, normalize_target(b"/"))
    assert route is not None and route.resource.id == "wild"


@pytest.mark.parametrize(
    "label",
    [
        "",
        "-a",
        "a-",
        "a" * 64,
        "evil%2eorg",
        "evil%2Eorg",
        "evil.org\\",
        "evil%2eorg\\",
        "a\\b",
        "a/b",
        "a@b",
        "a:b",
        "a b",
        "a\tb",
        "a%00",
        "a_c",  # "_" is no DNS label character (an exact name may hold one: see below)
        "A",  # hosts reach the router lowercase
        "\u00e9",
        "\uff45vil",
        "a\u3002b",
        "*",
    ],
)
def test_anything_else_under_a_wildcard_is_unknown(label):
    r = router()
    host = f"{label}.wild.test"
    assert not r.knows_host(host)
    assert r.route(host, normalize_target(b"/")) is None


def test_more_than_one_label_is_unknown():
    r = router()
    assert not r.knows_host("a.b.wild.test")
    assert not r.knows_host("wild.test")


def test_an_exact_name_is_matched_as_it_is():
    assert router().knows_host("a_b.wild.test")


@settings(max_examples=500, deadline=None)
@given(st.text(min_size=1, max_size=70))
def test_a_wildcard_knows_exactly_the_dns_labels(label):
    valid = (
        label.isascii()
        and len(label) <= 63
        and all(c in "abcdefghijklmnopqrstuvwxyz0123456789-" for c in label)
        and not label.startswith("-")
        and not label.endswith("-")
    )
    assert Router([HTTPResource(id="w", name="w", hostname="*.wild.test")]).knows_host(
        f"{label}.wild.test"
    ) == (valid and "." not in label)
