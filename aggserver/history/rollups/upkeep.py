"""A history writer's part in the rollups: marking the blocks of what it wrote, claiming due marks,
recomputing them and releasing them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from aggserver.domain.candles import INTERVALS, LEVELS
from aggserver.history.dynamo import describe_error
from aggserver.history.outbox import OutboxKeys
from aggserver.history.records import HistoryRecord
from aggserver.history.rollups.blocks import (
    ROLLUP_LEVELS,
    block_start,
    encode_block,
    ensure_rollup_table,
    rollup_table,
    write_items,
)
from aggserver.history.rollups.reads import CandleRead
from aggserver.store.connection import RedisClient

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

__all__ = ["CLAIM_LEASE_MS", "PASS_LIMIT", "RollupMaintainer"]

log = logging.getLogger(__name__)

# How many due marks of each interval a writer takes at a time.
PASS_LIMIT = 500

# A claimed mark is due again after this long unless its recompute released it.
CLAIM_LEASE_MS = 120_000

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
