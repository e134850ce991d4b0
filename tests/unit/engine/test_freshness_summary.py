"""The age summary behind /status.freshness: nearest-rank percentiles of every price's age."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from aggserver.domain.aggregate import Aggregate
from aggserver.domain.price import encode_price
from aggserver.engine.freshness import price_age, summarize


@given(st.lists(st.floats(0, 1e6), min_size=1), st.integers(0, 100))
def test_percentiles_are_ages_in_order(ages: list[float], missing: int) -> None:
    summary = summarize(ages, missing)
    assert (summary["assets"], summary["missing"]) == (len(ages), missing)
    p50, p99, top = summary["p50_seconds"], summary["p99_seconds"], summary["max_seconds"]
    assert None not in (p50, p99, top)
    assert isinstance(p50, float)
    assert isinstance(p99, float)
    assert isinstance(top, float)
    assert p50 <= p99 <= top
    assert math.isclose(top, round(max(ages), 3))
    # Nearest rank: at least that share of the ages is at or below it.
    assert sum(a <= p99 + 1e-3 for a in ages) >= 0.99 * len(ages)


def test_no_prices_no_percentiles() -> None:
    assert summarize([], 3) == {
        "assets": 0,
        "missing": 3,
        "p50_seconds": None,
        "p99_seconds": None,
        "max_seconds": None,
    }


def test_age_from_milliseconds_where_the_venue_gave_them() -> None:
    precise = encode_price(
        Aggregate(asset="btcusdt", price=1.0, last_updated=100, sources=1, last_updated_ms=100_250),
        updated_at=100,
        tier="hot",
    )
    assert price_age(precise, 101.0) == ("hot", 0.75)
    whole = encode_price(
        Aggregate(asset="btcusdt", price=1.0, last_updated=100, sources=1), updated_at=100, tier="cold"
    )
    assert price_age(whole, 101.0) == ("cold", 1.0)
    assert price_age(whole, 99.0) == ("cold", 0.0)  # a clock behind the venue's: not negative
