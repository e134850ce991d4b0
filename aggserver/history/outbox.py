"""The history outbox: every record waits in a Redis Stream until a writer has it in DynamoDB.

The refresh path appends a price's record in the same MULTI/EXEC as the price itself, so a price
is never visible without its record, and a record outlives any aggserver process (Redis keeps
it: with AOF, across Redis restarts too). Keys are per table (:class:`OutboxKeys`). Writers
(``history/writer.py``) read the stream as one consumer group and delete each entry once
DynamoDB has accepted it, so the stream's length is the backlog. On a Redis Cluster there is one
stream per price-key bucket, hash-tagged like the price keys, so a record shares its price's slot
(and node) and the streams spread over the nodes; there the record goes ahead of its price in
one ordered pipeline (see ``PriceCache.put_many``).

While Redis cannot be reached, records wait in this process (:class:`Outbox`, bounded) and are
appended once it answers again. Everything ever dropped, here or by the stream's bound, is
counted in Redis (``dropped``) and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio.cluster import RedisCluster

from aggserver.domain.candles import INTERVALS
from aggserver.history.records import HistoryRecord
from aggserver.process.backoff import Backoff
from aggserver.process.tasks import stop_task
from aggserver.store.connection import CLUSTER_BUCKETS, REDIS_FAILURES, RedisClient, bucket_of

__all__ = [
    "GROUP",
    "Outbox",
    "OutboxAppend",
    "OutboxKeys",
    "OutboxState",
    "decode_entry",
    "encode_entry",
    "enforce_bound",
    "read_state",
    "stage_records",
]

log = logging.getLogger(__name__)

GROUP = "history-writers"
WRITER_ALIVE_SECONDS = 10.0
ENTRY_FIELD = b"r"
# How often the serving process reads the outbox's state for /status and /metrics.
STATE_SECONDS = 2.0
SPILL_BACKOFF_MAX = 5.0
SPILL_CHUNK = 1_000


@dataclass(frozen=True, slots=True)
class OutboxKeys:
    """The Redis keys of one table's outbox: deployments writing different tables (staging and
    production, or the tests) may share a Redis without writing each other's records."""

    table: str
    cluster: bool = False

    def stream(self, asset: str) -> str:
        """The stream an asset's records go to: on a cluster, the one in its price key's slot."""
        if self.cluster:
            return f"history:{self.table}:outbox:{{{bucket_of(asset):02d}}}"
        return f"history:{self.table}:outbox"

    def streams(self) -> list[str]:
        if self.cluster:
            return [f"history:{self.table}:outbox:{{{bucket:02d}}}" for bucket in range(CLUSTER_BUCKETS)]
        return [f"history:{self.table}:outbox"]

    @property
    def stats(self) -> str:
        """Counters shared by every process: written, retried, reclaimed, dropped."""
        return f"history:{self.table}:stats"

    @property
    def writers(self) -> str:
        """Writers' heartbeats: consumer names scored by the time they last beat."""
        return f"history:{self.table}:writers"

    def rollup_marks(self, interval: str) -> str:
        """Candles of ``interval`` to recompute (``history/rollups/upkeep.py``), ``asset|start`` by
        due time."""
        return f"history:{self.table}:rollups:{interval}"


def encode_entry(record: HistoryRecord) -> bytes:
    """One record as a stream entry's single field: four space-separated values."""
    return f"{record.asset} {record.timestamp} {record.price!r} {record.updated_at}".encode()


def decode_entry(fields: dict[bytes, bytes] | None) -> HistoryRecord | None:
    """The record of an entry, or None for one that is not ours (or was trimmed meanwhile)."""
    raw = (fields or {}).get(ENTRY_FIELD)
    if raw is None:
        return None
    try:
        asset, timestamp, price, updated_at = raw.decode().split(" ")
        return HistoryRecord(
            asset=asset, timestamp=int(timestamp), price=float(price), updated_at=int(updated_at)
        )
    except ValueError:
        return None


