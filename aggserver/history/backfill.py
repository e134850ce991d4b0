"""``aggserver backfill-candles``: the rollups of history recorded before they existed, from each
asset's records read once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from aggserver.domain.candles import INTERVALS, Candle, build_candles
from aggserver.history.dynamo import lean_dynamo_client
from aggserver.history.lean_query import query_pages
from aggserver.history.records import HistoryRecord
from aggserver.history.rollups.blocks import (
    block_start,
    encode_block,
    ensure_rollup_table,
    rollup_table,
    write_items,
)

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

    from aggserver.settings import Settings

__all__ = ["backfill_asset", "backfill_candles"]


async def backfill_candles(settings: Settings, assets: Sequence[str], out: TextIO) -> int:
    """The ``backfill-candles`` command: every asset's rollups from its records, a few assets at
    a time; prints a line per asset with records and prints the total."""
    limit = asyncio.Semaphore(4)
    total = 0
    async with lean_dynamo_client(settings) as client:
        await ensure_rollup_table(client, settings.prices_table)

        async def one(asset: str) -> None:
            nonlocal total
            async with limit:
                written = await backfill_asset(client, settings.prices_table, asset)
            if written:
                total += written
                print(f"{asset}: {written:,} items", file=out, flush=True)

        await asyncio.gather(*(one(asset) for asset in assets))
    print(
        f"backfill-candles: {total:,} rollup items written for {len(assets):,} assets", file=out, flush=True
    )
    return total


async def backfill_asset(
    client: DynamoDBClient,
    prices_table: str,
    asset: str,
    *,
    page: int = 5_000,
) -> int:
    """Write every rollup of ``asset`` from its raw records (oldest first, a page at a time, a
    finished day's blocks at a time, the 1d blocks at the end); the number of items written.
    Idempotent: the items are what the writers' recomputing makes of the same records."""
    table = rollup_table(prices_table)
    day = INTERVALS["1d"]
    pending: list[HistoryRecord] = []
    days: list[Candle] = []
    written = 0

    def blocks(name: str, candles: list[Candle]) -> list[dict[str, Any]]:
        grouped: dict[int, list[Candle]] = {}
        for candle in candles:
            grouped.setdefault(block_start(name, candle.start), []).append(candle)
        return [encode_block(asset, name, start, inside) for start, inside in grouped.items()]

    async def flush(records: list[HistoryRecord]) -> None:
        # Every block but the 1d ones lies inside one day.
        nonlocal written
        items = [
            item
            for name, interval in INTERVALS.items()
            if name != "1d"
            for item in blocks(name, build_candles(records, interval))
        ]
        days.extend(build_candles(records, day))
        await write_items(client, table, items)
        written += len(items)

    query: dict[str, Any] = {
        "TableName": prices_table,
        "KeyConditionExpression": "asset = :asset",
        "ExpressionAttributeValues": {":asset": {"S": asset}},
    }
    async for answer in query_pages(client, query, page_items=page):
        for record in map(HistoryRecord.from_item, answer.items):
            # Records come oldest first: a record of a later day closes the days before it.
            if pending and record.timestamp // day != pending[-1].timestamp // day:
                await flush(pending)
                pending = []
            pending.append(record)
    if pending:
        await flush(pending)
    day_blocks = blocks("1d", days)
    await write_items(client, table, day_blocks)
    return written + len(day_blocks)
