"""Answering GET /prices: the cache first, then whatever still holds a price, never garbage.

Redis answers almost every read. On a miss the latest DynamoDB record is served (marked stale),
put back into Redis and a refresh is started. With Redis unreachable, the last price this
process saw is served, else DynamoDB's; only with nothing anywhere does a read fail.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aggserver.cache import CachedPrice, PriceCache, encode_restored
from aggserver.errors import BackendUnavailable, PriceNotFound, PriceTooOld
from aggserver.history import LatestRecord
from aggserver.nearcache import NearCache
from aggserver.refresh import Refresher
from aggserver.tiers import Popularity, TierMap

__all__ = ["PriceReader"]

log = logging.getLogger(__name__)


class PriceReader:
    def __init__(
        self,
        *,
        cache: PriceCache,
        refresher: Refresher,
        tiers: TierMap,
        popularity: Popularity,
        latest_record: LatestRecord,
        near: NearCache,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cache = cache
        self._near = near
        self._refresher = refresher
        self._tiers = tiers
        self._popularity = popularity
        self._latest_record = latest_record
        self._clock = clock
        self._lookups: dict[str, asyncio.Task[CachedPrice | None]] = {}
        self._background: set[asyncio.Task[object]] = set()
        self.hits = 0
        self.misses = 0

    async def answer(self, asset: str, max_age: float | None = None) -> bytes:
        """The GET body for a known ``asset``.

        Raises PriceNotFound when no price exists anywhere, PriceTooOld when it is older than
        ``max_age``, BackendUnavailable when Redis is down and nothing else has a price.
        """
        self._popularity.hit(asset)
        near = self._near
        cached = near.get(asset) if near.enabled else None
        if cached is None:
            cached = await self._read(asset, near.generation)
        age = max(0, int(self._clock()) - cached.last_updated)
        if max_age is not None and age > max_age:
            raise PriceTooOld(age)
        stale = cached.restored or self._tiers.by_name.get(cached.tier, self._tiers.cold).is_stale(age)
        return cached.answer(age_seconds=age, stale=stale)

    async def _read(self, asset: str, generation: int) -> CachedPrice:
        last_seen = self._refresher.last_seen
        try:
            raw = await self._cache.get(asset)
        except BackendUnavailable:
            cached = last_seen.get(asset) or await self._from_history(asset, store=False)
            if cached is None:
                raise
        else:
            if raw is None:
                self.misses += 1
                cached = await self._from_history(asset, store=True)
                if cached is None:
                    raise PriceNotFound(asset) from None
            else:
                # Decode only when the stored bytes changed since this process last saw them.
                seen = last_seen.get(asset)
                self.hits += 1
                if seen is not None and seen.raw == raw:
                    cached = seen
                else:
                    cached = CachedPrice.decode(raw)
                    last_seen[asset] = cached
                self._near.put(asset, cached, generation=generation)
        return cached

    async def _from_history(self, asset: str, *, store: bool) -> CachedPrice | None:
        # One DynamoDB lookup per asset at a time, however many GETs miss together.
        lookup = self._lookups.get(asset)
        if lookup is None:
            lookup = asyncio.ensure_future(self._lookup(asset, store=store))
            self._lookups[asset] = lookup
            lookup.add_done_callback(lambda _: self._lookups.pop(asset, None))
        return await asyncio.shield(lookup)

    async def _lookup(self, asset: str, *, store: bool) -> CachedPrice | None:
        try:
            record = await self._latest_record(asset)
        except Exception as exc:  # noqa: BLE001 - DynamoDB being down must not fail the read path
            log.debug("history lookup for %s failed: %s", asset, exc)
            record = None
        self._spawn(self._refresh_quietly(asset))
        if record is None:
            return None
        tier = self._tiers.of(asset)
        value = encode_restored(record, tier=tier.name)
        if store:
            self._spawn(self._cache.put_many([(asset, value, tier.ttl)], only_if_missing=True))
        return CachedPrice.decode(value)

    async def _refresh_quietly(self, asset: str) -> None:
        try:
            await self._refresher.refresh(asset)
        except Exception as exc:  # noqa: BLE001 - a background refresh's failure is only logged
            log.debug("background refresh of %s failed: %s", asset, exc)

    def _spawn(self, work: Awaitable[object]) -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        for task in list(self._background) + list(self._lookups.values()):
            task.cancel()
        await asyncio.gather(*self._background, *self._lookups.values(), return_exceptions=True)
