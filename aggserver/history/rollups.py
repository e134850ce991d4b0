"""Candle rollups: OHLC candles kept in DynamoDB, a block of them per item, so that a candle
answer reads at most one item a candle (usually one item for dozens).

The rollup table (``{PRICES_TABLE}-candles``) keys an item by ``series`` (``btcusdt#1m``) and
``start``, the start of its block: 30 1m candles (half an hour), 12 5m candles (an hour), 24 1h
candles (a day) or 30 1d candles (``ROLLUP_LEVELS``). Attribute ``c`` lists the block's candles
that have records, one ``offset open high low close samples`` each, prices as the records hold
them. An item is never updated in place: it is recomputed whole, a 1m block from the raw records
of its half hour and every longer one from the candles of the level below (``candles.LEVELS``),
which :func:`candles.merge_candles` makes equal to the candles of the raw records. Recomputing
from what is stored is what makes it idempotent: duplicates, retries and records arriving out of
order all end in the same items.

Which blocks need recomputing is kept in Redis, a sorted set per interval, members
``asset|start`` scored by the time (ms) they become due. A history writer marks the block of
every record it has written before it acknowledges the record (so a SIGKILL loses no mark), and
a mark never moves later (``ZADD LT``): every record reaching a block during its level's delay
joins one recompute, which is what keeps the writes few. Writers claim due marks by pushing them
``CLAIM_LEASE_MS`` into the future (one script, so two writers never claim the same mark),
recompute, write, mark the parent blocks, and release only marks nobody re-marked meanwhile; a
writer that dies holding marks leaves them due again once the lease runs out.

Reads (:func:`read_candles`) take candles from the rollups up to where they are settled (every
record written by then is in them: :func:`settled_before`) and compute newer ones from the level
below, down to the raw records of the last minutes, so an answer is as current as the records.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from aggserver.domain.candles import INTERVALS, LEVELS, Candle, build_candles, merge_candles
from aggserver.history.dynamo import MAX_BATCH, describe_error, ensure_table, lean_dynamo_client, range_query
from aggserver.history.lean_query import PAGE_ITEMS, decode_items, query_answer
from aggserver.history.outbox import OutboxKeys
from aggserver.history.records import HistoryRecord, record_decoder
from aggserver.process.backoff import Backoff
from aggserver.store.connection import RedisClient

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

    from aggserver.settings import Settings

__all__ = [
    "ROLLUP_LEVELS",
    "CandleRead",
    "ReadCount",
    "RollupLevel",
    "RollupMaintainer",
    "backfill_asset",
    "backfill_candles",
    "ensure_rollup_table",
    "read_candles",
    "rollup_table",
    "settled_before",
]

log = logging.getLogger(__name__)


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
# How often a writer looks for due marks, and how many of each interval it takes at a time.
PASS_SECONDS = 5.0
PASS_LIMIT = 500
# A claimed mark is due again after this long unless its recompute released it.
CLAIM_LEASE_MS = 120_000
READ_TIMEOUT = 5.0

# Due marks, each pushed to ARGV[2] (the lease's end) so no other writer takes them; at most ARGV[3].
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', ARGV[2], member) end
return due
"""
# Remove the marks still scored ARGV[1] (claimed by us and not marked again since).
_RELEASE = """
local removed = 0
for i = 2, #ARGV do
  if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[i]) or -1) == tonumber(ARGV[1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
"""


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


def _series(asset: str, name: str) -> str:
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
    return {"series": {"S": _series(asset, name)}, "start": {"N": str(start)}, "c": {"S": lines}}


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
                    ":series": {"S": _series(self._asset, name)},
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
        while True:
            async with asyncio.timeout(READ_TIMEOUT):
                response = await self._client.query(**query, Limit=PAGE_ITEMS)
            answer = query_answer(response)
            items.extend(answer.items)
            self.cost.items += len(answer.items)
            if answer.last_key is None:
                return items
            query["ExclusiveStartKey"] = answer.last_key


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


