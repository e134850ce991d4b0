"""Records for the rollup tests, unit and integration alike: a day's start, the table's view of
what was written, and records arriving as writers deliver them (out of order, some twice)."""

from __future__ import annotations

from hypothesis import strategies as st

from aggserver.history.records import HistoryRecord

__all__ = ["BASE", "DAY", "arrivals", "record", "stored"]

BASE = 1_790_035_200  # midnight UTC
DAY = 86_400


def record(timestamp: int, price: float, asset: str = "btcusdt") -> HistoryRecord:
    return HistoryRecord(asset=asset, timestamp=timestamp, price=price, updated_at=timestamp + 2)


def stored(records: list[HistoryRecord]) -> list[HistoryRecord]:
    """What the table holds after ``records`` were written in this order: one item per key,
    the last write winning."""
    return list({(r.asset, r.timestamp): r for r in records}.values())


# Records over three days in any order, some delivered again (as retries and takeovers do).
arrivals = st.lists(
    st.builds(
        record,
        st.integers(min_value=BASE, max_value=BASE + 3 * DAY),
        st.sampled_from([1.0, 2.5, 3.0, 99.0, 100.0, 1e-6, 1e9]),
    ),
    max_size=80,
).flatmap(
    lambda rs: st.lists(st.sampled_from(rs), max_size=40).map(lambda dupes: rs + dupes) if rs else st.just(rs)
)
