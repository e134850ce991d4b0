"""Venues' public WebSocket ticker streams: where to connect, what to send, what comes back.

Pure like the REST adapters: each stream builds its messages and turns a received text frame
into tickers; connecting, keep-alive timing and reconnects live in ``aggserver.stream_ingest``.

Documentation (public, no API key):
- Binance: https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams
  (``/ws/!miniTicker@arr``: every symbol whose ticker changed, once a second, as an array of
  ``24hrMiniTicker`` events with ``s`` symbol, ``c`` close (last) price, ``v`` 24 h base volume
  and ``E`` event time in ms; the server pings and closes a connection that does not pong, and
  ends every connection after 24 hours).
- OKX: https://www.okx.com/docs-v5/en/ (#overview-websocket,
  #order-book-trading-market-data-ws-tickers-channel)
  (``/ws/v5/public``; ``{"op": "subscribe", "args": [{"channel": "tickers", "instId": ...}]}``,
  acknowledged per argument with ``{"event": "subscribe", ...}``; pushes ``{"arg": ..., "data":
  [ticker]}`` with ``last``, ``vol24h`` (base) and ``ts`` in ms; a connection silent for 30 s is
  closed, so the client sends the text ``ping`` and gets ``pong``; one message stays under the
  64 KB request limit).
- Bybit: https://bybit-exchange.github.io/docs/v5/ws/connect and /v5/websocket/public/ticker
  (``/v5/public/spot``; ``{"op": "subscribe", "args": ["tickers.BTCUSDT", ...]}``, at most 10
  arguments a message for spot; pushes ``{"topic", "ts", "type": "snapshot", "data": {...}}``
  with ``lastPrice`` and ``volume24h`` (base); the client sends ``{"op": "ping"}`` every 20 s).
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

import orjson

from aggserver.domain.reasons import QuoteRejected
from aggserver.errors import ConfigError
from aggserver.venues.base import Ticker, VenueError, number

__all__ = [
    "STREAMS",
    "BinanceStream",
    "BybitStream",
    "Frame",
    "OkxStream",
    "VenueStream",
    "parse_stream_urls",
    "stream_url",
]


@dataclass(slots=True)
class Frame:
    """What one received frame carried: tickers, and the names of tickers it spoiled with the
    reason (a bad field spoils only its own ticker, as in the REST answers)."""

    tickers: list[Ticker] = field(default_factory=list)
    rejected: list[tuple[str, QuoteRejected]] = field(default_factory=list)

    def add(
        self,
        native: str,
        item: dict[str, Any],
        price: str,
        volume: str,
        time: str,
        *,
        stamped: dict[str, Any],
    ) -> None:
        """The ticker of ``native`` from ``item``'s fields named ``price`` and ``volume`` and
        ``stamped``'s field ``time`` (ms), or the reason it is unusable."""
        try:
            self.tickers.append(
                Ticker(
                    native=native,
                    price=number(item.get(price), price),
                    volume=number(item.get(volume), volume),
                    timestamp_ms=number(stamped.get(time), time),
                )
            )
        except VenueError as exc:
            self.rejected.append((native, exc.rejection))


def batches(names: Sequence[str], size: int) -> list[Sequence[str]]:
    return [names[start : start + size] for start in range(0, len(names), size)]


class VenueStream:
    """One venue's ticker stream; subclasses fill in the venue's vocabulary."""

    venue: ClassVar[str]
    # The public endpoint's origin; EXCHANGE_STREAMS overrides it.
    default_url: ClassVar[str]
    path: ClassVar[str]
    # Seconds between the client's own keep-alive messages; None when the venue pings us.
    keepalive_seconds: ClassVar[float | None] = None

    def subscriptions(self, natives: Sequence[str]) -> list[str]:
        """The text frames that subscribe to ``natives`` (none for an all-market stream)."""
        return []

    def ping(self) -> str | None:
        """The keep-alive frame the client sends, if the venue wants one."""
        return None

    def parse(self, text: str, wanted: Container[str] | None = None) -> Frame:
        """The tickers in one text frame (none for acknowledgements and pongs); VenueError for
        a frame that says the venue refused something or that is not what the venue sends.
        An all-market stream keeps only the instruments in ``wanted`` (None: all of them),
        before reading their fields: a sharded owner keeps a fraction of every frame."""
        raise NotImplementedError


def _subscribe(args: list[Any]) -> str:
    return orjson.dumps({"op": "subscribe", "args": args}).decode()


def _json(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise VenueError(f"stream frame is not JSON: {text[:40]!r}") from None


class BinanceStream(VenueStream):
    venue = "binance"
    default_url = "wss://stream.binance.com:9443"
    path = "/ws/!miniTicker@arr"

    def parse(self, text: str, wanted: Container[str] | None = None) -> Frame:
        payload = _json(text)
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


class OkxStream(VenueStream):
    venue = "okx"
    default_url = "wss://ws.okx.com:8443"
    path = "/ws/v5/public"
    keepalive_seconds = 20.0
    # Arguments a subscribe frame carries: ~60 bytes each keeps a frame far below 64 KB.
    args_per_message = 100

    def subscriptions(self, natives: Sequence[str]) -> list[str]:
        return [
            _subscribe([{"channel": "tickers", "instId": n} for n in batch])
            for batch in batches(natives, self.args_per_message)
        ]

    def ping(self) -> str:
        return "ping"

    def parse(self, text: str, wanted: Container[str] | None = None) -> Frame:
        frame = Frame()
        if text == "pong":
            return frame
        payload = _json(text)
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


class BybitStream(VenueStream):
    venue = "bybit"
    default_url = "wss://stream.bybit.com"
    path = "/v5/public/spot"
    keepalive_seconds = 20.0
    # The spot stream's documented limit on arguments in one subscribe frame.
    args_per_message = 10

    def subscriptions(self, natives: Sequence[str]) -> list[str]:
        return [
            _subscribe([f"tickers.{n}" for n in batch]) for batch in batches(natives, self.args_per_message)
        ]

    def ping(self) -> str:
        return '{"op":"ping"}'

    def parse(self, text: str, wanted: Container[str] | None = None) -> Frame:
        payload = _json(text)
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


STREAMS: dict[str, VenueStream] = {
    stream.venue: stream for stream in (BinanceStream(), OkxStream(), BybitStream())
}


def parse_stream_urls(raw: str) -> dict[str, str]:
    """``EXCHANGE_STREAMS``: comma-separated ``VENUE=WS_BASE_URL`` overrides."""
    urls: dict[str, str] = {}
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        venue, _, url = (part.strip() for part in entry.partition("="))
        venue = venue.lower()
        if venue not in STREAMS:
            raise ConfigError(f"EXCHANGE_STREAMS: {venue!r} has no stream (streams: {', '.join(STREAMS)})")
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.netloc:
            raise ConfigError(f"EXCHANGE_STREAMS entry {entry!r}: {url!r} is not a ws(s) URL")
        urls[venue] = url.rstrip("/")
    return urls


def stream_url(venue: str, rest_base: str, public_rest_base: str, overrides: dict[str, str]) -> str | None:
    """Where ``venue``'s stream is: the override, else its public stream for its public REST
    API, else the REST host itself (a venue personality of mockex serves both); None when the
    venue has no stream."""
    if venue not in STREAMS:
        return None
    if venue in overrides:
        return overrides[venue]
    if rest_base.rstrip("/") == public_rest_base.rstrip("/"):
        return STREAMS[venue].default_url
    parts = urlsplit(rest_base)
    return f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}"