def stage_records(pipe: Any, records: Iterable[HistoryRecord], keys: OutboxKeys) -> None:
    """Queue an XADD per record on ``pipe`` (a pipeline; the caller executes it)."""
    for record in records:
        pipe.xadd(keys.stream(record.asset), {ENTRY_FIELD: encode_entry(record)})


async def enforce_bound(
    client: RedisClient, keys: OutboxKeys, stream: str, length: int, max_records: int
) -> int:
    """Trim ``stream`` to ``max_records`` when an append took it past; returns records dropped."""
    if length <= max_records:
        return 0
    trimmed = int(await client.xtrim(stream, maxlen=max_records, approximate=False))
    if trimmed:
        total = await client.hincrby(keys.stats, "dropped", trimmed)
        log.error(
            "history outbox %s past %d records (writers behind or down): %d oldest records dropped, "
            "%d dropped in all",
            stream,
            max_records,
            trimmed,
            total,
        )
    return trimmed


@dataclass(frozen=True, slots=True)
class OutboxAppend:
    """How a price write appends its history records (``store/prices.py``, in the same atomic
    write as the prices): the outbox's streams, each record's entry, and the bound past which the
    oldest records are dropped, counted, while writers are down."""

    keys: OutboxKeys
    max_records: int = 1_000_000

    def streams(self, records: Iterable[HistoryRecord]) -> list[str]:
        """The streams ``records`` go to, each once, in order."""
        return list(dict.fromkeys(self.keys.stream(record.asset) for record in records))

    def stage(self, pipe: Any, records: Iterable[HistoryRecord]) -> None:
        stage_records(pipe, records, self.keys)

    async def bound(self, client: RedisClient, lengths: Mapping[str, int]) -> None:
        """Trim each stream an append took past ``max_records`` (see :func:`enforce_bound`)."""
        for stream, length in lengths.items():
            await enforce_bound(client, self.keys, stream, length, self.max_records)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxState:
    """What the outbox looks like from one process, read every few seconds."""

    backlog: int = 0
    oldest_seconds: float | None = None
    writers_alive: int = 0
    written: int = 0
    retried: int = 0
    reclaimed: int = 0
    dropped: int = 0
    # Candle blocks past their due time and not claimed by a writer (history/rollups/upkeep.py).
    rollups_due: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxStats:
    """The outbox as /status and /metrics show it: every instance's backlog and the writers'
    totals (``state``), and what this process holds or lost while Redis was away."""

    state: OutboxState
    in_memory: int
    dropped_here: int

    @property
    def dropped(self) -> int:
        return self.state.dropped + self.dropped_here


async def read_state(client: RedisClient, keys: OutboxKeys) -> OutboxState:
    """Backlog (entries not yet deleted by a writer), the oldest one's age, live writers and the
    shared counters; RedisError when Redis does not answer."""
    streams = keys.streams()
    now_seconds, now_micros = await client.time()
    now_ms = now_seconds * 1000 + now_micros // 1000
    backlog = 0
    oldest_ms: int | None = None
    for stream in streams:
        # Separate calls: on a cluster the streams live on different nodes.
        backlog += int(await client.xlen(stream))
        first = cast(list[tuple[bytes, Any]], await client.xrange(stream, count=1))
        if first:
            first_ms = int(first[0][0].split(b"-")[0])
            oldest_ms = first_ms if oldest_ms is None else min(oldest_ms, first_ms)
    alive = int(await client.zcount(keys.writers, now_seconds - WRITER_ALIVE_SECONDS, "+inf"))
    stats = cast(dict[bytes, bytes], await client.hgetall(keys.stats))
    counters = {name.decode(): int(value) for name, value in stats.items()}
    due = 0
    for interval in INTERVALS:
        due += int(await client.zcount(keys.rollup_marks(interval), "-inf", now_ms))
    return OutboxState(
        backlog=backlog,
        oldest_seconds=None if oldest_ms is None else max(0.0, (now_ms - oldest_ms) / 1000),
        writers_alive=alive,
        written=counters.get("written", 0),
        retried=counters.get("retried", 0),
        reclaimed=counters.get("reclaimed", 0),
        dropped=counters.get("dropped", 0),
        rollups_due=due,
    )


