"""Fetching quotes: every exchange that lists an asset asked at once, within the refresh budget;
bulk answers shared by every caller; streamed and last polled quotes used where they stand in
for a request. An exchange's failure becomes a reason (``QuoteRejected``), never an error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from aggserver.domain.conversion import Converted
from aggserver.domain.quotes import Quote, to_quote
from aggserver.domain.reasons import QuoteRejected, ReasonCode
from aggserver.errors import NotListed
from aggserver.exchanges.registry import Exchange, Tickers, exchanges_for, load_listing
from aggserver.exchanges.throttle import Held
from aggserver.exchanges.transport import MAX_BODY_BYTES, MAX_BULK_BODY_BYTES, ExchangeFailure, Transport
from aggserver.venues import VenueConfig
from aggserver.venues.base import Bulk, Ticker, VenueError

__all__ = [
    "SCHEDULED",
    "SNAPSHOT_SECONDS",
    "STREAMED",
    "URGENT",
    "ExchangeClient",
    "FetchPlan",
    "FetchResult",
    "StreamedQuotes",
    "quote_of",
]

# While a venue has never loaded its listing, it is tried again this often.
LISTING_RETRY_SECONDS = 30.0
# An all-tickers answer serves every refresh that starts within this long of it: tier slots
# a second apart then cost a bulk venue one request every two seconds, whatever they ask.
SNAPSHOT_SECONDS = 2.0

# Why an exchange has no quote of a symbol when nothing failed.
NOT_LISTED = QuoteRejected(ReasonCode.NOT_LISTED, "not listed")
MISSING_FROM_BULK = QuoteRejected(ReasonCode.NO_QUOTES, "missing from bulk answer")
NOT_STREAMED_YET = QuoteRejected(ReasonCode.NO_QUOTES, "no streamed ticker yet")
NOT_POLLED_YET = QuoteRejected(ReasonCode.NO_QUOTES, "not polled yet")
BUDGET_SPENT = QuoteRejected(ReasonCode.TIMEOUT, "timed out (refresh budget)")


class StreamedQuotes(Protocol):
    """What the push side (``exchanges/ingest.py``, the one owner of streamed quotes) tells the
    fetch path: whether an exchange's stream is up now, and its latest streamed quote of a
    symbol (None before the stream has brought one)."""

    def streaming(self, exchange: str) -> bool: ...

    def streamed(self, exchange: str, symbol: str) -> Quote | QuoteRejected | None: ...


class _NoStreams:
    def streaming(self, exchange: str) -> bool:
        return False

    def streamed(self, exchange: str, symbol: str) -> Quote | QuoteRejected | None:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchPlan:
    """How a refresh asks the exchanges. ``urgent`` work (hot assets) may spend the rate budget
    kept back from the rest; an all-tickers answer younger than ``snapshot_age`` seconds is used
    again rather than asked for anew; without ``poll`` nothing is requested at all: venues
    answer from their streams or their last polled quotes (the trust rules judge their age)."""

    urgent: bool = False
    snapshot_age: float = SNAPSHOT_SECONDS
    poll: bool = True


# A scheduled round's: within the share of the budget the hot assets leave.
SCHEDULED = FetchPlan()
URGENT = FetchPlan(urgent=True)
# What an aggregation of streamed tickers asks: nothing new, only what the venues have sent.
STREAMED = FetchPlan(poll=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchResult:
    """Every exchange's answer for one asset: the usable quotes and why the others were not."""

    quotes: list[Quote] = field(default_factory=list)
    rejected: dict[str, QuoteRejected] = field(default_factory=dict)
    # A USD price's markets as they were converted (``domain/conversion.py``), by source.
    converted: Mapping[str, Converted] = field(default_factory=dict)


