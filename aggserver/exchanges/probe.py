"""``aggserver venues``: call each configured exchange once and say what it answered.

For checking, from a machine that reaches the real venues, that the adapters still read them:
what each lists of our symbols, a sample quote, the round trip and the rate-limit headroom.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TextIO

from aggserver.domain.quotes import Quote
from aggserver.domain.symbols import load_symbols
from aggserver.domain.universe import venue_universe
from aggserver.exchanges.client import ExchangeClient
from aggserver.exchanges.transport import create_session
from aggserver.settings import Settings
from aggserver.venues.base import Instrument

__all__ = ["SAMPLE_SYMBOL", "probe_venues"]


def _universe_share(settings: Settings, instruments: Sequence[Instrument]) -> str:
    """What the venue brings to UNIVERSE=venues: its spot pairs in UNIVERSE_QUOTES."""
    quotes = settings.universe_quotes
    kept = [i for i in instruments if i.quote.lower() in quotes]
    by_quote = {q: sum(1 for i in kept if i.quote.lower() == q) for q in quotes}
    spread = ", ".join(f"{q} {n:,}" for q, n in by_quote.items() if n)
    return f"{len(kept):,} pairs of its {len(instruments):,} in {','.join(quotes)} ({spread or 'none'})"


SAMPLE_SYMBOL = "btcusdt"


async def probe_venues(settings: Settings, out: TextIO) -> int:
    """Print one block per exchange; returns how many could not be read at all."""
    symbols = load_symbols(settings.symbols_file)
    failed = 0
    async with create_session(connections=10, timeout=settings.exchange_timeout_seconds) as session:
        client = ExchangeClient(
            session,
            settings.exchanges,
            symbols=symbols,
            timeout=settings.exchange_timeout_seconds,
            rate_shares=settings.rate_shares,
        )
        loop = asyncio.get_running_loop()
        for exchange in client.exchanges:
            out.write(f"{exchange.name} ({exchange.venue.name}, {exchange.origin})\n")
            if not exchange.lists_everything:
                started = loop.time()
                await client.load_listing(exchange)
                took = (loop.time() - started) * 1000
                if exchange.listing is None:
                    failed += 1
                    out.write(f"  listing      failed after {took:.0f} ms: {exchange.listing_error}\n\n")
                    continue
                listed = len(exchange.listing.natives)
                out.write(f"  listing      {listed:,} of our {len(symbols):,} symbols ({took:.0f} ms)\n")
            else:
                out.write("  listing      lists every symbol (mockex format)\n")
            if exchange.listing is not None and exchange.listing.instruments:
                share = _universe_share(settings, exchange.listing.instruments)
                out.write(f"  universe     {share}\n")
            native = exchange.native(SAMPLE_SYMBOL)
            if native is None:
                out.write(f"  {SAMPLE_SYMBOL:<12} not listed\n")
            else:
                outcome = await client.probe(exchange, SAMPLE_SYMBOL)
                seconds = exchange.last_round_trip
                if isinstance(outcome, Quote):
                    clock = "venue time" if outcome.venue_time else "receive time"
                    out.write(
                        f"  {SAMPLE_SYMBOL:<12} {outcome.price:,.8g} volume {outcome.volume:,.6g} at "
                        f"{outcome.timestamp} ({clock}) as {native}; round trip {seconds * 1000:.0f} ms\n"
                    )
                else:
                    failed += 1
                    out.write(f"  {SAMPLE_SYMBOL:<12} failed: {outcome} ({seconds * 1000:.0f} ms)\n")
            throttle = exchange.throttle
            budget = f"{throttle.capacity:g} per {throttle.window_seconds:g} s"
            if exchange.used_share is not None:
                out.write(
                    f"  rate limit   {budget}; the venue counts {exchange.used_share:.1%} of it used\n\n"
                )
            else:
                out.write(f"  rate limit   {budget} (published; the venue reports no usage)\n\n")
        out.write(_universe_summary(settings, client) + "\n")
    out.flush()
    return failed


def _universe_summary(settings: Settings, client: ExchangeClient) -> str:
    """The venues' universe these listings make (UNIVERSE=venues), and each venue's share."""
    listings = {e.name: e.listing.pairs() for e in client.exchanges if e.listing is not None}
    pairs = venue_universe(listings, quotes=settings.universe_quotes, min_venues=settings.universe_min_venues)
    if not pairs:
        return "universe     no venue listing to make one of (UNIVERSE=venues needs venue adapters)"
    shares = ", ".join(
        f"{name} {n:,} ({n / len(pairs):.0%})"
        for name in listings
        if (n := sum(1 for p in pairs.values() if name in p.venues))
    )
    return f"universe     {len(pairs):,} pairs (UNIVERSE=venues): {shares}"
