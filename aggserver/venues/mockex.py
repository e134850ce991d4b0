"""Our own mock exchange's format: ``GET {ticker URL}/{symbol}`` answers
``{"symbol", "price", "volume", "timestamp"}`` with JSON numbers (seconds), and the sibling
``.../tickers?symbols=a,b`` answers a list of them. It lists every symbol of ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from aggserver.domain.aggregate import InvalidQuote, parse_quote
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
    try:
        quote = parse_quote(payload, source="", symbol=symbol)
    except InvalidQuote as exc:
        return QuoteRejected(ReasonCode.BAD_BODY, f"invalid quote: {exc}")
    return Ticker(native=symbol, price=quote.price, volume=quote.volume, timestamp_ms=quote.timestamp * 1000)
