"""OHLC candles from history records: pure, no I/O.

A candle covers [start, start + interval) with start a multiple of the interval in unix seconds
(so 1h candles start on the hour, UTC). Open is the price of the earliest record inside it, close
of the latest, high and low the extremes, samples the number of records. Intervals without a
record are left out, not filled: a gap in the answer is a gap in the data. Candles at the edges
of the asked range cover only the part of their interval inside it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aggserver.history import HistoryRecord

__all__ = ["INTERVALS", "Candle", "build_candles"]

INTERVALS = {"1m": 60, "5m": 300, "1h": 3_600}


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
