"""kokoa.auth._sealed: what is sealed opens only as itself, for its purpose, before it expires."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kokoa.auth._sealed import MAX_SEALED, Sealer, new_key

pytestmark = pytest.mark.sans_io

KEY = bytes(range(32))


def test_a_sealed_value_opens_for_its_purpose_until_it_expires():
    sealer = Sealer(KEY)
    sealed = sealer.seal("mfa", {"u": "user_1", "t": 2}, now=1000.0, lifetime=300)
    assert "user_1" not in sealed  # encrypted, not only signed
    assert sealer.open("mfa", sealed, now=1299.0) == {"u": "user_1", "t": 2}
    assert sealer.open("mfa", sealed, now=1301.0) is None  # expired
    assert sealer.open("device", sealed, now=1000.0) is None  # another purpose
    assert Sealer(new_key()).open("mfa", sealed, now=1000.0) is None  # another key (another instance)


def test_every_seal_differs():
    sealer = Sealer(KEY)
    assert sealer.seal("p", {}, now=0, lifetime=1) != sealer.seal("p", {}, now=0, lifetime=1)


@pytest.mark.parametrize("junk", [None, "", "x", "!!!!", "A" * 40, "A" * (MAX_SEALED + 1), "é" * 30])
def test_junk_opens_as_nothing(junk):
    assert Sealer(KEY).open("mfa", junk, now=0.0) is None


def test_bad_keys_and_oversized_payloads_are_refused():
    with pytest.raises(ValueError, match="32 bytes"):
        Sealer(b"short")
    with pytest.raises(ValueError, match="too large"):
        Sealer(KEY).seal("p", {"x": "y" * 5000}, now=0, lifetime=1)


@settings(max_examples=200, deadline=None)
@given(
    payload=st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=20)), max_size=5),
    flip=st.integers(0, 10_000),
)
def test_any_change_to_a_sealed_value_makes_it_nothing(payload, flip):
    sealer = Sealer(KEY)
    sealed = sealer.seal("p", payload, now=0, lifetime=60)
    assert sealer.open("p", sealed, now=0) == payload
    i = flip % len(sealed)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    changed = sealed[:i] + alphabet[(alphabet.index(sealed[i]) + 1) % 64] + sealed[i + 1 :]
    # (the last character may carry unused bits: a change there can decode to the same bytes)
    if changed != sealed and (i < len(sealed) - 1):
        assert sealer.open("p", changed, now=0) is None
