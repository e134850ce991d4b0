"""Records for the rollup tests, unit and integration alike: a day's start and the table's view
of what was written."""

from __future__ import annotations

from aggserver.history.records import HistoryRecord

__all__ = ["BASE", "DAY", "record", "stored"]

BASE = 1_790_035_200  # midnight UTC
DAY = 86_400


def record(timestamp: int, price: float, asset: str = "btcusdt") -> HistoryRecord:
    return HistoryRecord(asset=asset, timestamp=timestamp, price=price, updated_at=timestamp + 2)


def stored(records: list[HistoryRecord]) -> list[HistoryRecord]:
    """What the table holds after ``records`` were written in this order: one item per key,
    the last write winning."""
    return list({(r.asset, r.timestamp): r for r in records}.values())
