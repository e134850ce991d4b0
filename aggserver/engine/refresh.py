"""Refreshing prices: fetch the exchanges, keep only trustworthy quotes, aggregate, store.

One refresh per asset is in flight at a time (single-flight): a POST storm, the scheduler and
cache-miss fallbacks asking for the same asset share one fetch. A price and its history record
are stored together (the record in the outbox, see ``history/outbox.py``). Redis being down does not
stop refreshes: the price is kept in this process (served from there) and the record waits here
until Redis is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import orjson

from aggserver.domain.aggregate import Aggregate, QuotePolicy, Selection, aggregate, breakdown, select_quotes
from aggserver.domain.oracle import ema_step
from aggserver.domain.price import CachedPrice
from aggserver.domain.reasons import ReasonCode
from aggserver.domain.symbols import USD_SUFFIX
from aggserver.domain.tiers import HistoryGate, TierMap
from aggserver.engine.price_view import PriceView
from aggserver.engine.usd import UsdPricer
from aggserver.errors import BackendUnavailable, NoValidQuotes
from aggserver.exchanges.client import SCHEDULED, ExchangeClient, FetchPlan, FetchResult
from aggserver.history.outbox import Outbox
from aggserver.history.records import HistoryRecord
from aggserver.store.prices import PriceCache

__all__ = ["RefreshStats", "Refresher"]

log = logging.getLogger(__name__)

# Assets aggregated between two yields to the event loop during a bulk refresh.
YIELD_EVERY = 64


@dataclass(frozen=True, slots=True)
class RefreshStats:
    """Refreshes by (tier, outcome), calls that joined one in flight, writes Redis refused."""

    outcomes: dict[tuple[str, str], int]
    joined: int
    redis_write_failures: int


class Refresher:
    """The refresh path; cache and history only ever see aggregates of accepted quotes."""

    def __init__(
        self,
        *,
        exchanges: ExchangeClient,
        cache: PriceCache,
        outbox: Outbox,
        tiers: TierMap,
        policy: QuotePolicy,
        gate: HistoryGate,
        view: PriceView,
        ema_half_life: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._exchanges = exchanges
        self._view = view
        self._ema_half_life = ema_half_life
        # Assets whose stored price was looked for since start-up (the EMA and the outlier
        # reference continue from it across restarts).
        self._looked_up: set[str] = set()
        self._cache = cache
        self._outbox = outbox
        self._tiers = tiers
        self._policy = policy
        self._gate = gate
        self._clock = clock
        self._in_flight: dict[str, asyncio.Future[Aggregate]] = {}
        # (source, asset) pairs last dropped as outliers: they must come well back in to count.
        self._distrusted: dict[str, set[str]] = {}
        self.redis_write_failures = 0
        # Calls that shared a refresh already in flight instead of asking the exchanges again.
        self.joined = 0
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (tier, "ok" | "no_valid_quotes")
        self._usd: UsdPricer | None = None

    def price_in_usd(self, pricer: UsdPricer) -> None:
        """Store the USD prices ``pricer`` computes, and tell it which pairs were stored."""
        self._usd = pricer
        pricer.store = self._store

    def stats(self) -> RefreshStats:
        return RefreshStats(dict(self.outcomes), self.joined, self.redis_write_failures)

    def running(self, asset: str) -> bool:
        """Whether a refresh of ``asset`` is in flight (a new caller would share it)."""
        return asset in self._in_flight

    async def refresh(self, asset: str) -> Aggregate:
        """Fetch, aggregate and store ``asset``; NoValidQuotes leaves the stored price untouched."""
        running = self._in_flight.get(asset)
        if running is not None:
            self.joined += 1
            return await asyncio.shield(running)
        future: asyncio.Future[Aggregate] = asyncio.get_running_loop().create_future()
        self._in_flight[asset] = future
        try:
            if self._usd is not None and self._usd.prices(asset):
                result = await self._usd.refresh(asset)
            else:
                outcome = (await self._store([(asset, await self._exchanges.fetch(asset))]))[asset]
                if isinstance(outcome, NoValidQuotes):
                    raise outcome
                result = outcome
            future.set_result(result)
            return result
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved here, so an unwatched failure is not reported twice
            raise
        finally:
            del self._in_flight[asset]

    async def refresh_many(self, assets: Sequence[str], plan: FetchPlan = SCHEDULED) -> tuple[int, int]:
        """Refresh many assets with bulk requests, asking the exchanges as ``plan`` says;
        returns (refreshed, failed). Never raises for an asset's failure; assets already being
        refreshed are left to that refresh."""
        loop = asyncio.get_running_loop()
        mine = [a for a in dict.fromkeys(assets) if a not in self._in_flight]
        futures = {asset: loop.create_future() for asset in mine}
        self._in_flight.update(futures)
        try:
            fetched = await self._exchanges.fetch_many(mine, plan)
            results = await self._store(list(fetched.items()))
        except BaseException as exc:
            for future in futures.values():
                if not future.done():
                    future.set_exception(exc)
                    future.exception()
            raise
        finally:
            for asset in mine:
                self._in_flight.pop(asset, None)
        failed = 0
        for asset, result in results.items():
            future = futures[asset]
            if isinstance(result, NoValidQuotes):
                failed += 1
                future.set_exception(result)
                future.exception()
            else:
                future.set_result(result)
        return len(mine) - failed, failed

    async def _store(
        self, fetched: Sequence[tuple[str, FetchResult]]
    ) -> dict[str, Aggregate | NoValidQuotes]:
        await self._recall_stored(asset for asset, _ in fetched)
        now = self._clock()
        results: dict[str, Aggregate | NoValidQuotes] = {}
        made: list[CachedPrice] = []
        writes: list[tuple[str, bytes, int]] = []
        details: list[tuple[str, bytes, int]] = []
        records: list[HistoryRecord] = []
        for done, (asset, fetch) in enumerate(fetched, start=1):
            if done % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # a big round must not hold up the GETs waiting behind it
            outcome, selection = self._aggregate(asset, fetch, now)
            results[asset] = outcome
            tier = self._tiers.of(asset)
            if isinstance(outcome, NoValidQuotes):
                self.outcomes[tier.name, "no_valid_quotes"] += 1
                continue
            self.outcomes[tier.name, "ok"] += 1
            cached = CachedPrice.of(
                outcome, updated_at=int(now), tier=tier.name, ema_price=self._ema(outcome)
            )
            made.append(cached)
            writes.append((asset, cached.raw, tier.ttl))
            details.append(
                (
                    asset,
                    orjson.dumps(breakdown(fetch.quotes, selection, fetch.rejected, fetch.converted)),
                    tier.ttl,
                )
            )
            self._view.computed(asset, cached)
            if self._gate.should_record(asset, outcome.price, now):
                records.append(
                    HistoryRecord(
                        asset=asset, timestamp=outcome.last_updated, price=outcome.price, updated_at=int(now)
                    )
                )
        generation = self._view.generation
        try:
            seqs = await self._cache.put_many(writes, sources=details, records=records)
        except BackendUnavailable as exc:
            self._outbox.spill(records)
            self.redis_write_failures += 1
            if self.redis_write_failures == 1 or self.redis_write_failures % 100 == 0:
                log.warning(
                    "%s: serving %d refreshed prices from memory until Redis returns", exc, len(writes)
                )
            self._view.invalidate(asset for asset, _, _ in writes)
        else:
            # A list, not a generator: the view takes the prices, not a callback into this module.
            stored = [cached.with_seq(seq) for cached, seq in zip(made, seqs, strict=True)]
            self._view.stored(stored, generation=generation)
        if self._usd is not None and made:
            # Pairs only: the USD prices computed from them take their rates along themselves.
            self._usd.stored(c.asset for c in made if not c.asset.endswith(USD_SUFFIX))
        return results

    async def _recall_stored(self, assets: Iterable[str]) -> None:
        """The stored price of each asset not known here yet (after a restart, say), so the EMA
        and the outlier reference go on from it; looked for once per asset and process."""
        view = self._view
        unknown = [a for a in assets if a not in self._looked_up and view.last_known(a) is None]
        if not unknown:
            return
        self._looked_up.update(unknown)
        generation = view.generation
        try:
            values = await self._cache.get_many(unknown)
        except BackendUnavailable:
            return
        for asset, raw in zip(unknown, values, strict=True):
            if raw is not None:
                view.read(asset, raw, generation=generation)

    def _ema(self, aggregate: Aggregate) -> float:
        """The asset's EMA with ``aggregate`` (``oracle.ema_step``), from the last price known."""
        previous = self._view.last_known(aggregate.asset)
        if previous is None:
            return aggregate.price
        at = (
            aggregate.last_updated_ms / 1000
            if aggregate.last_updated_ms is not None
            else aggregate.last_updated
        )
        base = previous.ema_price if previous.ema_price is not None else previous.price
        return ema_step(base, previous.exchange_time, aggregate.price, at, self._ema_half_life)

    def _aggregate(
        self, asset: str, fetch: FetchResult, now: float
    ) -> tuple[Aggregate | NoValidQuotes, Selection]:
        previous = self._view.last_known(asset)
        reference = previous.price if previous is not None else None
        distrusted = self._distrusted.get(asset, set())
        selection = select_quotes(
            fetch.quotes, now=now, policy=self._policy, distrusted=distrusted, reference=reference
        )
        outliers = {s for s, reason in selection.rejected.items() if reason.code is ReasonCode.OUTLIER}
        still_distrusted = (distrusted - {q.source for q in selection.accepted}) | outliers
        if still_distrusted:
            self._distrusted[asset] = still_distrusted
        else:
            self._distrusted.pop(asset, None)
        rejected = {**fetch.rejected, **selection.rejected}
        if rejected:
            log.debug("refresh %s: rejected %s", asset, rejected)
        if not selection.accepted:
            return NoValidQuotes(rejected), selection
        return aggregate(asset, selection.accepted), selection
