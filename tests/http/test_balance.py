"""kokoa.http._balance in isolation: smooth weighted round-robin, least connections, stickiness."""

from __future__ import annotations

import collections

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kokoa.gateway._model import HTTPResource, HTTPTarget
from kokoa.http._balance import Balancer, sticky_value

pytestmark = pytest.mark.sans_io

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def target(name: str, weight: int = 1) -> HTTPTarget:
    return HTTPTarget(id=f"tgt_{name}", site_id="home", host="127.0.0.1", port=8000, weight=weight)


def resource(*targets: HTTPTarget, **kw) -> HTTPResource:
    return HTTPResource(id="res", name="res", hostname="app.test", targets=targets, **kw)


def always(_target: HTTPTarget) -> bool:
    return True


def picks(balancer: Balancer, res: HTTPResource, n: int, available=always, sticky=None) -> list[str]:
    out = []
    for _ in range(n):
        chosen = balancer.choose(res, available, sticky)
        assert chosen is not None
        out.append(chosen.id)
    return out


# ---------------------------------------------------------------- round-robin


def test_round_robin_is_smooth():
    """nginx's example: weights 5, 1, 1 give a a b a c a a, not a a a a a b c."""
    a, b, c = target("a", 5), target("b", 1), target("c", 1)
    res = resource(a, b, c)
    order = picks(Balancer(), res, 7)
    assert [i.removeprefix("tgt_") for i in order] == ["a", "a", "b", "a", "c", "a", "a"]


def test_equal_weights_alternate():
    res = resource(target("a"), target("b"), target("c"))
    assert picks(Balancer(), res, 6) == ["tgt_a", "tgt_b", "tgt_c"] * 2


weights = st.lists(st.integers(1, 10), min_size=1, max_size=6)


@SETTINGS
@given(weights, st.integers(1, 3))
def test_round_robin_gives_exact_proportions_over_full_cycles(ws, cycles):
    targets = [target(str(i), w) for i, w in enumerate(ws)]
    res = resource(*targets)
    balancer = Balancer()
    total = sum(ws)
    for _ in range(cycles):
        counts = collections.Counter(picks(balancer, res, total))
        assert counts == {t.id: t.weight for t in targets}
        # and a full cycle leaves the scores where they started
        assert all(score == 0 for score in balancer._current.values())


@SETTINGS
@given(weights, st.data())
def test_round_robin_spreads_picks_smoothly(ws, data):
    """Within a cycle no target runs ahead of its share by a whole pick or more."""
    targets = [target(str(i), w) for i, w in enumerate(ws)]
    res = resource(*targets)
    balancer = Balancer()
    total = sum(ws)
    counts: collections.Counter = collections.Counter()
    for n in range(1, total + 1):
        counts[balancer.choose(res, always).id] += 1
        for t in targets:
            assert abs(counts[t.id] - n * t.weight / total) < len(targets)


@SETTINGS
@given(
    st.lists(st.tuples(st.integers(0, 10), st.booleans()), min_size=1, max_size=6),
    st.lists(st.sets(st.integers(0, 5)), max_size=30),
)
def test_never_an_unavailable_or_weightless_target(specs, outages):
    targets = [target(str(i), w) for i, (w, _) in enumerate(specs)]
    res = resource(*targets, lb_method="least_connections" if specs[0][1] else "round_robin")
    balancer = Balancer()
    for down in outages:
        down_ids = {f"tgt_{i}" for i in down}

        def available(t, down_ids=down_ids):
            return t.id not in down_ids

        chosen = balancer.choose(res, available)
        eligible = [t for t in targets if t.weight > 0 and t.id not in down_ids]
        if not eligible:
            assert chosen is None
        else:
            assert chosen in eligible
            balancer.started(chosen)


def test_round_robin_with_an_outage_only_uses_the_rest():
    a, b, c = target("a", 3), target("b", 2), target("c", 1)
    res = resource(a, b, c)
    order = picks(Balancer(), res, 28, available=lambda t: t is not b)
    assert collections.Counter(order) == {"tgt_a": 21, "tgt_c": 7}


def test_no_targets_or_none_available():
    assert Balancer().choose(resource(), always) is None
    assert Balancer().choose(resource(target("a", 0)), always) is None
    assert Balancer().choose(resource(target("a")), lambda t: False) is None


def test_the_availability_check_is_asked_about_weighted_targets_only():
    asked = []
    res = resource(target("a", 0), target("b", 1))

    def available(t):
        asked.append(t.id)
        return True

    assert Balancer().choose(res, available).id == "tgt_b"
    assert asked == ["tgt_b"]


# ---------------------------------------------------------------- least connections


def test_least_connections_picks_the_least_loaded():
    a, b, c = target("a"), target("b"), target("c")
    res = resource(a, b, c, lb_method="least_connections")
    balancer = Balancer()
    for t, n in ((a, 3), (b, 1), (c, 2)):
        for _ in range(n):
            balancer.started(t)
    assert balancer.choose(res, always) is b
    balancer.started(b)
    balancer.started(b)  # b 3, c 2
    assert balancer.choose(res, always) is c


