"""The near-cache: each process's copy of recently read prices, kept coherent through Redis.

Redis stays the source of truth. Whoever stores new prices publishes their assets on
``prices:updated`` in the same round trip; every process listens and drops those entries, so the
next read goes to Redis. An entry is also dropped once it is ``max_age`` old, and everything is
dropped whenever the subscription (re)connects, since messages may have been missed meanwhile.
So a price served from here is never older than Redis's by more than the pub/sub delivery
time, and at worst (a message lost on a live connection) by ``max_age``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from aggserver.cache import UPDATES_CHANNEL, CachedPrice, RedisClient

__all__ = ["NearCache"]

log = logging.getLogger(__name__)


class NearCache:
    def __init__(self, *, max_age: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_age = max_age
        self._clock = clock
        self._entries: dict[str, tuple[CachedPrice, float]] = {}
        # Bumped by every invalidation: a read that raced one must not cache what it read.
        self.generation = 0
        self._listener: asyncio.Task[None] | None = None
        self.hits = 0
        self.misses = 0
        self.connected = False

    @property
    def enabled(self) -> bool:
        return self._max_age > 0

    def get(self, asset: str) -> CachedPrice | None:
        entry = self._entries.get(asset)
        if entry is not None and self._clock() - entry[1] < self._max_age:
            self.hits += 1
            return entry[0]
        self.misses += 1
        return None

    def put(self, asset: str, price: CachedPrice, *, generation: int) -> None:
        """Cache what a read returned, unless updates arrived since it started (``generation``)."""
        if self.connected and generation == self.generation:
            self._entries[asset] = (price, self._clock())

    def invalidate(self, assets: Iterable[str]) -> None:
        self.generation += 1
        for asset in assets:
            self._entries.pop(asset, None)

    def __len__(self) -> int:
        return len(self._entries)

    def start(self, client: RedisClient) -> None:
        if self.enabled:
            self._listener = asyncio.create_task(self._listen(client), name="near-cache-listener")

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)

    async def _listen(self, client: RedisClient) -> None:
        backoff = 0.1
        while True:
            pubsub = None
            try:
                if isinstance(client, RedisCluster):
                    await client.initialize()  # its pub/sub needs the slot map; commands load it lazily
                pubsub = client.pubsub()
                await pubsub.subscribe(UPDATES_CHANNEL)
                # Only from here on are updates seen: anything cached before may be stale.
                self._entries.clear()
                self.generation += 1
                self.connected = True
                backoff = 0.1
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                    if message is not None and message["type"] == "message":
                        self.invalidate(message["data"].decode().split(","))
            except (RedisError, OSError) as exc:
                log.debug("near-cache subscription lost: %s", type(exc).__name__)
            finally:
                self.connected = False
                self._entries.clear()
                if pubsub is not None:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
