"""How candle rollups are stored: the levels, the table, the blocks an item holds, and writing
them (see the package's docstring)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aggserver.domain.candles import INTERVALS, LEVELS, Candle
from aggserver.history.dynamo import MAX_BATCH, ensure_table, put_batch
from aggserver.process.backoff import Backoff

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

__all__ = [
    "PASS_SECONDS",
    "RECORD_LAG_SECONDS",
    "ROLLUP_LEVELS",
    "RollupLevel",
    "block_start",
    "decode_block",
    "encode_block",
    "ensure_rollup_table",
    "rollup_table",
    "series_key",
    "settled_before",
    "write_items",
]


@dataclass(frozen=True, slots=True)
class RollupLevel:
    """How one interval is stored: ``block`` candles an item, each block recomputed at most once
    a ``delay`` (seconds from its first mark: later records join the same recompute)."""

    block: int
    delay: float


# Blocks nest (each inside one block of the next level) and hold about 1 KB when full. Delays
# trade DynamoDB writes for the span a read computes from the level below; `python -m
# bench.history_cost` prints what they cost (README, "Candles from rollups").
ROLLUP_LEVELS = {
    "1m": RollupLevel(block=30, delay=900.0),
    "5m": RollupLevel(block=12, delay=1_800.0),
    "1h": RollupLevel(block=24, delay=10_800.0),
    "1d": RollupLevel(block=30, delay=43_200.0),
}

# A record carries the exchanges' time, which trails the moment it is written by the quote's age
# (at most QUOTE_MAX_AGE_SECONDS, 120) and the outbox's queue (normally well under a second):
# candles this much older than their levels' delays are settled.
RECORD_LAG_SECONDS = 180.0
# How often a writer looks for due marks (a settled candle allows for one pass more).
PASS_SECONDS = 5.0


def rollup_table(prices_table: str) -> str:
    return f"{prices_table}-candles"


async def ensure_rollup_table(client: DynamoDBClient, prices_table: str, *, timeout: float = 30.0) -> bool:
    return await ensure_table(client, rollup_table(prices_table), key=("series", "start"), timeout=timeout)


def settled_before(name: str, now: float) -> int:
    """The start of the first candle of ``name`` that the rollups may not hold complete yet."""
    lag = RECORD_LAG_SECONDS
    level: str | None = name
    while level is not None:
        lag += ROLLUP_LEVELS[level].delay + PASS_SECONDS
        level = LEVELS[level]
    interval = INTERVALS[name]
    # A candle is settled once its whole interval lies more than the lag in the past.
    return int(now - lag) // interval * interval


def series_key(asset: str, name: str) -> str:
    return f"{asset}#{name}"


def block_start(name: str, start: int) -> int:
    """The start of the block (item) holding the candle of ``name`` that starts at ``start``."""
    span = INTERVALS[name] * ROLLUP_LEVELS[name].block
    return start - start % span


def encode_block(asset: str, name: str, start: int, candles: Sequence[Candle]) -> dict[str, Any]:
    """The item of the block starting at ``start``: its candles that have records."""
    interval = INTERVALS[name]
    lines = ";".join(
        f"{(c.start - start) // interval} {c.open!r} {c.high!r} {c.low!r} {c.close!r} {c.samples}"
        for c in candles
    )
    return {"series": {"S": series_key(asset, name)}, "start": {"N": str(start)}, "c": {"S": lines}}


def decode_block(item: dict[str, dict[str, str]], interval: int) -> list[Candle]:
    start = int(item["start"]["N"])
    candles = []
    for line in item["c"]["S"].split(";") if item["c"]["S"] else ():
        offset, open_, high, low, close, samples = line.split(" ")
        candles.append(
            Candle(
                start=start + int(offset) * interval,
                open=float(open_),
                high=float(high),
                low=float(low),
                close=float(close),
                samples=int(samples),
            )
        )
    return candles


async def write_items(
    dynamo: DynamoDBClient, table: str, items: list[dict[str, Any]], *, attempts: int = 8
) -> None:
    """Put ``items`` in batches, retrying what DynamoDB leaves unprocessed (with backoff)."""
    for first in range(0, len(items), MAX_BATCH):
        batch = items[first : first + MAX_BATCH]
        await put_batch(dynamo, table, batch, backoff=Backoff(first=0.05, cap=2.0), attempts=attempts)
