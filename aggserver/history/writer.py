"""History writers: a Redis consumer group that moves the outbox into DynamoDB.

Each writer reads entries with XREADGROUP, writes their records with BatchWriteItem (25 items a
call, a few calls in flight), retries whatever DynamoDB leaves unprocessed or refuses, and only
then acknowledges and deletes the entries. A writer that dies holding entries leaves them
pending in the group; any other writer takes them over (XAUTOCLAIM) once they have been idle for
``claim_idle_seconds``, so a writer still retrying refreshes its claim well before that. A
record's key is (asset, timestamp) and its item is the same on every write, so writing one twice
is harmless. Any number of writers, in any processes on any hosts, share the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from aggserver.history.dynamo import MAX_BATCH, describe_error, ensure_table, put_batch
from aggserver.history.outbox import GROUP, OutboxKeys, decode_entry
from aggserver.history.records import HistoryRecord
from aggserver.history.rollups.blocks import PASS_SECONDS as ROLLUP_PASS_SECONDS
from aggserver.history.rollups.upkeep import RollupMaintainer
from aggserver.process.backoff import Backoff
from aggserver.process.tasks import stop_task
from aggserver.store.connection import REDIS_FAILURES, RedisClient

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

__all__ = ["HistoryWriter", "consumer_name"]

log = logging.getLogger(__name__)

BACKOFF_START = 0.05
BACKOFF_MAX = 5.0
HEARTBEAT_SECONDS = 2.0
# A consumer gone this long with nothing pending is removed from the group.
FORGET_CONSUMER_SECONDS = 600.0
# On a cluster the streams are read one by one without blocking; this long between empty passes.
CLUSTER_POLL_SECONDS = 0.2


def consumer_name() -> str:
    """Unique per process and readable in XINFO: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class Entry:
    stream: str
    entry_id: bytes
    record: HistoryRecord | None


