"""OHLC candles from history records: pure, no I/O.

A candle covers [start, start + interval) with start a multiple of the interval in unix seconds
(so 1h candles start on the hour, 1d candles at midnight, UTC). Open is the price of the earliest
record inside it, close of the latest, high and low the extremes, samples the number of records.
Intervals without a record are left out, not filled: a gap in the answer is a gap in the data.

Each interval but the shortest is made of whole candles of the one below it (``LEVELS``), so a
candle can be computed from its records or, equally, from the candles of the level below
(:func:`merge_candles`): that is how the stored rollups (``history/rollups/``) stay equal to candles
computed from the raw records.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aggserver.history.records import HistoryRecord

__all__ = ["INTERVALS", "LEVELS", "Candle", "build_candles", "merge_candles"]

INTERVALS = {"1m": 60, "5m": 300, "1h": 3_600, "1d": 86_400}
# Each interval and the one its candles are merged from (None: from the records).
LEVELS: dict[str, str | None] = {"1m": None, "5m": "1m", "1h": "5m", "1d": "1h"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Candle:
    start: int
    open: float
    high: float
    low: float
    close: float
    samples: int


def build_candles(records: Iterable[HistoryRecord], interval: int) -> list[Candle]:
    """Candles of ``interval`` seconds from ``records`` in any order, oldest candle first."""
    buckets: dict[int, list[HistoryRecord]] = {}
    for record in records:
        buckets.setdefault(record.timestamp - record.timestamp % interval, []).append(record)
    candles = []
    for start in sorted(buckets):
        inside = sorted(buckets[start], key=lambda record: record.timestamp)
        prices = [record.price for record in inside]
        candles.append(
            Candle(
                start=start,
                open=inside[0].price,
                high=max(prices),
                low=min(prices),
                close=inside[-1].price,
                samples=len(inside),
            )
        )
    return candles


def merge_candles(candles: Iterable[Candle], interval: int) -> list[Candle]:
    """Candles of ``interval`` seconds from shorter candles that each lie inside one of them
    (as ``LEVELS`` makes sure); equal to :func:`build_candles` of the records behind them."""
    buckets: dict[int, list[Candle]] = {}
    for candle in candles:
        buckets.setdefault(candle.start - candle.start % interval, []).append(candle)
    merged = []
    for start in sorted(buckets):
        inside = sorted(buckets[start], key=lambda candle: candle.start)
        merged.append(
            Candle(
                start=start,
                open=inside[0].open,
                high=max(candle.high for candle in inside),
                low=min(candle.low for candle in inside),
                close=inside[-1].close,
                samples=sum(candle.samples for candle in inside),
            )
        )
    return merged
