"""This process's view of every price: the one object that knows what the latest price of an asset
is here, and what its answer looks like.

Redis stays the source of truth. The view holds, per asset:

- a **coherent copy** (the near-cache): what GET, batch reads and streams answer from without a
  round trip while it lasts;
- the **last known** price: the latest this process computed or read, whatever became of the copy;
  the refresh path's reference for outliers, and the answer while Redis is unreachable;
- the **rendered answer** of the copy, made once per asset and second (the body only changes with
  the price or the age);
- the **value last offered to streams**, so each value reaches subscribers once and never one
  older than what they saw.

Every write of prices publishes the stored values themselves (``store/announcements.py``) in the same
transaction, and every process listens (``UpdateFeed``): an announced value replaces the copy here,
so at push rates reads keep hitting instead of missing after each invalidation. Reads from Redis
and this process's own writes fill in the rest. The coherence rules:

- a value read (or written) while an announcement of the same asset arrived is not kept: the
  announcement is at least as new (stamps per asset, compared with the read's ``generation``);
- nothing is kept while the subscription is down, and every copy is dropped when it goes down or
  comes back (messages may have been missed); after it comes back the assets held before are read
  again from Redis in the background (``load``), announcements arriving meanwhile winning;
- a copy is served for ``max_age`` seconds after it was last announced, read or written: the bound
  on how stale it can be if a message were lost on a live connection;
- a bare announcement (a write that may not have stored its value) drops the copy, leaving a
  tombstone so a read begun before it is not kept either.

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

from aggserver.domain.price import CachedPrice
from aggserver.domain.tiers import TierMap
from aggserver.errors import PriceTooOld
from aggserver.process.tasks import stop_task
from aggserver.store.announcements import Announcement

__all__ = ["PriceView", "render_answer"]

log = logging.getLogger(__name__)

# Assets read back per MGET while resynchronising after the subscription came back.
RESYNC_CHUNK = 1000

Loader = Callable[[Sequence[str]], Awaitable[list[bytes | None]]]

_MALFORMED = (ValueError, KeyError, TypeError)


def render_answer(cached: CachedPrice, now: int, tiers: TierMap, max_age: float | None = None) -> bytes:
    """The GET body of ``cached`` at unix time ``now``; PriceTooOld past ``max_age``."""
    age = max(0, now - cached.last_updated)
    if max_age is not None and age > max_age:
        raise PriceTooOld(age)
    stale = cached.restored or tiers.by_name.get(cached.tier, tiers.cold).is_stale(age)
    return cached.answer(age_seconds=age, stale=stale)


class _Copy:
    __slots__ = ("body", "body_second", "price", "raw", "stamp", "stored_at")

    def __init__(self, raw: bytes, price: CachedPrice | None, stored_at: float, stamp: int) -> None:
        self.raw = raw
        self.price = price  # decoded on first use: most announced values are never read here
        self.stored_at = stored_at
        self.stamp = stamp  # the generation that stored it
        self.body = b""
        self.body_second = -1  # the unix second ``body`` was rendered for


class PriceView:
    def __init__(
        self,
        *,
        max_age: float,
        tiers: TierMap,
        load: Loader | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_age = max_age
        self._tiers = tiers
        self._load = load
        self._clock = clock
        self._copies: dict[str, _Copy] = {}
        self._last_known: dict[str, CachedPrice] = {}
        # Per asset some stream follows: the value last offered, (updated_at, stored bytes).
        self._offered: dict[str, tuple[int, bytes]] = {}
        # Bumped by every announcement and every gap: reads note it when they start.
        self.generation = 0
        # The generation of the last gap: a read begun before it keeps nothing.
        self._gap_generation = 0
        self._resync: asyncio.Task[None] | None = None
        self._held_before_gap: dict[str, None] = {}  # ordered, for predictable reads
        self.hits = 0
        self.misses = 0
        self.connected = False

    @property
    def enabled(self) -> bool:
        return self._max_age > 0

    def __len__(self) -> int:
        """Coherent copies held (tombstones aside)."""
        return sum(1 for copy in self._copies.values() if copy.raw)

    # Reading the coherent copy:

    def get(self, asset: str) -> CachedPrice | None:
        copy = self._live_copy(asset)
        return None if copy is None else copy.price

    def answer(self, asset: str, now: int) -> bytes | None:
        """The plain GET body of the coherent copy at unix second ``now``, else None. A plain
        function: most GETs end here without a coroutine."""
        copy = self._live_copy(asset)
        if copy is None:
            return None
        if copy.body_second != now:
            assert copy.price is not None
            copy.body, copy.body_second = render_answer(copy.price, now, self._tiers), now
        return copy.body

    def render(self, price: CachedPrice, now: int) -> bytes:
        """The plain GET body of ``price`` at ``now``: shared with the copy when it is that price."""
        copy = self._copies.get(price.asset)
        if copy is None or copy.price is not price:
            return render_answer(price, now, self._tiers)
        if copy.body_second != now:
            copy.body, copy.body_second = render_answer(price, now, self._tiers), now
        return copy.body

    def _live_copy(self, asset: str) -> _Copy | None:
        copy = self._copies.get(asset)
        if copy is None or self._clock() - copy.stored_at >= self._max_age:
            self.misses += 1
            return None
        if copy.price is None:
            try:
                copy.price = CachedPrice.decode(copy.raw)
            except _MALFORMED:
                log.warning("dropping a malformed announced value of %s", asset)
                del self._copies[asset]
                self.misses += 1
                return None
        self.hits += 1
        return copy

    # What this process computed or read:

    def last_known(self, asset: str) -> CachedPrice | None:
        """The latest price this process computed, read or heard announced of ``asset``,
        coherent or not (the newer by ``updated_at`` of the copy and what it computed or read)."""
        known = self._last_known.get(asset)
        copy = self._copies.get(asset)
        if copy is None or not copy.raw or (known is not None and copy.raw == known.raw):
            return known
        if copy.price is None:
            try:
                copy.price = CachedPrice.decode(copy.raw)
            except _MALFORMED:
                return known
        return copy.price if known is None or copy.price.updated_at >= known.updated_at else known

    def computed(self, asset: str, price: CachedPrice) -> None:
        """The refresh path made ``price``; it becomes the copy once ``stored``."""
        self._last_known[asset] = price

    def stored(self, prices: Iterable[CachedPrice], *, generation: int) -> None:
        """``prices`` (as Redis stored them) were written by a write begun at ``generation``:
        the last known, and kept at once, so a GET right after a POST /refresh here sees the new
        price (other processes take it when the announcement reaches them)."""
        for price in prices:
            self._last_known[price.asset] = price
            self.put(price.asset, price, generation=generation)

    def read(self, asset: str, raw: bytes, *, generation: int) -> CachedPrice:
        """``raw`` was read from Redis by a read begun at ``generation``: decoded once (unless it
        is the value already known) and kept if no announcement or gap overtook the read."""
        known = self._last_known.get(asset)
        if known is not None and known.raw == raw:
            price = known
        else:
            price = self._last_known[asset] = CachedPrice.decode(raw)
        self.put(asset, price, generation=generation)
        return price

    def decoded(self, asset: str, raw: bytes) -> CachedPrice:
        """``raw`` decoded, reusing the copy's or the last known decoding of the same bytes."""
        copy = self._copies.get(asset)
        if copy is not None and copy.price is not None and copy.raw == raw:
            return copy.price
        known = self._last_known.get(asset)
        if known is not None and known.raw == raw:
            return known
        price = CachedPrice.decode(raw)
        if copy is not None and copy.raw == raw:
            copy.price = price
        return price

    def put(self, asset: str, price: CachedPrice, *, generation: int) -> None:
        """Keep what a read or write begun at ``generation`` found in Redis, unless the
        subscription went down or came back since, or this asset was announced meanwhile."""
        if not self.connected or generation < self._gap_generation:
            return
        copy = self._copies.get(asset)
        if copy is None or copy.stamp <= generation:
            self._copies[asset] = _Copy(price.raw, price, self._clock(), generation)

    def invalidate(self, assets: Iterable[str]) -> None:
        self.generation += 1
        for asset in assets:
            self._drop(asset, self.generation)

    def _drop(self, asset: str, stamp: int) -> None:
        # A tombstone, never served: a read begun before it must still not be kept.
        self._copies[asset] = _Copy(b"", None, -math.inf, stamp)

    # What streams have been offered:

    def unoffered(self, asset: str, raw: bytes) -> CachedPrice | None:
        """``raw`` decoded when streams have not been offered it yet, else None; None too when it
        is older than what they were offered (a read after a gap finishing after newer
        announcements)."""
        last = self._offered.get(asset)
        if last is not None and last[1] == raw:
            return None
        price = self.decoded(asset, raw)
        if last is not None and last[0] > price.updated_at:
            return None
        self._offered[asset] = (price.updated_at, raw)
        return price

    def unfollowed(self, asset: str) -> None:
        """No stream follows ``asset`` any more: forget what was offered."""
        self._offered.pop(asset, None)

    # As an UpdateListener of the process's UpdateFeed:

    def updated(self, announcements: list[Announcement]) -> None:
        self.generation += 1
        if not self.enabled:
            return
        stamp, now, copies = self.generation, self._clock(), self._copies
        for asset, raw in announcements:
            copy = copies.get(asset)
            if raw is None:
                self._drop(asset, stamp)
            elif copy is None:
                copies[asset] = _Copy(raw, None, now, stamp)
            elif copy.raw == raw:
                copy.stored_at, copy.stamp = now, stamp
            elif copy.price is None or not _older(raw, copy.price):
                copies[asset] = _Copy(raw, None, now, stamp)

    def gap(self, *, connected: bool) -> None:
        # Only while subscribed are updates seen: anything held from before may be stale.
        self.connected = connected
        self._held_before_gap.update((a, None) for a, copy in self._copies.items() if copy.raw)
        self._copies.clear()
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
            except Exception as exc:  # noqa: BLE001 - reads fill the view again anyway
                log.debug("near-cache resync stopped: %s", exc)
                return
            for asset, raw in zip(chunk, values, strict=True):
                if raw is not None:
                    self.read(asset, raw, generation=generation)

    async def close(self) -> None:
        await stop_task(self._resync)


def _older(raw: bytes, held: CachedPrice) -> bool:
    """Whether the announced ``raw`` was computed before ``held`` (a cluster's late message)."""
    try:
        return CachedPrice.decode(raw).updated_at < held.updated_at
    except _MALFORMED:
        return True