class ExchangeClient:
    """Fetches assets from every configured exchange that lists them, all at once."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        configs: Sequence[VenueConfig],
        *,
        symbols: Container[str],
        timeout: float,
        budget: float | None = None,
        bulk: bool = True,
        concurrency: int = 32,
        breaker_failures: int = 5,
        breaker_reset: float = 5.0,
        rate_shares: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._symbols = symbols
        self._clock = clock
        self._transport = Transport(session, timeout=timeout)
        self._streams: StreamedQuotes = _NoStreams()
        self.exchanges: list[Exchange] = exchanges_for(
            configs,
            bulk=bulk,
            concurrency=concurrency,
            breaker_failures=breaker_failures,
            breaker_reset=breaker_reset,
            rate_shares=rate_shares or {},
        )
        self._budget = budget if budget is not None else timeout * 1.5

    # --- listings -----------------------------------------------------------------------

    def follow_streams(self, streams: StreamedQuotes) -> None:
        """Answer from ``streams`` for the exchanges whose stream is up (set once, at start-up)."""
        self._streams = streams

    def streams_now(self, exchange: Exchange, symbol: str) -> bool:
        """Whether ``exchange``'s stream is up and has brought ``symbol``."""
        streams = self._streams
        return streams.streaming(exchange.name) and streams.streamed(exchange.name, symbol) is not None

    async def load_listings(self) -> None:
        """Load (again) every venue's listing; a failed load keeps the one before, if any."""
        await asyncio.gather(*(self.load_listing(e) for e in self.exchanges if not e.lists_everything))

    def missing_listings(self) -> bool:
        return any(e.listing is None for e in self.exchanges if not e.lists_everything)

    async def load_listing(self, exchange: Exchange) -> None:
        """Load (again) one venue's listing; a failure is kept in ``listing_error``."""
        await load_listing(self._transport, exchange, self._symbols, self._clock)

    def listing_exchanges(self, symbol: str) -> list[Exchange]:
        return [e for e in self.exchanges if e.native(symbol) is not None]

    def listed(self, symbol: str) -> bool:
        """Whether any exchange lists ``symbol``."""
        return any(e.native(symbol) is not None for e in self.exchanges)

    # --- fetching -----------------------------------------------------------------------

    async def fetch(self, symbol: str) -> FetchResult:
        """Quotes for ``symbol`` from every exchange listing it, within the refresh budget.
        NotListed when none does."""
        listing = self.listing_exchanges(symbol)
        if not listing:
            raise NotListed(symbol)
        tasks = {asyncio.ensure_future(self._fetch_one(e, symbol, urgent=True)): e for e in listing}
        done, pending = await asyncio.wait(tasks, timeout=self._budget)
        for task in pending:
            task.cancel()
        result = FetchResult()
        for task, exchange in tasks.items():
            _record(result, exchange.name, task.result() if task in done else BUDGET_SPENT)
        return result

    async def fetch_many(
        self, symbols: Sequence[str], plan: FetchPlan = FetchPlan()
    ) -> dict[str, FetchResult]:
        """Quotes for many symbols as ``plan`` says: bulk requests where a venue has them, else
        one per symbol; venues whose stream is up answer from it."""
        results = {symbol: FetchResult() for symbol in symbols}
        await asyncio.gather(*(self._fetch_from(e, symbols, results, plan) for e in self.exchanges))
        return results

    def expire_snapshots(self) -> None:
        """The next bulk fetch asks every all-tickers venue anew (a new round begins)."""
        for exchange in self.exchanges:
            if exchange.snapshot is not None and exchange.snapshot.done():
                exchange.snapshot = None

    async def _fetch_from(
        self,
        exchange: Exchange,
        symbols: Sequence[str],
        results: dict[str, FetchResult],
        plan: FetchPlan,
    ) -> None:
        listed = [s for s in symbols if exchange.native(s) is not None]
        if self._streams.streaming(exchange.name) or not plan.poll:
            listed = self._record_held(exchange, listed, results, plan.poll)
        if not listed:
            return
        answers: list[Tickers | QuoteRejected] = []
        if exchange.bulk is Bulk.ALL:
            answers = [await self._snapshot(exchange, plan.snapshot_age)]
            chunks = [listed]
        elif exchange.bulk is Bulk.LIST:
            size = exchange.venue.max_per_request
            chunks = [listed[i : i + size] for i in range(0, len(listed), size)]
            answers = await asyncio.gather(*(self._fetch_list(exchange, c, plan.urgent) for c in chunks))
        if exchange.bulk is Bulk.NONE:  # by configuration, or the bulk request just found none
            outcomes = await asyncio.gather(
                *(self._fetch_one(exchange, s, urgent=plan.urgent) for s in listed)
            )
            for symbol, outcome in zip(listed, outcomes, strict=True):
                _record(results[symbol], exchange.name, _polled(exchange, symbol, outcome))
            return
        for chunk, answer in zip(chunks, answers, strict=True):
            self._record_bulk(exchange, chunk, answer, results)

    def _record_held(
        self, exchange: Exchange, listed: list[str], results: dict[str, FetchResult], poll: bool
    ) -> list[str]:
        """Records the streamed (or last polled) quotes; returns the symbols still to be polled:
        with polling allowed, whatever the stream has not brought yet is polled as if there were
        no stream."""
        unheld = []
        for symbol in listed:
            held = self._held(exchange, symbol)
            if poll and not isinstance(held, Quote):
                unheld.append(symbol)
            else:
                _record(results[symbol], exchange.name, held)
        return unheld

    @staticmethod
    def _record_bulk(
        exchange: Exchange,
        chunk: Sequence[str],
        answer: Tickers | QuoteRejected,
        results: dict[str, FetchResult],
    ) -> None:
        if isinstance(answer, QuoteRejected):
            for symbol in chunk:
                _record(results[symbol], exchange.name, answer)
            return
        tickers, received_at = answer
        for symbol in chunk:
            native = exchange.native(symbol)
            found = tickers.get(native) if native is not None else None
            outcome = MISSING_FROM_BULK if found is None else quote_of(found, exchange, symbol, received_at)
            _record(results[symbol], exchange.name, _polled(exchange, symbol, outcome))

    async def probe(self, exchange: Exchange, symbol: str) -> Quote | QuoteRejected:
        """One single-asset request to ``exchange`` (its round trip: ``last_round_trip``)."""
        return await self._fetch_one(exchange, symbol, urgent=True)

    async def _snapshot(self, exchange: Exchange, max_age: float) -> Tickers | QuoteRejected:
        """The venue's all-tickers answer, shared by every caller within ``max_age`` of it. The
        request is a task of its own: a caller that is cancelled does not take it from the others."""
        loop = asyncio.get_running_loop()
        task = exchange.snapshot
        if task is None or (
            task.done()
            # A failure is not kept: the next caller asks again.
            and (
                task.cancelled()
                or isinstance(task.result(), QuoteRejected)
                or loop.time() - exchange.snapshot_at >= max_age
            )
        ):
            task = asyncio.ensure_future(self._fetch_list(exchange, None, urgent=True))
            exchange.snapshot, exchange.snapshot_at = task, loop.time()
        return await asyncio.shield(task)

    async def _fetch_list(
        self, exchange: Exchange, symbols: Sequence[str] | None, urgent: bool
    ) -> Tickers | QuoteRejected:
        """One bulk request: every ticker (``symbols`` None) or the named ones. A 404 for named
        ones means the venue has no bulk endpoint after all: it is asked per symbol from then on."""
        natives = None if symbols is None else [exchange.native(s) or s for s in symbols]
        request = exchange.venue.tickers_request(natives)
        try:
            tickers = await self._transport.get(
                exchange, request, MAX_BULK_BODY_BYTES, urgent=urgent, parse=exchange.venue.parse_tickers
            )
            return tickers, self._clock()
        except ExchangeFailure as exc:
            if exc.status == 404 and symbols is not None:
                exchange.bulk = Bulk.NONE
            return exc.rejection
        except (VenueError, Held) as exc:
            return exc.rejection

    def _held(self, exchange: Exchange, symbol: str) -> Quote | QuoteRejected:
        """What ``exchange`` has of ``symbol`` without asking: its streamed ticker while the
        stream is up, else its last polled quote."""
        if self._streams.streaming(exchange.name):
            streamed = self._streams.streamed(exchange.name, symbol)
            return NOT_STREAMED_YET if streamed is None else streamed
        return exchange.polled.get(symbol, NOT_POLLED_YET)

    async def _fetch_one(self, exchange: Exchange, symbol: str, *, urgent: bool) -> Quote | QuoteRejected:
        native = exchange.native(symbol)
        if native is None:
            return NOT_LISTED
        if self._streams.streaming(exchange.name):
            held = self._held(exchange, symbol)
            if isinstance(held, Quote):
                return held
        try:
            ticker = await self._transport.get(
                exchange,
                exchange.venue.ticker_request(native),
                MAX_BODY_BYTES,
                urgent=urgent,
                parse=lambda payload: exchange.venue.parse_ticker(payload, native),
            )
        except (ExchangeFailure, VenueError, Held) as exc:
            return exc.rejection
        return _polled(exchange, symbol, quote_of(ticker, exchange, symbol, self._clock()))


def _polled(exchange: Exchange, symbol: str, outcome: Quote | QuoteRejected) -> Quote | QuoteRejected:
    """``outcome`` of a poll, kept as the exchange's latest quote of ``symbol`` when it is one."""
    if isinstance(outcome, Quote):
        exchange.polled[symbol] = outcome
    return outcome


def _record(result: FetchResult, source: str, outcome: Quote | QuoteRejected) -> None:
    if isinstance(outcome, Quote):
        result.quotes.append(outcome)
    else:
        result.rejected[source] = outcome


def quote_of(
    ticker: Ticker | QuoteRejected, exchange: Exchange, symbol: str, received_at: float
) -> Quote | QuoteRejected:
    """``exchange``'s quote of ``symbol`` from a ticker it sent (``domain/quotes.to_quote``)."""
    return to_quote(
        ticker,
        source=exchange.name,
        symbol=symbol,
        received_at=received_at,
        millisecond_times=exchange.venue.millisecond_times,
    )
