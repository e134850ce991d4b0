"""Reading history back for the API, bounded so that it cannot starve price reads.

Records and candles are decoded on the loop that also answers ``GET /prices``, so a process lets
at most ``max_in_flight`` history queries run at once and decodes at most ``records_per_second``
rows a second (records, or candles of rollup blocks): a token bucket in which each query reserves
what it may return and settles afterwards for what it read. Past either bound requests are
refused with 429 and ``Retry-After`` instead of queueing. Each client's own share is its request
budget (``web/budget.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from aggserver.domain.candles import INTERVALS, Candle
from aggserver.domain.oracle import Point
from aggserver.errors import HistoryBusy, HistoryUnavailable
from aggserver.history.dynamo import describe_error, range_query
from aggserver.history.lean_query import decode_items, query_pages
from aggserver.history.records import HistoryRecord, record_decoder
from aggserver.history.rollups.reads import read_candles
from aggserver.web.budget import TokenBucket

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

__all__ = ["HistoryQueries"]

QUERY_TIMEOUT = 5.0
DAY = 86_400
# A TWAP over at most this window is computed from the records themselves, if there are at most
# TWAP_MAX_RECORDS of them; longer windows from candle closes (their cost stays bounded).
TWAP_RECORDS_SECONDS = 3_600
TWAP_MAX_RECORDS = 5_000


class HistoryQueries:
    """An asset's records, newest first, in bounded pages; and its candles from the rollups."""

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        *,
        max_in_flight: int = 4,
        records_per_second: float = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._table = table
        self._max_in_flight = max_in_flight
        self._clock = clock
        self._decoded = TokenBucket(rate=records_per_second, burst=records_per_second, now=clock())
        self._rate = records_per_second
        self.in_flight = 0
        self.refused: Counter[str] = Counter()  # by reason: in_flight, records

    @contextlib.contextmanager
    def _slot(self, reserve: int) -> Iterator[None]:
        if self.in_flight >= self._max_in_flight:
            self.refused["in_flight"] += 1
            raise HistoryBusy(
                f"{self.in_flight} history queries in flight",
                answer="Too many history queries in flight, try again shortly",
            )
        wait = self._decoded.take(reserve, self._clock())
        if wait:
            self.refused["records"] += 1
            raise HistoryBusy(
                f"history read budget spent for {wait:.1f} s",
                answer="This server reads as much history as it may, try again shortly",
                retry_after=math.ceil(wait),
            )
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    def _settle(self, decoded: int, reserved: int) -> None:
        """A query pays what it decoded: what it reserved and did not use goes back, what it read
        beyond that is a debt the next queries wait for."""
        self._decoded.tokens = min(self._rate, self._decoded.tokens + reserved - decoded)

    async def page(
        self, asset: str, *, start: int, end: int, limit: int, before: int | None = None
    ) -> tuple[list[HistoryRecord], bool]:
        """Up to ``limit`` records with start <= timestamp <= end (and < ``before``), newest
        first, and whether more follow."""
        if before is not None:
            end = min(end, before - 1)
        if end < start:
            return [], False
        with self._slot(limit + 1):
            records = await self._query(asset, start, end, wanted=limit + 1)
        self._settle(len(records), limit + 1)
        return records[:limit], len(records) > limit

    async def record_at(self, asset: str, at: int, *, max_gap: int) -> HistoryRecord | None:
        """The record in force at ``at``: the newest at or before it, if at most ``max_gap``
        seconds before it (one Query of one item)."""
        with self._slot(1):
            records = await self._query(asset, max(0, at - max_gap), at, wanted=1)
        self._settle(len(records), 1)
        return records[0] if records else None

    async def price_points(self, asset: str, start: int, end: int) -> tuple[list[Point], str]:
        """The prices that held in [start, end] as (since, price) points, oldest first, with the
        one in force at ``start``, and their resolution: ``records`` for windows up to
        TWAP_RECORDS_SECONDS holding at most TWAP_MAX_RECORDS records (the one in force recorded
        up to a day before the start), else candle closes (``1m`` up to a day, ``5m`` beyond;
        the one in force up to a window, at most a day, before), each close holding from its
        candle's end."""
        if end - start <= TWAP_RECORDS_SECONDS:
            opening = await self.record_at(asset, start, max_gap=DAY)
            with self._slot(TWAP_MAX_RECORDS + 1):
                inside = await self._query(asset, start + 1, end, wanted=TWAP_MAX_RECORDS + 1)
            self._settle(len(inside), TWAP_MAX_RECORDS + 1)
            if len(inside) <= TWAP_MAX_RECORDS:
                held = [*inside, opening] if opening is not None else inside
                return [(r.timestamp, r.price) for r in reversed(held)], "records"
        lookback = min(end - start, DAY)
        name = "1m" if end - start <= DAY else "5m"
        interval = INTERVALS[name]
        first = start - lookback - interval
        candles = await self.candles(asset, name, first=first - first % interval, last=end - end % interval)
        return [(c.start + interval, c.close) for c in candles], name

    async def candles(self, asset: str, name: str, *, first: int, last: int) -> list[Candle]:
        """Candles of ``name`` starting in [first, last] (multiples of its interval), oldest first."""
        reserve = (last - first) // INTERVALS[name] + 1
        with self._slot(reserve):
            try:
                async with asyncio.timeout(QUERY_TIMEOUT * 2):
                    candles, cost = await read_candles(self._client, self._table, asset, name, first, last)
            except (BotoCoreError, ClientError, TimeoutError) as exc:
                raise HistoryUnavailable(f"candle query failed: {describe_error(exc)}") from exc
        self._settle(cost.rows, reserve)
        return candles

    async def _query(self, asset: str, start: int, end: int, *, wanted: int) -> list[HistoryRecord]:
        records: list[HistoryRecord] = []
        if wanted <= 0:
            return records
        query = range_query(self._table, asset, start, end, newest_first=True)
        decode = record_decoder(asset)
        # Page after page until enough or nothing is left, each asking only for what is missing.
        try:
            async for answer in query_pages(
                self._client, query, page_items=wanted, wanted=wanted, timeout=QUERY_TIMEOUT
            ):
                records.extend(await decode_items(answer.items, decode))
        except (BotoCoreError, ClientError, TimeoutError) as exc:
            raise HistoryUnavailable(f"history query failed: {describe_error(exc)}") from exc
        return records