class Outbox:
    """This process's side of the outbox: records that could not be appended (Redis down) wait
    here, bounded, and are appended when Redis answers again; and the outbox's latest state."""

    def __init__(self, client: RedisClient, *, table: str, max_pending: int, timeout: float) -> None:
        self._client = client
        self._keys = OutboxKeys(table, cluster=isinstance(client, RedisCluster))
        self._max_pending = max_pending
        self._timeout = timeout
        self._spill: deque[HistoryRecord] = deque()
        self._wakeup = asyncio.Event()
        self._stopping = False
        self.spill_dropped = 0
        self.state = OutboxState()

    @property
    def pending(self) -> int:
        """Records waiting in this process for Redis to come back."""
        return len(self._spill)

    def stats(self) -> OutboxStats:
        return OutboxStats(state=self.state, in_memory=self.pending, dropped_here=self.spill_dropped)

    def spill(self, records: Sequence[HistoryRecord]) -> None:
        """Keep records whose append failed; past ``max_pending`` the oldest are dropped, counted."""
        for record in records:
            if len(self._spill) >= self._max_pending:
                self._spill.popleft()
                self.spill_dropped += 1
                if self.spill_dropped == 1 or self.spill_dropped % 1000 == 0:
                    log.error(
                        "Redis unreachable and %d history records waiting in memory: %d dropped so far",
                        self._max_pending,
                        self.spill_dropped,
                    )
            self._spill.append(record)
        self._wakeup.set()

    async def run(self) -> None:
        """Append spilled records once Redis answers; keep :attr:`state` current."""
        backoff = Backoff(first=0.2, cap=SPILL_BACKOFF_MAX)
        next_state = 0.0
        while not self._stopping:
            if time.monotonic() >= next_state:
                await self._read_state()
                next_state = time.monotonic() + STATE_SECONDS
            if self._spill:
                if await self._append_spill():
                    backoff.reset()
                    continue
                await asyncio.sleep(backoff.next())
                continue
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_state - time.monotonic())):
                    await self._wakeup.wait()

    async def stop(self, task: asyncio.Task[None]) -> None:
        """End :meth:`run`. By a flag, not only by cancelling: Python 3.11 can lose a cancellation
        that lands while ``asyncio.timeout`` expires, and the task would wait on forever."""
        self._stopping = True
        self._wakeup.set()
        await stop_task(task)

    async def flush(self, timeout: float) -> None:
        """At shutdown: append what waits here, for at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self._spill and time.monotonic() < deadline:
            if not await self._append_spill():
                await asyncio.sleep(0.2)
        if self._spill:
            log.error("Redis still unreachable at shutdown: %d history records lost", len(self._spill))

    async def _append_spill(self) -> bool:
        chunk = [self._spill[i] for i in range(min(SPILL_CHUNK, len(self._spill)))]
        try:
            async with asyncio.timeout(self._timeout * 2):
                async with self._client.pipeline(transaction=False) as pipe:
                    stage_records(pipe, chunk, self._keys)
                    await pipe.execute()
                if self.spill_dropped:
                    dropped, self.spill_dropped = self.spill_dropped, 0
                    await self._client.hincrby(self._keys.stats, "dropped", dropped)
        except REDIS_FAILURES:
            return False
        for _ in chunk:
            self._spill.popleft()
        log.info("appended %d history records kept while Redis was unreachable", len(chunk))
        return True

    async def _read_state(self) -> None:
        try:
            async with asyncio.timeout(self._timeout * 2):
                self.state = await read_state(self._client, self._keys)
        except REDIS_FAILURES as exc:
            self.state = dataclasses.replace(self.state, error=type(exc).__name__)
