"""The configured exchanges: each one's venue adapter, its listing of our symbols, its rate
budget, breaker and bound on requests in flight, and what was last polled of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field

from aggserver.domain.quotes import Quote
from aggserver.domain.reasons import QuoteRejected
from aggserver.domain.symbols import Pair
from aggserver.exchanges.breaker import BreakerState, CircuitBreaker
from aggserver.exchanges.throttle import Held, Throttle
from aggserver.exchanges.transport import MAX_BULK_BODY_BYTES, ExchangeFailure, Transport
from aggserver.metrics import Histogram
from aggserver.venues import VenueConfig, venue_for
from aggserver.venues.base import Bulk, Instrument, Ticker, Venue, VenueError

__all__ = ["Exchange", "ExchangeStats", "Listing", "Tickers", "exchanges_for", "load_listing"]

log = logging.getLogger(__name__)

# A bulk answer: tickers (or why each is unusable) by the venue's names, and when it arrived.
Tickers = tuple[dict[str, Ticker | QuoteRejected], float]


@dataclass(frozen=True, slots=True, kw_only=True)
class Listing:
    """Which of our symbols a venue lists, and under which of its own names."""

    natives: Mapping[str, str]  # ours -> the venue's
    loaded_at: float  # unix seconds
    # Every tradable instrument the venue listed, ours or not (the venues' universe is made of them).
    instruments: tuple[Instrument, ...] = ()

    def pairs(self) -> list[Pair]:
        """Every instrument as a pair of the universe (codes in lower case)."""
        return [Pair(i.symbol, i.base.lower(), i.quote.lower()) for i in self.instruments]

    def restricted(self, symbols: Container[str]) -> Listing:
        """The same answer, listing only ``symbols`` of ours (a new object when that changes)."""
        natives = {i.symbol: i.native for i in self.instruments if i.symbol in symbols}
        if natives == self.natives:
            return self
        return Listing(natives=natives, loaded_at=self.loaded_at, instruments=self.instruments)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeStats:
    """One exchange's figures, as /status and /metrics show them."""

    name: str
    venue: str
    circuit: BreakerState
    requests: int
    errors: int
    latency: Histogram
    listed: int
    listing_loaded_at: float | None
    listing_error: str | None
    rate_limited: int
    held: int
    blocked_seconds: float


@dataclass(kw_only=True)
class Exchange:
    """One configured exchange with its adapter, listing, budget, breaker and bound on requests."""

    name: str
    venue: Venue
    origin: str
    breaker: CircuitBreaker
    slots: asyncio.Semaphore
    throttle: Throttle
    bulk: Bulk
    # None until loaded; venues without a listing request list every symbol.
    listing: Listing | None = None
    listing_error: str | None = None
    requests: int = 0
    errors: int = 0
    latency: Histogram = field(default_factory=Histogram)
    # Share of its budget the venue last said we had used (Binance tells; others do not).
    used_share: float | None = None
    # Seconds the last request took on the wire (waiting for rate budget not included).
    last_round_trip: float = 0.0
    # The latest all-tickers request (Bulk.ALL), shared by every caller, and when it started
    # (loop time).
    snapshot: asyncio.Task[Tickers | QuoteRejected] | None = None
    snapshot_at: float = 0.0
    # The latest quote polled of each symbol, for aggregations that poll nothing themselves.
    polled: dict[str, Quote] = field(default_factory=dict)

    @property
    def lists_everything(self) -> bool:
        return self.venue.lists_everything

    def listed_count(self, ours: int) -> int:
        """How many of our ``ours`` symbols it lists."""
        if self.lists_everything:
            return ours
        return len(self.listing.natives) if self.listing is not None else 0

    def native(self, symbol: str) -> str | None:
        """The venue's name for ``symbol``, or None when it does not list it."""
        if self.lists_everything:
            return symbol
        return self.listing.natives.get(symbol) if self.listing is not None else None

    def stats(self, ours: int) -> ExchangeStats:
        """Its figures now; ``ours`` is how many symbols we have (for what it lists)."""
        return ExchangeStats(
            name=self.name,
            venue=self.venue.name,
            circuit=self.breaker.state,
            requests=self.requests,
            errors=self.errors,
            latency=self.latency,
            listed=self.listed_count(ours),
            listing_loaded_at=self.listing.loaded_at if self.listing else None,
            listing_error=self.listing_error,
            rate_limited=self.throttle.rate_limited,
            held=self.throttle.held,
            blocked_seconds=self.throttle.blocked_for(),
        )


def exchanges_for(
    configs: Sequence[VenueConfig],
    *,
    bulk: bool,
    concurrency: int,
    breaker_failures: int,
    breaker_reset: float,
    rate_shares: Mapping[str, float],
) -> list[Exchange]:
    """One :class:`Exchange` per configured venue, none of them listed yet."""
    exchanges = []
    for config in configs:
        venue = venue_for(config)
        exchanges.append(
            Exchange(
                name=config.name,
                venue=venue,
                origin=venue.origin(config.base_url),
                breaker=CircuitBreaker(
                    config.name, failure_threshold=breaker_failures, reset_seconds=breaker_reset
                ),
                slots=asyncio.Semaphore(concurrency),
                throttle=Throttle(
                    config.name,
                    capacity=venue.rate.capacity,
                    window_seconds=venue.rate.window_seconds,
                    share=rate_shares.get(config.venue, 1.0),
                ),
                bulk=venue.bulk if bulk else Bulk.NONE,
            )
        )
    return exchanges


async def load_listing(
    transport: Transport, exchange: Exchange, symbols: Container[str], clock: Callable[[], float]
) -> None:
    """Load (again) one venue's listing of ``symbols``; a failure is kept in ``listing_error``
    and the listing before it, if any, stays."""
    venue = exchange.venue
    request = venue.listing_request()
    assert request is not None
    try:
        instruments, rate = await transport.get(
            exchange,
            request,
            MAX_BULK_BODY_BYTES,
            urgent=True,
            parse=lambda payload: (venue.parse_listing(payload), venue.listing_rate(payload)),
        )
    except (ExchangeFailure, VenueError, Held) as exc:
        exchange.listing_error = str(exc)
        log.warning(
            "cannot load %s's listing (%s); %s",
            exchange.name,
            exc,
            "keeping the last one" if exchange.listing else "it prices nothing until it loads",
        )
        return
    if rate is not None:
        exchange.throttle.set_budget(rate.capacity, rate.window_seconds)
    listing = Listing(natives={}, loaded_at=clock(), instruments=tuple(instruments)).restricted(symbols)
    exchange.listing = listing
    exchange.listing_error = None
    log.info(
        "%s lists %d of our symbols (of %d instruments)",
        exchange.name,
        len(listing.natives),
        len(instruments),
    )
