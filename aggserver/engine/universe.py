"""The universe at run time: made from the venues' listings (``UNIVERSE=venues``) or from
SYMBOLS_FILE, and made again after every listing reload, when pairs come and go.

A change reaches everything that holds part of the universe: the symbol set (the API's 404s
and ``delisted``), each exchange's listing of ours (what it is asked for and streams), the
tiers, and whoever else subscribed (the scheduler's rounds)."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TextIO

from aggserver.domain.conversion import plan_conversions
from aggserver.domain.symbols import Pair, SymbolSet, load_symbols
from aggserver.domain.tiers import TierMap
from aggserver.domain.universe import csv_rows, ranked, venue_universe
from aggserver.exchanges.client import LISTING_RETRY_SECONDS, ExchangeClient
from aggserver.exchanges.transport import create_session
from aggserver.settings import Settings

__all__ = ["Universe", "UniverseStats", "file_order", "print_universe"]

log = logging.getLogger(__name__)

# Told (added, removed) after a reload changed the universe.
Listener = Callable[[list[str], list[str]], None]


@dataclass(frozen=True, slots=True)
class UniverseStats:
    """The universe's size and each venue's share, as /status and the dashboard show them."""

    source: str
    symbols: int
    pairs: int
    usd_prices: int
    delisted: int
    venues: dict[str, int]


def file_order(
    symbols: Sequence[str], pairs: Mapping[str, Pair], usd_prices: Mapping[str, str]
) -> tuple[str, ...]:
    """A symbols file's order, with each base's USD price just before its first pair (where the
    file says what its pairs' base and quote are)."""
    ordered: dict[str, None] = {}
    for symbol in symbols:
        pair = pairs.get(symbol)
        if pair is not None:
            for base in (pair.base, pair.quote):
                if base in usd_prices:
                    ordered.setdefault(usd_prices[base], None)
        ordered[symbol] = None
    for name in usd_prices.values():
        ordered.setdefault(name, None)
    return tuple(ordered)


class Universe:
    """Keeps the symbol set, the exchanges' listings and the tiers in step with the venues."""

    def __init__(
        self,
        settings: Settings,
        symbols: SymbolSet,
        exchanges: ExchangeClient,
        tiers: TierMap | None = None,
    ) -> None:
        self.source = settings.universe_source
        self._quotes = settings.universe_quotes
        self._min_venues = settings.universe_min_venues
        self._rate_currencies = settings.rate_currencies
        self._pegs = settings.quote_pegs
        self._with_usd = settings.usd_prices
        # The symbols file's order: the venues' universe breaks ties in rank by it.
        self._hint = {symbol: rank for rank, symbol in enumerate(symbols.ordered)}
        self._symbols = symbols
        self._exchanges = exchanges
        self._tiers = tiers
        self._listeners: list[Listener] = []
        if self.source == "venues":
            symbols.replace((), {}, delists=False)  # priced once the listings have loaded
        elif symbols.pairs:
            usd_prices = self._usd_prices(symbols.pairs)
            self._apply(file_order(symbols.ordered, symbols.pairs, usd_prices), symbols.pairs)

    def _usd_prices(self, pairs: Mapping[str, Pair]) -> dict[str, str]:
        if not self._with_usd:
            return {}
        return plan_conversions(pairs.values(), self._rate_currencies, self._pegs).usd_prices

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def stats(self) -> UniverseStats:
        symbols = self._symbols
        return UniverseStats(
            source=self.source,
            symbols=len(symbols),
            pairs=sum(1 for s in symbols.ordered if s in symbols.pairs) or len(symbols),
            usd_prices=sum(1 for s in symbols.ordered if s.endswith("-usd")),
            delisted=len(symbols.delisted),
            venues={e.name: e.listed_count(len(symbols)) for e in self._exchanges.exchanges},
        )

    def rebuild(self) -> tuple[list[str], list[str]]:
        """Make the universe again from the listings loaded now; (added, removed)."""
        if self.source == "venues":
            listings = {e.name: e.listing.pairs() for e in self._exchanges.exchanges if e.listing is not None}
            pairs = venue_universe(listings, quotes=self._quotes, min_venues=self._min_venues)
            order = ranked(pairs, self._usd_prices(pairs), self._hint, self._rate_currencies)
            changes = self._apply(order, pairs)
        else:
            changes = self._apply(self._symbols.ordered, self._symbols.pairs)
        added, removed = changes
        if added or removed:
            log.info(
                "universe: %d symbols (%d added, %d delisted)", len(self._symbols), len(added), len(removed)
            )
            for listener in self._listeners:
                listener(added, removed)
        return changes

    def _apply(self, order: tuple[str, ...], pairs: Mapping[str, Pair]) -> tuple[list[str], list[str]]:
        added, removed = self._symbols.replace(order, pairs)
        for exchange in self._exchanges.exchanges:
            if exchange.listing is not None:
                exchange.listing = exchange.listing.restricted(self._symbols)
        if (added or removed) and self._tiers is not None:
            self._tiers.assign(self._symbols.ordered)
        return added, removed

    async def load(self) -> None:
        """Load every venue's listing (again) and make the universe from them."""
        await self._exchanges.load_listings()
        self.rebuild()

    async def keep(self, interval: float) -> None:
        """Venues add and remove markets: load their listings again every ``interval`` (sooner
        while one has never loaded), until cancelled."""
        while True:
            missing = self._exchanges.missing_listings()
            await asyncio.sleep(min(interval, LISTING_RETRY_SECONDS) if missing else interval)
            await self.load()


async def print_universe(settings: Settings, out: TextIO) -> int:
    """``aggserver symbols``: the universe the configured venues give now, as the CSV that
    SYMBOLS_FILE reads (``symbol,base,quote,venues``); returns how many listings failed."""
    symbols = load_symbols(settings.symbols_file)
    async with create_session(connections=10, timeout=settings.exchange_timeout_seconds) as session:
        exchanges = ExchangeClient(
            session, settings.exchanges, symbols=symbols, timeout=settings.exchange_timeout_seconds
        )
        universe = Universe(replace(settings, universe="venues"), symbols, exchanges)
        await universe.load()
    failed = [e for e in exchanges.exchanges if e.listing is None and not e.lists_everything]
    for exchange in failed:
        print(f"aggserver: {exchange.name}'s listing failed: {exchange.listing_error}", file=sys.stderr)
    out.write("\n".join(csv_rows(symbols.pairs, symbols.ordered)) + "\n")
    out.flush()
    return len(failed)