class RollupMaintainer:
    """A history writer's part in the rollups: marking what it wrote, and recomputing due marks."""

    def __init__(
        self,
        redis: RedisClient,
        dynamo: DynamoDBClient,
        prices_table: str,
        *,
        cluster: bool = False,
        concurrency: int = 8,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._dynamo = dynamo
        self._prices_table = prices_table
        self._table = rollup_table(prices_table)
        self._keys = OutboxKeys(prices_table, cluster=cluster)
        self._limit = asyncio.Semaphore(concurrency)
        self._clock = clock
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)
        self._table_ready = False
        self.written = 0

    async def mark(self, records: Iterable[HistoryRecord]) -> None:
        """Mark the 1m blocks of ``records`` for recomputing (before they are acknowledged)."""
        due = self._due("1m")
        blocks = {f"{r.asset}|{block_start('1m', r.timestamp)}": due for r in records}
        if blocks:
            await self._redis.zadd(self._keys.rollup_marks("1m"), blocks, lt=True)

    async def run_pass(self) -> int:
        """Recompute every due block, shortest interval first; the number of items written.
        DynamoDB failing leaves the claimed marks to come due again after the lease."""
        written = 0
        for name in INTERVALS:
            key = self._keys.rollup_marks(name)
            now_ms = int(self._clock() * 1000)
            lease = now_ms + CLAIM_LEASE_MS
            claimed: list[bytes] = await self._claim(keys=[key], args=[now_ms, lease, PASS_LIMIT])
            if not claimed:
                continue
            marks = [_parse_mark(member) for member in claimed]
            try:
                await self._recompute(name, marks)
            except (BotoCoreError, ClientError, TimeoutError) as exc:
                log.warning("candle rollups of %s not written (%s); will retry", name, describe_error(exc))
                return written
            parent = next((level for level, below in LEVELS.items() if below == name), None)
            if parent is not None:
                await self._redis.zadd(
                    self._keys.rollup_marks(parent),
                    {f"{asset}|{block_start(parent, start)}": self._due(parent) for asset, start in marks},
                    lt=True,
                )
            await self._release(keys=[key], args=[lease, *claimed])
            written += len(marks)
        self.written += written
        return written

    def _due(self, name: str) -> int:
        return int((self._clock() + ROLLUP_LEVELS[name].delay) * 1000)

    async def _recompute(self, name: str, marks: Sequence[tuple[str, int]]) -> None:
        if not self._table_ready:
            await ensure_rollup_table(self._dynamo, self._prices_table)
            self._table_ready = True

        now = self._clock()
        last = INTERVALS[name] * (ROLLUP_LEVELS[name].block - 1)

        async def one(asset: str, start: int) -> dict[str, Any]:
            async with self._limit:
                read = CandleRead(self._dynamo, self._prices_table, asset, now=now)
                candles = await read.computed(name, start, start + last)
            return encode_block(asset, name, start, candles)

        await write_items(
            self._dynamo, self._table, list(await asyncio.gather(*(one(a, s) for a, s in marks)))
        )


def _parse_mark(member: bytes) -> tuple[str, int]:
    asset, _, start = member.decode().partition("|")
    return asset, int(start)


async def write_items(
    dynamo: DynamoDBClient, table: str, items: list[dict[str, Any]], *, attempts: int = 8
) -> None:
    """Put ``items`` in batches, retrying what DynamoDB leaves unprocessed (with backoff)."""
    for first in range(0, len(items), MAX_BATCH):
        requests = [{"PutRequest": {"Item": item}} for item in items[first : first + MAX_BATCH]]
        backoff = Backoff(first=0.05, cap=2.0)
        for _ in range(attempts):
            response = await dynamo.batch_write_item(RequestItems={table: requests})  # type: ignore[dict-item]
            requests = response.get("UnprocessedItems", {}).get(table, [])  # type: ignore[assignment]
            if not requests:
                break
            await asyncio.sleep(backoff.next())
        else:
            raise TimeoutError(f"{len(requests)} rollups still unprocessed after {attempts} attempts")


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
        "Limit": page,
    }
    while True:
        answer = query_answer(await client.query(**query))
        for record in map(HistoryRecord.from_item, answer.items):
            # Records come oldest first: a record of a later day closes the days before it.
            if pending and record.timestamp // day != pending[-1].timestamp // day:
                await flush(pending)
                pending = []
            pending.append(record)
        if answer.last_key is None:
            break
        query["ExclusiveStartKey"] = answer.last_key
    if pending:
        await flush(pending)
    day_blocks = blocks("1d", days)
    await write_items(client, table, day_blocks)
    return written + len(day_blocks)
