"""Candles and page cursors as pure rules: candles by hand, every record accounted for, a cursor bound to
its asset."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggserver.domain.candles import Candle, build_candles
from aggserver.history.records import HistoryRecord
from aggserver.web.params import decode_cursor, encode_cursor


def record(timestamp: int, price: float, asset: str = "btcusdt") -> HistoryRecord:
    return HistoryRecord(asset=asset, timestamp=timestamp, price=price, updated_at=timestamp + 1)


def test_cursor_round_trips_and_is_bound_to_its_asset() -> None:
    cursor = encode_cursor("btcusdt", 1_790_000_000)
    assert decode_cursor(cursor, "btcusdt") == 1_790_000_000
    with pytest.raises(ValueError, match="cursor"):
        decode_cursor(cursor, "ethusdt")
    with pytest.raises(ValueError, match="cursor"):
        decode_cursor("not base64!", "btcusdt")


def test_candles_by_hand() -> None:
    records = [record(125, 3.0), record(61, 2.0), record(0, 1.0), record(119, 4.0)]
    assert build_candles(records, 60) == [
        Candle(start=0, open=1.0, high=1.0, low=1.0, close=1.0, samples=1),
        Candle(start=60, open=2.0, high=4.0, low=2.0, close=4.0, samples=2),
        Candle(start=120, open=3.0, high=3.0, low=3.0, close=3.0, samples=1),
    ]


history_records = st.lists(
    st.builds(
        record,
        st.integers(min_value=0, max_value=100_000),
        st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False),
    ),
    unique_by=lambda r: r.timestamp,
    max_size=60,
)


@given(history_records, st.sampled_from([60, 300, 3600]))
def test_candles_account_for_every_record(records: list[HistoryRecord], interval: int) -> None:
    candles = build_candles(records, interval)
    assert sum(c.samples for c in candles) == len(records)
    assert [c.start for c in candles] == sorted({r.timestamp - r.timestamp % interval for r in records})
    for candle in candles:
        inside = sorted(
            (r for r in records if candle.start <= r.timestamp < candle.start + interval),
            key=lambda r: r.timestamp,
        )
        assert candle.start % interval == 0
        assert candle.low <= min(candle.open, candle.close) <= max(candle.open, candle.close) <= candle.high
        assert (candle.open, candle.close) == (inside[0].price, inside[-1].price)
        assert (candle.low, candle.high) == (min(r.price for r in inside), max(r.price for r in inside))
