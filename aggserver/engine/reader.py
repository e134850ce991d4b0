"""Answering GET /prices: the cache first, then whatever still holds a price, never garbage.

Redis answers almost every read. On a miss the latest DynamoDB record is served (marked stale),
put back into Redis and a refresh is started; DynamoDB failing or hanging past
``HISTORY_LOOKUP_SECONDS`` makes that read 503, not 404. With Redis unreachable, the last price
this process saw is served, else DynamoDB's; only with nothing anywhere does a read fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import orjson

from aggserver.domain.price import CachedPrice
from aggserver.domain.quality import QualityGuard
from aggserver.domain.reasons import ReasonCode
from aggserver.domain.tiers import Popularity, TierMap
from aggserver.engine.price_view import PriceView, render_answer
from aggserver.engine.refresh import Refresher
from aggserver.errors import BackendUnavailable, HistoryUnavailable, PriceNotFound, QualityRejected
from aggserver.history.dynamo import LatestRecord
from aggserver.process.tasks import stop_tasks
from aggserver.store.prices import PriceCache

__all__ = ["BatchAnswer", "PriceReader"]

log = logging.getLogger(__name__)

# A GET that misses Redis waits this long for DynamoDB's latest record, then answers 503.
HISTORY_LOOKUP_SECONDS = 2.0


@dataclass(slots=True)
class BatchAnswer:
    """A batch read: the bodies found, in order; the assets without a price and each one's
    reason code; the prices a quality guard refused."""

    bodies: list[bytes] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    reasons: dict[str, ReasonCode] = field(default_factory=dict)
    rejected: list[dict[str, object]] = field(default_factory=list)


class PriceReader:
    def __init__(
        self,
        *,
        cache: PriceCache,
        refresher: Refresher,
        tiers: TierMap,
        popularity: Popularity,
        latest_record: LatestRecord,
        view: PriceView,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cache = cache
        self._view = view
        self._refresher = refresher
        self._tiers = tiers
        self._popularity = popularity
        self._latest_record = latest_record
        self._clock = clock
        self._lookups: dict[str, asyncio.Task[CachedPrice | None]] = {}
        self._background: set[asyncio.Task[object]] = set()
        self.hits = 0
        self.misses = 0

    def answer_near(self, asset: str) -> bytes | None:
        """The GET body for a known ``asset`` when this process's view holds a coherent copy,
        else None (then ``answer_stored`` reads Redis). Plain function: most GETs end here
        without a coroutine."""
        body = self._view.answer(asset, int(self._clock()))
        if body is not None:
            self._popularity.hit(asset)
        return body

    async def answer(
        self, asset: str, max_age: float | None = None, guard: QualityGuard | None = None
    ) -> bytes:
        """The GET body for a known ``asset``.

        Raises PriceNotFound when no price exists anywhere, PriceTooOld when it is older than
        ``max_age``, QualityRejected when it fails ``guard``, BackendUnavailable when Redis is
        down and nothing else has a price.
        """
        self._popularity.hit(asset)
        cached = self._view.get(asset)
        if cached is None:
            cached = await self._read(asset, self._view.generation)
        rejection = guard.check(cached) if guard is not None else None
        if rejection is not None:
            raise QualityRejected(rejection)
        return self.render(cached, int(self._clock()), max_age)

    async def answer_stored(self, asset: str, max_age: float | None = None) -> bytes:
        """``answer`` past the near-cache (after ``answer_near`` found nothing): from Redis,
        else the fallbacks; the same errors."""
        self._popularity.hit(asset)
        cached = await self._read(asset, self._view.generation)
        return self.render(cached, int(self._clock()), max_age)

    def render(self, cached: CachedPrice, now: int, max_age: float | None = None) -> bytes:
        """The GET body of ``cached`` at unix time ``now``; PriceTooOld past ``max_age``."""
        if max_age is None:
            return self._view.render(cached, now)
        return render_answer(cached, now, self._tiers, max_age)

    async def latest(self, asset: str) -> CachedPrice | None:
        """The price as stored now, without fallbacks: None when Redis has none; this process's
        last one when Redis does not answer."""
        view = self._view
        cached = view.get(asset)
        if cached is not None:
            return cached
        generation = view.generation
        try:
            raw = await self._cache.get(asset)
        except BackendUnavailable:
            return view.last_known(asset)
        return None if raw is None else view.read(asset, raw, generation=generation)

    async def answer_with_sources(
        self, asset: str, max_age: float | None = None, guard: QualityGuard | None = None
    ) -> bytes:
        """The GET body plus ``quotes``: each exchange's part in the price, with its age now."""
        fields = orjson.loads(await self.answer(asset, max_age, guard))
        raw = await self._cache.get_sources(asset)
        now = int(self._clock())
        quotes = orjson.loads(raw) if raw is not None else []
        for quote in quotes:
            if "timestamp" in quote:
                quote["age_seconds"] = max(0, now - quote["timestamp"])
        fields["quotes"] = quotes
        return orjson.dumps(fields)

    async def answer_many(self, assets: Sequence[str], guard: QualityGuard | None = None) -> BatchAnswer:
        """GET bodies of the known ``assets`` that have a price, in order, and those that have
        none (``missing``, with a reason code each), from the near-cache and one MGET; prices
        failing ``guard`` are ``rejected`` instead. With Redis unreachable, the prices this
        process last saw; BackendUnavailable only when it has none of them."""
        found, unpriced = await self._find_many(assets)
        now = int(self._clock())
        answer = BatchAnswer()
        for asset in assets:
            cached = found.get(asset)
            rejection = guard.check(cached) if guard is not None and cached is not None else None
            if cached is None:
                answer.missing.append(asset)
                answer.reasons[asset] = unpriced
            elif rejection is not None:
                answer.rejected.append(rejection.answer(asset))
            else:
                answer.bodies.append(self.render(cached, now))
        return answer

    async def _find_many(self, assets: Sequence[str]) -> tuple[dict[str, CachedPrice], ReasonCode]:
        """The prices of ``assets`` found (near-cache, then one MGET), and the reason code of
        those not found; with Redis unreachable, what this process last saw of them."""
        view = self._view
        found: dict[str, CachedPrice] = {}
        wanted: list[str] = []
        for asset in assets:
            self._popularity.hit(asset)
            cached = view.get(asset)
            if cached is None:
                wanted.append(asset)
            else:
                found[asset] = cached
        if not wanted:
            return found, ReasonCode.NO_PRICE
        generation = view.generation
        try:
            values = await self._cache.get_list(wanted)
        except BackendUnavailable:
            remembered = {a: c for a in wanted if (c := view.last_known(a)) is not None}
            if not remembered and not found:
                raise
            found.update(remembered)
            return found, ReasonCode.STORE_UNAVAILABLE
        for asset, raw in zip(wanted, values, strict=True):
            if raw is None:
                self.misses += 1
            else:
                self.hits += 1
                found[asset] = view.read(asset, raw, generation=generation)
        return found, ReasonCode.NO_PRICE

    async def _read(self, asset: str, generation: int) -> CachedPrice:
        try:
            raw = await self._cache.get(asset)
        except BackendUnavailable:
            cached = self._view.last_known(asset)
            if cached is None:
                with contextlib.suppress(HistoryUnavailable):
                    cached = await self._from_history(asset, store=False)
            if cached is None:
                raise  # Redis's failure: the price store is what is missing
        else:
            if raw is None:
                self.misses += 1
                cached = await self._from_history(asset, store=True)
                if cached is None:
                    raise PriceNotFound(asset) from None
            else:
                self.hits += 1
                cached = self._view.read(asset, raw, generation=generation)
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
        """The latest record of ``asset`` as a restored price; None when it has none;
        HistoryUnavailable when DynamoDB fails or takes longer than ``HISTORY_LOOKUP_SECONDS``
        (botocore alone would retry a hung table for ~15 s)."""
        self._spawn(self._refresh_quietly(asset))
        try:
            async with asyncio.timeout(HISTORY_LOOKUP_SECONDS):
                record = await self._latest_record(asset)
        except Exception as exc:
            log.debug("history lookup for %s failed: %s", asset, exc)
            raise HistoryUnavailable(f"latest record of {asset}: {type(exc).__name__}") from exc
        if record is None:
            return None
        tier = self._tiers.of(asset)
        restored = CachedPrice.restored_from(record, tier=tier.name)
        if store:
            self._spawn(self._cache.put_many([(asset, restored.raw, tier.ttl)], only_if_missing=True))
        return restored

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
        await stop_tasks([*self._background, *self._lookups.values()])
