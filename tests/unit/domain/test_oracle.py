"""The oracle rules (``aggserver/domain/oracle.py``): property tests of TWAP, EMA and the record in force."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from aggserver.domain.oracle import Point, ema_step, in_force, relative_change, time_weighted_average

prices = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False)


@st.composite
def series(draw: st.DrawFn) -> list[Point]:
    times = draw(st.lists(st.integers(0, 10_000), min_size=1, max_size=40, unique=True))
    return [(t, draw(prices)) for t in sorted(times)]


@given(series(), st.integers(-100, 10_100))
def test_the_point_in_force_is_the_newest_at_or_before_the_time(points: list[Point], at: int) -> None:
    chosen = in_force(points, at)
    before = [point for point in points if point[0] <= at]
    if chosen is None:
        assert before == []
    else:
        assert chosen[0] <= at
        assert chosen == before[-1]


@given(prices, st.integers(0, 5_000), st.integers(1, 5_000), st.integers(0, 2_000))
def test_a_constant_price_averages_to_itself(price: float, first: int, length: int, lead: int) -> None:
    points = [(first, price), (first + lead + 7, price)]
    twap = time_weighted_average(points, first, first + length)
    assert twap is not None
    assert twap.price == pytest.approx(price, rel=1e-12)
    assert twap.coverage == 1.0


@given(series(), st.integers(0, 10_000), st.integers(1, 5_000), st.integers(1, 5_000))
def test_twap_splits_over_adjacent_windows(points: list[Point], start: int, first: int, second: int) -> None:
    # The area under the price over [a, c] is the areas over [a, b] and [b, c].
    middle, end = start + first, start + first + second
    whole = time_weighted_average(points, start, end)
    left = time_weighted_average(points, start, middle)
    right = time_weighted_average(points, middle, end)
    if whole is None:
        assert left is None
        assert right is None
        return
    area = whole.price * whole.covered_seconds
    parts = sum(part.price * part.covered_seconds for part in (left, right) if part is not None)
    assert area == pytest.approx(parts, rel=1e-9)
    assert whole.covered_seconds == sum(p.covered_seconds for p in (left, right) if p is not None)


@given(series(), st.integers(-100, 10_000), st.integers(1, 5_000))
def test_twap_lies_between_the_prices_that_held(points: list[Point], start: int, length: int) -> None:
    twap = time_weighted_average(points, start, start + length)
    held = [price for time, price in points if start < time < start + length]
    opening = in_force(points, start)
    held += [opening[1]] if opening is not None else []
    if twap is None:
        assert held == []
        return
    assert min(held) <= twap.price <= max(held)
    assert 0 < twap.coverage <= 1


def test_twap_weighs_each_price_by_how_long_it_held_and_clips_the_edges() -> None:
    points = [(0, 10.0), (100, 20.0), (130, 40.0)]
    twap = time_weighted_average(points, 50, 150)
    assert twap is not None
    # 10 held 50 s of the window, 20 for 30 s, 40 for 20 s.
    assert twap.price == pytest.approx((10 * 50 + 20 * 30 + 40 * 20) / 100)
    assert (twap.covered_seconds, twap.points, twap.coverage) == (100, 3, 1.0)
    late = time_weighted_average(points, -50, 50)
    assert late is not None
    assert (late.price, late.covered_seconds, late.coverage) == (10.0, 50, 0.5)
    assert time_weighted_average(points, -50, 0) is None


@given(prices, prices, st.lists(st.floats(0.001, 1_000), min_size=1, max_size=200))
def test_ema_converges_to_a_constant_price(start: float, price: float, steps: list[float]) -> None:
    ema, now = start, 0.0
    for dt in steps:
        now += dt
        ema = ema_step(ema, now - dt, price, now, half_life=1.0)
    expected = price + (start - price) * math.exp(-now * math.log(2))
    assert ema == pytest.approx(expected, rel=1e-9, abs=1e-9 * max(start, price))
    assert min(start, price) * (1 - 1e-12) <= ema <= max(start, price) * (1 + 1e-12)


@given(prices, prices, st.floats(0.001, 1_000), st.floats(0.001, 1_000), st.floats(0.1, 1_000))
def test_ema_irregular_steps_equal_one_long_step(
    start: float, price: float, first: float, second: float, half_life: float
) -> None:
    stepped = ema_step(ema_step(start, 0.0, price, first, half_life), first, price, first + second, half_life)
    at_once = ema_step(start, 0.0, price, first + second, half_life)
    assert stepped == pytest.approx(at_once, rel=1e-9, abs=1e-12 * max(start, price))


def test_a_price_held_one_half_life_moves_the_ema_half_way() -> None:
    assert ema_step(100.0, 0.0, 200.0, 60.0, half_life=60.0) == pytest.approx(150.0)
    assert ema_step(None, 0.0, 200.0, 60.0, half_life=60.0) == 200.0
    assert ema_step(100.0, 60.0, 200.0, 60.0, half_life=60.0) == 100.0  # no time passed


@given(prices, prices)
def test_relative_change(before: float, now: float) -> None:
    change = relative_change(before, now)
    assume(change is not None)
    assert change == pytest.approx(now / before - 1)
    assert relative_change(0.0, now) is None
