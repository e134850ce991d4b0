"""The near-cache: each process's current copy of the prices it hears about, coherent with Redis.

Redis stays the source of truth. Every write of prices publishes the stored values themselves
(``announcements.py``) in the same transaction, and every process listens (``UpdateFeed``): an
announced value replaces this process's copy, so at push rates (every asset changing every
second) reads keep hitting here instead of missing after each invalidation. Reads from Redis and
this process's own writes fill in the rest, and the rules for them live here:

- a value read (or written) while an announcement of the same asset arrived is not kept: the
  announcement is at least as new (``put`` compares stamps, per asset);
- nothing is kept while the subscription is down, and everything is dropped when it goes down or
  comes back (messages may have been missed); after it comes back the assets held before are read
  again from Redis in the background (``load``), announcements arriving meanwhile winning;
- an entry is served for ``max_age`` seconds after it was last announced, read or written: the
  bound on how stale a copy can be if a message were lost on a live connection;
- a bare announcement (a write that may not have stored its value) drops the copy.

On a Redis Cluster announcements are published after the writes rather than with them, so two
writers' announcements of one asset can arrive in the opposite order; an announced value older
(``updated_at``) than the copy held is therefore ignored.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence

from aggserver.announcements import Announcement
from aggserver.price import CachedPrice

__all__ = ["NearCache"]

log = logging.getLogger(__name__)

# Assets read back per MGET while resynchronising after the subscription came back.
RESYNC_CHUNK = 1000

Loader = Callable[[Sequence[str]], Awaitable[list[bytes | None]]]


class _Entry:
    __slots__ = ("price", "raw", "stamp", "stored_at")

    def __init__(self, raw: bytes, price: CachedPrice | None, stored_at: float, stamp: int) -> None:
        self.raw = raw
        self.price = price  # decoded on first read: most announced values are never read here
        self.stored_at = stored_at
        self.stamp = stamp  # the generation that stored it


class NearCache:
    def __init__(
        self, *, max_age: float, load: Loader | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max_age = max_age
        self._load = load
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        # Bumped by every announcement and every gap: reads note it when they start.
        self.generation = 0
        # The generation of the last gap: a read begun before it keeps nothing.
        self._gap_generation = 0
        self._resync: asyncio.Task[None] | None = None
        self._held_before_gap: dict[str, None] = {}  # ordered, for predictable reads
        self.hits = 0
        self.misses = 0
        self.announced = 0
        self.connected = False

    @property
    def enabled(self) -> bool:
        return self._max_age > 0

    def get(self, asset: str) -> CachedPrice | None:
        entry = self._entries.get(asset)
        if entry is not None and self._clock() - entry.stored_at < self._max_age:
            price = entry.price
            if price is None:
                try:
                    price = entry.price = CachedPrice.decode(entry.raw)
                except (ValueError, KeyError, TypeError):
                    log.warning("dropping a malformed announced value of %s", asset)
                    del self._entries[asset]
                    self.misses += 1
                    return None
            self.hits += 1
            return price
        self.misses += 1
        return None

    def put(self, asset: str, price: CachedPrice, *, generation: int) -> None:
        """Keep what a read or write begun at ``generation`` found in Redis, unless the
        subscription went down or came back since, or this asset was announced meanwhile."""
        if not self.connected or generation < self._gap_generation:
            return
        entry = self._entries.get(asset)
        if entry is None or entry.stamp <= generation:
            self._entries[asset] = _Entry(price.raw, price, self._clock(), generation)

    def invalidate(self, assets: Iterable[str]) -> None:
        self.generation += 1
        for asset in assets:
            self._drop(asset, self.generation)

    def _drop(self, asset: str, stamp: int) -> None:
        # A tombstone, never served: a read begun before it must still not be kept.
        self._entries[asset] = _Entry(b"", None, -math.inf, stamp)

    def __len__(self) -> int:
        return sum(1 for entry in self._entries.values() if entry.raw)

    # As an UpdateListener of the process's UpdateFeed:

    def updated(self, announcements: list[Announcement]) -> None:
        self.generation += 1
        if not self.enabled:
            return
        stamp, now, entries = self.generation, self._clock(), self._entries
        self.announced += len(announcements)
        for asset, raw in announcements:
            entry = entries.get(asset)
            if raw is None:
                self._drop(asset, stamp)
            elif entry is None:
                entries[asset] = _Entry(raw, None, now, stamp)
            elif entry.raw == raw:
                entry.stored_at, entry.stamp = now, stamp
            elif entry.price is None or not _older(raw, entry.price):
                entries[asset] = _Entry(raw, None, now, stamp)

    def gap(self, *, connected: bool) -> None:
        # Only while subscribed are updates seen: anything held from before may be stale.
        self.connected = connected
        self._held_before_gap.update((a, None) for a, entry in self._entries.items() if entry.raw)
        self._entries.clear()
        self.generation += 1
        self._gap_generation = self.generation
        if self._resync is not None:
            self._resync.cancel()
            self._resync = None
        if connected:
            held, self._held_before_gap = list(self._held_before_gap), {}
            if held and self._load is not None and self.enabled:
                self._resync = asyncio.get_running_loop().create_task(self._reload(held), name="near-resync")

    async def _reload(self, assets: list[str]) -> None:
        """Read back from Redis what was held before the gap, so hits resume at once."""
        assert self._load is not None
        for start in range(0, len(assets), RESYNC_CHUNK):
            chunk = assets[start : start + RESYNC_CHUNK]
            generation = self.generation
            try:
                values = await self._load(chunk)
            except Exception as exc:  # noqa: BLE001 - reads fill the cache again anyway
                log.debug("near-cache resync stopped: %s", exc)
                return
            for asset, raw in zip(chunk, values, strict=True):
                if raw is not None:
                    self.put(asset, CachedPrice.decode(raw), generation=generation)

    async def close(self) -> None:
        if self._resync is not None:
            self._resync.cancel()
            await asyncio.gather(self._resync, return_exceptions=True)


def _older(raw: bytes, held: CachedPrice) -> bool:
    """Whether the announced ``raw`` was computed before ``held`` (a cluster's late message)."""
    try:
        return CachedPrice.decode(raw).updated_at < held.updated_at
    except (ValueError, KeyError, TypeError):
        return True
