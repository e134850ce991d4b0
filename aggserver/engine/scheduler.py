"""Automatic refresh: every asset at its tier's cadence, work spread evenly over each interval.

Start-up: every asset missing from Redis is refreshed in one catch-up round, as fast as the
exchange bounds allow (about a second for 10,000 assets with bulk requests); whatever that
round could not price is restored from DynamoDB's latest records, so a restart with the
exchanges down does not answer 404s. Until the round reaches an asset, a GET falls back to
its DynamoDB record by itself (see engine/reader.py). After that each tier runs its own
loop: an interval is cut into slots and each slot refreshes its share of the tier with bulk
requests, so 9,800 cold assets become ~33 symbols a second, not 9,800 fetches at once. Once a
second, GET traffic decides which assets are promoted to the hot tier; a promoted asset is
refreshed at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aggserver.domain.price import CachedPrice
from aggserver.domain.tiers import Popularity, Tier, TierMap
from aggserver.engine.refresh import Refresher
from aggserver.errors import BackendUnavailable
from aggserver.exchanges.client import SCHEDULED, URGENT, ExchangeClient, FetchPlan
from aggserver.history.dynamo import LatestRecord
from aggserver.process.tasks import stop_tasks
from aggserver.store.lease import shard_of
from aggserver.store.prices import PriceCache
from aggserver.venues.base import Bulk

if TYPE_CHECKING:
    from aggserver.domain.symbols import SymbolSet
    from aggserver.engine.usd import UsdPricer
    from aggserver.exchanges.ingest import Ingestor

__all__ = ["OwnedWork", "Scheduler", "SchedulerStats"]

log = logging.getLogger(__name__)

SLOT_SECONDS = 1.0  # a tier's interval is cut into slots of about this length
CATCH_UP_CHUNK = 1_000
MAX_SLOT_TASKS = 8  # per tier; past it a slot waits rather than piling up work
WARM_CONCURRENCY = 16
BULK_ROUND_CHUNK = 500
# How long stop() waits for cancelled refresh work to end.
STOP_SECONDS = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerStats:
    """How long the last round of each tier (and ``bulk``) took, and the start-up round."""

    rounds: dict[str, float]
    catch_up_seconds: float | None
    bulk_rounds: int
    left_to_streams: int


class Scheduler:
    def __init__(
        self,
        *,
        symbols: Iterable[str],
        tiers: TierMap,
        popularity: Popularity,
        refresher: Refresher,
        cache: PriceCache,
        latest_record: LatestRecord,
        exchanges: ExchangeClient,
        bulk_round_seconds: float,
    ) -> None:
        self._symbols = symbols
        self._exchanges = exchanges
        self._bulk_round_seconds = bulk_round_seconds
        self._tiers = tiers
        self._popularity = popularity
        self._refresher = refresher
        self._cache = cache
        self._latest_record = latest_record
        self._tasks: list[asyncio.Task[None]] = []
        # Refreshes started by tier slots and promotions: stop() cancels them with the loops, or
        # they would outlive the scheduler (and the pools they use) by a whole slot's work.
        self._work: set[asyncio.Task[None]] = set()
        self.catch_up_seconds: float | None = None
        # Progress of the start-up round: (assets priced so far, assets it has to price).
        self.catch_up_progress = (0, 0)
        self.rounds: dict[str, float] = {}
        # The assets of the shards this process owns (None: all of them), from start().
        self._owned: frozenset[str] | None = None
        self._mine: Sequence[str] = list(symbols)
        self.bulk_rounds = 0
        # Assets the last bulk round left to their venues' streams (every venue streams them).
        self.left_to_streams = 0

    def stats(self) -> SchedulerStats:
        return SchedulerStats(
            rounds=dict(self.rounds),
            catch_up_seconds=self.catch_up_seconds,
            bulk_rounds=self.bulk_rounds,
            left_to_streams=self.left_to_streams,
        )

    def start(self, assets: Collection[str] | None = None) -> None:
        """Begin (again) for ``assets`` (None: every symbol; else the shards this process owns):
        a catch-up round for whatever is missing, then the tier loops."""
        self._owned = None if assets is None else frozenset(assets)
        self._mine = [a for a in self._symbols if self._owns(a)]
        self._tasks = [
            asyncio.create_task(self._start_up(), name="scheduler-start-up"),
            asyncio.create_task(self._promotions(), name="scheduler-promotions"),
        ]

    def reassign(self, assets: Collection[str] | None, added: Sequence[str]) -> None:
        """The universe changed: go on with ``assets`` (as for :meth:`start`), and price the
        ``added`` ones among them now rather than at their tier's next round."""
        self._owned = None if assets is None else frozenset(assets)
        self._mine = [a for a in self._symbols if self._owns(a)]
        if self._tasks:
            new = self._listed([a for a in added if self._owns(a)])
            if new:
                self._start_work(new, SCHEDULED)

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._work]
        self._tasks = []
        await stop_tasks(tasks, STOP_SECONDS)

    def _listed(self, assets: Sequence[str]) -> list[str]:
        return [a for a in assets if self._exchanges.listed(a)]

    def _owns(self, asset: str) -> bool:
        return self._owned is None or asset in self._owned

    async def _start_up(self) -> None:
        listed = self._listed(self._mine)
        missing = await self._missing(listed)
        started = time.monotonic()
        refreshed, failed = await self.refresh_all(missing)
        self.catch_up_seconds = time.monotonic() - started
        log.info(
            "start-up: %d prices cached, %d refreshed (%d failed) in %.1f s",
            len(listed) - len(missing),
            refreshed,
            failed,
            self.catch_up_seconds,
        )
        if failed:
            # Whatever the exchanges could not price yet comes back from history meanwhile.
            still_missing = await self._missing(missing)
            restore = asyncio.create_task(self._restore(still_missing), name="scheduler-restore")
            self._tasks.append(restore)
        loops = [self._tier_loop(tier) for tier in (self._tiers.hot, self._tiers.medium, self._tiers.cold)]
        await asyncio.gather(*loops, self._bulk_loop())

    async def refresh_all(self, assets: Sequence[str]) -> tuple[int, int]:
        """Refresh ``assets`` as fast as the exchange bounds allow; (refreshed, failed)."""
        chunks = [assets[i : i + CATCH_UP_CHUNK] for i in range(0, len(assets), CATCH_UP_CHUNK)]
        self.catch_up_progress = (0, len(assets))

        async def one(chunk: Sequence[str]) -> tuple[int, int]:
            outcome = await self._refresher.refresh_many(chunk)
            done, total = self.catch_up_progress
            self.catch_up_progress = (done + len(chunk), total)
            return outcome

        outcomes = await asyncio.gather(*(one(c) for c in chunks))
        return sum(o[0] for o in outcomes), sum(o[1] for o in outcomes)

    async def _missing(self, assets: Sequence[str]) -> list[str]:
        missing: list[str] = []
        for i in range(0, len(assets), CATCH_UP_CHUNK):
            chunk = assets[i : i + CATCH_UP_CHUNK]
            try:
                values = await self._cache.get_many(chunk)
            except BackendUnavailable:
                return list(assets)
            missing.extend(a for a, v in zip(chunk, values, strict=True) if v is None)
        return missing

    async def _restore(self, assets: Sequence[str]) -> None:
        """Put DynamoDB's latest record of each asset into Redis, where Redis has none."""
        if not assets:
            return
        queue = list(assets)
        writes: list[tuple[str, bytes, int]] = []

        async def worker() -> None:
            while queue:
                asset = queue.pop()
                try:
                    record = await self._latest_record(asset)
                except Exception as exc:  # noqa: BLE001 - history is a bonus at start-up
                    log.warning("cannot restore prices from DynamoDB (%s); refreshing instead", exc)
                    queue.clear()
                    return
                if record is not None:
                    tier = self._tiers.of(asset)
                    writes.append((asset, CachedPrice.restored_from(record, tier=tier.name).raw, tier.ttl))

        await asyncio.gather(*(worker() for _ in range(WARM_CONCURRENCY)))
        try:
            await self._cache.put_many(writes, only_if_missing=True)
        except BackendUnavailable as exc:
            log.warning("cannot restore prices into Redis: %s", exc)
            return
        log.info("start-up: %d prices with history restored where Redis had none", len(writes))

    async def _tier_loop(self, tier: Tier) -> None:
        loop = asyncio.get_running_loop()
        in_flight: set[asyncio.Task[None]] = set()
        next_round = loop.time()
        while True:
            members = self._tiers.members(tier)
            slots = max(1, min(len(members), math.ceil(tier.interval / SLOT_SECONDS)))
            slot_length = tier.interval / slots
            round_start = next_round
            for slot in range(slots):
                await _sleep_until(loop, round_start + slot * slot_length)
                share = [
                    a
                    for a in members[slot::slots]
                    if self._tiers.of(a) is tier
                    and self._owns(a)
                    and on_tiers(self._exchanges, a)
                    and not streamed(self._exchanges, a)
                ]
                if not share:
                    continue
                if len(in_flight) >= MAX_SLOT_TASKS:
                    await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                task = self._start_work(share, URGENT if tier is self._tiers.hot else SCHEDULED)
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            next_round = round_start + tier.interval
            # A round that overran its interval starts the next one at once, not in a burst.
            next_round = max(next_round, loop.time())
            self.rounds[tier.name] = loop.time() - round_start
            await _sleep_until(loop, next_round)

    async def _bulk_loop(self) -> None:
        """Assets that only all-tickers venues list cost one request per venue whatever their
        number, so all of them are refreshed every round instead of by tier. Assets every venue
        of which streams them are left to the streams, here and in the tier loops."""
        loop = asyncio.get_running_loop()
        next_round = loop.time()
        while True:
            # Without an all-tickers venue (the default mockex stack) there is nothing to do.
            assets = (
                [a for a in self._mine if priced_in_bulk(self._exchanges, a)]
                if any(e.bulk is Bulk.ALL for e in self._exchanges.exchanges)
                else []
            )
            round_start = next_round
            # In chunks, one after another: a single 10,000-asset refresh would hold the loop for
            # its whole aggregation and Redis pipeline; chunks let GETs run between them, and
            # all share one all-tickers answer per venue, however long the round takes.
            self._exchanges.expire_snapshots()
            due = [a for a in assets if not streamed(self._exchanges, a)]
            self.left_to_streams = len(assets) - len(due)
            for start in range(0, len(due), BULK_ROUND_CHUNK):
                await self._refresh_share(
                    due[start : start + BULK_ROUND_CHUNK],
                    FetchPlan(urgent=True, snapshot_age=self._bulk_round_seconds),
                )
            if assets:
                self.rounds["bulk"] = loop.time() - round_start
                self.bulk_rounds += 1
            next_round = max(round_start + self._bulk_round_seconds, loop.time())
            await _sleep_until(loop, next_round)

    def _start_work(self, assets: list[str], plan: FetchPlan) -> asyncio.Task[None]:
        task = asyncio.create_task(self._refresh_share(assets, plan))
        self._work.add(task)
        task.add_done_callback(self._work.discard)
        return task

    async def _refresh_share(self, assets: list[str], plan: FetchPlan) -> None:
        try:
            await self._refresher.refresh_many(assets, plan)
        except Exception:  # one slot's failure must not stop the tier
            log.exception("refresh of %d assets failed", len(assets))

    async def _promotions(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            promoted = self._popularity.update(self._tiers)
            if promoted:
                log.info("promoted to hot by traffic: %s", ", ".join(promoted[:10]))
                self._start_work(self._listed([a for a in promoted if self._owns(a)]), URGENT)


class OwnedWork:
    """What a process does for the refresh shards it holds (``store/lease.py``): the tier rounds
    of their assets, the venue streams that price them and their USD prices, started again
    whenever the shards it holds change, and told when the universe changes."""

    def __init__(
        self,
        scheduler: Scheduler,
        ingestor: Ingestor,
        pricer: UsdPricer,
        symbols: SymbolSet,
        *,
        shards: int,
    ) -> None:
        self._scheduler = scheduler
        self._ingestor = ingestor
        self._pricer = pricer
        self._symbols = symbols
        self._shards = shards
        self._held: frozenset[int] = frozenset()

    def _assets(self, owned: frozenset[int]) -> list[str] | None:
        if self._shards == 1:
            return None
        symbols = self._symbols
        return [a for a in symbols if shard_of(symbols.shard_key(a), self._shards) in owned]

    async def follow(self, owned: frozenset[int]) -> None:
        """Stop what ran for the shards held before, and start the work of ``owned``."""
        self._held = owned
        await self._pricer.stop()
        await self._ingestor.stop()
        await self._scheduler.stop()
        if not owned:
            return
        assets = self._assets(owned)
        self._ingestor.start(assets)
        self._scheduler.start(assets)
        self._pricer.start(assets)

    def universe_changed(self, added: list[str], removed: list[str]) -> None:
        """Pairs came or went: the held shards' assets are counted again; streams follow their
        exchanges' listings by themselves."""
        if not self._held:
            return
        assets = self._assets(self._held)
        self._ingestor.reassign(assets)
        self._scheduler.reassign(assets, added)
        self._pricer.reassign(assets)


def priced_in_bulk(exchanges: ExchangeClient, symbol: str) -> bool:
    """Listed, and only by venues that price all their symbols with one request (so it is
    refreshed every bulk round)."""
    listing = exchanges.listing_exchanges(symbol)
    return bool(listing) and all(e.bulk is Bulk.ALL for e in listing)


def streamed(exchanges: ExchangeClient, symbol: str) -> bool:
    """Listed, and every venue listing it streams it now: its aggregation follows the
    streams (``exchanges/ingest.py``), and a scheduled refresh would only repeat it."""
    listing = exchanges.listing_exchanges(symbol)
    return bool(listing) and all(exchanges.streams_now(e, symbol) for e in listing)


def on_tiers(exchanges: ExchangeClient, symbol: str) -> bool:
    """Listed, and by at least one venue asked per symbol or per list (so it is refreshed
    by its tier)."""
    return any(e.bulk is not Bulk.ALL for e in exchanges.listing_exchanges(symbol))


async def _sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    delay = deadline - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)
