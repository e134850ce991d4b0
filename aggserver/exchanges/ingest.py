"""Push ingestion: the venues' streams feed the exchanges, and what moved is aggregated again.

For every configured exchange whose venue has a ticker stream (``INGEST=stream``), an
:class:`Ingestor` keeps a :class:`~aggserver.exchanges.stream_client.StreamClient` open on the instruments
its listing names. Each streamed ticker replaces that venue's latest one for the asset
(``StreamBook``); while the stream is up the venue is not polled (``ExchangeClient`` answers
from the book), and while it is down the polling of the scheduler covers it as before. Assets
whose tickers arrived are aggregated again at most every ``AGGREGATE_MIN_INTERVAL_SECONDS``
(bursts coalesce), through the same refresh path as every other refresh: same trust rules, one
Redis pipeline per batch, history records and announcements as usual. It runs where the
scheduler runs (the process holding the refresh lease).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import aiohttp

from aggserver.domain.quotes import Quote
from aggserver.domain.reasons import QuoteRejected
from aggserver.engine.refresh import Refresher
from aggserver.exchanges.client import STREAMED, ExchangeClient, quote_of
from aggserver.exchanges.registry import Exchange
from aggserver.exchanges.stream_client import StreamClient
from aggserver.process.tasks import stop_tasks
from aggserver.settings import Settings
from aggserver.venues import VENUES
from aggserver.venues.base import Ticker
from aggserver.venues.streams import STREAMS, stream_url

__all__ = ["Ingestor", "stream_urls"]

log = logging.getLogger(__name__)

# How often a stream whose venue's listing has not loaded yet looks again.
LISTING_WAIT_SECONDS = 1.0
# How often a stream compares its instruments with the venue's latest listing.
LISTING_CHECK_SECONDS = 1.0
# An instrument silent this long on a stream that kept delivering is confirmed unchanged; the
# check runs this often (so a quiet asset's age stays within about two seconds).
QUIET_SECONDS = 1.0
CONFIRM_EVERY_SECONDS = 0.5


def stream_urls(settings: Settings) -> dict[str, str]:
    """The stream address of each configured exchange to ingest (none with ``INGEST=poll``)."""
    if settings.ingest != "stream":
        return {}
    urls = {}
    for config in settings.exchanges:
        if config.venue in VENUES:
            url = stream_url(
                config.venue, config.base_url, VENUES[config.venue].base_url, dict(settings.exchange_streams)
            )
            if url is not None:
                urls[config.name] = url
    return urls


@dataclass(kw_only=True)
class StreamBook:
    """A venue's streamed tickers: the latest of each of our symbols as a quote (or why it cannot
    be one), made once as it arrives rather than at every aggregation, and whether the stream is
    up (its quotes replace polling while it is)."""

    quotes: dict[str, Quote | QuoteRejected] = field(default_factory=dict)  # by our symbol
    # Connected and delivering (a stream that has not brought tickers yet replaces nothing).
    connected: Callable[[], bool] = lambda: False


class Ingestor:
    """The streams of one process's exchanges, and the aggregation they drive: the one owner of
    streamed quotes, which the exchange client asks through :class:`StreamedQuotes`."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        exchanges: ExchangeClient,
        refresher: Refresher,
        urls: Mapping[str, str],
        *,
        min_interval: float = 0.25,
        stall_seconds: float = 10.0,
    ) -> None:
        """``urls``: the stream address of each exchange (by name) to ingest."""
        self._session = session
        self._exchanges = exchanges
        self._refresher = refresher
        self._urls = dict(urls)
        self._min_interval = min_interval
        self._stall = stall_seconds
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        # Per exchange: the venue's instrument names back to our symbols.
        self._symbols: dict[str, dict[str, str]] = {}
        self.clients: dict[str, StreamClient] = {}
        self.aggregations = 0
        # Per exchange: quotes of silent instruments confirmed by a stream that kept delivering.
        self.confirmed: Counter[str] = Counter()
        self._tasks: list[asyncio.Task[None]] = []
        self._owned: frozenset[str] | None = None
        self._books: dict[str, StreamBook] = {}
        exchanges.follow_streams(self)

    def streaming(self, exchange: str) -> bool:
        book = self._books.get(exchange)
        return book is not None and book.connected()

    def streamed(self, exchange: str, symbol: str) -> Quote | QuoteRejected | None:
        book = self._books.get(exchange)
        return None if book is None else book.quotes.get(symbol)

    def status(self, exchange: str) -> dict[str, object] | None:
        """The stream of ``exchange`` for /status, or None when it is not ingested here."""
        client = self.clients.get(exchange)
        if client is None:
            return None
        return {
            "url": self._urls[exchange],
            "connected": client.connected,
            "connects": client.connects,
            "stalls": client.stalls,
            "instruments": len(self._symbols.get(exchange, ())),
            "tickers": client.tickers,
            "confirmed_quiet": self.confirmed[exchange],
            "errors": client.errors,
            "last_error": client.last_error,
        }

    def start(self, assets: Collection[str] | None = None) -> None:
        """Stream ``assets`` (None: every symbol; else the shards this process owns)."""
        self._owned = None if assets is None else frozenset(assets)
        for exchange in self._exchanges.exchanges:
            if exchange.name in self._urls:
                self._tasks.append(
                    asyncio.create_task(self._stream(exchange), name=f"stream-{exchange.name}")
                )
        if self._tasks:
            self._tasks.append(asyncio.create_task(self._aggregate(), name="stream-aggregation"))
            self._tasks.append(asyncio.create_task(self._confirm_quiet(), name="stream-quiet"))

    def reassign(self, assets: Collection[str] | None) -> None:
        """Stream ``assets`` (None: every symbol) from now on: each stream subscribes again when
        what it follows has changed."""
        self._owned = None if assets is None else frozenset(assets)

    async def stop(self) -> None:
        await stop_tasks(self._tasks)
        self._tasks.clear()
        self._books.clear()  # polled again
        self.clients.clear()

    def _followed(self, exchange: Exchange) -> dict[str, str]:
        """Our symbols (of the owned shards) the venue lists now, with its names for them."""
        natives = dict(exchange.listing.natives) if exchange.listing is not None else {}
        if self._owned is not None:
            natives = {symbol: native for symbol, native in natives.items() if symbol in self._owned}
        return natives

    async def _stream(self, exchange: Exchange) -> None:
        """Follow the venue's stream; when a reloaded listing adds or removes instruments, open
        a new connection on the new set (polling covers the moment of the switch)."""
        while exchange.listing is None and not exchange.lists_everything:
            await asyncio.sleep(LISTING_WAIT_SECONDS)
        book = self._books[exchange.name] = StreamBook()
        while True:
            listing, owned, natives = exchange.listing, self._owned, self._followed(exchange)
            self._symbols[exchange.name] = {native: symbol for symbol, native in natives.items()}
            for symbol in [s for s in book.quotes if s not in natives]:
                del book.quotes[symbol]  # delisted: no longer quoted from here
            client = StreamClient(
                self._session,
                STREAMS[exchange.venue.name],
                self._urls[exchange.name],
                list(natives.values()),
                self._deliver_for(exchange),
                stall_seconds=self._stall,
            )
            self.clients[exchange.name] = client
            book.connected = lambda client=client: client.flowing  # type: ignore[misc]
            log.info(
                "%s: streaming %d instruments from %s", exchange.name, len(natives), self._urls[exchange.name]
            )
            task = asyncio.create_task(client.run())
            changed = False
            try:
                while not task.done() and not changed:
                    await asyncio.wait({task}, timeout=LISTING_CHECK_SECONDS)
                    moved = exchange.listing is not listing or self._owned is not owned
                    changed = moved and self._followed(exchange) != natives
                    listing, owned = exchange.listing, self._owned
            finally:
                await client.stop(task)
            if not changed:
                task.result()  # the client ended by itself: raise what ended it
                return
            log.info("%s: listing changed; subscribing again", exchange.name)

    def _deliver_for(self, exchange: Exchange) -> Callable[[str, list[Ticker], float], None]:
        symbols = self._symbols[exchange.name]

        def deliver(venue: str, tickers: list[Ticker], received: float) -> None:
            book = self._books.get(exchange.name)
            if book is None:
                return
            for ticker in tickers:
                symbol = symbols.get(ticker.native)
                # The listing may have changed since the subscription.
                if symbol is not None:
                    book.quotes[symbol] = quote_of(ticker, exchange, symbol, received)
                    self._dirty.add(symbol)
            self._wake.set()

        return deliver

    async def _confirm_quiet(self) -> None:
        """Venues push a ticker only when it changed (Binance's array holds "all symbols that
        changed"; OKX and Bybit push on change): an instrument silent on a stream that keeps
        delivering is unchanged, not old. Its quote is confirmed as of the stream's latest frame
        (``timestamp_from: received``) and aggregated again, as a poll would have; a stream that
        stops delivering confirms nothing (the stall watchdog and polling take over)."""
        while True:
            await asyncio.sleep(CONFIRM_EVERY_SECONDS)
            for exchange in self._exchanges.exchanges:
                client, book = self.clients.get(exchange.name), self._books.get(exchange.name)
                if client is None or book is None or not client.flowing:
                    continue
                confirmed_at = client.last_delivery
                cutoff_ms = (confirmed_at - QUIET_SECONDS) * 1000
                for symbol, quote in book.quotes.items():
                    if isinstance(quote, Quote) and quote.moment_ms < cutoff_ms:
                        book.quotes[symbol] = dataclasses.replace(
                            quote,
                            timestamp=int(confirmed_at),
                            timestamp_ms=int(confirmed_at * 1000),
                            venue_time=False,
                        )
                        self._dirty.add(symbol)
                        self.confirmed[exchange.name] += 1
            if self._dirty:
                self._wake.set()

    async def _aggregate(self) -> None:
        """Aggregate what moved, at most every ``min_interval``; nothing is polled for it."""
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            started = loop.time()
            assets, self._dirty = sorted(self._dirty), set()
            try:
                await self._refresher.refresh_many(assets, STREAMED)
                self.aggregations += 1
            except Exception:
                # The refresh path reports its own failures; the stream must go on regardless.
                log.exception("aggregating %d streamed assets failed", len(assets))
            await asyncio.sleep(max(0.0, self._min_interval - (loop.time() - started)))
