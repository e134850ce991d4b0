"""Reading candles from the rollups up to where they are settled, and computing the newer ones from
the level below down to the raw records."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aggserver.domain.candles import INTERVALS, LEVELS, Candle, build_candles, merge_candles
from aggserver.history.dynamo import range_query
from aggserver.history.lean_query import PAGE_ITEMS, decode_items, query_pages
from aggserver.history.records import HistoryRecord, record_decoder
from aggserver.history.rollups.blocks import (
    block_start,
    decode_block,
    rollup_table,
    series_key,
    settled_before,
)

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

__all__ = ["READ_TIMEOUT", "CandleRead", "ReadCount", "read_candles"]


READ_TIMEOUT = 5.0


class ReadCount:
    """What a read cost, across the levels it went through: DynamoDB items returned, and rows
    decoded (a raw record or a candle of a block: the work on the caller's loop)."""

    __slots__ = ("items", "rows")

    def __init__(self) -> None:
        self.items = 0
        self.rows = 0


class CandleRead:
    """One read of an asset's candles at the moment ``now``: settled candles from the rollups,
    newer ones from the level below, down to the raw records; ``cost`` adds up what it read."""

    def __init__(self, client: DynamoDBClient, prices_table: str, asset: str, *, now: float) -> None:
        self._client = client
        self._prices_table = prices_table
        self._asset = asset
        self._now = now
        self.cost = ReadCount()

    async def candles(self, name: str, first: int, last: int) -> list[Candle]:
        """Candles of ``name`` whose start lies in [first, last] (multiples of the interval)."""
        settled = settled_before(name, self._now)
        older = await self.stored(name, first, min(last, settled - INTERVALS[name]))
        return older + await self.computed(name, max(first, settled), last)

    async def computed(self, name: str, first: int, last: int) -> list[Candle]:
        """Candles of ``name`` starting in [first, last] computed from the level below (from the
        raw records for 1m), not from their own rollups."""
        if last < first:
            return []
        interval = INTERVALS[name]
        below = LEVELS[name]
        if below is None:
            return build_candles(await self.records(first, last + interval - 1), interval)
        return merge_candles(await self.candles(below, first, last + interval - INTERVALS[below]), interval)

    async def stored(self, name: str, first: int, last: int) -> list[Candle]:
        """The stored candles of ``name`` starting in [first, last], oldest first."""
        if last < first:
            return []
        interval = INTERVALS[name]
        items = await self._query_all(
            {
                "TableName": rollup_table(self._prices_table),
                "KeyConditionExpression": "series = :series AND #start BETWEEN :first AND :last",
                "ExpressionAttributeNames": {"#start": "start"},
                "ExpressionAttributeValues": {
                    ":series": {"S": series_key(self._asset, name)},
                    ":first": {"N": str(block_start(name, first))},
                    ":last": {"N": str(last)},
                },
                "ConsistentRead": True,
            }
        )
        blocks = await decode_items(items, lambda item: decode_block(item, interval))
        candles = [candle for block in blocks for candle in block]
        self.cost.rows += len(candles)
        return [c for c in candles if first <= c.start <= last]

    async def records(self, first: int, last: int) -> list[HistoryRecord]:
        """The raw records with first <= timestamp <= last, oldest first."""
        if last < first:
            return []
        query = range_query(self._prices_table, self._asset, first, last, newest_first=False)
        items = await self._query_all({**query, "ConsistentRead": True})
        self.cost.rows += len(items)
        return await decode_items(items, record_decoder(self._asset))

    async def _query_all(self, query: dict[str, Any]) -> list[dict[str, dict[str, str]]]:
        items: list[dict[str, dict[str, str]]] = []
        async for answer in query_pages(self._client, query, page_items=PAGE_ITEMS, timeout=READ_TIMEOUT):
            items.extend(answer.items)
            self.cost.items += len(answer.items)
        return items


async def read_candles(
    client: DynamoDBClient,
    prices_table: str,
    asset: str,
    name: str,
    first: int,
    last: int,
    *,
    now: float | None = None,
) -> tuple[list[Candle], ReadCount]:
    """Candles of ``name`` whose start lies in [first, last] (both multiples of the interval),
    oldest first, as :class:`CandleRead` finds them; and what reading them cost."""
    read = CandleRead(client, prices_table, asset, now=time.time() if now is None else now)
    return await read.candles(name, first, last), read.cost
