"""Coinbase Exchange: no bulk ticker, so one request per product, hot assets first.

Documentation (public, no API key):
- https://docs.cdp.coinbase.com/exchange/reference/exchangerestapi_getproducts
  (``GET /products``: ``id`` like ``BTC-USD``, ``base_currency``, ``quote_currency``,
  ``status`` = ``online``, ``trading_disabled``)
- https://docs.cdp.coinbase.com/exchange/reference/exchangerestapi_getproductticker
  (``GET /products/{id}/ticker``: ``price``, ``volume`` (24 h, base) as strings, ``time`` ISO 8601)
- https://docs.cdp.coinbase.com/exchange/docs/rate-limits (public endpoints: 10 requests a
  second per IP, bursts of 15; HTTP 429 past it)
Errors are ``{"message": "..."}`` with a non-200 status (``NotFound`` for an unknown product).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from aggserver.domain.reasons import QuoteRejected
from aggserver.venues.base import (
    Bulk,
    Instrument,
    RatePolicy,
    Ticker,
    Venue,
    VenueError,
    VenueRequest,
    listed_instruments,
    number,
)

__all__ = ["Coinbase"]


def _iso_ms(value: object) -> float:
    if not isinstance(value, str):
        raise VenueError("time is not a string")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise VenueError(f"time is not ISO 8601: {value[:40]!r}") from None
    if moment.tzinfo is None:
        raise VenueError("time has no time zone")
    return moment.timestamp() * 1000


class Coinbase(Venue):
    name = "coinbase"
    base_url = "https://api.exchange.coinbase.com"
    bulk = Bulk.NONE
    rate = RatePolicy(capacity=10, window_seconds=1)

    def listing_request(self) -> VenueRequest:
        return VenueRequest(path="/products")

    def parse_listing(self, payload: object) -> list[Instrument]:
        if not isinstance(payload, list):
            raise VenueError("products answer is not a list")
        return listed_instruments(
            payload,
            native="id",
            base="base_currency",
            quote="quote_currency",
            tradable=lambda item: item.get("status") == "online" and not item.get("trading_disabled"),
        )

    def tickers_request(self, natives: Sequence[str] | None) -> VenueRequest:
        raise NotImplementedError("Coinbase has no bulk ticker")

    def ticker_request(self, native: str) -> VenueRequest:
        return VenueRequest(path=f"/products/{native}/ticker")

    def parse_tickers(self, payload: object) -> dict[str, Ticker | QuoteRejected]:
        raise NotImplementedError("Coinbase has no bulk ticker")

    def parse_ticker(self, payload: object, native: str) -> Ticker | QuoteRejected:
        if not isinstance(payload, dict):
            raise VenueError("ticker answer is not an object")
        try:
            return Ticker(
                native=native,
                price=number(payload.get("price"), "price"),
                volume=number(payload.get("volume"), "volume"),
                timestamp_ms=_iso_ms(payload.get("time")),
            )
        except VenueError as exc:
            return exc.rejection

    def error_message(self, payload: object) -> str | None:
        if isinstance(payload, dict) and isinstance(payload.get("message"), str):
            return str(payload["message"])
        return None
