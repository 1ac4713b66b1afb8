"""Input checks that need no database (hostnames, paths, cursors...)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as some

from kokoa import store as st
from kokoa.store import _validate as v
from kokoa.store._common import decode_cursor, encode_cursor, new_id

pytestmark = pytest.mark.sans_io

label = some.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


@given(some.lists(label, min_size=2, max_size=5))
def test_hostname_normalization_is_idempotent(labels):
    name = ".".join(labels)
    if labels[-1].isdigit():
        with pytest.raises(st.Invalid):
            v.hostname(name)
        return
    once = v.hostname(name.upper() + ".")
    assert once == name and v.hostname(once) == once
    assert v.hostname("*." + name, wildcard=True) == "*." + name


@given(some.text(max_size=200))
def test_anything_is_either_a_valid_path_or_invalid(value):
    try:
        result = v.path(value, "path")
    except st.Invalid as e:
        assert e.field == "path"
    else:
        assert result == value and result.startswith("/") and "//" not in result


@given(some.text(max_size=100))
def test_a_bad_cursor_is_only_ever_invalid(value):
    try:
        decode_cursor(value, 2)
    except st.Invalid as e:
        assert e.field == "cursor"


#: What cursors are made of: timestamps and ids (short printable text, never empty).
cursor_part = some.text(alphabet=some.characters(blacklist_categories=("C", "Z")), min_size=1, max_size=30)


@given(some.lists(cursor_part, min_size=1, max_size=3))
def test_cursors_round_trip(parts):
    assert decode_cursor(encode_cursor(*parts), len(parts)) == parts


def test_ids_are_prefixed_and_random():
    ids = {new_id("site") for _ in range(1000)}
    assert len(ids) == 1000 and all(i.startswith("site_") and len(i) == 25 for i in ids)


@pytest.mark.parametrize(
    ("fn", "value", "message"),
    [
        (v.hostname, "exa mple.com", "not a valid hostname"),
        (v.hostname, "*.example.com", "wildcards are allowed only"),
        (v.hostname, "a" * 250 + ".com", "not a valid hostname"),
        (v.hostname, 5, "non-empty string"),
        (v.email, "@example.com", "not a valid"),
        (v.email, "a" * 65 + "@example.com", "not a valid"),
        (v.method, "", "HTTP method"),
        (v.cidr, 10, "string"),
        (v.scopes, None, "list"),
    ],
)
def test_bad_values(fn, value, message):
    with pytest.raises(st.Invalid) as e:
        fn(value)
    assert message in e.value.message


def test_good_values():
    assert v.method("get") == "GET"
    assert v.cidr(" 2001:db8::/32 ") == "2001:db8::/32"
    assert v.scopes(["*", "sites:read", "resources:*"]) == ("*", "sites:read", "resources:*")
    assert v.host(" example.com ") == "example.com"
    assert v.path("/a/b/", "p") == "/a/b/"
    assert v.path("/api/*/x", "p", allow_glob=True) == "/api/*/x"