class HistoryWriter:
    """One consumer of the outbox group, writing to one DynamoDB table."""

    def __init__(
        self,
        redis: RedisClient,
        dynamo: DynamoDBClient,
        table: str,
        *,
        consumer: str | None = None,
        batch_size: int = MAX_BATCH,
        concurrency: int = 4,
        read_count: int = 500,
        claim_idle_seconds: float = 30.0,
        block_ms: int = 1_000,
        table_ready: bool = False,
        rollups: bool = True,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self._redis = redis
        self._dynamo = dynamo
        self._table = table
        self.consumer = consumer or consumer_name()
        self._cluster = isinstance(redis, RedisCluster)
        self._keys = OutboxKeys(table, cluster=self._cluster)
        self._streams = self._keys.streams()
        self._batch_size = min(batch_size, MAX_BATCH)
        self._concurrency = concurrency
        self._read_count = read_count
        self._claim_idle = claim_idle_seconds
        self._block_ms = block_ms
        self._table_ready = table_ready
        self._sleep = sleep
        self._stopping = False
        self._claim_cursors: dict[str, str] = dict.fromkeys(self._streams, "0-0")
        # Candle rollups follow the records this writer writes (history/rollups/upkeep.py).
        self.rollups = RollupMaintainer(redis, dynamo, table, cluster=self._cluster) if rollups else None
        # This writer's own figures; the shared ones are in Redis (OutboxKeys.stats).
        self.written = 0
        self.retried = 0
        self.reclaimed = 0
        self.holding = 0
        # When each periodic chore of run() is next due (monotonic seconds).
        self._next_beat = 0.0
        self._next_claim = 0.0
        self._next_rollup = 0.0
        self._groups_missing = False

    async def run(self) -> None:
        """Write until stopped; once stopped, until nothing new is left to read (see :meth:`drain`)."""
        backoff = Backoff(first=BACKOFF_START, cap=BACKOFF_MAX)
        while True:
            try:
                if await self._step():
                    return
                backoff.reset()
            except REDIS_FAILURES as exc:
                if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                    # Redis lost them (restarted without its data): made again before reading.
                    self._groups_missing = True
                    continue
                if self._stopping:
                    # Whatever is left is in Redis, for the next writer: nothing to wait for.
                    log.warning("history writer: Redis unavailable (%s) while stopping", type(exc).__name__)
                    return
                log.warning("history writer: Redis unavailable (%s); retrying", type(exc).__name__)
                await self._sleep(backoff.next())

    async def _step(self) -> bool:
        """The chores that are due, then one batch written; True once stopped with nothing left."""
        if self._groups_missing:
            await self._create_groups()
            self._groups_missing = False
        now = time.monotonic()
        if now >= self._next_beat:
            await self._heartbeat()
            self._next_beat = now + HEARTBEAT_SECONDS
        if self.rollups is not None and not self._stopping and now >= self._next_rollup:
            # Bounded (PASS_LIMIT marks an interval), between batches of the outbox.
            await self.rollups.run_pass()
            self._next_rollup = now + ROLLUP_PASS_SECONDS
        entries: list[Entry] = []
        if now >= self._next_claim:
            entries = await self._reclaim()
            if not entries:
                self._next_claim = now + self._claim_idle / 2
        if not entries:
            entries = await self._read()
        if entries:
            await self._write(entries)
            return False
        if self._stopping:
            await self._leave()
            return True
        return False

    async def drain(self, task: asyncio.Task[None], *, timeout: float) -> None:
        """Stop reading once the outbox is empty; wait for that at most ``timeout`` seconds.
        Entries not written by then stay in the outbox for the next writer: nothing is lost."""
        self._stopping = True
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            log.warning(
                "history writer stopped after %.0f s with work left; the outbox keeps it for the next writer",
                timeout,
            )
            await stop_task(task)

    async def _create_groups(self) -> None:
        for stream in self._streams:
            try:
                await self._redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _heartbeat(self) -> None:
        now = time.time()
        await self._redis.zadd(self._keys.writers, {self.consumer: now})
        await self._redis.zremrangebyscore(self._keys.writers, "-inf", now - FORGET_CONSUMER_SECONDS)

    async def _leave(self) -> None:
        with contextlib.suppress(*REDIS_FAILURES):
            await self._redis.zrem(self._keys.writers, self.consumer)
            for stream in self._streams:
                await self._redis.xgroup_delconsumer(stream, GROUP, self.consumer)

    async def _read(self) -> list[Entry]:
        block = None if self._stopping else self._block_ms
        if not self._cluster:
            reply = await self._redis.xreadgroup(
                GROUP, self.consumer, dict.fromkeys(self._streams, ">"), count=self._read_count, block=block
            )
            return _entries(reply)
        # A cluster refuses a read across slots: each stream alone, none blocking.
        entries: list[Entry] = []
        for stream in self._streams:
            reply = await self._redis.xreadgroup(GROUP, self.consumer, {stream: ">"}, count=self._read_count)
            entries.extend(_entries(reply))
            if len(entries) >= self._read_count:
                break
        if not entries and not self._stopping:
            await self._sleep(CLUSTER_POLL_SECONDS)
        return entries

    async def _reclaim(self) -> list[Entry]:
        """Entries another writer took and has not acknowledged for ``claim_idle_seconds``."""
        entries: list[Entry] = []
        idle_ms = int(self._claim_idle * 1000)
        for stream in self._streams:
            cursor, claimed, *_ = await self._redis.xautoclaim(
                stream,
                GROUP,
                self.consumer,
                idle_ms,
                start_id=self._claim_cursors[stream],
                count=self._read_count,
            )
            self._claim_cursors[stream] = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
            entries.extend(Entry(stream, entry_id, decode_entry(fields)) for entry_id, fields in claimed)
        if entries:
            self.reclaimed += len(entries)
            await self._redis.hincrby(self._keys.stats, "reclaimed", len(entries))
            log.warning(
                "history writer %s took over %d entries of a writer that stopped", self.consumer, len(entries)
            )
        return entries

    async def _write(self, entries: list[Entry]) -> None:
        """Write the entries' records, then acknowledge and delete the entries."""
        # BatchWriteItem refuses a batch naming one key twice, and batches in flight together
        # land in any order: each key once, the latest entry winning.
        latest: dict[tuple[str, int], HistoryRecord] = {}
        unreadable = 0
        for entry in entries:
            if entry.record is None:
                unreadable += 1
            else:
                latest[entry.record.asset, entry.record.timestamp] = entry.record
        records = list(latest.values())
        retried_before = self.retried
        self.holding = len(records)
        batches = [records[i : i + self._batch_size] for i in range(0, len(records), self._batch_size)]
        keeper = asyncio.create_task(self._keep_claim(entries))
        try:
            limit = asyncio.Semaphore(self._concurrency)

            async def write_one(batch: list[HistoryRecord]) -> None:
                async with limit:
                    await self._write_batch(batch)

            await asyncio.gather(*(write_one(batch) for batch in batches))
        finally:
            await stop_task(keeper)
        await self._acknowledge(entries, records, self.retried - retried_before, unreadable)
        self.holding = 0

    async def _write_batch(self, batch: list[HistoryRecord]) -> None:
        """Until DynamoDB has every record of ``batch``, with backoff between attempts."""
        backoff = Backoff(first=BACKOFF_START, cap=BACKOFF_MAX)
        while batch:
            if not self._table_ready:
                try:
                    await ensure_table(self._dynamo, self._table)
                    self._table_ready = True
                except (BotoCoreError, ClientError, TimeoutError) as exc:
                    log.warning("history table not ready (%s)", describe_error(exc))
                    await self._sleep(backoff.next())
                    continue
            try:
                await put_batch(
                    self._dynamo,
                    self._table,
                    [record.to_item() for record in batch],
                    backoff=backoff,
                    sleep=self._sleep,
                    on_unprocessed=self._count_retried,
                )
            except (BotoCoreError, ClientError, TimeoutError) as exc:
                log.warning("history write failed (%s); retrying %d records", describe_error(exc), len(batch))
                self._count_retried(len(batch))
                await self._sleep(backoff.next())
                continue
            self.written += len(batch)
            return

    def _count_retried(self, records: int) -> None:
        self.retried += records

    async def _keep_claim(self, entries: Sequence[Entry]) -> None:
        """While DynamoDB keeps us retrying, tell the group we are alive and still own these
        entries, so no other writer takes them over."""
        by_stream = _ids_by_stream(entries)
        while True:
            await asyncio.sleep(min(self._claim_idle / 3, HEARTBEAT_SECONDS))
            with contextlib.suppress(*REDIS_FAILURES):
                await self._heartbeat()
                for stream, ids in by_stream.items():
                    await self._redis.xclaim(stream, GROUP, self.consumer, 0, ids, justid=True)

    async def _acknowledge(
        self, entries: Sequence[Entry], records: Sequence[HistoryRecord], retried: int, unreadable: int
    ) -> None:
        by_stream = _ids_by_stream(entries)
        written = len(records)
        backoff = Backoff(first=BACKOFF_START, cap=BACKOFF_MAX)
        while True:
            try:
                if self.rollups is not None:
                    # Marked before acknowledged: a writer killed in between leaves the entries,
                    # whose second writing marks them again (harmless, a mark never moves later).
                    await self.rollups.mark(records)
                for stream, ids in by_stream.items():
                    async with self._redis.pipeline(transaction=False) as pipe:
                        pipe.xack(stream, GROUP, *ids)
                        pipe.xdel(stream, *ids)
                        await pipe.execute()
                await self._redis.hincrby(self._keys.stats, "written", written)
                if retried:
                    await self._redis.hincrby(self._keys.stats, "retried", retried)
                if unreadable:
                    await self._redis.hincrby(self._keys.stats, "dropped", unreadable)
                    log.error("history writer: %d outbox entries were not records; dropped", unreadable)
                return
            except REDIS_FAILURES as exc:
                # Written but not acknowledged: another try, or another writer, writes them again
                # (harmless); the acknowledgement is retried until Redis answers.
                log.warning("history writer: acknowledging failed (%s); retrying", type(exc).__name__)
                if self._stopping and backoff.at_cap:
                    return
                await self._sleep(backoff.next())


def _ids_by_stream(entries: Sequence[Entry]) -> dict[str, list[Any]]:
    by_stream: dict[str, list[Any]] = {}
    for entry in entries:
        by_stream.setdefault(entry.stream, []).append(entry.entry_id)
    return by_stream


def _entries(reply: Any) -> list[Entry]:
    """XREADGROUP's answer, ``[[stream, [(id, fields), ...]], ...]``, as entries."""
    return [
        Entry(name.decode(), entry_id, decode_entry(fields))
        for name, items in reply or []
        for entry_id, fields in items
    ]
