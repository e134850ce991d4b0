"""USD prices: every ``{base}-usd`` price aggregated again, coalesced, whenever a market or a
rate that feeds it moved (``domain/conversion.py`` has the rule; this module runs it).

The pairs are refreshed as they always are (tiers, bulk rounds, streams); the refresher tells
this module which pairs it stored, and at most every ``min_interval`` seconds the USD prices
they feed are computed again from the latest quotes the venues gave, with no request of their
own: rates first, then the prices that use them, each stored like any other price.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence

from aggserver.domain.aggregate import Aggregate
from aggserver.domain.conversion import ConversionPlan, Rate, convert, plan_conversions, unquoted
from aggserver.domain.price import CachedPrice
from aggserver.domain.reasons import ReasonCode
from aggserver.domain.symbols import USD_SUFFIX, SymbolSet, usd_name
from aggserver.engine.price_view import PriceView
from aggserver.errors import BackendUnavailable, NotListed, NoValidQuotes
from aggserver.exchanges.client import STREAMED, ExchangeClient, FetchPlan, FetchResult
from aggserver.process.tasks import stop_tasks
from aggserver.store.prices import PriceCache

__all__ = ["UsdPricer"]

log = logging.getLogger(__name__)

Outcomes = dict[str, Aggregate | NoValidQuotes]
# A refresh someone asked for: at once, and no all-tickers answer from before the request.
ASKED = FetchPlan(urgent=True, snapshot_age=0.0)
# How computed prices are stored: the refresher's path, like every other price's.
Store = Callable[[Sequence[tuple[str, FetchResult]]], Awaitable[Outcomes]]


class UsdPricer:
    """Computes the USD prices of the universe from its pairs' latest quotes."""

    def __init__(
        self,
        *,
        symbols: SymbolSet,
        exchanges: ExchangeClient,
        view: PriceView,
        cache: PriceCache,
        rate_currencies: Sequence[str],
        pegs: Collection[str],
        max_rate_age: float,
        min_interval: float,
        enabled: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._enabled = enabled
        self._symbols = symbols
        self._exchanges = exchanges
        self._view = view
        self._cache = cache
        self._rate_currencies = tuple(rate_currencies)
        self._pegs = frozenset(pegs)
        self._max_rate_age = max_rate_age
        self._min_interval = min_interval
        self._clock = clock
        self._plan_version = -1
        self._plan = plan_conversions((), ())
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._owned: frozenset[str] | None = None
        # Set by the refresher that stores what is computed here (they need each other).
        self.store: Store | None = None
        self.passes = 0
        # Every USD price computed since start-up (those new to the universe are due at once).
        self._computed: set[str] = set()

    @property
    def plan(self) -> ConversionPlan:
        """The plan of the universe as it is now (made again after a listing reload)."""
        if self._enabled and (self._plan_version != self._symbols.version or self._plan_version < 0):
            self._plan = plan_conversions(self._symbols.pairs.values(), self._rate_currencies, self._pegs)
            self._plan_version = self._symbols.version
        return self._plan

    def prices(self, asset: str) -> bool:
        """Whether ``asset`` is a USD price computed here (rather than fetched from venues)."""
        return asset.endswith(USD_SUFFIX) and asset in self.plan.legs

    def start(self, assets: Collection[str] | None = None) -> None:
        """Compute (again) the USD prices among ``assets`` (None: all of them)."""
        self._owned = None if assets is None else frozenset(assets)
        self._dirty.update(self.plan.legs.keys())  # every price once, from what is held now
        self._wake.set()
        self._tasks = [asyncio.create_task(self._run(), name="usd-prices")]

    async def stop(self) -> None:
        await stop_tasks(self._tasks)
        self._tasks = []

    def reassign(self, assets: Collection[str] | None) -> None:
        """The universe changed: compute ``assets``' USD prices (None: all) from now on, the new
        ones at once."""
        self._owned = None if assets is None else frozenset(assets)
        self._dirty.update(a for a in self.plan.legs if a not in self._computed)
        self._wake.set()

    def stored(self, assets: Iterable[str]) -> None:
        """Pairs (or rates) stored just now: the USD prices they feed are due."""
        feeds = self.plan.feeds
        due = [a for asset in assets for a in feeds.get(asset, ())]
        if due:
            self._dirty.update(due)
            self._wake.set()

    async def refresh(self, asset: str) -> Aggregate:
        """Refresh ``asset``'s pairs and those of the rates it converts through now (as a POST
        /refresh does), then compute the rates and it."""
        plan = self.plan
        if asset not in plan.legs:
            raise NotListed(asset)
        needed = {asset}
        pending = [asset]
        while pending:
            for leg in plan.legs[pending.pop()]:
                rate = usd_name(leg.currency)
                if rate in plan.legs and rate not in needed:
                    needed.add(rate)
                    pending.append(rate)
        due = [a for a in plan.order if a in needed]
        pairs = list(dict.fromkeys(leg.pair for a in due for leg in plan.legs[a]))
        await self._exchanges.fetch_many(pairs, ASKED)  # the venues' answers are kept as polled
        result = (await self._compute(due, owned_only=False))[asset]
        if isinstance(result, NoValidQuotes):
            raise result
        return result

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            # Changes arriving this close together are one computation (AGGREGATE_MIN_INTERVAL).
            await asyncio.sleep(self._min_interval)
            self._wake.clear()
            due, self._dirty = self._dirty, set()
            try:
                await self._compute(self.plan.dependents(due) + [a for a in self.plan.order if a in due])
            except Exception:  # one pass's failure must not stop the next
                log.exception("USD prices: a pass failed")

    async def _compute(self, assets: Sequence[str], *, owned_only: bool = True) -> Outcomes:
        """Compute ``assets`` in the plan's order, the rates first, each stage storing before the
        next reads its rates; only those of the shards owned here unless not ``owned_only``."""
        plan, store = self.plan, self.store
        assert store is not None
        wanted = set(assets)
        owned = self._owned if owned_only else None
        order = [a for a in plan.order if a in wanted and (owned is None or a in owned)]
        rates_first = [a for a in order if a[: -len(USD_SUFFIX)] in self._rate_currencies]
        stages = [[a] for a in rates_first] + [[a for a in order if a not in rates_first]]
        results: Outcomes = {}
        for stage in (s for s in stages if s):
            pairs = list(dict.fromkeys(leg.pair for asset in stage for leg in plan.legs[asset]))
            fetched = await self._exchanges.fetch_many(pairs, STREAMED)
            quotes = {pair: fetched[pair].quotes for pair in pairs}
            rates = await self._rates()
            now = self._clock()
            work: list[tuple[str, FetchResult]] = []
            for asset in stage:
                legs = plan.legs[asset]
                conversion = convert(asset, legs, quotes, rates, now=now, max_rate_age=self._max_rate_age)
                rejected, converted = dict(conversion.rejected), dict(conversion.converted)
                for leg in legs:
                    for exchange, why in fetched[leg.pair].rejected.items():
                        if why.code is not ReasonCode.NOT_LISTED:
                            rejected[f"{exchange}:{leg.pair}"] = why
                            converted[f"{exchange}:{leg.pair}"] = unquoted(exchange, leg, rates, now)
                fetch = FetchResult(
                    quotes=conversion.quotes, rejected=rejected, converted=conversion.converted
                )
                work.append((asset, fetch))
            results.update(await store(work))
            self._computed.update(stage)
        self.passes += 1
        return results

    async def _rates(self) -> dict[str, Rate]:
        """Each rate currency's USD rate: its USD price as stored (this process's copy first), or
        1.0 where QUOTE_PEGS allows it and no venue lists a market that prices it."""
        rates: dict[str, Rate] = {}
        missing: list[str] = []
        legs = self.plan.legs
        for currency in self._rate_currencies:
            name = usd_name(currency)
            held = self._view.last_known(name)
            if held is not None:
                rates[currency] = _rate_of(currency, held)
            elif name in legs:
                missing.append(currency)
            elif currency in self._pegs:
                rates[currency] = Rate(currency, 1.0, self._clock(), assumed=True, via=frozenset({currency}))
        if missing:
            try:
                values = await self._cache.get_many([usd_name(c) for c in missing])
            except BackendUnavailable:
                values = [None] * len(missing)
            for currency, raw in zip(missing, values, strict=True):
                if raw is not None:
                    rates[currency] = _rate_of(currency, CachedPrice.decode(raw))
        return rates


def _rate_of(currency: str, price: CachedPrice) -> Rate:
    at = price.last_updated_ms / 1000 if price.last_updated_ms is not None else float(price.last_updated)
    return Rate(currency, price.price, at, via=frozenset({currency}))
