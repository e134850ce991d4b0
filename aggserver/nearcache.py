"""The near-cache: each process's copy of recently read prices, kept coherent through Redis.

Redis stays the source of truth. Whoever stores new prices publishes their assets on
``prices:updated`` in the same round trip; every process listens (``UpdateFeed``) and drops
those entries, so the next read goes to Redis. An entry is also dropped once it is
``max_age`` old, and everything is dropped whenever the subscription goes down or comes back,
since messages may have been missed meanwhile. So a price served from here is never older than
Redis's by more than the pub/sub delivery time, and at worst (a message lost on a live
connection) by ``max_age``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from aggserver.cache import CachedPrice

__all__ = ["NearCache"]


class NearCache:
    def __init__(self, *, max_age: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_age = max_age
        self._clock = clock
        self._entries: dict[str, tuple[CachedPrice, float]] = {}
        # Bumped by every invalidation: a read that raced one must not cache what it read.
        self.generation = 0
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

    # As an UpdateListener of the process's UpdateFeed:

    def updated(self, assets: list[str]) -> None:
        self.invalidate(assets)

    def gap(self, *, connected: bool) -> None:
        # Only while subscribed are updates seen: anything cached outside that may be stale.
        self.connected = connected
        self._entries.clear()
        self.generation += 1
