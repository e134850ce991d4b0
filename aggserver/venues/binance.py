"""Binance spot: one request prices every symbol.

Documentation (public, no API key):
- https://developers.binance.com/docs/binance-spot-api-docs/rest-api/general-api-information
  (request weight, ``X-MBX-USED-WEIGHT-1M``, 429 and 418 with ``Retry-After``)
- https://developers.binance.com/docs/binance-spot-api-docs/rest-api/general-endpoints
  (``GET /api/v3/exchangeInfo``: ``symbols`` with ``status``/``baseAsset``/``quoteAsset``,
  ``rateLimits``)
- https://developers.binance.com/docs/binance-spot-api-docs/rest-api/market-data-endpoints
  (``GET /api/v3/ticker/24hr``: ``lastPrice``, ``volume`` (base, 24 h), ``closeTime`` in ms;
  weight 2 for one symbol, 80 for all)
- https://developers.binance.com/docs/binance-spot-api-docs/errors (``{"code": -1121, "msg": ...}``)
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence

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
    read_tickers,
)
from aggserver.venues.stream_base import Frame, VenueStream, frame_json

__all__ = [
    "Binance",
    "BinanceStream",
]

ALL_TICKERS_WEIGHT = 80
ONE_TICKER_WEIGHT = 2
LISTING_WEIGHT = 20
USED_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"


class Binance(Venue):
    name = "binance"
    base_url = "https://api.binance.com"
    bulk = Bulk.ALL
    # The published default; exchangeInfo's rateLimits replaces it once loaded.
    rate = RatePolicy(capacity=6_000, window_seconds=60)

    def listing_request(self) -> VenueRequest:
        return VenueRequest(path="/api/v3/exchangeInfo", weight=LISTING_WEIGHT)

    def parse_listing(self, payload: object) -> list[Instrument]:
        if not isinstance(payload, dict) or not isinstance(payload.get("symbols"), list):
            raise VenueError("exchangeInfo has no symbols list")
        return listed_instruments(
            payload["symbols"],
            native="symbol",
            base="baseAsset",
            quote="quoteAsset",
            tradable=lambda item: item.get("status") == "TRADING",
        )

    def listing_rate(self, payload: object) -> RatePolicy | None:
        limits = payload.get("rateLimits") if isinstance(payload, dict) else None
        for rule in limits if isinstance(limits, list) else []:
            if (
                isinstance(rule, dict)
                and rule.get("rateLimitType") == "REQUEST_WEIGHT"
                and isinstance(rule.get("limit"), int)
                and rule["limit"] > 0
            ):
                seconds = {"SECOND": 1, "MINUTE": 60, "HOUR": 3_600, "DAY": 86_400}.get(
                    str(rule.get("interval"))
                )
                count = rule.get("intervalNum", 1)
                if seconds and isinstance(count, int) and count > 0:
                    return RatePolicy(capacity=rule["limit"], window_seconds=seconds * count)
        return None

    def tickers_request(self, natives: Sequence[str] | None) -> VenueRequest:
        return VenueRequest(path="/api/v3/ticker/24hr", weight=ALL_TICKERS_WEIGHT)

    def ticker_request(self, native: str) -> VenueRequest:
        return VenueRequest(path="/api/v3/ticker/24hr", params={"symbol": native}, weight=ONE_TICKER_WEIGHT)

    def parse_tickers(self, payload: object) -> dict[str, Ticker | QuoteRejected]:
        # An object for one symbol, a list for several.
        return read_tickers(
            payload if isinstance(payload, list) else [payload],
            native="symbol",
            price="lastPrice",
            volume="volume",
            timestamp_ms=lambda item: number(item.get("closeTime"), "closeTime"),
        )

    def error_message(self, payload: object) -> str | None:
        if isinstance(payload, dict) and "code" in payload:
            return f"code {payload.get('code')} {payload.get('msg', '')}".strip()
        return None

    def used_share(self, headers: Mapping[str, str], rate: RatePolicy) -> float | None:
        raw = headers.get(USED_WEIGHT_HEADER)
        if raw is None or rate.window_seconds != 60:
            return None
        try:
            return int(raw) / rate.capacity
        except ValueError:
            return None


# Its public WebSocket ticker stream:
# https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams (``/ws/!miniTicker@arr``:
# every symbol whose ticker changed, once a second, as an array of ``24hrMiniTicker`` events with ``s``
# symbol, ``c`` close (last) price, ``v`` 24 h base volume and ``E`` event time in ms; the server pings
# and closes a connection that does not pong, and ends every connection after 24 hours).
class BinanceStream(VenueStream):
    venue = "binance"
    default_url = "wss://stream.binance.com:9443"
    path = "/ws/!miniTicker@arr"

    def parse(self, text: str, wanted: Container[str] | None = None) -> Frame:
        payload = frame_json(text)
        frame = Frame()
        if isinstance(payload, dict) and "result" in payload:
            return frame  # the answer to a request frame; this stream needs none
        if not isinstance(payload, list):
            raise VenueError("mini-ticker frame is not an array")
        for event in payload:
            if (
                isinstance(event, dict)
                and event.get("e") == "24hrMiniTicker"
                and isinstance(event.get("s"), str)
                and (wanted is None or event["s"] in wanted)
            ):
                frame.add(event["s"], event, "c", "v", "E", stamped=event)
        return frame
