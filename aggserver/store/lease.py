"""Who does the refresh work: the assets cut into shards, each owned through a lease in Redis.

``REFRESH_SHARDS`` cuts the symbols into that many shards (crc32 of the symbol). The owner of a
shard runs the scheduler (polling by tier) and the venue streams for its assets; aggregation needs
every venue's quotes of an asset in one process, so shards cut the assets, not the venues: an
owner follows its slice of every venue. With one shard (the default) one process does it all, as
before, under the key ``scheduler:lease``.

Every third of ``LEASE_SECONDS`` each instance announces itself (sorted set ``scheduler:members``,
scored by expiry in Redis's own clock), renews the leases it holds (compare-and-set: a plain SET
could steal one back), reads every shard's holder and follows :func:`plan`, so that shares end
within one of each other (the poorest take free shards first; the richest hand back what puts
them two or more ahead). A dead owner's leases and membership expire
after ``LEASE_SECONDS``; the next check takes its shards (at most a third later). Finding another
holder of a shard stops that shard's work at once; an unreachable Redis stops nothing (nobody
else can take a lease meanwhile). A paused holder can overlap a successor for up to one renewal
period; that only costs duplicate fetches, because every write is idempotent (latest price by
asset, history by asset and exchange timestamp).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import uuid
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass

from redis.exceptions import RedisError

from aggserver.process.tasks import stop_task
from aggserver.store.connection import RedisClient

__all__ = ["LEASE_KEY", "MEMBERS_KEY", "Lease", "LeaseStats", "Plan", "lease_key", "plan", "shard_of"]

log = logging.getLogger(__name__)

LEASE_KEY = "scheduler:lease"
MEMBERS_KEY = "scheduler:members"
# Beyond one renewal period, how long stop() waits for the renewal loop to end.
STOP_GRACE_SECONDS = 2.0

# Renew only if we still hold it, or take it again if it vanished (a Redis restart without
# persistence).
_RENEW = """
local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
elseif not holder then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""
# Announce ARGV[1] until ARGV[2] ms from now (Redis's clock: hosts' clocks may disagree), forget
# the expired, and list who is alive.
_MEMBERS = """
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
if ARGV[3] == '1' then
  redis.call('zadd', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
else
  redis.call('zrem', KEYS[1], ARGV[1])
end
redis.call('pexpire', KEYS[1], 2 * tonumber(ARGV[2]))
return redis.call('zrange', KEYS[1], 0, -1)
"""


def shard_of(asset: str, shards: int) -> int:
    """The shard of ``asset`` (stable across processes and restarts)."""
    return zlib.crc32(asset.encode()) % shards


def lease_key(shard: int, shards: int) -> str:
    return LEASE_KEY if shards == 1 else f"{LEASE_KEY}:{shard}"


@dataclass(frozen=True, slots=True)
class Plan:
    take: tuple[int, ...]
    give: tuple[int, ...]


def plan(holders: Sequence[str | None], alive: Collection[str], me: str) -> Plan:
    """What ``me`` should do given each shard's holder (None: free) and the live instances.

    Shares end within one of each other. Holding two or more beyond the live instance with the
    fewest, ``me`` hands back down to the larger of the floor share (shards / live instances,
    rounded down) and that instance's count plus one. Free shards are taken, up to the fair share
    (rounded up), by an instance holding no more than every other: the poorest come first, so a
    shard handed back is not taken again by the one that gave it.
    """
    members = set(alive) | {me}
    fair = math.ceil(len(holders) / len(members))
    floor = len(holders) // len(members)
    counts = Counter(holder for holder in holders if holder is not None)
    mine = [shard for shard, holder in enumerate(holders) if holder == me]
    fewest = min((counts[member] for member in members if member != me), default=len(mine))
    keep = max(floor, fewest + 1)
    if len(mine) > keep:
        return Plan(take=(), give=tuple(mine[keep:]))
    if len(mine) > fewest:
        return Plan(take=(), give=())
    free = [shard for shard, holder in enumerate(holders) if holder is None]
    return Plan(take=tuple(free[: max(0, fair - len(mine))]), give=())


