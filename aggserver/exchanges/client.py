"""Exchange clients: one pooled keep-alive session; per exchange a venue adapter, its listing,
a rate budget, a circuit breaker and a bound on requests in flight. An exchange's failure
becomes a reason, never an error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp
import orjson

from aggserver.domain.aggregate import Quote
from aggserver.domain.reasons import QuoteRejected, ReasonCode
from aggserver.errors import NotListed
from aggserver.exchanges.breaker import CircuitBreaker
from aggserver.exchanges.throttle import Held, Throttle
from aggserver.metrics import Histogram
from aggserver.venues import VenueConfig, venue_for
from aggserver.venues.base import (
    Bulk,
    RateLimited,
    Ticker,
    Venue,
    VenueError,
    VenueRequest,
    retry_after_seconds,
)

__all__ = [
    "MAX_BODY_BYTES",
    "SNAPSHOT_SECONDS",
    "Exchange",
    "ExchangeClient",
    "FetchResult",
    "Listing",
    "create_session",
    "to_quote",
]

log = logging.getLogger(__name__)

Parsed = TypeVar("Parsed")
# A bulk answer: tickers (or why each is unusable) by the venue's names, and when it arrived.
Tickers = tuple[dict[str, Ticker | QuoteRejected], float]

# A ticker is a few hundred bytes; a venue's whole listing or all-tickers answer a few MB.
MAX_BODY_BYTES = 64 * 1024
MAX_BULK_BODY_BYTES = 16 * 1024 * 1024
# An all-tickers answer serves every refresh that starts within this long of it: tier slots
# a second apart then cost a bulk venue one request every two seconds, whatever they ask.
SNAPSHOT_SECONDS = 2.0
# Where a venue reports the budget used this minute (Binance), pause at this share of it.
USED_SHARE_PAUSE = 0.9

# Why an exchange has no quote of a symbol when nothing failed.
NOT_LISTED = QuoteRejected(ReasonCode.NOT_LISTED, "not listed")
MISSING_FROM_BULK = QuoteRejected(ReasonCode.NO_QUOTES, "missing from bulk answer")
NOT_STREAMED_YET = QuoteRejected(ReasonCode.NO_QUOTES, "no streamed ticker yet")
NOT_POLLED_YET = QuoteRejected(ReasonCode.NO_QUOTES, "not polled yet")
BUDGET_SPENT = QuoteRejected(ReasonCode.TIMEOUT, "timed out (refresh budget)")


class ExchangeFailure(Exception):
    """The exchange itself failed (transport, status, body): counts against its breaker."""

    def __init__(self, reason: str, *, code: ReasonCode, status: int | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.status = status

    @property
    def rejection(self) -> QuoteRejected:
        return QuoteRejected(self.code, str(self))


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchResult:
    """Every exchange's answer for one asset: the usable quotes and why the others were not."""

    quotes: list[Quote] = field(default_factory=list)
    rejected: dict[str, QuoteRejected] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Listing:
    """Which of our symbols a venue lists, and under which of its own names."""

    natives: Mapping[str, str]  # ours -> the venue's
    loaded_at: float  # unix seconds


def create_session(*, connections: int, timeout: float) -> aiohttp.ClientSession:
    """The shared client session; keep-alive connections are reused across refreshes."""
    connector = aiohttp.TCPConnector(limit=connections, ttl_dns_cache=300, keepalive_timeout=30)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout),
        raise_for_status=False,
    )