def test_least_connections_is_relative_to_weight():
    light, heavy = target("light", 1), target("heavy", 4)
    res = resource(light, heavy, lb_method="least_connections")
    balancer = Balancer()
    balancer.started(light)  # 1/1
    for _ in range(3):
        balancer.started(heavy)  # 3/4
    assert balancer.choose(res, always) is heavy
    balancer.started(heavy)  # 4/4: a tie, broken by weighted round-robin
    assert balancer.choose(res, always) in (light, heavy)
    balancer.started(heavy)  # 5/4
    assert balancer.choose(res, always) is light


def test_least_connections_ties_go_round_robin():
    a, b = target("a"), target("b")
    res = resource(a, b, lb_method="least_connections")
    assert picks(Balancer(), res, 4) == ["tgt_a", "tgt_b", "tgt_a", "tgt_b"]


@SETTINGS
@given(
    st.lists(st.tuples(st.integers(1, 10), st.integers(0, 8)), min_size=1, max_size=6),
    st.sets(st.integers(0, 5)),
)
def test_least_connections_choice_has_the_lowest_load(specs, down):
    targets = [target(str(i), w) for i, (w, _) in enumerate(specs)]
    res = resource(*targets, lb_method="least_connections")
    balancer = Balancer()
    for t, (_, active) in zip(targets, specs, strict=True):
        for _ in range(active):
            balancer.started(t)

    def available(t):
        return int(t.id.removeprefix("tgt_")) not in down

    chosen = balancer.choose(res, available)
    eligible = [t for t in targets if available(t)]
    if not eligible:
        assert chosen is None
        return
    load = {t.id: balancer.active.get(t.id, 0) / t.weight for t in eligible}
    assert load[chosen.id] == min(load.values())


# ---------------------------------------------------------------- stickiness


def test_sticky_returns_the_pinned_target_when_available():
    a, b, c = target("a"), target("b"), target("c")
    res = resource(a, b, c, sticky=True)
    balancer = Balancer()
    assert picks(balancer, res, 5, sticky=sticky_value(b)) == ["tgt_b"] * 5
    res_lc = resource(a, b, c, sticky=True, lb_method="least_connections")
    balancer.started(c)
    assert balancer.choose(res_lc, always, sticky_value(c)) is c


def test_sticky_falls_back_when_the_pinned_target_is_unavailable():
    a, b = target("a"), target("b")
    res = resource(a, b, sticky=True)
    assert picks(Balancer(), res, 3, available=lambda t: t is not b, sticky=sticky_value(b)) == ["tgt_a"] * 3
    weightless = target("w", 0)
    res = resource(a, b, weightless, sticky=True)
    assert Balancer().choose(res, always, sticky_value(weightless)) in (a, b)


def test_an_unknown_or_empty_sticky_value_is_ignored():
    a, b = target("a"), target("b")
    res = resource(a, b, sticky=True)
    assert picks(Balancer(), res, 4, sticky="nonsense") == ["tgt_a", "tgt_b"] * 2
    assert picks(Balancer(), res, 4, sticky="") == ["tgt_a", "tgt_b"] * 2


def test_a_resource_that_is_not_sticky_ignores_the_cookie():
    a, b = target("a"), target("b")
    res = resource(a, b, sticky=False)
    assert picks(Balancer(), res, 4, sticky=sticky_value(b)) == ["tgt_a", "tgt_b"] * 2


def test_sticky_values_are_opaque_and_distinct():
    a, b = target("a"), target("b")
    assert sticky_value(a) == sticky_value(target("a", 7))  # by id only
    assert sticky_value(a) != sticky_value(b)
    assert len(sticky_value(a)) == 20 and "tgt_a" not in sticky_value(a)
    assert all(c in "0123456789abcdef" for c in sticky_value(a))


# ---------------------------------------------------------------- bookkeeping


def test_started_and_finished():
    a = target("a")
    balancer = Balancer()
    balancer.started(a)
    balancer.started(a)
    assert balancer.active == {"tgt_a": 2}
    balancer.finished(a)
    assert balancer.active == {"tgt_a": 1}
    balancer.finished(a)
    assert balancer.active == {}
    balancer.finished(a)  # one too many: nothing goes negative
    assert balancer.active == {}


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from("abc"), st.booleans()), max_size=60))
def test_bookkeeping_never_goes_negative(ops):
    balancer = Balancer()
    model: collections.Counter = collections.Counter()
    for name, start in ops:
        t = target(name)
        if start:
            balancer.started(t)
            model[t.id] += 1
        else:
            balancer.finished(t)
            model[t.id] = max(0, model[t.id] - 1)
        assert all(n > 0 for n in balancer.active.values())
        assert balancer.active == {k: v for k, v in model.items() if v > 0}


def test_forget_except_drops_the_scores_of_removed_targets():
    a, b, c = target("a", 3), target("b", 1), target("c", 1)
    balancer = Balancer()
    picks(balancer, resource(a, b, c), 2)
    assert set(balancer._current) == {"tgt_a", "tgt_b", "tgt_c"}
    balancer.forget_except({"tgt_a", "tgt_b"})
    assert set(balancer._current) == {"tgt_a", "tgt_b"}
    balancer.forget_except(set())
    assert balancer._current == {}
    # a fresh start: the next cycle is a full, exact one again
    res = resource(a, b)
    assert collections.Counter(picks(balancer, res, 4)) == {"tgt_a": 3, "tgt_b": 1}


def test_forget_except_keeps_active_counts():
    a = target("a")
    balancer = Balancer()
    balancer.started(a)
    balancer.forget_except(set())
    assert balancer.active == {"tgt_a": 1}