@dataclass(frozen=True, slots=True)
class LeaseStats:
    """How the refresh work is cut (``shards``) and which shards this process holds."""

    shards: int
    owned: frozenset[int]

    @property
    def held(self) -> bool:
        return bool(self.owned)


class Lease:
    """Calls ``on_change`` with the shards this process owns whenever that set changes."""

    def __init__(
        self,
        client: RedisClient,
        *,
        ttl_seconds: float,
        on_change: Callable[[frozenset[int]], Awaitable[None]],
        shards: int = 1,
    ) -> None:
        self._client = client
        self._ttl_ms = int(ttl_seconds * 1000)
        self._on_change = on_change
        self.shards = shards
        self.holder_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.owned: frozenset[int] = frozenset()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def held(self) -> bool:
        """Whether this process owns any refresh work."""
        return bool(self.owned)

    def stats(self) -> LeaseStats:
        return LeaseStats(shards=self.shards, owned=self.owned)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="scheduler-lease")

    async def stop(self) -> None:
        if self._task is not None:
            # The flag ends the loop at its next turn where a Redis call turned the cancellation
            # into a timeout error, which the loop takes for Redis being away.
            self._stopping = True
            await stop_task(self._task, self._ttl_ms / 3000 + STOP_GRACE_SECONDS)
        owned = self.owned
        if owned:
            await self._change(frozenset(), "shutting down", level=logging.INFO)
        with contextlib.suppress(RedisError, OSError):  # else they expire by themselves
            for shard in owned:
                await self._client.eval(_RELEASE, 1, lease_key(shard, self.shards), self.holder_id)
            await self._client.eval(_MEMBERS, 1, MEMBERS_KEY, self.holder_id, self._ttl_ms, "0")

    async def _run(self) -> None:
        period = self._ttl_ms / 3000
        while not self._stopping:
            try:
                await self._check()
            except (RedisError, OSError) as exc:
                # Keep the shards: without Redis nobody else can take them either, and refreshes
                # must go on (served from memory) until Redis is back.
                log.debug("refresh leases not renewed: %s", type(exc).__name__)
            await asyncio.sleep(period)

    async def _check(self) -> None:
        client, me, ttl = self._client, self.holder_id, self._ttl_ms
        alive = [_text(m) for m in await client.eval(_MEMBERS, 1, MEMBERS_KEY, me, ttl, "1")]
        kept = set()
        for shard in sorted(self.owned):
            if await client.eval(_RENEW, 1, lease_key(shard, self.shards), me, ttl):
                kept.add(shard)
        if kept != self.owned:
            await self._change(frozenset(kept), "another instance holds it", level=logging.WARNING)
        async with client.pipeline(transaction=False) as pipe:
            for shard in range(self.shards):
                pipe.get(lease_key(shard, self.shards))
            holders = [None if h is None else _text(h) for h in await pipe.execute()]
        decided = plan(holders, alive, me)
        for shard in decided.give:
            await client.eval(_RELEASE, 1, lease_key(shard, self.shards), me)
        taken = [
            shard
            for shard in decided.take
            if await client.set(lease_key(shard, self.shards), me, nx=True, px=ttl)
        ]
        owned = (self.owned - set(decided.give)) | set(taken)
        if owned != self.owned:
            await self._change(frozenset(owned), "rebalanced" if decided.give else "acquired")

    async def _change(self, owned: frozenset[int], why: str, *, level: int = logging.INFO) -> None:
        gained, lost = sorted(owned - self.owned), sorted(self.owned - owned)
        self.owned = owned
        log.log(
            level,
            "refresh lease %s (%s, %s): this process owns %d of %d shards%s%s",
            "acquired" if gained and not lost else "given up" if lost else "unchanged",
            why,
            self.holder_id,
            len(owned),
            self.shards,
            f", gained {gained}" if gained else "",
            f", lost {lost}" if lost else "",
        )
        await self._on_change(owned)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
