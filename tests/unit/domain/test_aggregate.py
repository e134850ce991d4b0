"""The pure aggregation logic: quote validation and the volume-weighted average."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggserver.domain.aggregate import (
    aggregate,
    dispersion,
    volume_weighted_price,
)
from aggserver.domain.quotes import Quote


def quote(price: float, volume: float, timestamp: int = 1_700_000_000, source: str = "x") -> Quote:
    return Quote(source=source, symbol="btcusdt", price=price, volume=volume, timestamp=timestamp)


def test_volume_weighted_average_matches_hand_computation() -> None:
    quotes = [quote(100.0, 2.0), quote(110.0, 3.0), quote(120.0, 5.0)]
    # (100*2 + 110*3 + 120*5) / 10 = 113
    assert volume_weighted_price(quotes) == pytest.approx(113.0, rel=1e-15)


def test_zero_volume_everywhere_falls_back_to_plain_mean() -> None:
    assert volume_weighted_price([quote(1.0, 0.0), quote(3.0, 0.0)]) == 2.0


def test_zero_volume_quote_carries_no_weight() -> None:
    assert volume_weighted_price([quote(1.0, 0.0), quote(3.0, 5.0)]) == 3.0


def test_no_quotes_is_an_error() -> None:
    with pytest.raises(ValueError, match="no quotes"):
        volume_weighted_price([])


def test_aggregate_reports_newest_timestamp_and_source_count() -> None:
    result = aggregate("btcusdt", [quote(1.0, 1.0, 10), quote(2.0, 1.0, 30), quote(3.0, 1.0, 20)])
    assert (result.last_updated, result.sources, result.price) == (30, 3, 2.0)


def test_sub_cent_prices_keep_their_digits() -> None:
    price = 0.000012345678901234
    assert volume_weighted_price([quote(price, 7.0), quote(price, 3.0)]) == pytest.approx(price, rel=1e-12)


prices = st.floats(min_value=1e-12, max_value=1e12, allow_nan=False, allow_infinity=False)
volumes = st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False)
quote_lists = st.lists(st.builds(quote, prices, volumes), min_size=1, max_size=8)


@given(quote_lists)
def test_price_lies_within_accepted_range(quotes: list[Quote]) -> None:
    result = volume_weighted_price(quotes)
    assert min(q.price for q in quotes) <= result <= max(q.price for q in quotes)


@given(quote_lists, st.randoms(use_true_random=False))
def test_price_does_not_depend_on_quote_order(quotes: list[Quote], rnd: object) -> None:
    shuffled = list(quotes)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert volume_weighted_price(shuffled) == pytest.approx(volume_weighted_price(quotes), rel=1e-12)


@given(prices, volumes)
def test_identical_quotes_give_that_price(price: float, volume: float) -> None:
    assert volume_weighted_price([quote(price, volume)] * 3) == pytest.approx(price, rel=1e-12)


def test_dispersion_is_the_relative_spread_of_the_accepted_quotes() -> None:
    result = aggregate("btcusdt", [quote(99.0, 1.0), quote(100.0, 2.0), quote(101.0, 1.0)])
    assert result.price == pytest.approx(100.0)
    assert result.dispersion == pytest.approx(0.02)


@given(quote_lists)
def test_dispersion_is_never_negative_and_bounded_by_the_range(quotes: list[Quote]) -> None:
    price = volume_weighted_price(quotes)
    low, high = min(q.price for q in quotes), max(q.price for q in quotes)
    assert 0 <= dispersion(quotes, price) <= (high - low) / low * (1 + 1e-9)


@given(prices, volumes, st.integers(min_value=1, max_value=5))
def test_agreeing_quotes_have_no_dispersion(price: float, volume: float, count: int) -> None:
    assert aggregate("btcusdt", [quote(price, volume)] * count).dispersion == 0


@given(quote_lists, st.floats(min_value=1e-3, max_value=1e3))
def test_dispersion_does_not_change_when_every_price_is_scaled(quotes: list[Quote], factor: float) -> None:
    scaled = [quote(q.price * factor, q.volume) for q in quotes]
    before = dispersion(quotes, volume_weighted_price(quotes))
    after = dispersion(scaled, volume_weighted_price(scaled))
    assert after == pytest.approx(before, rel=1e-6, abs=1e-12)
