"""Bybit spot (API v5): envelopes ``{"retCode": 0, "retMsg": "OK", "result": {...}, "time": ms}``.

Documentation (public, no API key):
- https://bybit-exchange.github.io/docs/v5/market/instrument
  (``GET /v5/market/instruments-info?category=spot``: ``symbol``, ``baseCoin``, ``quoteCoin``,
  ``status`` = ``Trading``)
- https://bybit-exchange.github.io/docs/v5/market/tickers
  (``GET /v5/market/tickers?category=spot[&symbol=]``: ``lastPrice``, ``volume24h`` (base) as
  strings; the time is the envelope's ``time``)
- https://bybit-exchange.github.io/docs/v5/rate-limit (600 requests per 5 s per IP; past it
  HTTP 403 "access too frequent" for a while; ``retCode`` 10006 too many visits)
- https://bybit-exchange.github.io/docs/v5/error (``10001`` parameter error, e.g. a symbol the
  venue does not have)
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence

from aggserver.domain.reasons import QuoteRejected
from aggserver.venues.base import (
    Bulk,
    EnvelopeError,
    Instrument,
    RateLimited,
    RatePolicy,
    Ticker,
    Venue,
    VenueError,
    VenueRequest,
    listed_instruments,
    number,
    read_tickers,
)
from aggserver.venues.stream_base import Frame, VenueStream, batches, frame_json, subscribe_message

__all__ = [
    "Bybit",
    "BybitStream",
]

RATE_LIMIT_CODES = frozenset({10006, 10018})


def _result(payload: object) -> tuple[list[object], object]:
    """The envelope's ``result.list`` and ``time``; EnvelopeError (or RateLimited) when ``retCode`` != 0."""
    if not isinstance(payload, dict):
        raise VenueError("answer is not a Bybit envelope")
    code = payload.get("retCode")
    if code != 0:
        reason = f"retCode {code}: {payload.get('retMsg') or 'no message'}"
        if code in RATE_LIMIT_CODES:
            raise RateLimited(f"rate limited ({reason})")
        raise EnvelopeError(reason)
    result = payload.get("result")
    if not isinstance(result, dict) or not isinstance(result.get("list"), list):
        raise VenueError("envelope has no result list")
    return result["list"], payload.get("time")


class Bybit(Venue):
    name = "bybit"
    base_url = "https://api.bybit.com"
    bulk = Bulk.ALL
    rate = RatePolicy(capacity=600, window_seconds=5)

    def listing_request(self) -> VenueRequest:
        return VenueRequest(path="/v5/market/instruments-info", params={"category": "spot"})

    def parse_listing(self, payload: object) -> list[Instrument]:
        items, _ = _result(payload)
        return listed_instruments(
            items,
            native="symbol",
            base="baseCoin",
            quote="quoteCoin",
            tradable=lambda item: item.get("status") == "Trading",
        )

    def tickers_request(self, natives: Sequence[str] | None) -> VenueRequest:
        return VenueRequest(path="/v5/market/tickers", params={"category": "spot"})

    def ticker_request(self, native: str) -> VenueRequest:
        return VenueRequest(path="/v5/market/tickers", params={"category": "spot", "symbol": native})

    def parse_tickers(self, payload: object) -> dict[str, Ticker | QuoteRejected]:
        items, answered_at = _result(payload)
        # Bybit's tickers carry no time of their own: the envelope's stands for all of them.
        timestamp = number(answered_at, "time")
        return read_tickers(
            items, native="symbol", price="lastPrice", volume="volume24h", timestamp_ms=lambda _: timestamp
        )

    def check_status(self, status: int, payload: object, headers: Mapping[str, str]) -> None:
        if status == 403:
            # Bybit's answer to too many requests from one IP: a temporary ban, no Retry-After.
            raise RateLimited("rate limited (HTTP 403, access too frequent)")
        super().check_status(status, payload, headers)

    def error_message(self, payload: object) -> str | None:
        if isinstance(payload, dict) and "retCode" in payload:
            return f"retCode {payload.get('retCode')}: {payload.get('retMsg') or 'no message'}"
        return None


# Its public WebSocket ticker stream: https://bybit-exchange.github.io/docs/v5/ws/connect and
# /v5/websocket/public/ticker (``/v5/public/spot``; ``{"op": "subscribe", "args": ["tickers.BTCUSDT",
# ...]}``, at most 10 arguments a message for spot; pushes ``{"topic", "ts", "type": "snapshot", "data":
# {...}}`` with ``lastPrice`` and ``volume24h`` (base); the client sends ``{"op": "ping"}`` every 20 s).
class BybitStream(VenueStream):
    venue = "bybit"
    default_url = "wss://stream.bybit.com"
    path = "/v5/public/spot"
    keepalive_seconds = 20.0
    # The spot stream's documented limit on arguments in one subscribe frame.
    args_per_message = 10

    def subscriptions(self, natives: Sequence[str]) -> list[str]:
        return [
            subscribe_message([f"tickers.{n}" for n in batch])
            for batch in batches(natives, self.args_per_message)
        ]

    def ping(self) -> str:
        return '{"op":"ping"}'

    def parse(self, text: str, wanted: Container[str] | None = None) -> Frame:
        payload = frame_json(text)
        frame = Frame()
        if not isinstance(payload, dict):
            raise VenueError("Bybit frame is not an object")
        if "op" in payload:
            if payload.get("success") is False:
                raise VenueError(f"Bybit refused {payload.get('op')}: {payload.get('ret_msg', '')}".strip())
            return frame  # subscribe acknowledgements and pongs
        topic = payload.get("topic")
        data = payload.get("data")
        if not isinstance(topic, str) or not topic.startswith("tickers.") or not isinstance(data, dict):
            return frame
        native = data.get("symbol")
        if not isinstance(native, str):
            raise VenueError("Bybit ticker has no symbol")
        frame.add(native, data, "lastPrice", "volume24h", "ts", stamped=payload)
        return frame