@dataclass(kw_only=True)
class StreamBook:
    """A venue's streamed tickers (``exchanges/stream_client.py``): the latest of each of our symbols as a
    quote (or why it cannot be one), made once as it arrives rather than at every aggregation,
    and whether the stream is up (its quotes replace polling while it is)."""

    quotes: dict[str, Quote | QuoteRejected] = field(default_factory=dict)  # by our symbol
    # Connected and delivering (a stream that has not brought tickers yet replaces nothing).
    connected: Callable[[], bool] = lambda: False


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
    # The venue's stream, where it is ingested; None: polled only.
    stream: StreamBook | None = None
    # The latest quote polled of each symbol, for aggregations that poll nothing themselves.
    polled: dict[str, Quote] = field(default_factory=dict)

    @property
    def streaming(self) -> bool:
        """Whether its quotes come from its stream now (it is not polled meanwhile)."""
        return self.stream is not None and self.stream.connected()

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
        self._session = session
        self._symbols = symbols
        self._clock = clock
        self.exchanges: list[Exchange] = []
        for config in configs:
            venue = venue_for(config)
            self.exchanges.append(
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
                        share=(rate_shares or {}).get(config.venue, 1.0),
                    ),
                    bulk=venue.bulk if bulk else Bulk.NONE,
                )
            )
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._budget = budget if budget is not None else timeout * 1.5

    # --- listings -----------------------------------------------------------------------

    async def load_listings(self) -> None:
        """Load (again) every venue's listing; a failed load keeps the one before, if any."""
        await asyncio.gather(*(self.load_listing(e) for e in self.exchanges if not e.lists_everything))

    def missing_listings(self) -> bool:
        return any(e.listing is None for e in self.exchanges if not e.lists_everything)

    async def load_listing(self, exchange: Exchange) -> None:
        """Load (again) one venue's listing; a failure is kept in ``listing_error``."""
        request = exchange.venue.listing_request()
        assert request is not None
        try:
            venue = exchange.venue
            instruments, rate = await self._get(
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
        natives = {i.symbol: i.native for i in instruments if i.symbol in self._symbols}
        exchange.listing = Listing(natives=natives, loaded_at=self._clock())
        exchange.listing_error = None
        log.info(
            "%s lists %d of our symbols (of %d instruments)", exchange.name, len(natives), len(instruments)
        )

    def listing_exchanges(self, symbol: str) -> list[Exchange]:
        return [e for e in self.exchanges if e.native(symbol) is not None]

    def listed(self, symbol: str) -> bool:
        """Whether any exchange lists ``symbol``."""
        return any(e.native(symbol) is not None for e in self.exchanges)

    @property
    def has_all_tickers_venue(self) -> bool:
        return any(e.bulk is Bulk.ALL for e in self.exchanges)

    def priced_in_bulk(self, symbol: str) -> bool:
        """Listed, and only by venues that price all their symbols with one request (so it is
        refreshed every bulk round)."""
        listing = self.listing_exchanges(symbol)
        return bool(listing) and all(e.bulk is Bulk.ALL for e in listing)

    def streamed(self, symbol: str) -> bool:
        """Listed, and every venue listing it streams it now: its aggregation follows the
        streams (``exchanges/ingest.py``), and a scheduled refresh would only repeat it."""
        listing = self.listing_exchanges(symbol)
        return bool(listing) and all(_streams(e, symbol) for e in listing)

    def on_tiers(self, symbol: str) -> bool:
        """Listed, and by at least one venue asked per symbol or per list (so it is refreshed
        by its tier)."""
        listing = self.listing_exchanges(symbol)
        return any(e.bulk is not Bulk.ALL for e in listing)

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
        self,
        symbols: Sequence[str],
        *,
        urgent: bool = False,
        snapshot_age: float = SNAPSHOT_SECONDS,
        poll: bool = True,
    ) -> dict[str, FetchResult]:
        """Quotes for many symbols: bulk requests where a venue has them, else one per symbol
        (``urgent`` work may use the budget kept back for hot assets). An all-tickers answer
        younger than ``snapshot_age`` seconds is used again rather than asked for anew. Venues
        whose stream is up answer from it; with ``poll`` off the others answer with their last
        polled quote (the trust rules judge its age), so nothing is requested at all."""
        results = {symbol: FetchResult() for symbol in symbols}
        await asyncio.gather(
            *(self._fetch_from(e, symbols, results, urgent, snapshot_age, poll) for e in self.exchanges)
        )
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
        urgent: bool,
        snapshot_age: float,
        poll: bool,
    ) -> None:
        listed = [s for s in symbols if exchange.native(s) is not None]
        if exchange.streaming or not poll:
            listed = self._record_held(exchange, listed, results, poll)
        if not listed:
            return
        answers: list[Tickers | QuoteRejected] = []
        if exchange.bulk is Bulk.ALL:
            answers = [await self._snapshot(exchange, snapshot_age)]
            chunks = [listed]
        elif exchange.bulk is Bulk.LIST:
            size = exchange.venue.max_per_request
            chunks = [listed[i : i + size] for i in range(0, len(listed), size)]
            answers = await asyncio.gather(*(self._fetch_list(exchange, c, urgent) for c in chunks))
        if exchange.bulk is Bulk.NONE:  # by configuration, or the bulk request just found none
            outcomes = await asyncio.gather(*(self._fetch_one(exchange, s, urgent=urgent) for s in listed))
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
            outcome = MISSING_FROM_BULK if found is None else to_quote(found, exchange, symbol, received_at)
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
            tickers = await self._get(
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
        if exchange.streaming:
            assert exchange.stream is not None
            return exchange.stream.quotes.get(symbol, NOT_STREAMED_YET)
        return exchange.polled.get(symbol, NOT_POLLED_YET)

    async def _fetch_one(self, exchange: Exchange, symbol: str, *, urgent: bool) -> Quote | QuoteRejected:
        native = exchange.native(symbol)
        if native is None:
            return NOT_LISTED
        if exchange.streaming:
            held = self._held(exchange, symbol)
            if isinstance(held, Quote):
                return held
        try:
            ticker = await self._get(
                exchange,
                exchange.venue.ticker_request(native),
                MAX_BODY_BYTES,
                urgent=urgent,
                parse=lambda payload: exchange.venue.parse_ticker(payload, native),
            )
        except (ExchangeFailure, VenueError, Held) as exc:
            return exc.rejection
        return _polled(exchange, symbol, to_quote(ticker, exchange, symbol, self._clock()))

    async def _get(
        self,
        exchange: Exchange,
        request: VenueRequest,
        limit: int,
        *,
        urgent: bool,
        parse: Callable[[object], Parsed],
    ) -> Parsed:
        """One request through the exchange's rate budget, breaker and concurrency bound; what
        ``parse`` makes of the decoded JSON. Raises ExchangeFailure, VenueError or Held; a rate
        limit however the venue says it (status or envelope) stops requests to it for a while."""
        await exchange.throttle.acquire(request.weight, urgent=urgent)
        if not exchange.breaker.allow():
            raise ExchangeFailure("circuit open", code=ReasonCode.BREAKER_OPEN)
        status, headers, content_type, body = await self._send(exchange, request, limit)
        payload = _decode(body) if body is not None else None
        try:
            exchange.venue.check_status(status, payload, headers)
        except RateLimited as exc:
            self._rate_limited(exchange, exc, headers)
            raise
        except VenueError as exc:
            self._failed(exchange)
            raise ExchangeFailure(str(exc), code=exc.code, status=status) from None
        if body is None:
            # An HTML error page from a proxy, say: whatever it holds is not a quote.
            self._failed(exchange)
            raise ExchangeFailure(f"content type {content_type} is not JSON", code=ReasonCode.BAD_BODY)
        self._answered(exchange, headers)
        if isinstance(payload, _NotJson):
            raise VenueError("body is not JSON")
        try:
            return parse(payload)
        except RateLimited as exc:
            self._rate_limited(exchange, exc, headers)
            raise

    async def _send(
        self, exchange: Exchange, request: VenueRequest, limit: int
    ) -> tuple[int, Mapping[str, str], str, bytes | None]:
        """The status, headers, content type and body (None unless declared JSON) of one request
        within the exchange's concurrency bound; a transport failure counts against the breaker."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        exchange.requests += 1
        try:
            async with (
                exchange.slots,
                self._session.get(
                    exchange.origin + request.path, params=request.params, timeout=self._timeout
                ) as response,
            ):
                declared_json = _declared_json(response.content_type)
                body = await _read_limited(response, limit) if declared_json else None
                return response.status, response.headers, response.content_type, body
        except TimeoutError:
            self._failed(exchange)
            raise ExchangeFailure("timed out", code=ReasonCode.TIMEOUT) from None
        except aiohttp.ClientError as exc:
            self._failed(exchange)
            raise ExchangeFailure(
                f"request failed: {type(exc).__name__}", code=ReasonCode.UNREACHABLE
            ) from None
        except (ExchangeFailure, asyncio.CancelledError):
            self._failed(exchange)
            raise
        finally:
            exchange.last_round_trip = loop.time() - started
            exchange.latency.observe(exchange.last_round_trip)

    @staticmethod
    def _answered(exchange: Exchange, headers: Mapping[str, str]) -> None:
        """A good answer: the breaker closes, the throttle learns how much budget is left."""
        exchange.breaker.success()
        exchange.throttle.answered()
        share = exchange.venue.used_share(headers, exchange.throttle.budget)
        if share is not None:
            exchange.used_share = share
            if share >= USED_SHARE_PAUSE:
                exchange.throttle.nearly_spent(60 - time.time() % 60)

    @staticmethod
    def _rate_limited(exchange: Exchange, exc: RateLimited, headers: Mapping[str, str]) -> None:
        # A Retry-After is honoured whatever the shape of the rest of the answer.
        retry_after = exc.retry_after if exc.retry_after is not None else retry_after_seconds(headers)
        pause = exchange.throttle.limited(retry_after)
        log.warning("%s rate-limited us (%s): no requests to it for %.0f s", exchange.name, exc, pause)

    @staticmethod
    def _failed(exchange: Exchange) -> None:
        exchange.errors += 1
        exchange.breaker.failure()


class _NotJson:
    """Stands for a body that did not decode, so the status can be judged first."""


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


def _streams(exchange: Exchange, symbol: str) -> bool:
    return exchange.streaming and exchange.stream is not None and symbol in exchange.stream.quotes


def to_quote(
    ticker: Ticker | QuoteRejected, exchange: Exchange, symbol: str, received_at: float
) -> Quote | QuoteRejected:
    """Our quote from a venue's ticker; a reason when it cannot be one."""
    if isinstance(ticker, QuoteRejected):
        return ticker.prefixed("invalid quote: ")
    if ticker.price <= 0:
        return _invalid("price is not positive")
    if ticker.volume < 0:
        return _invalid("volume is negative")
    venue_time = ticker.timestamp_ms is not None
    timestamp = int(ticker.timestamp_ms / 1000) if ticker.timestamp_ms is not None else int(received_at)
    if timestamp <= 0:
        return _invalid("timestamp is not positive")
    return Quote(
        source=exchange.name,
        symbol=symbol,
        price=ticker.price,
        volume=ticker.volume,
        timestamp=timestamp,
        venue_time=venue_time,
        timestamp_ms=_milliseconds(ticker, exchange, received_at),
    )


def _invalid(why: str) -> QuoteRejected:
    return QuoteRejected(ReasonCode.BAD_BODY, f"invalid quote: {why}")


def _milliseconds(ticker: Ticker, exchange: Exchange, received_at: float) -> int | None:
    """The quote's time in ms, where the venue (or, without a venue time, our clock) has it."""
    if ticker.timestamp_ms is None:
        return int(received_at * 1000)
    return int(ticker.timestamp_ms) if exchange.venue.millisecond_times else None


def _declared_json(content_type: str) -> bool:
    # aiohttp reports a missing Content-Type as application/octet-stream; allow that too.
    return content_type in ("application/json", "text/json", "application/octet-stream") or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def _decode(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return _NotJson()


async def _read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise ExchangeFailure(f"body larger than {limit} bytes", code=ReasonCode.BAD_BODY)
        chunks.append(chunk)
    return b"".join(chunks)
