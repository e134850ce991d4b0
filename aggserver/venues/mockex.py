"""Our own mock exchange's format: ``GET {ticker URL}/{symbol}`` answers
``{"symbol", "price", "volume", "timestamp"}`` with JSON numbers (seconds), and the sibling
``.../tickers?symbols=a,b`` answers a list of them. It lists every symbol of ours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from urllib.parse import urlsplit

from aggserver.domain.reasons import QuoteRejected, ReasonCode
from aggserver.venues.base import Bulk, Instrument, RatePolicy, Ticker, Venue, VenueError, VenueRequest

__all__ = ["BULK_CHUNK", "Mockex"]

BULK_CHUNK = 500


class Mockex(Venue):
    name = "mockex"
    base_url = "http://127.0.0.1:8081"
    bulk = Bulk.LIST
    max_per_request = BULK_CHUNK
    lists_everything = True
    # Its quotes carry whole seconds.
    millisecond_times = False
    # Ours: no budget to respect, so one far above what a refresh round sends.
    rate = RatePolicy(capacity=1_000_000, window_seconds=1)

    def __init__(self, ticker_url: str) -> None:
        self.ticker_path = urlsplit(ticker_url).path.rstrip("/")

    def origin(self, base_url: str) -> str:
        parts = urlsplit(base_url)
        return f"{parts.scheme}://{parts.netloc}"

    def listing_request(self) -> None:
        return None

    def parse_listing(self, payload: object) -> list[Instrument]:
        raise NotImplementedError("mockex lists every symbol")

    def tickers_request(self, natives: Sequence[str] | None) -> VenueRequest:
        return VenueRequest(path=self.ticker_path + "s", params={"symbols": ",".join(natives or ())})

    def ticker_request(self, native: str) -> VenueRequest:
        return VenueRequest(path=f"{self.ticker_path}/{native}")

    def parse_tickers(self, payload: object) -> dict[str, Ticker | QuoteRejected]:
        if not isinstance(payload, list):
            raise VenueError("invalid bulk answer: not a JSON array")
        tickers: dict[str, Ticker | QuoteRejected] = {}
        for item in payload:
            symbol = item.get("symbol") if isinstance(item, dict) else None
            if isinstance(symbol, str):
                tickers[symbol.lower()] = _ticker(item, symbol.lower())
        return tickers

    def parse_ticker(self, payload: object, native: str) -> Ticker | QuoteRejected:
        return _ticker(payload, native)


def _ticker(payload: object, symbol: str) -> Ticker | QuoteRejected:
    """The ticker in one of mockex's answers, or why it is none. Its fields are JSON numbers
    only (a decimal string is a fault of the mock, not a format); whether the numbers make a
    valid quote is ``domain/quotes.py``'s to say."""
    if not isinstance(payload, dict):
        return _invalid("body is not a JSON object")
    quoted = payload.get("symbol")
    if not isinstance(quoted, str) or quoted.lower() != symbol:
        return _invalid(f"quote names another symbol: {quoted!r}")
    numbers = {}
    for name in ("price", "volume", "timestamp"):
        value = payload.get(name)
        # bool is an int subclass, and True is no price.
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _invalid(f"{name} is not a number")
        if not math.isfinite(value):
            return _invalid(f"{name} is not finite")
        numbers[name] = float(value)
    return Ticker(
        native=symbol,
        price=numbers["price"],
        volume=numbers["volume"],
        timestamp_ms=numbers["timestamp"] * 1000,
    )


def _invalid(why: str) -> QuoteRejected:
    return QuoteRejected(ReasonCode.BAD_BODY, f"invalid quote: {why}")
