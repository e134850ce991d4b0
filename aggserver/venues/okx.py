"""OKX spot (API v5): every answer is an envelope ``{"code": "0", "msg": "", "data": [...]}``.

Documentation (public, no API key):
- https://www.okx.com/docs-v5/en/#public-data-rest-api-get-instruments
  (``GET /api/v5/public/instruments?instType=SPOT``: ``instId``, ``baseCcy``, ``quoteCcy``,
  ``state`` = ``live``; 20 requests per 2 s per IP)
- https://www.okx.com/docs-v5/en/#order-book-trading-market-data-get-tickers
  (``GET /api/v5/market/tickers?instType=SPOT`` and ``/api/v5/market/ticker?instId=``: ``last``,
  ``vol24h`` (base), ``ts`` (ms) all strings; 20 requests per 2 s per IP)
- https://www.okx.com/docs-v5/en/#error-code (``50011`` too many requests, also as HTTP 429;
  ``51001`` instrument does not exist)
"""

from __future__ import annotations

from collections.abc import Container, Sequence

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
    "Okx",
    "OkxStream",
]

RATE_LIMIT_CODES = frozenset({"50011", "50061"})


def _data(payload: object) -> list[object]:
    """The envelope's ``data``; EnvelopeError (RateLimited for the rate codes) when ``code`` is not 0."""
    if not isinstance(payload, dict):
        raise VenueError("answer is not an OKX envelope")
    code = str(payload.get("code"))
    if code != "0":
        reason = f"code {code}: {payload.get('msg') or 'no message'}"
        if code in RATE_LIMIT_CODES:
            raise RateLimited(f"rate limited ({reason})")
        raise EnvelopeError(reason)
    data = payload.get("data")
    if not isinstance(data, list):
        raise VenueError("envelope has no data list")
    return data


class Okx(Venue):
    name = "okx"
    base_url = "https://www.okx.com"
    bulk = Bulk.ALL
    rate = RatePolicy(capacity=20, window_seconds=2)

    def listing_request(self) -> VenueRequest:
        return VenueRequest(path="/api/v5/public/instruments", params={"instType": "SPOT"})

    def parse_listing(self, payload: object) -> list[Instrument]:
        return listed_instruments(
            _data(payload),
            native="instId",
            base="baseCcy",
            quote="quoteCcy",
            tradable=lambda item: item.get("state") == "live",
        )

    def tickers_request(self, natives: Sequence[str] | None) -> VenueRequest:
        return VenueRequest(path="/api/v5/market/tickers", params={"instType": "SPOT"})

    def ticker_request(self, native: str) -> VenueRequest:
        return VenueRequest(path="/api/v5/market/ticker", params={"instId": native})

    def parse_tickers(self, payload: object) -> dict[str, Ticker | QuoteRejected]:
        return read_tickers(
            _data(payload),
            native="instId",
            price="last",
            volume="vol24h",
            timestamp_ms=lambda item: number(item.get("ts"), "ts"),
        )

    def error_message(self, payload: object) -> str | None:
        if isinstance(payload, dict) and "code" in payload:
            return f"code {payload.get('code')}: {payload.get('msg') or 'no message'}"
        return None


# Its public WebSocket ticker stream: https://www.okx.com/docs-v5/en/ (#overview-websocket,
# #order-book-trading-market-data-ws-tickers-channel) (``/ws/v5/public``; ``{"op": "subscribe", "args":
# [{"channel": "tickers", "instId": ...}]}``, acknowledged per argument with ``{"event": "subscribe",
# ...}``; pushes ``{"arg": ..., "data": [ticker]}`` with ``last``, ``vol24h`` (base) and ``ts`` in ms; a
# connection silent for 30 s is closed, so the client sends the text ``ping`` and gets ``pong``; one
# message stays under the 64 KB request limit).
class OkxStream(VenueStream):
    venue = "okx"
    default_url = "wss://ws.okx.com:8443"
    path = "/ws/v5/public"
    keepalive_seconds = 20.0
    # Arguments a subscribe frame carries: ~60 bytes each keeps a frame far below 64 KB.
    args_per_message = 100

    def subscriptions(self, natives: Sequence[str]) -> list[str]:
        return [
            subscribe_message([{"channel": "tickers", "instId": n} for n in batch])
            for batch in batches(natives, self.args_per_message)
        ]

    def ping(self) -> str:
        return "ping"

    def parse(self, text: str, wanted: Container[str] | None = None) -> Frame:
        frame = Frame()
        if text == "pong":
            return frame
        payload = frame_json(text)
        if not isinstance(payload, dict):
            raise VenueError("OKX frame is not an object")
        event = payload.get("event")
        if event == "error":
            raise VenueError(f"OKX stream error {payload.get('code')}: {payload.get('msg', '')}".strip())
        if event is not None:
            return frame  # subscribe/unsubscribe acknowledgements, notices
        arg = payload.get("arg")
        if not isinstance(arg, dict) or arg.get("channel") != "tickers":
            return frame
        for item in payload.get("data") or []:
            if isinstance(item, dict) and isinstance(item.get("instId"), str):
                frame.add(item["instId"], item, "last", "vol24h", "ts", stamped=item)
        return frame
